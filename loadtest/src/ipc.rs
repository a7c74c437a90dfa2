//! Worker handles: a worker runs in-process (tokio task over channels) or
//! as a child process (`fanout-loadtest worker`) speaking JSON lines:
//! commands on its stdin, events on its stdout.

use crate::engine::messages::{Command, Event};
use crate::engine::run_worker;
use std::io;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The coordinator's end of one worker.
pub struct WorkerHandle {
    /// Commands to the worker.
    pub tx: mpsc::Sender<Command>,
    /// Events from the worker.
    pub rx: mpsc::Receiver<Event>,
    child: Option<tokio::process::Child>,
}

impl WorkerHandle {
    /// Starts a worker as a task of this process.
    pub fn in_process() -> WorkerHandle {
        let (tx, cmd_rx) = mpsc::channel(16);
        let (ev_tx, rx) = mpsc::channel(1024);
        tokio::spawn(run_worker(cmd_rx, ev_tx));
        WorkerHandle { tx, rx, child: None }
    }

    /// Starts `exe worker` as a child process and bridges its pipes.
    pub fn spawn(exe: &Path) -> io::Result<WorkerHandle> {
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut cmd_rx) = mpsc::channel::<Command>(16);
        let (ev_tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(cmd) = cmd_rx.recv().await {
                let mut line = serde_json::to_string(&cmd).expect("serializable");
                line.push('\n');
                if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let ev = match lines.next_line().await {
                    Ok(Some(line)) => serde_json::from_str(&line).unwrap_or_else(|e| Event::Failed {
                        error: format!("bad worker output: {e}"),
                    }),
                    Ok(None) => Event::Failed {
                        error: "worker exited".into(),
                    },
                    Err(e) => Event::Failed {
                        error: format!("worker pipe: {e}"),
                    },
                };
                let last = matches!(ev, Event::Failed { .. });
                if ev_tx.send(ev).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(WorkerHandle {
            tx,
            rx,
            child: Some(child),
        })
    }

    /// Waits for a child worker to exit (after `Stop`), killing it after 5 s.
    pub async fn finish(mut self) {
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// The child side: reads commands from stdin, runs the worker, writes
/// events to stdout. Returns when the coordinator says `Stop` or hangs up.
pub async fn serve_stdio() -> io::Result<()> {
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(1024);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Command>(&line) {
                Ok(cmd) => {
                    if cmd_tx.send(cmd).await.is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("worker: bad command: {e}"),
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(ev) = ev_rx.recv().await {
            let mut line = serde_json::to_string(&ev).expect("serializable");
            line.push('\n');
            out.write_all(line.as_bytes()).await?;
            out.flush().await?;
        }
        Ok::<_, io::Error>(())
    });
    run_worker(cmd_rx, ev_tx).await;
    writer.await.map_err(io::Error::other)?
}
