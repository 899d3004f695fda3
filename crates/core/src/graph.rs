//! Defining a graph ([`GraphBuilder`]), validating it, and the compiled [`Graph`] with its
//! pure step logic: where a run starts, how a step's results merge, what runs next.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::error::{GraphError, NodeError, RunError};
use crate::node::{FnNode, Node, NodeContext, NodeResult, Task};
use crate::policy::{NodePolicy, RetryPolicy};
use crate::state::{self, Reducer, Reducers, State, Update};

/// The name of the graph's entry: edges from `START` choose the first step's nodes.
pub const START: &str = "__start__";
/// The name of the graph's exit: a branch that reaches `END` is finished.
pub const END: &str = "__end__";

/// The step limit when none is set (LangGraph's recursion limit).
pub const DEFAULT_STEP_LIMIT: u64 = 25;

/// Where a router sends the run next: one or several target names (or [`END`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Next(Vec<String>);

impl Next {
    /// The chosen targets.
    pub fn targets(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for Next {
    fn from(target: &str) -> Self {
        Self(vec![target.to_owned()])
    }
}

impl From<String> for Next {
    fn from(target: String) -> Self {
        Self(vec![target])
    }
}

impl From<Vec<String>> for Next {
    fn from(targets: Vec<String>) -> Self {
        Self(targets)
    }
}

impl From<Vec<&str>> for Next {
    fn from(targets: Vec<&str>) -> Self {
        Self(targets.into_iter().map(str::to_owned).collect())
    }
}

impl<const N: usize> From<[&str; N]> for Next {
    fn from(targets: [&str; N]) -> Self {
        Self(targets.into_iter().map(str::to_owned).collect())
    }
}

type RouteFn<S> = dyn Fn(&S) -> Next + Send + Sync;
type FanOutFn<S> = dyn Fn(&S) -> Result<Vec<Value>, String> + Send + Sync;

enum RouterDef<S> {
    Conditional { targets: Vec<String>, route: Arc<RouteFn<S>> },
    FanOut { target: String, route: Arc<FanOutFn<S>> },
}

/// Defines a graph: its nodes, edges, reducers and policies.
///
/// Nothing is checked until [`GraphBuilder::compile`], which reports every problem as a
/// [`GraphError`] naming the node or edge at fault.
///
/// ```
/// use graphloop_core::{GraphBuilder, Update, START, END};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Counter { n: u32 }
///
/// let graph = GraphBuilder::<Counter>::new("count")
///     .node("inc", |s, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
///     .edge(START, "inc")
///     .conditional_edge("inc", ["inc", END], |s: &Counter| if s.n < 3 { "inc" } else { END })
///     .compile()
///     .unwrap();
/// assert_eq!(graph.node_names().collect::<Vec<_>>(), ["inc"]);
/// ```
pub struct GraphBuilder<S> {
    name: String,
    version: u32,
    nodes: Vec<(String, Arc<dyn Node<S>>)>,
    edges: Vec<(String, String)>,
    routers: Vec<(String, RouterDef<S>)>,
    joins: Vec<(Vec<String>, String)>,
    retries: Vec<(String, RetryPolicy)>,
    timeouts: Vec<(String, Duration)>,
    reducers: Vec<(String, Reducer)>,
    default_reducer: Reducer,
    default_policy: NodePolicy,
    step_limit: u64,
}

impl<S: State> Default for GraphBuilder<S> {
    fn default() -> Self {
        Self::new("graph")
    }
}

impl<S: State> GraphBuilder<S> {
    /// An empty graph called `name` (version 1, step limit [`DEFAULT_STEP_LIMIT`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: 1,
            nodes: Vec::new(),
            edges: Vec::new(),
            routers: Vec::new(),
            joins: Vec::new(),
            retries: Vec::new(),
            timeouts: Vec::new(),
            reducers: Vec::new(),
            default_reducer: Reducer::last_value(),
            default_policy: NodePolicy::default(),
            step_limit: DEFAULT_STEP_LIMIT,
        }
    }

