//! The reference executor's semantics, one behaviour per test. Time is tokio's paused
//! clock: sleeps, backoff and timeouts advance virtual time only.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::{EventLog, GraphBuilder, NodeErrorKind, Reducer, RetryPolicy, END, START};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct S {
    n: u64,
    log: Vec<String>,
    out: Vec<u64>,
    seen: Vec<String>,
}

fn log(entry: &str) -> Update {
    Update::new().set("log", [entry])
}

/// A node that appends its name to `log` after sleeping `ms` of virtual time.
fn logger(
    name: &'static str,
    ms: u64,
) -> impl Fn(Arc<S>, NodeContext) -> futures_util::future::BoxFuture<'static, crate::NodeResult> {
    move |_s, _ctx| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(log(name))
        })
    }
}

/// START -> a -> b -> c -> END, each node logging its name after `ms` of virtual time.
fn abc_chain(ms: u64) -> crate::Graph<S> {
    GraphBuilder::<S>::new("abc")
        .node("a", logger("a", ms))
        .node("b", logger("b", ms))
        .node("c", logger("c", ms))
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", "c")
        .edge("c", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

fn assert_progress_is_meaningful(events: &[RunEvent]) {
    let percents: Vec<f64> = events.iter().map(|e| e.percent).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "percent went backwards: {percents:?}");
    let last = events.last().expect("events");
    for event in &events[..events.len() - 1] {
        assert!(event.percent < 100.0, "100% before the end: {event:?}");
    }
    if last.kind == EventKind::RunCompleted {
        assert_eq!(last.percent, 100.0);
    }
}

/// Counts drops of the value it guards: proves a node future was dropped.
struct DropGuard(Arc<AtomicU32>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn static_edges_run_in_order_with_events_and_monotone_progress() {
    let graph = abc_chain(5);
    let events = EventLog::new();
    let done = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap();
    assert_eq!(done.log, ["a", "b", "c"]);

    let events = events.events();
    assert_progress_is_meaningful(&events);
    assert_eq!(events.first().map(|e| &e.kind), Some(&EventKind::RunStarted));
    assert_eq!(events.last().map(|e| &e.kind), Some(&EventKind::RunCompleted));
    let step_ends: Vec<(u64, f64)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
        .map(|e| (e.step, e.percent))
        .collect();
    // Graph-aware: after step k of a 3-step chain, k/3 of the way.
    assert_eq!(step_ends.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
    assert!((step_ends[0].1 - 100.0 / 3.0).abs() < 1e-9, "{step_ends:?}");
    assert!((step_ends[1].1 - 200.0 / 3.0).abs() < 1e-9, "{step_ends:?}");
}

#[tokio::test(start_paused = true)]
async fn a_conditional_loop_runs_until_its_router_picks_end() {
    let graph = GraphBuilder::<S>::new("loop")
        .node("inc", |s: Arc<S>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "inc")
        .conditional_edge("inc", ["inc", END], |s: &S| if s.n < 4 { "inc" } else { END })
        .compile()
        .unwrap();
    let events = EventLog::new();
    let done = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap();
    assert_eq!(done.n, 4);
    let events = events.events();
    assert_eq!(events.last().map(|e| e.step), Some(4));
    assert_progress_is_meaningful(&events);
}

#[tokio::test(start_paused = true)]
async fn parallel_branches_merge_in_declaration_order_whatever_finishes_first() {
    // `slow` is declared first and finishes last; its update still merges first.
    let graph = GraphBuilder::<S>::new("fan")
        .node("slow", logger("slow", 50))
        .node("fast", logger("fast", 1))
        .node("after", logger("after", 1))
        .edge(START, "slow")
        .edge(START, "fast")
        .edge("slow", "after")
        .edge("fast", "after")
        .edge("after", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    let done = Executor::new(&graph).run(S::default()).await.unwrap();
    // `after` is triggered by both branches in the same step, and runs once.
    assert_eq!(done.log, ["slow", "fast", "after"]);
}

#[tokio::test(start_paused = true)]
async fn a_join_waits_for_branches_of_different_lengths() {
    let seen_by_join = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&seen_by_join);
    let graph = GraphBuilder::<S>::new("join")
        .node("a", logger("a", 1))
        .node("a2", logger("a2", 1))
        .node("b", logger("b", 1))
        .node("c", move |s: Arc<S>, _ctx| {
            seen.lock().unwrap().push(s.log.clone());
            async move { Ok(log("c")) }
        })
        .edge(START, "a")
        .edge(START, "b")
        .edge("a", "a2")
        .join(["a2", "b"], "c")
        .edge("c", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    let done = Executor::new(&graph).run(S::default()).await.unwrap();
    assert_eq!(done.log, ["a", "b", "a2", "c"]);
    assert_eq!(*seen_by_join.lock().unwrap(), [vec!["a", "b", "a2"]], "c ran once, after both branches");
}

#[tokio::test(start_paused = true)]
async fn dynamic_fan_out_runs_one_invocation_per_input_merged_by_index() {
    let graph = GraphBuilder::<S>::new("send")
        .node("plan", |_s, _ctx| async move { Ok(Update::new().set("n", 5)) })
        .node("square", |_s, ctx: NodeContext| async move {
            let x: u64 = ctx.input()?;
            // Later invocations finish first.
            tokio::time::sleep(Duration::from_millis(100 - x * 10)).await;
            Ok(Update::new().set("out", [x * x]))
        })
        .node("sum", |s: Arc<S>, _ctx| async move { Ok(Update::new().set("n", s.out.iter().sum::<u64>())) })
        .edge(START, "plan")
        .fan_out("plan", "square", |s: &S| (1..=s.n).collect::<Vec<u64>>())
        .edge("square", "sum")
        .edge("sum", END)
        .reducer("out", Reducer::append())
        .compile()
        .unwrap();
    let events = EventLog::new();
    let done = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap();
    assert_eq!(done.out, [1, 4, 9, 16, 25]);
    assert_eq!(done.n, 55);
    let started: Vec<Vec<String>> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepStarted { tasks } => Some(tasks),
            _ => None,
        })
        .collect();
    assert_eq!(started[1], ["square[0]", "square[1]", "square[2]", "square[3]", "square[4]"]);
    assert_eq!(started[2], ["sum"], "the step after a fan-out runs its successor once");
}

#[tokio::test(start_paused = true)]
async fn an_empty_fan_out_ends_the_branch() {
    let graph = GraphBuilder::<S>::new("send-none")
        .node("plan", |_s, _ctx| async move { Ok(Update::new()) })
        .node("work", |_s, _ctx| async move { Ok(log("work")) })
        .edge(START, "plan")
        .fan_out("plan", "work", |_s: &S| Vec::<u32>::new())
        .edge("plan", END)
        .edge("work", END)
        .compile()
        .unwrap();
    let done = Executor::new(&graph).run(S::default()).await.unwrap();
    assert!(done.log.is_empty());
}

#[tokio::test(start_paused = true)]
async fn two_parallel_writers_of_a_field_without_reducer_fail_naming_both() {
    let graph = GraphBuilder::<S>::new("conflict")
        .node("left", |_s, _ctx| async move { Ok(Update::new().set("n", 1)) })
        .node("right", |_s, _ctx| async move { Ok(Update::new().set("n", 2)) })
        .edge(START, "left")
        .edge(START, "right")
        .edge("left", END)
        .edge("right", END)
        .compile()
        .unwrap();
    let events = EventLog::new();
    let err = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap_err();
    assert_eq!(
        err,
        RunError::ConflictingUpdate { field: "n".into(), first: "left".into(), second: "right".into(), step: 1 }
    );
    assert!(matches!(events.events().last().map(|e| &e.kind), Some(EventKind::RunFailed { .. })));
}

/// A node failing `failures` times with `error`, then succeeding; counts attempts.
fn flaky(
    failures: u32,
    error: NodeError,
    attempts: Arc<AtomicU32>,
) -> impl Fn(Arc<S>, NodeContext) -> futures_util::future::BoxFuture<'static, crate::NodeResult> {
    move |_s, ctx| {
        let error = error.clone();
        let attempts = Arc::clone(&attempts);
        Box::pin(async move {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(ctx.attempt(), n, "the context carries the attempt number");
            if n <= failures {
                Err(error)
            } else {
                Ok(log("ok"))
            }
        })
    }
}

fn backoff() -> RetryPolicy {
    RetryPolicy::new().max_attempts(4).initial_interval(Duration::from_millis(100)).backoff_factor(2.0).jitter(false)
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_exponential_backoff() {
    let attempts = Arc::new(AtomicU32::new(0));
    let graph = GraphBuilder::<S>::new("retry")
        .node("flaky", flaky(2, NodeError::retryable("rate limited"), Arc::clone(&attempts)))
        .edge(START, "flaky")
        .edge("flaky", END)
        .retry("flaky", backoff())
        .compile()
        .unwrap();
    let events = EventLog::new();
    let started = tokio::time::Instant::now();
    let done = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap();
    assert_eq!(done.log, ["ok"]);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let retries: Vec<(u32, u64)> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeRetrying { attempt, delay_ms, .. } => Some((attempt, delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(1, 100), (2, 200)]);
    // Virtual time: exactly the two waits, nothing slept for real.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert!(events.events().iter().any(|e| e.kind == EventKind::NodeCompleted { task: "flaky".into(), attempts: 3 }));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_is_not_retried_and_fails_the_run_with_node_and_attempts() {
    let attempts = Arc::new(AtomicU32::new(0));
    let graph = GraphBuilder::<S>::new("fatal")
        .node("bad", flaky(10, NodeError::fatal("malformed contract"), Arc::clone(&attempts)))
        .edge(START, "bad")
        .edge("bad", END)
        .retry("bad", backoff())
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(
        err,
        RunError::NodeFailed {
            node: "bad".into(),
            step: 1,
            attempts: 1,
            error: NodeError::fatal("malformed contract")
        }
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_max_attempts() {
    let attempts = Arc::new(AtomicU32::new(0));
    let graph = GraphBuilder::<S>::new("exhausted")
        .node("flaky", flaky(100, NodeError::retryable("down"), Arc::clone(&attempts)))
        .edge(START, "flaky")
        .edge("flaky", END)
        .retry("flaky", backoff())
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert!(matches!(err, RunError::NodeFailed { attempts: 4, .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_node_over_its_timeout_is_dropped_and_counts_as_retryable() {
    let drops = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let (d, c) = (Arc::clone(&drops), Arc::clone(&calls));
    let graph = GraphBuilder::<S>::new("timeout")
        .node("hang", move |_s, _ctx| {
            let guard = DropGuard(Arc::clone(&d));
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                let _guard = guard;
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(log("second try"))
            }
        })
        .edge(START, "hang")
        .edge("hang", END)
        .timeout("hang", Duration::from_secs(1))
        .retry("hang", backoff())
        .compile()
        .unwrap();
    let events = EventLog::new();
    let done = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap();
    assert_eq!(done.log, ["second try"]);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "the hung attempt's future was dropped");
    let retry_kinds: Vec<NodeErrorKind> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeRetrying { error, .. } => Some(error.kind),
            _ => None,
        })
        .collect();
    assert_eq!(retry_kinds, [NodeErrorKind::Timeout]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_node_is_a_node_error_that_the_retry_policy_handles() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let graph = GraphBuilder::<S>::new("panic")
        .node("boom", move |_s, _ctx| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("index out of bounds in clause 7");
                }
                Ok(log("recovered"))
            }
        })
        .node("always", |_s, _ctx| async move {
            if true {
                panic!("always broken");
            }
            Ok(Update::new())
        })
        .edge(START, "boom")
        .conditional_edge("boom", ["always", END], |s: &S| if s.log.is_empty() { "always" } else { END })
        .edge("always", END)
        .retry("boom", backoff())
        .retry("always", RetryPolicy::never())
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    let done = Executor::new(&graph).run(S::default()).await.unwrap();
    assert_eq!(done.log, ["recovered"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Same graph, but the first node's state routes into the always-panicking one.
    let graph = GraphBuilder::<S>::new("panic-fatal")
        .node("always", |_s, _ctx| async move {
            if true {
                panic!("always broken");
            }
            Ok(Update::new())
        })
        .edge(START, "always")
        .edge("always", END)
        .retry("always", RetryPolicy::never())
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    match err {
        RunError::NodeFailed { node, attempts: 1, error, .. } => {
            assert_eq!(node, "always");
            assert_eq!(error.kind, NodeErrorKind::Panic);
            assert!(error.message.contains("always broken"), "{error}");
        }
        other => panic!("expected a node failure, got {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_loop_past_the_step_limit_fails_with_a_clear_error() {
    let graph = GraphBuilder::<S>::new("forever")
        .node("spin", |s: Arc<S>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "spin")
        .conditional_edge("spin", ["spin", END], |_s: &S| "spin")
        .step_limit(5)
        .compile()
        .unwrap();
    let events = EventLog::new();
    let err = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap_err();
    assert_eq!(err, RunError::StepLimitExceeded { limit: 5, pending: vec!["spin".into()] });
    assert!(err.to_string().contains("step limit of 5"));
    let completed_steps = events.events().iter().filter(|e| matches!(e.kind, EventKind::StepCompleted { .. })).count();
    assert_eq!(completed_steps, 4, "step 5 ran but could not hand over to a sixth");
}

#[tokio::test(start_paused = true)]
async fn cancelling_drops_the_running_node_at_once() {
    let drops = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&drops);
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = std::sync::Mutex::new(Some(entered_tx));
    let graph = GraphBuilder::<S>::new("cancel")
        .node("wait", move |_s, _ctx| {
            let guard = DropGuard(Arc::clone(&d));
            let entered = entered_tx.lock().unwrap().take();
            async move {
                let _guard = guard;
                if let Some(entered) = entered {
                    let _ = entered.send(());
                }
                std::future::pending::<()>().await;
                Ok(Update::new())
            }
        })
        .edge(START, "wait")
        .edge("wait", END)
        .compile()
        .unwrap();
    let cancel = CancelToken::new();
    let events = EventLog::new();
    let run = tokio::spawn(Executor::new(&graph).cancel_token(cancel.clone()).events(events.clone()).run(S::default()));
    entered_rx.await.unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    cancel.cancel();
    assert_eq!(run.await.unwrap(), Err(RunError::Cancelled));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(events.events().last().map(|e| &e.kind), Some(&EventKind::RunCancelled));
}

#[tokio::test(start_paused = true)]
async fn nodes_see_the_run_user_step_and_report_progress() {
    let run_id = Uuid::now_v7();
    let graph = GraphBuilder::<S>::new("ctx")
        .node("first", |_s, _ctx| async move { Ok(Update::new()) })
        .node("who", |_s, ctx: NodeContext| async move {
            ctx.progress(0.5, "halfway");
            ctx.progress(f64::NAN, "ignored");
            let seen = format!(
                "{}|{}|{}|{}|{}",
                ctx.run_id(),
                ctx.user().user_id,
                ctx.user().tenant.as_deref().unwrap_or("-"),
                ctx.step(),
                ctx.node()
            );
            Ok(Update::new().set("seen", [seen]))
        })
        .edge(START, "first")
        .edge("first", "who")
        .edge("who", END)
        .compile()
        .unwrap();
    let events = EventLog::new();
    let done = Executor::new(&graph)
        .run_id(run_id)
        .user(UserContext::new("alice").with_tenant("acme"))
        .events(events.clone())
        .run(S::default())
        .await
        .unwrap();
    assert_eq!(done.seen, [format!("{run_id}|alice|acme|2|who")]);
    let events = events.events();
    assert_progress_is_meaningful(&events);
    let tick = events.iter().find(|e| matches!(e.kind, EventKind::NodeProgress { .. })).expect("a progress tick");
    // Step 2 of 2 starts at 1/2 and moves towards 2/3 (END no nearer): halfway is 58.3.
    assert_eq!(tick.step, 2);
    assert!((tick.percent - (50.0 + (200.0 / 3.0 - 50.0) / 2.0)).abs() < 1e-9, "{tick:?}");
    assert_eq!(events.iter().filter(|e| matches!(e.kind, EventKind::NodeProgress { .. })).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_resumed_from_a_checkpoint_ends_as_an_uninterrupted_one() {
    let graph = abc_chain(1);
    let whole = Executor::new(&graph).run(S::default()).await.unwrap();

    let mut checkpoint = graph.start(&S::default()).unwrap();
    let first = checkpoint.next[0].clone();
    graph.apply(&mut checkpoint, vec![(first, log("a"))]).unwrap();
    // The checkpoint survives serialization, as it would in a database.
    let stored = serde_json::to_string(&checkpoint).unwrap();
    let checkpoint: Checkpoint = serde_json::from_str(&stored).unwrap();
    let events = EventLog::new();
    let resumed = Executor::new(&graph).events(events.clone()).resume(checkpoint).await.unwrap();
    assert_eq!(resumed, whole);
    assert!(events.events()[0].percent > 0.0, "progress carries over");
}

#[tokio::test(start_paused = true)]
async fn routers_that_misbehave_fail_the_run_naming_the_edge() {
    let graph = GraphBuilder::<S>::new("undeclared")
        .node("a", |_s, _ctx| async move { Ok(Update::new()) })
        .node("b", |_s, _ctx| async move { Ok(Update::new()) })
        .edge(START, "a")
        .conditional_edge("a", ["b"], |_s: &S| "c")
        .edge("b", END)
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    assert_eq!(err, RunError::UndeclaredTarget { from: "a".into(), target: "c".into(), declared: vec!["b".into()] });

    let graph = GraphBuilder::<S>::new("router-panic")
        .node("a", |_s, _ctx| async move { Ok(Update::new()) })
        .edge(START, "a")
        .conditional_edge("a", [END], |_s: &S| -> &str { panic!("router bug") })
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    assert!(
        matches!(&err, RunError::RouterFailed { from, reason } if from == "a" && reason.contains("router bug")),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_writing_an_unknown_field_fails_the_run_with_the_node_named() {
    let graph = GraphBuilder::<S>::new("typo")
        .node("a", |_s, _ctx| async move { Ok(Update::new().set("cout", 1)) })
        .edge(START, "a")
        .edge("a", END)
        .compile()
        .unwrap();
    let err = Executor::new(&graph).run(S::default()).await.unwrap_err();
    assert!(matches!(&err, RunError::InvalidUpdate { node, .. } if node == "a"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_start_router_can_fan_out_directly() {
    let graph = GraphBuilder::<S>::new("start-fan")
        .node("w", |_s, ctx: NodeContext| async move { Ok(Update::new().set("out", [ctx.input::<u64>()?])) })
        .fan_out(START, "w", |_s: &S| vec![3u64, 1, 2])
        .edge("w", END)
        .reducer("out", Reducer::append())
        .compile()
        .unwrap();
    let done = Executor::new(&graph).run(S::default()).await.unwrap();
    assert_eq!(done.out, [3, 1, 2]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the route a run takes (loops, fan-outs of any width, detours), its
    /// progress never goes backwards and reaches 100 only with the completion event.
    #[test]
    fn progress_is_monotone_on_any_route(loops in 0u64..6, width in 0u64..6, detour: bool, ticks in 0u32..4) {
        let graph = GraphBuilder::<S>::new("route")
            .node("plan", |_s, _ctx| async move { Ok(Update::new()) })
            .node("work", move |_s, ctx: NodeContext| async move {
                for t in 0..ticks {
                    ctx.progress(f64::from(t + 1) / f64::from(ticks), "working");
                }
                Ok(Update::new().set("out", [ctx.input::<u64>()?]))
            })
            .node("check", |s: Arc<S>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
            .node("detour1", |_s, _ctx| async move { Ok(Update::new()) })
            .node("detour2", |_s, _ctx| async move { Ok(Update::new()) })
            .edge(START, "plan")
            .fan_out("plan", "work", move |_s: &S| (0..width).collect::<Vec<_>>())
            .edge("plan", "check")
            .edge("work", "check")
            .conditional_edge("check", ["plan", "detour1", END], move |s: &S| {
                if s.n <= loops { "plan" } else if detour && s.n == loops + 1 { "detour1" } else { END }
            })
            .edge("detour1", "detour2")
            .edge("detour2", "check")
            .reducer("out", Reducer::append())
            .step_limit(100)
            .compile()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let events = EventLog::new();
        let result = rt.block_on(Executor::new(&graph).events(events.clone()).run(S::default()));
        proptest::prop_assert!(result.is_ok(), "{result:?}");
        let events = events.events();
        assert_progress_is_meaningful(&events);
        proptest::prop_assert_eq!(events.last().map(|e| e.percent), Some(100.0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_that_asks_a_question_stops_the_reference_run_waiting() {
    let graph = GraphBuilder::<S>::new("ask")
        .node("ask", |_s, ctx: NodeContext| async move {
            match ctx.answer::<String>()? {
                Some(answer) => Ok(log(&answer)),
                None => Err(NodeError::interrupt("approve?")),
            }
        })
        .edge(START, "ask")
        .edge("ask", END)
        .compile()
        .unwrap();
    let events = EventLog::new();
    let err = Executor::new(&graph).events(events.clone()).run(S::default()).await.unwrap_err();
    assert_eq!(err, RunError::Interrupted { node: "ask".into(), payload: serde_json::json!("approve?") });
    assert_eq!(
        events.events().last().map(|e| e.kind.clone()),
        Some(EventKind::RunWaiting { task: "ask".into(), payload: serde_json::json!("approve?") })
    );
    assert!(!RetryPolicy::new().should_retry(1, &NodeError::interrupt("x")), "a question is never retried");
}
