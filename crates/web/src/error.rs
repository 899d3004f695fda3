//! Every way a request can fail, and the one place each becomes an HTTP status.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use graphloop_runtime::{EngineError, RunStatus, StoreError};
use serde::Serialize;
use uuid::Uuid;

use crate::identity::IdentityError;

/// Seconds a client is asked to wait (`Retry-After`) with every 503: admission full, the
/// store down, the engine stopping. The engine cannot say when it will have room again;
/// this is a polite hint, not a promise.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// Why a request failed. Each variant is answered with one status (see
/// [`ResponseError::status_code`]) and a JSON body `{"error": "<kind>", "reason":
/// "<text>"}`; the run conflicts add `"status"`, the run's status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The caller could not be identified (401, with `WWW-Authenticate: Bearer`).
    #[error(transparent)]
    Unauthorized(#[from] IdentityError),
    /// A malformed path, query string, header or JSON body (400); the reason says which
    /// part and why.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the configured limit (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not declared as JSON (415).
    #[error("the request body must be JSON, sent with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// No such run, or it belongs to another user (404): the two answers are the same on
    /// purpose, so that run ids of other users cannot be probed.
    #[error("no run {0}")]
    RunNotFound(Uuid),
    /// No graph of that name (and version) is registered (404).
    #[error("no graph named `{name}`{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    GraphNotFound {
        /// The name asked for.
        name: String,
        /// The version asked for, if any.
        version: Option<u32>,
    },
    /// The graph does not accept the input (or a resumed run the answer) (422).
    #[error("input for graph `{graph}` is invalid: {reason}")]
    InvalidInput {
        /// The graph.
        graph: String,
        /// What is wrong with the input.
        reason: String,
    },
    /// The run has ended, so it cannot be cancelled (409).
    #[error("run {run_id} is {status} already")]
    RunFinished {
        /// The run.
        run_id: Uuid,
        /// How it ended.
        status: RunStatus,
    },
    /// The run is not waiting for an answer, so it cannot be resumed (409).
    #[error("run {run_id} is {status}, not waiting for an answer")]
    NotWaiting {
        /// The run.
        run_id: Uuid,
        /// Its status.
        status: RunStatus,
    },
    /// `GET /metrics` was asked for, but no Prometheus handle was given to
    /// [`WebConfig::metrics`](crate::WebConfig::metrics) (404).
    #[error("metrics are not enabled")]
    MetricsDisabled,
    /// Admission is full: as many runs running and queued as the engine takes (503, with
    /// `Retry-After`).
    #[error("{0}")]
    Overloaded(String),
    /// The idempotency key was used before by this caller for a different request (another
    /// graph or another input): the earlier run is not this one (409).
    #[error("idempotency key {key:?} was used for run {run_id}, started with another graph or input")]
    KeyReused {
        /// The key.
        key: String,
        /// The run started with it.
        run_id: Uuid,
    },
    /// The engine failed in a way that is not the caller's fault: shutting down or
    /// unreachable, its store down (503), or something worse (500).
    #[error(transparent)]
    Engine(EngineError),
    /// A fault of this service itself, such as routes mounted without their state (500).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// The `error` field of the body: a stable, machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RunNotFound(_) => "run_not_found",
            Self::GraphNotFound { .. } => "graph_not_found",
            Self::InvalidInput { .. } => "invalid_input",
            Self::RunFinished { .. } => "run_finished",
            Self::NotWaiting { .. } => "not_waiting",
            Self::Overloaded(_) => "overloaded",
            Self::KeyReused { .. } => "idempotency_key_reused",
            Self::MetricsDisabled => "metrics_not_enabled",
            Self::Engine(_) if self.status_code() == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            Self::Engine(_) | Self::Internal(_) => "internal",
        }
    }
}

impl From<EngineError> for WebError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::UnknownRun(run_id) => Self::RunNotFound(run_id),
            EngineError::UnknownGraph { name, version } => Self::GraphNotFound { name, version },
            EngineError::InvalidInput { graph, reason } => Self::InvalidInput { graph, reason },
            EngineError::RunFinished { run_id, status } => Self::RunFinished { run_id, status },
            EngineError::NotWaiting { run_id, status } => Self::NotWaiting { run_id, status },
            rejected @ EngineError::Rejected { .. } => Self::Overloaded(rejected.to_string()),
            // What reaches the store from a request is its query values: one the database
            // refuses for good is the request's fault, not an outage.
            EngineError::Store(refused @ StoreError::Refused { .. }) => Self::BadRequest(refused.to_string()),
            other => Self::Engine(other),
        }
    }
}

