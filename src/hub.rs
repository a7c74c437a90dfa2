//! `Hub`: what every connection shares — the topic registry, the publish
//! entry point, the table of open sessions, the current settings and auth
//! rules, the metrics, the flush shards and the stop signal. Sessions and
//! transports are given a `Hub`; what only the listener needs (readiness,
//! connection limits, TLS, the settings the process started with) is the
//! `Broker` around it (`broker.rs`).
//!
//! Settings come in two kinds. The settings a connection reads here
//! ([`Hub::settings`], [`Hub::auth`]) are the current ones, replaced by a
//! reload (SIGHUP): read them when a connection starts or a request arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterMetrics};
use crate::config::Config;
use crate::connections::ConnectionTable;
use crate::error::MetricsError;
use crate::flush::Flushers;
use crate::metrics::Metrics;
use crate::protocol::SessionId;
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// The state every connection of one broker shares.
pub struct Hub {
    /// Topics and subscriptions.
    pub registry: Arc<Registry>,
    /// The NATS bridge in cluster mode (`cluster.nats_url` set); `None` on a single node.
    pub cluster: Option<Arc<Cluster>>,
    /// The one way to publish.
    pub publisher: Publisher,
    /// Every open session, for `GET /api/connections`, the keepalive sweep and the drain.
    pub connections: ConnectionTable,
    /// The tasks that write plain TCP WebSockets' queues.
    pub flushers: Flushers,
    /// The stop signal every connection watches, and the tracker that waits for them.
    pub shutdown: Shutdown,
    /// Every metric; `None` with `metrics.enabled = false`.
    pub metrics: Option<Arc<Metrics>>,
    /// The current settings: the start's until a reload replaces them.
    settings: RwLock<Arc<Config>>,
    /// The token keys and rules of the current settings.
    auth: RwLock<Arc<Auth>>,
    next_session: AtomicU64,
}

impl Hub {
    /// A hub with no topics and no connections for `config`, checking tokens with `auth`.
    /// In cluster mode the bridge's metrics join `metrics`' registry.
    pub fn new(config: Arc<Config>, auth: Auth, metrics: Option<Arc<Metrics>>) -> Result<Self, MetricsError> {
        let registry = Arc::new(Registry::new(Arc::clone(&config)));
        let cluster = match config.cluster.enabled() {
            true => {
                let cluster_metrics = match &metrics {
                    Some(m) => Some(ClusterMetrics::new(m.registry())?),
                    None => None,
                };
                Some(Cluster::new(&config, Arc::clone(&registry), cluster_metrics))
            }
            false => None,
        };
        Ok(Hub {
            publisher: Publisher::new(Arc::clone(&registry), cluster.clone(), metrics.clone()),
            registry,
            cluster,
            connections: ConnectionTable::new(),
            flushers: Flushers::with_shards(config.queue.flush_shards, config.queue.flush_interval),
            shutdown: Shutdown::new(),
            metrics,
            settings: RwLock::new(config),
            auth: RwLock::new(Arc::new(auth)),
            next_session: AtomicU64::new(1),
        })
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Config> {
        Arc::clone(&self.settings.read())
    }

    /// The token keys and rules in force.
    pub fn auth(&self) -> Arc<Auth> {
        Arc::clone(&self.auth.read())
    }

    /// Makes `config` and `auth` the current ones (a reload); new connections, requests
    /// and topics use them.
    pub fn apply(&self, config: Arc<Config>, auth: Auth) {
        *self.auth.write() = Arc::new(auth);
        self.registry.set_config(Arc::clone(&config));
        self.flushers.set_interval(config.queue.flush_interval);
        *self.settings.write() = config;
    }

    /// A fresh connection id.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Counts a refused token, key or permission in `fanout_auth_failures_total`.
    pub fn count_auth_failure(&self) {
        if let Some(m) = &self.metrics {
            m.auth_failures.inc();
        }
    }

    /// Counts a bad request or protocol violation of `kind` in `fanout_protocol_errors_total`.
    pub fn count_protocol_error(&self, kind: &str) {
        if let Some(m) = &self.metrics {
            m.count_protocol_error(kind);
        }
    }
}
