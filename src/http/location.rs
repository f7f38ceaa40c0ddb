//! The absolute URL of a new operation, sent as `Location` (the Instaclustr operator reads the id from it).
//!
//! It is built from what the client sent, so each part is checked: the scheme is only ever `http` or `https`, the
//! host must be a valid URI authority, and proxy headers (`Forwarded`, `X-Forwarded-Proto`, `X-Forwarded-Host`)
//! count only with `--trust-forwarded-headers`, since anyone can send them. A host that fails the checks falls
//! back to the next source, and last to the address the connection came in on.

use std::net::SocketAddr;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::uri::Authority;
use uuid::Uuid;

/// The local address of a connection, recorded when it is accepted (see `serve.rs`).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// `<scheme>://<host>/operations/<id>`.
pub fn operation_url(request: &HttpRequest, trust_forwarded: bool, id: &Uuid) -> String {
    resource_url(request, trust_forwarded, &format!("/operations/{id}"))
}

/// `<scheme>://<host><path>`, `path` starting with `/`.
pub fn resource_url(request: &HttpRequest, trust_forwarded: bool, path: &str) -> String {
    let forwarded = if trust_forwarded {
        Forwarded::of(request.headers())
    } else {
        Forwarded::default()
    };
    let scheme = forwarded
        .proto
        .and_then(|proto| web_scheme(&proto))
        .unwrap_or(if request.app_config().secure() {
            "https"
        } else {
            "http"
        });
    let header_host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let host = forwarded
        .host
        .as_deref()
        .into_iter()
        .chain(header_host)
        // HTTP/2 carries the host in the request line, not in a Host header.
        .chain(request.uri().authority().map(Authority::as_str))
        .find(|candidate| is_host(candidate))
        .map(str::to_string)
        .unwrap_or_else(|| match request.conn_data::<LocalAddr>() {
            Some(LocalAddr(address)) => address.to_string(),
            None => request.app_config().local_addr().to_string(),
        });
    format!("{scheme}://{host}{path}")
}

fn web_scheme(proto: &str) -> Option<&'static str> {
    if proto.eq_ignore_ascii_case("https") {
        Some("https")
    } else if proto.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// A URI authority with a host and at most a port: no user info, path, spaces or other stray characters.
fn is_host(candidate: &str) -> bool {
    let Ok(authority) = candidate.parse::<Authority>() else {
        return false;
    };
    if candidate.contains('@') || authority.host().is_empty() {
        return false;
    }
    if authority.port().is_some() && authority.port_u16().is_none() {
        return false;
    }
    // `Authority` checks the characters; `Url` checks that the host is a host (a name, IPv4 or bracketed IPv6).
    url::Url::parse(&format!("http://{candidate}/")).is_ok_and(|url| url.host().is_some())
}

/// What proxies said about the original request: RFC 7239 `Forwarded` first, else the `X-Forwarded-*` headers.
/// Only the first (client-most) entry counts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarded {
    proto: Option<String>,
    host: Option<String>,
}

impl Forwarded {
    fn of(headers: &HeaderMap) -> Self {
        let first = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut found = Forwarded::default();
        if let Some(value) = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            for pair in first_element(value).split(';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"').to_string();
                match name.trim().to_ascii_lowercase().as_str() {
                    "proto" => found.proto = Some(value),
                    "host" => found.host = Some(value),
                    _ => {}
                }
            }
        }
        Forwarded {
            proto: found.proto.or_else(|| first("x-forwarded-proto")),
            host: found.host.or_else(|| first("x-forwarded-host")),
        }
    }
}

/// The text of a `Forwarded` header up to its first comma outside a quoted string.
fn first_element(value: &str) -> &str {
    let mut quoted = false;
    for (index, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return &value[..index],
            _ => {}
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn hosts_must_be_uri_authorities() {
        for good in [
            "example.com",
            "example.com:4567",
            "10.0.0.1:4567",
            "[::1]:4567",
            "sidecar-0.svc",
        ] {
            assert!(is_host(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "example.com/x",
            "user@example.com",
            "example.com:port",
            "::1",
            "a\tb",
            "example.com:99999",
            "exa\"mple",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }

    #[test]
    fn forwarded_takes_the_first_entry_and_unquotes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static(
                r#"for=1.2.3.4;Proto=https;host="a.example:8443", for=5.6.7.8;host=b.example"#,
            ),
        );
        headers.insert(
            HeaderName::from_static("x-forwarded-host"),
            HeaderValue::from_static("c.example"),
        );
        assert_eq!(
            Forwarded::of(&headers),
            Forwarded {
                proto: Some("https".into()),
                host: Some("a.example:8443".into())
            }
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https, http"),
        );
        headers.insert(
            HeaderName::from_static("x-forwarded-host"),
            HeaderValue::from_static("c.example, d"),
        );
        assert_eq!(
            Forwarded::of(&headers),
            Forwarded {
                proto: Some("https".into()),
                host: Some("c.example".into())
            }
        );
    }

    use actix_web::http::header::HeaderName;

    #[test]
    fn only_web_schemes() {
        assert_eq!(web_scheme("HTTPS"), Some("https"));
        assert_eq!(web_scheme("javascript"), None);
    }
}
