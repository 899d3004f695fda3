//! Per-node policies: how often a failing node is retried, and how long it may run.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::error::NodeError;

type RetryPredicate = dyn Fn(&NodeError) -> bool + Send + Sync;

/// How a node is retried when an attempt fails.
///
/// Defaults (the same as LangGraph's): 3 attempts, 500 ms before the first retry, each
/// wait twice the previous one, at most 128 s, with jitter. Only errors for which
/// [`NodeError::is_retryable`] holds are retried (retryable errors, timeouts, panics),
/// unless [`RetryPolicy::retry_if`] says otherwise; fatal errors never are.
///
/// The wait before retry `n` (the first retry is `n = 1`) is
/// `min(initial_interval * backoff_factor^(n-1), max_interval)`; jitter then adds up to
/// 25 % of it (never beyond `max_interval`), derived from the run, node and attempt so a
/// run's schedule is reproducible while parallel runs are spread apart.
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_interval: Duration,
    backoff_factor: f64,
    max_interval: Duration,
    jitter: bool,
    retry_if: Option<Arc<RetryPredicate>>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_interval: Duration::from_millis(500),
            backoff_factor: 2.0,
            max_interval: Duration::from_secs(128),
            jitter: true,
            retry_if: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// One attempt, no retries.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// Total attempts, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The wait before the first retry.
    #[must_use]
    pub fn initial_interval(mut self, interval: Duration) -> Self {
        self.initial_interval = interval;
        self
    }

    /// The factor each wait grows by (at least 1.0).
    #[must_use]
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// The longest wait between attempts.
    #[must_use]
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }

    /// Whether to add jitter to waits.
    #[must_use]
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Which errors to retry, instead of [`NodeError::is_retryable`]. Cancellation is
    /// never retried, whatever the predicate says.
    #[must_use]
    pub fn retry_if(mut self, predicate: impl Fn(&NodeError) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Total attempts allowed.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a failure of attempt `attempt` with `error` should be retried.
    pub fn should_retry(&self, attempt: u32, error: &NodeError) -> bool {
        if attempt >= self.max_attempts
            || matches!(error.kind, crate::NodeErrorKind::Cancelled | crate::NodeErrorKind::Interrupt)
        {
            return false;
        }
        match &self.retry_if {
            Some(predicate) => predicate(error),
            None => error.is_retryable(),
        }
    }

    /// The wait after failed attempt `attempt` (1-based), for the task identified by
    /// `seed` (any stable value: the run id and node, say).
    pub fn delay(&self, attempt: u32, seed: impl Hash) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial_interval.as_secs_f64() * self.backoff_factor.powi(exponent);
        let max = self.max_interval.as_secs_f64();
        let mut secs = base.min(max);
        if self.jitter {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (seed, attempt).hash(&mut hasher);
            let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
            secs = (secs * (1.0 + 0.25 * unit)).min(max);
        }
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_interval)
    }

    /// Why this policy is unusable, if it is.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.max_attempts == 0 {
            Some("max_attempts must be at least 1".into())
        } else if !self.backoff_factor.is_finite() || self.backoff_factor < 1.0 {
            Some(format!("backoff_factor must be a finite number >= 1, not {}", self.backoff_factor))
        } else if self.max_interval < self.initial_interval {
            Some("max_interval must not be shorter than initial_interval".into())
        } else {
            None
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_interval", &self.initial_interval)
            .field("backoff_factor", &self.backoff_factor)
            .field("max_interval", &self.max_interval)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// The policies of one node.
#[derive(Debug, Clone, Default)]
pub struct NodePolicy {
    /// How the node is retried.
    pub retry: RetryPolicy,
    /// How long one attempt may run before it is dropped (`None`: no limit).
    pub timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_without_jitter() {
        let policy = RetryPolicy::new()
            .jitter(false)
            .initial_interval(Duration::from_millis(100))
            .backoff_factor(3.0)
            .max_interval(Duration::from_secs(1));
        let delays: Vec<_> = (1..=4).map(|a| policy.delay(a, "seed")).collect();
        assert_eq!(
            delays,
            [
                Duration::from_millis(100),
                Duration::from_millis(300),
                Duration::from_millis(900),
                Duration::from_secs(1)
            ]
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_under_the_cap() {
        let policy = RetryPolicy::new().initial_interval(Duration::from_millis(400));
        for seed in 0..200u32 {
            let delay = policy.delay(1, seed);
            assert!(delay >= Duration::from_millis(400) && delay <= Duration::from_millis(500), "{delay:?}");
        }
        let capped = RetryPolicy::new().initial_interval(Duration::from_secs(1)).max_interval(Duration::from_secs(1));
        assert!((0..50u32).all(|seed| capped.delay(5, seed) == Duration::from_secs(1)));
        assert_eq!(policy.delay(2, "x"), policy.delay(2, "x"), "jitter is reproducible");
    }

    #[test]
    fn only_retryable_errors_are_retried_and_only_within_the_budget() {
        let policy = RetryPolicy::new().max_attempts(3);
        assert!(policy.should_retry(1, &NodeError::retryable("blip")));
        assert!(policy.should_retry(2, &NodeError::timeout(Duration::from_secs(1))));
        assert!(!policy.should_retry(3, &NodeError::retryable("blip")));
        assert!(!policy.should_retry(1, &NodeError::fatal("bad input")));
        assert!(!policy.should_retry(1, &NodeError::cancelled()));
        let custom = RetryPolicy::new().retry_if(|e| e.message.contains("429"));
        assert!(custom.should_retry(1, &NodeError::fatal("HTTP 429")));
        assert!(!custom.should_retry(1, &NodeError::retryable("HTTP 500")));
    }

    #[test]
    fn unusable_policies_are_explained() {
        assert!(RetryPolicy::new().max_attempts(0).problem().is_some());
        assert!(RetryPolicy::new().backoff_factor(0.5).problem().is_some());
        assert!(RetryPolicy::new().backoff_factor(f64::NAN).problem().is_some());
        assert!(RetryPolicy::new().max_interval(Duration::ZERO).problem().is_some());
        assert!(RetryPolicy::new().problem().is_none());
    }
}
