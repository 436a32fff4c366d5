//! Where catching-up work runs: a runtime of its own whose threads have the lowest CPU priority
//! (nice 19), so that a rebuild under new rules uses the cores live work leaves idle and yields
//! them the moment ingest, queries or the live projections want them.
//!
//! Why threads and not a rate limit: a rate limit slows a rebuild on an idle machine too (issue
//! 4 wants both a fast rebuild and an unhurt live ingest), while the scheduler gives a nice-19
//! thread nearly all of an idle core and about 1.5 % of a busy one.
//!
//! Every thread of the runtime is lowered as it starts, its blocking pool included: that is
//! where a rebuild reads and decodes the log and loads its items. What a rebuild shares with
//! live work stays at the normal priority because it runs elsewhere: its table writes are
//! group-committed by the tables' own committer thread (`shoal_storage::embedded`), so a live
//! flush never waits behind a starved thread.

use crate::Result;
use std::future::Future;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Threads of the background runtime: a rebuild has one worker per shard, and two threads keep
/// a two-core machine's idle time busy.
const THREADS: usize = 2;

pub(crate) struct Background {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
}

impl Background {
    pub(crate) fn new() -> Result<Background> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("shoal-background")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(crate::Error::Runtime)?;
        Ok(Background {
            runtime: Some(runtime),
        })
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

/// Lowers the calling thread's priority to nice 19. Linux keeps the nice value per thread, so
/// this touches no other thread of the process; elsewhere it does nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
        let outcome = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, 19)
        };
        if outcome != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower the priority of a background thread; rebuilds compete with live work"
            );
        }
    }
}
