//! The engine a batch of contracts runs on, set up the same way for `analyze` and `eval`:
//! the store, the admission limits and the model behind the contract-analysis graph.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use graphloop_contracts::{contract_graph, LatencyModel, Model, RuleModel};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::{Engine, EngineConfig, StoreFactory};

/// How to set up the engine for a batch.
pub(crate) struct Setup {
    /// The runs the batch will start (new or resumed): admission never refuses one.
    pub(crate) runs: usize,
    /// Contracts analysed at once; the engine's default when `None`.
    pub(crate) concurrency: Option<usize>,
    /// A delay per model call, to emulate a hosted language model.
    pub(crate) model_latency: Option<Duration>,
    /// How long a shutdown lets running steps go on to reach their checkpoint; the
    /// engine's default when `None`.
    pub(crate) shutdown_timeout: Option<Duration>,
    /// PostgreSQL, or the in-memory store when `None`.
    pub(crate) store: Option<PgStoreConfig>,
}

/// Starts an engine with the contract-analysis graph registered. If the graph cannot be
/// registered, the engine is shut down before the error is returned.
pub(crate) async fn start(setup: Setup) -> anyhow::Result<Engine> {
    let model: Arc<dyn Model> = match setup.model_latency {
        Some(latency) => Arc::new(LatencyModel::new(Arc::new(RuleModel), latency)),
        None => Arc::new(RuleModel),
    };
    let mut config = EngineConfig::new().queue_capacity(setup.runs);
    if let Some(runs) = setup.concurrency {
        config = config.max_running(runs);
    }
    if let Some(timeout) = setup.shutdown_timeout {
        config = config.shutdown_timeout(timeout);
    }
    let store_name = setup.store.as_ref().map(StoreFactory::describe);
    if let Some(store) = setup.store {
        config = config.store(store);
    }
    let engine = Engine::start(config).await.with_context(|| match &store_name {
        Some(store) => format!("cannot open the store {store}"),
        None => "cannot start the engine".to_owned(),
    })?;
    let registered = contract_graph(model)
        .context("the contract-analysis graph does not compile")
        .and_then(|graph| engine.register(graph).context("cannot register the contract-analysis graph"));
    if let Err(error) = registered {
        // Whatever the shutdown says, the registration's error is the one to tell.
        let _ = engine.shutdown().await;
        return Err(error);
    }
    Ok(engine)
}
