//! Errors of the workflow model: building a graph, running a node, running a graph.

use std::time::Duration;

/// Why a graph definition was refused by [`GraphBuilder::compile`](crate::GraphBuilder::compile).
///
/// Every variant names the node or edge at fault, so the message alone tells the
/// author what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph has no nodes at all.
    #[error("graph `{graph}` has no nodes")]
    Empty {
        /// The graph's name.
        graph: String,
    },
    /// Two nodes were added under the same name.
    #[error("node `{node}` is defined twice")]
    DuplicateNode {
        /// The repeated name.
        node: String,
    },
    /// A node name is empty or is one of the reserved names `__start__` / `__end__`.
    #[error("`{node}` is not a valid node name (empty, or reserved for START/END)")]
    InvalidNodeName {
        /// The refused name.
        node: String,
    },
    /// An edge or a policy mentions a node that was never added.
    #[error("{place} refers to unknown node `{node}`")]
    UnknownNode {
        /// Where the name was used: an edge (`edge \`a -> b\``) or a policy.
        place: String,
        /// The unknown node.
        node: String,
    },
    /// An edge that cannot be: out of END, into START, a fan-out to END, a join from
    /// START or into one of its own sources.
    #[error("edge `{edge}` is invalid: {reason}")]
    InvalidEdge {
        /// The edge, written `from -> to`.
        edge: String,
        /// Why it cannot be.
        reason: String,
    },
    /// A conditional edge declares no targets.
    #[error("conditional edge from `{from}` declares no targets")]
    NoTargets {
        /// The edge's source node.
        from: String,
    },
    /// A join has no source nodes to wait for.
    #[error("join into `{target}` has no sources to wait for")]
    EmptyJoin {
        /// The join's target node.
        target: String,
    },
    /// No edge leaves START.
    #[error("graph `{graph}` has no entry point: add an edge from START")]
    NoEntryPoint {
        /// The graph's name.
        graph: String,
    },
    /// No sequence of edges leads from START to END.
    #[error("graph `{graph}` has no path from START to END")]
    NoPathToEnd {
        /// The graph's name.
        graph: String,
    },
    /// A node that no path from START reaches.
    #[error("node `{node}` is unreachable from START")]
    Unreachable {
        /// The node.
        node: String,
    },
    /// A node with no outgoing edge at all.
    #[error("node `{node}` has no outgoing edge (add an edge to another node or to END)")]
    NoWayOut {
        /// The node.
        node: String,
    },
    /// A node from which END cannot be reached (a loop with no exit).
    #[error("node `{node}` can never reach END (a loop without an exit?)")]
    CannotReachEnd {
        /// The node.
        node: String,
    },
    /// A reducer was declared for a field twice.
    #[error("field `{field}` has two reducers")]
    DuplicateReducer {
        /// The field.
        field: String,
    },
    /// The step limit is zero.
    #[error("step limit must be at least 1")]
    ZeroStepLimit,
    /// A retry policy is inconsistent (zero attempts, a backoff factor below 1, ...).
    #[error("node `{node}` has an invalid retry policy: {reason}")]
    InvalidRetryPolicy {
        /// The node, or `*` for the graph default.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

/// The kind of a [`NodeError`]: decides whether a retry policy may retry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeErrorKind {
    /// A transient failure (a network blip, a rate limit): retried by the node's policy.
    Retryable,
    /// A permanent failure (bad input, a bug): never retried; the run fails.
    Fatal,
    /// The node exceeded its timeout; its future was dropped. Retryable.
    Timeout,
    /// The node panicked; the panic was caught. Retried like a retryable error.
    Panic,
    /// The node observed the run's cancellation and gave up.
    Cancelled,
    /// The node asks a person (a reviewer) something: the run waits for the answer
    /// (see [`NodeError::interrupt`]). Never retried.
    Interrupt,
}

impl std::fmt::Display for NodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeErrorKind::Retryable => "retryable",
            NodeErrorKind::Fatal => "fatal",
            NodeErrorKind::Timeout => "timeout",
            NodeErrorKind::Panic => "panic",
            NodeErrorKind::Cancelled => "cancelled",
            NodeErrorKind::Interrupt => "interrupt",
        })
    }
}

