//! Esop's `updateCassandraYaml` edit of `cassandra.yaml`, done on the text so that comments and layout stay.

use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::node_fs::{FsError, RelPath, Root};

/// What happened to `auto_bootstrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoBootstrap {
    /// `auto_bootstrap: true` became `false`.
    Changed,
    /// The file had no `auto_bootstrap`; `auto_bootstrap: false` was appended.
    Appended,
    AlreadyFalse,
}

/// What happened to `initial_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialToken {
    /// `initial_token: <the backup's tokens>` was written (appended, or in place of an empty `initial_token:`).
    Set,
    /// The file already sets `initial_token`: left as it is, as Esop does.
    Kept {
        existing: String,
        /// Whether it names other tokens than the backup's (as sets); the node would then not own its restored data.
        differs_from_backup: bool,
    },
}

/// The change [`update_cassandra_yaml`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlChange {
    pub auto_bootstrap: AutoBootstrap,
    pub initial_token: InitialToken,
    /// `(before, after)` when `num_tokens` was set; `before` is `None` when the file had none.
    pub num_tokens: Option<(Option<String>, usize)>,
}

impl YamlChange {
    pub fn changed_file(&self) -> bool {
        self.auto_bootstrap != AutoBootstrap::AlreadyFalse
            || self.initial_token == InitialToken::Set
            || self.num_tokens.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("the backup has no tokens to put in initial_token")]
    NoTokens,
    #[error("the backup's token '{}' is not a ring token: cassandra.yaml was left unchanged", token.escape_debug())]
    BadToken { token: String },
    #[error(transparent)]
    Io(#[from] FsError),
    /// The edit is checked by parsing the result; this means the file was not valid YAML to begin with, or has a
    /// layout the line edit does not understand. Nothing was written.
    #[error("{} would not be valid after the edit ({problem}); it was left unchanged", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        problem: EditProblem,
    },
}

/// Why an edited `cassandra.yaml` is not what the edit meant (see [`edit_cassandra_yaml`]).
#[derive(Debug, thiserror::Error)]
pub enum EditProblem {
    #[error(transparent)]
    NotYaml(#[from] serde_yaml_ng::Error),
    #[error("auto_bootstrap is not false")]
    AutoBootstrap,
    #[error("initial_token is not the backup's tokens")]
    InitialToken,
    #[error("num_tokens is not the number of tokens")]
    NumTokens,
}

/// A top-level `key: value` line (not commented out, not indented). Returns the value without a trailing comment.
fn setting<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix(':')?;
    let value = match value.find(" #") {
        Some(comment) => &value[..comment],
        None => value,
    };
    Some(value.trim())
}

fn unquoted(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
}

fn is_null(value: &str) -> bool {
    matches!(unquoted(value), "" | "~" | "null" | "Null" | "NULL")
        && !value.starts_with(['"', '\''])
}

fn token_set(text: &str) -> std::collections::BTreeSet<&str> {
    unquoted(text)
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// The edited text and what changed; pure, for [`update_cassandra_yaml`].
pub fn edit_cassandra_yaml(
    text: &str,
    tokens: &[String],
) -> Result<(String, YamlChange), EditProblem> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut auto_bootstrap = None;
    let mut initial_token = None;
    let mut num_tokens_line = None;
    let wanted_tokens = tokens.join(",");
    for (index, line) in lines.iter_mut().enumerate() {
        if let Some(value) = setting(line, "auto_bootstrap") {
            if unquoted(value).eq_ignore_ascii_case("false") {
                auto_bootstrap.get_or_insert(AutoBootstrap::AlreadyFalse);
            } else {
                *line = "auto_bootstrap: false".to_owned();
                auto_bootstrap = Some(AutoBootstrap::Changed);
            }
        } else if let Some(value) = setting(line, "initial_token") {
            if is_null(value) {
                *line = format!("initial_token: {wanted_tokens}");
                initial_token = Some(InitialToken::Set);
            } else {
                let wanted: Vec<&str> = tokens.iter().map(String::as_str).collect();
                initial_token = Some(InitialToken::Kept {
                    existing: value.to_owned(),
                    differs_from_backup: token_set(value) != wanted.into_iter().collect(),
                });
            }
        } else if setting(line, "num_tokens").is_some() {
            num_tokens_line = Some(index);
        }
    }

    // Cassandra refuses to start when initial_token names another number of tokens than num_tokens (its default
    // is 1), so num_tokens follows the tokens that will be used.
    let used_tokens = match &initial_token {
        Some(InitialToken::Kept { existing, .. }) => token_set(existing).len(),
        _ => tokens.len(),
    };
    let num_tokens = match num_tokens_line {
        Some(index) => {
            let value = setting(&lines[index], "num_tokens")
                .unwrap_or_default()
                .to_owned();
            if unquoted(&value).parse::<usize>() == Ok(used_tokens) {
                None
            } else {
                lines[index] = format!("num_tokens: {used_tokens}");
                lines.insert(
                    index,
                    "# Set by the restore: num_tokens must equal the number of tokens in initial_token.".to_owned(),
                );
                Some((Some(value), used_tokens))
            }
        }
        None if used_tokens != 1 => {
            lines.push(
                "# Set by the restore: num_tokens must equal the number of tokens in initial_token.".to_owned(),
            );
            lines.push(format!("num_tokens: {used_tokens}"));
            Some((None, used_tokens))
        }
        None => None,
    };
    let auto_bootstrap = auto_bootstrap.unwrap_or_else(|| {
        lines.push("auto_bootstrap: false".to_owned());
        AutoBootstrap::Appended
    });
    let initial_token = initial_token.unwrap_or_else(|| {
        lines.push(format!("initial_token: {wanted_tokens}"));
        InitialToken::Set
    });
    let mut edited = lines.join("\n");
    edited.push('\n');
    let change = YamlChange {
        auto_bootstrap,
        initial_token,
        num_tokens,
    };
    check(&edited, &change, &wanted_tokens)?;
    Ok((edited, change))
}

