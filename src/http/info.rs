//! Version, health and the API description.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

const OPENAPI: &str = include_str!("../../openapi.yaml");

/// `GET /version` and `GET /version/sidecar`.
pub async fn version(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.version)
}

/// `GET /health/live`: the process is up and serving HTTP.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// `GET /health/ready`: the sidecar accepts operations and reaches Cassandra over JMX.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.is_shutting_down() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "DOWN", "reason": "the sidecar is shutting down"}));
    }
    match state
        .cassandra_answers(std::time::Duration::from_secs(5))
        .await
    {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "UP"})),
        Err(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({"status": "DOWN", "reason": reason}))
        }
    }
}

/// `GET /openapi.yaml`: the contract this server keeps.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI)
}
