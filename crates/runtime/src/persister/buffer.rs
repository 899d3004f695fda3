//! The persister's write buffer: commit units, group commit, waiters and the overlay of
//! what is accepted but not yet written. Pure bookkeeping, no actix and no I/O, so its
//! invariants can be tested on their own (see the property test below):
//!
//! - a unit is written whole, in one transaction, never split across two;
//! - units are written in the order they were accepted, so a run's rows never overtake
//!   each other;
//! - a waiter is answered only once everything accepted before it is written (or, for a
//!   run whose data the store refused for good, once that run's failure is written);
//! - a unit the store refuses for good fails only its own run: the batch is written in
//!   halves until the unit is found, the run's later units are dropped, and a unit that
//!   records the run's failure takes their place; every other unit is written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use graphloop_core::{EventKind, RunError, RunEvent};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::store::{Batch, CheckpointRecord, CommitUnit, EventRecord, RunStatus, RunUpdate, StoreError};

/// Why a unit is not accepted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// A newer actor of the run writes now (the watchdog replaced this one).
    Superseded,
    /// The store refused the run's data for good; the run has failed.
    Refused(StoreError),
}

/// Answered once what it waits for is written: `Err` if its run's data was refused.
pub(crate) type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// What the buffer knows of a run between its units: its last event, for numbering an
/// end the run's actor did not write itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Track {
    pub(crate) last_seq: u64,
    pub(crate) last_percent: f64,
    pub(crate) user_id: String,
}

/// What became of a chunk the store refused for good.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The chunk held several units: it is now two chunks, to write apart.
    Split,
    /// The unit refused was a new run's row: that start fails; nothing else changes.
    Insert(CommitUnit),
    /// A run's unit was refused: the run fails. `dropped` are its later units, never to
    /// be written; a unit recording the failure is queued in their place.
    Run { unit: CommitUnit, dropped: Vec<CommitUnit> },
    /// The unit recording a refused run's failure was refused too: nothing more can be
    /// written for that run.
    GaveUp(CommitUnit),
}

/// The batch being written, as chunks written one after another (one, unless a refusal
/// split it), and the tickets it covers.
#[derive(Debug)]
struct Flight {
    chunks: VecDeque<Rc<Batch>>,
    upto: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Buffer {
    batch_size: usize,
    capacity: usize,
    keep_last: bool,
    pending: Vec<CommitUnit>,
    pending_rows: usize,
    flight: Option<Flight>,
    flight_rows: usize,
    /// Every accepted unit takes a ticket; `durable` is the highest whose unit, and all
    /// before it, is written.
    accepted: u64,
    durable: u64,
    waiters: BTreeMap<u64, Vec<(Option<Uuid>, Waiter)>>,
    room: VecDeque<oneshot::Sender<()>>,
    /// Runs whose data the store refused for good, with its reason. Kept: a refused run's
    /// actor may still send rows, and they must never land after its failure.
    refused: HashMap<Uuid, StoreError>,
    /// The lowest actor incarnation allowed to write, per fenced run.
    fences: HashMap<Uuid, u64>,
    /// The overlay: each run's latest accepted row change and checkpoint not yet written.
    updates: HashMap<Uuid, RunUpdate>,
    checkpoints: HashMap<Uuid, CheckpointRecord>,
    /// Each run's last accepted event, while the run is live.
    tracks: HashMap<Uuid, Track>,
}

impl Buffer {
    pub(crate) fn new(batch_size: usize, capacity: usize, keep_last: bool) -> Self {
        Self {
            batch_size: batch_size.max(1),
            capacity: capacity.max(1),
            keep_last,
            pending: Vec::new(),
            pending_rows: 0,
            flight: None,
            flight_rows: 0,
            accepted: 0,
            durable: 0,
            waiters: BTreeMap::new(),
            room: VecDeque::new(),
            refused: HashMap::new(),
            fences: HashMap::new(),
            updates: HashMap::new(),
            checkpoints: HashMap::new(),
            tracks: HashMap::new(),
        }
    }

    /// Rows accepted and not yet written.
    pub(crate) fn buffered(&self) -> usize {
        self.pending_rows + self.flight_rows
    }

