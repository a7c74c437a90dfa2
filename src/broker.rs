//! `Broker`: one running broker as the listener sees it — the [`Hub`] its
//! connections share, plus what only the listener needs: readiness
//! (`/readyz`), the connection limits, the TLS acceptor, and the settings
//! the process started with.
//!
//! Settings come in two kinds. [`Broker::config`] is what the process
//! started with: read it only for keys that need a restart (the listen
//! addresses, the log format, whether metrics are on). [`Hub::settings`]
//! is the current configuration, replaced by a reload (SIGHUP).
//!
//! The keys and certificates the settings name are read here
//! ([`Credentials`]), when the broker starts and on every reload: a key that
//! cannot be used stops the start, or leaves the previous settings in force.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use tokio_rustls::TlsAcceptor;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::{ConfigError, MetricsError, StartError};
use crate::hub::Hub;
use crate::metrics::{Metrics, Transport};
use crate::publish::PublishBudget;
use crate::transport::socketio::Engines;

/// The keys and certificates the settings name, read and checked: the token keys and
/// API keys (`[auth]`), and the TLS certificate (`[tls]`).
pub struct Credentials {
    /// The token keys and rules.
    pub auth: Auth,
    /// The TLS acceptor; `None`: plain text.
    pub tls: Option<TlsAcceptor>,
}

impl Credentials {
    /// Reads every key and certificate `config` names; the error names the key.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        Ok(Credentials {
            auth: Auth::from_config(config)?,
            tls: crate::tls::acceptor(config)?,
        })
    }
}

/// One running broker.
pub struct Broker {
    /// What every connection shares.
    pub hub: Arc<Hub>,
    /// The settings it started with; only for keys that need a restart (see the module doc).
    pub config: Arc<Config>,
    /// The TLS acceptor (`None`: plain text), rebuilt by a reload so renewed certificates apply.
    tls: RwLock<Option<TlsAcceptor>>,
    /// Where the separate metrics listener is bound, once it is.
    pub metrics_addr: OnceLock<SocketAddr>,
    /// The Socket.IO connections, by session id (a long-polling one spans many requests).
    pub socketio: Arc<Engines>,
    /// False once draining: `/readyz` answers 503.
    ready: AtomicBool,
    /// Connections open now, over every transport.
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
    /// `limits.publish_rate_per_connection` when the connection was accepted.
    http_rate: u32,
    /// The publish budget of HTTP requests on this connection, made by the first one: a
    /// WebSocket holds its slot for its whole life and has a budget of its own.
    http_budget: OnceLock<Box<PublishBudget>>,
}

impl ConnectionSlot {
    /// The publish budget of the HTTP requests on this connection.
    pub fn budget(&self) -> &PublishBudget {
        self.http_budget
            .get_or_init(|| Box::new(PublishBudget::new(self.http_rate)))
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
    pub fn new(config: Arc<Config>) -> Result<Arc<Self>, StartError> {
        let credentials = Credentials::load(&config)?;
        Ok(Self::start(config, credentials, prometheus::Registry::new())?)
    }

    /// A broker for `config` with its `credentials` already read, registering the
    /// metrics into `registry` (when metrics are on).
    pub fn start(
        config: Arc<Config>,
        credentials: Credentials,
        registry: prometheus::Registry,
    ) -> Result<Arc<Self>, MetricsError> {
        let metrics = match config.metrics.enabled {
            true => Some(Arc::new(Metrics::new(registry)?)),
            false => None,
        };
        let hub = Hub::new(Arc::clone(&config), credentials.auth, metrics)?;
        Ok(Arc::new(Broker {
            hub: Arc::new(hub),
            config,
            tls: RwLock::new(credentials.tls),
            metrics_addr: OnceLock::new(),
            socketio: Arc::new(Engines::new()),
            ready: AtomicBool::new(true),
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }))
    }

    /// The current settings (see the module doc for which keys apply live).
    pub fn settings(&self) -> Arc<Config> {
        self.hub.settings()
    }

    /// The TLS acceptor in force, if TLS is on.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.read().clone()
    }

    /// Replaces the current settings (a reload), once every key and certificate they
    /// name has been read; if one cannot be, nothing changes and the error names it.
    pub fn apply(&self, config: Config) -> Result<(), ConfigError> {
        let credentials = Credentials::load(&config)?;
        *self.tls.write() = credentials.tls;
        self.hub.apply(Arc::new(config), credentials.auth);
        Ok(())
    }

    /// Whether the broker accepts new work (`/readyz`): not draining, and in cluster
    /// mode connected to NATS.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.hub.cluster.as_ref().is_none_or(|c| c.is_ready())
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
        self.hub.shutdown.trigger();
        self.hub.connections.for_each(|listed| {
            // SSE and iframe streams and long polls end on the signal themselves.
            if listed.peer.transport == Transport::Ws {
                listed.queue.close(crate::protocol::frame::going_away(), true);
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
            http_rate: settings.limits.publish_rate_per_connection,
            http_budget: OnceLock::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_read_when_the_broker_starts_and_errors_name_the_key() {
        let mut config = Config::default();
        config.auth.mode = crate::config::AuthMode::Jwt;
        config.auth.jwt_public_key_file = "/nonexistent.pem".into();
        config
            .validate()
            .expect("the values are fine: only the file is missing");
        let e = Credentials::load(&config).err().unwrap().to_string();
        assert!(
            e.contains("auth.jwt_public_key_file") && e.contains("/nonexistent.pem"),
            "{e}"
        );
        let e = Broker::new(Arc::new(config)).err().unwrap().to_string();
        assert!(e.contains("auth.jwt_public_key_file"), "{e}");
        let mut config = Config::default();
        config.tls.cert_file = "/nonexistent-cert.pem".into();
        config.tls.key_file = "/nonexistent-key.pem".into();
        let e = Credentials::load(&config).err().unwrap().to_string();
        assert!(e.contains("tls.cert_file"), "{e}");
    }

    #[test]
    fn a_reload_with_an_unusable_key_changes_nothing() {
        let broker = Broker::new(Arc::new(Config::default())).unwrap();
        let mut config = Config::default();
        config.limits.max_subscriptions_per_connection = 7;
        config.auth.mode = crate::config::AuthMode::Jwt;
        config.auth.jwt_public_key_file = "/nonexistent.pem".into();
        assert!(broker.apply(config.clone()).is_err());
        assert_eq!(broker.settings().limits.max_subscriptions_per_connection, 1000);
        assert_eq!(broker.hub.auth().mode(), crate::config::AuthMode::None);
        config.auth = Config::default().auth;
        broker.apply(config).unwrap();
        assert_eq!(broker.settings().limits.max_subscriptions_per_connection, 7);
    }
}
