//! Live subscribers of runs' events: who gets which committed event and progress tick,
//! in order, each once. Pure bookkeeping over channels (no actix).
//!
//! A subscriber sees a run's stored events in `seq` order, each once, and only once they
//! are committed. Progress ticks are not stored: a tick is delivered only after the events
//! emitted before it (it waits, latest winning, until they are committed), and never with
//! a percent below what the subscriber has seen, so progress never goes backwards.

use std::collections::HashMap;

use graphloop_core::RunEvent;
use tokio::sync::mpsc::{self, error::TrySendError};
use uuid::Uuid;

use super::Streamed;
use crate::store::EventRecord;

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Streamed>,
    /// The next event it should get.
    next_seq: u64,
    /// Committed events that arrived while its stored ones were being replayed.
    replay: Option<Vec<EventRecord>>,
    /// A tick waiting for the events before it: (the last seq emitted before it, tick).
    tick: Option<(u64, RunEvent)>,
    /// The highest percent it has been sent.
    percent: f64,
}

/// Whether a subscriber stays after a delivery.
enum Keep {
    Yes,
    No,
}

impl Subscriber {
    fn event(&mut self, record: &EventRecord) -> Keep {
        if record.seq < self.next_seq {
            return Keep::Yes;
        }
        // One that cannot keep up is dropped; it subscribes again from its last seq.
        if self.tx.try_send(Streamed::Event(record.clone())).is_err() {
            return Keep::No;
        }
        self.next_seq = record.seq + 1;
        self.percent = self.percent.max(record.event.percent);
        if record.event.kind.is_terminal() {
            return Keep::No;
        }
        self.release_tick(record.run_id)
    }

    fn tick(&mut self, run_id: Uuid, after_seq: u64, event: RunEvent) -> Keep {
        if self.replay.is_some() || self.next_seq <= after_seq {
            self.tick = Some((after_seq, event));
            return Keep::Yes;
        }
        self.send_tick(run_id, event)
    }

    fn release_tick(&mut self, run_id: Uuid) -> Keep {
        match self.tick.take() {
            Some((after, event)) if after < self.next_seq => self.send_tick(run_id, event),
            waiting => {
                self.tick = waiting;
                Keep::Yes
            }
        }
    }

    fn send_tick(&mut self, run_id: Uuid, event: RunEvent) -> Keep {
        if event.percent < self.percent {
            return Keep::Yes;
        }
        let percent = event.percent;
        match self.tx.try_send(Streamed::Progress { run_id, event }) {
            Ok(()) => {
                self.percent = percent;
                Keep::Yes
            }
            // Ticks may be dropped under pressure; only a closed stream ends it.
            Err(TrySendError::Full(_)) => Keep::Yes,
            Err(TrySendError::Closed(_)) => Keep::No,
        }
    }
}

/// Every live subscriber, by run.
pub(crate) struct Subscribers {
    runs: HashMap<Uuid, Vec<Subscriber>>,
    next_id: u64,
    capacity: usize,
}

/// A new subscription: its id, a sender for its replay, and the receiving end.
pub(crate) struct Subscription {
    pub(crate) id: u64,
    pub(crate) replay_tx: mpsc::Sender<Streamed>,
    pub(crate) rx: mpsc::Receiver<Streamed>,
}

