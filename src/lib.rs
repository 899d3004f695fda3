//! graphloop: an actor-system workflow engine for long, many-step analyses.
//!
//! This facade re-exports the public API of the workspace's crates:
//! the workflow model ([`graphloop_core`]: graphs, nodes, reducers, the reference
//! executor), the actor runtime ([`graphloop_runtime`]: [`Engine`], its actors and
//! stores) and the PostgreSQL store ([`PgStoreConfig`]).

pub use graphloop_core::*;
pub use graphloop_postgres::{PgStore, PgStoreConfig};
pub use graphloop_runtime::*;

/// The README's examples, compiled and run as doc-tests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
