//! Shared setup of the web tests: an in-memory engine with three small graphs, the
//! callers' tokens, request builders, and readers for JSON and Server-Sent Events bodies.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use graphloop_core::{GraphBuilder, NodeContext, NodeError, Reducer, Update, UserContext, END, START};
use graphloop_runtime::{Engine, EngineConfig};
use graphloop_web::{BearerTokens, RunView, WebConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Alice's `Authorization` header.
pub const ALICE: &str = "Bearer alice-token";
/// Bob's.
pub const BOB: &str = "Bearer bob-token";

/// How long an awaited event may take before the test calls it "never": a deadline that
/// turns a hang into a failure, not a timing assertion.
pub const NEVER: Duration = Duration::from_secs(60);

/// The state of every test graph; `{}` is a valid input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Count {
    pub n: u64,
    pub log: Vec<String>,
}

/// An in-memory engine with the test graphs registered:
/// - `double`: two nodes, `n * 2` then `+ 1`;
/// - `gated`: one node, `wait`, that tells `entered` it began, waits for a permit of
///   `gate`, reports progress (0.5, "halfway"), and waits for a second permit;
/// - `approval`: one node, `review`, that asks a question (interrupts) until resumed with
///   a string answer, which it logs.
pub struct Harness {
    pub engine: Engine,
    pub gate: Arc<Semaphore>,
    pub entered: Arc<Semaphore>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(EngineConfig::new()).await
    }

    pub async fn with(config: EngineConfig) -> Self {
        let engine = Engine::start(config).await.unwrap();
        let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        engine
            .register(
                GraphBuilder::<Count>::new("double")
                    .node("double", |s, _ctx| async move { Ok(Update::new().set("n", s.n * 2)) })
                    .node("increment", |s, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
                    .edge(START, "double")
                    .edge("double", "increment")
                    .edge("increment", END)
                    .compile()
                    .unwrap(),
            )
            .unwrap();
        let (g, e) = (Arc::clone(&gate), Arc::clone(&entered));
        engine
            .register(
                GraphBuilder::<Count>::new("gated")
                    .node("wait", move |_s, ctx: NodeContext| {
                        let (gate, entered) = (Arc::clone(&g), Arc::clone(&e));
                        async move {
                            entered.add_permits(1);
                            gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                            ctx.progress(0.5, "halfway");
                            gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                            Ok(Update::new().set("log", ["released"]))
                        }
                    })
                    .edge(START, "wait")
                    .edge("wait", END)
                    .reducer("log", Reducer::append())
                    .compile()
                    .unwrap(),
            )
            .unwrap();
        engine
            .register(
                GraphBuilder::<Count>::new("approval")
                    .node("review", |_s, ctx: NodeContext| async move {
                        match ctx.answer::<String>()? {
                            Some(answer) => Ok(Update::new().set("log", [format!("review: {answer}")])),
                            None => Err(NodeError::interrupt(json!({"question": "approve?"}))),
                        }
                    })
                    .edge(START, "review")
                    .edge("review", END)
                    .reducer("log", Reducer::append())
                    .compile()
                    .unwrap(),
            )
            .unwrap();
        Self { engine, gate, entered }
    }

    /// Alice and Bob, by bearer token.
    pub fn config(&self) -> WebConfig {
        WebConfig::new(
            BearerTokens::new()
                .token("alice-token", UserContext::new("alice"))
                .token("bob-token", UserContext::new("bob")),
        )
    }

    /// Waits until the `gated` node has begun (once per run).
    pub async fn entered(&self) {
        within(self.entered.acquire()).await.unwrap().forget();
    }

    /// Lets every `gated` node waiting now go through both of its gates.
    pub fn release(&self) {
        self.gate.add_permits(2);
    }

    pub async fn shutdown(self) {
        self.engine.shutdown().await.unwrap();
    }
}

/// Where the tests' PostgreSQL is: `GRAPHLOOP_TEST_DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("GRAPHLOOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// Drops a test's schema and everything in it.
pub async fn drop_schema(schema: &str) {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    drop(client);
    let _ = connection.await;
}

/// `future`, or a failed test if it has not finished by [`NEVER`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NEVER, future).await.expect("waited for longer than NEVER")
}

/// A GET of `uri` with `authorization` (`None`: without the header).
pub fn get(uri: &str, authorization: Option<&str>) -> TestRequest {
    with_auth(TestRequest::get().uri(uri), authorization)
}

/// A POST of `body` as JSON to `uri` with `authorization`.
pub fn post(uri: &str, authorization: Option<&str>, body: Value) -> TestRequest {
    with_auth(TestRequest::post().uri(uri), authorization).set_json(body)
}

fn with_auth(req: TestRequest, authorization: Option<&str>) -> TestRequest {
    match authorization {
        Some(value) => req.insert_header(("Authorization", value)),
        None => req,
    }
}

/// Sends `req`; the status and the body as JSON.
pub async fn call<S, R, B>(app: &S, req: R) -> (StatusCode, Value)
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, req).await;
    let status = response.status();
    let body = test::read_body(response).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("the body of a {status} is not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// The request that starts a run of `graph` from `input` for `authorization`.
pub fn start(authorization: &str, graph: &str, input: Value) -> TestRequest {
    post("/runs", Some(authorization), json!({"graph": graph, "input": input}))
}

/// The run of a `POST /runs` answer, which must be a 201.
pub fn started((status, body): (StatusCode, Value)) -> RunView {
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_value(body).unwrap()
}

/// A Server-Sent Events frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Parses one frame (`field: value` lines).
pub fn frame(text: &str) -> Frame {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in text.lines() {
        let (field, value) = line.split_once(": ").unwrap_or_else(|| panic!("not a `field: value` line: {line:?}"));
        match field {
            "id" => id = Some(value.parse().unwrap()),
            "event" => event = Some(value.to_owned()),
            "data" => data = Some(serde_json::from_str(value).unwrap()),
            other => panic!("unexpected field {other:?} in {text:?}"),
        }
    }
    Frame { id, event: event.expect("a frame without `event`"), data: data.expect("a frame without `data`") }
}

/// Every frame of a whole SSE body.
pub fn frames(body: &[u8]) -> Vec<Frame> {
    let body = std::str::from_utf8(body).unwrap();
    assert!(body.is_empty() || body.ends_with("\n\n"), "the body ends mid-frame: {body:?}");
    body.split_terminator("\n\n").map(frame).collect()
}

/// Reads an SSE body frame by frame, as a client does while the run goes on.
pub struct FrameReader<B> {
    body: Pin<Box<B>>,
    buffer: String,
}

impl<B: MessageBody> FrameReader<B> {
    pub fn new(response: ServiceResponse<B>) -> Self {
        Self { body: Box::pin(response.into_body()), buffer: String::new() }
    }

    /// The next frame; `None` once the body has ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Some(frame(text.trim_end()));
            }
            let chunk = within(std::future::poll_fn(|cx| self.body.as_mut().poll_next(cx))).await;
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Some(Err(_)) => panic!("the body failed"),
                None => {
                    assert!(self.buffer.is_empty(), "the body ended mid-frame: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }
}
