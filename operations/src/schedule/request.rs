//! A `POST /schedules` body (or an entry of `--schedules-file`) decoded and validated into a [`Schedule`]. Every
//! problem is reported at once, each naming its field by JSON path (`operation.storageLocation`,
//! `retention.keepLast`), as operations' own validation does.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::cron::{CronSchedule, parse_cron, parse_timezone};
use super::{Retention, Schedule};
use crate::decode::parse_duration;
use crate::registry::Registry;
use crate::validation::{FieldViolation, Violations};

/// The fields of a schedule a client sends.
const FIELDS: [&str; 5] = ["cron", "timezone", "operation", "retention", "jitter"];

/// Why a body is not a schedule (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleRequestError {
    #[error("a schedule must be a JSON object")]
    NotAnObject,
    #[error("invalid schedule: {}", crate::validation::describe(.0))]
    Invalid(Vec<FieldViolation>),
}

impl ScheduleRequestError {
    /// The per-field problems, for the `details` of the error response.
    pub fn violations(&self) -> Vec<FieldViolation> {
        match self {
            ScheduleRequestError::NotAnObject => vec![],
            ScheduleRequestError::Invalid(violations) => violations.clone(),
        }
    }
}

/// What a schedule is checked against: the registry (the inner operation's own rules) and the types a schedule
/// may run.
#[derive(Debug, Clone)]
pub struct ScheduleRules {
    registry: Arc<Registry>,
    types: Vec<&'static str>,
}

