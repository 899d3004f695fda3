//! The buffer's invariants, on examples and on random interleavings of accepted units,
//! waiters, successful, failing and refused writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use graphloop_core::{Checkpoint, EventKind, RunEvent};
use proptest::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Buffer, Refused};
use crate::store::{CheckpointRecord, CommitUnit, EventRecord, RunStatus, RunUpdate, StoreError};

/// Events of a unit the simulated store refuses for good carry this step.
const POISON: u64 = 999;

fn event(run_id: Uuid, seq: u64, step: u64) -> EventRecord {
    EventRecord {
        run_id,
        seq,
        user_id: "alice".into(),
        at: SystemTime::UNIX_EPOCH,
        event: RunEvent { step, percent: seq as f64, kind: EventKind::StepStarted { tasks: Vec::new() } },
    }
}

fn update(run_id: Uuid, step: u64, status: RunStatus) -> RunUpdate {
    RunUpdate {
        id: run_id,
        status,
        output: None,
        error: None,
        step,
        percent: 0.0,
        updated_at: SystemTime::UNIX_EPOCH,
        started_at: None,
        finished_at: None,
    }
}

/// A step's unit: `events` events from `first_seq`, the row change and a checkpoint.
fn step_unit(run_id: Uuid, first_seq: u64, events: u64, step: u64, status: RunStatus) -> CommitUnit {
    let checkpoint = Checkpoint {
        step,
        state: serde_json::Map::new(),
        next: Vec::new(),
        joins: Default::default(),
        percent: 0.0,
        interrupt: None,
    };
    let checkpoint = CheckpointRecord { run_id, checkpoint, at: SystemTime::UNIX_EPOCH };
    CommitUnit {
        events: (first_seq..first_seq + events).map(|seq| event(run_id, seq, step)).collect(),
        update: Some(update(run_id, step, status)),
        checkpoint: Some(checkpoint),
        ..CommitUnit::new(run_id)
    }
}

fn is_poison(unit: &CommitUnit) -> bool {
    unit.events.iter().any(|e| e.event.step == POISON)
}

#[test]
fn a_unit_is_never_split_whatever_the_batch_size() {
    let run = Uuid::now_v7();
    let mut buffer = Buffer::new(2, 1_000, false);
    buffer.accept(step_unit(run, 1, 5, 1, RunStatus::Running));
    assert!(buffer.should_flush(), "7 rows are past a batch size of 2");
    let batch = buffer.start_flight().unwrap();
    assert_eq!(batch.units.len(), 1);
    assert_eq!(batch.len(), 7, "the unit's events, row change and checkpoint travel together");
}

#[test]
fn a_refused_unit_fails_only_its_run_and_every_other_unit_is_written() {
    let (good, bad) = (Uuid::now_v7(), Uuid::now_v7());
    let mut buffer = Buffer::new(100, 1_000, false);
    buffer.accept(step_unit(good, 1, 2, 1, RunStatus::Running));
    buffer.accept(step_unit(bad, 1, 1, 1, RunStatus::Running));
    let mut poisoned = step_unit(bad, 2, 2, POISON, RunStatus::Running);
    poisoned.update = None;
    buffer.accept(poisoned);
    buffer.accept(step_unit(bad, 4, 1, 3, RunStatus::Running));
    buffer.accept(step_unit(good, 3, 2, 2, RunStatus::Completed));
    let (tx, mut rx) = oneshot::channel();
    buffer.wait_durable(Some(bad), tx);
    let refusal = StoreError::refused("value out of range");
    let mut stored: Vec<CommitUnit> = Vec::new();
    buffer.start_flight().unwrap();
    while let Some(chunk) = buffer.current_chunk() {
        if chunk.units.iter().any(is_poison) {
            match buffer.chunk_refused(&refusal).unwrap() {
                Refused::Split => {}
                Refused::Run { unit, dropped } => {
                    assert!(is_poison(&unit));
                    assert_eq!(dropped.len(), 1, "the bad run's later unit is dropped");
                }
                other => panic!("unexpected {other:?}"),
            }
        } else {
            stored.extend(chunk.units.iter().cloned());
            buffer.chunk_written();
        }
    }
    assert_eq!(rx.try_recv().unwrap(), Err(refusal.clone()), "the bad run's waiter learns why");
    let good_units = stored.iter().filter(|u| u.run_id == good).count();
    assert_eq!(good_units, 2, "every unit of the other run is written");
    let bad_seqs: Vec<u64> = stored.iter().filter(|u| u.run_id == bad).flat_map(|u| &u.events).map(|e| e.seq).collect();
    assert_eq!(bad_seqs, vec![1, 2], "the failure is numbered right after the last stored event");
    let failure = stored.iter().rfind(|u| u.run_id == bad).unwrap();
    assert_eq!(failure.update.as_ref().unwrap().status, RunStatus::Failed);
    assert!(matches!(failure.events[0].event.kind, EventKind::RunFailed { .. }));
    assert!(buffer.admits(bad, 0).is_err(), "later writes of the failed run are refused");
    assert!(buffer.admits(good, 0).is_ok());
}

