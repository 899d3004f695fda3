//! The HealthMonitor: what is wrong with the engine right now, in words an operator can
//! act on.
//!
//! Every [`HealthConfig`] interval (and once as soon as the engine has started), one
//! probe at a time, it measures what follows and publishes the report, which
//! [`Engine::health`](crate::Engine::health) answers from:
//! - each live run's **loop lag**: how long its `AnalysisActor` takes to answer a probe
//!   message. A run's actor answers between awaits, so a long lag means a node works
//!   without awaiting, and no answer at all means a node is blocking the run's thread.
//!   Each run has an arbiter of its own, so a blocked thread stalls only its own run
//!   (it never shows in other runs' lag, nor in an average): the monitor names the run.
//!   Probes are bounded by `blocked_after`; the monitor never waits on an answer that
//!   may not come.
//! - runs that **emitted nothing** (no event, no progress tick) for longer than
//!   `stalled_after` while not waiting for the store: a node waiting on something that
//!   never answers.
//! - the **supervisor**: runs running and queued against the admission limits (a full
//!   queue means new runs are rejected), and restarts.
//! - the **persister**: rows waiting to be written (backlog), runs held by backpressure,
//!   failed writes in a row with the last error, how long the current write has been
//!   waiting for the store, and when the last write committed. A database that is down
//!   does not make runs fail (they wait at their next commit), so this is where it shows.
//!
//! It runs on the engine's System thread, next to the Supervisor, never on a run's
//! arbiter: a blocked run cannot block its own diagnosis.

use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::HealthConfig;
use crate::persister::{GetStats, PersisterStats, ProgressPersister};
use crate::run::Probe;
use crate::supervisor::{ListLive, Supervisor, SupervisorStats};
use crate::telemetry;

/// How the engine is doing, worst first in importance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Nothing to report.
    Healthy,
    /// Some runs are held up (a blocked or stalled run, a full queue, a growing
    /// backlog); the engine as a whole works.
    Degraded,
    /// The engine cannot make progress (the store is down, an engine thread is blocked).
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        })
    }
}

/// A health report (see [`Engine::health`](crate::Engine::health)): the status, why, what
/// to do about it, and the figures it was judged on. Serialises to JSON with durations in
/// milliseconds (`*_ms`) and times in milliseconds since the Unix epoch (`*_unix_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// The overall status: the worst of what was found.
    pub status: HealthStatus,
    /// What is wrong, one sentence each, naming runs and figures (empty when healthy).
    pub reasons: Vec<String>,
    /// What to do about it, one sentence each (no duplicates).
    pub recommendations: Vec<String>,
    /// When the probe was taken.
    #[serde(rename = "checked_at_unix_ms", with = "unix_ms")]
    pub checked_at: SystemTime,
    /// Runs running now (each on its own arbiter).
    pub running: usize,
    /// Runs waiting for a slot.
    pub queued: usize,
    /// Runs that may wait for a slot before new ones are rejected.
    pub queue_capacity: usize,
    /// Runs allowed to run at once.
    pub max_running: usize,
    /// Runs restarted from their checkpoint since the engine started.
    pub restarts: u64,
    /// Live runs that did not answer a probe within `blocked_after`.
    pub blocked_runs: usize,
    /// Live runs that emitted nothing for longer than `stalled_after`.
    pub stalled_runs: usize,
    /// The longest loop lag among the runs that answered.
    #[serde(rename = "max_lag_ms", with = "opt_ms")]
    pub max_lag: Option<Duration>,
    /// The worst runs (blocked first, then by lag, then by time since their last
    /// event), at most `HealthConfig::runs_listed`.
    pub runs: Vec<RunHealth>,
    /// The persister and its store.
    pub store: StoreHealth,
}