    /// The graph's version (runs record it; registries key graphs by name and version).
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Adds a node made of an async closure or function of `(Arc<S>, NodeContext)`.
    #[must_use]
    pub fn node<F, Fut>(mut self, name: impl Into<String>, run: F) -> Self
    where
        F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NodeResult> + Send + 'static,
    {
        self.nodes.push((name.into(), Arc::new(FnNode(run))));
        self
    }

    /// Adds a node that implements [`Node`] (for nodes that hold resources).
    #[must_use]
    pub fn add_node(mut self, name: impl Into<String>, node: impl Node<S>) -> Self {
        self.nodes.push((name.into(), Arc::new(node)));
        self
    }

    /// A static edge: when `from` completes, `to` runs in the next step. Several edges
    /// from one node fan out: their targets run in parallel.
    #[must_use]
    pub fn edge(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.edges.push((from.into(), to.into()));
        self
    }

    /// A conditional edge: when `from` completes, `route` looks at the merged state and
    /// picks one or more of the declared `targets` (which may include [`END`]).
    #[must_use]
    pub fn conditional_edge<T, R, N>(mut self, from: impl Into<String>, targets: T, route: R) -> Self
    where
        T: IntoIterator,
        T::Item: Into<String>,
        R: Fn(&S) -> N + Send + Sync + 'static,
        N: Into<Next>,
    {
        let targets = targets.into_iter().map(Into::into).collect();
        let route: Arc<RouteFn<S>> = Arc::new(move |state: &S| route(state).into());
        self.routers.push((from.into(), RouterDef::Conditional { targets, route }));
        self
    }

    /// A dynamic fan-out (LangGraph's `Send`): when `from` completes, `route` returns one
    /// input per invocation of `target`; all invocations run in the next step, each
    /// reading its input with [`NodeContext::input`], and their updates merge in
    /// invocation order.
    #[must_use]
    pub fn fan_out<R, I>(mut self, from: impl Into<String>, target: impl Into<String>, route: R) -> Self
    where
        R: Fn(&S) -> Vec<I> + Send + Sync + 'static,
        I: Serialize,
    {
        let route: Arc<FanOutFn<S>> = Arc::new(move |state: &S| {
            route(state).into_iter().map(|input| serde_json::to_value(input).map_err(|e| e.to_string())).collect()
        });
        self.routers.push((from.into(), RouterDef::FanOut { target: target.into(), route }));
        self
    }

    /// A join: `target` runs once every one of `sources` has completed (since `target`
    /// last ran), however many steps apart they finish.
    #[must_use]
    pub fn join<T>(mut self, sources: T, target: impl Into<String>) -> Self
    where
        T: IntoIterator,
        T::Item: Into<String>,
    {
        self.joins.push((sources.into_iter().map(Into::into).collect(), target.into()));
        self
    }

    /// The reducer for one field of the state (fields without one use the default).
    #[must_use]
    pub fn reducer(mut self, field: impl Into<String>, reducer: Reducer) -> Self {
        self.reducers.push((field.into(), reducer));
        self
    }

    /// The reducer for fields without their own ([`Reducer::last_value`] unless set).
    #[must_use]
    pub fn default_reducer(mut self, reducer: Reducer) -> Self {
        self.default_reducer = reducer;
        self
    }

    /// The retry policy of one node.
    #[must_use]
    pub fn retry(mut self, node: impl Into<String>, policy: RetryPolicy) -> Self {
        self.retries.push((node.into(), policy));
        self
    }

    /// The retry policy of nodes without their own ([`RetryPolicy::default`] unless set).
    #[must_use]
    pub fn default_retry(mut self, policy: RetryPolicy) -> Self {
        self.default_policy.retry = policy;
        self
    }

    /// How long one attempt of `node` may run before it is dropped (a retryable error).
    #[must_use]
    pub fn timeout(mut self, node: impl Into<String>, limit: Duration) -> Self {
        self.timeouts.push((node.into(), limit));
        self
    }

    /// The timeout of nodes without their own (none unless set).
    #[must_use]
    pub fn default_timeout(mut self, limit: Duration) -> Self {
        self.default_policy.timeout = Some(limit);
        self
    }

