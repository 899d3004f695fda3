//! Engine configuration, with defaults derived from the machine.

use std::time::Duration;

use crate::memory::MemoryStoreFactory;
use crate::store::{Retention, StoreFactory};

/// How the engine runs. Start from [`EngineConfig::new`] (in-memory store, defaults
/// below) and change what you need.
pub struct EngineConfig {
    pub(crate) store: Box<dyn StoreFactory>,
    pub(crate) durability: Durability,
    pub(crate) admission: AdmissionConfig,
    pub(crate) restarts: RestartPolicy,
    pub(crate) persister: PersisterConfig,
    pub(crate) health: HealthConfig,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) finish_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("store", &self.store.describe())
            .field("durability", &self.durability)
            .field("admission", &self.admission)
            .field("restarts", &self.restarts)
            .field("persister", &self.persister)
            .field("health", &self.health)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("finish_timeout", &self.finish_timeout)
            .finish()
    }
}

impl EngineConfig {
    /// The embedded in-memory store and the default limits.
    pub fn new() -> Self {
        Self {
            store: Box::new(MemoryStoreFactory),
            durability: Durability::Sync,
            admission: AdmissionConfig::default(),
            restarts: RestartPolicy::default(),
            persister: PersisterConfig::default(),
            health: HealthConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            finish_timeout: Duration::from_secs(30),
        }
    }

    /// Where runs, events and checkpoints are stored (e.g. `graphloop_postgres::PgStoreConfig`).
    #[must_use]
    pub fn store(mut self, factory: impl StoreFactory) -> Self {
        self.store = Box::new(factory);
        self
    }

    /// When a step's commit must be durable before the next step starts (see
    /// [`Durability`]; `Sync` by default).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How many runs may run at once (each on its own arbiter: a thread and about four
    /// file descriptors). Defaults to [`AdmissionConfig::machine_default`].
    #[must_use]
    pub fn max_running(mut self, runs: usize) -> Self {
        self.admission.max_running = runs.max(1);
        self
    }

    /// How many runs one user may run at once (no limit by default).
    #[must_use]
    pub fn max_running_per_user(mut self, runs: Option<usize>) -> Self {
        self.admission.max_running_per_user = runs.map(|r| r.max(1));
        self
    }

    /// How many admitted runs may wait for a slot before `start_run` is rejected.
    #[must_use]
    pub fn queue_capacity(mut self, runs: usize) -> Self {
        self.admission.queue_capacity = runs;
        self
    }

    /// How runs whose actor dies are restarted (see [`RestartPolicy`]).
    #[must_use]
    pub fn restarts(mut self, policy: RestartPolicy) -> Self {
        self.restarts = policy;
        self
    }

    /// The persister's batching and buffering.
    #[must_use]
    pub fn persister(mut self, persister: PersisterConfig) -> Self {
        self.persister = persister;
        self
    }

    /// What the health monitor probes how often, and when it reports trouble (see
    /// [`HealthConfig`]).
    #[must_use]
    pub fn health(mut self, health: HealthConfig) -> Self {
        self.health = health;
        self
    }

    /// How long a graceful shutdown waits for runs to reach a step boundary before it
    /// stops them where they are (they stay resumable from their last checkpoint).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a shutdown then waits, at each further stage, for stopped runs' threads,
    /// for the store to take everything accepted, and for the engine's threads (30 s by
    /// default); past it, shutdown returns and its report says what was left.
    #[must_use]
    pub fn finish_timeout(mut self, timeout: Duration) -> Self {
        self.finish_timeout = timeout;
        self
    }
}

/// When a run's step commits are durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Durability {
    /// The next step starts only once the previous step's events and checkpoint are
    /// committed: a committed step never runs again after a crash, and a run never gets
    /// ahead of what is stored. Each step waits for a (group) commit.
    #[default]
    Sync,
    /// The next step starts at once; the step's writes are committed in the background.
    /// After a crash, the steps not yet committed run again (at most the buffer's worth).
    /// Runs still wait when the persister's buffer is full, so memory stays bounded.
    Async,
    /// Events are written in the background as with `Async`, but the only checkpoint is
    /// the final one: the cheapest mode for short runs; after a crash the run starts
    /// again from its input.
    Exit,
}

impl Durability {
    /// The mode as stored (`sync`, `async`, `exit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Exit => "exit",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            "exit" => Ok(Self::Exit),
            other => Err(format!("unknown durability `{other}` (sync, async or exit)")),
        }
    }
}

