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
mod tests {
    use super::*;
    use std::io::Write;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = tempfile(toml);
        f.flush().unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(Some(&f.path), None, env)
    }

    struct TempFile {
        path: std::path::PathBuf,
        file: std::fs::File,
    }
    impl Write for TempFile {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.file.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
    fn tempfile(content: &str) -> TempFile {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fanout-config-{}-{n}.toml", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(content.as_bytes()).unwrap();
        TempFile { path, file }
    }

    #[test]
    fn the_embedded_defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.queue.policy, Policy::DropOldest);
        assert_eq!(c.server.ping_interval, Duration::from_secs(20));
    }

    #[test]
    fn file_then_env_override_the_defaults() {
        let c = load(
            "[queue]\npolicy = \"conflate\"\n[server]\nlisten = \"127.0.0.1:9000\"\n",
            &[
                ("FANOUT__SERVER__LISTEN", "127.0.0.1:9001"),
                ("FANOUT__QUEUE__MAX_MESSAGES", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.queue.policy, Policy::Conflate);
        assert_eq!(c.server.listen, "127.0.0.1:9001");
        assert_eq!(c.queue.max_messages, 7);
    }

    #[test]
    fn the_readme_compression_example_loads_and_a_rule_turns_it_off() {
        let c = load(
            "[compression]\nenabled = true\nmin_bytes = 256\nlevel = 3\n\n\
             [[topics]]\npattern = \"images.>\"\ncompression = false\n",
            &[("FANOUT__COMPRESSION__LEVEL", "6")],
        )
        .unwrap();
        let topic = |t: &str| c.topic_settings(&TopicName::parse(t).unwrap()).deflate;
        assert_eq!(topic("images.cam1"), None);
        assert_eq!(
            topic("scores.live"),
            Some(Deflate {
                level: 6,
                min_bytes: 256
            })
        );
        assert_eq!(topic("$sys.stats").map(|d| d.level), Some(6));
        let e = load("[compression]\nlevel = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("compression.level") && e.contains("1 (fastest) to 9"), "{e}");
        let e = load("[compression]\nwindow = 10\n", &[]).unwrap_err().to_string();
        assert!(e.contains("window"), "{e}");
        let off = load("", &[("FANOUT__COMPRESSION__ENABLED", "false")]).unwrap();
        assert_eq!(off.topic_settings(&TopicName::parse("a").unwrap()).deflate, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("[server]\nlisten_on = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("listen_on"), "{e}");
        let e = load("[nope]\na = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_allowed_values() {
        let e = load("[queue]\npolicy = \"drop_all\"\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("drop_all") && e.contains("drop_oldest") && e.contains("conflate"),
            "{e}"
        );
        let e = load("[server]\nlisten = \"localhost\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = load("[server]\nidle_timeout = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout") && e.contains("soon"), "{e}");
        let e = load("[queue]\nmax_messages = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("queue.max_messages"), "{e}");
        let e = load("[queue]\nflush_shards = 100000\n", &[]).unwrap_err().to_string();
        assert!(e.contains("queue.flush_shards") && e.contains("1024"), "{e}");
        let e = load("[[topics]]\npattern = \"a..b\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("topics[0].pattern"), "{e}");
        let e = load("[server]\nidle_timeout = \"5s\"\nping_interval = \"10s\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.idle_timeout"), "{e}");
    }

    #[test]
    fn auth_and_tls_errors_name_the_key() {
        let e = load("[auth]\nmode = \"jwt\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("auth.mode") && e.contains("jwt_secret"), "{e}");
        let e = load("[auth]\nmode = \"oauth\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("oauth") && e.contains("none or jwt"), "{e}");
        let e = load("[auth]\nanonymous_subscribe = [\"a..b\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.anonymous_subscribe[0]"), "{e}");
        let e = load("[tls]\ncert_file = \"/x.pem\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("tls.key_file"), "{e}");
        let e = load("[cluster]\nnats_url = \"nats://x:4222\"\nstream = \"a.b\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.stream"), "{e}");
        let e = load("[cluster]\nnats_url = \"http://x:y:z\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.nats_url"), "{e}");
        let c = load(
            "",
            &[(
                "FANOUT__CLUSTER__NATS_URL",
                "nats://127.0.0.1:4222, nats://127.0.0.2:4222",
            )],
        )
        .unwrap();
        assert_eq!(c.cluster.urls().len(), 2);
        assert!(c.cluster.enabled() && c.cluster.subject_prefix == "fanout");
        let e = load("[server]\nallowed_origins = [\"https://a.com/\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.allowed_origins[0]"), "{e}");
        let c = load("[auth]\nmode = \"jwt\"\n", &[("FANOUT__AUTH__JWT_SECRET", "s")]).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Jwt);
    }

    #[test]
    fn the_root_topic_is_a_topic_name_or_empty_from_the_file_or_the_environment() {
        assert_eq!(Config::default().server.root_topic, "root");
        let c = load("[server]\nroot_topic = \"chat.lobby\"\n", &[]).unwrap();
        assert_eq!(c.server.root_topic, "chat.lobby");
        for (value, expected) in [("news.live", "news.live"), ("", ""), ("42", "42")] {
            let c = load("", &[("FANOUT__SERVER__ROOT_TOPIC", value)]).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(c.server.root_topic, expected, "from {value:?}");
        }
        for bad in ["a..b", "quotes.*", "quotes.>", "has space"] {
            let e = load(&format!("[server]\nroot_topic = \"{bad}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("server.root_topic") && e.contains(bad), "{bad}: {e}");
            let e = load("", &[("FANOUT__SERVER__ROOT_TOPIC", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("server.root_topic"), "{bad} from the environment: {e}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_a_topics_settings() {
        let c = load(
            "[[topics]]\npattern = \"quotes.>\"\nhistory_size = 0\nlast_value = true\npolicy = \"conflate\"\n\
             [[topics]]\npattern = \">\"\nhistory_size = 5\n",
            &[],
        )
        .unwrap();
        let q = c.topic_settings(&TopicName::parse("quotes.X.Y").unwrap());
        assert_eq!((q.history_size, q.last_value, q.policy), (0, true, Policy::Conflate));
        let o = c.topic_settings(&TopicName::parse("other").unwrap());
        assert_eq!((o.history_size, o.last_value, o.policy), (5, false, Policy::DropOldest));
    }

    #[test]
    fn the_effective_config_prints_and_parses_back() {
        let c = Config::default();
        let printed = c.to_toml();
        let back: Config = toml::from_str(&printed).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn lists_from_the_environment_are_comma_separated_and_trimmed() {
        let c = load(
            "",
            &[
                ("FANOUT__AUTH__PUBLISH_KEYS", "k1,k2"),
                ("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "public.>, news.*"),
                (
                    "FANOUT__SERVER__ALLOWED_ORIGINS",
                    " https://a.example.com ,https://*.example.org ",
                ),
            ],
        )
        .unwrap();
        assert_eq!(c.auth.publish_keys, ["k1", "k2"]);
        assert_eq!(c.auth.anonymous_subscribe, ["public.>", "news.*"]);
        assert_eq!(
            c.server.allowed_origins,
            ["https://a.example.com", "https://*.example.org"]
        );
    }

    #[test]
    fn an_empty_list_from_the_environment_replaces_the_files_list() {
        let file = "[server]\nallowed_origins = [\"https://x.example.com\", \"https://y.example.com\"]\n\
                    [auth]\npublish_keys = [\"f1\", \"f2\", \"f3\"]\n";
        let c = load(
            file,
            &[
                ("FANOUT__SERVER__ALLOWED_ORIGINS", ""),
                ("FANOUT__AUTH__PUBLISH_KEYS", " , ,"),
            ],
        )
        .unwrap();
        assert!(c.server.allowed_origins.is_empty(), "{:?}", c.server.allowed_origins);
        assert!(c.auth.publish_keys.is_empty(), "{:?}", c.auth.publish_keys);
        // A shorter list replaces the file's whole list, not just its first items.
        let c = load(file, &[("FANOUT__AUTH__PUBLISH_KEYS", "e1,,e2,")]).unwrap();
        assert_eq!(c.auth.publish_keys, ["e1", "e2"]);
    }

    #[test]
    fn one_item_is_a_list_even_when_it_looks_like_a_number() {
        for (value, item) in [
            ("k1", "k1"),
            (" 12345 ", "12345"),
            ("true", "true"),
            ("1.5", "1.5"),
            ("nan", "nan"),
        ] {
            let c = load("", &[("FANOUT__AUTH__PUBLISH_KEYS", value)]).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(c.auth.publish_keys, [item], "from {value:?}");
        }
    }

    #[test]
    fn commas_in_string_keys_are_left_alone() {
        let c = load(
            "",
            &[
                (
                    "FANOUT__CLUSTER__NATS_URL",
                    "nats://127.0.0.1:4222,nats://127.0.0.2:4222",
                ),
                ("FANOUT__AUTH__JWT_SECRET", "a,b"),
            ],
        )
        .unwrap();
        assert_eq!(c.cluster.nats_url, "nats://127.0.0.1:4222,nats://127.0.0.2:4222");
        assert_eq!(c.auth.jwt_secret, "a,b");
    }

    #[test]
    fn a_bad_item_from_the_environment_names_the_key_and_its_index() {
        let e = load("", &[("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "ok.*, a..b")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.anonymous_subscribe[1]"), "{e}");
        let e = load("", &[("FANOUT__SERVER__ALLOWED_ORIGINS", "https://a.example.com/")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.allowed_origins[0]"), "{e}");
    }

    #[test]
    fn every_list_key_takes_a_comma_separated_value() {
        // Items plain enough that every list key's validation takes them.
        for key in env::list_keys().unwrap() {
            let var = format!("FANOUT__{}", key.to_uppercase().replace('.', "__"));
            let c = load("", &[(var.as_str(), "x1, x2")]).unwrap_or_else(|e| panic!("{var}: {e}"));
            let mut value = serde_json::to_value(&c).unwrap();
            for part in key.split('.') {
                value = value[part].take();
            }
            assert_eq!(value, serde_json::json!(["x1", "x2"]), "{var}");
        }
    }
}
