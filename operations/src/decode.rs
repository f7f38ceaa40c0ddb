//! Decoding that tolerates what Icarus's Jackson setup tolerated, because existing clients depend on it:
//! `"true"` for booleans, `"4"` for numbers, `null` for "use the default", and durations both as Icarus's
//! `{"value": 15, "unit": "MINUTES"}` object and as a string such as `"15m"` or `"1 hour"`.
//!
//! Use with `#[serde(default, deserialize_with = "decode::bool")]` and friends. Numbers where strings are expected
//! are taken for every field at once by [`request`].

mod jackson;

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Decodes a request body with Jackson's coercion of numbers to strings; a failure names the JSON path of the
/// bad field (`retry.interval`) and what was wrong with it.
pub fn request<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(jackson::Lenient(body)).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // serde reports a missing field at the object holding it, by its Rust-facing name in backticks: name
        // the field itself, as validation does.
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(field) if path == "." => (field.to_string(), "is required".to_string()),
            Some(field) => (format!("{path}.{field}"), "is required".to_string()),
            None => (path, message),
        }
    })
}

/// How a request type is decoded from its POST body. Most types derive `Deserialize` and get [`request`] through
/// the blanket implementation; a type made of field groups that share the body's one JSON object (see
/// [`crate::storage::request::StorageRequest`]) decodes each group from the whole body, so an error still names the
/// field's own path, which serde's `flatten` would lose.
pub trait DecodeRequest: Sized {
    fn decode_request(body: serde_json::Value) -> Result<Self, (String, String)>;
}

impl<T: serde::de::DeserializeOwned> DecodeRequest for T {
    fn decode_request(body: serde_json::Value) -> Result<Self, (String, String)> {
        request(body)
    }
}

struct LenientBool;

impl<'de> Visitor<'de> for LenientBool {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean (true or false, also as a string)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A boolean that may arrive as `true`, `"true"` or `null` (false).
pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(deserializer.deserialize_any(LenientBool)?.unwrap_or(false))
}

/// An optional boolean that may arrive as `true`, `"true"` or `null` (absent).
pub fn option_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    deserializer.deserialize_any(LenientBool)
}

struct LenientInteger;

impl<'de> Visitor<'de> for LenientInteger {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer (also as a string)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Some(v as i64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A 32-bit integer that may arrive as `4`, `"4"` or `null` (0). Range rules belong to validation.
pub fn i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let value = deserializer.deserialize_any(LenientInteger)?.unwrap_or(0);
    i32::try_from(value)
        .map_err(|_| de::Error::invalid_value(de::Unexpected::Signed(value), &"a 32-bit integer"))
}

/// A 64-bit integer (epoch millis) that may arrive as `4`, `"4"` or `null` (0).
pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(deserializer.deserialize_any(LenientInteger)?.unwrap_or(0))
}

/// An optional 32-bit integer, as leniently as [`fn@i32`]: `4`, `4.0`, `"4"`; `null` is absent.
pub fn option_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    deserializer
        .deserialize_any(LenientInteger)?
        .map(|value| {
            i32::try_from(value).map_err(|_| {
                de::Error::invalid_value(de::Unexpected::Signed(value), &"a 32-bit integer")
            })
        })
        .transpose()
}

/// An optional 64-bit integer (epoch millis), as leniently as [`fn@i64`]; `null` is absent.
pub fn option_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_any(LenientInteger)
}

/// A 32-bit integer whose absence or `null` means `DEFAULT`, e.g.
/// `#[serde(default = "...", deserialize_with = "decode::i32_or::<_, 10>")]`.
pub fn i32_or<'de, D: Deserializer<'de>, const DEFAULT: i32>(
    deserializer: D,
) -> Result<i32, D::Error> {
    let value = deserializer.deserialize_any(LenientInteger)?;
    match value {
        None => Ok(DEFAULT),
        Some(value) => i32::try_from(value).map_err(|_| {
            de::Error::invalid_value(de::Unexpected::Signed(value), &"a 32-bit integer")
        }),
    }
}

/// A length of time as Icarus clients send it; serialized back in Icarus's `{value, unit}` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(HumanDuration)
    }
}

/// Java `TimeUnit` names, as Icarus's `Time` object uses them, largest first.
const UNITS: [(&str, Duration); 7] = [
    ("DAYS", Duration::from_secs(86_400)),
    ("HOURS", Duration::from_secs(3_600)),
    ("MINUTES", Duration::from_secs(60)),
    ("SECONDS", Duration::from_secs(1)),
    ("MILLISECONDS", Duration::from_millis(1)),
    ("MICROSECONDS", Duration::from_micros(1)),
    ("NANOSECONDS", Duration::from_nanos(1)),
];