#[test]
fn a_waiter_is_answered_only_once_everything_before_it_is_written() {
    let run = Uuid::now_v7();
    let mut buffer = Buffer::new(100, 1_000, false);
    buffer.accept(step_unit(run, 1, 1, 1, RunStatus::Running));
    buffer.start_flight().unwrap();
    buffer.accept(step_unit(run, 2, 1, 2, RunStatus::Running));
    let (tx, mut rx) = oneshot::channel();
    buffer.wait_durable(Some(run), tx);
    buffer.chunk_written();
    assert!(rx.try_recv().is_err(), "its own unit is not written yet");
    assert!(buffer.should_flush());
    buffer.start_flight().unwrap();
    buffer.chunk_written();
    assert_eq!(rx.try_recv().unwrap(), Ok(()));
}

#[test]
fn what_a_finished_run_kept_is_released() {
    let run = Uuid::now_v7();
    let mut buffer = Buffer::new(100, 1_000, true);
    buffer.fence(run, 1);
    buffer.accept(step_unit(run, 1, 2, 1, RunStatus::Running));
    buffer.accept(step_unit(run, 3, 1, 2, RunStatus::Completed));
    assert!(buffer.per_run_entries() > 0);
    buffer.start_flight().unwrap();
    buffer.chunk_written();
    assert_eq!(buffer.per_run_entries(), 0);
    assert_eq!(buffer.buffered(), 0);
}

/// One step of a random interleaving.
#[derive(Debug, Clone)]
enum Op {
    /// Run `run` commits a step of `events` events (poisoned: refused for good).
    Step { run: usize, events: u64, poison: bool },
    /// Run `run` ends.
    End { run: usize },
    /// Someone waits until everything so far is written (for `run`'s commit, or a flush).
    Wait { run: Option<usize> },
    /// The store answers the write in flight (starting one if none is).
    Write(Outcome),
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Outage,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..4u64, prop::bool::weighted(0.1))
            .prop_map(|(run, events, poison)| Op::Step { run, events, poison }),
        1 => (0..3usize).prop_map(|run| Op::End { run }),
        2 => prop::option::of(0..3usize).prop_map(|run| Op::Wait { run }),
        4 => prop_oneof![3 => Just(Outcome::Ok), 1 => Just(Outcome::Outage)].prop_map(Op::Write),
    ]
}

/// A waiter: its run, how many units were accepted before it, and its answer.
type SimWaiter = (Option<Uuid>, usize, oneshot::Receiver<Result<(), StoreError>>);

struct Sim {
    buffer: Buffer,
    runs: Vec<Uuid>,
    next_seq: Vec<u64>,
    ended: Vec<bool>,
    /// Units accepted, by (run, first seq), in order.
    accepted: Vec<(Uuid, u64)>,
    /// What the simulated store holds: units, as written.
    stored: Vec<CommitUnit>,
    /// Waiters, with the units accepted before them.
    waiters: Vec<SimWaiter>,
    refused_runs: HashSet<Uuid>,
}

impl Sim {
    fn new(batch_size: usize) -> Self {
        Self {
            buffer: Buffer::new(batch_size, 10_000, true),
            runs: (0..3).map(|_| Uuid::now_v7()).collect(),
            next_seq: vec![1; 3],
            ended: vec![false; 3],
            accepted: Vec::new(),
            stored: Vec::new(),
            waiters: Vec::new(),
            refused_runs: HashSet::new(),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Step { run, events, poison } => self.commit(run, events, poison, RunStatus::Running),
            Op::End { run } => self.commit(run, 1, false, RunStatus::Completed),
            Op::Wait { run } => {
                let (tx, rx) = oneshot::channel();
                let run = run.map(|r| self.runs[r]);
                self.buffer.wait_durable(run, tx);
                self.waiters.push((run, self.accepted.len(), rx));
            }
            Op::Write(outcome) => self.write(outcome),
        }
    }

