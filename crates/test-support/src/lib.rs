//! Fixtures for graphloop's own tests (never published): a store that injects faults
//! around any other store, so that one scenario runs against the memory store and
//! PostgreSQL alike.
//!
//! [`FaultyStoreFactory`] wraps a [`StoreFactory`]; the [`Faults`] handle it shares with
//! the test switches faults on and off from any thread while the engine runs:
//! - an **outage**: every write and read fails as unavailable (transient) while it lasts;
//! - **failing writes**: the next N writes fail as unavailable;
//! - a **gate**: every write first waits for a permit, so a test holds the store still;
//! - **refusals**: a batch holding a unit the test's predicate picks is refused for good,
//!   as PostgreSQL refuses a row it cannot hold.
//!
//! It never touches the database itself: what it passes on, the wrapped store does.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures_util::future::LocalBoxFuture;
use graphloop_runtime::{
    Batch, CheckpointRecord, CommitUnit, EventRecord, PoolStatus, RunQuery, RunRecord, RunStorage, Store, StoreError,
    StoreFactory, Written,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

type Refusal = Box<dyn Fn(&CommitUnit) -> bool + Send + Sync>;

/// The faults a [`FaultyStore`] injects, switched by the test.
#[derive(Default)]
pub struct Faults {
    outage: AtomicBool,
    failing_writes: AtomicUsize,
    gate: Mutex<Option<Arc<Semaphore>>>,
    refuse: Mutex<Option<Refusal>>,
    writes: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("outage", &self.outage.load(Ordering::SeqCst))
            .field("failing_writes", &self.failing_writes.load(Ordering::SeqCst))
            .field("writes", &self.writes.load(Ordering::SeqCst))
            .field("refused", &self.refused.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// No faults yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts (`true`) or ends an outage: writes and reads fail as unavailable.
    pub fn outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    /// The next `count` writes fail as unavailable.
    pub fn fail_writes(&self, count: usize) {
        self.failing_writes.store(count, Ordering::SeqCst);
    }

    /// Every write from now on waits for a permit of `gate` (`None`: writes go at once).
    pub fn gate(&self, gate: Option<Arc<Semaphore>>) {
        *self.gate.lock().unwrap_or_else(PoisonError::into_inner) = gate;
    }

    /// Refuses for good every batch holding a unit `pick` returns `true` for.
    pub fn refuse(&self, pick: impl Fn(&CommitUnit) -> bool + Send + Sync + 'static) {
        *self.refuse.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(pick));
    }

    /// Write attempts so far (each retry counts).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Writes refused for good so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn read(&self) -> Result<(), StoreError> {
        if self.outage.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("connection refused (injected outage)"));
        }
        Ok(())
    }

    async fn before_write(&self, batch: &Batch) -> Result<(), StoreError> {
        let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(gate) = gate {
            gate.acquire().await.map_err(|e| StoreError::unavailable(e.to_string()))?.forget();
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.read()?;
        let failing = self.failing_writes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::unavailable("connection refused (injected failure)"));
        }
        let refuse = self.refuse.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pick) = refuse.as_ref() {
            if let Some(unit) = batch.units.iter().find(|unit| pick(unit)) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::refused(format!("injected refusal of a unit of run {}", unit.run_id)));
            }
        }
        Ok(())
    }
}

/// Opens a [`FaultyStore`] around the store `inner` opens.
pub struct FaultyStoreFactory {
    inner: Box<dyn StoreFactory>,
    faults: Arc<Faults>,
}

impl FaultyStoreFactory {
    /// Wraps `inner`, with faults switched through `faults`.
    pub fn new(inner: impl StoreFactory, faults: Arc<Faults>) -> Self {
        Self { inner: Box::new(inner), faults }
    }
}

impl StoreFactory for FaultyStoreFactory {
    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }

    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>> {
        let Self { inner, faults } = *self;
        Box::pin(async move {
            let inner = inner.open().await?;
            Ok(Rc::new(FaultyStore { inner, faults }) as Rc<dyn Store>)
        })
    }
}

/// A store that injects the [`Faults`] and passes everything else to the store it wraps.
pub struct FaultyStore {
    inner: Rc<dyn Store>,
    faults: Arc<Faults>,
}

impl Store for FaultyStore {
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(async move {
            self.faults.before_write(batch).await?;
            self.inner.write(batch).await
        })
    }

    fn admit(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.inner.admit(run)
    }

    fn run(&self, id: Uuid) -> LocalBoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.run(id),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn events(
        &self,
        run_id: Uuid,
        from_seq: u64,
        limit: usize,
    ) -> LocalBoxFuture<'_, Result<Vec<EventRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.events(run_id, from_seq, limit),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn runs<'a>(&'a self, query: &'a RunQuery) -> LocalBoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.runs(query),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn latest_checkpoint(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<Option<CheckpointRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.latest_checkpoint(run_id),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn unfinished_runs(&self) -> LocalBoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.unfinished_runs(),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn pool(&self) -> Option<PoolStatus> {
        self.inner.pool()
    }

    fn run_by_key<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.run_by_key(user_id, key),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn prune_checkpoints(&self, finished_before: SystemTime) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        self.inner.prune_checkpoints(finished_before)
    }

    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<RunStorage, StoreError>> {
        self.inner.storage(run_id)
    }

    fn last_seq(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        match self.faults.read() {
            Ok(()) => self.inner.last_seq(run_id),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }
}
