//! What the host application decides: who the caller is, how large a body may be, and
//! whether the operational endpoints are private.

use std::fmt;
use std::sync::Arc;

use crate::identity::Identity;

/// How the routes behave: the caller's [`Identity`], the body size limit, and whether
/// `/health` (and, once it exists, `/metrics`) needs an identified caller.
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
#[derive(Clone)]
pub struct WebConfig {
    pub(crate) identity: Arc<dyn Identity>,
    pub(crate) body_limit: usize,
    pub(crate) health_requires_identity: bool,
}

impl WebConfig {
    /// The default body limit: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

    /// Identifies callers with `identity`; a body limit of 1 MiB; `/health` open to all.
    pub fn new(identity: impl Identity) -> Self {
        Self { identity: Arc::new(identity), body_limit: Self::DEFAULT_BODY_LIMIT, health_requires_identity: false }
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

    /// Whether `/health` (and `/metrics`, once it exists) answers only identified callers.
    /// Off by default: load balancers and probes usually carry no credentials.
    #[must_use]
    pub fn health_requires_identity(mut self, required: bool) -> Self {
        self.health_requires_identity = required;
        self
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The identity is left out: it may hold secrets (tokens), and it has no `Debug`.
        f.debug_struct("WebConfig")
            .field("body_limit", &self.body_limit)
            .field("health_requires_identity", &self.health_requires_identity)
            .finish_non_exhaustive()
    }
}