/// The edited file must parse and say what the edit meant, or it is not written.
fn check(edited: &str, change: &YamlChange, wanted_tokens: &str) -> Result<(), EditProblem> {
    let yaml: Value = serde_yaml_ng::from_str(edited)?;
    if yaml.get("auto_bootstrap") != Some(&Value::Bool(false)) {
        return Err(EditProblem::AutoBootstrap);
    }
    if change.initial_token == InitialToken::Set {
        let value = match yaml.get("initial_token") {
            Some(Value::String(text)) => text.clone(),
            // One token is a YAML number, maybe beyond i64 (RandomPartitioner): the line itself is ours.
            Some(Value::Number(_)) if !wanted_tokens.contains(',') => wanted_tokens.to_owned(),
            _ => String::new(),
        };
        if value != wanted_tokens {
            return Err(EditProblem::InitialToken);
        }
    }
    if let Some((_, wanted)) = change.num_tokens
        && yaml.get("num_tokens").and_then(Value::as_u64) != u64::try_from(wanted).ok()
    {
        return Err(EditProblem::NumTokens);
    }
    Ok(())
}

/// Esop's `updateCassandraYaml`: `auto_bootstrap: true` becomes `false` (appended when absent), so the node starts
/// with the restored data instead of streaming; `initial_token: <tokens>` is appended, comma-separated, unless an
/// uncommented `initial_token` with a value exists (then it is left alone and reported, with whether it differs from
/// the backup's tokens; an empty `initial_token:` is filled in). Beyond Esop, `num_tokens` is set to the number of
/// tokens when it differs (Cassandra will not start otherwise), with a comment saying why.
///
/// Only top-level, uncommented settings count; the result is parsed before it replaces the file (atomically, keeping
/// its mode). The tokens come from the backup's manifest: each must be a ring token (no separators or line breaks
/// that would add settings of their own). `yaml` is the file in the configuration directory `config`. Blocking.
pub fn update_cassandra_yaml(
    config: &Root,
    yaml: &RelPath,
    tokens: &[String],
) -> Result<YamlChange, YamlError> {
    if tokens.is_empty() {
        return Err(YamlError::NoTokens);
    }
    if let Some(token) = tokens
        .iter()
        .find(|token| !crate::node_fs::names::is_token(token))
    {
        return Err(YamlError::BadToken {
            token: token.clone(),
        });
    }
    let path = config.display(yaml);
    let bytes = config.read_small(yaml, 16 * 1024 * 1024)?;
    let text = String::from_utf8_lossy(&bytes);
    let (edited, change) =
        edit_cassandra_yaml(&text, tokens).map_err(|problem| YamlError::Invalid {
            path: path.clone(),
            problem,
        })?;
    if let InitialToken::Kept {
        existing,
        differs_from_backup,
    } = &change.initial_token
    {
        tracing::warn!(
            path = %path.display(),
            existing = %existing,
            differs_from_backup,
            "cassandra.yaml already sets initial_token; left unchanged"
        );
    }
    if change.changed_file() {
        config.write_atomically(yaml, edited.as_bytes())?;
    }
    Ok(change)
}