/// What the monitor measured of one live run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunHealth {
    /// The run.
    pub run_id: Uuid,
    /// How long its actor took to answer the probe (`None`: it did not answer within
    /// `blocked_after`, or it is waiting to be restarted).
    #[serde(rename = "lag_ms", with = "opt_ms")]
    pub lag: Option<Duration>,
    /// It did not answer the probe within `blocked_after`: a node blocks its thread.
    pub blocked: bool,
    /// How long since its last event or progress tick.
    #[serde(rename = "idle_ms", with = "ms")]
    pub idle: Duration,
    /// Idle for longer than `stalled_after`, while not waiting for the store.
    pub stalled: bool,
    /// Held at a commit point, waiting for the store.
    pub waiting_for_store: bool,
    /// Its actor died or stalled and a restart from its checkpoint is pending.
    pub restarting: bool,
    /// Times it was restarted from its checkpoint.
    pub restarts: u64,
}

/// What the monitor measured of the persister and its store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// What the store is (`memory`, a database address).
    pub store: String,
    /// Whether the persister answered within `blocked_after` (when not, the figures
    /// below are zero).
    pub answered: bool,
    /// Rows accepted but not yet written: the backlog.
    pub buffered: usize,
    /// Rows the buffer holds before runs wait for room.
    pub buffer_capacity: usize,
    /// Runs waiting for room in a full buffer.
    pub waiting_for_room: usize,
    /// Failed write attempts since the engine started.
    pub write_failures: u64,
    /// Failed writes since the last one that committed.
    pub consecutive_failures: u32,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
    /// When the last write committed.
    #[serde(rename = "last_write_at_unix_ms", with = "opt_unix_ms")]
    pub last_write_at: Option<SystemTime>,
    /// How long the write now in flight has waited for the store (across retries).
    #[serde(rename = "unwritten_for_ms", with = "opt_ms")]
    pub unwritten_for: Option<Duration>,
    /// How long the last committed write took (write latency).
    #[serde(rename = "last_commit_ms", with = "opt_ms")]
    pub last_commit: Option<Duration>,
    /// The store's connection pool (size, available, waiting), if it has one.
    pub pool: Option<crate::store::PoolStatus>,
}

/// Asks the monitor for a report whose probe starts after this message arrives: at once
/// if no probe is in flight, else right after the one in flight (so a probe is never
/// doubled). The report is published like every other.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ProbeNow;

/// A published report: what [`Engine::health`](crate::Engine::health) answers.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) health: Health,
    /// When its probe started.
    pub(crate) started: Instant,
    /// When it was published.
    pub(crate) published: Instant,
}

/// The monitor's reports as they are published (`None` until the first).
pub(crate) type Reports = watch::Receiver<Option<Report>>;

/// Probes the engine every interval, one probe at a time, and publishes the latest report
/// on a `watch` channel. See the module docs.
///
/// Callers read the latest report; none of them starts a probe or waits for one. A probe
/// per request would let a client flood the engine (and its runs' mailboxes) through an
/// open `/health`; a report at most an interval old is as useful to an operator.
pub(crate) struct HealthMonitor {
    config: HealthConfig,
    supervisor: Addr<Supervisor>,
    persister: Addr<ProgressPersister>,
    reports: watch::Sender<Option<Report>>,
    /// The status of the last report, to log changes.
    last: HealthStatus,
    /// A probe is in flight (they never pile up behind a slow one).
    checking: bool,
    /// A probe was asked for while one was in flight: start another once it ends.
    again: bool,
}

impl HealthMonitor {
    pub(crate) fn new(
        config: HealthConfig,
        supervisor: Addr<Supervisor>,
        persister: Addr<ProgressPersister>,
        reports: watch::Sender<Option<Report>>,
    ) -> Self {
        Self { config, supervisor, persister, reports, last: HealthStatus::Healthy, checking: false, again: false }
    }

    /// Starts a probe unless one is in flight; publishes its report when it ends. A
    /// probe is bounded by about twice `blocked_after`.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let started = Instant::now();
        let measure = measure(self.config.blocked_after, self.supervisor.clone(), self.persister.clone());
        let config = self.config.clone();
        let check = async move {
            let measured = measure.await;
            assess(&config, measured, SystemTime::now())
        };
        ctx.spawn(check.into_actor(self).map(move |health, act, ctx| {
            act.checking = false;
            act.record(&health);
            act.reports.send_replace(Some(Report { health, started, published: Instant::now() }));
            if std::mem::take(&mut act.again) {
                act.probe(ctx);
            }
        }));
    }

    fn record(&mut self, health: &Health) {
        if health.status != self.last {
            match health.status {
                HealthStatus::Healthy => tracing::info!(previous = %self.last, "engine healthy again"),
                status => tracing::warn!(%status, reasons = ?health.reasons, "engine health changed"),
            }
            self.last = health.status;
        }
    }
}

