//! The `timeout` of a cluster-wide request (backup, restore, rolling maintenance): how long the coordinator waits
//! for the nodes' parts, in Icarus's hours or, beyond Icarus, as a duration.

use serde::{Deserialize, Serialize};

/// `timeout` of a cluster-wide request: whole hours as Icarus takes them (values below 1 are its default, 5), or,
/// beyond Icarus, a duration such as `"90s"` or `"2h 30m"`. Echoed as hours when whole, as a duration otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub std::time::Duration);

pub const DEFAULT_TIMEOUT_HOURS: u64 = 5;

impl Default for Timeout {
    fn default() -> Self {
        Timeout::hours(DEFAULT_TIMEOUT_HOURS)
    }
}

impl Timeout {
    pub fn hours(hours: u64) -> Timeout {
        Timeout(std::time::Duration::from_secs(hours * 3600))
    }

    fn from_hours(hours: i64) -> Timeout {
        if hours < 1 {
            Timeout::default()
        } else {
            Timeout::hours(
                u64::try_from(hours)
                    .unwrap_or(u64::MAX / 3600)
                    .min(u64::MAX / 3600),
            )
        }
    }
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Timeout {
    /// Hours as Icarus takes them, up to its `int`'s (and the Go client's `int32`'s) largest: an operation echoes them.
    fn checked_hours<E: serde::de::Error>(hours: i64) -> Result<Timeout, E> {
        if hours > i64::from(i32::MAX) {
            return Err(E::custom(format!(
                "must be at most {} hours, got {hours}",
                i32::MAX
            )));
        }
        Ok(Timeout::from_hours(hours))
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Hours(i64),
            // Jackson reads 1.5 into an int field as 1.
            Fraction(f64),
            Text(String),
            Null(()),
        }
        match Given::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "must be a number of hours or a duration such as \"90s\" or \"2h\"",
            )
        })? {
            Given::Hours(hours) => Timeout::checked_hours(hours),
            Given::Fraction(hours) => Timeout::checked_hours(hours as i64),
            Given::Null(()) => Ok(Timeout::default()),
            Given::Text(text) => {
                if let Ok(hours) = text.trim().parse::<i64>() {
                    return Timeout::checked_hours(hours);
                }
                match humantime::parse_duration(text.trim()) {
                    Ok(duration) if duration.is_zero() => Ok(Timeout::default()),
                    Ok(duration) => Ok(Timeout(duration)),
                    _ => Err(serde::de::Error::custom(format!(
                        "'{text}' is neither a number of hours nor a duration such as \"90s\" or \"2h\""
                    ))),
                }
            }
        }
    }
}

impl Serialize for Timeout {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let seconds = self.0.as_secs();
        if self.0.subsec_nanos() == 0 && seconds.is_multiple_of(3600) {
            serializer.serialize_u64(seconds / 3600)
        } else {
            serializer.collect_str(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timeouts_are_icarus_hours_or_durations() {
        let read = |value| serde_json::from_value::<Timeout>(value);
        assert_eq!(read(json!(2)).unwrap(), Timeout::hours(2));
        assert_eq!(read(json!("3")).unwrap(), Timeout::hours(3));
        assert_eq!(
            read(json!(0)).unwrap(),
            Timeout::hours(5),
            "below 1: Icarus's default"
        );
        assert_eq!(read(json!(null)).unwrap(), Timeout::hours(5));
        assert_eq!(read(json!("90s")).unwrap().0.as_secs(), 90);
        assert!(
            read(json!("soon"))
                .unwrap_err()
                .to_string()
                .contains("number of hours")
        );
        assert_eq!(serde_json::to_value(Timeout::hours(5)).unwrap(), json!(5));
        assert_eq!(
            serde_json::to_value(read(json!("90m")).unwrap()).unwrap(),
            json!("1h 30m")
        );
    }
}
