//! systemd readiness (`Type=notify`): `READY=1` once listening, `RELOADING=1`
//! around a reload, `STOPPING=1` when the drain starts. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use sd_notify::NotifyState;
use tracing::debug;

fn send(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        // systemd gone or the socket unwritable: the service still runs, so only note it.
        debug!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd the broker is listening.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd a reload starts.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// Tells systemd the broker is draining.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
