//! An HTTP client that checks every response against `openapi.yaml`: the path and method are documented, the
//! status is one the spec lists for them, and the body validates against the schema the spec gives for it.

use std::sync::OnceLock;

use reqwest::Method;
use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub struct Spec {
    pub document: Value,
}

pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("openapi.yaml is readable");
        let document: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is valid YAML");
        Spec { document }
    })
}

impl Spec {
    /// The documented path template matching `path`, e.g. `/operations/{id}` for `/operations/abc`.
    pub fn template_for(&self, path: &str) -> Option<String> {
        let paths = self.document["paths"].as_object()?;
        // The server ignores a trailing slash, as the spec's description says.
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let segments: Vec<_> = path.split('/').collect();
        paths
            .keys()
            .find(|template| {
                let parts: Vec<_> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(p, s)| {
                        p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty())
                    })
            })
            .cloned()
    }

    /// Follows a `$ref` to `#/components/...` if `value` is one.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}"))
            }
            None => value,
        }
    }

    /// Validates `body` against `schema`, with the spec's components in scope for `$ref`s.
    pub fn validate(&self, schema: &Value, body: &Value) -> Result<(), String> {
        let mut root = schema.clone();
        root["components"] = self.document["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema does not compile: {e}"))?;
        let errors: Vec<_> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// Panics unless the response is exactly as the spec documents it.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let context = format!("{method} {path} -> {status}");
        // HEAD is answered wherever GET is, as the spec's description says: GET's statuses and headers, no body.
        let documented_method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        let operation = self.template_for(path).and_then(|template| {
            self.document["paths"][&template]
                .get(documented_method.as_str().to_lowercase())
                .cloned()
        });
        let Some(operation) = operation else {
            // Undocumented path or method: the spec's description promises 404 / 405 with an Error, or 204 for OPTIONS.
            match status {
                204 if method == Method::OPTIONS => return,
                404 | 405 if method == Method::HEAD => {
                    assert!(body.is_empty(), "{context}: HEAD answered with a body");
                    return;
                }
                404 | 405 => {
                    let json: Value = serde_json::from_slice(body)
                        .unwrap_or_else(|e| panic!("{context}: body is not JSON: {e}"));
                    let error = serde_json::json!({"$ref": "#/components/schemas/Error"});
                    self.validate(&error, &json)
                        .unwrap_or_else(|e| panic!("{context}: {e}\nbody: {json}"));
                    return;
                }
                _ => panic!("{context}: undocumented path or method answered with {status}"),
            }
        };
        let response = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| {
                panic!("{context}: status {status} is not documented for this operation")
            });
        let response = self.resolve(response);
        if method == Method::HEAD {
            assert!(body.is_empty(), "{context}: HEAD answered with a body");
        }
        match response
            .get("content")
            .and_then(Value::as_object)
            .filter(|_| method != Method::HEAD)
        {
            None => assert!(
                body.is_empty(),
                "{context}: documented without a body, but got {} bytes",
                body.len()
            ),
            Some(content) => {
                let media = content.get(&content_type).unwrap_or_else(|| {
                    panic!("{context}: content type '{content_type}' is not documented")
                });
                if content_type == "application/json" {
                    let json: Value = serde_json::from_slice(body)
                        .unwrap_or_else(|e| panic!("{context}: body is not JSON: {e}"));
                    self.validate(&media["schema"], &json).unwrap_or_else(|e| {
                        panic!("{context}: body does not match the spec:\n{e}\nbody: {json}")
                    });
                }
            }
        }
        if let Some(documented) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in documented {
                if header["required"] == true {
                    assert!(
                        headers.contains_key(name.as_str()),
                        "{context}: required header {name} missing"
                    );
                }
            }
        }
    }
}

/// A response that passed the spec check.
#[derive(Debug)]
pub struct Checked {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Checked {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct SpecClient {
    base_url: String,
    http: Client,
}

impl SpecClient {
    pub fn new(base_url: &str) -> Self {
        daedalus_operations::crypto::install_default_provider();
        Self {
            base_url: base_url.to_string(),
            http: Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Sends a request; `path_and_query` may carry a query string.
    pub fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Checked {
        match body {
            Some((content_type, bytes)) => self.send_with(
                method,
                path_and_query,
                &[("content-type", content_type)],
                Some(bytes),
            ),
            None => self.send_with(method, path_and_query, &[], None),
        }
    }

    /// Sends a request with these headers (and no others but what the HTTP client adds).
    pub fn send_with(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Checked {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base_url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(bytes) = body {
            request = request.body(bytes);
        }
        let response: Response = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().expect("response body").to_vec();
        let found = super::secrets::found_in(&String::from_utf8_lossy(&body));
        assert!(
            found.is_empty(),
            "{method} {path_and_query} answered with secrets: {found:?}"
        );
        let path = path_and_query.split('?').next().unwrap_or_default();
        spec().check(&method, path, status, &headers, &body);
        Checked {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Checked {
        self.send(Method::GET, path, None)
    }

    pub fn delete(&self, path: &str) -> Checked {
        self.send(Method::DELETE, path, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Checked {
        self.send(
            Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    /// Submits an operation, asserting it was accepted; returns the operation object.
    pub fn submit(&self, body: Value) -> Value {
        let response = self.post_json("/operations", &body);
        assert_eq!(
            response.status,
            201,
            "{body} was not accepted: {}",
            response.text()
        );
        response.json()
    }

    pub fn operation(&self, id: &str) -> Value {
        let response = self.get(&format!("/operations/{id}"));
        assert_eq!(
            response.status,
            200,
            "GET /operations/{id}: {}",
            response.text()
        );
        response.json()
    }
}