impl Actor for HealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The first probe is asked for (`ProbeNow`) once the store is open: probed
        // earlier, a persister still opening its store would count as unanswering.
        ctx.run_interval(self.config.interval, |act, ctx| act.probe(ctx));
    }
}

impl Handler<ProbeNow> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, _: ProbeNow, ctx: &mut Context<Self>) {
        if self.checking {
            self.again = true;
        } else {
            self.probe(ctx);
        }
    }
}

/// What one probe found, before judging it.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    /// `None`: the supervisor did not answer within `blocked_after`.
    supervisor: Option<SupervisorStats>,
    /// `None`: the persister did not answer within `blocked_after`.
    persister: Option<PersisterStats>,
    runs: Vec<RunHealth>,
}

/// Asks the supervisor and the persister for their figures and probes every live run,
/// each bounded by `bound`.
async fn measure(bound: Duration, supervisor: Addr<Supervisor>, persister: Addr<ProgressPersister>) -> Measured {
    let (persister, listed) =
        futures_util::future::join(persister.send(GetStats).timeout(bound), supervisor.send(ListLive).timeout(bound))
            .await;
    let (supervisor, live) = match listed {
        Ok((stats, live)) => (Some(stats), live),
        Err(_) => (None, Vec::new()),
    };
    let probes = live.into_iter().map(|run| async move {
        let restarting = run.probe.is_none();
        let (lag, blocked) = match run.probe {
            Some(probe) => {
                let sent = Instant::now();
                match probe.send(Probe).timeout(bound).await {
                    Ok(()) => {
                        let lag = sent.elapsed();
                        telemetry::probed(Some(lag));
                        (Some(lag), false)
                    }
                    Err(MailboxError::Timeout) => {
                        telemetry::probed(None);
                        (None, true)
                    }
                    // The run ended meanwhile: nothing to report.
                    Err(MailboxError::Closed) => return None,
                }
            }
            None => (None, false),
        };
        Some(RunHealth {
            run_id: run.run_id,
            lag,
            blocked,
            idle: run.idle,
            stalled: false,
            waiting_for_store: run.waiting_for_store,
            restarting,
            restarts: run.restarts,
        })
    });
    let runs: Vec<RunHealth> = join_all(probes).await.into_iter().flatten().collect();
    telemetry::worst_lag(runs.iter().filter_map(|r| r.lag).max());
    if let Some(pool) = persister.as_ref().ok().and_then(|p| p.pool) {
        telemetry::pool(pool);
    }
    Measured { supervisor, persister: persister.ok(), runs }
}

/// Findings so far: the worst status, reasons and recommendations (without repeats).
struct Findings {
    status: HealthStatus,
    reasons: Vec<String>,
    recommendations: Vec<String>,
}

impl Findings {
    fn add(&mut self, status: HealthStatus, reason: String, recommendation: &str) {
        self.status = self.status.max(status);
        self.reasons.push(reason);
        if !self.recommendations.iter().any(|r| r == recommendation) {
            self.recommendations.push(recommendation.to_owned());
        }
    }
}

const SPAWN_BLOCKING: &str = "move CPU-heavy or blocking node work into `tokio::task::spawn_blocking` (and await \
                              it); set `RestartPolicy::stall_timeout` so the watchdog restarts runs stuck this way \
                              from their checkpoint";
const STORE_DOWN: &str = "check that the database is up and reachable from this process and that its credentials \
                          are valid; nothing accepted is lost: the persister retries and writes it all when the \
                          database is back";
const STORE_SLOW: &str = "check the database's load and locks, and the pool's size and timeouts; a larger \
                          `PersisterConfig::batch_size` writes more rows per transaction";

