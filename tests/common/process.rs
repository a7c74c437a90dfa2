//! A real `fanout` process for tests that need signals and log output:
//! started with a config file, its stdout collected line by line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A broker child process.
pub struct BrokerProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its config file (the test may rewrite it before a SIGHUP).
    pub config: PathBuf,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
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
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut p = BrokerProcess {
            addr: "127.0.0.1:0".parse().unwrap(),
            config,
            child,
            lines,
        };
        let line = p.wait_for_line(|l| l.contains("listening") && !l.contains("metrics"));
        p.addr = parse_addr(&line).unwrap_or_else(|| panic!("no address in {line}"));
        p
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (10 s at most) for a line matching `pred`, and returns it.
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fanout exited with {status}; output:\n{}", self.lines().join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "no such line in time; output:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
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

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fanout did not exit within {within:?}; output:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
