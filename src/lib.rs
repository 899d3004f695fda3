//! graphloop: an actor-system workflow engine for long, many-step analyses.
//!
//! This facade re-exports the public API of the workspace's crates; see
//! [`graphloop_core`] for the workflow model.

pub use graphloop_core::*;
