//! Memory soak (issue 11): N rounds of 300 contract runs on one engine, printing the
//! process's RSS and the engine's counters after each round (all runs finished).
//!
//! `cargo run --release --example soak_memory -- [rounds] [runs-per-round]`
//!
//! Environment:
//! - `SOAK_STORE=pg` uses PostgreSQL (`DATABASE_URL`, default
//!   `postgres://root@127.0.0.1:5432/test`) in a fresh schema (`SOAK_SCHEMA`, default
//!   `soak_<pid>`), dropped afterwards; otherwise the in-memory store.
//! - `SOAK_METRICS=1` installs the Prometheus recorder, as the example service does
//!   (`SOAK_RENDER=1` also renders it after each round, as a scraper would).
//! - `SOAK_CONCURRENCY=n` sets `max_running` (the engine's default otherwise).
//! - `SOAK_IDLE_SECS=s` sleeps after each round before measuring (default 1).
//! - `SOAK_EXIT=1` exits right after the last round, without shutting the engine down,
//!   so that a heap profiler (heaptrack) reports what is still live as "leaked".
//! - `SOAK_MAX_GROWTH=p` fails (exit status 1) when the RSS after the last round exceeds
//!   the RSS after round 1 by more than `p` percent (`just bench-soak` uses 10).
//!
//! A round's starts are submitted at once (not one after another), so that all its runs
//! are in flight together, as in issue 11 (300 runs, 300 arbiter threads): started one by
//! one on PostgreSQL, each start waits for its commit and only ~100 overlap.
//!
//! Every run must end `completed`: the soak prints each one that did not, and exits with
//! status 1 after the last round (it is a benchmark gate, not only a report).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use graphloop::{Engine, EngineConfig, PgStoreConfig, RunStatus, UserContext};
use graphloop_contracts::{contract_graph, ContractState, RuleModel, GRAPH_NAME};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Anonymous memory in /proc/self/smaps split into heap ([heap], the main arena),
/// 64 MiB-aligned mappings (glibc thread arenas) and the rest, in KiB of RSS.
fn smaps_breakdown() -> (u64, u64, u64, usize) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut heap, mut arenas, mut other, mut mappings) = (0, 0, 0, 0);
    let mut kind = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            mappings += 1;
            let mut parts = line.split_whitespace();
            let range = parts.next().unwrap_or("");
            let path = parts.nth(4).unwrap_or("");
            let (start, end) = range.split_once('-').unwrap_or(("0", "0"));
            let start = u64::from_str_radix(start, 16).unwrap_or(0);
            let end = u64::from_str_radix(end, 16).unwrap_or(0);
            kind = if path == "[heap]" {
                1
            } else if path.is_empty() && start % (64 << 20) == 0 && end - start <= (64 << 20) {
                2
            } else if path.is_empty() {
                3
            } else {
                0
            };
        } else if let Some(rest) = line.strip_prefix("Rss:") {
            let kib: u64 = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match kind {
                1 => heap += kib,
                2 => arenas += kib,
                3 => other += kib,
                _ => {}
            }
        }
    }
    (heap, arenas, other, mappings)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