    /// The most supersteps a run may take; a run that needs more fails with
    /// [`RunError::StepLimitExceeded`]. Defaults to [`DEFAULT_STEP_LIMIT`].
    #[must_use]
    pub fn step_limit(mut self, limit: u64) -> Self {
        self.step_limit = limit;
        self
    }

    /// Validates the definition and returns the runnable graph.
    ///
    /// Never panics: every problem is a [`GraphError`] naming the node or edge at fault.
    pub fn compile(self) -> Result<Graph<S>, GraphError> {
        if self.step_limit == 0 {
            return Err(GraphError::ZeroStepLimit);
        }
        if self.nodes.is_empty() {
            return Err(GraphError::Empty { graph: self.name });
        }
        let mut index = HashMap::with_capacity(self.nodes.len());
        for (i, (name, _)) in self.nodes.iter().enumerate() {
            if name.is_empty() || name == START || name == END {
                return Err(GraphError::InvalidNodeName { node: name.clone() });
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(GraphError::DuplicateNode { node: name.clone() });
            }
        }
        // Resolves one end of an edge of `kind` (`edge`, `conditional edge`...) written `edge`.
        let resolve = |name: &str, kind: &str, edge: &str| -> Result<Option<usize>, GraphError> {
            match name {
                START | END => Ok(None),
                _ => index.get(name).map(|&i| Some(i)).ok_or_else(|| GraphError::UnknownNode {
                    place: format!("{kind} `{edge}`"),
                    node: name.to_owned(),
                }),
            }
        };
        let invalid =
            |edge: &str, reason: &str| GraphError::InvalidEdge { edge: edge.to_owned(), reason: reason.to_owned() };
        let resolve_source = |name: &str, kind: &str, edge: &str| -> Result<Source, GraphError> {
            match resolve(name, kind, edge)? {
                Some(i) => Ok(Source::Node(i)),
                None if name == START => Ok(Source::Start),
                None => Err(invalid(edge, "END has no way out")),
            }
        };
        let resolve_target = |name: &str, kind: &str, edge: &str| -> Result<Target, GraphError> {
            match resolve(name, kind, edge)? {
                Some(i) => Ok(Target::Node(i)),
                None if name == END => Ok(Target::End),
                None => Err(invalid(edge, "START has no way in")),
            }
        };

        let mut start = Outgoing::default();
        let mut outgoing: Vec<Outgoing<S>> = (0..self.nodes.len()).map(|_| Outgoing::default()).collect();
        fn out_of<'a, S>(
            start: &'a mut Outgoing<S>,
            nodes: &'a mut [Outgoing<S>],
            source: Source,
        ) -> &'a mut Outgoing<S> {
            match source {
                Source::Start => start,
                Source::Node(i) => &mut nodes[i],
            }
        }

        for (from, to) in &self.edges {
            let edge = format!("{from} -> {to}");
            let source = resolve_source(from, "edge", &edge)?;
            let target = resolve_target(to, "edge", &edge)?;
            let out = out_of(&mut start, &mut outgoing, source);
            if !out.statics.contains(&target) {
                out.statics.push(target);
            }
        }
        for (from, router) in self.routers {
            match router {
                RouterDef::Conditional { targets, route } => {
                    if targets.is_empty() {
                        return Err(GraphError::NoTargets { from });
                    }
                    let mut source = None;
                    let mut resolved = Vec::with_capacity(targets.len());
                    for to in &targets {
                        let edge = format!("{from} -> {to}");
                        source = Some(resolve_source(&from, "conditional edge", &edge)?);
                        resolved.push(resolve_target(to, "conditional edge", &edge)?);
                    }
                    if let Some(source) = source {
                        out_of(&mut start, &mut outgoing, source).routers.push(Router::Conditional {
                            targets: resolved,
                            names: targets,
                            route,
                        });
                    }
                }
                RouterDef::FanOut { target, route } => {
                    let edge = format!("{from} -> {target}");
                    let source = resolve_source(&from, "fan-out edge", &edge)?;
                    let Target::Node(target) = resolve_target(&target, "fan-out edge", &edge)? else {
                        return Err(invalid(&edge, "a fan-out must target a node, not END"));
                    };
                    out_of(&mut start, &mut outgoing, source).routers.push(Router::FanOut { target, route });
                }
            }
        }
        let mut joins = Vec::with_capacity(self.joins.len());
        for (j, (sources, to)) in self.joins.iter().enumerate() {
            if sources.is_empty() {
                return Err(GraphError::EmptyJoin { target: to.clone() });
            }
            let mut resolved = BTreeSet::new();
            for from in sources {
                let edge = format!("{from} -> {to}");
                let Source::Node(i) = resolve_source(from, "join edge", &edge)? else {
                    return Err(invalid(&edge, "a join waits for nodes; START cannot be one"));
                };
                if from == to {
                    return Err(invalid(&edge, "a join's target cannot be one of its sources: it would never run"));
                }
                resolved.insert(i);
                outgoing[i].joins.push(j);
            }
            let target = resolve_target(to, "join edge", &format!("{} -> {to}", sources.join(" & ")))?;
            joins.push(Join { sources: resolved, target });
        }

        let mut policies = vec![self.default_policy.clone(); self.nodes.len()];
        if let Some(reason) = self.default_policy.retry.problem() {
            return Err(GraphError::InvalidRetryPolicy { node: "*".into(), reason });
        }
        for (node, retry) in self.retries {
            let i = *index
                .get(&node)
                .ok_or_else(|| GraphError::UnknownNode { place: "a retry policy".into(), node: node.clone() })?;
            if let Some(reason) = retry.problem() {
                return Err(GraphError::InvalidRetryPolicy { node, reason });
            }
            policies[i].retry = retry;
        }
        for (node, limit) in self.timeouts {
            let i = *index
                .get(&node)
                .ok_or_else(|| GraphError::UnknownNode { place: "a timeout".into(), node: node.clone() })?;
            policies[i].timeout = Some(limit);
        }
        let mut reducers = Reducers { by_field: HashMap::new(), default: self.default_reducer };
        for (field, reducer) in self.reducers {
            if reducers.by_field.contains_key(&field) {
                return Err(GraphError::DuplicateReducer { field });
            }
            reducers.by_field.insert(field, reducer);
        }

        // Shape checks, from the entry outwards.
        if start.is_empty() {
            return Err(GraphError::NoEntryPoint { graph: self.name });
        }
        let successors = |out: &Outgoing<S>| -> Vec<Target> {
            let mut next = out.statics.clone();
            for router in &out.routers {
                match router {
                    Router::Conditional { targets, .. } => next.extend(targets.iter().copied()),
                    Router::FanOut { target, .. } => next.push(Target::Node(*target)),
                }
            }
            next.extend(out.joins.iter().map(|&j| joins[j].target));
            next
        };
        let mut reached = vec![false; self.nodes.len()];
        let mut start_reaches_end = false;
        let mut queue: VecDeque<Target> = successors(&start).into();
        while let Some(target) = queue.pop_front() {
            match target {
                Target::End => start_reaches_end = true,
                Target::Node(i) if !reached[i] => {
                    reached[i] = true;
                    queue.extend(successors(&outgoing[i]));
                }
                Target::Node(_) => {}
            }
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(GraphError::Unreachable { node: self.nodes[i].0.clone() });
        }
        if let Some(i) = outgoing.iter().position(Outgoing::is_empty) {
            return Err(GraphError::NoWayOut { node: self.nodes[i].0.clone() });
        }
        if !start_reaches_end {
            return Err(GraphError::NoPathToEnd { graph: self.name });
        }
        // Distance to END in steps (the node itself included), by a backwards search.
        let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len() + 1];
        let end_slot = self.nodes.len();
        for (i, out) in outgoing.iter().enumerate() {
            for target in successors(out) {
                let slot = match target {
                    Target::End => end_slot,
                    Target::Node(t) => t,
                };
                predecessors[slot].push(i);
            }
        }
        let mut distance = vec![u32::MAX; self.nodes.len()];
        let mut queue: VecDeque<(usize, u32)> = predecessors[end_slot].iter().map(|&i| (i, 1)).collect();
        while let Some((i, d)) = queue.pop_front() {
            if distance[i] <= d {
                continue;
            }
            distance[i] = d;
            queue.extend(predecessors[i].iter().map(|&p| (p, d + 1)));
        }
        if let Some(i) = distance.iter().position(|&d| d == u32::MAX) {
            return Err(GraphError::CannotReachEnd { node: self.nodes[i].0.clone() });
        }

        let nodes = self
            .nodes
            .into_iter()
            .zip(outgoing)
            .zip(policies)
            .zip(distance)
            .map(|((((name, node), out), policy), distance)| CompiledNode { name, node, policy, out, distance })
            .collect();
        Ok(Graph {
            inner: Arc::new(Inner {
                name: self.name,
                version: self.version,
                nodes,
                index,
                start,
                joins,
                reducers,
                step_limit: self.step_limit,
            }),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Start,
    Node(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    End,
    Node(usize),
}

pub(crate) enum Router<S> {
    Conditional { targets: Vec<Target>, names: Vec<String>, route: Arc<RouteFn<S>> },
    FanOut { target: usize, route: Arc<FanOutFn<S>> },
}

pub(crate) struct Outgoing<S> {
    pub(crate) statics: Vec<Target>,
    pub(crate) routers: Vec<Router<S>>,
    pub(crate) joins: Vec<usize>,
}

impl<S> Default for Outgoing<S> {
    fn default() -> Self {
        Self { statics: Vec::new(), routers: Vec::new(), joins: Vec::new() }
    }
}

impl<S> Outgoing<S> {
    fn is_empty(&self) -> bool {
        self.statics.is_empty() && self.routers.is_empty() && self.joins.is_empty()
    }
}

pub(crate) struct Join {
    pub(crate) sources: BTreeSet<usize>,
    pub(crate) target: Target,
}

pub(crate) struct CompiledNode<S> {
    pub(crate) name: String,
    pub(crate) node: Arc<dyn Node<S>>,
    pub(crate) policy: NodePolicy,
    pub(crate) out: Outgoing<S>,
    /// Supersteps from running this node to END, this node included (shortest path).
    pub(crate) distance: u32,
}

pub(crate) struct Inner<S> {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) nodes: Vec<CompiledNode<S>>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) start: Outgoing<S>,
    pub(crate) joins: Vec<Join>,
    reducers: Reducers,
    step_limit: u64,
}

