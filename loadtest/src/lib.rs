//! `fanout-loadtest`: the load-test harness of the fanout broker.
//!
//! Modules, from the bottom up:
//! - [`client`]: a small, fast WebSocket client (also used by the broker's tests);
//! - [`payload`], [`shape`], [`clock`], [`stats`], [`protocol`]: what a
//!   message carries and looks like, the shared time base and schedule,
//!   delivery accounting, wire formats;
//! - [`plan`] and [`scenario`]: who connects, publishes and subscribes;
//! - [`engine`] and [`ipc`]: workers running a plan, in-process or as
//!   child processes; [`epoll`]: the small epoll wrapper their receive
//!   threads (and the floor server) are built on;
//! - [`steps`], [`procstat`], [`limits`]: step results, broker CPU/RSS,
//!   up-front checks;
//! - [`outcome`]: what a run produces (the report as data);
//! - [`report`]: renderings of it (table, `--json`, `--html`);
//! - [`run`]: the coordinator, which fills it in and prints each step's line;
//! - [`cli`]: command-line arguments;
//! - [`floor`]: the floor server, a minimal epoll broadcast server to
//!   measure the kernel's own limit against (a benchmark peer).

pub mod cli;
pub mod client;
pub mod clock;
pub mod engine;
pub mod epoll;
pub mod floor;
pub mod ipc;
pub mod limits;
pub mod outcome;
pub mod payload;
pub mod plan;
pub mod procstat;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scenario;
pub mod shape;
pub mod stats;
pub mod steps;
