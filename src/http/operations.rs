//! `/operations`: submit, list, poll and cancel operations.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use daedalus_operations::{OperationFilter, OperationRecord, OperationState};
use uuid::Uuid;

use super::AppState;
use super::body::read_json;
use super::error::ApiError;
use super::location::operation_url;

/// `POST /operations`: 201 with an absolute `Location` (the Instaclustr operator reads the id from it) and the
/// operation in the body (CassKop reads `id` from it).
pub async fn submit(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if state.is_shutting_down() {
        super::body::discard(&mut payload, state.body_limits.timeout).await;
        return Err(ApiError::Unavailable(
            "the sidecar is shutting down and accepts no new operations".into(),
        ));
    }
    let body = read_json(&request, payload, state.body_limits).await?;
    let prepared = state.registry.prepare(body)?;
    let record = state.executor.submit(prepared)?;
    let location = operation_url(&request, state.trust_forwarded_headers, &record.id());
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(record.as_ref()))
}

/// `GET /operations?type=..&state=..`: newest first. Filters may repeat and may hold comma-separated lists;
/// `status` is accepted as another name for `state` (the Go client sends it).
pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(request.query_string())?;
    let records: Vec<Arc<OperationRecord>> = state.executor.services().store.list(&filter);
    Ok(HttpResponse::Ok().json(records))
}

fn parse_filter(query: &str) -> Result<OperationFilter, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_field("query", format!("cannot be parsed: {e}")))?;
    let mut filter = OperationFilter::default();
    for (name, value) in &pairs {
        let values = value.split(',').map(str::trim).filter(|v| !v.is_empty());
        match name.as_str() {
            // Any type is accepted, known or not, as Icarus accepts it: clients filter on types this build may
            // not offer (e.g. `list`), and get an empty list.
            "type" => filter.types.extend(values.map(str::to_string)),
            "state" | "status" => {
                for text in values {
                    let parsed: OperationState =
                        text.parse()
                            .map_err(|e: daedalus_operations::state::UnknownState| {
                                ApiError::bad_field(name, e.to_string())
                            })?;
                    filter.states.insert(parsed);
                }
            }
            // Unknown parameters are ignored, as Icarus ignores them.
            _ => {}
        }
    }
    Ok(filter)
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::bad_field("id", format!("'{text}' is not an operation id (a UUID)")))
}

fn not_found(id: &Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "no operation {id}: it never existed here or it expired"
    ))
}

/// `GET /operations/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .executor
        .services()
        .store
        .get(&id)
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(record.as_ref()))
}

/// `DELETE /operations/{id}`: asks the operation to stop; 202 because it ends CANCELLED a moment later.
pub async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    state.executor.cancel(&id).ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Accepted().finish())
}