/// Parses `"30s"`, `"15m"`, `"1h30m"`, `"2d"`, `"1 hour"`, `"90"` (seconds), and units as Java's `TimeUnit` names or
/// Icarus's unit prefixes in any letter case: `"1 HOURS"`, `"60 MINUTES"`, `"30 seconds"`, `"5minute"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    if let Some(duration) = single_measure(trimmed) {
        return Ok(duration);
    }
    // humantime wants "1hour" in lower case; Icarus clients also send "1 hour", in any case.
    let lower = trimmed.to_lowercase();
    let mut compact = String::with_capacity(lower.len());
    let mut chars = lower.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            let after_digit = compact.chars().last().is_some_and(|p| p.is_ascii_digit());
            let before_letter = chars.peek().is_some_and(|n| n.is_alphabetic());
            if after_digit && before_letter {
                continue;
            }
        }
        compact.push(c);
    }
    humantime::parse_duration(&compact).map_err(|e| {
        format!("'{text}' is not a duration ({e}); use e.g. 30s, 15m, 1h, 2d or \"1 HOURS\"")
    })
}

/// `<number> <unit>` where the unit is a `TimeUnit` name (plural or singular) or, as Icarus's `MeasureConverter`
/// reads it, a unique prefix of SECONDS, MINUTES, HOURS or DAYS; any letter case.
fn single_measure(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let value = u32::try_from(number.parse::<u64>().ok()?).ok()?;
    let unit = unit.trim().to_ascii_uppercase();
    if unit.is_empty() {
        return None;
    }
    let named = UNITS
        .iter()
        .find(|(name, _)| *name == unit || name.strip_suffix('S') == Some(unit.as_str()));
    let size = match named {
        Some((_, size)) => *size,
        None => {
            let mut prefixed = UNITS[..4]
                .iter()
                .filter(|(name, _)| name.starts_with(&unit));
            match (prefixed.next(), prefixed.next()) {
                (Some((_, size)), None) => *size,
                _ => return None,
            }
        }
    };
    size.checked_mul(value)
}

/// `value` of Icarus's `Time` object: a count, also as a numeric string (Jackson coerced those).
struct TimeValue(u64);

impl<'de> Deserialize<'de> for TimeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(LenientInteger)? {
            Some(value) => u64::try_from(value).map(TimeValue).map_err(|_| {
                de::Error::invalid_value(de::Unexpected::Signed(value), &"a count of 0 or more")
            }),
            None => Err(de::Error::missing_field("value")),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl<'de> Visitor<'de> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration such as "15m" or {"value": 15, "unit": "MINUTES"}"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }

            /// `60.0` seconds, as Jackson reads a whole float into a long; a fraction is refused rather than cut.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                let seconds = LenientInteger.visit_f64::<E>(v)?.unwrap_or_default();
                self.visit_i64(seconds)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|seconds| HumanDuration(Duration::from_secs(seconds)))
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &"0 seconds or more"))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value: Option<u64> = None;
                let mut unit: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "value" => value = Some(map.next_value::<TimeValue>()?.0),
                        "unit" => unit = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["value", "unit"]));
                        }
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
                let unit = unit.ok_or_else(|| de::Error::missing_field("unit"))?;
                let (_, size) = UNITS
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(unit.trim()))
                    .ok_or_else(|| {
                        de::Error::custom(format!(
                            "unknown unit '{unit}'; expected one of DAYS, HOURS, MINUTES, SECONDS, MILLISECONDS"
                        ))
                    })?;
                u32::try_from(value)
                    .ok()
                    .and_then(|v| size.checked_mul(v))
                    .map(HumanDuration)
                    .ok_or_else(|| de::Error::custom(format!("{value} {unit} is too long")))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for HumanDuration {
    /// The largest unit that expresses the duration exactly, so `"90m"` echoes as 90 MINUTES, not 1.5 HOURS.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            let mut map = serializer.serialize_map(Some(2))?;
            map.serialize_entry("value", &0)?;
            map.serialize_entry("unit", "SECONDS")?;
            return map.end();
        }
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| nanos.is_multiple_of(size.as_nanos()))
            .unwrap_or(&UNITS[UNITS.len() - 1]);
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("value", &(nanos / size.as_nanos()))?;
        map.serialize_entry("unit", unit)?;
        map.end()
    }
}