    /// Entries kept per run (overlay, tracks, fences, refusals): back to the number of
    /// refused runs once every run has ended or parked.
    pub(crate) fn per_run_entries(&self) -> usize {
        self.updates.len() + self.checkpoints.len() + self.tracks.len() + self.fences.len() + self.refused.len()
    }

    /// Runs whose data the store refused for good.
    pub(crate) fn refused_runs(&self) -> usize {
        self.refused.len()
    }

    /// From now on only the run's actor `incarnation` (or a later one) may write.
    pub(crate) fn fence(&mut self, run_id: Uuid, incarnation: u64) {
        let allowed = self.fences.entry(run_id).or_insert(0);
        *allowed = (*allowed).max(incarnation);
    }

    /// Whether actor `incarnation` of `run_id` may write.
    pub(crate) fn admits(&self, run_id: Uuid, incarnation: u64) -> Result<(), Refusal> {
        if let Some(error) = self.refused.get(&run_id) {
            return Err(Refusal::Refused(error.clone()));
        }
        if self.fences.get(&run_id).is_some_and(|&allowed| incarnation < allowed) {
            return Err(Refusal::Superseded);
        }
        Ok(())
    }

    /// Accepts a unit (if it holds anything). The caller checked [`admits`](Self::admits).
    pub(crate) fn accept(&mut self, mut unit: CommitUnit) {
        if unit.is_empty() {
            return;
        }
        let run_id = unit.run_id;
        if let Some(update) = &unit.update {
            if update.status.is_terminal() && self.keep_last {
                unit.prune_to_last = true;
            }
            // A run's final status always wins over a later non-final one.
            let keeps_final =
                self.updates.get(&run_id).is_some_and(|p| p.status.is_terminal() && !update.status.is_terminal());
            if !keeps_final {
                self.updates.insert(run_id, update.clone());
            }
        }
        if let Some(checkpoint) = &unit.checkpoint {
            self.checkpoints.insert(run_id, checkpoint.clone());
        }
        if let Some(last) = unit.events.last() {
            let track = self.tracks.entry(run_id).or_insert_with(|| Track {
                last_seq: 0,
                last_percent: 0.0,
                user_id: last.user_id.clone(),
            });
            if last.seq > track.last_seq {
                track.last_seq = last.seq;
                track.last_percent = last.event.percent;
            }
        }
        self.accepted += 1;
        self.pending_rows += unit.len();
        self.pending.push(unit);
    }

    /// The run's last accepted event, if the buffer tracks the run.
    pub(crate) fn track(&self, run_id: Uuid) -> Option<&Track> {
        self.tracks.get(&run_id)
    }

    /// Starts tracking a run whose last event was read from the store.
    pub(crate) fn track_from_store(&mut self, run_id: Uuid, track: Track) {
        self.tracks.entry(run_id).or_insert(track);
    }

    /// The run's latest row change not yet written.
    pub(crate) fn unwritten_update(&self, run_id: Uuid) -> Option<&RunUpdate> {
        self.updates.get(&run_id)
    }

    /// The run's latest checkpoint not yet written.
    pub(crate) fn unwritten_checkpoint(&self, run_id: Uuid) -> Option<&CheckpointRecord> {
        self.checkpoints.get(&run_id)
    }

    /// Whether a batch should be written now: enough rows wait, or someone waits.
    pub(crate) fn should_flush(&self) -> bool {
        self.pending_rows >= self.batch_size || self.waiters.keys().next().is_some_and(|&t| t > self.durable)
    }

    /// Whether new commits must wait for room.
    pub(crate) fn full(&self) -> bool {
        self.buffered() >= self.capacity
    }

    /// Answers `waiter` once everything accepted so far is written (at once if it is).
    pub(crate) fn wait_durable(&mut self, run_id: Option<Uuid>, waiter: Waiter) {
        if self.durable >= self.accepted && self.flight.is_none() {
            let _ = waiter.send(self.outcome(run_id));
        } else {
            self.waiters.entry(self.accepted).or_default().push((run_id, waiter));
        }
    }

