//! A background task that runs one round on a timer until it is stopped: the scores sweeper and
//! the series retention sweeper. A round that fails logs and waits for the next tick; a round
//! that overruns delays the next tick rather than queueing a burst.

use std::future::Future;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running task; stop it with [`Periodic::shutdown`] before what its rounds use.
pub struct Periodic {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Periodic {
    /// Runs `round` on `runtime` at once and then every `every`; each round takes the state the
    /// previous one returned (where to resume, say). The runtime is the task's CPU priority:
    /// read-model upkeep goes on the live projections' runtime, below ingest
    /// ([`crate::ProjectorHandle::live_or_current`]).
    pub fn spawn<S, F, Fut>(
        runtime: &Handle,
        name: &'static str,
        every: Duration,
        state: S,
        mut round: F,
    ) -> Self
    where
        S: Send + 'static,
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: Future<Output = S> + Send + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let task = runtime.spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut state = Some(state);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => return,
                }
                if let Some(current) = state.take() {
                    state = Some(round(current).await);
                }
            }
        });
        Periodic { name, stop, task }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, task = self.name, "a periodic task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn rounds_run_on_the_runtime_given() {
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("periodic-test")
            .enable_all()
            .build()
            .expect("runtime");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let periodic = Periodic::spawn(other.handle(), "test", Duration::from_millis(5), 0u32, {
            let seen = seen.clone();
            move |rounds| {
                let seen = seen.clone();
                async move {
                    let thread = std::thread::current().name().map(str::to_owned);
                    seen.lock().expect("lock").push(thread);
                    rounds + 1
                }
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().expect("lock").len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "no rounds ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        periodic.shutdown().await;
        let seen = seen.lock().expect("lock");
        assert!(
            seen.iter()
                .all(|name| name.as_deref() == Some("periodic-test")),
            "{seen:?}"
        );
        drop(seen);
        other.shutdown_background();
    }
}
