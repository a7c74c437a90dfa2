//! Cluster mode: several fanout nodes serve one feed through NATS.
//!
//! The bridge sits beside the registry. In cluster mode the publish entry point
//! hands every publish (WebSocket, HTTP, raw socket) to [`Cluster::submit`] instead
//! of `Registry::publish`: it queues on its topic's lane, and each lane carries what
//! is queued to a JetStream stream, a batch per round trip, claiming the topic's next
//! seqs with optimistic concurrency on the subject's last sequence (`publish.rs`), so
//! seqs are gap-free and the same on every node. Nothing is fanned out at publish time: every node, the publishing
//! one included, fans a message out only when it arrives back from NATS on one of its
//! interests (`interest.rs`) — one path, so no node delivers twice and each node sees
//! a topic in stream order. A node follows on NATS only the topics and patterns its
//! own clients hold, and drops them when the last local subscriber leaves.
//!
//! The single-node mode (empty `cluster.nats_url`) has no bridge at all.

mod interest;
mod metrics;
mod publish;
pub mod wire;

pub use metrics::ClusterMetrics;
pub use publish::{Committed, Outcome};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use dashmap::DashMap;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::config::Config;
use crate::protocol::Epoch;
use crate::registry::Registry;
use crate::topic::TopicName;

/// Why the bridge could not do what was asked; the request may be retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Not connected to NATS (or the stream is not ready yet).
    #[error("the cluster is not connected to NATS at {0}; retry shortly, or connect to another node")]
    NotConnected(String),
    /// A NATS or JetStream request failed.
    #[error("the cluster's NATS request failed while {what}: {error}; retry shortly")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// The NATS error.
        error: String,
    },
    /// A NATS request took longer than `cluster.request_timeout`.
    #[error("the cluster's NATS request timed out while {0} (cluster.request_timeout); retry shortly")]
    TimedOut(&'static str),
    /// Other nodes kept taking the topic's next seq first.
    #[error("publishing to `{0}` kept racing other nodes for the next seq; retry")]
    Contended(TopicName),
}

impl ClusterError {
    fn nats(what: &'static str, error: impl std::fmt::Display) -> Self {
        ClusterError::Nats {
            what,
            error: error.to_string(),
        }
    }
}

impl From<ClusterError> for crate::error::RequestError {
    fn from(e: ClusterError) -> Self {
        crate::error::RequestError::new(crate::error::ErrorCode::Internal, e.to_string())
    }
}

/// The connection to NATS once the stream exists.
struct Link {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
}

/// One node's NATS bridge.
pub struct Cluster {
    url: String,
    prefix: String,
    stream_name: String,
    timeout: Duration,
    /// `max_msgs_per_subject` of the stream: the longest history any topic rule asks for, at least 1.
    per_subject: i64,
    /// This process's id, so a message's origin session is only recognised where it was published.
    node: u64,
    registry: Arc<Registry>,
    metrics: Option<ClusterMetrics>,
    link: OnceLock<Link>,
    connected: Arc<AtomicBool>,
    interests: Mutex<HashMap<String, interest::Entry>>,
    /// Per topic: this node's queue of publishes and what it knows of the subject (`publish.rs`).
    lanes: DashMap<TopicName, Arc<publish::Lane>>,
    /// How many lanes make the next sweep of idle ones (`publish.rs`).
    lanes_sweep_at: AtomicUsize,
    /// How long JetStream remembers an idempotency key (`publish.idempotency_window`).
    duplicate_window: Duration,
}

impl Cluster {
    /// A bridge for `config` delivering into `registry`; nothing connects until [`Cluster::start`].
    pub fn new(config: &Config, registry: Arc<Registry>, metrics: Option<ClusterMetrics>) -> Arc<Self> {
        let c = &config.cluster;
        let per_subject = config
            .topics
            .iter()
            .filter_map(|r| r.history_size)
            .chain([config.history.size, 1])
            .max()
            .unwrap_or(1);
        Arc::new(Cluster {
            url: c.nats_url.clone(),
            prefix: c.subject_prefix.clone(),
            stream_name: c.stream.clone(),
            timeout: c.request_timeout,
            per_subject: i64::try_from(per_subject).unwrap_or(i64::MAX),
            node: node_id(),
            registry,
            metrics,
            link: OnceLock::new(),
            connected: Arc::new(AtomicBool::new(false)),
            interests: Mutex::new(HashMap::new()),
            lanes: DashMap::new(),
            lanes_sweep_at: AtomicUsize::new(publish::MAX_LANES),
            duplicate_window: config.publish.idempotency_window,
        })
    }