/// An error returned by a node (or made from its timeout or panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message} ({kind})")]
pub struct NodeError {
    /// What kind of failure this is.
    pub kind: NodeErrorKind,
    /// A human-readable explanation.
    pub message: String,
    /// For an interrupt: what the node asks (a question for a reviewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl NodeError {
    /// A transient failure that the node's retry policy may retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { kind: NodeErrorKind::Retryable, message: message.into(), payload: None }
    }

    /// A permanent failure: the run fails without retrying.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: NodeErrorKind::Fatal, message: message.into(), payload: None }
    }

    /// The node ran longer than `limit`.
    pub fn timeout(limit: Duration) -> Self {
        Self { kind: NodeErrorKind::Timeout, message: format!("node timed out after {limit:?}"), payload: None }
    }

    /// The node panicked with `message`.
    pub fn panic(message: impl Into<String>) -> Self {
        Self { kind: NodeErrorKind::Panic, message: format!("node panicked: {}", message.into()), payload: None }
    }

    /// The node stopped because the run was cancelled.
    pub fn cancelled() -> Self {
        Self { kind: NodeErrorKind::Cancelled, message: "run cancelled".into(), payload: None }
    }

    /// Interrupts the run to ask a person something: the run checkpoints and waits;
    /// `Engine::resume` (or [`Checkpoint::answer`](crate::Checkpoint) with the reference
    /// executor) continues it, running this node again with the answer in
    /// [`NodeContext::answer`](crate::NodeContext::answer).
    pub fn interrupt(payload: impl serde::Serialize) -> Self {
        let payload = serde_json::to_value(payload).unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
        Self { kind: NodeErrorKind::Interrupt, message: "waiting for an answer".into(), payload: Some(payload) }
    }

    /// Whether a retry policy may retry this error at all.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, NodeErrorKind::Retryable | NodeErrorKind::Timeout | NodeErrorKind::Panic)
    }
}

/// Why a run of a compiled graph stopped without completing.
///
/// Serialized with a `kind` tag in snake_case (`{"kind": "node_failed", "node": ...}`),
/// as events are.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunError {
    /// A node failed for good (fatal error, or retries exhausted).
    #[error("node `{node}` failed at step {step} after {attempts} attempt(s): {error}")]
    NodeFailed {
        /// The node.
        node: String,
        /// The superstep it ran in.
        step: u64,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        error: NodeError,
    },
    /// The run took more supersteps than its limit (a loop that does not end).
    #[error("step limit of {limit} exceeded; nodes still pending: {pending:?}")]
    StepLimitExceeded {
        /// The limit in force.
        limit: u64,
        /// The nodes that would have run next.
        pending: Vec<String>,
    },
    /// Two tasks of one superstep wrote the same field, which has no reducer to merge them.
    #[error(
        "nodes `{first}` and `{second}` both wrote field `{field}` in step {step}; \
         give the field a reducer (e.g. append) or write it from one node only"
    )]
    ConflictingUpdate {
        /// The field.
        field: String,
        /// The first writer (in merge order).
        first: String,
        /// The second writer.
        second: String,
        /// The superstep.
        step: u64,
    },
    /// A node's update could not be applied to the state.
    #[error("update from node `{node}` is invalid: {reason}")]
    InvalidUpdate {
        /// The node.
        node: String,
        /// What is wrong (unknown field, type mismatch, reducer failure...).
        reason: String,
    },
    /// A router chose a node that its edge did not declare.
    #[error("router of `{from}` chose `{target}`, which is not among its declared targets {declared:?}")]
    UndeclaredTarget {
        /// The routing node.
        from: String,
        /// The chosen target.
        target: String,
        /// The declared targets.
        declared: Vec<String>,
    },
    /// A router (conditional or fan-out) panicked or produced inputs that do not serialize.
    #[error("router of `{from}` failed: {reason}")]
    RouterFailed {
        /// The routing node (`__start__` for START).
        from: String,
        /// What went wrong.
        reason: String,
    },
    /// The input or the state could not be (de)serialized.
    #[error("state error: {reason}")]
    State {
        /// What went wrong.
        reason: String,
    },
    /// The run was cancelled.
    #[error("run cancelled")]
    Cancelled,
    /// A node interrupted the run to ask something; it waits for an answer.
    #[error("run interrupted by `{node}`: waiting for an answer")]
    Interrupted {
        /// The task that asked (its label).
        node: String,
        /// What it asked.
        payload: serde_json::Value,
    },
    /// Whatever was executing the run stopped unexpectedly (a runtime's actor died).
    #[error("run aborted: {reason}")]
    Aborted {
        /// What happened.
        reason: String,
    },
}
