//! A fixed set of threads for CPU-bound work driven from async code.
//!
//! `verify` checks each segment on a thread of its own. Handed to tokio's
//! blocking pool, each check ran on whichever of that pool's idle threads
//! (dozens: local store reads use it too) woke first, and the memory a
//! check freed stayed cached in that thread's allocator heap until the same
//! thread ran again: the verifier's resident memory grew with the number of
//! segments read (0.6 GB after 40 segments). A few long-lived threads reuse
//! their heaps segment after segment.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, Once};

type Job = Box<dyn FnOnce() + Send>;

/// Threads taking jobs from one queue. Dropped, it closes the queue: the
/// threads finish the jobs already queued and exit (nobody waits for them,
/// so an async caller is never blocked).
pub struct WorkerPool {
    queue: Sender<Job>,
}

/// A job that panicked: its message, when it had one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

thread_local! {
    /// Whether this thread is running a pool job, whose panic is caught
    /// and returned to the caller.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Makes panics inside pool jobs quiet: each is returned as [`Panicked`]
/// (for `verify`, a finding naming the segment), so the default hook's
/// message and backtrace on standard error would only repeat it, out of
/// order with the report. A panic anywhere else goes to the hook that was
/// there before.
fn quiet_job_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_JOB.with(Cell::get) {
                tracing::debug!("a pool job panicked: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

impl WorkerPool {
    /// `n` threads (at least one) named `{name}-{i}`.
    pub fn new(name: &str, n: usize) -> std::io::Result<WorkerPool> {
        quiet_job_panics();
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the pool was dropped
                        }
                    }
                })?;
        }
        Ok(WorkerPool { queue: tx })
    }

    /// Runs `f` on one of the pool's threads. A panic in `f` is caught and
    /// returned, and the thread goes on with the next job.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Panicked> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            IN_JOB.with(|j| j.set(true));
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(panic_message);
            IN_JOB.with(|j| j.set(false));
            let _ = tx.send(outcome);
        });
        if self.queue.send(job).is_err() {
            return Err(Panicked("the worker threads are gone".into()));
        }
        rx.await
            .map_err(|_| Panicked("the worker thread exited".into()))?
    }
}

fn panic_message(p: Box<dyn Any + Send>) -> Panicked {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Panicked(format!("panicked: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_and_panics_come_back_as_errors() {
        let pool = WorkerPool::new("test-pool", 2).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("test-pool-")));
        let err = pool
            .run(|| -> u32 { panic!("bad segment") })
            .await
            .unwrap_err();
        assert!(err.0.contains("bad segment"), "{err}");
        // Both threads survive a panic and keep taking jobs.
        let sums: Vec<u64> = futures::future::join_all((0..8u64).map(|i| pool.run(move || i * 2)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(sums, (0..8u64).map(|i| i * 2).collect::<Vec<_>>());
    }
}
