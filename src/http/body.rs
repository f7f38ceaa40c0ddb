//! Reading a JSON request body: content type checked, size and time bounded, syntax errors reported with their
//! position.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web;
use futures_util::StreamExt;
use serde_json::Value;

use super::error::ApiError;

/// `application/json` and `application/<anything>+json`, with or without parameters. A missing content type is
/// refused too (as Icarus refused it): a browser sends a cross-site POST without a preflight only when its type
/// is missing or form-like, so requiring JSON makes every cross-site submission ask first; whether the answer
/// lets it through is the CORS policy's say (`--cors-allowed-origins`: the default `*` does).
fn check_content_type(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::MissingContentType);
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_string()))
    }
}

/// How much of a body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the end of the head to the end of the body. Without it, clients that send a head and then part of
    /// a body hold a connection, its buffers and a file descriptor for ever.
    pub timeout: Duration,
}

pub async fn read_json(
    request: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Value, ApiError> {
    match tokio::time::timeout(limits.timeout, read_json_untimed(request, payload, limits)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::debug!(limit = ?limits.timeout, peer = ?request.peer_addr(), "request body too slow");
            Err(ApiError::RequestTimeout {
                limit: limits.timeout,
            })
        }
    }
}

async fn read_json_untimed(
    request: &HttpRequest,
    mut payload: web::Payload,
    limits: BodyLimits,
) -> Result<Value, ApiError> {
    let limit = limits.max_bytes;
    if let Err(error) = check_content_type(request) {
        discard(&mut payload, limits.timeout).await;
        return Err(error);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        discard(&mut payload, limits.timeout).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            message: format!("cannot read the request body: {e}"),
            details: vec![],
        })?;
        if body.len() + chunk.len() > limit {
            discard(&mut payload, limits.timeout).await;
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            message: "the request body is empty: send a JSON object with a \"type\"".into(),
            details: vec![],
        });
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        message: format!("malformed JSON: {e}"),
        details: vec![],
    })
}

/// Most clients only read the response once they have sent the whole body; answering 413 before that makes them
/// see a broken pipe instead of the error. So read (and drop) a rejected body, up to a bound past which we close
/// the connection rather than keep reading. Time is bounded too: a body left unread when the answer goes out makes
/// actix close the connection after it.
const DISCARD_AT_MOST: usize = 64 * 1024 * 1024;

pub async fn discard(payload: &mut web::Payload, timeout: Duration) {
    let drain = async {
        let mut discarded = 0;
        while discarded < DISCARD_AT_MOST {
            match payload.next().await {
                Some(Ok(chunk)) => discarded += chunk.len(),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}
