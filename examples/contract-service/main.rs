//! An actix-web service embedding graphloop with the contract-analysis workflow: the
//! `graphloop-web` routes, bearer tokens from configuration, PostgreSQL from
//! `DATABASE_URL` (in memory without it), Prometheus metrics at `/metrics`, and one HTML
//! page (served by the app, no build step) that lists your runs with live progress bars,
//! takes a contract, and shows its report.
//!
//! ```text
//! GRAPHLOOP_TOKENS="alice=alice-secret,bob=bob-secret" cargo run --example contract-service
//! ```
//!
//! Settings (environment): `GRAPHLOOP_TOKENS` (`user=token` pairs, comma-separated; without
//! it one demo user `demo` with token `demo-token` is created and said so),
//! `GRAPHLOOP_BIND` (default `127.0.0.1:8080`; port 0 picks a free one), `DATABASE_URL`, `GRAPHLOOP_SCHEMA`.

use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use graphloop::{Engine, EngineConfig, PgStoreConfig};
use graphloop_contracts::{contract_graph, RuleModel};
use graphloop_web::{routes, BearerTokens, UserContext, WebConfig};

const PAGE: &str = include_str!("index.html");

fn tokens() -> Result<BearerTokens, String> {
    let Ok(spec) = std::env::var("GRAPHLOOP_TOKENS") else {
        eprintln!("GRAPHLOOP_TOKENS is not set: one demo user `demo` with the token `demo-token`");
        return Ok(BearerTokens::new().token("demo-token", UserContext::new("demo")));
    };
    let mut tokens = BearerTokens::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (user, token) = pair
            .split_once('=')
            .filter(|(user, token)| !user.is_empty() && !token.is_empty())
            .ok_or_else(|| format!("GRAPHLOOP_TOKENS: {pair:?} is not user=token"))?;
        tokens = tokens.token(token, UserContext::new(user));
    }
    if tokens.is_empty() {
        return Err("GRAPHLOOP_TOKENS names no user".to_owned());
    }
    Ok(tokens)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokens = tokens()?;
    // Prometheus text at /metrics: the engine records through the `metrics` facade; the
    // application installs the recorder.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    graphloop::describe_metrics();
    // Histogram samples gather until they are drained: by a scrape, or by this upkeep, so
    // that a service nobody scrapes does not grow with every step it runs.
    let upkeep = metrics.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let bind = std::env::var("GRAPHLOOP_BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let mut config = EngineConfig::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let mut store = PgStoreConfig::new(url);
        if let Ok(schema) = std::env::var("GRAPHLOOP_SCHEMA") {
            store = store.schema(schema);
        }
        config = config.store(store);
    }
    let engine = Engine::start(config).await?;
    engine.register(contract_graph(Arc::new(RuleModel))?)?;
    // Runs this service left unfinished (a crash, a deploy) go on from their checkpoints.
    let resumed = engine.recover_where(|run| run.graph == graphloop_contracts::GRAPH_NAME).await?;
    if !resumed.is_empty() {
        eprintln!("resumed {} unfinished run(s)", resumed.len());
    }

    let web = WebConfig::new(tokens).metrics(metrics);
    let served = engine.clone();
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/",
                web::get().to(|| async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) }),
            )
            .configure(routes(served.clone(), web.clone()))
    })
    .bind(&bind)?;
    // Said once the socket is bound (so a client may connect at once), with the real port
    // when GRAPHLOOP_BIND asks for port 0.
    for addr in server.addrs() {
        eprintln!("contract service on http://{addr}/");
    }
    server.run().await?;
    // The server stopped (Ctrl-C): let the runs checkpoint and everything accepted be written.
    let report = engine.shutdown().await?;
    if !report.complete {
        eprintln!("shutdown was not complete: {report:?}");
    }
    Ok(())
}
