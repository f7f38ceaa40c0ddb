//! Esop's backup tags, which name the manifest (`<tag>-<schemaVersion>-<epoch millis>`): the tag a backup is
//! stored under, and Icarus's default when the client gives none.

/// The backup's tag, the manifest's name. A tag the client gave follows Esop's rule: kept as it is when it already
/// ends in `-<number>` (a full `<tag>-<schemaVersion>-<millis>` name, say), otherwise `<tag>-<schemaVersion>-<epoch
/// millis>`. A tag generated at submit (`autosnap-<epoch seconds>`, `generated`) always gets
/// `-<schemaVersion>-<millis>`, as the Esop command line's default does, although it ends in a number: Icarus kept
/// it bare, and `list` then read its seconds as milliseconds (a backup of January 1970), and two backups in the same
/// second collided. No tag at all (a request that did not go through the registry) is a generated one from now.
pub fn resolved_tag(
    tag: Option<&str>,
    generated: bool,
    schema_version: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let (tag, generated) = match tag {
        Some(tag) => (tag.to_string(), generated),
        None => (default_snapshot_tag(now), true),
    };
    if !generated && ends_in_timestamp(&tag) {
        tag
    } else {
        format!("{tag}-{schema_version}-{}", now.timestamp_millis())
    }
}

/// Icarus's default tag, from the instant the request was accepted.
pub fn default_snapshot_tag(accepted_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("autosnap-{}", accepted_at.timestamp())
}

/// Esop's `Snapshots.snapshotContainsTimestamp`: the tag has a `-` but neither starts nor ends with one, and the
/// text from its last `-` on parses as a (negative) 64-bit integer.
pub fn ends_in_timestamp(tag: &str) -> bool {
    match tag.rfind('-') {
        Some(last) if !tag.starts_with('-') && !tag.ends_with('-') => {
            tag[last..].parse::<i64>().is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_resolve_as_esop_resolves_them() {
        let now = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let schema = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
        let given = |tag| resolved_tag(Some(tag), false, schema, now);
        assert_eq!(given("nightly"), format!("nightly-{schema}-1700000000123"));
        assert_eq!(
            given("nightly-5bd4-1700000000000"),
            "nightly-5bd4-1700000000000"
        );
        assert_eq!(given("weekly-1"), "weekly-1", "ends in a number");
        // Esop's edge cases: no `-`, a leading `-`, a trailing `-`, a number too long for a Java long.
        assert_eq!(given("2024"), format!("2024-{schema}-1700000000123"));
        assert_eq!(given("-12"), format!("-12-{schema}-1700000000123"));
        assert_eq!(given("snap-"), format!("snap--{schema}-1700000000123"));
        assert_eq!(
            given("snap-99999999999999999999"),
            format!("snap-99999999999999999999-{schema}-1700000000123")
        );
    }

    #[test]
    fn a_generated_tag_always_gets_the_schema_and_time() {
        let accepted = chrono::DateTime::from_timestamp_millis(1_700_000_000_999).unwrap();
        let now = chrono::DateTime::from_timestamp_millis(1_700_000_042_123).unwrap();
        let schema = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
        let generated = default_snapshot_tag(accepted);
        assert_eq!(generated, "autosnap-1700000000");
        assert_eq!(
            resolved_tag(Some(&generated), true, schema, now),
            format!("autosnap-1700000000-{schema}-1700000042123")
        );
        // The same text given by the client is a full name, kept, as Esop keeps it.
        assert_eq!(
            resolved_tag(Some(&generated), false, schema, now),
            "autosnap-1700000000"
        );
        assert_eq!(
            resolved_tag(None, false, schema, now),
            format!("autosnap-1700000042-{schema}-1700000042123")
        );
    }
}
