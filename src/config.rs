//! Typed settings: loaded from defaults (the embedded `config.toml`), the
//! config file, `FANOUT__SECTION__KEY` environment variables and the
//! command line, in that order; validated before anything binds, with
//! errors that name the key and what it allows. Only values are checked
//! here: the files they name (keys, certificates) are read by the broker
//! when it starts or reloads (`broker::Credentials`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::topic::{Filter, TopicName};

mod cluster;
mod compression;
mod duration;
mod env;
mod security;
pub use cluster::ClusterConfig;
pub use compression::{CompressionConfig, Deflate};
pub use security::{origin_allowed, AuthConfig, AuthMode, TlsConfig};

/// The default configuration file, every key commented.
pub const DEFAULT_CONFIG: &str = include_str!("../config.toml");

/// Most flush shards `queue.flush_shards` may ask for.
pub const MAX_FLUSH_SHARDS: usize = 1024;

/// The environment variable prefix: `FANOUT__SERVER__LISTEN`.
const ENV_PREFIX: &str = "FANOUT";

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, connection limits and timeouts.
    pub server: ServerConfig,
    /// Per-client message limits.
    pub limits: LimitsConfig,
    /// Idempotent publishing.
    pub publish: PublishConfig,
    /// Per-connection send queues.
    pub queue: QueueConfig,
    /// Default history per topic.
    pub history: HistoryConfig,
    /// Per-pattern topic rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicRule>,
    /// Server-Sent Events, long-polling and the topics API.
    pub http: HttpConfig,
    /// Socket.IO clients at `/socket.io/`.
    #[serde(default)]
    pub socketio: SocketIoConfig,
    /// Presence for topics whose rule sets `presence = true`.
    pub presence: PresenceConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Tokens, API keys and topic permissions.
    pub auth: AuthConfig,
    /// Certificates for `wss://` and `https://`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Cluster mode over NATS; off (a single node) when `nats_url` is empty.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// permessage-deflate on WebSockets and gzip on HTTP answers.
    #[serde(default)]
    pub compression: CompressionConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections per IP address; 0: no limit.
    pub max_connections_per_ip: usize,
    /// Time allowed for request headers and the upgrade.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// A silent connection is closed after this; zero: never.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Server ping period; zero: no pings.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// How long a drain may take.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// On a stop signal, how long to keep serving with `/readyz` at 503 before
    /// closing connections, so load balancers stop sending new clients first.
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// Browser `Origin`s allowed to open WebSockets, SSE and iframe streams; empty: any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The topic of a WebSocket opened on `/` (`new WebSocket("ws://host:port")`), a raw
    /// topic socket like `/ws/t/{topic}`; empty: no WebSocket on `/`.
    pub root_topic: String,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest client message in bytes.
    pub max_message_bytes: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// Messages one connection may publish per second; 0: no limit.
    #[serde(default)]
    pub publish_rate_per_connection: u32,
    /// Most topics the broker holds at once; 0: no limit.
    #[serde(default)]
    pub max_topics: usize,
}

/// `[publish]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// How long a publish's idempotency key is remembered.
    #[serde(with = "duration")]
    pub idempotency_window: Duration,
    /// Most keys one topic remembers at once on a single node.
    pub idempotency_max_keys: usize,
}

/// What happens when a message does not fit a subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Policy {
    /// Drop the oldest queued messages.
    DropOldest,
    /// Drop the new message.
    DropNewest,
    /// Keep only the newest queued message per topic.
    Conflate,
    /// Close the connection (1008, `slow consumer`).
    Disconnect,
}

impl TryFrom<String> for Policy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "drop_oldest" => Ok(Policy::DropOldest),
            "drop_newest" => Ok(Policy::DropNewest),
            "conflate" => Ok(Policy::Conflate),
            "disconnect" => Ok(Policy::Disconnect),
            _ => Err(format!(
                "`{s}` is not a policy; use drop_oldest, drop_newest, conflate or disconnect"
            )),
        }
    }
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Most queued messages per connection.
    pub max_messages: usize,
    /// Most queued bytes per connection.
    pub max_bytes: usize,
    /// Default overflow policy.
    pub policy: Policy,
    /// Writer batching delay; zero: write at once.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Flush shards (the tasks that write plain TCP WebSockets); 0: one per core but one.
    pub flush_shards: usize,
}

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Messages kept per topic; 0: none.
    pub size: usize,
    /// Age limit of kept messages.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

/// `[http]`: the HTTP ways in besides publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Period of the heartbeat on idle SSE and iframe streams, so proxies keep them open.
    #[serde(with = "duration")]
    pub sse_heartbeat: Duration,
    /// Longest wait a long-poll may ask for with `timeout`; longer asks are cut to this.
    #[serde(with = "duration")]
    pub poll_max_timeout: Duration,
    /// Most topics or messages one API answer holds; a larger `limit` is a 400.
    pub max_limit: usize,
}