/// A transfer rate as Icarus clients send it: `{"value": 10, "unit": "MBPS"}` or `"10MBPS"`; units are
/// `BPS`, `KBPS`, `MBPS`, `GBPS` (powers of 1000 bytes per second, as Esop counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRate {
    pub value: u64,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RateUnit {
    #[serde(rename = "BPS")]
    Bps,
    #[serde(rename = "KBPS")]
    Kbps,
    #[serde(rename = "MBPS")]
    Mbps,
    #[serde(rename = "GBPS")]
    Gbps,
}

impl RateUnit {
    fn parse(text: &str) -> Option<RateUnit> {
        match text.trim().to_ascii_uppercase().as_str() {
            "BPS" => Some(RateUnit::Bps),
            "KBPS" => Some(RateUnit::Kbps),
            "MBPS" => Some(RateUnit::Mbps),
            "GBPS" => Some(RateUnit::Gbps),
            _ => None,
        }
    }

    fn bytes(self) -> u64 {
        match self {
            RateUnit::Bps => 1,
            RateUnit::Kbps => 1_000,
            RateUnit::Mbps => 1_000_000,
            RateUnit::Gbps => 1_000_000_000,
        }
    }
}

impl DataRate {
    pub fn bytes_per_second(&self) -> u64 {
        self.value.saturating_mul(self.unit.bytes())
    }
}

const RATE_HINT: &str =
    r#"a rate such as "10MBPS" or {"value": 10, "unit": "MBPS"} (units BPS, KBPS, MBPS, GBPS)"#;

impl std::str::FromStr for DataRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_rate(text)
    }
}

fn parse_rate(text: &str) -> Result<DataRate, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    match (number.parse(), RateUnit::parse(unit)) {
        (Ok(value), Some(unit)) => rate(value, unit),
        _ => Err(format!("'{text}' is not {RATE_HINT}")),
    }
}

/// The largest `value` of a rate: the Icarus Go client (and the operators on it) reads it into an `int32`, and an
/// operation echoes it.
const MAX_RATE_VALUE: u64 = i32::MAX as u64;

fn rate(value: u64, unit: RateUnit) -> Result<DataRate, String> {
    if value > MAX_RATE_VALUE {
        return Err(format!(
            "a rate's value must be at most {MAX_RATE_VALUE} (use a larger unit), got {value}"
        ));
    }
    Ok(DataRate { value, unit })
}

impl<'de> Deserialize<'de> for DataRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;

        impl<'de> Visitor<'de> for RateVisitor {
            type Value = DataRate;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(RATE_HINT)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_rate(v).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value: Option<u64> = None;
                let mut unit: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "value" => value = Some(map.next_value()?),
                        "unit" => unit = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["value", "unit"])),
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
                let unit = unit.ok_or_else(|| de::Error::missing_field("unit"))?;
                let unit = RateUnit::parse(&unit).ok_or_else(|| {
                    de::Error::custom(format!(
                        "unknown unit '{unit}'; expected BPS, KBPS, MBPS or GBPS"
                    ))
                })?;
                rate(value, unit).map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_any(RateVisitor)
    }
}

impl Serialize for DataRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("value", &self.value)?;
        map.serialize_entry("unit", &self.unit)?;
        map.end()
    }
}

