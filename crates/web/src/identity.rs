//! Who is asking: the [`Identity`] the host application plugs in, the bearer-token one,
//! and the extractor that runs it before anything else of a request.

use std::fmt;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use graphloop_core::UserContext;

use crate::error::WebError;
use crate::handlers::Shared;

/// Tells who sent a request. Called once per request, before its body is read.
///
/// The host application implements it over whatever it already trusts (a session, a
/// verified JWT, a header set by an authenticating proxy). A closure
/// `Fn(&HttpRequest) -> Result<UserContext, IdentityError>` is one too.
pub trait Identity: Send + Sync + 'static {
    /// The user behind `req`, or why there is none (answered 401).
    fn identify(&self, req: &HttpRequest) -> Result<UserContext, IdentityError>;
}

impl<F> Identity for F
where
    F: Fn(&HttpRequest) -> Result<UserContext, IdentityError> + Send + Sync + 'static,
{
    fn identify(&self, req: &HttpRequest) -> Result<UserContext, IdentityError> {
        self(req)
    }
}

/// Why a caller could not be identified. Always answered 401 with
/// `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The request carries no credentials.
    #[error("the request carries no credentials")]
    Missing,
    /// The request carries credentials that are malformed or not accepted.
    #[error("the credentials were not accepted: {0}")]
    Rejected(String),
}

/// Identifies callers by `Authorization: Bearer <token>`, from a fixed table of tokens.
///
/// Good for services with a few machine clients and for tests; an application with real
/// users implements [`Identity`] over its own sessions instead.
///
/// ```
/// use graphloop_web::{BearerTokens, UserContext};
///
/// let tokens = BearerTokens::new()
///     .token("alice-secret", UserContext::new("alice").with_tenant("acme"))
///     .token("bob-secret", UserContext::new("bob"));
/// assert_eq!(tokens.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct BearerTokens {
    // A list, not a map: a lookup compares every token in constant time, so the time an
    // answer takes says nothing about how much of a guessed token was right.
    tokens: Vec<(String, UserContext)>,
}

impl BearerTokens {
    /// No tokens: every caller is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `user` (replacing an earlier entry for the same token).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>, user: UserContext) -> Self {
        let token = token.into();
        self.tokens.retain(|(known, _)| *known != token);
        self.tokens.push((token, user));
        self
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn user(&self, token: &str) -> Option<&UserContext> {
        // No early exit: every entry is compared whether or not one matched already.
        self.tokens.iter().fold(None, |found, (known, user)| {
            let matches = constant_time_eq(known.as_bytes(), token.as_bytes());
            found.or(matches.then_some(user))
        })
    }
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets: never in logs.
        f.debug_struct("BearerTokens").field("tokens", &self.tokens.len()).finish()
    }
}

impl Identity for BearerTokens {
    fn identify(&self, req: &HttpRequest) -> Result<UserContext, IdentityError> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Err(IdentityError::Missing);
        };
        let value = value
            .to_str()
            .map_err(|_| IdentityError::Rejected("the Authorization header is not visible ASCII".into()))?;
        // The scheme is case-insensitive (RFC 7235 section 2.1).
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(IdentityError::Rejected("the Authorization header is not `Bearer <token>`".into())),
        };
        if token.is_empty() {
            return Err(IdentityError::Rejected("the bearer token is empty".into()));
        }
        self.user(token).cloned().ok_or_else(|| IdentityError::Rejected("unknown bearer token".into()))
    }
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The identified caller of a request. Put it first among a handler's arguments: actix
/// extracts arguments in order and answers the first failure, so an unidentified caller
/// gets 401 before its path, query or body is even looked at.
pub(crate) struct Caller(pub(crate) UserContext);

impl FromRequest for Caller {
    type Error = WebError;
    type Future = Ready<Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(identify(req).map(Caller))
    }
}

/// Runs the configured identity on `req`.
pub(crate) fn identify(req: &HttpRequest) -> Result<UserContext, WebError> {
    let shared = req
        .app_data::<web::Data<Shared>>()
        .ok_or_else(|| WebError::Internal("the graphloop routes were mounted without their state".into()))?;
    Ok(shared.config.identity.identify(req)?)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn tokens() -> BearerTokens {
        BearerTokens::new().token("alpha", UserContext::new("alice")).token("beta", UserContext::new("bob"))
    }

    fn identify(header: Option<&str>) -> Result<UserContext, IdentityError> {
        let mut req = TestRequest::default();
        if let Some(value) = header {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        tokens().identify(&req.to_http_request())
    }

    #[test]
    fn a_known_bearer_token_names_its_user_whatever_the_scheme_case() {
        assert_eq!(identify(Some("Bearer alpha")).map(|u| u.user_id), Ok("alice".into()));
        assert_eq!(identify(Some("bearer beta")).map(|u| u.user_id), Ok("bob".into()));
    }

    #[test]
    fn missing_malformed_and_unknown_credentials_are_refused() {
        assert_eq!(identify(None), Err(IdentityError::Missing));
        assert!(matches!(identify(Some("Basic YWxpY2U6cHc=")), Err(IdentityError::Rejected(_))));
        assert!(matches!(identify(Some("Bearer")), Err(IdentityError::Rejected(_))));
        assert!(matches!(identify(Some("Bearer   ")), Err(IdentityError::Rejected(_))));
        assert!(matches!(identify(Some("Bearer alph")), Err(IdentityError::Rejected(_))));
        assert!(matches!(identify(Some("Bearer alphaa")), Err(IdentityError::Rejected(_))));
    }

    #[test]
    fn a_token_given_twice_keeps_its_last_user_and_debug_shows_no_token() {
        let tokens = tokens().token("alpha", UserContext::new("carol"));
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.user("alpha").map(|u| u.user_id.as_str()), Some("carol"));
        assert!(!format!("{tokens:?}").contains("alpha"));
    }
}
