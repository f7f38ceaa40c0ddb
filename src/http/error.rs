//! Every error the API returns, its HTTP status, and its stable machine-readable code, in one place.
//!
//! Body: `{"error": "<what went wrong>", "code": "<stable code>", "details": [{"field": ..., "message": ...}]}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use daedalus_operations::{CancelError, FieldViolation, RequestError, SubmitError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Vec<FieldViolation>,
    },

    #[error("{0}")]
    NotFound(String),

    #[error("{method} is not supported on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },

    #[error("request body too large: the limit is {limit} bytes")]
    PayloadTooLarge { limit: usize },

    /// The body did not arrive within `--request-body-timeout`; the connection is closed after the answer.
    #[error(
        "the request body did not arrive within {}: the limit is --request-body-timeout",
        humantime::format_duration(*limit)
    )]
    RequestTimeout { limit: std::time::Duration },

    #[error("unsupported content type '{0}': send the operation as application/json")]
    UnsupportedMediaType(String),

    #[error("the request has no Content-Type: send the operation as application/json")]
    MissingContentType,

    #[error("{0}")]
    Unavailable(String),

    /// The node already has as many unfinished operations as it admits.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u32,
    },

    /// No bearer token, or one the sidecar does not know (`presented`).
    #[error("{}", if *presented { "the bearer token is not one this sidecar accepts" } else { "this sidecar needs a bearer token: send Authorization: Bearer <token>" })]
    Unauthorized { presented: bool },

    /// A token whose scope does not cover the request.
    #[error("{0}")]
    Forbidden(String),

    /// The sidecar keeps as many of something (schedules) as it admits.
    #[error("{0}")]
    Full(String),

    /// A schedule of this id exists already.
    #[error("{0}")]
    ScheduleExists(String),

    /// Another operation that cannot run beside this one is unfinished.
    #[error("{message}")]
    Conflict {
        message: String,
        operation: uuid::Uuid,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
    details: &'a [FieldViolation],
    /// The operation a conflict is with.
    #[serde(skip_serializing_if = "Option::is_none")]
    operation_id: Option<uuid::Uuid>,
}

impl ApiError {
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            message: format!("{field}: {message}"),
            details: vec![FieldViolation::new(field, message)],
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::UnsupportedMediaType(_) | ApiError::MissingContentType => {
                "unsupported_media_type"
            }
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Full(_) => "too_many_schedules",
            ApiError::ScheduleExists(_) => "schedule_exists",
            ApiError::TooManyRequests { .. } => "too_many_operations",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError::BadRequest {
            message: error.to_string(),
            details: error.violations(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::ShuttingDown => ApiError::Unavailable(error.to_string()),
            SubmitError::Conflict { running, .. } => ApiError::Conflict {
                message: error.to_string(),
                operation: running,
            },
            SubmitError::TooManyUnfinished { .. } => ApiError::TooManyRequests {
                message: error.to_string(),
                retry_after_secs: 5,
            },
            SubmitError::Store(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(error: CancelError) -> Self {
        match error {
            CancelError::NotFound(_) => ApiError::NotFound(error.to_string()),
            CancelError::Elsewhere { id, .. } => ApiError::Conflict {
                message: error.to_string(),
                operation: id,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) | ApiError::MissingContentType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict { .. } | ApiError::Full(_) | ApiError::ScheduleExists(_) => {
                StatusCode::CONFLICT
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            ApiError::BadRequest { details, .. } => details.as_slice(),
            _ => &[],
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::RequestTimeout { .. }) {
            // What is left of the request on the connection cannot be told from the start of the next one.
            response.force_close();
        }
        if let ApiError::Unauthorized { presented } = self {
            // RFC 6750 §3: which scheme to use, and whether the token given was the problem.
            let challenge = if *presented {
                r#"Bearer realm="daedalus", error="invalid_token""#
            } else {
                r#"Bearer realm="daedalus""#
            };
            response.insert_header(("WWW-Authenticate", challenge));
        }
        if let ApiError::MethodNotAllowed { allowed, .. } = self {
            response.insert_header(("Allow", allowed.as_str()));
        }
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        let operation_id = match self {
            ApiError::Conflict { operation, .. } => Some(*operation),
            _ => None,
        };
        response.json(ErrorBody {
            error: self.to_string(),
            code: self.code(),
            details,
            operation_id,
        })
    }
}
