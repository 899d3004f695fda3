//! The analyser's own threads: a small, fixed, process-wide pool that runs its CPU-bound
//! work (every regex search of the pattern tables) off the runs' event loops.
//!
//! Why a pool of its own rather than running the work where the node runs: each `Regex`
//! keeps a pool of search caches (lazy-DFA tables of up to a few MiB each) that grows to
//! the number of threads that ever searched with it at once and never shrinks. Every run
//! has its own arbiter thread, so with 300 runs in flight each of the ~165 patterns grew
//! toward hundreds of caches and the process's memory crept up round after round (issue
//! 11: +26 % over ten rounds of 300 runs, ~97 % of it regex caches). Only the threads here
//! ever search, so each pattern holds at most one cache per pool thread whatever the
//! number of runs. It also keeps the runs' loops responsive: CPU-heavy node work does not
//! belong on them (DESIGN, "Lessons already measured").
//!
//! The pool has [`std::thread::available_parallelism`] threads (at least one), started on
//! first use. Work is a closure; [`run`] queues it and returns a future that the node
//! awaits (a `tokio::sync::oneshot`), so no pool thread is held while a node waits for
//! anything else (a model's latency, a retry's backoff). A panic in the work is caught on
//! the pool thread and comes back as [`Panicked`]; the thread lives on. Work whose
//! future was dropped before a thread picked it up (a node timed out, a run was cancelled)
//! is skipped; work already started runs to its end, as a search cannot be interrupted.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Work queued for the pool.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Work that panicked on a pool thread (the message is the panic's), or that the pool
/// dropped without running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Panicked(pub(crate) String);

/// The process-wide pool, started on first use.
static POOL: LazyLock<Pool> = LazyLock::new(Pool::start);

struct Pool {
    /// Where work is queued; `None` if not a single thread could be started.
    queue: Option<Mutex<Sender<Job>>>,
}

impl Pool {
    fn start() -> Self {
        let size = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        for i in 0..size {
            let receiver = Arc::clone(&receiver);
            let spawned =
                std::thread::Builder::new().name(format!("graphloop-analysis-{i}")).spawn(move || work(&receiver));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Self { queue: (started > 0).then(|| Mutex::new(sender)) }
    }
}

/// A pool thread: takes the next job and runs it, until the queue is gone.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while running one; jobs
        // catch their own panics, so it is never poisoned (tolerated anyway).
        let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(mpsc::RecvError) => return,
        }
    }
}

/// Runs `work` on the analyser's pool and resolves to its result, or to [`Panicked`] if
/// it panicked.
///
/// Should no pool thread be available (the process could not start one), `work` runs on
/// the caller's thread instead: slower for the caller's loop, but the answer is the same.
pub(crate) async fn run<T, F>(work: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        // The node stopped waiting (timeout, cancellation): nobody wants the answer.
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(catch(work));
    });
    let queued = match &POOL.queue {
        Some(queue) => queue.lock().unwrap_or_else(PoisonError::into_inner).send(job).map_err(|e| e.0),
        None => Err(job),
    };
    if let Err(job) = queued {
        job();
    }
    rx.await.unwrap_or_else(|_| Err(Panicked("the analysis pool dropped the work".to_owned())))
}

fn catch<T>(work: impl FnOnce() -> T) -> Result<T, Panicked> {
    // The work owns everything it touches, and a panic's partial state is dropped with it,
    // never seen again: asserting unwind safety is sound.
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .map_err(|payload| Panicked(graphloop_core::panic_message(payload.as_ref())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        rt.block_on(future)
    }

    #[test]
    fn work_runs_on_the_pool_and_its_answer_comes_back() {
        let caller = std::thread::current().id();
        let (answer, thread) = block_on(run(|| (6 * 7, std::thread::current().id()))).expect("no panic");
        assert_eq!(answer, 42);
        assert_ne!(thread, caller);
    }

    #[test]
    fn a_panic_is_an_error_and_the_pool_lives_on() {
        let size = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        for _ in 0..size * 2 {
            let err = block_on(run(|| -> u32 { panic!("clause 7 is out of bounds") })).expect_err("it panicked");
            assert_eq!(err.0, "clause 7 is out of bounds");
        }
        assert_eq!(block_on(run(|| 1)), Ok(1));
    }

    #[test]
    fn many_callers_share_at_most_the_pool_size_of_threads() {
        let size = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let threads: Vec<_> = (0..64)
            .map(|_| std::thread::spawn(|| block_on(run(|| std::thread::current().id())).expect("no panic")))
            .collect();
        let used: BTreeSet<String> =
            threads.into_iter().map(|t| format!("{:?}", t.join().expect("caller thread"))).collect();
        assert!(used.len() <= size, "{} threads used, pool of {size}", used.len());
    }
}
