//! Where projection work runs, and at which CPU priority. Linux keeps the priority per
//! thread, so each kind of work gets a runtime of its own whose threads are lowered as they
//! start, its blocking pool included (that is where a worker reads and decodes the log and
//! loads its items):
//!
//! - **live projections** at `[projector] live_nice` (19 by default), below ingest and
//!   queries. On a machine that ingest can saturate, a durable acknowledgement comes first and
//!   the read models catch up in the cores it leaves, in bigger and cheaper batches
//!   (`Worker::fold_ahead`); they stay fresh whenever the machine has room. 0 keeps them on
//!   the caller's runtime, at its priority.
//! - **rebuilds** (a rules version catching up beside the live one) under the idle scheduling
//!   policy, below any nice value: they use the cores live work leaves idle and yield them the
//!   moment ingest, queries or the live projections want them.
//!
//! Why threads and not a rate limit: a rate limit slows a rebuild (or a catch-up) on an idle
//! machine too, while the scheduler gives a thread nearly all of an idle core and a share of a
//! busy one by its weight (against nice 0's 1024: nice 10 weighs 110, nice 19 15, the idle
//! policy 3). Why 19 and not 10 for the live projections: at 10 they took more than half of
//! the cores during a batched load and cost ingest about a tenth of its rate, while their
//! freshness under a load the machine carries did not depend on it (BENCHMARKS.md, "Session
//! 24").
//!
//! What the workers share with other work runs elsewhere at its own priority: their table
//! writes are group-committed by the tables' committer thread (`shoal_storage::embedded`),
//! which the server lowers to the live projections' priority, never to the rebuilds'.

use crate::Result;
use std::future::Future;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Worker threads of the rebuilds' runtime: a rebuild has one worker per shard, and two
/// threads keep a two-core machine's idle time busy. The live runtime has one per core, as
/// the runtime the live workers ran on before.
pub(crate) const REBUILD_THREADS: usize = 2;

/// The CPU priority of a runtime's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    /// This nice value, or lower if the thread already is.
    Nice(i32),
    /// The idle scheduling policy, below every nice value.
    Idle,
}

pub(crate) struct Background {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
}

impl Background {
    /// A runtime of `threads` workers (and a blocking pool) whose threads run at `priority`
    /// or lower, named `name`.
    pub(crate) fn new(priority: Priority, name: &str, threads: usize) -> Result<Background> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .on_thread_start(move || lower_priority(priority))
            .enable_all()
            .build()
            .map_err(crate::Error::Runtime)?;
        Ok(Background {
            runtime: Some(runtime),
        })
    }

    /// A handle to spawn on the runtime from elsewhere (threads a task makes inherit its
    /// priority: the search index's writer threads, for one).
    pub(crate) fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
    }

    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(future),
            // Unreachable: the runtime is taken only by `drop`.
            None => tokio::spawn(future),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which panics inside another runtime;
        // the tasks are stopped by the engine before this (their workers checkpoint first).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority to `priority` (never raises it); a thread that cannot
/// be lowered runs at the priority it has, said once per process (blocking threads come and
/// go).
fn lower_priority(priority: Priority) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let lowered = match priority {
        Priority::Nice(nice) => shoal_storage::priority::lower_current_thread_to(nice).map(drop),
        Priority::Idle => shoal_storage::priority::idle_current_thread(),
    };
    if let Err(error) = lowered
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            %error,
            ?priority,
            "could not lower the priority of a projector thread; it competes with ingest"
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The threads a runtime starts, the blocking pool's too, run at its priority.
    #[test]
    fn a_runtime_lowers_its_threads() {
        let nice = Background::new(Priority::Nice(7), "test-nice", 1).unwrap();
        let idle = Background::new(Priority::Idle, "test-idle", 1).unwrap();
        let probe = || {
            (
                shoal_storage::priority::current_thread_nice().unwrap(),
                shoal_storage::priority::current_thread_is_idle().unwrap(),
            )
        };
        let on = |background: &Background| {
            let handle = background.handle().unwrap();
            handle.block_on(async move {
                let worker = tokio::spawn(async move { probe() }).await.unwrap();
                let blocking = tokio::task::spawn_blocking(probe).await.unwrap();
                (worker, blocking)
            })
        };
        let before = shoal_storage::priority::current_thread_nice().unwrap();
        let lowered = before.max(7);
        assert_eq!(on(&nice), ((lowered, false), (lowered, false)));
        let (worker, blocking) = on(&idle);
        assert!(worker.1 && blocking.1, "{worker:?} {blocking:?}");
    }
}
