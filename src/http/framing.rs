//! Requests whose framing is ambiguous are refused before any route sees them.
//!
//! actix-http reads a request with both `Content-Length` and `Transfer-Encoding` by its chunked coding and keeps
//! the connection open. A proxy in front may have framed the same bytes by `Content-Length`, so the two disagree on
//! where the next request starts (request smuggling). RFC 9112 §6.1 lets a server refuse such a request and
//! requires it to close the connection afterwards, which is what this does.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::error::ApiError;

pub async fn refuse_ambiguous_framing(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let headers = request.headers();
    if headers.contains_key(header::CONTENT_LENGTH)
        && headers.contains_key(header::TRANSFER_ENCODING)
    {
        tracing::debug!(peer = ?request.peer_addr(), "refused a request with both Content-Length and Transfer-Encoding");
        let response = ApiError::AmbiguousFraming.error_response();
        return Ok(request.into_response(response));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}
