//! Validation tests of [`GraphBuilder::compile`]: one test per [`GraphError`] a definition
//! can provoke, the valid shapes of every edge kind, the Mermaid/DOT export, and
//! properties over random definitions.

use std::collections::{HashMap, HashSet, VecDeque};

use proptest::prelude::*;

use super::*;

#[derive(Clone, Default, Serialize, Deserialize)]
struct S {
    n: u32,
}

async fn noop(_s: Arc<S>, _ctx: NodeContext) -> NodeResult {
    Ok(Update::new())
}

/// A builder holding a no-op node for each of `names`, in order, and no edges.
fn with_nodes(names: &[&str]) -> GraphBuilder<S> {
    names.iter().fold(GraphBuilder::new("g"), |b, name| b.node(*name, noop))
}

/// The error `builder` fails with; its message must mention every one of `mentions`, so
/// that the author learns from the message alone which node or edge is at fault.
#[track_caller]
fn refused(builder: GraphBuilder<S>, mentions: &[&str]) -> GraphError {
    let error = builder.compile().expect_err("the definition should be refused");
    let message = error.to_string();
    for needle in mentions {
        assert!(message.contains(needle), "message {message:?} does not mention {needle:?}");
    }
    error
}

fn to_end(_s: &S) -> Next {
    Next::from(END)
}

fn no_inputs(_s: &S) -> Vec<u32> {
    Vec::new()
}

// --- Refused definitions, in the order compile() checks them. -------------------------

#[test]
fn a_zero_step_limit_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).step_limit(0);
    assert_eq!(refused(builder, &["step limit"]), GraphError::ZeroStepLimit);
}

#[test]
fn a_graph_without_nodes_is_refused() {
    let builder = GraphBuilder::<S>::new("lonely").edge(START, END);
    assert_eq!(refused(builder, &["`lonely`"]), GraphError::Empty { graph: "lonely".into() });
}

#[test]
fn a_node_defined_twice_is_refused() {
    let builder = with_nodes(&["a", "b", "a"]).edge(START, "a").edge("a", "b").edge("b", END);
    assert_eq!(refused(builder, &["`a`"]), GraphError::DuplicateNode { node: "a".into() });
}

#[test]
fn empty_and_reserved_node_names_are_refused() {
    for name in ["", START, END] {
        let builder = with_nodes(&["a", name]).edge(START, "a").edge("a", END);
        let mention = format!("`{name}`");
        assert_eq!(refused(builder, &[&mention]), GraphError::InvalidNodeName { node: name.into() }, "{name:?}");
    }
}

