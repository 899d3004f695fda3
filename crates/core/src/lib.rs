//! The workflow model of graphloop: what a workflow *is*, and how one runs.
//!
//! A workflow is a graph over a typed state. Nodes are async functions (or [`Node`]
//! implementations) that read the state and return an [`Update`]; [`Reducer`]s merge
//! updates into the state field by field. Edges decide what runs next: static edges,
//! conditional edges whose router picks among declared targets, parallel fan-out with
//! [`GraphBuilder::join`], dynamic fan-out ([`GraphBuilder::fan_out`], LangGraph's
//! `Send`) and loops bounded by a step limit. Each node has a [`RetryPolicy`] and a
//! timeout. [`GraphBuilder::compile`] validates everything up front and names the node or
//! edge at fault.
//!
//! A run advances in supersteps: every task of a step runs concurrently, their updates
//! merge in a deterministic order, then the edges of the nodes that ran choose the next
//! step. [`Graph::start`], [`Graph::invoke`] and [`Graph::apply`] are that step logic;
//! the [`Executor`] is the reference executor built on them, and the actor runtime
//! (`graphloop-runtime`) builds on the same three.
//!
//! This crate never does I/O and knows nothing of actors or databases: it defines the
//! model, and the context a node sees ([`NodeContext`]) as plain values and traits.
//!
//! # Example
//!
//! ```
//! use graphloop_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Default, Serialize, Deserialize)]
//! struct Review { text: String, words: usize, notes: Vec<String> }
//!
//! let graph = GraphBuilder::<Review>::new("review")
//!     .node("count", |s, _ctx| async move { Ok(Update::new().set("words", s.text.split_whitespace().count())) })
//!     .node("flag", |_s, _ctx| async move { Ok(Update::new().set("notes", ["short"])) })
//!     .edge(START, "count")
//!     .conditional_edge("count", ["flag", END], |s: &Review| if s.words < 5 { "flag" } else { END })
//!     .edge("flag", END)
//!     .reducer("notes", Reducer::append())
//!     .compile()?;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! let input = Review { text: "Net 30 days.".into(), ..Review::default() };
//! let done = rt.block_on(Executor::new(&graph).run(input))?;
//! assert_eq!((done.words, done.notes), (3, vec!["short".to_string()]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod event;
mod executor;
mod export;
mod graph;
mod node;
mod policy;
mod progress;
mod state;

pub use error::{GraphError, NodeError, NodeErrorKind, RunError};
pub use event::{EventKind, EventLog, EventSink, RunEvent};
pub use executor::Executor;
pub use graph::{
    panic_message, Checkpoint, Graph, GraphBuilder, Interrupt, Invocation, Next, DEFAULT_STEP_LIMIT, END, START,
};
pub use node::{CancelToken, Node, NodeContext, NodeFuture, NodeResult, NoopObserver, Observer, Task, UserContext};
pub use policy::{NodePolicy, RetryPolicy};
pub use progress::StepProgress;
pub use state::{Reducer, State, Update};

/// What an application needs to define and run a graph.
pub mod prelude {
    pub use crate::{
        Executor, GraphBuilder, Node, NodeContext, NodeError, NodeFuture, Reducer, RetryPolicy, Update, UserContext,
        END, START,
    };
}