/// A validated, runnable graph. Cheap to clone and shareable between threads.
///
/// Besides running under an executor, it exposes the pure step logic every executor
/// shares, so that the reference executor and the actor runtime cannot drift apart:
/// [`Graph::start`] makes the first [`Checkpoint`], [`Graph::invoke`] runs one task
/// under its node's policies, and [`Graph::apply`] merges a step's updates and plans
/// the next step.
pub struct Graph<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for Graph<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S> std::fmt::Debug for Graph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("nodes", &self.inner.nodes.iter().map(|n| &n.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where a run stands between two steps: everything needed to continue it.
///
/// Serializable, so that a runtime can store it and resume the run elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Supersteps completed so far.
    pub step: u64,
    /// The merged state, as a JSON object.
    pub state: Map<String, Value>,
    /// The tasks of the next step, in merge order (empty: the run is complete).
    pub next: Vec<Task>,
    /// For each join (by index), the sources that completed since its target last ran.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joins: BTreeMap<usize, BTreeSet<String>>,
    /// The highest percent reported so far; progress never goes below it.
    pub percent: f64,
    /// The question a task of the next step asked, while the run waits for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<Interrupt>,
}

/// A question a task asked ([`NodeError::interrupt`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// The task that asked.
    pub task: Task,
    /// What it asked.
    pub payload: Value,
}

