//! Command-line arguments (clap derive): one subcommand per scenario and a
//! shared set of target, rate-step and output flags.

use crate::protocol::Protocol;
use crate::shape::PayloadShape;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "fanout-loadtest",
    version,
    about = "Load-test harness for the fanout WebSocket pub/sub broker (and any broadcast WebSocket server)",
    long_about = "Load-test harness for the fanout WebSocket pub/sub broker.\n\n\
Every payload carries its publisher id, a sequence number and the *intended* send time from a \
fixed-rate schedule, so latency = receive time - intended send time (no coordinated omission). \
Each scenario runs rate steps (--rates, total published messages/s per step) and reports delivered \
messages/s, expected vs received, loss, duplicates, reordering, gap notices, latency percentiles \
and, with --broker-pid, the broker's CPU and RSS. The maximum sustained rate is the highest step \
whose p99 stays under --p99-limit with at least 99.99% delivered.\n\n\
Protocols: raw (frames on {url}{--raw-path-template}, works against any broadcast server), \
json ({url}/ws?format=json), msgpack ({url}/ws?format=msgpack) and socketio (Socket.IO v4 over \
its WebSocket transport on {url}/socket.io/, a topic per namespace, `message` events; fanout, \
fanin, rooms, slow and connect only).\n\n\
TLS: wss:// URLs speak TLS 1.3/1.2 (rustls, ring) with --ca-file PATH or --insecure; the report \
says `tls: yes` with the negotiated version and cipher suite, and each step the TLS records per \
delivery.\n\n\
Compression: --deflate offers permessage-deflate as browsers do, on every protocol; each step \
reports the wire bytes per delivery (what measured subscribers read from their sockets, frame \
headers included, divided by deliveries). --payload-shape quote|scoreboard makes payloads JSON \
objects that compress like real feeds."
)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Scenario,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// P publishers -> N subscribers on one topic: the broadcast fan-out cost.
    Fanout {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Publishing connections.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Subscribing connections.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
    },
    /// N publishers -> one (or a few) subscriber(s): the ingest path.
    Fanin {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Publishing connections.
        #[arg(long, default_value_t = 100)]
        publishers: usize,
        /// Subscribing connections.
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
    },
    /// T topics, exact subscribers plus `*` and `>` pattern subscribers
    /// (the stock-quote shape). Needs --protocol json or msgpack.
    Topics {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Number of topics `lt.q.g<G>.s<I>`.
        #[arg(long, default_value_t = 100)]
        topics: usize,
        /// Topic groups (`lt.q.g<G>.*` patterns).
        #[arg(long, default_value_t = 10)]
        groups: usize,
        /// Publishing connections (each owns a share of the topics).
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Subscribers on one exact topic each (round robin).
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Subscribers on one group pattern `lt.q.g<G>.*` each.
        #[arg(long, default_value_t = 10)]
        pattern_subscribers: usize,
        /// Subscribers on everything, `lt.q.>`.
        #[arg(long, default_value_t = 2)]
        firehose_subscribers: usize,
    },
    /// R rooms of C clients: every client publishes and receives its room
    /// (danmaku, chat). The step rate is split over all clients.
    Rooms {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Number of rooms.
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// Clients per room.
        #[arg(long, default_value_t = 10)]
        clients: usize,
    },
    /// Fan-out where a fraction of subscribers stop reading: the others must
    /// stay unaffected; watch the broker's RSS (--broker-pid).
    Slow {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Publishing connections.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Subscribing connections (slow ones included).
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Fraction of subscribers that never read after subscribing.
        #[arg(long, default_value_t = 0.2)]
        slow_fraction: f64,
    },
    /// Open C connections as fast as possible, hold them, report the connect
    /// rate and the broker's RSS per connection.
    Connect {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// How long to hold them open.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        hold: Duration,
        /// A topic every connection subscribes to, so one publisher reaches
        /// them all (JSON, MessagePack or Socket.IO, where it is a namespace;
        /// Socket.IO joins the main namespace without it); none by default.
        #[arg(long)]
        subscribe: Option<String>,
        /// Reconnect (with `since` and the topic's epoch) when the broker
        /// drops a connection, after exponential backoff with full jitter,
        /// as browsers do: kill and restart the broker during --hold to
        /// measure the reconnect storm.
        #[arg(long)]
        reconnect: bool,
    },
    /// Fan-out with reconnect storms: subscribers drop and resubscribe with
    /// `since` (last seq seen); measures loss, duplicates and gap notices
    /// across reconnects. Needs --protocol json or msgpack.
    Reconnect {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Publishing connections.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Subscribing connections.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Time between storms.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        storm_interval: Duration,
        /// Fraction of subscribers reconnecting in each storm.
        #[arg(long, default_value_t = 0.3)]
        storm_fraction: f64,
    },
    /// Soak: mixed publishers, exact and pattern subscribers, a fraction of
    /// slow readers and reconnect storms at one rate (the first of --rates)
    /// for --duration. Needs --protocol json or msgpack.
    Soak {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Number of topics `lt.q.g<G>.s<I>`.
        #[arg(long, default_value_t = 50)]
        topics: usize,
        /// Topic groups (`lt.q.g<G>.*` patterns).
        #[arg(long, default_value_t = 5)]
        groups: usize,
        /// Publishing connections (each owns a share of the topics).
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Subscribers on one exact topic each (round robin); these reconnect.
        #[arg(long, default_value_t = 200)]
        subscribers: usize,
        /// Subscribers on one group pattern each.
        #[arg(long, default_value_t = 20)]
        pattern_subscribers: usize,
        /// Subscribers on everything, `lt.q.>`.
        #[arg(long, default_value_t = 2)]
        firehose_subscribers: usize,
        /// Fraction of subscribers that never read after subscribing.
        #[arg(long, default_value_t = 0.05)]
        slow_fraction: f64,
        /// Time between reconnect storms.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        storm_interval: Duration,
        /// Fraction of the reconnecting subscribers in each storm.
        #[arg(long, default_value_t = 0.1)]
        storm_fraction: f64,
    },
    /// Not a scenario: the floor server, the simplest possible broadcast
    /// WebSocket server (blocking epoll, one write() per recipient), to
    /// measure against with `--protocol raw --raw-path-template /`. A
    /// benchmark peer, not a product; prints its counters on SIGINT/SIGTERM.
    FloorServer {
        /// Address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:9002")]
        listen: std::net::SocketAddr,
        /// Epoll threads (the one that reads a message writes it to everyone).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// (internal) Run as a worker process: JSON lines on stdin/stdout.
    #[command(hide = true)]
    Worker,
}

