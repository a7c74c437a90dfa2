//! fanout: a WebSocket pub/sub broker for live feeds.
//!
//! The modules in layers, from the bottom up; a module imports only from
//! layers below its own, and the leaves at the end from nothing above them.
//!
//! - [`topic`]: topic names and `*`/`>` patterns, checked when built.
//!   [`protocol`]: requests and replies in JSON and MessagePack; a published
//!   [`protocol::Message`] and its frames, encoded once per format; the
//!   [`protocol::Epoch`] a topic's seqs count in.
//! - [`queue`]: the bounded per-connection [`queue::SendQueue`], its overflow
//!   policies, who writes it out, and the ready lists its writers take it
//!   from; [`flush`]: the per-core tasks that write ready queues to plain TCP
//!   sockets; [`history`]: a topic's ring of recent messages.
//! - [`registry`]: the sharded topic table and the wildcard index;
//!   [`cluster`] beside it: the NATS bridge of cluster mode; [`connections`]:
//!   the table of open sessions an operator can list.
//! - [`publish`]: the one publish entry point every way in calls (checks,
//!   limits, counting, one node or the cluster).
//! - [`hub`]: what every connection shares (registry, publish entry point,
//!   connection table, current settings and auth, metrics, flush shards, stop
//!   signal).
//! - [`session`]: one connection's subscriptions and requests, the writing
//!   its own task does, and the keepalive sweep (pings, idle timeout).
//! - [`transport`]: WebSocket (`/ws`, `/ws/t/{topic}`), Socket.IO, SSE,
//!   long-polling and the HTTP API; [`dashboard`]: the embedded page at `/`.
//! - [`broker`]: the hub plus the listener's own state (readiness,
//!   connection limits, TLS, the Socket.IO connections by id) and the
//!   credentials read at start and reload.
//! - [`server`]: accept loop, routing, limits, drain. [`stats`]: the
//!   `$sys.stats` snapshot published every second. Operations: [`reload`]
//!   (SIGHUP), [`signals`] (stop, second stop, reload), [`notify`] (systemd),
//!   [`logging`] (redacting log output), [`memory`] (freed heap returned to
//!   the system).
//! - Leaves anyone may use: [`config`], [`error`], [`metrics`], [`auth`]
//!   (tokens, API keys, topic grants), [`tls`] (certificates), [`clock`]
//!   (wall and monotonic time), [`shutdown`] (the stop signal and the task
//!   tracker).

pub mod auth;
pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod error;
pub mod flush;
pub mod history;
pub mod hub;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod publish;
pub mod queue;
pub mod registry;
pub mod reload;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod signals;
pub mod stats;
pub mod tls;
pub mod topic;
pub mod transport;