/// Judges what was measured. Pure, so its rules are unit-tested.
pub(crate) fn assess(config: &HealthConfig, measured: Measured, now: SystemTime) -> Health {
    let Measured { supervisor, persister, mut runs } = measured;
    let mut found = Findings { status: HealthStatus::Healthy, reasons: Vec::new(), recommendations: Vec::new() };

    // Runs: blocked, slow, stalled. Each run is named once, for the worst of these.
    for run in &mut runs {
        run.stalled = !run.waiting_for_store && !run.restarting && run.idle > config.stalled_after;
    }
    runs.sort_by(|a, b| {
        b.blocked.cmp(&a.blocked).then(b.lag.cmp(&a.lag)).then(b.stalled.cmp(&a.stalled)).then(b.idle.cmp(&a.idle))
    });
    let blocked_runs = runs.iter().filter(|r| r.blocked).count();
    let stalled_runs = runs.iter().filter(|r| r.stalled).count();
    let mut named = 0;
    let mut unnamed = 0;
    for run in &runs {
        let finding = if run.blocked {
            Some((
                format!(
                    "run {} has not answered a probe for {}: a node is blocking its thread (CPU-heavy or blocking \
                     work belongs in spawn_blocking); only this run is held up",
                    run.run_id,
                    human(config.blocked_after)
                ),
                SPAWN_BLOCKING,
            ))
        } else if let Some(lag) = run.lag.filter(|&lag| lag > config.slow_lag) {
            Some((
                format!(
                    "run {} answered a probe after {} (slow above {}): a node works for long stretches without \
                     awaiting, and the run answers status and cancel late",
                    run.run_id,
                    human(lag),
                    human(config.slow_lag)
                ),
                SPAWN_BLOCKING,
            ))
        } else if run.stalled {
            Some((
                format!(
                    "run {} has emitted nothing (no event or progress) for {}: a node is waiting for something \
                     that does not answer",
                    run.run_id,
                    human(run.idle)
                ),
                "give slow nodes a timeout (`GraphBuilder::timeout`) and have long nodes report progress; \
                 `RestartPolicy::stall_timeout` restarts stalled runs from their checkpoint",
            ))
        } else {
            None
        };
        let Some((reason, recommendation)) = finding else {
            continue;
        };
        if named < config.runs_listed {
            found.add(HealthStatus::Degraded, reason, recommendation);
            named += 1;
        } else {
            found.status = found.status.max(HealthStatus::Degraded);
            unnamed += 1;
        }
    }
    if unnamed > 0 {
        found.reasons.push(format!("and {unnamed} more runs held up the same ways"));
    }
    let max_lag = runs.iter().filter_map(|r| r.lag).max();
    runs.truncate(config.runs_listed);

    // The supervisor: admission.
    let stats = match supervisor {
        Some(stats) => {
            if stats.queued >= stats.queue_capacity && stats.running >= stats.max_running {
                found.add(
                    HealthStatus::Degraded,
                    format!(
                        "the run queue is full ({} queued, capacity {}; {} of {} running): new runs are rejected",
                        thousands(stats.queued as u64),
                        thousands(stats.queue_capacity as u64),
                        thousands(stats.running as u64),
                        thousands(stats.max_running as u64),
                    ),
                    "raise `EngineConfig::max_running` if the machine has room (each run holds a thread and about 4 \
                     file descriptors) or `queue_capacity`, or add worker processes sharing the database",
                );
            }
            stats
        }
        None => {
            found.add(
                HealthStatus::Unhealthy,
                format!(
                    "the supervisor did not answer within {}: the engine's thread is blocked, and no run can start \
                     or end",
                    human(config.blocked_after)
                ),
                "look for blocking code in the engine's process (a store or callback that blocks instead of \
                 awaiting); restart the process if it persists (runs resume from their checkpoints)",
            );
            SupervisorStats::default()
        }
    };

    // The persister and its store.
    let store = match persister {
        Some(p) => {
            let unwritten_for = p.writing_since.map(|since| now.duration_since(since).unwrap_or_default());
            let error = p.last_error.as_deref().unwrap_or("no error recorded");
            if p.consecutive_failures >= config.store_failures {
                found.add(
                    HealthStatus::Unhealthy,
                    format!(
                        "the store ({}) failed its last {} writes ({error}): the database is unreachable or \
                         refusing writes; runs wait at their next commit",
                        p.store,
                        thousands(u64::from(p.consecutive_failures)),
                    ),
                    STORE_DOWN,
                );
            } else if p.consecutive_failures > 0 {
                found.add(
                    HealthStatus::Degraded,
                    format!(
                        "the store ({}) failed its last {} write{} ({error}); the persister retries with backoff",
                        p.store,
                        p.consecutive_failures,
                        if p.consecutive_failures == 1 { "" } else { "s" },
                    ),
                    STORE_DOWN,
                );
            }
            if let Some(waited) = unwritten_for.filter(|&w| w > config.store_stalled_after) {
                found.add(
                    HealthStatus::Unhealthy,
                    format!(
                        "the store ({}) has not committed a write for {} ({} rows waiting): the database is down \
                         or far too slow; runs wait at their next commit",
                        p.store,
                        human(waited),
                        thousands(p.buffered as u64),
                    ),
                    if p.consecutive_failures > 0 { STORE_DOWN } else { STORE_SLOW },
                );
            }
            if p.buffered >= config.backlog_unhealthy {
                found.add(
                    HealthStatus::Unhealthy,
                    format!(
                        "persister backlog {} rows (unhealthy from {}): the database cannot keep up; runs will wait \
                         for room at {}",
                        thousands(p.buffered as u64),
                        thousands(config.backlog_unhealthy as u64),
                        thousands(p.buffer_capacity as u64),
                    ),
                    STORE_SLOW,
                );
            } else if p.buffered >= config.backlog_degraded {
                found.add(
                    HealthStatus::Degraded,
                    format!(
                        "persister backlog {} rows: the database is too slow or the pool too small",
                        thousands(p.buffered as u64)
                    ),
                    STORE_SLOW,
                );
            }
            if p.waiting_for_room > 0 {
                found.add(
                    HealthStatus::Degraded,
                    format!(
                        "{} runs wait for room in the persister's full buffer ({} rows): backpressure from a slow \
                         or unreachable database",
                        thousands(p.waiting_for_room as u64),
                        thousands(p.buffer_capacity as u64),
                    ),
                    STORE_SLOW,
                );
            }
            if let Some(pool) = p.pool.filter(|pool| pool.waiting > 0) {
                found.add(
                    HealthStatus::Degraded,
                    format!(
                        "{} caller(s) wait for a database connection (pool: {} of {} open, {} idle): the pool is too \
                         small for the load, or the database holds connections too long",
                        pool.waiting, pool.size, pool.max_size, pool.available
                    ),
                    STORE_SLOW,
                );
            }
            StoreHealth {
                store: p.store,
                answered: true,
                buffered: p.buffered,
                buffer_capacity: p.buffer_capacity,
                waiting_for_room: p.waiting_for_room,
                write_failures: p.write_failures,
                consecutive_failures: p.consecutive_failures,
                last_error: p.last_error,
                last_write_at: p.last_write_at,
                unwritten_for,
                last_commit: p.last_write_at.map(|_| p.last_commit_latency),
                pool: p.pool,
            }
        }
        None => {
            found.add(
                HealthStatus::Unhealthy,
                format!(
                    "the persister did not answer within {}: its thread is blocked (a store call that blocks instead \
                     of awaiting?), and runs cannot commit",
                    human(config.blocked_after)
                ),
                "a `Store` must never block its thread: use async drivers and bounded timeouts; restart the \
                 process if it persists (runs resume from their checkpoints)",
            );
            StoreHealth::default()
        }
    };

    Health {
        status: found.status,
        reasons: found.reasons,
        recommendations: found.recommendations,
        checked_at: now,
        running: stats.running,
        queued: stats.queued,
        queue_capacity: stats.queue_capacity,
        max_running: stats.max_running,
        restarts: stats.restarted,
        blocked_runs,
        stalled_runs,
        max_lag,
        runs,
        store,
    }
}