#[test]
fn a_static_edge_to_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", "ghost");
    assert_eq!(
        refused(builder, &["`ghost`", "a -> ghost"]),
        GraphError::UnknownNode { place: "edge `a -> ghost`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_static_edge_from_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).edge("ghost", "a");
    assert_eq!(
        refused(builder, &["`ghost`", "ghost -> a"]),
        GraphError::UnknownNode { place: "edge `ghost -> a`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_conditional_edge_to_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").conditional_edge("a", [END, "ghost"], to_end);
    assert_eq!(
        refused(builder, &["`ghost`", "a -> ghost"]),
        GraphError::UnknownNode { place: "conditional edge `a -> ghost`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_conditional_edge_from_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).conditional_edge("ghost", ["a"], to_end);
    assert_eq!(
        refused(builder, &["`ghost`"]),
        GraphError::UnknownNode { place: "conditional edge `ghost -> a`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_fan_out_to_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).fan_out("a", "ghost", no_inputs);
    assert_eq!(
        refused(builder, &["`ghost`", "a -> ghost"]),
        GraphError::UnknownNode { place: "fan-out edge `a -> ghost`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_join_from_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge("b", END).join(["a", "ghost"], "b");
    assert_eq!(
        refused(builder, &["`ghost`", "ghost -> b"]),
        GraphError::UnknownNode { place: "join edge `ghost -> b`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_join_into_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge(START, "b").join(["a", "b"], "ghost");
    assert_eq!(
        refused(builder, &["`ghost`", "a & b -> ghost"]),
        GraphError::UnknownNode { place: "join edge `a & b -> ghost`".into(), node: "ghost".into() }
    );
}

#[test]
fn a_retry_policy_for_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).retry("ghost", RetryPolicy::never());
    assert_eq!(
        refused(builder, &["`ghost`", "retry policy"]),
        GraphError::UnknownNode { place: "a retry policy".into(), node: "ghost".into() }
    );
}

#[test]
fn a_timeout_for_an_unknown_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).timeout("ghost", Duration::from_secs(1));
    assert_eq!(
        refused(builder, &["`ghost`", "timeout"]),
        GraphError::UnknownNode { place: "a timeout".into(), node: "ghost".into() }
    );
}

#[test]
fn an_edge_out_of_end_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).edge(END, "a");
    let error = refused(builder, &["__end__ -> a"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge.contains("__end__ -> a")), "{error:?}");
}

#[test]
fn an_edge_into_start_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).edge("a", START);
    let error = refused(builder, &["a -> __start__"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge.contains("a -> __start__")), "{error:?}");
}

#[test]
fn conditional_and_fan_out_edges_into_start_or_end_are_refused() {
    let conditional = with_nodes(&["a"]).edge(START, "a").conditional_edge("a", [END, START], to_end);
    let error = refused(conditional, &["a -> __start__"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge.contains("a -> __start__")), "{error:?}");

    // A fan-out sends inputs to node invocations; END cannot take one.
    let fan_out = with_nodes(&["a"]).edge(START, "a").edge("a", END).fan_out("a", END, no_inputs);
    let error = refused(fan_out, &["a -> __end__"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge.contains("a -> __end__")), "{error:?}");
}

#[test]
fn a_join_from_start_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge("b", END).join([START, "a"], "b");
    let error = refused(builder, &["__start__ -> b"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge.contains("__start__ -> b")), "{error:?}");
}

#[test]
fn an_invalid_edge_is_written_from_arrow_to() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).edge(END, "a");
    let error = builder.compile().expect_err("an edge out of END is refused");
    assert_eq!(error, GraphError::InvalidEdge { edge: "__end__ -> a".into(), reason: "END has no way out".into() });
    assert_eq!(error.to_string(), "edge `__end__ -> a` is invalid: END has no way out");
}

#[test]
fn a_fan_out_to_end_says_a_fan_out_needs_a_node() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).fan_out("a", END, no_inputs);
    let error = builder.compile().expect_err("a fan-out to END is refused");
    assert!(error.to_string().contains("a fan-out must target a node"), "{error}");
}

#[test]
fn a_join_into_one_of_its_own_sources_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge("a", END).edge("b", END).join(["a", "b"], "b");
    let error = refused(builder, &["b -> b", "never run"]);
    assert!(matches!(&error, GraphError::InvalidEdge { edge, .. } if edge == "b -> b"), "{error:?}");
}

#[test]
fn a_conditional_edge_without_targets_is_refused() {
    let builder =
        with_nodes(&["a"]).edge(START, "a").edge("a", END).conditional_edge("a", Vec::<String>::new(), to_end);
    assert_eq!(refused(builder, &["`a`"]), GraphError::NoTargets { from: "a".into() });
}

#[test]
fn a_join_without_sources_is_refused() {
    let builder =
        with_nodes(&["a", "b"]).edge(START, "a").edge("a", END).edge("b", END).join(Vec::<String>::new(), "b");
    assert_eq!(refused(builder, &["`b`"]), GraphError::EmptyJoin { target: "b".into() });
}

#[test]
fn an_invalid_retry_policy_of_a_node_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", END).retry("a", RetryPolicy::new().max_attempts(0));
    assert_eq!(
        refused(builder, &["`a`", "max_attempts"]),
        GraphError::InvalidRetryPolicy { node: "a".into(), reason: "max_attempts must be at least 1".into() }
    );
}

#[test]
fn an_invalid_default_retry_policy_is_refused() {
    let builder =
        with_nodes(&["a"]).edge(START, "a").edge("a", END).default_retry(RetryPolicy::new().backoff_factor(0.5));
    let error = refused(builder, &["`*`", "backoff_factor"]);
    assert!(matches!(&error, GraphError::InvalidRetryPolicy { node, .. } if node == "*"), "{error:?}");
}