impl Subscribers {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { runs: HashMap::new(), next_id: 0, capacity: capacity.max(1) }
    }

    /// Subscribes to `run_id` from `from_seq`. Until [`replayed`](Self::replayed), the
    /// caller sends the stored events through `replay_tx` and live ones are held back.
    pub(crate) fn add(&mut self, run_id: Uuid, from_seq: u64) -> Subscription {
        let (tx, rx) = mpsc::channel(self.capacity);
        let id = self.next_id;
        self.next_id += 1;
        self.runs.entry(run_id).or_default().push(Subscriber {
            id,
            tx: tx.clone(),
            next_seq: from_seq,
            replay: Some(Vec::new()),
            tick: None,
            percent: 0.0,
        });
        Subscription { id, replay_tx: tx, rx }
    }

    /// The stored events were sent, up to `next_seq` (exclusive), the last at `percent`:
    /// the held-back live ones follow; the stream ends if `ended`.
    pub(crate) fn replayed(&mut self, run_id: Uuid, id: u64, next_seq: u64, percent: f64, ended: bool) {
        self.update(run_id, id, |sub| {
            sub.next_seq = sub.next_seq.max(next_seq);
            sub.percent = sub.percent.max(percent);
            let mut held = sub.replay.take().unwrap_or_default();
            held.sort_by_key(|e| e.seq);
            for event in &held {
                if let Keep::No = sub.event(event) {
                    return Keep::No;
                }
            }
            if ended {
                return Keep::No;
            }
            sub.release_tick(run_id)
        });
    }

    /// Ends a subscription (its replay failed, or reached the run's end).
    pub(crate) fn remove(&mut self, run_id: Uuid, id: u64) {
        self.update(run_id, id, |_| Keep::No);
    }

    /// A committed event of a run.
    pub(crate) fn committed(&mut self, record: &EventRecord) {
        self.each(record.run_id, |sub| match &mut sub.replay {
            Some(held) => {
                held.push(record.clone());
                Keep::Yes
            }
            None => sub.event(record),
        });
    }

    /// A progress tick of a run, emitted after its event `after_seq`.
    pub(crate) fn tick(&mut self, run_id: Uuid, after_seq: u64, event: &RunEvent) {
        self.each(run_id, |sub| sub.tick(run_id, after_seq, event.clone()));
    }

    /// Forgets subscribers whose receiver is gone.
    pub(crate) fn prune_closed(&mut self) {
        self.runs.retain(|_, subs| {
            subs.retain(|sub| !sub.tx.is_closed());
            !subs.is_empty()
        });
    }

    /// Live subscribers.
    pub(crate) fn count(&self) -> usize {
        self.runs.values().map(Vec::len).sum()
    }

    fn each(&mut self, run_id: Uuid, mut deliver: impl FnMut(&mut Subscriber) -> Keep) {
        let Some(subs) = self.runs.get_mut(&run_id) else {
            return;
        };
        subs.retain_mut(|sub| matches!(deliver(sub), Keep::Yes));
        if subs.is_empty() {
            self.runs.remove(&run_id);
        }
    }

    fn update(&mut self, run_id: Uuid, id: u64, deliver: impl FnOnce(&mut Subscriber) -> Keep) {
        let Some(subs) = self.runs.get_mut(&run_id) else {
            return;
        };
        let Some(position) = subs.iter().position(|s| s.id == id) else {
            return;
        };
        if let Keep::No = deliver(&mut subs[position]) {
            subs.remove(position);
            if subs.is_empty() {
                self.runs.remove(&run_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use graphloop_core::EventKind;

    use super::*;

    fn event(run_id: Uuid, seq: u64, percent: f64, kind: EventKind) -> EventRecord {
        EventRecord {
            run_id,
            seq,
            user_id: "alice".into(),
            at: SystemTime::now(),
            event: RunEvent { step: 1, percent, kind },
        }
    }

    fn step(run_id: Uuid, seq: u64, percent: f64) -> EventRecord {
        event(run_id, seq, percent, EventKind::StepStarted { tasks: Vec::new() })
    }

    fn tick(percent: f64) -> RunEvent {
        RunEvent {
            step: 1,
            percent,
            kind: EventKind::NodeProgress { task: "n".into(), fraction: 0.5, message: String::new() },
        }
    }

    fn drain(rx: &mut mpsc::Receiver<Streamed>) -> Vec<(Option<u64>, f64)> {
        let mut seen = Vec::new();
        while let Ok(item) = rx.try_recv() {
            seen.push(match item {
                Streamed::Event(e) => (Some(e.seq), e.event.percent),
                Streamed::Progress { event, .. } => (None, event.percent),
            });
        }
        seen
    }

    #[test]
    fn a_tick_waits_for_the_events_emitted_before_it() {
        let run = Uuid::now_v7();
        let mut subs = Subscribers::new(64);
        let mut sub = subs.add(run, 1);
        subs.replayed(run, sub.id, 1, 0.0, false);
        // The actor emitted events 1 and 2 (uncommitted), then a tick at 40 %.
        subs.tick(run, 2, &tick(40.0));
        assert_eq!(drain(&mut sub.rx), vec![], "a tick must not overtake uncommitted events");
        subs.committed(&step(run, 1, 10.0));
        assert_eq!(drain(&mut sub.rx), vec![(Some(1), 10.0)]);
        subs.committed(&step(run, 2, 30.0));
        assert_eq!(drain(&mut sub.rx), vec![(Some(2), 30.0), (None, 40.0)]);
    }

    #[test]
    fn progress_seen_by_a_subscriber_never_decreases() {
        let run = Uuid::now_v7();
        let mut subs = Subscribers::new(64);
        let mut sub = subs.add(run, 1);
        subs.replayed(run, sub.id, 1, 0.0, false);
        subs.committed(&step(run, 1, 20.0));
        subs.tick(run, 1, &tick(50.0));
        subs.tick(run, 1, &tick(45.0));
        let seen = drain(&mut sub.rx);
        assert_eq!(seen, vec![(Some(1), 20.0), (None, 50.0)]);
        assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn live_events_during_a_replay_follow_it_once_in_order() {
        let run = Uuid::now_v7();
        let mut subs = Subscribers::new(64);
        let mut sub = subs.add(run, 1);
        // Committed while the stored 1..=2 are being replayed: 2 (again) and 3.
        subs.committed(&step(run, 2, 20.0));
        subs.committed(&step(run, 3, 30.0));
        for e in [step(run, 1, 10.0), step(run, 2, 20.0)] {
            sub.replay_tx.try_send(Streamed::Event(e)).expect("room");
        }
        subs.replayed(run, sub.id, 3, 20.0, false);
        let seqs: Vec<_> = drain(&mut sub.rx).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, vec![Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn the_final_event_ends_the_stream_and_frees_the_subscriber() {
        let run = Uuid::now_v7();
        let mut subs = Subscribers::new(64);
        let mut sub = subs.add(run, 1);
        subs.replayed(run, sub.id, 1, 0.0, false);
        subs.committed(&event(run, 1, 100.0, EventKind::RunCompleted));
        assert_eq!(drain(&mut sub.rx), vec![(Some(1), 100.0)]);
        assert_eq!(subs.count(), 0);
        drop(sub.replay_tx);
        assert!(sub.rx.try_recv().is_err(), "the stream is over");
    }

    #[test]
    fn a_subscriber_whose_receiver_is_gone_is_forgotten() {
        let run = Uuid::now_v7();
        let mut subs = Subscribers::new(64);
        let sub = subs.add(run, 1);
        subs.replayed(run, sub.id, 1, 0.0, false);
        drop(sub);
        subs.prune_closed();
        assert_eq!(subs.count(), 0);
    }
}