impl Health {
    /// The report when the monitor has published nothing for `waited`, past when its
    /// next report was due (the engine's thread is blocked).
    pub(crate) fn unanswered(waited: Duration) -> Self {
        let mut found = Findings { status: HealthStatus::Healthy, reasons: Vec::new(), recommendations: Vec::new() };
        found.add(
            HealthStatus::Unhealthy,
            format!(
                "the health monitor has not reported for {}, past its interval: the engine's thread is blocked",
                human(waited)
            ),
            "look for blocking code in the engine's process (a store or callback that blocks instead of awaiting); \
             restart the process if it persists (runs resume from their checkpoints)",
        );
        Self {
            status: found.status,
            reasons: found.reasons,
            recommendations: found.recommendations,
            checked_at: SystemTime::now(),
            running: 0,
            queued: 0,
            queue_capacity: 0,
            max_running: 0,
            restarts: 0,
            blocked_runs: 0,
            stalled_runs: 0,
            max_lag: None,
            runs: Vec::new(),
            store: StoreHealth::default(),
        }
    }
}

/// `2.0 s`, `350 ms`, `12.5 min`, `1.5 h`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{} ms", duration.as_millis())
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7_200.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3_600.0)
    }
}

/// `12,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A `Duration` as (fractional) milliseconds.
mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64() * 1_000.0)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(ms / 1_000.0).map_err(serde::de::Error::custom)
    }
}

