//! `Broker`: the state every connection shares — settings, the registry,
//! the shutdown signal, readiness, connection accounting and metrics.
//!
//! Settings come in two kinds. [`Broker::config`] is what the process
//! started with: read it only for keys that need a restart (the listen
//! addresses, the log format, whether metrics are on). [`Broker::settings`]
//! is the current configuration, replaced by a reload (SIGHUP): read it for
//! everything else, when a connection starts or a request arrives.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterMetrics};
use crate::config::Config;
use crate::connections::ConnectionTable;
use crate::error::RequestError;
use crate::flush::Flushers;
use crate::metrics::{Metrics, MetricsError};
use crate::protocol::SessionId;
use crate::registry::Registry;
use crate::session::guard::{rate_limited, PublishBucket};
use crate::shutdown::Shutdown;

/// Shared state of one running broker.
pub struct Broker {
    /// The settings it started with; only for keys that need a restart (see the module doc).
    pub config: Arc<Config>,
    /// The current settings: `config` until a reload replaces them.
    settings: RwLock<Arc<Config>>,
    /// The token keys and rules of the current settings, rebuilt by a reload.
    auth: RwLock<Arc<Auth>>,
    /// The TLS acceptor (`None`: plain text), rebuilt by a reload so renewed certificates apply.
    tls: RwLock<Option<TlsAcceptor>>,
    /// Every metric; `None` with `metrics.enabled = false`.
    pub metrics: Option<Arc<Metrics>>,
    /// Every open session, for `GET /api/connections` and the keepalive sweep.
    pub connections: ConnectionTable,
    /// The tasks that write plain TCP WebSockets' queues.
    pub flushers: Flushers,
    /// Where the separate metrics listener is bound, once it is.
    pub metrics_addr: OnceLock<SocketAddr>,
    /// Topics and subscriptions.
    pub registry: Arc<Registry>,
    /// The NATS bridge in cluster mode (`cluster.nats_url` set); `None` on a single node.
    pub cluster: Option<Arc<Cluster>>,
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

impl Refusal {
    /// The config key of the limit, as in the `limit` label of `fanout_connections_refused_total`.
    pub fn limit(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "max_connections",
            Refusal::TooManyFromIp => "max_connections_per_ip",
        }
    }
}

/// One accepted connection's place in the limits; released on drop.
pub struct ConnectionSlot {
    broker: Arc<Broker>,
    ip: IpAddr,
    /// Whether this slot counts toward its IP's limit (the limit may change by reload).
    per_ip: bool,
    /// The publish budget of HTTP requests on this connection (a WebSocket session has its own).
    http_publishes: Mutex<PublishBucket>,
}

impl ConnectionSlot {
    /// Takes one publish from this connection's budget (`limits.publish_rate_per_connection`).
    pub fn take_publish(&self) -> Result<(), RequestError> {
        let mut bucket = self.http_publishes.lock();
        if bucket.take() {
            return Ok(());
        }
        Err(rate_limited(bucket.rate()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.broker.open.fetch_sub(1, Ordering::Relaxed);
        if self.per_ip {
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
    /// A broker with no topics and no connections, its metrics in a registry of its own.
    pub fn new(config: Arc<Config>) -> Arc<Self> {
        // A fresh registry cannot already hold our metric names.
        Self::with_registry(config, prometheus::Registry::new()).expect("a fresh registry takes every metric")
    }

    /// As [`Broker::new`], registering the metrics into `registry` (when metrics are on).
    pub fn with_registry(config: Arc<Config>, registry: prometheus::Registry) -> Result<Arc<Self>, MetricsError> {
        let metrics = match config.metrics.enabled {
            true => Some(Arc::new(Metrics::new(registry)?)),
            false => None,
        };
        let auth = Arc::new(load_auth(&config));
        let tls = load_tls(&config, None);
        let registry = Arc::new(Registry::new(Arc::clone(&config)));
        let cluster = match config.cluster.enabled() {
            true => {
                let cluster_metrics = match &metrics {
                    Some(m) => Some(ClusterMetrics::new(m.registry()).map_err(MetricsError::from)?),
                    None => None,
                };
                Some(Cluster::new(&config, Arc::clone(&registry), cluster_metrics))
            }
            false => None,
        };
        Ok(Arc::new(Broker {
            cluster,
            tls: RwLock::new(tls),
            auth: RwLock::new(auth),
            registry,
            settings: RwLock::new(Arc::clone(&config)),
            metrics,
            connections: ConnectionTable::new(),
            flushers: Flushers::with_shards(config.queue.flush_shards, config.queue.flush_interval),
            metrics_addr: OnceLock::new(),
            config,
            shutdown: Shutdown::new(),
            next_session: AtomicU64::new(1),
            ready: AtomicBool::new(true),
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }))
    }

    /// The current settings (see the module doc for which keys apply live).
    pub fn settings(&self) -> Arc<Config> {
        Arc::clone(&self.settings.read())
    }

    /// The TLS acceptor in force, if TLS is on.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.read().clone()
    }

    /// The token keys and rules in force.
    pub fn auth(&self) -> Arc<Auth> {
        Arc::clone(&self.auth.read())
    }

    /// Replaces the current settings (a reload); new connections and topics use them.
    pub fn apply(&self, config: Config) {
        let config = Arc::new(config);
        *self.auth.write() = Arc::new(load_auth(&config));
        let tls = load_tls(&config, self.tls());
        *self.tls.write() = tls;
        self.registry.set_config(Arc::clone(&config));
        self.flushers.set_interval(config.queue.flush_interval);
        *self.settings.write() = config;
    }

    /// A fresh connection id.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the broker accepts new work (`/readyz`): not draining, and in cluster
    /// mode connected to NATS.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.cluster.as_ref().is_none_or(|c| c.is_ready())
    }

    /// Answers `/readyz` with 503 from now on (the first step of a drain).
    pub fn set_unready(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Starts draining: not ready, and every connection is told to finish. WebSockets
    /// flush their queues and close with 1001 (one that starts from now on closes as
    /// soon as it is listed: it sees the signal).
    pub fn drain(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.shutdown.trigger();
        self.connections.for_each(|listed| {
            // SSE streams and long polls end on the signal themselves.
            if listed.peer.transport == "ws" {
                listed.queue.close(going_away(), true);
            }
        });
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a connection slot for `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let settings = self.settings();
        let max = settings.server.max_connections;
        if self.open.fetch_add(1, Ordering::Relaxed) >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManyConnections);
        }
        let per_ip_max = settings.server.max_connections_per_ip;
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
            per_ip: per_ip_max > 0,
            http_publishes: Mutex::new(PublishBucket::new(settings.limits.publish_rate_per_connection)),
        })
    }
}

/// The close frame of a drain.
pub fn going_away() -> bytes::Bytes {
    crate::protocol::frame::close(1001, "server shutting down")
}

/// The auth rules of `config`. `Config::validate` has loaded the keys already; should
/// the key file have gone since, every token is refused rather than every client let in.
fn load_auth(config: &Config) -> Auth {
    Auth::from_config(config).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot load the auth keys; refusing every token");
        Auth::locked(config.auth.mode)
    })
}

/// The TLS acceptor of `config`. `Config::validate` has read the files already; should
/// they have become unreadable since, the previous certificate stays in use.
fn load_tls(config: &Config, previous: Option<TlsAcceptor>) -> Option<TlsAcceptor> {
    crate::tls::acceptor(config).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot load the TLS certificate; keeping the previous one");
        previous
    })
}