impl Checkpoint {
    /// Whether the run has finished (no task left).
    pub fn is_complete(&self) -> bool {
        self.next.is_empty()
    }
}

/// The outcome of running one task under its node's policies.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Attempts made (at least 1).
    pub attempts: u32,
    /// The last attempt's result.
    pub result: NodeResult,
}

impl<S: State> Graph<S> {
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The graph's version.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The most supersteps a run may take.
    pub fn step_limit(&self) -> u64 {
        self.inner.step_limit
    }

    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.inner.nodes.iter().map(|n| n.name.as_str())
    }

    /// The policies of `node`, if it exists.
    pub fn policy(&self, node: &str) -> Option<&NodePolicy> {
        self.inner.index.get(node).map(|&i| &self.inner.nodes[i].policy)
    }

    /// The run's first checkpoint: the input as state, and the first step's tasks.
    pub fn start(&self, input: &S) -> Result<Checkpoint, RunError> {
        let state = state::to_object(input)?;
        let mut checkpoint =
            Checkpoint { step: 0, state, next: Vec::new(), joins: BTreeMap::new(), percent: 0.0, interrupt: None };
        checkpoint.next = self.plan(&mut checkpoint.joins, &[], input)?;
        Ok(checkpoint)
    }

    /// The typed state of a checkpoint.
    pub fn state(&self, checkpoint: &Checkpoint) -> Result<S, RunError> {
        state::from_object(&checkpoint.state)
    }

    /// Completes a step: merges the updates of every task of `checkpoint.next` (in task
    /// order, whatever order they finished in), plans the next step, and returns the
    /// new typed state. On error the checkpoint is left as it was.
    ///
    /// `results` must hold exactly one update per task of `checkpoint.next`, in any order.
    pub fn apply(&self, checkpoint: &mut Checkpoint, mut results: Vec<(Task, Update)>) -> Result<S, RunError> {
        let step = checkpoint.step + 1;
        if results.len() != checkpoint.next.len() {
            return Err(RunError::State {
                reason: format!("step {step} has {} tasks but {} results", checkpoint.next.len(), results.len()),
            });
        }
        let order: HashMap<TaskKey<'_>, usize> =
            checkpoint.next.iter().enumerate().map(|(i, t)| (task_key(t), i)).collect();
        let mut keyed = Vec::with_capacity(results.len());
        for (task, update) in results.drain(..) {
            let Some(&position) = order.get(&task_key(&task)) else {
                return Err(RunError::State { reason: format!("task `{}` is not part of step {step}", task.label()) });
            };
            keyed.push((position, task, update));
        }
        keyed.sort_by_key(|(position, ..)| *position);
        if let Some(pair) = keyed.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(RunError::State {
                reason: format!("task `{}` has two results in step {step}", pair[1].1.label()),
            });
        }

        let mut merged = checkpoint.state.clone();
        self.inner.reducers.merge(&mut merged, step, keyed.iter().map(|(_, task, update)| (task.label(), update)))?;
        let typed: S = state::from_object(&merged)?;
        let mut joins = checkpoint.joins.clone();
        let completed: Vec<Task> = keyed.into_iter().map(|(_, task, _)| task).collect();
        let next = self.plan(&mut joins, &completed, &typed)?;
        if !next.is_empty() && step >= self.inner.step_limit {
            let mut pending: Vec<String> = next.iter().map(|t| t.node.clone()).collect();
            pending.dedup();
            return Err(RunError::StepLimitExceeded { limit: self.inner.step_limit, pending });
        }
        checkpoint.step = step;
        checkpoint.state = merged;
        checkpoint.next = next;
        checkpoint.joins = joins;
        checkpoint.interrupt = None;
        if !checkpoint.is_complete() {
            // 100 is for the completion event alone.
            checkpoint.percent = self.percent(checkpoint, 0.0);
        }
        Ok(typed)
    }

    /// The tasks triggered by the `completed` tasks (START when empty), in merge order:
    /// by node (in the order nodes were added), plain invocation first, then fan-out
    /// invocations by index.
    fn plan(
        &self,
        joins: &mut BTreeMap<usize, BTreeSet<String>>,
        completed: &[Task],
        state: &S,
    ) -> Result<Vec<Task>, RunError> {
        let inner = &*self.inner;
        let mut plain: BTreeSet<usize> = BTreeSet::new();
        let mut sent: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
        let mut trigger = |target: Target| {
            if let Target::Node(i) = target {
                plain.insert(i);
            }
        };
        let sources: Vec<(String, &Outgoing<S>)> = if completed.is_empty() {
            vec![(START.to_owned(), &inner.start)]
        } else {
            let distinct: BTreeSet<usize> =
                completed.iter().filter_map(|t| inner.index.get(&t.node).copied()).collect();
            distinct.into_iter().map(|i| (inner.nodes[i].name.clone(), &inner.nodes[i].out)).collect()
        };
        for (from, out) in &sources {
            for &target in &out.statics {
                trigger(target);
            }
            for router in &out.routers {
                match router {
                    Router::Conditional { targets, names, route } => {
                        let next = call_router(from, || route(state))?;
                        for chosen in next.0 {
                            let Some(position) = names.iter().position(|n| *n == chosen) else {
                                return Err(RunError::UndeclaredTarget {
                                    from: from.clone(),
                                    target: chosen,
                                    declared: names.clone(),
                                });
                            };
                            trigger(targets[position]);
                        }
                    }
                    Router::FanOut { target, route } => {
                        let inputs = call_router(from, || route(state))?
                            .map_err(|reason| RunError::RouterFailed { from: from.clone(), reason })?;
                        sent.entry(*target).or_default().extend(inputs);
                    }
                }
            }
            for &j in &out.joins {
                let arrived = joins.entry(j).or_default();
                arrived.insert(from.clone());
                let join = &inner.joins[j];
                if join.sources.iter().all(|&s| arrived.contains(&inner.nodes[s].name)) {
                    joins.remove(&j);
                    trigger(join.target);
                }
            }
        }
        let mut tasks = Vec::with_capacity(plain.len() + sent.values().map(Vec::len).sum::<usize>());
        let nodes: BTreeSet<usize> = plain.iter().chain(sent.keys()).copied().collect();
        for i in nodes {
            let name = &inner.nodes[i].name;
            if plain.contains(&i) {
                tasks.push(Task::new(name.clone()));
            }
            for (n, input) in sent.remove(&i).unwrap_or_default().into_iter().enumerate() {
                let invocation = u32::try_from(n).unwrap_or(u32::MAX);
                tasks.push(Task { node: name.clone(), invocation, input: Some(input) });
            }
        }
        Ok(tasks)
    }

    /// Graph-aware progress of a checkpoint, in percent, with `in_step` (0..=1) of the
    /// next step done.
    ///
    /// Between steps it is `done / (done + remaining)`: steps completed against steps
    /// completed plus the shortest remaining path to END. Within a step it moves towards
    /// `(done + 1) / (done + 1 + remaining)`, which assumes the step brings END no nearer,
    /// so a loop that goes round once more does not have to take progress back. It never
    /// falls below [`Checkpoint::percent`], stays below 100 until the run is complete, and
    /// is 100 once it is.
    pub fn percent(&self, checkpoint: &Checkpoint, in_step: f64) -> f64 {
        if checkpoint.is_complete() {
            return 100.0;
        }
        let remaining = checkpoint
            .next
            .iter()
            .filter_map(|t| self.inner.index.get(&t.node))
            .map(|&i| f64::from(self.inner.nodes[i].distance))
            .fold(1.0, f64::max);
        let done = checkpoint.step as f64;
        let from = 100.0 * done / (done + remaining);
        let to = 100.0 * (done + 1.0) / (done + 1.0 + remaining);
        let percent = from + (to - from) * in_step.clamp(0.0, 1.0);
        percent.min(99.0).max(checkpoint.percent)
    }

    /// Runs one task under its node's policies: each attempt lazily built and guarded
    /// against panics, limited by the node's timeout, retried by its retry policy
    /// (waiting with `tokio::time`), until it succeeds or may no longer retry.
    ///
    /// `ctx` is the context of the first attempt; later attempts get their attempt
    /// number. Dropping the returned future drops the running attempt at once.
    pub fn invoke(&self, state: Arc<S>, ctx: NodeContext) -> impl Future<Output = Invocation> + Send + 'static {
        let graph = self.clone();
        async move {
            let Some(&i) = graph.inner.index.get(&ctx.task.node) else {
                let error = NodeError::fatal(format!("graph `{}` has no node `{}`", graph.name(), ctx.task.node));
                return Invocation { attempts: 1, result: Err(error) };
            };
            let entry = &graph.inner.nodes[i];
            let mut attempt = 1;
            loop {
                let attempt_ctx = ctx.for_attempt(attempt);
                let span = tracing::info_span!(
                    "node",
                    run_id = %ctx.run_id,
                    user_id = %ctx.user.user_id,
                    node = %ctx.task.label(),
                    attempt,
                );
                let run = AssertUnwindSafe(async { entry.node.run(Arc::clone(&state), attempt_ctx).await })
                    .catch_unwind()
                    .instrument(span);
                let outcome = match entry.policy.timeout {
                    Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or(Ok(Err(NodeError::timeout(limit)))),
                    None => run.await,
                };
                let result = outcome.unwrap_or_else(|payload| Err(NodeError::panic(panic_message(payload.as_ref()))));
                match result {
                    Err(error) if entry.policy.retry.should_retry(attempt, &error) => {
                        let delay =
                            entry.policy.retry.delay(attempt, (ctx.run_id, &ctx.task.node, ctx.task.invocation));
                        ctx.observer.node_retrying(&ctx.task, attempt, &error, delay);
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    result => return Invocation { attempts: attempt, result },
                }
            }
        }
    }
}