async fn admin() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn report(label: &str, baseline: u64) {
    let rss = status_kib("VmRSS:");
    let (heap, arenas, other, mappings) = smaps_breakdown();
    println!(
        "{label:>8}: rss {:>7.1} MiB (+{:>6.1} MiB)  heap {:>6.1}  arenas {:>6.1}  other-anon {:>6.1} MiB  maps {mappings}  threads {}",
        rss as f64 / 1024.0,
        rss.saturating_sub(baseline) as f64 / 1024.0,
        heap as f64 / 1024.0,
        arenas as f64 / 1024.0,
        other as f64 / 1024.0,
        threads(),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let per_round: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let pg = std::env::var("SOAK_STORE").is_ok_and(|s| s == "pg");
    let idle = Duration::from_secs(std::env::var("SOAK_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1));
    let metrics = std::env::var("SOAK_METRICS").is_ok_and(|s| s == "1");
    let render = std::env::var("SOAK_RENDER").is_ok_and(|s| s == "1");
    let max_growth: Option<f64> = std::env::var("SOAK_MAX_GROWTH").ok().map(|s| s.parse()).transpose()?;
    let schema = std::env::var("SOAK_SCHEMA").unwrap_or_else(|_| format!("soak_{}", std::process::id()));

    let mut texts = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/samples"))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            texts.push((name, std::fs::read_to_string(&path)?));
        }
    }
    texts.sort();

    let handle = if metrics {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
        graphloop::describe_metrics();
        Some(handle)
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let failures = rt.block_on(async move {
        let base = status_kib("VmRSS:");
        report("start", base);
        let mut config = EngineConfig::new().queue_capacity(per_round.max(1));
        if let Some(n) = std::env::var("SOAK_CONCURRENCY").ok().and_then(|s| s.parse().ok()) {
            config = config.max_running(n);
        }
        if pg {
            let client = admin().await?;
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
            config = config.store(PgStoreConfig::new(database_url()).schema(schema.clone()));
        }
        let engine = Engine::start(config).await?;
        engine.register(contract_graph(Arc::new(RuleModel))?)?;
        report("engine", base);
        let mut after_first = 0;
        let mut per_round_kib = Vec::with_capacity(rounds);
        let mut not_completed = 0usize;
        for round in 1..=rounds {
            let started = Instant::now();
            let inputs: Vec<ContractState> = (0..per_round)
                .map(|i| {
                    let (name, text) = &texts[i % texts.len()];
                    ContractState::new(name.clone(), text.clone())
                })
                .collect();
            let starts = inputs.iter().enumerate().map(|(i, input)| {
                engine.start_run(GRAPH_NAME, input, UserContext::new(format!("u{}", i % 10)))
            });
            let ids = join_all(starts).await.into_iter().collect::<Result<Vec<_>, _>>()?;
            drop(inputs);
            let mut completed = 0;
            for id in ids {
                let record = engine.wait(id).await?;
                if record.status == RunStatus::Completed {
                    completed += 1;
                } else {
                    let error = record.error.map(|e| e.to_string()).unwrap_or_default();
                    println!("          run {id} ended {:?}: {error}", record.status);
                    not_completed += 1;
                }
            }
            engine.wait_for_arbiters(0).await?;
            let took = started.elapsed();
            tokio::time::sleep(idle).await;
            if let Some(handle) = &handle {
                if render {
                    let text = handle.render();
                    std::hint::black_box(text.len());
                }
            }
            let stats = engine.stats().await?;
            report(&format!("round {round}"), base);
            per_round_kib.push(status_kib("VmRSS:"));
            if round == 1 {
                after_first = status_kib("VmRSS:");
            }
            println!(
                "          {completed}/{per_round} completed in {:.1} s; supervisor running {} queued {} started {} peak {}; persister accepted {} written {} buffered {} subscribers {} batches {}; arbiters {}",
                took.as_secs_f64(),
                stats.supervisor.running,
                stats.supervisor.queued,
                stats.supervisor.started,
                stats.supervisor.peak_running,
                stats.persister.events_accepted,
                stats.persister.events_written,
                stats.persister.buffered,
                stats.persister.subscribers,
                stats.persister.batches_written,
                stats.arbiters,
            );
        }
        let last = status_kib("VmRSS:");
        let growth = (last as f64 / after_first.max(1) as f64 - 1.0) * 100.0;
        println!(
            "rss after round 1: {:.1} MiB, after round {rounds}: {:.1} MiB ({growth:+.1} %)",
            after_first as f64 / 1024.0,
            last as f64 / 1024.0,
        );
        // Context for the gate (not part of it): the highest RSS of rounds 2.. and the
        // mean of the last half of the rounds (the plateau), both against round 1.
        if per_round_kib.len() > 1 {
            let pct = |kib: f64| (kib / after_first.max(1) as f64 - 1.0) * 100.0;
            let highest = per_round_kib[1..].iter().copied().max().unwrap_or(0) as f64;
            let tail = &per_round_kib[per_round_kib.len() / 2..];
            let plateau = tail.iter().sum::<u64>() as f64 / tail.len() as f64;
            println!(
                "highest of rounds 2..{rounds}: {:.1} MiB ({:+.1} %); mean of rounds {}..{rounds}: {:.1} MiB ({:+.1} %)",
                highest / 1024.0,
                pct(highest),
                per_round_kib.len() - tail.len() + 1,
                plateau / 1024.0,
                pct(plateau),
            );
        }
        let mut failures = Vec::new();
        if not_completed > 0 {
            failures.push(format!("{not_completed} of {} runs did not complete", rounds * per_round));
        }
        if let Some(limit) = max_growth {
            if growth > limit {
                failures.push(format!("rss grew {growth:+.1} % from round 1 to round {rounds}, more than {limit} %"));
            }
        }
        if std::env::var("SOAK_EXIT").is_ok_and(|s| s == "1") {
            // For heap profilers: what is live now is reported as not freed at exit.
            for failure in &failures {
                eprintln!("soak failed: {failure}");
            }
            std::process::exit(i32::from(!failures.is_empty()));
        }
        engine.shutdown().await?;
        if pg {
            admin().await?.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(failures)
    })?;
    if failures.is_empty() {
        println!("soak passed");
        Ok(())
    } else {
        for failure in &failures {
            eprintln!("soak failed: {failure}");
        }
        std::process::exit(1);
    }
}