    /// Answers `waiter` once the buffer has room.
    pub(crate) fn wait_room(&mut self, waiter: oneshot::Sender<()>) {
        if self.full() {
            self.room.push_back(waiter);
        } else {
            let _ = waiter.send(());
        }
    }

    /// Runs waiting for room (whose caller still waits).
    pub(crate) fn waiting_for_room(&self) -> usize {
        self.room.iter().filter(|w| !w.is_closed()).count()
    }

    fn outcome(&self, run_id: Option<Uuid>) -> Result<(), StoreError> {
        match run_id.and_then(|id| self.refused.get(&id)) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Takes every pending unit as the next batch, unless a write is in flight (then
    /// they gather for the one after). Returns the chunk to write.
    pub(crate) fn start_flight(&mut self) -> Option<Rc<Batch>> {
        if self.flight.is_some() || self.pending.is_empty() {
            return None;
        }
        let batch = Rc::new(Batch::of(std::mem::take(&mut self.pending)));
        self.flight_rows = std::mem::take(&mut self.pending_rows);
        self.flight = Some(Flight { chunks: VecDeque::from([Rc::clone(&batch)]), upto: self.accepted });
        Some(batch)
    }

    /// The chunk to write (again) now.
    pub(crate) fn current_chunk(&self) -> Option<Rc<Batch>> {
        self.flight.as_ref().and_then(|f| f.chunks.front().cloned())
    }

    /// The current chunk is written. Returns it, and whether the flight is over (then
    /// every waiter it covers has been answered).
    pub(crate) fn chunk_written(&mut self) -> Option<(Rc<Batch>, bool)> {
        let flight = self.flight.as_mut()?;
        let chunk = flight.chunks.pop_front()?;
        let done = flight.chunks.is_empty();
        self.flight_rows = self.flight_rows.saturating_sub(chunk.len());
        for unit in &chunk.units {
            self.forget_written(unit);
        }
        if done {
            self.finish_flight();
        }
        Some((chunk, done))
    }

    fn forget_written(&mut self, unit: &CommitUnit) {
        let run_id = unit.run_id;
        if let Some(update) = &unit.update {
            if self.updates.get(&run_id) == Some(update) {
                self.updates.remove(&run_id);
            }
            // The run ended or parked: its actor is gone, nothing of it is live here.
            if matches!(
                update.status,
                RunStatus::Completed
                    | RunStatus::Failed
                    | RunStatus::Cancelled
                    | RunStatus::Waiting
                    | RunStatus::Interrupted
            ) {
                self.tracks.remove(&run_id);
                self.fences.remove(&run_id);
            }
        }
        if let Some(checkpoint) = &unit.checkpoint {
            if self.checkpoints.get(&run_id) == Some(checkpoint) {
                self.checkpoints.remove(&run_id);
            }
        }
    }

    fn finish_flight(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        self.flight_rows = 0;
        // Units of a refused run may have been dropped from the pending ones: with none
        // left, everything accepted is written or dropped.
        self.durable = if self.pending.is_empty() { self.accepted } else { flight.upto };
        let later = self.waiters.split_off(&(self.durable + 1));
        for (run_id, waiter) in std::mem::replace(&mut self.waiters, later).into_values().flatten() {
            let _ = waiter.send(self.outcome(run_id));
        }
        while !self.full() {
            match self.room.pop_front() {
                Some(waiter) => {
                    let _ = waiter.send(());
                }
                None => break,
            }
        }
    }

    /// The store refused the current chunk for good (`error`): see [`Refused`].
    pub(crate) fn chunk_refused(&mut self, error: &StoreError) -> Option<Refused> {
        let flight = self.flight.as_mut()?;
        let chunk = flight.chunks.pop_front()?;
        if chunk.units.len() > 1 {
            let mut units = Rc::try_unwrap(chunk).unwrap_or_else(|shared| (*shared).clone()).units;
            let second = units.split_off(units.len() / 2);
            flight.chunks.push_front(Rc::new(Batch::of(second)));
            flight.chunks.push_front(Rc::new(Batch::of(units)));
            return Some(Refused::Split);
        }
        let unit = Rc::try_unwrap(chunk).unwrap_or_else(|shared| (*shared).clone()).units.pop()?;
        self.flight_rows = self.flight_rows.saturating_sub(unit.len());
        let run_id = unit.run_id;
        let first_refusal = !self.refused.contains_key(&run_id);
        let refused = if unit.run.is_some() {
            Refused::Insert(unit)
        } else if !first_refusal {
            Refused::GaveUp(unit)
        } else {
            self.refused.insert(run_id, error.clone());
            let dropped = self.drop_later_units(run_id);
            let failure = self.failure_unit(&unit, &dropped, error);
            self.flight_rows += failure.len();
            if let Some(flight) = self.flight.as_mut() {
                flight.chunks.push_back(Rc::new(Batch::of(vec![failure])));
            }
            Refused::Run { unit, dropped }
        };
        if self.flight.as_ref().is_some_and(|f| f.chunks.is_empty()) {
            self.finish_flight();
        }
        Some(refused)
    }

    /// Whether the flight is over (after [`chunk_refused`](Self::chunk_refused)).
    pub(crate) fn flight_done(&self) -> bool {
        self.flight.is_none()
    }

    /// Removes a refused run's units from the flight and the pending ones.
    fn drop_later_units(&mut self, run_id: Uuid) -> Vec<CommitUnit> {
        let mut dropped = Vec::new();
        if let Some(flight) = self.flight.as_mut() {
            for chunk in &mut flight.chunks {
                if chunk.units.iter().any(|u| u.run_id == run_id) {
                    let batch = Rc::make_mut(chunk);
                    let (gone, kept): (Vec<_>, Vec<_>) = batch.units.drain(..).partition(|u| u.run_id == run_id);
                    batch.units = kept;
                    dropped.extend(gone);
                }
            }
            flight.chunks.retain(|chunk| !chunk.units.is_empty());
        }
        let flight_dropped: usize = dropped.iter().map(CommitUnit::len).sum();
        self.flight_rows = self.flight_rows.saturating_sub(flight_dropped);
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|u| u.run_id == run_id);
        self.pending = kept;
        self.pending_rows = self.pending.iter().map(CommitUnit::len).sum();
        dropped.extend(gone);
        self.updates.remove(&run_id);
        self.checkpoints.remove(&run_id);
        dropped
    }

    /// The unit that records a refused run's failure: its final event, numbered where the
    /// refused events began (none of them, nor any later, is stored), and its row.
    fn failure_unit(&mut self, unit: &CommitUnit, dropped: &[CommitUnit], error: &StoreError) -> CommitUnit {
        let run_id = unit.run_id;
        let first_unstored = std::iter::once(unit).chain(dropped).flat_map(|u| u.events.first()).map(|e| e.seq).min();
        let track = self.tracks.remove(&run_id);
        let seq = first_unstored.unwrap_or_else(|| track.as_ref().map_or(1, |t| t.last_seq + 1));
        let user_id = std::iter::once(unit)
            .chain(dropped)
            .flat_map(|u| u.events.first())
            .map(|e| e.user_id.clone())
            .next()
            .or_else(|| track.as_ref().map(|t| t.user_id.clone()))
            .unwrap_or_default();
        let base = unit.update.clone();
        let step = base.as_ref().map_or(0, |u| u.step);
        let percent = track.as_ref().map_or(0.0, |t| t.last_percent).max(base.as_ref().map_or(0.0, |u| u.percent));
        let now = crate::store::stored_now();
        let error = RunError::Aborted { reason: format!("the store refused the run's data for good: {error}") };
        let event = EventRecord {
            run_id,
            seq,
            user_id,
            at: now,
            event: RunEvent { step, percent, kind: EventKind::RunFailed { error: error.clone() } },
        };
        let update = RunUpdate {
            id: run_id,
            status: RunStatus::Failed,
            output: None,
            error: serde_json::to_value(&error).ok(),
            step,
            percent,
            updated_at: now,
            started_at: base.as_ref().and_then(|u| u.started_at),
            finished_at: Some(now),
        };
        CommitUnit {
            run_id,
            run: None,
            events: vec![event],
            update: Some(update),
            checkpoint: None,
            prune_to_last: self.keep_last,
        }
    }
}

#[cfg(test)]
mod tests;
