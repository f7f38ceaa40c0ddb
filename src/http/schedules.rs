//! `/schedules`: create, list, read and delete schedules (operations submitted on a cron; see
//! `daedalus_operations::schedule`). The runner started by `serve` picks a new schedule up within a second.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use daedalus_operations::schedule::request::is_schedule_id;
use daedalus_operations::schedule::{
    Schedule, ScheduleRequestError, ScheduleRules, ScheduleStore, ScheduleStoreError,
};
use serde_json::Value;

use super::AppState;
use super::body::read_json;
use super::error::ApiError;
use super::location::resource_url;
use super::redact::is_secret_key;

/// What the schedule routes need.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub store: Arc<dyn ScheduleStore>,
    pub rules: ScheduleRules,
}

impl From<ScheduleRequestError> for ApiError {
    fn from(error: ScheduleRequestError) -> Self {
        ApiError::BadRequest {
            message: error.to_string(),
            details: error.violations(),
        }
    }
}

impl From<ScheduleStoreError> for ApiError {
    fn from(error: ScheduleStoreError) -> Self {
        match error {
            ScheduleStoreError::Full { .. } => ApiError::Full(error.to_string()),
            ScheduleStoreError::Exists(_) => ApiError::ScheduleExists(error.to_string()),
            ScheduleStoreError::Unavailable(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

/// `POST /schedules`: 201 with `Location: <scheme>://<host>/schedules/<id>` and the schedule.
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if state.is_shutting_down() {
        super::body::discard(&mut payload, state.body_limits.timeout).await;
        return Err(ApiError::Unavailable(
            "the sidecar is shutting down and accepts no new schedules".into(),
        ));
    }
    let body = read_json(&request, payload, state.body_limits).await?;
    let now = Utc::now();
    // A time zone other than UTC is read from the tz database: file I/O, kept off the async workers.
    let rules = state.schedules.rules.clone();
    let mut schedule = tokio::task::spawn_blocking(move || rules.schedule(body, now))
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot check the schedule: {e}")))??;
    // In a shared store a node-local schedule is this sidecar's to run; a cluster-wide one any sidecar's.
    if !schedule.is_global() {
        schedule.sidecar = state.schedules.store.sidecar();
    }
    state.schedules.store.insert(schedule.clone()).await?;
    tracing::info!(schedule = %schedule.id, r#type = schedule.type_id(), cron = %schedule.cron, "schedule created");
    let location = resource_url(
        &request,
        state.trust_forwarded_headers,
        &format!("/schedules/{}", schedule.id),
    );
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(view(&schedule)))
}

/// `GET /schedules`: every schedule, by id.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let schedules = state.schedules.store.list().await?;
    Ok(HttpResponse::Ok().json(schedules.iter().map(view).collect::<Vec<_>>()))
}

/// `GET /schedules/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule = find(&state, &id).await?;
    Ok(HttpResponse::Ok().json(view(&schedule)))
}

/// `DELETE /schedules/{id}`: 204; a run already submitted goes on (cancel it with `DELETE /operations/{id}`). The
/// key goes even when its value cannot be read (written by hand, or by another version): such a schedule is listed
/// nowhere, yet counts against `--max-schedules` until it is deleted.
pub async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !is_schedule_id(&id) {
        return Err(not_found(&id));
    }
    let store = &state.schedules.store;
    let known = store.get(&id).await?;
    if !store.remove(&id).await? {
        return Err(not_found(&id));
    }
    let metrics = &state.executor.services().metrics;
    match &known {
        Some(schedule) => metrics.schedule_forgotten(&schedule.id, schedule.type_id()),
        // Its type is not known; a runner never followed it, so only the freshness series may exist.
        None => metrics.schedule_freshness_forgotten(&id),
    }
    tracing::info!(schedule = %id, readable = known.is_some(), "schedule deleted");
    Ok(HttpResponse::NoContent().finish())
}

