//! What the host application decides: who the caller is, how large a body may be,
//! whether metrics are served, and whether the operational endpoints are private.

use std::fmt;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::identity::Identity;

/// How the routes behave: the caller's [`Identity`], the body size limit, the Prometheus
/// handle `/metrics` renders (if any), and whether `/health` and `/metrics` need an
/// identified caller.
///
/// There is no `Default`: the identity has no safe default (one that lets everybody in
/// would be a hole nobody asked for), so [`WebConfig::new`] takes it.
///
/// ```
/// use graphloop_web::{BearerTokens, UserContext, WebConfig};
///
/// let _config = WebConfig::new(BearerTokens::new().token("s3cret", UserContext::new("alice")))
///     .body_limit(256 * 1024)
///     .health_requires_identity(true);
/// ```
///
/// Serving `/metrics`: the application installs the Prometheus recorder (once per
/// process) and hands its handle over.
///
/// ```no_run
/// use graphloop_web::{BearerTokens, UserContext, WebConfig};
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let handle = PrometheusBuilder::new().install_recorder()?;
/// graphloop_runtime::describe_metrics();
/// let _config = WebConfig::new(BearerTokens::new().token("s3cret", UserContext::new("alice"))).metrics(handle);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WebConfig {
    pub(crate) identity: Arc<dyn Identity>,
    pub(crate) body_limit: usize,
    pub(crate) health_requires_identity: bool,
    pub(crate) metrics: Option<PrometheusHandle>,
}

impl WebConfig {
    /// The default body limit: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

    /// Identifies callers with `identity`; a body limit of 1 MiB; `/health` open to all;
    /// no metrics (`/metrics` answers 404).
    pub fn new(identity: impl Identity) -> Self {
        Self {
            identity: Arc::new(identity),
            body_limit: Self::DEFAULT_BODY_LIMIT,
            health_requires_identity: false,
            metrics: None,
        }
    }

    /// Identifies callers with `identity` instead.
    #[must_use]
    pub fn identity(mut self, identity: impl Identity) -> Self {
        self.identity = Arc::new(identity);
        self
    }

    /// The largest JSON body accepted, in bytes; a larger one is answered 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Whether `/health` and `/metrics` answer only identified callers. Off by default:
    /// load balancers, probes and Prometheus scrapers usually carry no credentials.
    #[must_use]
    pub fn health_requires_identity(mut self, required: bool) -> Self {
        self.health_requires_identity = required;
        self
    }

    /// Serves `GET /metrics` as Prometheus text rendered from `handle` (the handle of the
    /// recorder the application installed). Without it, `/metrics` answers 404.
    #[must_use]
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The identity is left out: it may hold secrets (tokens), and it has no `Debug`.
        f.debug_struct("WebConfig")
            .field("body_limit", &self.body_limit)
            .field("health_requires_identity", &self.health_requires_identity)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}
