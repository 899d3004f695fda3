//! The embedded in-memory store: the default when no database is configured, and the
//! store of fast actor tests. It keeps everything until the process ends.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::SystemTime;

use futures_util::future::{self, LocalBoxFuture};
use uuid::Uuid;

use crate::store::{
    Batch, CheckpointRecord, EventRecord, RunQuery, RunRecord, RunStorage, Store, StoreError, StoreFactory, Written,
};

/// Opens a [`MemoryStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStoreFactory;

impl StoreFactory for MemoryStoreFactory {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>> {
        Box::pin(future::ready(Ok(Rc::new(MemoryStore::default()) as Rc<dyn Store>)))
    }
}

/// Runs, events and checkpoints in memory, with the same semantics as the PostgreSQL
/// store: idempotent event and checkpoint inserts, run rows that never leave a terminal
/// status.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: RefCell<Data>,
}

#[derive(Debug, Default)]
struct Data {
    runs: HashMap<Uuid, RunRecord>,
    /// (user, idempotency key) to run.
    keys: HashMap<(String, String), Uuid>,
    events: BTreeMap<(Uuid, u64), EventRecord>,
    checkpoints: BTreeMap<(Uuid, u64), CheckpointRecord>,
}

impl Store for MemoryStore {
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Written, StoreError>> {
        let mut data = self.data.borrow_mut();
        let mut written = Written::default();
        for run in batch.runs() {
            if data.runs.contains_key(&run.id) {
                continue;
            }
            // The same rule as PostgreSQL's unique index on (user, key).
            if let Some(key) = &run.idempotency_key {
                let key = (run.user.user_id.clone(), key.clone());
                if let Some(earlier) = data.keys.get(&key).and_then(|id| data.runs.get(id)) {
                    written.existing.push((run.id, earlier.clone()));
                    continue;
                }
                data.keys.insert(key, run.id);
            }
            data.runs.insert(run.id, run.clone());
        }
        for update in batch.run_updates() {
            if let Some(run) = data.runs.get_mut(&update.id) {
                update.apply(run);
            }
        }
        for event in batch.events() {
            data.events.entry((event.run_id, event.seq)).or_insert_with(|| event.clone());
        }
        for checkpoint in batch.checkpoints() {
            data.checkpoints.insert((checkpoint.run_id, checkpoint.checkpoint.step), checkpoint.clone());
        }
        for run_id in &batch.prune_to_last() {
            let last = data.checkpoints.range((*run_id, 0)..=(*run_id, u64::MAX)).next_back().map(|(key, _)| *key);
            if let Some((_, last_step)) = last {
                data.checkpoints.retain(|(run, step), _| run != run_id || *step == last_step);
            }
        }
        Box::pin(future::ready(Ok(written)))
    }

    fn run(&self, id: Uuid) -> LocalBoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        Box::pin(future::ready(Ok(self.data.borrow().runs.get(&id).cloned())))
    }

    fn events(
        &self,
        run_id: Uuid,
        from_seq: u64,
        limit: usize,
    ) -> LocalBoxFuture<'_, Result<Vec<EventRecord>, StoreError>> {
        let data = self.data.borrow();
        let events = data.events.range((run_id, from_seq)..=(run_id, u64::MAX)).take(limit).map(|(_, e)| e.clone());
        Box::pin(future::ready(Ok(events.collect())))
    }

    fn runs<'a>(&'a self, query: &'a RunQuery) -> LocalBoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        let data = self.data.borrow();
        let mut runs: Vec<RunRecord> = data
            .runs
            .values()
            .filter(|r| r.user.user_id == query.user_id)
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.graph.as_ref().is_none_or(|g| &r.graph == g))
            .filter(|r| query.before.is_none_or(|before| r.id < before))
            .cloned()
            .collect();
        // UUIDv7 ids sort by creation time.
        runs.sort_by_key(|r| std::cmp::Reverse(r.id));
        runs.truncate(query.limit);
        Box::pin(future::ready(Ok(runs)))
    }

    fn run_by_key<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        let data = self.data.borrow();
        let found = data
            .runs
            .values()
            .find(|r| r.user.user_id == user_id && r.idempotency_key.as_deref() == Some(key))
            .cloned();
        Box::pin(future::ready(Ok(found)))
    }

    fn unfinished_runs(&self) -> LocalBoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        let data = self.data.borrow();
        let mut runs: Vec<RunRecord> = data.runs.values().filter(|r| r.status.is_unfinished()).cloned().collect();
        runs.sort_by_key(|r| r.id);
        Box::pin(future::ready(Ok(runs)))
    }

    fn prune_checkpoints(&self, finished_before: SystemTime) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        let mut data = self.data.borrow_mut();
        let expired: HashSet<Uuid> = data
            .runs
            .values()
            .filter(|r| r.status.is_terminal() && r.finished_at.is_some_and(|at| at < finished_before))
            .map(|r| r.id)
            .collect();
        let before = data.checkpoints.len();
        data.checkpoints.retain(|(run, _), _| !expired.contains(run));
        Box::pin(future::ready(Ok((before - data.checkpoints.len()) as u64)))
    }

    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<RunStorage, StoreError>> {
        let data = self.data.borrow();
        let mut storage = RunStorage::default();
        for (_, event) in data.events.range((run_id, 0)..=(run_id, u64::MAX)) {
            storage.events += 1;
            storage.event_bytes += serde_json::to_vec(&event.event).map_or(0, |v| v.len() as u64);
        }
        for (_, checkpoint) in data.checkpoints.range((run_id, 0)..=(run_id, u64::MAX)) {
            storage.checkpoints += 1;
            storage.checkpoint_bytes += serde_json::to_vec(&checkpoint.checkpoint).map_or(0, |v| v.len() as u64);
        }
        Box::pin(future::ready(Ok(storage)))
    }

    fn last_seq(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        let data = self.data.borrow();
        let last = data.events.range((run_id, 0)..=(run_id, u64::MAX)).next_back().map_or(0, |((_, seq), _)| *seq);
        Box::pin(future::ready(Ok(last)))
    }

    fn latest_checkpoint(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<Option<CheckpointRecord>, StoreError>> {
        let data = self.data.borrow();
        let latest = data.checkpoints.range((run_id, 0)..=(run_id, u64::MAX)).next_back().map(|(_, c)| c.clone());
        Box::pin(future::ready(Ok(latest)))
    }
}
