//! A background task that runs one round on a timer until it is stopped: the scores sweeper and
//! the series retention sweeper. A round that fails logs and waits for the next tick; a round
//! that overruns delays the next tick rather than queueing a burst.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running task; stop it with [`Periodic::shutdown`] before what its rounds use.
pub struct Periodic {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Periodic {
    /// Runs `round` at once and then every `every`; each round takes the state the previous one
    /// returned (where to resume, say).
    pub fn spawn<S, F, Fut>(name: &'static str, every: Duration, state: S, mut round: F) -> Self
    where
        S: Send + 'static,
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: Future<Output = S> + Send + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
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
