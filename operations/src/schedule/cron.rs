//! Cron expressions in a time zone, via `croner`: 5 fields (minute first) or 6 (seconds first), evaluated on the
//! zone's wall clock, so `0 0 3 * * *` in `Europe/Berlin` is 03:00 in Berlin in summer and in winter.
//!
//! Zones other than UTC come from the system's tz database (`/usr/share/zoneinfo`, Debian's `tzdata`), read by the
//! `tzfile` crate when a schedule is parsed: building the database into the binary (chrono-tz) would take the
//! container image past its 20 MB. UTC needs no file, so it works in the image, which has no tz database. `tzfile`
//! follows a zone's transitions as the file lists them (Debian's files list them to 2037) and not the rule after
//! the last one: a tick after 2037 in a zone with daylight saving time may be an hour off.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How many upcoming ticks are looked at to estimate the shortest and longest gap between two runs: a year of a
/// daily schedule, six minutes of one that runs every second.
const SAMPLED_TICKS: usize = 400;

/// A parsed cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: ArcTz,
}

type ArcTz = tzfile::ArcTz;

/// Where the tz database is read from (what `tzfile` reads).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// A cron expression that cannot be used, with why.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "'{expression}' has {fields} fields; a cron expression has 5 (minute hour day-of-month month \
             day-of-week) or 6 (seconds first)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|error| format!("'{expression}' is not a cron expression: {error}"))
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`), read from the system's tz database. The name comes from a
/// request: it must look like a zone name (letters, digits, `_`, `+`, `-`, parts joined by `/`), so it can only
/// name a file under the database.
pub fn parse_timezone(name: &str) -> Result<ArcTz, String> {
    if name == "UTC" {
        return Ok(ArcTz::new(tzfile::Tz::from(Utc)));
    }
    let looks_like_a_zone = !name.is_empty()
        && name.len() <= 64
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'))
        });
    if !looks_like_a_zone {
        return Err(format!(
            "'{name}' is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ));
    }
    ArcTz::named(name).map_err(|error| {
        format!(
            "'{name}' is not a time zone of this system's tz database ({ZONEINFO}: {error}); UTC always is \
             (e.g. UTC, Europe/Berlin)"
        )
    })
}

impl CronSchedule {
    pub fn new(cron: Cron, zone: ArcTz) -> Self {
        CronSchedule { cron, zone }
    }

    /// Parses both; the error names the field at fault (`cron` or `timezone`).
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, (&'static str, String)> {
        let cron = parse_cron(expression).map_err(|message| ("cron", message))?;
        let zone = parse_timezone(timezone).map_err(|message| ("timezone", message))?;
        Ok(CronSchedule::new(cron, zone))
    }

    /// The first tick strictly after `after`; `None` when there is none (a date that never comes).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The latest tick at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The shortest and the longest gap between two of the ticks after `from` (`SAMPLED_TICKS` of them);
    /// `None` when fewer than two ticks come.
    pub fn intervals(&self, from: DateTime<Utc>) -> Option<(Duration, Duration)> {
        let mut previous = self.next_after(from)?;
        let mut shortest: Option<Duration> = None;
        let mut longest = Duration::ZERO;
        for _ in 0..SAMPLED_TICKS {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            let gap = (next - previous).to_std().unwrap_or_default();
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            longest = longest.max(gap);
            previous = next;
        }
        shortest.map(|shortest| (shortest, longest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone name from a request names a file under the tz database, never one elsewhere; UTC needs no file.
    #[test]
    fn a_zone_name_is_a_zone_name_or_refused() {
        assert!(parse_timezone("UTC").is_ok());
        assert!(parse_timezone("Europe/Berlin").is_ok());
        for hostile in [
            "",
            "../../etc/passwd",
            "/etc/passwd",
            "Europe/../../../etc/shadow",
            "Europe//Berlin",
            "Europe/Berlin\n",
            "Mars/Olympus",
        ] {
            let refused = parse_timezone(hostile);
            assert!(refused.is_err(), "{hostile:?}");
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_fields_are_minute_granular_and_six_start_with_seconds() {
        let minutes = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            minutes.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let seconds = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:07:40Z"))
        );
        // Strictly after: a tick exactly at the start is not the next one.
        assert_eq!(
            seconds.next_after(at("2026-01-01T10:07:40Z")),
            Some(at("2026-01-01T10:07:50Z"))
        );
    }

    #[test]
    fn the_latest_tick_includes_the_instant_itself() {
        let daily = CronSchedule::parse("0 0 3 * * *", "UTC").unwrap();
        assert_eq!(
            daily.latest_at_or_before(at("2026-03-10T03:00:00Z")),
            Some(at("2026-03-10T03:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(at("2026-03-10T02:59:59Z")),
            Some(at("2026-03-09T03:00:00Z"))
        );
    }

    #[test]
    fn ticks_follow_the_wall_clock_of_the_time_zone() {
        let berlin = CronSchedule::parse("0 0 3 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            berlin.next_after(at("2026-01-15T12:00:00Z")),
            Some(at("2026-01-16T02:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(at("2026-07-15T12:00:00Z")),
            Some(at("2026-07-16T01:00:00Z"))
        );
    }

    #[test]
    fn intervals_are_the_shortest_and_longest_gaps() {
        let weekdays = CronSchedule::parse("0 3 * * 1-5", "UTC").unwrap();
        let (shortest, longest) = weekdays.intervals(at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(shortest, Duration::from_secs(86_400));
        assert_eq!(longest, Duration::from_secs(3 * 86_400));
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            every_second.intervals(at("2026-01-01T00:00:00Z")),
            Some((Duration::from_secs(1), Duration::from_secs(1)))
        );
    }

    #[test]
    fn a_cron_that_never_matches_has_no_tick_and_answers_quickly() {
        let never = CronSchedule::parse("0 0 0 31 2 *", "UTC").unwrap();
        let started = std::time::Instant::now();
        assert_eq!(never.next_after(at("2026-01-01T00:00:00Z")), None);
        assert_eq!(never.latest_at_or_before(at("2026-01-01T00:00:00Z")), None);
        assert_eq!(never.intervals(at("2026-01-01T00:00:00Z")), None);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in ["", "* * * *", "0 0 3 * * * 2030", "61 * * * *", "every day"] {
            let (field, message) = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert_eq!(field, "cron", "{bad}: {message}");
        }
        let (field, message) = CronSchedule::parse("0 3 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(field, "timezone");
        assert!(message.contains("Mars/Olympus"), "{message}");
    }
}
