//! CORS headers. Icarus sent `Access-Control-Allow-Origin: *` together with `Allow-Credentials: true` on every
//! response; the wildcard stays the default (browsers' clients of Icarus rely on it), but never with credentials,
//! and `--cors-allowed-origins` narrows it to named origins, echoed back with `Vary: Origin`.

use std::fmt;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap, HeaderValue};

const ALLOW_HEADERS: &str = "origin, content-type, accept, authorization";
const EXPOSE_HEADERS: &str = "location, x-next-cursor, retry-after";
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS, HEAD";

/// The origins `--cors-allowed-origins` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, without credentials.
    Any,
    /// Serialized origins (`https://console.example.com:8443`), lowercase, default ports omitted.
    List(Arc<[String]>),
}

impl AllowedOrigins {
    /// Parses `*` or a comma-separated list of `scheme://host[:port]` origins.
    pub fn parse(text: &str) -> Result<Self, String> {
        let entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries == ["*"] {
            return Ok(AllowedOrigins::Any);
        }
        if entries.is_empty() {
            return Err(
                "give `*` or at least one origin such as https://console.example.com".into(),
            );
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            origins.push(parse_origin(entry)?);
        }
        Ok(AllowedOrigins::List(origins.into()))
    }
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedOrigins::Any => f.write_str("*"),
            AllowedOrigins::List(origins) => f.write_str(&origins.join(",")),
        }
    }
}

fn parse_origin(entry: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        format!(
            "'{entry}' is not an origin ({why}): use scheme://host[:port], e.g. https://console.example.com"
        )
    };
    if entry == "*" {
        return Err(invalid("`*` cannot be combined with other origins"));
    }
    let url = url::Url::parse(entry).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not hold a user name or password"));
    }
    // `Url` turns `https://a.example` into `https://a.example/`; anything more than that root is not an origin.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a path, query or fragment"));
    }
    Ok(url.origin().ascii_serialization())
}

/// What CORS headers responses get: `--disable-cors` gives none.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Option<AllowedOrigins>,
}

impl CorsPolicy {
    pub fn new(enabled: bool, origins: AllowedOrigins) -> Self {
        Self {
            origins: enabled.then_some(origins),
        }
    }

    /// Adds the headers for a request that came with `origin` (the `Origin` header, if any).
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let allowed_origin = match &self.origins {
            None => return,
            Some(AllowedOrigins::Any) => HeaderValue::from_static("*"),
            Some(AllowedOrigins::List(list)) => {
                // The answer depends on the Origin, so caches must keep one copy per Origin.
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
                let Some(origin) = origin.filter(|o| {
                    o.to_str()
                        .is_ok_and(|o| list.iter().any(|allowed| allowed.eq_ignore_ascii_case(o)))
                }) else {
                    return;
                };
                // Only named origins get credentials: the browser then sends cookies or HTTP authentication,
                // which a proxy in front of the sidecar may require.
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                origin.clone()
            }
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed_origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        // Scripts only see the headers a response exposes: the new operation's address and the next page.
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_and_normalized() {
        assert_eq!(AllowedOrigins::parse("*"), Ok(AllowedOrigins::Any));
        assert_eq!(
            AllowedOrigins::parse(
                "https://Console.Example.com, http://a.example:80,http://b.example:8080/"
            )
            .map(|o| o.to_string()),
            Ok("https://console.example.com,http://a.example,http://b.example:8080".to_string())
        );
        for bad in [
            "",
            "console.example.com",
            "ftp://a.example",
            "https://a.example/path",
            "*,https://a.example",
            "https://user@a.example",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }

    fn headers_for(policy: &CorsPolicy, origin: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        policy.apply(origin.map(HeaderValue::from_static).as_ref(), &mut headers);
        headers
    }

    #[test]
    fn the_wildcard_never_comes_with_credentials() {
        let headers = headers_for(
            &CorsPolicy::new(true, AllowedOrigins::Any),
            Some("https://evil.example"),
        );
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "*"
        );
        assert!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
    }

    #[test]
    fn a_list_echoes_only_listed_origins() {
        let policy = CorsPolicy::new(
            true,
            AllowedOrigins::parse("https://console.example.com").unwrap(),
        );
        let listed = headers_for(&policy, Some("https://console.example.com"));
        assert_eq!(
            listed.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://console.example.com"
        );
        assert_eq!(listed.get(header::VARY).unwrap(), "Origin");
        let other = headers_for(&policy, Some("https://evil.example"));
        assert!(other.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other.get(header::VARY).unwrap(), "Origin");
    }

    #[test]
    fn disabled_adds_nothing() {
        let policy = CorsPolicy::new(false, AllowedOrigins::Any);
        assert!(headers_for(&policy, Some("https://a.example")).is_empty());
    }
}