/// `[socketio]`: Socket.IO v4 clients (Engine.IO v4, long-polling and WebSocket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketIoConfig {
    /// Serve Socket.IO clients at all.
    pub enabled: bool,
    /// The path clients connect to (socket.io-client's `path` option), ending in `/`.
    pub path: String,
    /// How often the server pings each client (sent to clients as `pingInterval`).
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// How long a client has to answer a ping before it is dropped (`pingTimeout`).
    #[serde(with = "duration")]
    pub ping_timeout: Duration,
    /// How long a new connection has to join a namespace before it is dropped.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            enabled: true,
            path: "/socket.io/".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(45),
        }
    }
}

/// `[presence]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Most member ids a presence answer lists (the count is always exact).
    pub max_members_listed: usize,
}

/// One `[[topics]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRule {
    /// Topic or pattern the rule applies to.
    pub pattern: String,
    /// Messages kept; defaults to `[history] size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_size: Option<usize>,
    /// Age limit; defaults to `[history] ttl`.
    #[serde(default, with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Keep the latest message even with no history.
    #[serde(default)]
    pub last_value: bool,
    /// Overflow policy; defaults to `[queue] policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Announce joins and leaves to the topic's subscribers and answer presence queries.
    #[serde(default)]
    pub presence: bool,
    /// Compress the topic's messages for clients that negotiated permessage-deflate;
    /// defaults to `[compression] enabled`. False for data that does not compress
    /// (already compressed images, encrypted payloads), to spare the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<bool>,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format; use text or json")),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether metrics are kept and served at `/metrics`.
    pub enabled: bool,
    /// A separate address for `/metrics` (and the probes); empty: the main listener.
    pub listen: String,
}

impl MetricsConfig {
    /// The separate metrics address, if one is set.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            ConfigError::invalid(
                "metrics.listen",
                format!(
                    "`{}` is not an address; use IP:PORT such as 0.0.0.0:9090, or \"\" to serve /metrics on server.listen",
                    self.listen
                ),
            )
        })
    }
}

/// What the broker's own `$` topics get, whatever the rules say: five minutes of
/// one-a-second snapshots, so a dashboard that subscribes with `since` fills its charts.
pub const SYSTEM_TOPIC_SETTINGS: TopicSettings = TopicSettings {
    history_size: 300,
    ttl: Duration::from_secs(300),
    last_value: true,
    policy: Policy::DropOldest,
    presence: false,
    deflate: None,
};

/// The settings one topic gets from the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Messages kept for replay.
    pub history_size: usize,
    /// Age limit of kept messages.
    pub ttl: Duration,
    /// Keep the latest message even with no history.
    pub last_value: bool,
    /// Overflow policy for this topic's subscribers.
    pub policy: Policy,
    /// Track members, announce joins and leaves.
    pub presence: bool,
    /// How its messages are compressed for permessage-deflate clients; `None`: never.
    pub deflate: Option<Deflate>,
}