#[test]
fn two_reducers_for_one_field_are_refused() {
    let builder = with_nodes(&["a"])
        .edge(START, "a")
        .edge("a", END)
        .reducer("n", Reducer::last_value())
        .reducer("n", Reducer::append());
    assert_eq!(refused(builder, &["`n`"]), GraphError::DuplicateReducer { field: "n".into() });
}

#[test]
fn a_graph_without_an_edge_from_start_is_refused() {
    let builder = with_nodes(&["a"]).edge("a", END);
    assert_eq!(refused(builder, &["`g`", "START"]), GraphError::NoEntryPoint { graph: "g".into() });
}

#[test]
fn a_node_nothing_leads_to_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge("a", END).edge("b", END);
    assert_eq!(refused(builder, &["`b`"]), GraphError::Unreachable { node: "b".into() });
}

#[test]
fn a_node_without_outgoing_edges_is_refused() {
    let builder = with_nodes(&["a", "b"]).edge(START, "a").edge("a", "b");
    assert_eq!(refused(builder, &["`b`"]), GraphError::NoWayOut { node: "b".into() });
}

#[test]
fn a_graph_where_nothing_reaches_end_is_refused() {
    let builder = with_nodes(&["a"]).edge(START, "a").edge("a", "a");
    assert_eq!(refused(builder, &["`g`", "END"]), GraphError::NoPathToEnd { graph: "g".into() });
}

#[test]
fn a_loop_without_an_exit_is_refused() {
    // START also reaches END through `a`, so only the loop b <-> c is at fault.
    let builder =
        with_nodes(&["a", "b", "c"]).edge(START, "a").edge("a", END).edge(START, "b").edge("b", "c").edge("c", "b");
    assert_eq!(refused(builder, &["`b`"]), GraphError::CannotReachEnd { node: "b".into() });
}

// --- Accepted definitions. ------------------------------------------------------------

#[test]
fn a_static_chain_compiles_with_its_policies() {
    let graph = with_nodes(&["a", "b", "c"])
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", "c")
        .edge("c", END)
        .retry("b", RetryPolicy::never())
        .timeout("c", Duration::from_secs(2))
        .step_limit(7)
        .compile()
        .unwrap();
    assert_eq!(graph.node_names().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(graph.step_limit(), 7);
    assert_eq!(graph.policy("b").map(|p| p.retry.attempts()), Some(1));
    assert_eq!(graph.policy("c").and_then(|p| p.timeout), Some(Duration::from_secs(2)));
    assert!(graph.policy("ghost").is_none());
}

#[test]
fn a_conditional_edge_to_end_compiles() {
    let graph = with_nodes(&["a", "b"])
        .edge(START, "a")
        .conditional_edge("a", ["b", END], |s: &S| if s.n > 0 { "b" } else { END })
        .edge("b", END)
        .compile()
        .unwrap();
    assert_eq!(graph.node_names().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn a_fan_out_and_join_compile() {
    let graph = with_nodes(&["plan", "work", "check", "merge"])
        .edge(START, "plan")
        .fan_out("plan", "work", |s: &S| (0..s.n).collect::<Vec<_>>())
        .edge("plan", "check")
        .join(["work", "check"], "merge")
        .edge("merge", END)
        .compile()
        .unwrap();
    assert_eq!(graph.node_names().collect::<Vec<_>>(), ["plan", "work", "check", "merge"]);
}

#[test]
fn a_loop_with_an_exit_compiles() {
    let graph = with_nodes(&["inc"])
        .edge(START, "inc")
        .conditional_edge("inc", ["inc", END], |s: &S| if s.n < 3 { "inc" } else { END })
        .compile()
        .unwrap();
    assert_eq!(graph.node_names().collect::<Vec<_>>(), ["inc"]);
}

// --- Export. --------------------------------------------------------------------------

/// One edge of each kind, and a node whose name needs escaping.
fn exported() -> Graph<S> {
    GraphBuilder::new("my \"graph\"")
        .node("a", noop)
        .node("b", noop)
        .node("c", noop)
        .node("d", noop)
        .node("say \"hi\"", noop)
        .edge(START, "a")
        .edge("a", "b")
        .fan_out("a", "c", no_inputs)
        .join(["b", "c"], "d")
        .conditional_edge("d", ["say \"hi\"", END], to_end)
        .edge("say \"hi\"", END)
        .compile()
        .unwrap()
}

/// The identifier `text` declares a node with: the line ending in `declaration`, less it.
/// (Tests look identifiers up rather than assume them: they are the exporter's choice.)
#[track_caller]
fn id_declared(text: &str, declaration: &str) -> String {
    let ids: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_suffix(declaration)).collect();
    assert!(matches!(ids[..], [id] if !id.is_empty() && !id.contains(' ')), "no one {declaration:?} in\n{text}");
    ids[0].to_owned()
}

#[test]
fn mermaid_shows_every_node_and_the_arrow_of_each_edge_kind() {
    let mermaid = exported().to_mermaid();
    assert_eq!(mermaid.lines().next(), Some("flowchart TD"));
    let id = |declaration: &str| id_declared(&mermaid, declaration);
    let (start, end) = (id("([START])"), id("([END])"));
    let (a, b, c, d) = (id("[\"a\"]"), id("[\"b\"]"), id("[\"c\"]"), id("[\"d\"]"));
    let hi = id("[\"say #quot;hi#quot;\"]");
    // `end` closes a subgraph in Mermaid: a node called so breaks the whole chart.
    assert_ne!(end, "end", "END's id is a Mermaid keyword in\n{mermaid}");
    let edges = [
        format!("{start} --> {a}"),
        format!("{a} --> {b}"),
        format!("{a} ==>|fan-out| {c}"),
        format!("{b} -->|join| {d}"),
        format!("{c} -->|join| {d}"),
        format!("{d} -.-> {hi}"),
        format!("{d} -.-> {end}"),
        format!("{hi} --> {end}"),
    ];
    for edge in &edges {
        assert!(mermaid.lines().any(|l| l.trim() == edge), "no edge {edge:?} in\n{mermaid}");
    }
    assert!(!mermaid.contains("\"hi\""), "an unescaped quote in\n{mermaid}");
    let arrows = ["-->", "-.->", "==>"];
    let drawn = mermaid
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|a| arrows.iter().any(|p| a.starts_with(p))))
        .count();
    assert_eq!(drawn, edges.len(), "no more edges than declared in\n{mermaid}");
}