/// How the Supervisor restarts a run whose actor died outside a node (a panic in the
/// actor, its arbiter gone): from the run's last checkpoint, on a fresh arbiter, at most
/// `max_restarts` times within `within` (Erlang's intensity and period), waiting
/// `backoff_initial` before the first restart and twice as long before each next one (at
/// most `backoff_max`). Past the budget the run fails, with every cause in its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
    /// The wait before the first restart.
    pub backoff_initial: Duration,
    /// The longest wait.
    pub backoff_max: Duration,
    /// The watchdog: a run whose actor shows no sign of life (no event, no progress
    /// tick) for this long, while not waiting for the store, is stalled (a node that never
    /// yields, say): its actor is abandoned and fenced off, and the run restarts from its
    /// checkpoint like a run whose actor died. Keep it above every node's timeout. `None`
    /// (the default) turns the watchdog off.
    pub stall_timeout: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 3,
            within: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            stall_timeout: None,
        }
    }
}

impl RestartPolicy {
    /// The wait before a restart that follows `deaths` recent deaths.
    pub fn backoff(&self, deaths: u32) -> Duration {
        self.backoff_initial.saturating_mul(2u32.saturating_pow(deaths.min(16))).min(self.backoff_max)
    }
}

/// Admission limits of the Supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Runs running at once.
    pub max_running: usize,
    /// Runs one user may run at once.
    pub max_running_per_user: Option<usize>,
    /// Runs waiting for a slot; beyond it `start_run` returns `Rejected`.
    pub queue_capacity: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self { max_running: Self::machine_default(), max_running_per_user: None, queue_capacity: 10_000 }
    }
}

impl AdmissionConfig {
    /// The default concurrency limit, derived from the process's open-file limit: every
    /// running run holds an arbiter (a thread and about 4 file descriptors); budgeting 8
    /// descriptors per run and keeping 256 for the rest of the process (database
    /// connections, sockets, files) gives `(nofile - 256) / 8`, clamped to 4..=1024. With
    /// the common soft limit of 1,024 that is 96; with 65,536 it is 1,024.
    pub fn machine_default() -> usize {
        let nofile = open_file_limit().unwrap_or(1024);
        (nofile.saturating_sub(256) / 8).clamp(4, 1024)
    }
}

/// The soft limit on open files of this process (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    match soft {
        "unlimited" => Some(usize::MAX / 2),
        n => n.parse().ok(),
    }
}

/// How the ProgressPersister batches writes (group commit) and bounds its buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct PersisterConfig {
    /// Flush when this many rows are waiting.
    pub batch_size: usize,
    /// Flush rows nobody waits for at least this often.
    pub flush_interval: Duration,
    /// Rows the buffer may hold (accepted but not yet written). Beyond it, runs wait at
    /// their next commit point until a flush makes room: backpressure, never loss.
    pub buffer_capacity: usize,
    /// The first wait before retrying a failed write.
    pub retry_initial: Duration,
    /// The longest wait between retries of a failed write.
    pub retry_max: Duration,
    /// Events a live subscriber may fall behind before it is dropped (it can resume
    /// from its last seq).
    pub subscriber_capacity: usize,
    /// What is kept of finished runs' checkpoints.
    pub retention: Retention,
    /// The longest a read (a run, a listing, events) waits for the store before it fails
    /// as unavailable (HTTP 503 with `Retry-After`): reads never wait on writes, nor on an
    /// outage for longer than this.
    pub read_timeout: Duration,
    /// A failpoint for crash tests: the process aborts right after this many commits,
    /// before anyone hears of the last one (as `kill -9` would hit it).
    #[doc(hidden)]
    pub crash_after_commits: Option<u64>,
}

impl Default for PersisterConfig {
    fn default() -> Self {
        Self {
            batch_size: 2_000,
            flush_interval: Duration::from_millis(20),
            buffer_capacity: 100_000,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            subscriber_capacity: 4_096,
            retention: Retention::KeepLast,
            read_timeout: Duration::from_secs(5),
            crash_after_commits: None,
        }
    }
}

impl PersisterConfig {
    /// Aborts the process right after the `commits`-th commit (crash tests only).
    #[doc(hidden)]
    #[must_use]
    pub fn crash_after_commits(mut self, commits: u64) -> Self {
        self.crash_after_commits = Some(commits);
        self
    }

