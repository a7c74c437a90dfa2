//! The shutdown signal and the tracker that waits for every connection.
//!
//! One [`CancellationToken`] tells every loop to stop; a [`TaskTracker`]
//! knows every connection task, so the server can wait for all of them to
//! flush (hyper stops tracking a connection once it is upgraded, so
//! WebSocket sessions are tracked here).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The broker-wide stop signal and the set of running connection tasks.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every connection to finish.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal was given.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal is given.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Runs `task` as a tracked connection task.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits up to `timeout` for every tracked task; returns whether all finished.
    pub async fn wait(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait()).await.is_ok()
    }

    /// How many tracked tasks run now.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C only, off Unix).
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