impl Config {
    /// Loads the settings: defaults, then `path` (or `./config.toml` if it exists),
    /// then the environment, then `listen` from the command line.
    pub fn load(path: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
        Self::load_from(path, listen, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (tests stay isolated).
    pub fn load_from(
        path: Option<&Path>,
        listen: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let (env, env_lists) = env::split_lists(env, &env::list_keys()?);
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULT_CONFIG, config::FileFormat::Toml));
        builder = match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Load(format!(
                        "config file {} does not exist; pass an existing file to --config",
                        p.display()
                    )));
                }
                builder.add_source(config::File::from(p).format(config::FileFormat::Toml))
            }
            None => builder.add_source(
                config::File::with_name("config.toml")
                    .format(config::FileFormat::Toml)
                    .required(false),
            ),
        };
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        // The list keys set in the environment; no other source sets them, so where this
        // one goes among the sources only matters against the CLI overrides, which win.
        builder = builder.add_source(env_lists);
        if let Some(addr) = listen {
            builder = builder
                .set_override("server.listen", addr)
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        let raw = builder.build().map_err(|e| ConfigError::Load(describe(e)))?;
        let config: Config = raw.try_deserialize().map_err(|e| ConfigError::Load(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against what it allows.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.metrics.listen_addr()?;
        let s = &self.server;
        positive("server.max_connections", s.max_connections)?;
        if !s.ping_interval.is_zero() && !s.idle_timeout.is_zero() && s.idle_timeout <= s.ping_interval {
            return Err(ConfigError::invalid(
                "server.idle_timeout",
                format!(
                    "{} must be longer than server.ping_interval ({}), or quiet clients are closed before a ping can prove them alive",
                    humantime::format_duration(s.idle_timeout),
                    humantime::format_duration(s.ping_interval)
                ),
            ));
        }
        positive("server.handshake_timeout", s.handshake_timeout.as_millis() as usize)?;
        positive("limits.max_message_bytes", self.limits.max_message_bytes)?;
        if self.limits.max_message_bytes > 64 << 20 {
            return Err(ConfigError::invalid(
                "limits.max_message_bytes",
                format!("{} is over the 64 MiB maximum", self.limits.max_message_bytes),
            ));
        }
        positive(
            "limits.max_subscriptions_per_connection",
            self.limits.max_subscriptions_per_connection,
        )?;
        positive(
            "publish.idempotency_window",
            self.publish.idempotency_window.as_millis() as usize,
        )?;
        if self.publish.idempotency_window > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::invalid(
                "publish.idempotency_window",
                "is over the 24h maximum: every key would be kept that long",
            ));
        }
        positive("publish.idempotency_max_keys", self.publish.idempotency_max_keys)?;
        positive("queue.max_messages", self.queue.max_messages)?;
        positive("queue.max_bytes", self.queue.max_bytes)?;
        if self.queue.flush_shards > MAX_FLUSH_SHARDS {
            return Err(ConfigError::invalid(
                "queue.flush_shards",
                format!(
                    "{} is over the {MAX_FLUSH_SHARDS} maximum; use about one per core, or 0 to let the broker choose",
                    self.queue.flush_shards
                ),
            ));
        }
        positive("http.max_limit", self.http.max_limit)?;
        let sio = &self.socketio;
        positive("socketio.ping_interval", sio.ping_interval.as_millis() as usize)?;
        positive("socketio.ping_timeout", sio.ping_timeout.as_millis() as usize)?;
        positive("socketio.connect_timeout", sio.connect_timeout.as_millis() as usize)?;
        if !sio.path.starts_with('/') || !sio.path.ends_with('/') || sio.path.len() < 2 {
            return Err(ConfigError::invalid(
                "socketio.path",
                format!("`{}` must start and end with `/`, as in `/socket.io/`", sio.path),
            ));
        }
        positive("http.sse_heartbeat", self.http.sse_heartbeat.as_millis() as usize)?;
        self.auth.validate()?;
        self.tls.validate()?;
        self.cluster.validate()?;
        self.compression.validate()?;
        // The key files and certificates are read where they are used, when the broker
        // starts or reloads (`broker::Credentials`): the values are checked here.
        for (i, o) in s.allowed_origins.iter().enumerate() {
            if o.is_empty() || o.ends_with('/') {
                return Err(ConfigError::invalid(
                    format!("server.allowed_origins[{i}]"),
                    format!("`{o}` is not an origin; use forms like \"https://app.example.com\" or \"https://*.example.com\""),
                ));
            }
        }
        if !s.root_topic.is_empty() {
            TopicName::parse(&s.root_topic).map_err(|e| {
                let problem = match e {
                    crate::error::TopicError::Wildcard(p) => format!("`{p}` is a pattern"),
                    other => other.to_string(),
                };
                ConfigError::invalid(
                    "server.root_topic",
                    format!(
                        "{problem}; use an exact topic name such as \"root\", or \"\" for no WebSocket on the root path"
                    ),
                )
            })?;
        }
        for (i, rule) in self.topics.iter().enumerate() {
            Filter::parse(&rule.pattern)
                .map_err(|e| ConfigError::invalid(format!("topics[{i}].pattern"), e.to_string()))?;
        }
        Ok(())
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!(
                    "`{}` is not an address; use IP:PORT such as 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })
    }

    /// The settings of `topic`: the first matching rule, with defaults for what it leaves out.
    pub fn topic_settings(&self, topic: &TopicName) -> TopicSettings {
        if topic.is_system() {
            return TopicSettings {
                deflate: self.compression.for_topic(true),
                ..SYSTEM_TOPIC_SETTINGS
            };
        }
        let rule = self
            .topics
            .iter()
            .find(|r| Filter::parse(&r.pattern).is_ok_and(|f| f.matches(topic)));
        TopicSettings {
            history_size: rule.and_then(|r| r.history_size).unwrap_or(self.history.size),
            ttl: rule.and_then(|r| r.ttl).unwrap_or(self.history.ttl),
            last_value: rule.is_some_and(|r| r.last_value),
            policy: rule.and_then(|r| r.policy).unwrap_or(self.queue.policy),
            presence: rule.is_some_and(|r| r.presence),
            deflate: self
                .compression
                .for_topic(rule.and_then(|r| r.compression).unwrap_or(true)),
        }
    }

    /// The effective settings as TOML, for `fanout check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
    }
}

impl Default for Config {
    /// The embedded defaults.
    fn default() -> Self {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_CONFIG, config::FileFormat::Toml))
            .build();
        // The embedded file is checked by a unit test, so this cannot fail at run time.
        raw.and_then(|r| r.try_deserialize())
            .expect("the embedded config.toml is valid")
    }
}

fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// Words the config crate's errors in terms of keys a user can find.
fn describe(e: config::ConfigError) -> String {
    let text = e.to_string();
    if text.contains("unknown field") {
        format!("{text}; see config.toml for the keys each section allows")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
