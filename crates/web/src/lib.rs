//! graphloop over HTTP: actix-web routes that start, inspect, cancel, resume and stream
//! runs, each scoped to the user who asks.
//!
//! The host application keeps its own `App` and server; it mounts these routes with
//! [`routes`], given an [`Engine`] handle and a [`WebConfig`] that says how callers are
//! identified ([`Identity`]; [`BearerTokens`] is the simple one). This crate never touches
//! the database and never runs a node: every request becomes a call on the engine's
//! handle, which answers by message from the engine's own threads, so nothing of the
//! engine runs on the web server's event loops and nothing of the server runs on the
//! engine's.
//!
//! - `POST /runs` starts a run; `GET /runs` lists the caller's runs, newest first, a page
//!   at a time; `GET /runs/{id}` shows one ([`RunView`]).
//! - `GET /runs/{id}/events` is a Server-Sent Events stream: the run's stored events from
//!   any point (`Last-Event-ID` or `?from=`), then live ones until the run ends, with
//!   in-node progress ticks in between.
//! - `POST /runs/{id}/cancel` and `POST /runs/{id}/resume` control a run.
//! - `GET /health` says the service is up; `GET /metrics` is the engine's metrics as
//!   Prometheus text (when [`WebConfig::metrics`] is given a handle); `GET /openapi.json`
//!   is the routes' OpenAPI document ([`openapi`]).
//!
//! A caller sees and controls only their own runs: another user's run answers 404, exactly
//! like a run that does not exist. Every failure is a JSON body `{"error": kind,
//! "reason": text}` with a status chosen in one place ([`WebError`]); bad input is a 4xx,
//! never a 500 or a panic.
//!
//! # Example
//!
//! ```
//! use actix_web::{http::StatusCode, test, App};
//! use graphloop_core::{GraphBuilder, Update, END, START};
//! use graphloop_runtime::{Engine, EngineConfig};
//! use graphloop_web::{routes, BearerTokens, UserContext, WebConfig};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Count { n: u32 }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let engine = Engine::start(EngineConfig::new()).await?;
//! engine.register(
//!     GraphBuilder::<Count>::new("double")
//!         .node("double", |s, _ctx| async move { Ok(Update::new().set("n", s.n * 2)) })
//!         .edge(START, "double")
//!         .edge("double", END)
//!         .compile()?,
//! )?;
//!
//! let tokens = BearerTokens::new().token("alice-secret", UserContext::new("alice"));
//! // In a real service: `HttpServer::new(move || App::new().configure(routes(...)))`.
//! let app = test::init_service(App::new().configure(routes(engine.clone(), WebConfig::new(tokens)))).await;
//!
//! let started = test::TestRequest::post()
//!     .uri("/runs")
//!     .insert_header(("Authorization", "Bearer alice-secret"))
//!     .set_json(serde_json::json!({"graph": "double", "input": {"n": 21}}))
//!     .to_request();
//! let response = test::call_service(&app, started).await;
//! assert_eq!(response.status(), StatusCode::CREATED);
//! let run: graphloop_web::RunView = test::read_body_json(response).await;
//!
//! let done = engine.wait(run.id).await?;
//! assert_eq!(done.output.unwrap()["n"], 42);
//! engine.shutdown().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod config;
mod error;
mod handlers;
mod identity;
mod openapi;
mod sse;
mod time;
mod view;

pub use config::WebConfig;
pub use error::WebError;
pub use graphloop_core::UserContext;
pub use identity::{BearerTokens, Identity, IdentityError};
pub use openapi::openapi;
pub use view::{RunPage, RunView};

use actix_web::web;
use graphloop_runtime::Engine;

/// The routes, for `App::configure` (or `Scope::configure`, to mount them under a prefix
/// such as `/api`).
///
/// Mounts `/runs`, `/runs/{id}`, `/runs/{id}/events`, `/runs/{id}/cancel`,
/// `/runs/{id}/resume`, `/health`, `/metrics` and `/openapi.json`. Everything they need
/// (the engine handle, the configuration, the JSON/path/query error handlers and the body
/// limit) is attached to these resources only, so the host application's own routes and
/// extractor settings are left as they are.
pub fn routes(engine: Engine, config: WebConfig) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| handlers::mount(cfg, engine, config)
}