async fn find(state: &AppState, id: &str) -> Result<Schedule, ApiError> {
    if !is_schedule_id(id) {
        return Err(not_found(id));
    }
    state
        .schedules
        .store
        .get(id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no schedule {id}"))
}

/// The schedule as clients read it: `nextRun` added, and secrets taken out of the operation, as an operation's
/// echo of its request leaves them out.
fn view(schedule: &Schedule) -> Value {
    let mut view = schedule.view(Utc::now());
    if let Some(operation) = view.get_mut("operation") {
        without_secrets(operation);
    }
    view
}

fn without_secrets(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|key, _| !is_secret_key(key));
            fields.values_mut().for_each(without_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(without_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use actix_web::{App, test};
    use daedalus_operations::schedule::InMemoryScheduleStore;
    use daedalus_operations::types::{TypeOptions, registry};
    use daedalus_operations::{Executor, InMemoryStore, JmxConnector, OperationStore, Services};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::http::{BodyLimits, configure, metrics::HttpMetrics};
    use crate::version::VersionInfo;

    fn state(limit: usize) -> web::Data<AppState> {
        state_with(Arc::new(InMemoryScheduleStore::new(limit)))
    }

    fn state_with(schedules: Arc<dyn ScheduleStore>) -> web::Data<AppState> {
        let registry = Arc::new(registry(TypeOptions::default()));
        let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
        let services = Arc::new(Services {
            source: "test-host".into(),
            jmx: JmxConnector::new(Default::default(), tokio::runtime::Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Default::default(),
            store,
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        let executor = Arc::new(Executor::new(
            services,
            1,
            tokio::runtime::Handle::current(),
        ));
        web::Data::new(AppState {
            registry: Arc::clone(&registry),
            executor,
            version: VersionInfo::of_this_build(),
            body_limits: BodyLimits {
                max_bytes: 1 << 20,
                timeout: Duration::from_secs(5),
            },
            shutting_down: Arc::new(AtomicBool::new(false)),
            cassandra_config: None,
            trust_forwarded_headers: false,
            http_metrics: HttpMetrics::new(),
            schedules: Schedules {
                store: schedules,
                rules: ScheduleRules::new(
                    registry,
                    &daedalus_operations::schedule::SCHEDULABLE_TYPES,
                ),
            },
        })
    }

    fn nightly() -> Value {
        json!({"cron": "0 0 3 * * *", "timezone": "Europe/Berlin",
            "operation": {"type": "backup", "storageLocation": "s3://bucket/c/dc/n",
                "proxySettings": {"useProxy": true, "proxyHost": "p", "proxyPort": 3128,
                    "proxyPassword": "hunter2"}},
            "retention": {"keepLast": 7, "maxAge": "30d"}, "jitter": "5m"})
    }

    #[actix_web::test]
    async fn create_read_list_and_delete() {
        let app = test::init_service(App::new().app_data(state(10)).configure(configure)).await;
        let created = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/schedules")
                .insert_header(("Host", "sidecar:4567"))
                .set_json(nightly())
                .to_request(),
        )
        .await;
        assert_eq!(created.status(), 201);
        let location = created
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let view: Value = test::read_body_json(created).await;
        let id = view["id"].as_str().unwrap().to_string();
        assert_eq!(location, format!("http://sidecar:4567/schedules/{id}"));
        assert_eq!(
            view["operation"]["snapshotTag"],
            daedalus_operations::schedule::request::schedule_tag(&id)
        );
        assert!(
            view["operation"]["snapshotTag"]
                .as_str()
                .unwrap()
                .starts_with(&format!("schedule-{id}")),
            "{view}"
        );
        assert!(view["nextRun"].is_string(), "{view}");
        assert_eq!(view["retention"], json!({"keepLast": 7, "maxAge": "30d"}));
        assert!(!view.to_string().contains("hunter2"), "{view}");
        assert_eq!(view["operation"]["proxySettings"]["proxyHost"], "p");

        let read = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("/schedules/{id}"))
                .to_request(),
        )
        .await;
        assert_eq!(read.status(), 200);
        let read: Value = test::read_body_json(read).await;
        assert_eq!(read["id"], id.as_str());
        assert!(!read.to_string().contains("hunter2"), "{read}");

        let list: Value = test::call_and_read_body_json(
            &app,
            test::TestRequest::get().uri("/schedules").to_request(),
        )
        .await;
        assert_eq!(list.as_array().unwrap().len(), 1);

        let path = format!("/schedules/{id}");
        let deleted =
            test::call_service(&app, test::TestRequest::delete().uri(&path).to_request()).await;
        assert_eq!(deleted.status(), 204);
        for request in [
            test::TestRequest::delete().uri(&path).to_request(),
            test::TestRequest::get().uri(&path).to_request(),
            test::TestRequest::get()
                .uri("/schedules/..%2Fx")
                .to_request(),
        ] {
            let response = test::call_service(&app, request).await;
            assert_eq!(response.status(), 404);
        }
        let list: Value = test::call_and_read_body_json(
            &app,
            test::TestRequest::get().uri("/schedules").to_request(),
        )
        .await;
        assert_eq!(list, json!([]));
    }

    #[actix_web::test]
    async fn bad_bodies_get_a_400_naming_the_fields() {
        let app = test::init_service(App::new().app_data(state(10)).configure(configure)).await;
        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/schedules")
                .set_json(
                    json!({"cron": "0 99 * * *", "operation": {"type": "cleanup"},
                    "retention": {"keepLast": 0}}),
                )
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), 400);
        let body: Value = test::read_body_json(response).await;
        let fields: Vec<_> = body["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            fields,
            ["cron", "operation.type", "retention.keepLast"],
            "{body}"
        );
        assert_eq!(body["code"], "invalid_request");
        let response = test::call_service(
            &app,
            test::TestRequest::put().uri("/schedules").to_request(),
        )
        .await;
        assert_eq!(response.status(), 405);
    }

    #[actix_web::test]
    async fn beyond_the_limit_is_a_409() {
        let app = test::init_service(App::new().app_data(state(1)).configure(configure)).await;
        let post = || {
            test::TestRequest::post()
                .uri("/schedules")
                .set_json(nightly())
                .to_request()
        };
        assert_eq!(test::call_service(&app, post()).await.status(), 201);
        let refused = test::call_service(&app, post()).await;
        assert_eq!(refused.status(), 409);
        let body: Value = test::read_body_json(refused).await;
        assert_eq!(body["code"], "too_many_schedules");
        assert!(
            body["error"].as_str().unwrap().contains("--max-schedules"),
            "{body}"
        );
    }

    /// A schedule of an id that exists already has a code of its own, not that of a full store.
    #[actix_web::test]
    async fn an_existing_id_is_a_409_schedule_exists() {
        use actix_web::ResponseError;
        let response =
            ApiError::from(ScheduleStoreError::Exists("nightly".into())).error_response();
        assert_eq!(response.status(), 409);
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "schedule_exists", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("nightly"),
            "{body}"
        );
    }

    #[actix_web::test]
    async fn no_schedule_is_created_while_shutting_down() {
        let state = state(10);
        state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let schedules = Arc::clone(&state.schedules.store);
        let app = test::init_service(App::new().app_data(state).configure(configure)).await;
        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/schedules")
                .set_json(nightly())
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), 503);
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["code"], "unavailable");
        assert!(schedules.list().await.unwrap().is_empty());
    }

    /// A store holding a key whose value it cannot read (as etcd may): `get` finds nothing, `remove` deletes it.
    #[derive(Debug, Default)]
    struct Unreadable {
        removed: std::sync::Mutex<Vec<String>>,
    }

    impl ScheduleStore for Unreadable {
        fn list(
            &self,
        ) -> futures_util::future::BoxFuture<'_, Result<Vec<Schedule>, ScheduleStoreError>>
        {
            Box::pin(async { Ok(vec![]) })
        }
        fn get<'a>(
            &'a self,
            _id: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<Option<Schedule>, ScheduleStoreError>>
        {
            Box::pin(async { Ok(None) })
        }
        fn insert(
            &self,
            _schedule: Schedule,
        ) -> futures_util::future::BoxFuture<'_, Result<(), ScheduleStoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn remove<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, ScheduleStoreError>> {
            let mut removed = self.removed.lock().unwrap();
            let existed = !removed.iter().any(|gone| gone == id);
            removed.push(id.to_string());
            Box::pin(async move { Ok(existed) })
        }
        fn record_run<'a>(
            &'a self,
            _id: &'a str,
            _run: daedalus_operations::schedule::LastRun,
        ) -> futures_util::future::BoxFuture<'a, Result<(), ScheduleStoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn claim<'a>(
            &'a self,
            _id: &'a str,
            _tick: i64,
            _hold: Duration,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, ScheduleStoreError>> {
            Box::pin(async { Ok(true) })
        }
    }

    /// An undecodable schedule answered 404 to DELETE and so could never be deleted, while it counted against
    /// `--max-schedules`.
    #[actix_web::test]
    async fn a_schedule_that_cannot_be_read_can_still_be_deleted() {
        let store = Arc::new(Unreadable::default());
        let app = test::init_service(
            App::new()
                .app_data(state_with(Arc::clone(&store) as Arc<dyn ScheduleStore>))
                .configure(configure),
        )
        .await;
        let delete = || {
            test::TestRequest::delete()
                .uri("/schedules/garbled")
                .to_request()
        };
        assert_eq!(test::call_service(&app, delete()).await.status(), 204);
        assert_eq!(*store.removed.lock().unwrap(), ["garbled"]);
        // Gone now: a second delete finds nothing.
        assert_eq!(test::call_service(&app, delete()).await.status(), 404);
        let get = test::TestRequest::get()
            .uri("/schedules/garbled")
            .to_request();
        assert_eq!(test::call_service(&app, get).await.status(), 404);
    }
}