#[test]
fn dot_shows_every_node_and_the_style_of_each_edge_kind() {
    let dot = exported().to_dot();
    assert_eq!(dot.lines().next(), Some("digraph \"my \\\"graph\\\"\" {"));
    assert_eq!(dot.lines().last(), Some("}"));
    let id = |declaration: &str| id_declared(&dot, declaration);
    let (start, end) = (id(" [label=\"START\", shape=oval];"), id(" [label=\"END\", shape=oval];"));
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|name| id(&format!(" [label=\"{name}\", shape=box];")));
    let hi = id(" [label=\"say \\\"hi\\\"\", shape=box];");
    let edges = [
        format!("{start} -> {a};"),
        format!("{a} -> {b};"),
        format!("{a} -> {c} [style=bold, label=\"fan-out\"];"),
        format!("{b} -> {d} [label=\"join\"];"),
        format!("{c} -> {d} [label=\"join\"];"),
        format!("{d} -> {hi} [style=dashed];"),
        format!("{d} -> {end} [style=dashed];"),
        format!("{hi} -> {end};"),
    ];
    for edge in &edges {
        assert!(dot.lines().any(|l| l.trim() == edge), "no edge {edge:?} in\n{dot}");
    }
    assert_eq!(
        dot.lines().filter(|l| l.contains(" -> ")).count(),
        edges.len(),
        "no more edges than declared in\n{dot}"
    );
}

// --- Properties over random definitions. ----------------------------------------------

/// One edge of a random definition, by names (which may be unknown, START or END).
#[derive(Debug, Clone)]
enum EdgeSpec {
    Static(String, String),
    Conditional(String, Vec<String>),
    FanOut(String, String),
    Join(Vec<String>, String),
}

#[derive(Debug, Clone)]
struct Spec {
    nodes: Vec<String>,
    edges: Vec<EdgeSpec>,
    step_limit: u64,
}

/// Names a valid node may have (one needs escaping in the export).
const VALID: [&str; 6] = ["a", "b", "c", "d", "e", "q\"x"];

fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(&VALID[..]).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => Just(START.to_owned()),
        1 => Just(END.to_owned()),
    ]
}

