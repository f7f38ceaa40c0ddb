//! `/operations`: submit, list, poll and cancel operations.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use daedalus_operations::operation_store::Page;
use daedalus_operations::{OperationFilter, OperationRecord, OperationState};
use futures_util::StreamExt;
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
    let record = state.executor.submit(prepared).await?;
    let location = operation_url(&request, state.trust_forwarded_headers, &record.id());
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, location));
    Ok(Reader::of(&request).respond(response, &record))
}

/// Who reads an answer, as far as its shape goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Any,
    /// Icarus's own HTTP client (Jersey): an Icarus coordinating a cluster-wide operation over this sidecar, or a
    /// Java tool built on Icarus's client. It refuses fields its classes lack (`echo::icarus_view`).
    Icarus,
}

impl Reader {
    fn of(request: &HttpRequest) -> Reader {
        let agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if agent.starts_with("Jersey/") {
            Reader::Icarus
        } else {
            Reader::Any
        }
    }

    /// Icarus's view, built from the whole object: other readers get the record written directly.
    fn icarus_view(record: &OperationRecord) -> serde_json::Value {
        let mut value = serde_json::to_value(record).unwrap_or_default();
        if let serde_json::Value::Object(operation) = &mut value {
            daedalus_operations::echo::icarus_view(operation);
        }
        value
    }

    fn respond(
        self,
        mut response: actix_web::HttpResponseBuilder,
        record: &OperationRecord,
    ) -> HttpResponse {
        match self {
            Reader::Any => response.json(record),
            Reader::Icarus => response.json(Self::icarus_view(record)),
        }
    }

    fn write(self, out: &mut Vec<u8>, record: &OperationRecord) -> Result<(), serde_json::Error> {
        match self {
            Reader::Any => serde_json::to_writer(out, record),
            Reader::Icarus => serde_json::to_writer(out, &Self::icarus_view(record)),
        }
    }
}

/// `GET /operations?type=..&state=..&limit=..&cursor=..`: newest first. Filters may repeat and may hold
/// comma-separated lists; `status` is accepted as another name for `state` (the Go client sends it).
///
/// Without `limit` the whole list comes back, as from Icarus. With it, at most `limit` operations, and when more
/// match, an `X-Next-Cursor` header whose value, sent back as `cursor`, asks for the next ones.
pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = parse_list_query(request.query_string())?;
    // One more than asked tells whether there is a next page.
    let page = Page {
        before: query.cursor,
        limit: query.limit.map(|limit| limit.saturating_add(1)),
    };
    let mut records = state
        .executor
        .services()
        .store
        .list_page(&query.filter, page);
    let mut response = read_response(&state);
    if let Some(limit) = query.limit
        && records.len() > limit
    {
        records.truncate(limit);
        if let Some(last) = records.last() {
            response.insert_header((NEXT_CURSOR, encode_cursor(last.sequence())));
        }
    }
    let reader = Reader::of(&request);
    if records.len() <= LIST_CHUNK && reader == Reader::Any {
        return Ok(response.json(records));
    }
    Ok(response
        .content_type("application/json")
        .streaming(json_array(records, reader)))
}

/// The response header naming where the next page starts.
pub const NEXT_CURSOR: &str = "X-Next-Cursor";

/// Set (to `true`) on reads answered while the shared store (etcd) cannot be reached: the operations are as this
/// sidecar last saw them.
pub const STALE: &str = "X-Daedalus-Stale";

/// A 200 for a read of the store, marked when what it holds may be out of date.
fn read_response(state: &AppState) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    if state.executor.services().store.is_stale() {
        response.insert_header((STALE, "true"));
    }
    response
}

/// Records rendered per chunk of a streamed list.
const LIST_CHUNK: usize = 256;

/// A long list as a JSON array written a chunk at a time while it is sent, so a list of 100,000 operations does
/// not hold its whole text (about 400 bytes each) in memory, once per concurrent request.
fn json_array(
    records: Vec<Arc<OperationRecord>>,
    reader: Reader,
) -> impl futures_util::Stream<Item = Result<web::Bytes, serde_json::Error>> {
    let chunks = records.len().div_ceil(LIST_CHUNK).max(1);
    futures_util::stream::iter(0..chunks).map(move |chunk| {
        let start = chunk * LIST_CHUNK;
        let end = (start + LIST_CHUNK).min(records.len());
        let mut text = Vec::with_capacity((end - start) * 512 + 2);
        if chunk == 0 {
            text.push(b'[');
        }
        for (at, record) in records[start..end].iter().enumerate() {
            if start + at > 0 {
                text.push(b',');
            }
            reader.write(&mut text, record)?;
        }
        if chunk + 1 == chunks {
            text.push(b']');
        }
        Ok(web::Bytes::from(text))
    })
}

struct ListQuery {
    filter: OperationFilter,
    limit: Option<usize>,
    cursor: Option<u64>,
}

/// A cursor is the creation sequence number of the last operation of a page, in a form clients should not
/// take apart (so it may change).
fn encode_cursor(sequence: u64) -> String {
    format!("{CURSOR_PREFIX}{sequence:x}")
}

const CURSOR_PREFIX: &str = "c1.";

fn decode_cursor(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix(CURSOR_PREFIX)?, 16).ok()
}

fn parse_list_query(query: &str) -> Result<ListQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_field("query", format!("cannot be parsed: {e}")))?;
    let mut filter = OperationFilter::default();
    let mut limit = None;
    let mut cursor = None;
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
            "limit" => {
                let parsed = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
                limit = Some(parsed.ok_or_else(|| {
                    ApiError::bad_field(
                        "limit",
                        format!("'{value}' is not a positive whole number of operations"),
                    )
                })?);
            }
            "cursor" => {
                cursor = Some(decode_cursor(value.trim()).ok_or_else(|| {
                    ApiError::bad_field(
                        "cursor",
                        format!(
                            "'{value}' is not a cursor this sidecar returned (send the {NEXT_CURSOR} header's value as it is)"
                        ),
                    )
                })?);
            }
            // Unknown parameters are ignored, as Icarus ignores them.
            _ => {}
        }
    }
    Ok(ListQuery {
        filter,
        limit,
        cursor,
    })
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::bad_field("id", format!("'{text}' is not an operation id (a UUID)")))
}

fn not_found(id: &Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "no operation {id}: it never existed here, or it expired, or it finished long enough ago that newer \
         operations took its place (--max-stored-operations)"
    ))
}

/// `GET /operations/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .executor
        .services()
        .store
        .get(&id)
        .ok_or_else(|| not_found(&id))?;
    Ok(Reader::of(&request).respond(read_response(&state), &record))
}

/// `DELETE /operations/{id}`: asks the operation to stop; 202 because it ends CANCELLED a moment later.
pub async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    state.executor.cancel(&id).await?;
    Ok(HttpResponse::Accepted().finish())
}
