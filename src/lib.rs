//! fanout: a WebSocket pub/sub broker for live feeds.
//!
//! How a message flows, bottom-up through the modules:
//!
//! - [`topic`]: topic names and `*`/`>` patterns, checked when built.
//! - [`protocol`]: requests and replies in JSON and MessagePack; a
//!   published [`protocol::Message`] and its frames, encoded once per format.
//! - [`queue`]: the bounded per-connection [`queue::SendQueue`], its
//!   overflow policies and who writes it out; [`flush`]: the per-core tasks
//!   that write queues to plain TCP sockets; [`history`]: a topic's ring of
//!   recent messages.
//! - [`registry`]: the sharded topic table and the publish entry point;
//!   [`cluster`] beside it: the NATS bridge of cluster mode.
//! - [`session`]: one connection's subscriptions, the writing its own task
//!   does, and the keepalive sweep (pings, idle timeout).
//! - [`transport`]: WebSocket (`/ws`, `/ws/t/{topic}`) and the HTTP API.
//! - [`server`]: accept loop, routing, limits, drain; [`broker`]: shared state.
//! - [`connections`]: the table of open sessions an operator can list.
//! - [`stats`]: the `$sys.stats` snapshot published every second;
//!   [`dashboard`]: the embedded page at `/` that shows it.
//! - Operations: [`logging`] (redacting log output), [`reload`] (SIGHUP),
//!   [`signals`] (stop, second stop, reload), [`notify`] (systemd).
//! - Leaves anyone may use: [`config`], [`error`], [`metrics`], [`shutdown`],
//!   [`auth`] (tokens, API keys, topic grants), [`tls`] (certificates).

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod error;
pub mod flush;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod protocol;
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
