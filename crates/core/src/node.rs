//! Nodes and what they see while they run: [`Node`], [`NodeContext`], [`UserContext`],
//! [`CancelToken`] and the [`Observer`] that carries their progress out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::NodeError;
use crate::state::Update;

/// What a node returns: the fields it changes, or why it failed.
pub type NodeResult = Result<Update, NodeError>;

/// The boxed future a [`Node`] returns.
pub type NodeFuture<'a> = Pin<Box<dyn Future<Output = NodeResult> + Send + 'a>>;

/// A step of a workflow.
///
/// Plain `async` closures and functions of `(Arc<S>, NodeContext)` are nodes already
/// (see [`GraphBuilder::node`](crate::GraphBuilder::node)); implement this trait for
/// nodes that hold their own resources (a model client, a cache):
///
/// ```
/// use std::sync::Arc;
/// use graphloop_core::{Node, NodeContext, NodeFuture, Update};
///
/// struct Greeter { greeting: String }
///
/// impl Node<serde_json::Value> for Greeter {
///     fn run<'a>(&'a self, _state: Arc<serde_json::Value>, ctx: NodeContext) -> NodeFuture<'a> {
///         Box::pin(async move { Ok(Update::new().set("message", format!("{} {}", self.greeting, ctx.user().user_id))) })
///     }
/// }
/// ```
///
/// The state arrives as an `Arc`: every task of a step shares one copy, so a fan-out to
/// a hundred invocations does not clone the state a hundred times.
///
/// CPU-heavy or blocking work must not run on the node's own loop (it would stall every
/// other future there): move it to `tokio::task::spawn_blocking` and await the handle.
pub trait Node<S>: Send + Sync + 'static {
    /// Runs the node once (one attempt) and returns its update.
    fn run<'a>(&'a self, state: Arc<S>, ctx: NodeContext) -> NodeFuture<'a>;
}

/// Adapts an async closure or function to [`Node`].
pub(crate) struct FnNode<F>(pub(crate) F);

impl<S, F, Fut> Node<S> for FnNode<F>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = NodeResult> + Send + 'static,
{
    fn run<'a>(&'a self, state: Arc<S>, ctx: NodeContext) -> NodeFuture<'a> {
        Box::pin((self.0)(state, ctx))
    }
}

/// Who a run belongs to. Carried from the start of a run to every node, event and row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserContext {
    /// The user's id, as the host application knows it.
    pub user_id: String,
    /// The user's tenant (organisation), if the application has tenants.
    pub tenant: Option<String>,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl UserContext {
    /// A user with no tenant and no roles.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self { user_id: user_id.into(), tenant: None, roles: Vec::new() }
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a role.
    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }
}

/// A run's cancellation signal: cheap to clone, observed by nodes.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run: every waiter of [`CancelToken::cancelled`] wakes.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Completes once the run is cancelled.
    pub async fn cancelled(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Register before checking the flag, so a cancel between the two is not missed.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

/// One task of a step: a node, and for fan-out invocations their index and input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The node to run.
    pub node: String,
    /// The invocation index among the fan-out invocations of this node in this step
    /// (0 for a node triggered by an ordinary edge).
    pub invocation: u32,
    /// The input a fan-out router gave this invocation (`None` for ordinary edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl Task {
    /// A task for `node` triggered by an ordinary edge.
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into(), invocation: 0, input: None }
    }

    /// The task's label in messages: `node`, or `node[i]` for a fan-out invocation.
    pub fn label(&self) -> String {
        if self.input.is_some() {
            format!("{}[{}]", self.node, self.invocation)
        } else {
            self.node.clone()
        }
    }
}

/// Receives what happens inside node attempts, as it happens.
///
/// The reference executor turns these into [`RunEvent`](crate::RunEvent)s; the actor
/// runtime turns them into messages. Implementations must be cheap and never block: they
/// are called from the node's own loop.
pub trait Observer: Send + Sync {
    /// A node reported fine-grained progress (`fraction` in `0.0..=1.0`).
    fn node_progress(&self, task: &Task, fraction: f64, message: &str);

    /// An attempt failed with a retryable error; the next starts after `delay`.
    fn node_retrying(&self, task: &Task, attempt: u32, error: &NodeError, delay: Duration);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn node_progress(&self, _task: &Task, _fraction: f64, _message: &str) {}
    fn node_retrying(&self, _task: &Task, _attempt: u32, _error: &NodeError, _delay: Duration) {}
}