/// An `Option<Duration>` as (fractional) milliseconds or `null`.
mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::ms::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|ms| Duration::try_from_secs_f64(ms / 1_000.0).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A `SystemTime` as whole milliseconds since the Unix epoch.
mod unix_ms {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn to_ms(at: SystemTime) -> u64 {
        u64::try_from(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn from_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    pub(super) fn serialize<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(to_ms(*at))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(deserializer).map(from_ms)
    }
}

/// An `Option<SystemTime>` as whole milliseconds since the Unix epoch or `null`.
mod opt_unix_ms {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_u64(super::unix_ms::to_ms(*at)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(super::unix_ms::from_ms))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

    use super::*;

    fn supervisor() -> SupervisorStats {
        SupervisorStats { max_running: 4, queue_capacity: 10, ..SupervisorStats::default() }
    }

    fn persister() -> PersisterStats {
        PersisterStats { store: "memory".into(), buffer_capacity: 100_000, ..PersisterStats::default() }
    }

    fn run(lag: Option<Duration>, blocked: bool, idle: Duration) -> RunHealth {
        RunHealth {
            run_id: Uuid::now_v7(),
            lag,
            blocked,
            idle,
            stalled: false,
            waiting_for_store: false,
            restarting: false,
            restarts: 0,
        }
    }

    fn judge(measured: Measured) -> Health {
        assess(&HealthConfig::new(), measured, SystemTime::now())
    }

