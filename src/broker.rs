//! `Broker`: the state every connection shares — settings, the registry,
//! the shutdown signal, readiness and connection accounting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::protocol::SessionId;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// Shared state of one running broker.
pub struct Broker {
    /// The settings it runs with.
    pub config: Arc<Config>,
    /// Topics and subscriptions.
    pub registry: Registry,
    /// The stop signal and connection tracker.
    pub shutdown: Shutdown,
    next_session: AtomicU64,
    /// False once draining: `/readyz` answers 503.
    ready: AtomicBool,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` reached.
    TooManyConnections,
    /// `server.max_connections_per_ip` reached for this address.
    TooManyFromIp,
}

/// One accepted connection's place in the limits; released on drop.
pub struct ConnectionSlot {
    broker: Arc<Broker>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.broker.open.fetch_sub(1, Ordering::Relaxed);
        if self.broker.config.server.max_connections_per_ip > 0 {
            let mut per_ip = self.broker.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl Broker {
    /// A broker with no topics and no connections.
    pub fn new(config: Arc<Config>) -> Arc<Self> {
        Arc::new(Broker {
            registry: Registry::new(Arc::clone(&config)),
            config,
            shutdown: Shutdown::new(),
            next_session: AtomicU64::new(1),
            ready: AtomicBool::new(true),
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A fresh connection id.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the broker accepts new work (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Starts draining: not ready, and every connection is told to finish.
    pub fn drain(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.shutdown.trigger();
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a connection slot for `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let max = self.config.server.max_connections;
        if self.open.fetch_add(1, Ordering::Relaxed) >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManyConnections);
        }
        let per_ip_max = self.config.server.max_connections_per_ip;
        if per_ip_max > 0 {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= per_ip_max {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::TooManyFromIp);
            }
            *n += 1;
        }
        Ok(ConnectionSlot {
            broker: Arc::clone(self),
            ip,
        })
    }
}