/// Where the edges of a random definition may lead.
struct Pools {
    from: Vec<String>,
    to: Vec<String>,
    /// Join sources and fan-out targets, which must be nodes.
    nodes: Vec<String>,
    /// The least number of targets of a conditional edge, or of sources of a join.
    min_targets: usize,
}

impl Pools {
    /// Hostile pools: any name, added or not, START, END and the empty name, anywhere;
    /// conditional edges and joins may have no targets.
    fn hostile() -> Self {
        let any: Vec<String> =
            VALID.iter().copied().chain([START, START, END, END, "ghost", ""]).map(str::to_owned).collect();
        Self { from: any.clone(), to: any.clone(), nodes: any, min_targets: 0 }
    }

    /// Friendly pools: only the names of `nodes`, edges leave START and enter END, so
    /// that most definitions get to the shape checks, and many compile.
    fn friendly(nodes: &[String]) -> Self {
        let with = |extra: &str| nodes.iter().cloned().chain([extra.to_owned()]).collect::<Vec<_>>();
        Self { from: with(START), to: with(END), nodes: nodes.to_vec(), min_targets: 1 }
    }

    fn edge(self) -> impl Strategy<Value = EdgeSpec> {
        let (from, to, nodes) =
            (prop::sample::select(self.from), prop::sample::select(self.to), prop::sample::select(self.nodes));
        let targets = self.min_targets..4;
        prop_oneof![
            6 => (from.clone(), to.clone()).prop_map(|(from, to)| EdgeSpec::Static(from, to)),
            2 => (from.clone(), prop::collection::vec(to.clone(), targets.clone()))
                .prop_map(|(from, to)| EdgeSpec::Conditional(from, to)),
            1 => (from, nodes.clone()).prop_map(|(from, to)| EdgeSpec::FanOut(from, to)),
            1 => (prop::collection::vec(nodes, targets), to).prop_map(|(from, to)| EdgeSpec::Join(from, to)),
        ]
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    let step_limit = || prop_oneof![1 => Just(0u64), 1 => Just(1u64), 8 => 2..100u64];
    // Distinct valid names, so that a definition can get past the name checks.
    let distinct_valid =
        || prop::sample::subsequence(VALID.map(str::to_owned).to_vec(), 1..=VALID.len()).prop_shuffle();
    let hostile = (prop_oneof![prop::collection::vec(node_name(), 0..8), distinct_valid()], step_limit())
        .prop_flat_map(|(nodes, step_limit)| {
            let edges = prop::collection::vec(Pools::hostile().edge(), 0..14);
            edges.prop_map(move |edges| Spec { nodes: nodes.clone(), edges, step_limit })
        });
    let friendly = (distinct_valid(), step_limit()).prop_flat_map(|(nodes, step_limit)| {
        let edges = prop::collection::vec(Pools::friendly(&nodes).edge(), 0..14);
        edges.prop_map(move |edges| Spec { nodes: nodes.clone(), edges, step_limit })
    });
    prop_oneof![hostile, friendly]
}

fn build(spec: &Spec) -> GraphBuilder<S> {
    let builder = spec.nodes.iter().fold(GraphBuilder::new("random"), |b, name| b.node(name.as_str(), noop));
    let builder = spec.edges.iter().fold(builder, |b, edge| match edge {
        EdgeSpec::Static(from, to) => b.edge(from.as_str(), to.as_str()),
        EdgeSpec::Conditional(from, to) => b.conditional_edge(from.as_str(), to.clone(), to_end),
        EdgeSpec::FanOut(from, to) => b.fan_out(from.as_str(), to.as_str(), no_inputs),
        EdgeSpec::Join(from, to) => b.join(from.clone(), to.as_str()),
    });
    builder.step_limit(spec.step_limit)
}

/// The error compile() must report first, if the step limit or the node names are wrong.
fn name_error(spec: &Spec) -> Option<GraphError> {
    if spec.step_limit == 0 {
        return Some(GraphError::ZeroStepLimit);
    }
    if spec.nodes.is_empty() {
        return Some(GraphError::Empty { graph: "random".into() });
    }
    let mut seen = HashSet::new();
    spec.nodes.iter().find_map(|name| {
        if name.is_empty() || name == START || name == END {
            Some(GraphError::InvalidNodeName { node: name.clone() })
        } else if !seen.insert(name) {
            Some(GraphError::DuplicateNode { node: name.clone() })
        } else {
            None
        }
    })
}

/// The names each name has an edge to.
type Adjacency<'a> = HashMap<&'a str, Vec<&'a str>>;

/// Every name reachable from `from` along `edges` (`from` included).
fn reachable<'a>(edges: &Adjacency<'a>, from: &'a str) -> HashSet<&'a str> {
    let mut seen = HashSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(name) = queue.pop_front() {
        for &next in edges.get(name).into_iter().flatten() {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}

/// The definition's edges by name, forwards and backwards. A join counts as an edge
/// from each of its sources to its target.
fn adjacency(spec: &Spec) -> (Adjacency<'_>, Adjacency<'_>) {
    let mut pairs = Vec::new();
    for edge in &spec.edges {
        match edge {
            EdgeSpec::Static(from, to) | EdgeSpec::FanOut(from, to) => pairs.push((from.as_str(), to.as_str())),
            EdgeSpec::Conditional(from, to) => pairs.extend(to.iter().map(|t| (from.as_str(), t.as_str()))),
            EdgeSpec::Join(from, to) => pairs.extend(from.iter().map(|f| (f.as_str(), to.as_str()))),
        }
    }
    let (mut forwards, mut backwards) = (HashMap::<_, Vec<_>>::new(), HashMap::<_, Vec<_>>::new());
    for (from, to) in pairs {
        forwards.entry(from).or_default().push(to);
        backwards.entry(to).or_default().push(from);
    }
    (forwards, backwards)
}

/// `names` without repeats, in first-seen order (a `HashSet`'s order would change from
/// run to run and defeat shrinking).
fn distinct(names: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names.into_iter().filter(|name| seen.insert(name.clone())).collect()
}

proptest! {
    // About one random definition in ten compiles; 1024 cases check a hundred of them.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// compile() never panics (a panic fails the test), reports bad limits and names
    /// first, and accepts only graphs in which every node lies on a path START -> END.
    #[test]
    fn compile_refuses_or_accepts_a_sound_graph(spec in spec()) {
        let result = build(&spec).compile();
        if let Some(expected) = name_error(&spec) {
            prop_assert_eq!(result.as_ref().err(), Some(&expected));
        }
        match result {
            Err(error) => prop_assert!(!error.to_string().is_empty()),
            Ok(graph) => {
                prop_assert_eq!(graph.node_names().collect::<Vec<_>>(), spec.nodes.iter().map(String::as_str).collect::<Vec<_>>());
                let (forwards, backwards) = adjacency(&spec);
                let from_start = reachable(&forwards, START);
                let reach_end = reachable(&backwards, END);
                prop_assert!(from_start.contains(END), "END unreachable from START");
                for name in &spec.nodes {
                    prop_assert!(from_start.contains(name.as_str()), "`{}` unreachable from START", name);
                    prop_assert!(reach_end.contains(name.as_str()), "`{}` cannot reach END", name);
                }
                let mermaid = graph.to_mermaid();
                for name in &spec.nodes {
                    let label = format!("[\"{}\"]", name.replace('"', "#quot;"));
                    prop_assert!(mermaid.contains(&label), "no {} in\n{}", label, mermaid);
                }
            }
        }
    }

    /// START -> n0 -> ... -> END always compiles and keeps the insertion order.
    #[test]
    fn a_linear_chain_of_distinct_nodes_compiles(
        names in prop::collection::vec("[a-z][a-z0-9_ \"-]{0,7}", 1..10).prop_map(distinct)
    ) {
        let mut builder = names.iter().fold(GraphBuilder::<S>::new("chain"), |b, name| b.node(name.as_str(), noop));
        let hops = std::iter::once(START).chain(names.iter().map(String::as_str)).chain(std::iter::once(END));
        let hops: Vec<&str> = hops.collect();
        for pair in hops.windows(2) {
            builder = builder.edge(pair[0], pair[1]);
        }
        let graph = builder.compile();
        prop_assert!(graph.is_ok(), "{:?}", graph.err());
        if let Ok(graph) = graph {
            prop_assert_eq!(graph.node_names().collect::<Vec<_>>(), names.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