/// Flags every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Base URL of the server (loopback only unless --allow-remote). Several,
    /// comma-separated (a cluster's nodes): connections take them in turn.
    /// `wss://` speaks TLS (rustls): trust the server with --ca-file or
    /// --insecure.
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// wss://: trust the certificates in this PEM file (the CA that signed
    /// the server's certificate, or a self-signed server certificate
    /// itself). The certificate must name the URL's host.
    #[arg(long, value_name = "PATH", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,
    /// wss://: accept any server certificate, whoever signed it and
    /// whatever it names (test certificates); the handshake signature is
    /// still verified.
    #[arg(long)]
    pub insecure: bool,
    /// Wire format: raw frames, the broker's json / msgpack envelopes, or
    /// Socket.IO (a topic per namespace).
    #[arg(long, value_enum, default_value = "json")]
    pub protocol: Protocol,
    /// Raw mode path; `{topic}` is replaced by the topic. Use `/` for a
    /// generic broadcast server (one broadcast domain, no topics).
    #[arg(long, default_value = "/ws/t/{topic}")]
    pub raw_path_template: String,
    /// Rate steps: total published messages/s per step, e.g. 10k,50k,100k.
    #[arg(long, value_delimiter = ',', default_value = "1k")]
    pub rates: Vec<String>,
    /// Publishing time of each step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// Time after each step for in-flight messages to arrive.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Hard cap on the whole run; steps that would not fit are skipped.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// A step passes when its p99 latency stays under this.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub p99_limit: Duration,
    /// Keep stepping after a failing step (default: stop at the first).
    #[arg(long)]
    pub keep_going: bool,
    /// Stop after N failing steps in a row (default 1: at the first), so
    /// one noisy step does not end a ladder; ignored with --keep-going.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failed_steps: u32,
    /// Payload size in bytes: the padded stamp's length, or about (within
    /// 10%) a shaped payload's (quote from ~150, scoreboard from ~120).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// What payloads look like: `padding` (the stamp padded with `x`, which
    /// deflate shrinks to nearly nothing), or a JSON object with the stamp
    /// in its first field `id`: `quote` (a stock quote; the benchmark's is
    /// 200 B) or `scoreboard` (live games; 2048 B). With json/msgpack the
    /// object is the publish's `data` value (a map in MessagePack); raw
    /// sends it as the text frame, socketio as the event's argument.
    #[arg(long, value_enum, default_value = "padding")]
    pub payload_shape: PayloadShape,
    /// Offer permessage-deflate (RFC 7692) on every connection, publishers
    /// and subscribers, on every protocol (Socket.IO included), exactly as
    /// browsers do: `Sec-WebSocket-Extensions: permessage-deflate;
    /// client_max_window_bits`. Compressed messages are inflated (keeping
    /// the window across messages unless the server answered
    /// server_no_context_takeover); an answer with an extension or parameter
    /// RFC 7692 does not allow fails the connection. The report says on how
    /// many connections it was agreed. Publishes go uncompressed (RSV1
    /// clear) unless --deflate-publish.
    #[arg(long)]
    pub deflate: bool,
    /// Also compress publishes where permessage-deflate was agreed, at zlib
    /// level LEVEL (1 fastest .. 9 smallest; 1 without a value), within the
    /// server's client_max_window_bits and client_no_context_takeover.
    #[arg(long, value_name = "LEVEL", num_args = 0..=1, default_missing_value = "1",
          requires = "deflate", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub deflate_publish: Option<u32>,
    /// Worker processes to spread connections over (1: in-process).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Receive threads per worker: blocking epoll loops that read every
    /// connection (1 is plenty on a small machine; more for many cores).
    #[arg(long, default_value_t = 1)]
    pub receive_threads: usize,
    /// Bind client sockets to 127.0.0.1..=127.0.0.N (0: do not bind).
    #[arg(long, default_value_t = 0)]
    pub local_addrs: u32,
    /// Connections opened concurrently per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Timeout for one connection's handshake and subscribe acks.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Pause after everyone is connected/subscribed, before the first step.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub settle: Duration,
    /// Upper bound on connections, as a guard against typos.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
    /// PID of the broker, to report its CPU% and RSS (same machine only).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with SVG plots to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Allow a non-loopback target.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration `{s}` (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_and_cli_shape() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["x", "fanout", "--rates", "1k,2k", "--protocol", "raw"]).unwrap();
        let Scenario::Fanout { common, .. } = cli.command else {
            panic!()
        };
        assert_eq!(common.rates, vec!["1k", "2k"]);
        assert_eq!(common.max_failed_steps, 1);
        let cli = Cli::try_parse_from(["x", "fanout", "--max-failed-steps", "2", "--protocol", "socketio"]).unwrap();
        let Scenario::Fanout { common, .. } = cli.command else {
            panic!()
        };
        assert_eq!((common.max_failed_steps, common.protocol), (2, Protocol::Socketio));
        assert!(Cli::try_parse_from(["x", "fanout", "--max-failed-steps", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "x",
            "fanout",
            "--deflate",
            "--deflate-publish",
            "--payload-shape",
            "quote",
        ])
        .unwrap();
        let Scenario::Fanout { common, .. } = cli.command else {
            panic!()
        };
        assert_eq!(
            (common.deflate, common.deflate_publish, common.payload_shape),
            (true, Some(1), PayloadShape::Quote)
        );
        let cli = Cli::try_parse_from(["x", "fanout", "--deflate", "--deflate-publish", "6"]).unwrap();
        let Scenario::Fanout { common, .. } = cli.command else {
            panic!()
        };
        assert_eq!(
            (common.deflate_publish, common.payload_shape),
            (Some(6), PayloadShape::Padding)
        );
        assert!(
            Cli::try_parse_from(["x", "fanout", "--deflate-publish"]).is_err(),
            "needs --deflate"
        );
        assert!(Cli::try_parse_from(["x", "fanout", "--deflate", "--deflate-publish", "10"]).is_err());
        let cli =
            Cli::try_parse_from(["x", "connect", "--url", "wss://127.0.0.1:8443", "--ca-file", "ca.pem"]).unwrap();
        let Scenario::Connect { common, .. } = cli.command else {
            panic!()
        };
        assert_eq!((common.ca_file, common.insecure), (Some("ca.pem".into()), false));
        let cli = Cli::try_parse_from(["x", "fanout", "--insecure"]).unwrap();
        let Scenario::Fanout { common, .. } = cli.command else {
            panic!()
        };
        assert!(common.insecure && common.ca_file.is_none());
        assert!(
            Cli::try_parse_from(["x", "fanout", "--insecure", "--ca-file", "ca.pem"]).is_err(),
            "one or the other"
        );
    }
}
