//! A real `nats-server` with JetStream for the cluster tests: its own free port
//! and store directory, killed on drop.
//!
//! Without `nats-server` installed, [`NatsServer::start`] returns `None` after a
//! loud banner, so the caller skips; with `CI` set it panics instead, because CI
//! must run these tests (`.ci/run` installs the package).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::process::Output;
use super::WAIT;

/// A running nats-server child process.
pub struct NatsServer {
    /// Where it listens (and listens again after a restart).
    pub addr: SocketAddr,
    store: PathBuf,
    child: Option<Child>,
}

/// The nats-server binary, if installed (Debian puts it in /usr/sbin);
/// `FANOUT_TEST_NATS_SERVER` names another one (or a missing one, to see the skip).
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FANOUT_TEST_NATS_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    from_path
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsServer {
    /// Starts nats-server with JetStream on a free port, or `None` (skip) when it is not installed.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_on(test, free_port())
    }

    /// As [`NatsServer::start`], on `port`.
    pub fn start_on(test: &str, port: u16) -> Option<Self> {
        if binary().is_none() {
            if std::env::var_os("CI").is_some() {
                panic!("nats-server is not installed but CI is set: install it (apt-get install -y nats-server) so the cluster tests run");
            }
            eprintln!("\n{}\n!! SKIPPED {test}: nats-server is not installed.\n!! Install it (Debian: apt-get install nats-server) to run the cluster tests.\n{}\n", "!".repeat(72), "!".repeat(72));
            return None;
        }
        let store = std::env::temp_dir().join(format!("fanout-nats-{test}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).unwrap();
        let mut s = NatsServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            store,
            child: None,
        };
        s.spawn();
        Some(s)
    }

    /// The `nats://` URL of the server.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary().unwrap())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.addr.port().to_string(), "-sd"])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server");
        // It logs to stderr and prints `Server is ready` once it accepts clients, with
        // JetStream started before. The reader goes on to the end, so the pipe never fills.
        let output = Output::collect(vec![Box::new(child.stderr.take().unwrap())]);
        self.child = Some(child);
        let ready = output.wait_for_line(|l| l.contains("Server is ready"), Instant::now() + WAIT);
        if let Err(why) = ready {
            panic!(
                "nats-server on {} is not ready ({why:?}); its log:\n{}",
                self.addr,
                output.lines().join("\n")
            );
        }
    }

    /// Kills the server (abruptly, like a crash); its store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