    /// Connects in the background, retrying until NATS answers and the stream is ready.
    pub fn start(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.connect().await });
    }

    /// Whether the node is connected to NATS with the stream ready (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.link.get().is_some() && self.connected.load(Ordering::Relaxed)
    }

    /// The NATS subject of `topic` (patterns map the same way: `*` and `>` mean the same in NATS).
    pub fn subject(&self, topic: &str) -> String {
        format!("{}.{}", self.prefix, topic)
    }

    fn link(&self) -> Result<&Link, ClusterError> {
        match self.link.get() {
            Some(l) if self.connected.load(Ordering::Relaxed) => Ok(l),
            _ => Err(ClusterError::NotConnected(self.url.clone())),
        }
    }

    async fn connect(self: Arc<Self>) {
        let connected = Arc::clone(&self.connected);
        let gauge = self.metrics.as_ref().map(|m| m.connected.clone());
        let options = async_nats::ConnectOptions::new()
            .name(format!("fanout-{:x}", self.node))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let (connected, gauge) = (Arc::clone(&connected), gauge.clone());
                async move {
                    let up = match event {
                        async_nats::Event::Connected => true,
                        async_nats::Event::Disconnected | async_nats::Event::Closed => false,
                        _ => return,
                    };
                    connected.store(up, Ordering::Relaxed);
                    if let Some(g) = gauge {
                        g.set(i64::from(up));
                    }
                }
            });
        let urls: Vec<async_nats::ServerAddr> = self.url.split(',').filter_map(|u| u.trim().parse().ok()).collect();
        let client = match options.connect(urls).await {
            Ok(c) => c,
            Err(e) => {
                warn!(url = %self.url, error = %e, "cannot use cluster.nats_url; the node stays not ready");
                return;
            }
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.timeout);
        let mut delay = Duration::from_millis(100);
        let stream = loop {
            match js.create_or_update_stream(self.stream_config()).await {
                Ok(_) => match js.get_stream(&self.stream_name).await {
                    Ok(s) => break s,
                    Err(e) => warn!(error = %e, "cannot open the JetStream stream; retrying"),
                },
                Err(e) => warn!(url = %self.url, error = %e, "NATS JetStream not reachable yet; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        };
        // The first Connected event may have fired before the callback could matter.
        if client.connection_state() == async_nats::connection::State::Connected {
            self.connected.store(true, Ordering::Relaxed);
        }
        // The stream's creation time names the life of every seq it holds: the same on
        // every node, new if NATS lost its store and the stream started again.
        let created = stream.cached_info().created.unix_timestamp_nanos() as u64;
        self.registry.share_epoch(Epoch::derived(created));
        let _ = self.link.set(Link { client, js, stream });
        if let Some(m) = &self.metrics {
            m.connected.set(i64::from(self.is_ready()));
        }
        info!(url = %self.url, stream = %self.stream_name, "cluster connected");
    }

    fn stream_config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.stream_name.clone(),
            subjects: vec![self.subject(">")],
            max_messages_per_subject: self.per_subject,
            storage: jetstream::stream::StorageType::File,
            discard: jetstream::stream::DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// A process id unlikely to repeat across nodes and restarts.
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A held interest, released when dropped (for requests that read a topic once).
pub struct Held {
    cluster: Arc<Cluster>,
    filter: crate::topic::Filter,
}

impl Cluster {
    /// As [`Cluster::acquire`], released when the guard drops.
    pub async fn hold(self: &Arc<Self>, filter: crate::topic::Filter) -> Result<Held, ClusterError> {
        self.acquire(&filter).await?;
        Ok(Held {
            cluster: Arc::clone(self),
            filter,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.cluster.release(&self.filter);
    }
}
