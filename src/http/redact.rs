//! Secrets taken out of `cassandra.yaml` before `/config` serves it (Icarus served the file verbatim, keystore
//! passwords included).
//!
//! The file is redacted as text, so comments and layout stay as they are, and the result is then checked against
//! a redaction of the parsed file: if the two disagree (flow mappings such as `{password: x}`, anchors, odd
//! layouts), the parsed redaction is served instead, re-serialized without comments. A file that does not parse
//! as YAML gets the text redaction only.

use serde_yaml_ng::Value;

/// What a secret's value becomes.
pub const MARKER: &str = "<redacted>";

/// Words that make a key secret, in any letter case and anywhere in its name. `private_key` is Cassandra 4.1's
/// PEM key given inline (`ssl_context_factory.parameters.private_key`).
const SECRET_WORDS: [&str; 6] = [
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "private_key",
];

/// Cassandra settings whose names contain one of the words but hold no secret: token ring layout and the
/// credentials cache's sizes and times. Redacting them would hide what operators read `/config` for.
const NOT_SECRET: [&str; 10] = [
    "num_tokens",
    "initial_token",
    "allocate_tokens_for_keyspace",
    "allocate_tokens_for_local_replication_factor",
    "credentials_validity",
    "credentials_validity_in_ms",
    "credentials_update_interval",
    "credentials_update_interval_in_ms",
    "credentials_cache_max_entries",
    "credentials_cache_active_update",
];

pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word)) && !NOT_SECRET.contains(&key.as_str())
}

/// `text` with the value of every secret key, at any depth, replaced by [`MARKER`].
pub fn redact_yaml(text: &str) -> String {
    let by_lines = redact_lines(text);
    let original: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(%error, "cassandra.yaml does not parse as YAML; serving it redacted line by line");
            return by_lines;
        }
    };
    let mut expected = original;
    redact_value(&mut expected);
    match serde_yaml_ng::from_str::<Value>(&by_lines) {
        Ok(value) if value == expected => by_lines,
        _ => {
            tracing::warn!(
                "cassandra.yaml has secrets a line-by-line redaction cannot take out; serving it re-serialized"
            );
            serde_yaml_ng::to_string(&expected).unwrap_or_else(|error| {
                // Cannot happen for a value that was just parsed; still, never fall back to the secrets.
                format!("# cannot be shown redacted: {error}\n")
            })
        }
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            for (key, value) in mapping.iter_mut() {
                if key.as_str().is_some_and(is_secret_key) {
                    *value = Value::String(MARKER.to_string());
                } else {
                    redact_value(value);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(redact_value),
        Value::Tagged(tagged) => redact_value(&mut tagged.value),
        _ => {}
    }
}

/// Block-style YAML, line by line: `key: value` (also after `- `) of a secret key becomes `key: "<redacted>"`, and
/// the lines of its value that follow (more indented, or a sequence at the key's own column) are dropped.
fn redact_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // While dropping a secret's value: the key's column, and whether `- ` items at that column belong to it.
    let mut dropping: Option<(usize, bool)> = None;
    // Blank and comment lines seen while dropping, kept unless the value turns out to go on past them.
    let mut held = String::new();
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let body = content.trim_start_matches(' ');
        let indent = content.len() - body.len();
        if let Some((column, sequence)) = dropping {
            if body.is_empty() || body.starts_with('#') {
                held.push_str(line);
                continue;
            }
            let item = body == "-" || body.starts_with("- ");
            if indent > column || (sequence && indent == column && item) {
                held.clear();
                continue;
            }
            dropping = None;
            out.push_str(&std::mem::take(&mut held));
        }
        // A commented-out setting (`# keystore_password: old`) can hold a real secret too; it is not parsed, so
        // the check against the parsed file below cannot catch it.
        if let Some(comment) = body.strip_prefix('#')
            && let Some((_, colon, _)) = secret_key_line(comment)
        {
            out.push_str(&content[..indent + 1]);
            out.push_str(&comment[..=colon]);
            out.push_str(" \"");
            out.push_str(MARKER);
            out.push('"');
            out.push_str(&line[content.len()..]);
            continue;
        }
        match secret_key_line(content) {
            Some((column, colon, value_empty)) => {
                out.push_str(&content[..=colon]);
                out.push_str(" \"");
                out.push_str(MARKER);
                out.push('"');
                out.push_str(&line[content.len()..]);
                dropping = Some((column, value_empty));
            }
            None => out.push_str(line),
        }
    }
    out.push_str(&held);
    out
}