/// Everything a node knows about the run it is part of.
#[derive(Clone)]
pub struct NodeContext {
    pub(crate) run_id: Uuid,
    pub(crate) user: Arc<UserContext>,
    pub(crate) step: u64,
    pub(crate) attempt: u32,
    pub(crate) task: Arc<Task>,
    pub(crate) cancel: CancelToken,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) answer: Option<Arc<Value>>,
}

impl NodeContext {
    /// A context for running a node outside a graph (tests, tools): attempt 1 of `task`
    /// at `step`, reporting to `observer`.
    pub fn new(
        run_id: Uuid,
        user: Arc<UserContext>,
        step: u64,
        task: Task,
        cancel: CancelToken,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Self { run_id, user, step, attempt: 1, task: Arc::new(task), cancel, observer, answer: None }
    }

    /// The run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The user the run belongs to.
    pub fn user(&self) -> &UserContext {
        &self.user
    }

    /// The superstep this node runs in (1 for the first).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The attempt number (1 for the first try, 2 for the first retry...).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.task.node
    }

    /// The invocation index among this node's fan-out invocations in this step.
    pub fn invocation(&self) -> u32 {
        self.task.invocation
    }

    /// The task being run.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The raw input a fan-out router gave this invocation, if any.
    pub fn raw_input(&self) -> Option<&Value> {
        self.task.input.as_ref()
    }

    /// The input a fan-out router gave this invocation, as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        let raw = self
            .task
            .input
            .as_ref()
            .ok_or_else(|| NodeError::fatal(format!("node `{}` was not invoked by a fan-out", self.task.node)))?;
        T::deserialize(raw).map_err(|err| NodeError::fatal(format!("fan-out input of `{}`: {err}", self.task.label())))
    }

    /// Gives this context the answer to the question this task asked before (with
    /// [`NodeError::interrupt`]).
    #[must_use]
    pub fn with_answer(mut self, answer: Value) -> Self {
        self.answer = Some(Arc::new(answer));
        self
    }

    /// The answer to the question this task asked (with [`NodeError::interrupt`]), if the
    /// run was resumed with one; `None` the first time.
    pub fn answer<T: DeserializeOwned>(&self) -> Result<Option<T>, NodeError> {
        self.answer
            .as_deref()
            .map(|answer| T::deserialize(answer))
            .transpose()
            .map_err(|err| NodeError::fatal(format!("answer for `{}`: {err}", self.task.label())))
    }

    /// A key that is the same for every attempt of this task and different for every
    /// other task: `run id:step:node:invocation`. Use it to deduplicate side effects
    /// (a payment, an e-mail) when an attempt is retried or a run resumes.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}:{}", self.run_id, self.step, self.task.node, self.task.invocation)
    }

    /// Reports how far this node has got (`fraction` in `0.0..=1.0`, clamped) with a
    /// short message. Cheap; call it as often as is useful.
    pub fn progress(&self, fraction: f64, message: &str) {
        if fraction.is_nan() {
            return;
        }
        self.observer.node_progress(&self.task, fraction.clamp(0.0, 1.0), message);
    }

    /// The run's cancellation signal. A node is dropped at once when its run is
    /// cancelled; long synchronous loops (in `spawn_blocking`) should poll
    /// [`CancelToken::is_cancelled`].
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    pub(crate) fn for_attempt(&self, attempt: u32) -> Self {
        Self { attempt, ..self.clone() }
    }
}

impl fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeContext")
            .field("run_id", &self.run_id)
            .field("user", &self.user)
            .field("step", &self.step)
            .field("attempt", &self.attempt)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_wakes_a_waiter_registered_before_and_after() {
        let token = CancelToken::new();
        let early = tokio::spawn({
            let token = token.clone();
            async move { token.cancelled().await }
        });
        tokio::task::yield_now().await;
        token.cancel();
        early.await.unwrap();
        // Already cancelled: returns at once.
        token.cancelled().await;
        assert!(token.is_cancelled());
    }

    #[test]
    fn input_is_typed_and_errors_name_the_task() {
        let task = Task { node: "classify".into(), invocation: 3, input: Some(serde_json::json!({"n": 4})) };
        let ctx = NodeContext::new(
            Uuid::nil(),
            Arc::new(UserContext::new("u")),
            2,
            task,
            CancelToken::new(),
            Arc::new(NoopObserver),
        );
        #[derive(Deserialize)]
        struct In {
            n: u32,
        }
        assert_eq!(ctx.input::<In>().map(|i| i.n), Ok(4));
        let err = ctx.input::<String>().unwrap_err();
        assert!(err.message.contains("classify[3]"), "{err}");
        assert_eq!(ctx.idempotency_key(), format!("{}:2:classify:3", Uuid::nil()));
    }
}
