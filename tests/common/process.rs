//! A real `fanout` process for tests that need signals and log output:
//! started with a config file, its stdout and stderr collected line by line
//! by [`Output`] (which `nats.rs` uses for nats-server's log too). Waiting for
//! a line or for the exit blocks on a condition variable the readers signal.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::WAIT;

/// A broker child process.
pub struct BrokerProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its config file (the test may rewrite it before a SIGHUP).
    pub config: PathBuf,
    child: Child,
    output: Output,
}

/// A config file under the temp dir, unique to this test.
pub fn config_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("fanout-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

impl BrokerProcess {
    /// Starts `fanout --config <file with content> --listen 127.0.0.1:0` with `env`.
    pub fn start(name: &str, content: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(name, content, env, "127.0.0.1:0")
    }

    /// As [`BrokerProcess::start`], listening on `listen` (a restart on the same port).
    pub fn start_on(name: &str, content: &str, env: &[(&str, &str)], listen: &str) -> Self {
        let config = config_file(name, content);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(listen)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the fanout binary");
        let output = Output::collect(vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ]);
        let mut p = BrokerProcess {
            addr: "127.0.0.1:0".parse().unwrap(),
            config,
            child,
            output,
        };
        let line = p.wait_for_line(|l| l.contains("listening") && !l.contains("metrics"));
        p.addr = parse_addr(&line).unwrap_or_else(|| panic!("no address in {line}"));
        p
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lines()
    }

    /// Waits ([`WAIT`] at most) for a line matching `pred`, and returns it.
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        match self.output.wait_for_line(pred, Instant::now() + WAIT) {
            Ok(line) => line,
            Err(Missing::Closed) => {
                // Its output closes when it exits.
                let status = self.child.wait().unwrap();
                panic!("fanout exited with {status}; output:\n{}", self.lines().join("\n"))
            }
            Err(Missing::TimedOut) => panic!("no such line in time; output:\n{}", self.lines().join("\n")),
        }
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Kills the process (SIGKILL, a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for the process to exit, with every line it printed collected.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        // Its pipes close when it exits: once the readers have reached their end, every
        // line is in and the exit status is there to take.
        assert!(
            self.output.wait_closed(Instant::now() + within),
            "fanout did not exit within {within:?}; output:\n{}",
            self.lines().join("\n")
        );
        self.child.wait().unwrap()
    }
}

/// A child's output: one thread per pipe reads it line by line to the end.
pub struct Output {
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

struct Shared {
    collected: Mutex<Collected>,
    /// Told of each new line and of each pipe reaching its end.
    changed: Condvar,
}

struct Collected {
    lines: Vec<String>,
    /// Pipes not read to their end yet; 0 once the child closed them all (it exited).
    open: usize,
}

/// Why [`Output::wait_for_line`] found no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Every pipe closed first: the child is gone.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

impl Output {
    /// Starts reading `pipes`.
    pub fn collect(pipes: Vec<Box<dyn Read + Send>>) -> Self {
        let shared = Arc::new(Shared {
            collected: Mutex::new(Collected {
                lines: Vec::new(),
                open: pipes.len(),
            }),
            changed: Condvar::new(),
        });
        let readers = pipes
            .into_iter()
            .map(|pipe| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || shared.read_to_end(pipe))
            })
            .collect();
        Output { shared, readers }
    }

    /// Every line read so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.lock().lines.clone()
    }

    /// The first line matching `pred`, as soon as it is read.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, deadline: Instant) -> Result<String, Missing> {
        let mut checked = 0;
        let mut c = self.shared.lock();
        loop {
            if let Some(line) = c.lines[checked..].iter().find(|l| pred(l)) {
                return Ok(line.clone());
            }
            checked = c.lines.len();
            if c.open == 0 {
                return Err(Missing::Closed);
            }
            c = self.shared.wait_until(c, deadline).ok_or(Missing::TimedOut)?;
        }
    }

    /// Waits until every pipe is read to its end (`false` if `deadline` passes first),
    /// then joins the readers.
    pub fn wait_closed(&mut self, deadline: Instant) -> bool {
        let mut c = self.shared.lock();
        while c.open > 0 {
            match self.shared.wait_until(c, deadline) {
                Some(next) => c = next,
                None => return false,
            }
        }
        drop(c);
        for reader in self.readers.drain(..) {
            reader.join().expect("an output reader thread panicked");
        }
        true
    }
}

impl Shared {
    /// The lock, even if a test's predicate panicked while holding it.
    fn lock(&self) -> MutexGuard<'_, Collected> {
        self.collected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next change, or `None` once `deadline` has passed.
    fn wait_until<'a>(&self, c: MutexGuard<'a, Collected>, deadline: Instant) -> Option<MutexGuard<'a, Collected>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let (c, _) = self
            .changed
            .wait_timeout(c, left)
            .unwrap_or_else(PoisonError::into_inner);
        Some(c)
    }

    /// One reader thread: every line of `pipe` (invalid UTF-8 replaced, so only the end
    /// of the pipe stops it), then the news that the pipe closed.
    fn read_to_end(&self, pipe: Box<dyn Read + Send>) {
        let mut pipe = BufReader::new(pipe);
        let mut line = Vec::new();
        while pipe.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            self.lock().lines.push(text.trim_end_matches(['\n', '\r']).to_owned());
            self.changed.notify_all();
            line.clear();
        }
        self.lock().open -= 1;
        self.changed.notify_all();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The address in a `listening` line, text (`addr=…`) or JSON (`"addr":"…"`).
fn parse_addr(line: &str) -> Option<SocketAddr> {
    let start = line
        .find("addr=")
        .map(|i| i + 5)
        .or_else(|| line.find("\"addr\":\"").map(|i| i + 8))?;
    let rest = &line[start..];
    let end = rest.find(|c: char| c == '"' || c.is_whitespace()).unwrap_or(rest.len());
    // Text lines may colour the value; keep only address characters.
    let cleaned: String = rest[..end]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    cleaned.parse().ok()
}