/// For a `[- ]key: ...` line whose key is secret: the key's column, the colon's index, and whether the value is
/// empty on this line (so it follows on the next lines).
fn secret_key_line(content: &str) -> Option<(usize, usize, bool)> {
    let mut column = content.len() - content.trim_start_matches(' ').len();
    while content[column..].starts_with("- ") {
        column +=
            2 + content[column + 2..].len() - content[column + 2..].trim_start_matches(' ').len();
    }
    let rest = &content[column..];
    let (key, colon) = match rest.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = rest[1..].find(quote)? + 1;
            let after = &rest[end + 1..];
            let gap = after.len() - after.trim_start_matches(' ').len();
            if !after[gap..].starts_with(':') {
                return None;
            }
            (&rest[1..end], column + end + 1 + gap)
        }
        '#' | '[' | '{' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | '?' => return None,
        _ => {
            let colon = rest
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| rest[i + 1..].is_empty() || rest[i + 1..].starts_with([' ', '\t']))?;
            (rest[..colon].trim_end(), column + colon)
        }
    };
    if !is_secret_key(key) {
        return None;
    }
    let value = content[colon + 1..].trim();
    Some((column, colon, value.is_empty() || value.starts_with('#')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_by_name() {
        for key in [
            "keystore_password",
            "TrustStorePassword",
            "client_secret",
            "auth_token",
            "credentials",
            "ldap_credential_file",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "cluster_name",
            "num_tokens",
            "initial_token",
            "credentials_validity_in_ms",
            "keystore",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn block_yaml_keeps_its_layout() {
        let text = "\
# Cassandra storage config
cluster_name: 'Test Cluster'
num_tokens: 16
server_encryption_options:
  internode_encryption: none
  keystore: conf/.keystore
  keystore_password: cassandra   # change me
  \"truststore_password\": \"cassandra\"

client_encryption_options:
  enabled: false
  keystore_password:
    cassandra
    continued
  # a comment after the value
  require_client_auth: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:7000\"
        secret_list:
        - a
        - b
      - password: |
          multi
          line
auth_token: abc
";
        let expected = "\
# Cassandra storage config
cluster_name: 'Test Cluster'
num_tokens: 16
server_encryption_options:
  internode_encryption: none
  keystore: conf/.keystore
  keystore_password: \"<redacted>\"
  \"truststore_password\": \"<redacted>\"

client_encryption_options:
  enabled: false
  keystore_password: \"<redacted>\"
  # a comment after the value
  require_client_auth: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:7000\"
        secret_list: \"<redacted>\"
      - password: \"<redacted>\"
auth_token: \"<redacted>\"
";
        assert_eq!(redact_yaml(text), expected);
    }

    #[test]
    fn what_lines_cannot_redact_is_redacted_structurally() {
        let text =
            "# comment\nopts: {keystore_password: cassandra, port: 7000}\nlist: [{token_x: s}]\n";
        let served = redact_yaml(text);
        assert!(
            !served.contains("cassandra") && !served.contains(": s"),
            "{served}"
        );
        let value: Value = serde_yaml_ng::from_str(&served).unwrap();
        assert_eq!(value["opts"]["keystore_password"], MARKER);
        assert_eq!(value["opts"]["port"], 7000);
        assert_eq!(value["list"][0]["token_x"], MARKER);
    }

    #[test]
    fn a_file_without_secrets_is_unchanged() {
        let text = "cluster_name: c\n# the password is below\nhints_directory: /x\n";
        assert_eq!(redact_yaml(text), text);
    }

    #[test]
    fn commented_out_secrets_and_inline_private_keys_are_redacted() {
        let text = "\
cluster_name: c
  # keystore_password: old-secret
#truststore_password: other
client_encryption_options:
  ssl_context_factory:
    parameters:
      private_key: |
        -----BEGIN PRIVATE KEY-----
        MIIEvQ
        -----END PRIVATE KEY-----
      private_key_password: pem-secret
";
        let served = redact_yaml(text);
        for secret in [
            "old-secret",
            "other",
            "MIIEvQ",
            "BEGIN PRIVATE KEY",
            "pem-secret",
        ] {
            assert!(!served.contains(secret), "{secret} in {served}");
        }
        assert!(
            served.contains("  # keystore_password: \"<redacted>\"\n"),
            "{served}"
        );
        let value: Value = serde_yaml_ng::from_str(&served).unwrap();
        assert_eq!(value["cluster_name"], "c");
        let parameters = &value["client_encryption_options"]["ssl_context_factory"]["parameters"];
        assert_eq!(parameters["private_key"], MARKER);
        assert_eq!(parameters["private_key_password"], MARKER);
    }
}
