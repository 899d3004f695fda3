//! The routes: each handler identifies the caller, checks the run is theirs, and makes
//! one or two calls on the engine's handle.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use graphloop_runtime::{Engine, HealthStatus, RunOptions, RunQuery, RunSnapshot, RunStatus};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::WebConfig;
use crate::error::{json_error, path_error, query_error, WebError, RETRY_AFTER_SECS};
use crate::identity::{identify, Caller};
use crate::sse;
use crate::view::{RunPage, RunView};

/// The default page size of `GET /runs`.
const DEFAULT_LIMIT: usize = 50;
/// The largest page size of `GET /runs`.
const MAX_LIMIT: usize = 500;
/// The longest idempotency key, in bytes.
const MAX_KEY_BYTES: usize = 255;
/// The longest graph name a listing filters by, in bytes: longer is a mistake (no graph
/// is named so), not a filter.
const MAX_GRAPH_BYTES: usize = 255;

/// What every handler reaches through `web::Data`.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) config: WebConfig,
}

/// Registers the routes, each resource with its own copy of the state and the extractor
/// settings: `ServiceConfig::app_data` would put them on the host's whole `App`,
/// overriding its own `JsonConfig` for routes that are none of ours.
pub(crate) fn mount(cfg: &mut web::ServiceConfig, engine: Engine, config: WebConfig) {
    let limit = config.body_limit;
    let shared = web::Data::new(Shared { engine, config });
    let json = web::JsonConfig::default().limit(limit).error_handler(move |error, _req| json_error(error, limit));
    let path = web::PathConfig::default().error_handler(path_error);
    let query = web::QueryConfig::default().error_handler(query_error);
    let resource = |at: &str| {
        web::resource(at).app_data(shared.clone()).app_data(json.clone()).app_data(path.clone()).app_data(query.clone())
    };
    cfg.service(resource("/runs").route(web::post().to(start_run)).route(web::get().to(list_runs)))
        .service(resource("/runs/{id}").route(web::get().to(get_run)))
        .service(resource("/runs/{id}/events").route(web::get().to(sse::events)))
        .service(resource("/runs/{id}/cancel").route(web::post().to(cancel_run)))
        .service(resource("/runs/{id}/resume").route(web::post().to(resume_run)))
        .service(resource("/health").route(web::get().to(health)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(resource("/openapi.json").route(web::get().to(openapi_document)));
}

/// The body of `POST /runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)] // a misspelt field (say `idempotencyKey`) must not be ignored
struct StartRequest {
    graph: String,
    input: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// The body of `POST /runs/{id}/resume`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    answer: Value,
}

/// The query of `GET /runs`, as sent; checked by [`ListRequest::query`].
#[derive(Deserialize)]
struct ListRequest {
    status: Option<String>,
    graph: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

impl ListRequest {
    /// The store query for `user_id`, asking for one run more than the page holds, to
    /// learn whether there is a next page.
    fn query(self, user_id: String) -> Result<(RunQuery, usize), WebError> {
        let status = self
            .status
            .map(|status| {
                RunStatus::ALL.into_iter().find(|s| s.as_str() == status).ok_or_else(|| {
                    let known: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                    WebError::BadRequest(format!("`status` must be one of {}, not `{status}`", known.join(", ")))
                })
            })
            .transpose()?;
        let graph = self.graph.map(|graph| store_text("graph", graph, MAX_GRAPH_BYTES)).transpose()?;
        let before = self.before.map(|before| parse_run_id("before", &before)).transpose()?;
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(limit) => limit.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                WebError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{limit}`"))
            })?,
        };
        let query = RunQuery { status, graph, before, limit: limit + 1, ..RunQuery::for_user(user_id) };
        Ok((query, limit))
    }
}

/// A free-text value from the request, as the store can take it: PostgreSQL's text
/// cannot hold a NUL character, and the database refusing it would read as an outage
/// (503, inviting retries) instead of the caller's mistake (400).
fn store_text(what: &str, value: String, max_bytes: usize) -> Result<String, WebError> {
    if value.contains('\0') {
        return Err(WebError::BadRequest(format!("`{what}` must not contain a NUL character")));
    }
    if value.len() > max_bytes {
        return Err(WebError::BadRequest(format!("`{what}` must be at most {max_bytes} bytes, not {}", value.len())));
    }
    Ok(value)
}

/// A run id from the path or the query; `what` names where it came from.
pub(crate) fn parse_run_id(what: &str, raw: &str) -> Result<Uuid, WebError> {
    Uuid::parse_str(raw).map_err(|_| WebError::BadRequest(format!("`{what}` must be a run id (a UUID), not `{raw}`")))
}

/// The run `id`, if it is the caller's; another user's run is [`WebError::RunNotFound`],
/// exactly as a missing one.
pub(crate) async fn owned_run(shared: &Shared, caller: &Caller, id: Uuid) -> Result<RunSnapshot, WebError> {
    let snapshot = shared.engine.status(id).await?;
    if snapshot.run.user.user_id != caller.0.user_id {
        return Err(WebError::RunNotFound(id));
    }
    Ok(snapshot)
}

/// `POST /runs`: starts a run; 201 with its view and its `Location`.
async fn start_run(
    caller: Caller,
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<StartRequest>,
) -> Result<HttpResponse, WebError> {
    let StartRequest { graph, input, idempotency_key } = body.into_inner();
    let mut options = RunOptions::new();
    if let Some(key) = &idempotency_key {
        if key.is_empty() {
            return Err(WebError::BadRequest(format!("idempotency_key must be 1 to {MAX_KEY_BYTES} bytes")));
        }
        options = options.idempotency_key(store_text("idempotency_key", key.clone(), MAX_KEY_BYTES)?);
    }
    let user_id = caller.0.user_id.clone();
    // The key is stored with the run, so a retried request (after a timeout, a crash, on
    // another process of the service) finds the run the first one started.
    let submitted = shared.engine.submit(&graph, &input, caller.0, options).await?;
    let id = submitted.id;
    let snapshot = shared.engine.status(id).await?;
    if !submitted.created && (snapshot.run.graph != graph || snapshot.run.input != input) {
        return Err(WebError::KeyReused { key: idempotency_key.unwrap_or_default(), run_id: id });
    }
    tracing::debug!(%id, user = %user_id, %graph, created = submitted.created, "run started over HTTP");
    let view = RunView::of_snapshot(snapshot);
    // Relative to where the routes are mounted, whatever the host's prefix.
    let location = format!("{}/{id}", req.path().trim_end_matches('/'));
    let mut response = if submitted.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(response.insert_header((header::LOCATION, location)).json(view))
}

/// `GET /runs`: the caller's runs, newest first, a page at a time.
async fn list_runs(
    caller: Caller,
    shared: web::Data<Shared>,
    request: web::Query<ListRequest>,
) -> Result<HttpResponse, WebError> {
    let (query, limit) = request.into_inner().query(caller.0.user_id)?;
    let mut runs = shared.engine.list_runs(query).await?;
    let next = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|run| run.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(RunPage { runs: runs.into_iter().map(RunView::of_record).collect(), next }))
}

/// `GET /runs/{id}`.
async fn get_run(caller: Caller, shared: web::Data<Shared>, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = parse_run_id("id", &id)?;
    let snapshot = owned_run(&shared, &caller, id).await?;
    Ok(HttpResponse::Ok().json(RunView::of_snapshot(snapshot)))
}

/// `POST /runs/{id}/cancel`: 202 with the run as it stands (it ends `cancelled` soon
/// after, if not already); 409 if it has ended.
async fn cancel_run(
    caller: Caller,
    shared: web::Data<Shared>,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let id = parse_run_id("id", &id)?;
    owned_run(&shared, &caller, id).await?;
    shared.engine.cancel(id).await?;
    tracing::debug!(%id, user = %caller.0.user_id, "run cancelled over HTTP");
    let view = RunView::of_snapshot(shared.engine.status(id).await?);
    Ok(HttpResponse::Accepted().json(view))
}

/// `POST /runs/{id}/resume`: answers a waiting run; 202 with the run; 409 if it is not
/// waiting.
async fn resume_run(
    caller: Caller,
    shared: web::Data<Shared>,
    id: web::Path<String>,
    body: web::Json<ResumeRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_run_id("id", &id)?;
    owned_run(&shared, &caller, id).await?;
    shared.engine.resume(id, &body.answer).await?;
    tracing::debug!(%id, user = %caller.0.user_id, "run resumed over HTTP");
    let view = RunView::of_snapshot(shared.engine.status(id).await?);
    Ok(HttpResponse::Accepted().json(view))
}

/// `GET /health`: the engine's latest health report (see `Engine::health`); 503 when
/// it is unhealthy.
async fn health(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, WebError> {
    if shared.config.health_requires_identity {
        identify(&req)?;
    }
    let health = shared.engine.health().await?;
    // A degraded engine still serves (some runs are held up); an unhealthy one cannot make
    // progress, which is what load balancers and orchestrators act on.
    let mut response = match health.status {
        HealthStatus::Healthy | HealthStatus::Degraded => HttpResponse::Ok(),
        HealthStatus::Unhealthy => HttpResponse::ServiceUnavailable(),
    };
    if health.status == HealthStatus::Unhealthy {
        // Like every 503 of these routes.
        response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
    }
    Ok(response.json(health))
}

/// The content type of Prometheus's text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the installed recorder's metrics as Prometheus text (open like
/// `/health`, behind the same switch). The handle only reads the recorder's registry:
/// nothing of the engine is asked, so a blocked engine still shows its figures.
async fn metrics(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, WebError> {
    if shared.config.health_requires_identity {
        identify(&req)?;
    }
    let handle = shared.config.metrics.as_ref().ok_or(WebError::MetricsDisabled)?;
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, PROMETHEUS_TEXT)).body(handle.render()))
}

/// `GET /openapi.json`: the routes' OpenAPI document.
async fn openapi_document(req: HttpRequest) -> Result<HttpResponse, WebError> {
    // Like every route but /health and /metrics, it answers identified callers only.
    identify(&req)?;
    Ok(HttpResponse::Ok().json(crate::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(status: Option<&str>, before: Option<&str>, limit: Option<&str>) -> Result<(RunQuery, usize), WebError> {
        ListRequest {
            status: status.map(Into::into),
            graph: None,
            before: before.map(Into::into),
            limit: limit.map(Into::into),
        }
        .query("alice".into())
    }

    #[test]
    fn a_listing_asks_the_store_for_one_run_more_than_the_page() {
        let (query, limit) = list(Some("waiting"), None, Some("2")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (query.user_id.as_str(), query.status, query.limit, limit),
            ("alice", Some(RunStatus::Waiting), 3, 2)
        );
        let (query, limit) = list(None, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((query.limit, limit), (DEFAULT_LIMIT + 1, DEFAULT_LIMIT));
    }

    #[test]
    fn a_graph_filter_the_store_cannot_take_is_refused() {
        let listing = |graph: String| {
            ListRequest { status: None, graph: Some(graph), before: None, limit: None }.query("alice".into())
        };
        for (graph, needle) in [
            ("con\0tracts".to_owned(), "`graph` must not contain a NUL character"),
            ("g".repeat(MAX_GRAPH_BYTES + 1), "`graph` must be at most 255 bytes, not 256"),
        ] {
            let error = listing(graph).map(drop).unwrap_err();
            assert!(matches!(error, WebError::BadRequest(_)) && error.to_string().contains(needle), "{error}");
        }
        let (query, _) = listing("g".repeat(MAX_GRAPH_BYTES)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(query.graph.map(|g| g.len()), Some(MAX_GRAPH_BYTES));
    }

    #[test]
    fn bad_listing_parameters_say_which_and_why() {
        for (status, before, limit, needle) in [
            (Some("done"), None, None, "`status` must be one of queued, running"),
            (None, Some("nope"), None, "`before` must be a run id"),
            (None, None, Some("0"), "`limit` must be a whole number from 1 to 500"),
            (None, None, Some("501"), "not `501`"),
            (None, None, Some("-1"), "not `-1`"),
        ] {
            let error = list(status, before, limit).map(drop).unwrap_err();
            assert!(matches!(error, WebError::BadRequest(_)) && error.to_string().contains(needle), "{error}");
        }
    }
}
