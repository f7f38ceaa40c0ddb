//! Turns the JMX flags, and Icarus's `--jmx-credentials` properties file, into [`JmxSettings`].

use std::collections::HashMap;
use std::path::Path;

use daedalus_operations::{JmxSettings, Secret};

use crate::args::JmxArgs;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the JMX credentials file {path}: {source}")]
pub struct CredentialsFileError {
    path: String,
    source: std::io::Error,
}

/// Flags win over the credentials file, which fills in what the flags leave out.
pub fn jmx_settings(args: &JmxArgs) -> Result<JmxSettings, CredentialsFileError> {
    let file = match &args.jmx_credentials {
        Some(path) => read_properties(path)?,
        None => HashMap::new(),
    };
    let from_file = |key: &str| file.get(key).filter(|v| !v.is_empty()).cloned();
    let secret =
        |flag: &Option<String>, key: &str| flag.clone().or_else(|| from_file(key)).map(Secret::new);
    Ok(JmxSettings {
        service: args.jmx_service.clone(),
        user: args.jmx_user.clone().or_else(|| from_file("username")),
        password: secret(&args.jmx_password, "password"),
        truststore: args.jmx_truststore.clone(),
        truststore_password: secret(&args.jmx_truststore_password, "truststorePassword"),
        keystore: args.jmx_keystore.clone(),
        keystore_password: secret(&args.jmx_keystore_password, "keystorePassword"),
        client_auth: args.jmx_client_auth,
        verify_hostname: !args.jmx_skip_hostname_verification,
        stub_host: args.jmx_stub_host.clone(),
    })
}

fn read_properties(path: &Path) -> Result<HashMap<String, String>, CredentialsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsFileError {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_properties(&text))
}

/// The subset of the Java properties format that credentials files use: `key=value`, `key: value` or
/// `key value` lines, `#` and `!` comments.
fn parse_properties(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| {
            let split = line.find(['=', ':', ' ', '\t'])?;
            let (key, rest) = line.split_at(split);
            let value = rest[1..].trim_start_matches([' ', '\t', '=', ':']).trim();
            Some((key.trim().to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_java_properties_lines() {
        let props = parse_properties(
            "# comment\nusername=cassandra\npassword : s3cret\n! other comment\nkeystorePassword ks\n\n",
        );
        assert_eq!(props["username"], "cassandra");
        assert_eq!(props["password"], "s3cret");
        assert_eq!(props["keystorePassword"], "ks");
        assert_eq!(props.len(), 3);
    }
}
