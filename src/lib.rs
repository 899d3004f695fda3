//! graphloop: an actor-system workflow engine for long, many-step analyses.
//!
//! This facade re-exports the public API of the workspace's crates; see
//! [`graphloop_core`] for the workflow model.

pub use graphloop_core::*;

/// The README's examples, compiled and run as doc-tests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