/// What tells the tasks of one step apart: node, invocation, plain or fan-out.
type TaskKey<'a> = (&'a str, u32, bool);

fn task_key(task: &Task) -> TaskKey<'_> {
    (&task.node, task.invocation, task.input.is_some())
}

fn call_router<T>(from: &str, route: impl FnOnce() -> T) -> Result<T, RunError> {
    std::panic::catch_unwind(AssertUnwindSafe(route)).map_err(|payload| RunError::RouterFailed {
        from: from.to_owned(),
        reason: format!("router panicked: {}", panic_message(payload.as_ref())),
    })
}

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// The names of all nodes and the edges between them, for export.
pub(crate) struct EdgeView {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) kind: EdgeKind,
}

/// The kind of an exported edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    Static,
    Conditional,
    FanOut,
    Join,
}

impl<S> Graph<S> {
    pub(crate) fn edge_views(&self) -> Vec<EdgeView> {
        let inner = &*self.inner;
        let name = |t: Target| match t {
            Target::End => END.to_owned(),
            Target::Node(i) => inner.nodes[i].name.clone(),
        };
        let mut views = Vec::new();
        let mut seen = HashSet::new();
        let sources = std::iter::once((START.to_owned(), &inner.start))
            .chain(inner.nodes.iter().map(|n| (n.name.clone(), &n.out)));
        for (from, out) in sources {
            for &t in &out.statics {
                views.push(EdgeView { from: from.clone(), to: name(t), kind: EdgeKind::Static });
            }
            for router in &out.routers {
                match router {
                    Router::Conditional { targets, .. } => views.extend(targets.iter().map(|&t| EdgeView {
                        from: from.clone(),
                        to: name(t),
                        kind: EdgeKind::Conditional,
                    })),
                    Router::FanOut { target, .. } => views.push(EdgeView {
                        from: from.clone(),
                        to: name(Target::Node(*target)),
                        kind: EdgeKind::FanOut,
                    }),
                }
            }
        }
        for join in &inner.joins {
            for &s in &join.sources {
                if seen.insert((s, name(join.target))) {
                    views.push(EdgeView {
                        from: inner.nodes[s].name.clone(),
                        to: name(join.target),
                        kind: EdgeKind::Join,
                    });
                }
            }
        }
        views
    }
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