/// The JSON body of every error.
#[derive(Serialize)]
struct Body {
    error: &'static str,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<RunStatus>,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RunNotFound(_) | Self::GraphNotFound { .. } | Self::MetricsDisabled => StatusCode::NOT_FOUND,
            Self::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RunFinished { .. } | Self::NotWaiting { .. } | Self::KeyReused { .. } => StatusCode::CONFLICT,
            // 503, not 429: the queue is shared by every user, so a full one says the
            // service is at capacity, not that this caller sent too much. Clients and
            // proxies read 503 with Retry-After as "later, or elsewhere", which is right
            // when another process of the same service may have room.
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Engine(
                EngineError::ShuttingDown
                | EngineError::Unavailable(_)
                | EngineError::Superseded
                | EngineError::Store(StoreError::Unavailable { .. }),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Engine(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, kind = self.kind(), "request failed on the server's side");
        }
        let mut response = HttpResponse::build(status);
        match self {
            // RFC 6750 section 3: no error code when no credentials were sent.
            Self::Unauthorized(IdentityError::Missing) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
            }
            _ => {}
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is "later, or elsewhere": say when.
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        let run_status = match self {
            Self::RunFinished { status, .. } | Self::NotWaiting { status, .. } => Some(*status),
            _ => None,
        };
        response.json(Body { error: self.kind(), reason: self.to_string(), status: run_status })
    }
}

/// Turns actix's JSON body errors into [`WebError`]s (for `JsonConfig::error_handler`).
pub(crate) fn json_error(error: JsonPayloadError, limit: usize) -> actix_web::Error {
    match error {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => WebError::PayloadTooLarge { limit },
        JsonPayloadError::ContentType => WebError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(error) => WebError::BadRequest(format!("the JSON body is invalid: {error}")),
        other => WebError::BadRequest(format!("the body could not be read: {other}")),
    }
    .into()
}

/// Turns actix's path errors into [`WebError`]s (for `PathConfig::error_handler`).
pub(crate) fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    WebError::BadRequest(format!("the path is invalid: {error}")).into()
}

/// Turns actix's query string errors into [`WebError`]s (for `QueryConfig::error_handler`).
pub(crate) fn query_error(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    WebError::BadRequest(format!("the query string is invalid: {error}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_the_statuses_a_client_can_act_on() {
        let run_id = Uuid::nil();
        let cases = [
            (EngineError::UnknownRun(run_id), StatusCode::NOT_FOUND, "run_not_found"),
            (EngineError::UnknownGraph { name: "g".into(), version: None }, StatusCode::NOT_FOUND, "graph_not_found"),
            (
                EngineError::InvalidInput { graph: "g".into(), reason: "r".into() },
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (EngineError::RunFinished { run_id, status: RunStatus::Completed }, StatusCode::CONFLICT, "run_finished"),
            (EngineError::NotWaiting { run_id, status: RunStatus::Running }, StatusCode::CONFLICT, "not_waiting"),
            (
                EngineError::Rejected { running: 1, queued: 0, capacity: 0 },
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
            ),
            (EngineError::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (EngineError::Store(StoreError::unavailable("down")), StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (EngineError::Store(StoreError::Corrupt("bad row".into())), StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ];
        for (engine, status, kind) in cases {
            let web = WebError::from(engine);
            assert_eq!((web.status_code(), web.kind()), (status, kind), "{web}");
        }
    }

    #[test]
    fn an_overloaded_engine_asks_the_client_to_retry_later() {
        let response = WebError::from(EngineError::Rejected { running: 1, queued: 0, capacity: 0 }).error_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("5"));
    }

    /// Issue 11: only a full queue said when to retry; a store outage or a stopping engine
    /// answered 503 without `Retry-After`.
    #[test]
    fn every_503_says_when_to_retry_and_no_other_status_does() {
        let errors = [
            WebError::from(EngineError::Rejected { running: 1, queued: 0, capacity: 0 }),
            WebError::from(EngineError::ShuttingDown),
            WebError::from(EngineError::Unavailable("the engine thread died".into())),
            WebError::from(EngineError::Superseded),
            WebError::from(EngineError::Store(StoreError::unavailable("down"))),
            WebError::from(EngineError::Store(StoreError::Corrupt("bad row".into()))),
            WebError::BadRequest("bad".into()),
            WebError::RunNotFound(Uuid::nil()),
        ];
        let mut unavailable = 0;
        for error in errors {
            let response = error.error_response();
            let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                unavailable += 1;
                assert_eq!(retry_after, Some("5"), "{error}");
            } else {
                assert_eq!(retry_after, None, "{error}");
            }
        }
        assert_eq!(unavailable, 5);
    }
}
