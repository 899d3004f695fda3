//! graphloop's actor runtime: runs of compiled graphs as supervised actix actors.
//!
//! - [`Engine`]: the handle an application holds (`Clone + Send + Sync`): register
//!   graphs, start, inspect, cancel and follow runs, shut down gracefully.
//! - `Supervisor`: admission (global and per-user limits, a FIFO queue, `Rejected`
//!   beyond it), one actix `Arbiter` per run, stops and joins arbiters when runs end,
//!   learns of actors that died.
//! - `AnalysisActor`: one run; each step is a message to itself, node futures run on
//!   its own arbiter only, it answers status and cancel while a node awaits.
//! - [`ProgressPersister`]: the only owner of the [`Store`] (and so of any database
//!   pool), on its own arbiter; group commit, per-run ordering, retries with backoff,
//!   bounded buffer with backpressure, live fan-out to subscribers.
//! - [`MemoryStore`]: the embedded default store.
//! - `HealthMonitor`: probes every run's loop lag, the queue and the persister's store;
//!   [`Engine::health`] answers a [`Health`] report with reasons and recommendations.
//! - Metrics (runs, step durations, store writes, queue, loop lag) through the
//!   `metrics` facade; this crate never installs a recorder (see [`describe_metrics`]).
//!
//! The promise: no pool, connection or future ever crosses an event loop; only
//! messages do. Nodes that do CPU-heavy or blocking work must move it to
//! `tokio::task::spawn_blocking` (and await it), or they stall their run's loop.
//!
//! This crate never talks to a database itself: stores come from a [`StoreFactory`]
//! (the `graphloop-postgres` crate provides PostgreSQL).
//!
//! # Example
//!
//! See [`Engine`].

mod config;
mod engine;
mod error;
mod health;
mod memory;
mod persister;
mod run;
mod store;
mod supervisor;
mod telemetry;

pub use config::{AdmissionConfig, Durability, EngineConfig, HealthConfig, PersisterConfig, RestartPolicy};
pub use engine::{Engine, EngineStats, EventStream, RunOptions, ShutdownReport, Submitted};
pub use error::EngineError;
pub use health::{Health, HealthStatus, RunHealth, StoreHealth};
pub use memory::{MemoryStore, MemoryStoreFactory};
pub use persister::{PersisterStats, ProgressPersister, Streamed};
pub use run::RunSnapshot;
pub use store::{
    stored_now, Batch, CheckpointRecord, CommitUnit, ErrorSource, EventRecord, PoolStatus, Retention, RunQuery,
    RunRecord, RunStatus, RunStorage, RunUpdate, Store, StoreError, StoreFactory, Written,
};
pub use supervisor::{Supervisor, SupervisorStats};
pub use telemetry::describe_metrics;