    #[test]
    fn nothing_to_report_is_healthy() {
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(persister()), runs: vec![] });
        assert_eq!((health.status, health.reasons.len(), health.recommendations.len()), (HealthStatus::Healthy, 0, 0));
    }

    #[test]
    fn a_blocked_run_is_named_and_listed_first() {
        let quick = run(Some(Duration::from_micros(50)), false, Duration::ZERO);
        let blocked = run(None, true, Duration::from_secs(3));
        let id = blocked.run_id;
        let runs = vec![quick, blocked];
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(persister()), runs });
        assert_eq!(health.status, HealthStatus::Degraded);
        assert_eq!(health.reasons.len(), 1, "{:?}", health.reasons);
        assert!(health.reasons[0].contains(&id.to_string()) && health.reasons[0].contains("spawn_blocking"));
        assert_eq!((health.runs[0].run_id, health.blocked_runs), (id, 1));
    }

    #[test]
    fn past_the_listed_runs_the_rest_are_counted() {
        let runs = (0..8).map(|_| run(None, true, Duration::ZERO)).collect();
        let config = HealthConfig::new().runs_listed(3);
        let health = assess(
            &config,
            Measured { supervisor: Some(supervisor()), persister: Some(persister()), runs },
            SystemTime::now(),
        );
        assert_eq!((health.reasons.len(), health.runs.len(), health.blocked_runs), (4, 3, 8));
        assert_eq!(health.reasons[3], "and 5 more runs held up the same ways");
    }

    #[test]
    fn a_run_waiting_for_the_store_is_not_stalled() {
        let mut waiting = run(Some(Duration::ZERO), false, Duration::from_secs(3_600));
        waiting.waiting_for_store = true;
        let idle = run(Some(Duration::ZERO), false, Duration::from_secs(3_600));
        let id = idle.run_id;
        let runs = vec![waiting, idle];
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(persister()), runs });
        assert_eq!((health.status, health.stalled_runs), (HealthStatus::Degraded, 1));
        assert!(health.reasons[0].contains(&format!("run {id} has emitted nothing")), "{:?}", health.reasons);
    }

    #[test]
    fn store_failures_degrade_then_make_the_engine_unhealthy() {
        let failing = |n| PersisterStats {
            consecutive_failures: n,
            last_error: Some("connection refused".into()),
            ..persister()
        };
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(failing(1)), runs: vec![] });
        assert_eq!(health.status, HealthStatus::Degraded);
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(failing(12)), runs: vec![] });
        assert_eq!(health.status, HealthStatus::Unhealthy);
        assert_eq!(
            health.reasons,
            ["the store (memory) failed its last 12 writes (connection refused): the database is unreachable or \
              refusing writes; runs wait at their next commit"]
        );
    }

    #[test]
    fn a_write_waiting_too_long_is_unhealthy() {
        let now = SystemTime::now();
        let stats =
            PersisterStats { writing_since: now.checked_sub(Duration::from_secs(60)), buffered: 7, ..persister() };
        let health = assess(
            &HealthConfig::new(),
            Measured { supervisor: Some(supervisor()), persister: Some(stats), runs: vec![] },
            now,
        );
        assert_eq!(health.status, HealthStatus::Unhealthy);
        assert!(health.reasons[0].contains("has not committed a write for 60.0 s (7 rows waiting)"));
    }

    #[test]
    fn the_backlog_degrades_then_makes_the_engine_unhealthy() {
        let backlog = |rows| PersisterStats { buffered: rows, ..persister() };
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(backlog(12_000)), runs: vec![] });
        assert_eq!(health.status, HealthStatus::Degraded);
        assert_eq!(health.reasons, ["persister backlog 12,000 rows: the database is too slow or the pool too small"]);
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(backlog(60_000)), runs: vec![] });
        assert_eq!(health.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn a_full_queue_is_degraded() {
        let stats = SupervisorStats { running: 4, queued: 10, ..supervisor() };
        let health = judge(Measured { supervisor: Some(stats), persister: Some(persister()), runs: vec![] });
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(health.reasons[0].starts_with("the run queue is full (10 queued, capacity 10; 4 of 4 running)"));
    }

    #[test]
    fn actors_that_do_not_answer_make_the_engine_unhealthy() {
        let health = judge(Measured::default());
        assert_eq!((health.status, health.reasons.len()), (HealthStatus::Unhealthy, 2));
        assert!(!health.store.answered);
    }

    #[test]
    fn the_report_serialises_with_milliseconds() {
        let runs = vec![run(Some(Duration::from_millis(3)), false, Duration::from_secs(1))];
        let health = judge(Measured { supervisor: Some(supervisor()), persister: Some(persister()), runs });
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["runs"][0]["lag_ms"], 3.0);
        assert_eq!(json["runs"][0]["idle_ms"], 1_000.0);
        assert!(json["checked_at_unix_ms"].as_u64().unwrap() > 0);
        let back: Health = serde_json::from_value(json).unwrap();
        assert_eq!((back.status, back.runs[0].run_id), (health.status, health.runs[0].run_id));
    }

    #[test]
    fn figures_read_like_people_write_them() {
        assert_eq!(thousands(12_000), "12,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human(Duration::from_secs(2)), "2.0 s");
        assert_eq!(human(Duration::from_millis(350)), "350 ms");
        assert_eq!(human(Duration::from_secs(720)), "12.0 min");
    }
}