impl ScheduleRules {
    /// `types`: the operation types a schedule may run ([`super::SCHEDULABLE_TYPES`] in production).
    pub fn new(registry: Arc<Registry>, types: &[&'static str]) -> Self {
        ScheduleRules {
            registry,
            types: types.to_vec(),
        }
    }

    /// A new schedule with a generated id, created at `now`.
    pub fn schedule(
        &self,
        body: Value,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleRequestError> {
        self.decode(body, now, false)
    }

    /// A schedule of `--schedules-file`: it may carry a stable `id` of its own.
    pub fn schedule_from_file(
        &self,
        body: Value,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleRequestError> {
        self.decode(body, now, true)
    }

    fn decode(
        &self,
        body: Value,
        now: DateTime<Utc>,
        id_allowed: bool,
    ) -> Result<Schedule, ScheduleRequestError> {
        let Value::Object(mut fields) = body else {
            return Err(ScheduleRequestError::NotAnObject);
        };
        let mut violations = Violations::default();
        let id = match fields.remove("id") {
            Some(Value::String(id)) if id_allowed => {
                if !is_schedule_id(&id) {
                    violations.add(
                        "id",
                        format!("'{id}' is not a schedule id: 1 to 64 letters, digits, '-' or '_'"),
                    );
                }
                id
            }
            Some(Value::Null) | None => uuid::Uuid::new_v4().to_string(),
            Some(other) if id_allowed => {
                violations.add("id", format!("must be a string, got {other}"));
                String::new()
            }
            Some(_) => {
                violations.add("id", "is chosen by the sidecar; leave it out");
                String::new()
            }
        };
        for unknown in fields.keys().filter(|key| !FIELDS.contains(&key.as_str())) {
            violations.add(
                unknown.clone(),
                format!(
                    "is not a field of a schedule (known: {})",
                    FIELDS.join(", ")
                ),
            );
        }
        let cron_text = required_string(&mut violations, &fields, "cron");
        let cron = cron_text
            .as_deref()
            .and_then(|text| match parse_cron(text) {
                Ok(cron) => Some(cron),
                Err(message) => {
                    violations.add("cron", message);
                    None
                }
            });
        let timezone = match fields.get("timezone") {
            None | Some(Value::Null) => Some("UTC".to_string()),
            Some(Value::String(name)) => match parse_timezone(name) {
                Ok(_) => Some(name.clone()),
                Err(message) => {
                    violations.add("timezone", message);
                    None
                }
            },
            Some(other) => {
                violations.add("timezone", format!("must be a string, got {other}"));
                None
            }
        };
        let operation = self.operation(&mut violations, fields.get("operation"), &id);
        let type_id = operation
            .as_ref()
            .and_then(|o| o.get("type"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let retention = retention(&mut violations, fields.get("retention"), type_id.as_deref());
        let cron_schedule = match (cron, timezone.as_deref().map(parse_timezone)) {
            (Some(cron), Some(Ok(zone))) => Some(CronSchedule::new(cron, zone)),
            _ => None,
        };
        if let Some(cron) = &cron_schedule
            && cron.next_after(now).is_none()
        {
            violations.add(
                "cron",
                format!(
                    "'{}' has no future tick: no date ever matches it",
                    cron_text.as_deref().unwrap_or_default()
                ),
            );
        }
        let jitter = jitter(
            &mut violations,
            fields.get("jitter"),
            cron_schedule.as_ref(),
            now,
        );
        let violations = violations.into_vec();
        match (violations.is_empty(), cron_text, timezone, operation) {
            (true, Some(cron), Some(timezone), Some(operation)) => Ok(Schedule {
                id,
                cron,
                timezone,
                operation,
                retention,
                jitter,
                created_at: now,
                last_run: None,
                sidecar: None,
            }),
            _ => Err(ScheduleRequestError::Invalid(violations)),
        }
    }

    /// The inner operation, checked by its type's own rules; a backup without a tag gets the schedule's.
    fn operation(
        &self,
        violations: &mut Violations,
        given: Option<&Value>,
        id: &str,
    ) -> Option<Map<String, Value>> {
        let mut operation = match given {
            None | Some(Value::Null) => {
                violations.add("operation", "is required");
                return None;
            }
            Some(Value::Object(operation)) => operation.clone(),
            Some(other) => {
                violations.add("operation", format!("must be a JSON object, got {other}"));
                return None;
            }
        };
        let type_id = match operation.get("type") {
            Some(Value::String(type_id)) if self.types.contains(&type_id.as_str()) => {
                type_id.clone()
            }
            Some(Value::String(type_id)) => {
                violations.add(
                    "operation.type",
                    format!("a schedule runs {}, not '{type_id}'", self.types.join(", ")),
                );
                return None;
            }
            None | Some(Value::Null) => {
                violations.add(
                    "operation.type",
                    format!("is required: one of {}", self.types.join(", ")),
                );
                return None;
            }
            Some(other) => {
                violations.add("operation.type", format!("must be a string, got {other}"));
                return None;
            }
        };
        if type_id == "backup" && matches!(operation.get("snapshotTag"), None | Some(Value::Null)) {
            operation.insert("snapshotTag".into(), Value::String(schedule_tag(id)));
        }
        if let Err(error) = self.registry.check(Value::Object(operation.clone())) {
            let found = error.violations();
            if found.is_empty() {
                violations.add("operation", error.to_string());
            }
            for violation in found {
                violations.add(format!("operation.{}", violation.field), violation.message);
            }
            return None;
        }
        Some(operation)
    }
}

/// The tag a schedule's backups get when its operation names none, so retention can tell them apart: the whole id
/// (`schedule-<id>`), since two schedules sharing a tag would prune each other's backups. An id ending in `-<digits>`
/// would make a tag Esop takes for a full manifest name (it then adds no time, and each run overwrites the last):
/// such a tag gets `.s` after it, a character no id has, so no two ids share a tag.
pub fn schedule_tag(id: &str) -> String {
    let tag = format!("schedule-{id}");
    if crate::esop::tag::ends_in_timestamp(&tag) {
        format!("{tag}.s")
    } else {
        tag
    }
}

/// 1 to 64 ASCII letters, digits, `-` or `_`: an id that is safe in a URL, an etcd key and a metric label.
pub fn is_schedule_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn required_string(
    violations: &mut Violations,
    fields: &Map<String, Value>,
    name: &str,
) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(text)) => Some(text.clone()),
        None | Some(Value::Null) => {
            violations.add(name, "is required");
            None
        }
        Some(other) => {
            violations.add(name, format!("must be a string, got {other}"));
            None
        }
    }
}

fn retention(
    violations: &mut Violations,
    given: Option<&Value>,
    type_id: Option<&str>,
) -> Option<Retention> {
    let fields = match given {
        None | Some(Value::Null) => return None,
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            violations.add("retention", format!("must be a JSON object, got {other}"));
            return None;
        }
    };
    if let Some(type_id) = type_id
        && type_id != "backup"
    {
        violations.add(
            "retention",
            format!("applies to backups only, and this schedule runs a {type_id}"),
        );
    }
    for unknown in fields
        .keys()
        .filter(|key| !["keepLast", "maxAge"].contains(&key.as_str()))
    {
        violations.add(
            format!("retention.{unknown}"),
            "is not a field of retention (known: keepLast, maxAge)",
        );
    }
    let keep_last = match fields.get("keepLast") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let number = match value {
                // JSON Schema's integers include `7.0`.
                Value::Number(number) => number.as_i64().or_else(|| {
                    number
                        .as_f64()
                        .filter(|n| n.fract() == 0.0 && n.abs() <= f64::from(u32::MAX))
                        .map(|n| n as i64)
                }),
                Value::String(text) => text.trim().parse::<i64>().ok(),
                _ => None,
            };
            // remove-backup's keepLast is an int (Esop's requests are Java), so the retention run takes no more.
            match number.map(|n| i32::try_from(n).ok().and_then(|n| u32::try_from(n).ok())) {
                Some(Some(count)) if count >= 1 => Some(count),
                _ => {
                    violations.add(
                        "retention.keepLast",
                        format!("must be a whole number from 1 to {}, got {value}", i32::MAX),
                    );
                    None
                }
            }
        }
    };
    let max_age = match fields.get("maxAge") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match parse_duration(text) {
            Ok(age) if !age.is_zero() => Some(text.clone()),
            Ok(_) => {
                violations.add("retention.maxAge", "must be longer than 0");
                None
            }
            Err(message) => {
                violations.add("retention.maxAge", message);
                None
            }
        },
        Some(other) => {
            violations.add(
                "retention.maxAge",
                format!("must be a duration such as \"30d\", got {other}"),
            );
            None
        }
    };
    if !fields.contains_key("keepLast") && !fields.contains_key("maxAge") {
        violations.add("retention", "needs keepLast or maxAge (or both)");
    }
    Some(Retention { keep_last, max_age })
}