/// An enum written in any letter case, as Jackson's case-insensitive enums accepted (`"hardlinks"`).
pub fn upper_case<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(|s| s.trim().to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(default, deserialize_with = "bool")]
        flag: bool,
        #[serde(default, deserialize_with = "option_bool")]
        maybe: Option<bool>,
        #[serde(default, deserialize_with = "i32")]
        jobs: i32,
        #[serde(default, deserialize_with = "option_i32")]
        last: Option<i32>,
    }

    fn sample(value: serde_json::Value) -> Result<Sample, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn booleans_and_integers_accept_strings_and_null() {
        let s = sample(json!({"flag": "TRUE", "maybe": "false", "jobs": "4"})).unwrap();
        assert!(s.flag);
        assert_eq!(s.maybe, Some(false));
        assert_eq!(s.jobs, 4);
        let s = sample(json!({"flag": null, "maybe": null, "jobs": null})).unwrap();
        assert!(!s.flag);
        assert_eq!(s.maybe, None);
        assert_eq!(s.jobs, 0);
        let s = sample(json!({})).unwrap();
        assert_eq!((s.flag, s.maybe, s.jobs), (false, None, 0));
    }

    /// JSON Schema's `integer` (and Jackson) take `810.0` for 810; an optional integer does too.
    #[test]
    fn optional_integers_take_integral_floats_strings_and_null() {
        for (given, expected) in [
            (json!(810.0), Some(810)),
            (json!("7"), Some(7)),
            (json!(null), None),
        ] {
            assert_eq!(
                sample(json!({"last": given})).unwrap().last,
                expected,
                "{given}"
            );
        }
        assert!(sample(json!({"last": 1.5})).is_err());
        assert!(sample(json!({"last": 4_000_000_000_i64})).is_err());
    }

    #[test]
    fn rejects_values_that_are_not_what_they_claim() {
        assert!(
            sample(json!({"flag": "yes"}))
                .unwrap_err()
                .contains("a boolean")
        );
        assert!(
            sample(json!({"jobs": "many"}))
                .unwrap_err()
                .contains("an integer")
        );
        assert!(
            sample(json!({"jobs": 1.5}))
                .unwrap_err()
                .contains("an integer")
        );
        assert!(
            sample(json!({"jobs": 1u64 << 40}))
                .unwrap_err()
                .contains("32-bit")
        );
    }

    #[test]
    fn durations_accept_strings_and_icarus_objects() {
        let parse = |v| serde_json::from_value::<HumanDuration>(v).map(|d| d.0);
        assert_eq!(parse(json!("15m")).unwrap(), Duration::from_secs(900));
        assert_eq!(parse(json!("1 hour")).unwrap(), Duration::from_secs(3600));
        assert_eq!(parse(json!("2d")).unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse(json!("1h 30m")).unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse(json!({"value": 15, "unit": "minutes"})).unwrap(),
            Duration::from_secs(900)
        );
        assert!(parse(json!("soon")).is_err());
        assert!(parse(json!({"value": 1, "unit": "FORTNIGHTS"})).is_err());
        // Seconds as a number, whole floats included (JSON Schema's integers; Jackson reads them too).
        assert_eq!(parse(json!(90)).unwrap(), Duration::from_secs(90));
        assert_eq!(parse(json!(60.0)).unwrap(), Duration::from_secs(60));
        assert!(parse(json!(1.5)).is_err());
        assert!(parse(json!(-1)).is_err());
    }

    #[test]
    fn durations_accept_time_unit_names_in_any_case_and_string_values() {
        let parse = |v| serde_json::from_value::<HumanDuration>(v).map(|d| d.0);
        for (text, secs) in [
            ("1 HOURS", 3600),
            ("60 MINUTES", 3600),
            ("30 seconds", 30),
            ("2 Days", 172_800),
            ("1 hour", 3600),
            ("5minute", 300),
            ("15M", 900),
            ("1H 30M", 5400),
        ] {
            assert_eq!(
                parse(json!(text)).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        assert_eq!(
            parse(json!("250 MILLISECONDS")).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse(json!({"value": "60", "unit": "MINUTES"})).unwrap(),
            Duration::from_secs(3600)
        );
        assert!(parse(json!({"value": "-1", "unit": "MINUTES"})).is_err());
        assert!(parse(json!({"value": "soon", "unit": "MINUTES"})).is_err());
        assert!(parse(json!("1 FORTNIGHTS")).is_err());
    }

    #[test]
    fn rates_accept_strings_and_icarus_objects() {
        let parse = |v| serde_json::from_value::<DataRate>(v).map(|r| r.bytes_per_second());
        assert_eq!(parse(json!("10MBPS")).unwrap(), 10_000_000);
        assert_eq!(parse(json!("5 kbps")).unwrap(), 5_000);
        assert_eq!(
            parse(json!({"value": 2, "unit": "GBPS"})).unwrap(),
            2_000_000_000
        );
        assert!(parse(json!("fast")).is_err());
        assert!(parse(json!({"value": 2, "unit": "TBPS"})).is_err());
        let rate: DataRate = serde_json::from_value(json!("7mbps")).unwrap();
        assert_eq!(
            serde_json::to_value(rate).unwrap(),
            json!({"value": 7, "unit": "MBPS"})
        );
    }

    #[test]
    fn durations_echo_in_the_largest_exact_unit() {
        let echo = |secs| serde_json::to_value(HumanDuration(Duration::from_secs(secs))).unwrap();
        assert_eq!(echo(5400), json!({"value": 90, "unit": "MINUTES"}));
        assert_eq!(echo(7200), json!({"value": 2, "unit": "HOURS"}));
        assert_eq!(
            serde_json::to_value(HumanDuration(Duration::from_millis(1500))).unwrap(),
            json!({"value": 1500, "unit": "MILLISECONDS"})
        );
    }
}