    /// How long a read may wait for the store (at least 1 ms).
    #[must_use]
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// Flush when `rows` are waiting.
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Flush at least this often.
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Bound the buffer to `rows`.
    #[must_use]
    pub fn buffer_capacity(mut self, rows: usize) -> Self {
        self.buffer_capacity = rows.max(1);
        self
    }

    /// What is kept of finished runs' checkpoints.
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Retry failed writes after `initial`, doubling up to `max`.
    #[must_use]
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }
}

/// When the health monitor probes and what it reports (see `Engine::health`). Start
/// from [`HealthConfig::new`] (the defaults below) and change what you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub(crate) interval: Duration,
    pub(crate) slow_lag: Duration,
    pub(crate) blocked_after: Duration,
    pub(crate) stalled_after: Duration,
    pub(crate) store_failures: u32,
    pub(crate) store_stalled_after: Duration,
    pub(crate) backlog_degraded: usize,
    pub(crate) backlog_unhealthy: usize,
    pub(crate) runs_listed: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthConfig {
    /// The defaults: probe every 5 s; a run's loop lag over 250 ms is slow, no answer
    /// within 2 s is blocked, no event or progress for 5 min is stalled; the store is
    /// down after 3 failed writes in a row or a write not committed for 30 s; a backlog
    /// of 10,000 rows is degraded, 50,000 unhealthy; the 5 worst runs are listed.
    pub fn new() -> Self {
        Self {
            interval: Duration::from_secs(5),
            slow_lag: Duration::from_millis(250),
            blocked_after: Duration::from_secs(2),
            stalled_after: Duration::from_secs(300),
            store_failures: 3,
            store_stalled_after: Duration::from_secs(30),
            backlog_degraded: 10_000,
            backlog_unhealthy: 50_000,
            runs_listed: 5,
        }
    }

    /// How often the monitor probes (5 s; at least 1 ms), one probe at a time. It logs
    /// each change of status; `Engine::health` answers its latest report, so this is how
    /// old a report may be (plus the probe's own time, bounded by `blocked_after`).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A run whose loop takes longer than this to answer a probe is slow: a node works
    /// for long stretches without awaiting (250 ms). The engine is `Degraded`.
    #[must_use]
    pub fn slow_lag(mut self, lag: Duration) -> Self {
        self.slow_lag = lag;
        self
    }

    /// A run that does not answer a probe within this is blocked: a node holds its
    /// thread (2 s). The engine is `Degraded`, naming the run. This also bounds every
    /// probe, so a health check answers within about twice this, whatever is blocked.
    #[must_use]
    pub fn blocked_after(mut self, limit: Duration) -> Self {
        self.blocked_after = limit;
        self
    }

    /// A run that emitted nothing (no event, no progress tick) for longer than this,
    /// while not waiting for the store, is stalled (5 min). The engine is `Degraded`,
    /// naming the run. (The restart watchdog, `RestartPolicy::stall_timeout`, acts on
    /// stalls; this only reports them.)
    #[must_use]
    pub fn stalled_after(mut self, limit: Duration) -> Self {
        self.stalled_after = limit;
        self
    }

    /// After this many failed writes in a row the store counts as down and the engine
    /// is `Unhealthy` (3; at least 1). Fewer failures are `Degraded`.
    #[must_use]
    pub fn store_failures(mut self, failures: u32) -> Self {
        self.store_failures = failures.max(1);
        self
    }

    /// A write not committed after this long (failing and retried, or hanging) means
    /// the store is down or far too slow: `Unhealthy` (30 s).
    #[must_use]
    pub fn store_stalled_after(mut self, limit: Duration) -> Self {
        self.store_stalled_after = limit;
        self
    }

    /// Rows waiting in the persister's buffer from which the engine is `Degraded`
    /// (10,000) and `Unhealthy` (50,000).
    #[must_use]
    pub fn backlog(mut self, degraded: usize, unhealthy: usize) -> Self {
        self.backlog_degraded = degraded;
        self.backlog_unhealthy = unhealthy.max(degraded);
        self
    }

    /// How many of the worst runs a report lists and names (5).
    #[must_use]
    pub fn runs_listed(mut self, runs: usize) -> Self {
        self.runs_listed = runs;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_default_follows_the_open_file_limit() {
        let nofile = open_file_limit().expect("linux has /proc/self/limits");
        assert_eq!(AdmissionConfig::machine_default(), (nofile.saturating_sub(256) / 8).clamp(4, 1024));
    }
}