fn jitter(
    violations: &mut Violations,
    given: Option<&Value>,
    cron: Option<&CronSchedule>,
    now: DateTime<Utc>,
) -> Option<String> {
    let text = match given {
        None | Some(Value::Null) => return None,
        Some(Value::String(text)) => text,
        Some(other) => {
            violations.add(
                "jitter",
                format!("must be a duration such as \"5m\", got {other}"),
            );
            return None;
        }
    };
    let jitter = match parse_duration(text) {
        Ok(jitter) => jitter,
        Err(message) => {
            violations.add("jitter", message);
            return None;
        }
    };
    if let Some((shortest, _)) = cron.and_then(|cron| cron.intervals(now))
        && jitter > shortest
    {
        violations.add(
            "jitter",
            format!(
                "{text} is longer than the shortest time between two runs of the cron ({})",
                humantime::format_duration(shortest)
            ),
        );
        return None;
    }
    Some(text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TypeOptions, registry};
    use serde_json::json;

    fn rules() -> ScheduleRules {
        let options = TypeOptions {
            enable_test_operations: true,
            ..TypeOptions::default()
        };
        ScheduleRules::new(
            Arc::new(registry(options)),
            &["backup", "commitlog-backup", "sleep"],
        )
    }

    fn fields(body: Value) -> Vec<String> {
        rules()
            .schedule(body, Utc::now())
            .unwrap_err()
            .violations()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_nightly_backup_with_retention_is_accepted_and_gets_the_schedule_tag() {
        let schedule = rules()
            .schedule(
                json!({"cron": "0 0 3 * * *", "timezone": "Europe/Berlin",
                    "operation": {"type": "backup", "storageLocation": "s3://bucket/c/dc/n"},
                    "retention": {"keepLast": 7, "maxAge": "30d"}, "jitter": "5m"}),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(schedule.timezone, "Europe/Berlin");
        let tag = schedule.operation["snapshotTag"].as_str().unwrap();
        assert_eq!(tag, format!("schedule-{}", schedule.id));
        assert_eq!(
            schedule.retention,
            Some(Retention {
                keep_last: Some(7),
                max_age: Some("30d".into())
            })
        );
        assert_eq!(schedule.jitter_duration().as_secs(), 300);
        let whole = rules()
            .schedule(
                json!({"cron": "0 3 * * *", "operation": {"type": "backup",
                    "storageLocation": "s3://bucket/c/dc/n"}, "retention": {"keepLast": 3.0}}),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(whole.retention.unwrap().keep_last, Some(3));
        // A tag the client chose stays.
        let tagged = rules()
            .schedule(
                json!({"cron": "0 3 * * *", "operation": {"type": "backup",
                    "storageLocation": "s3://bucket/c/dc/n", "snapshotTag": "nightly"}}),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(tagged.operation["snapshotTag"], "nightly");
        assert_eq!(tagged.timezone, "UTC");
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            fields(json!({"cron": "61 * * * *", "operation": {"type": "sleep", "duration": "1s"}})),
            ["cron"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "timezone": "Nowhere/City",
                "operation": {"type": "sleep", "duration": "1s"}})),
            ["timezone"]
        );
        assert_eq!(fields(json!({"cron": "* * * * *"})), ["operation"]);
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": {"type": "cleanup", "keyspace": "k"}})),
            ["operation.type"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": {"type": "sleep"}})),
            ["operation.duration"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": {"type": "backup"}})),
            ["operation.storageLocation"]
        );
        assert_eq!(
            fields(
                json!({"cron": "* * * * *", "operation": {"type": "sleep", "duration": "1s"},
                "retention": {"keepLast": 2}})
            ),
            ["retention"]
        );
        let backup = json!({"type": "backup", "storageLocation": "s3://bucket/c/dc/n"});
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": backup, "retention": {"keepLast": 0}})),
            ["retention.keepLast"]
        );
        assert_eq!(
            fields(
                json!({"cron": "* * * * *", "operation": backup, "retention": {"maxAge": "soon"}})
            ),
            ["retention.maxAge"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": backup, "retention": {}})),
            ["retention"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": backup, "jitter": "often"})),
            ["jitter"]
        );
        // Every minute, so a jitter of two minutes would overlap the next run.
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": backup, "jitter": "2m"})),
            ["jitter"]
        );
        assert_eq!(
            fields(json!({"cron": "* * * * *", "operation": backup, "every": "day"})),
            ["every"]
        );
        assert_eq!(
            fields(json!({"id": "mine", "cron": "* * * * *", "operation": backup})),
            ["id"]
        );
        assert_eq!(
            fields(json!({"cron": 5, "timezone": 1, "operation": []})),
            ["cron", "timezone", "operation"]
        );
        assert_eq!(
            rules().schedule(json!([1]), Utc::now()).unwrap_err(),
            ScheduleRequestError::NotAnObject
        );
    }

    /// Ids sharing their first eight letters and digits once shared a tag, and each schedule's retention removed
    /// the other's backups.
    #[test]
    fn every_id_gets_a_tag_of_its_own() {
        assert_eq!(schedule_tag("nightly-ks1"), "schedule-nightly-ks1");
        assert_ne!(schedule_tag("nightly-ks1"), schedule_tag("nightly-ks2"));
        assert_ne!(schedule_tag("Nightly"), schedule_tag("nightly"));
        // `-<digits>` at the end would read as a manifest's time; the suffix has a character no id has.
        assert_eq!(schedule_tag("nightly-1"), "schedule-nightly-1.s");
        assert!(!crate::esop::tag::ends_in_timestamp(&schedule_tag(
            "nightly-1"
        )));
        assert_ne!(schedule_tag("nightly-1"), schedule_tag("nightly-1_s"));
        let file = rules()
            .schedule_from_file(
                json!({"id": "nightly-ks2", "cron": "0 3 * * *",
                    "operation": {"type": "backup", "storageLocation": "s3://bucket/c/dc/n"}}),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(file.operation["snapshotTag"], "schedule-nightly-ks2");
    }

    /// A cron no date matches (February 31st) was accepted, and then searched for every second.
    #[test]
    fn a_cron_without_a_future_tick_is_refused() {
        let error = rules()
            .schedule(
                json!({"cron": "0 0 0 31 2 *", "operation": {"type": "sleep", "duration": "1s"}}),
                Utc::now(),
            )
            .unwrap_err();
        let violations = error.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "cron");
        assert!(
            violations[0].message.contains("has no future tick"),
            "{violations:?}"
        );
        // Leap days come.
        assert!(
            rules()
                .schedule(
                    json!({"cron": "0 0 0 29 2 *", "operation": {"type": "sleep", "duration": "1s"}}),
                    Utc::now(),
                )
                .is_ok()
        );
    }

    #[test]
    fn a_file_entry_may_carry_its_id() {
        let body = json!({"id": "nightly_1", "cron": "0 3 * * *",
            "operation": {"type": "sleep", "duration": "1s"}});
        assert_eq!(
            rules().schedule_from_file(body, Utc::now()).unwrap().id,
            "nightly_1"
        );
        let bad = json!({"id": "../x", "cron": "0 3 * * *",
            "operation": {"type": "sleep", "duration": "1s"}});
        let error = rules().schedule_from_file(bad, Utc::now()).unwrap_err();
        assert_eq!(error.violations()[0].field, "id");
    }
}
