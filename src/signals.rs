//! The process's signals: SIGTERM or SIGINT starts the drain, a second one
//! exits at once, SIGHUP reloads the configuration.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::reload::Reloader;

/// The exit status when a second stop signal cuts the drain short.
pub const FORCED_EXIT_CODE: i32 = 130;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signal streams, registered once so none is lost between two waits.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGTERM, SIGINT and SIGHUP.
    pub fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop,
                _ = self.int.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

/// Handles signals for `broker` from now on: reloads with `reloader` on SIGHUP, and
/// exits at once on a second stop signal. The returned future resolves on the first
/// stop signal: pass it to [`crate::server::serve`] as the shutdown.
pub fn watch(mut signals: Signals, broker: Arc<Broker>, reloader: Reloader) -> impl Future<Output = ()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stop = Some(stop);
        loop {
            match signals.next().await {
                Signal::Reload => {
                    info!("SIGHUP: reloading the configuration");
                    crate::notify::reloading();
                    let _ = reloader.reload(&broker);
                    crate::notify::ready();
                }
                Signal::Stop => match stop.take() {
                    Some(s) => {
                        warn!("stop signal: draining; a second signal exits at once");
                        let _ = s.send(());
                    }
                    None => {
                        error!("second stop signal: exiting without finishing the drain");
                        std::process::exit(FORCED_EXIT_CODE);
                    }
                },
            }
        }
    });
    async move {
        let _ = stopped.await;
    }
}