    fn commit(&mut self, run: usize, events: u64, poison: bool, status: RunStatus) {
        let run_id = self.runs[run];
        if self.ended[run] || self.buffer.admits(run_id, 0).is_err() {
            return;
        }
        let step = if poison { POISON } else { self.next_seq[run] };
        let mut unit = step_unit(run_id, self.next_seq[run], events, step, status);
        if poison {
            unit.update = None;
        }
        self.accepted.push((run_id, self.next_seq[run]));
        self.next_seq[run] += events;
        self.ended[run] = status.is_terminal();
        self.buffer.accept(unit);
    }

    fn write(&mut self, outcome: Outcome) {
        if self.buffer.current_chunk().is_none() && self.buffer.start_flight().is_none() {
            return;
        }
        let chunk = self.buffer.current_chunk().expect("a flight has a chunk");
        match outcome {
            Outcome::Outage => {}
            Outcome::Ok if chunk.units.iter().any(is_poison) => {
                match self.buffer.chunk_refused(&StoreError::refused("poison")).expect("a chunk in flight") {
                    Refused::Run { unit, .. } => {
                        self.refused_runs.insert(unit.run_id);
                    }
                    Refused::Split => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            Outcome::Ok => {
                self.stored.extend(chunk.units.iter().cloned());
                self.buffer.chunk_written().expect("a chunk in flight");
            }
        }
    }

    fn check(&mut self) {
        // Units are written whole, each once, and a run's in the order accepted.
        let mut seen = HashSet::new();
        let mut per_run: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
        for unit in &self.stored {
            let first = unit.events.first().map_or(0, |e| e.seq);
            assert!(seen.insert((unit.run_id, first)), "unit ({}, {first}) written twice", unit.run_id);
            per_run.entry(unit.run_id).or_default().extend(unit.events.iter().map(|e| e.seq));
        }
        // A crash now leaves every run's stored events gapless from 1; nothing lands after
        // a refused run's failure.
        for (run_id, seqs) in &per_run {
            let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, &expected, "run {run_id}'s stored events have a gap or a repeat");
            if self.refused_runs.contains(run_id) {
                let last = self.stored.iter().rfind(|u| u.run_id == *run_id).expect("stored");
                let failed = last.update.as_ref().is_some_and(|u| u.status == RunStatus::Failed);
                let failure_pending = self.buffer.current_chunk().is_some();
                assert!(failed || failure_pending, "a refused run's last stored unit records its failure");
            }
        }
        // A waiter answered `Ok` finds everything accepted before it written, except the
        // units of runs whose data was refused.
        let stored_units: HashSet<(Uuid, u64)> =
            self.stored.iter().map(|u| (u.run_id, u.events.first().map_or(0, |e| e.seq))).collect();
        for (run, before, rx) in &mut self.waiters {
            match rx.try_recv() {
                Ok(Ok(())) => {
                    for unit in &self.accepted[..*before] {
                        assert!(
                            stored_units.contains(unit) || self.refused_runs.contains(&unit.0),
                            "a waiter was answered before unit {unit:?} was written"
                        );
                    }
                    assert!(run.is_none_or(|r| !self.refused_runs.contains(&r)));
                }
                Ok(Err(_)) => assert!(run.is_some_and(|r| self.refused_runs.contains(&r))),
                Err(_) => {}
            }
        }
    }

    /// The store comes back for good: everything accepted is written or refused.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.buffer.current_chunk().is_none() && self.buffer.start_flight().is_none() {
                break;
            }
            self.write(Outcome::Ok);
        }
        assert_eq!(self.buffer.buffered(), 0, "nothing is left behind once the store is back");
        for (_, _, rx) in &mut self.waiters {
            assert!(!matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)), "a waiter was never answered");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_the_invariants(ops in prop::collection::vec(op(), 1..80), batch_size in 1..12usize) {
        let mut sim = Sim::new(batch_size);
        for op in ops {
            sim.apply(op);
            sim.check();
        }
        sim.drain();
        sim.check();
    }
}
