//! Issue 6: with the database unreachable, `Engine::health` is `Unhealthy` with a database
//! reason (and the pool's figures); once it is back, the waiting run commits, completes,
//! and health is `Healthy` again. The outage is real: the engine reaches PostgreSQL
//! through a TCP proxy in this test, which cuts every connection and refuses new ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{database_url, eight_nodes, Doc, TestDb};
use graphloop::{Engine, EngineConfig, HealthConfig, HealthStatus, PgStoreConfig, RunStatus, UserContext};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to PostgreSQL that can be cut: every open connection dropped, new ones
/// refused, until it is restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, links) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (c, l) = (Arc::clone(&cut), Arc::clone(&links));
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let upstream = upstream.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, cut, links, accept }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `postgres://user@host:port/db?...` with host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, hp)) => (format!("{user}@"), hp),
        None => (String::new(), authority),
    };
    let upstream = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    (format!("{scheme}://{user}127.0.0.1:{port}/{path}"), upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_an_unreachable_database_and_recovers() {
    let db = TestDb::new().await;
    let (_, upstream) = through(&database_url(), 0);
    let proxy = Proxy::start(upstream).await;
    let (url, _) = through(&database_url(), proxy.port);
    let store = PgStoreConfig::new(url).schema(&db.schema).pool_size(2).create_timeout(Duration::from_millis(500));
    // `Engine::health` answers the monitor's latest report: a short interval makes the
    // reports follow the outage closely.
    let health = HealthConfig::new().store_failures(2).interval(Duration::from_millis(50));
    let engine = Engine::start(EngineConfig::new().store(store).health(health)).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    assert_eq!(engine.health().await.unwrap().status, HealthStatus::Healthy);

    // The database goes away; a start now is answered only once its row is stored.
    proxy.cut();
    let starting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.start_run("eight", &Doc::default(), UserContext::new("u")).await })
    };
    let unhealthy = tokio::time::timeout(
        Duration::from_secs(120),
        engine.health_when(|health| health.status == HealthStatus::Unhealthy),
    )
    .await
    .expect("health turned Unhealthy while the database was unreachable")
    .unwrap();
    let reasons = unhealthy.reasons.join(" | ");
    assert!(reasons.contains("database"), "{reasons}");
    assert!(unhealthy.store.last_error.is_some(), "{:?}", unhealthy.store);
    let pool = unhealthy.store.pool.expect("a PostgreSQL store reports its pool");
    assert_eq!(pool.max_size, 2);
    assert!(!starting.is_finished(), "a start was acknowledged while its row could not be stored");

    // It comes back: the start is acknowledged, the run completes, and health recovers.
    proxy.restore();
    let run = starting.await.unwrap().unwrap();
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    engine.wait_for_arbiters(0).await.unwrap();
    let healthy = tokio::time::timeout(
        Duration::from_secs(120),
        engine.health_when(|health| health.running == 0 && health.store.consecutive_failures == 0),
    )
    .await
    .expect("a report after the run ended")
    .unwrap();
    assert_eq!(healthy.status, HealthStatus::Healthy, "{:?}", healthy.reasons);
    engine.shutdown().await.unwrap();
    db.drop().await;
}
