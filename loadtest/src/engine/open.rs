//! Opening one connection of the plan: TCP + handshake, then (JSON and
//! MessagePack) the subscribe requests and waiting for every ack, or
//! (Socket.IO) the Engine.IO open packet and joining every namespace.

use super::messages::RunOpts;
use crate::client::deflate::DeflateParams;
use crate::client::{ClientConfig, Message, WsClient, WsReader, WsWriter};
use crate::plan::ConnSpec;
use crate::protocol::socketio::{self, Packet};
use crate::protocol::{Frame, Incoming, Protocol};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use thiserror::Error;

/// Why a connection could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// TCP connect, TLS or the upgrade handshake failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The server refused a subscription.
    #[error("subscribe to {topic}: {reason}")]
    Subscribe {
        /// The topic or pattern.
        topic: String,
        /// The server's error text.
        reason: String,
    },
    /// The server broke the Socket.IO handshake.
    #[error("socket.io handshake: {0}")]
    Handshake(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// An open, subscribed connection.
pub struct Opened {
    /// Reading half.
    pub reader: WsReader,
    /// Writing half.
    pub writer: WsWriter,
    /// Messages that arrived while waiting for acks (process them first).
    pub pending: Vec<Message>,
    /// Where each subscribed topic stood in its subscribe ack, by topic.
    pub positions: HashMap<String, TopicPos>,
    /// Topics whose resume the broker could not honour (it restarted, say).
    pub unrecovered: Vec<String>,
    /// Time to connect and complete the handshake.
    pub connect_time: Duration,
    /// permessage-deflate as the server agreed to it (`None`: not offered or declined).
    pub deflate: Option<DeflateParams>,
    /// `wss://`: what was negotiated (see [`WsClient::tls`]).
    pub tls: Option<String>,
}

/// Where a subscriber stands in one topic: the last seq, and the epoch it counts in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPos {
    /// The last seq received (or the ack's seq).
    pub seq: u64,
    /// The topic's epoch from the ack, passed back on resume.
    pub epoch: Option<String>,
}

/// The local address for connection `index` (127.0.0.1..=127.0.0.N).
pub fn local_addr(index: usize, n: u32) -> Option<IpAddr> {
    (n > 0).then(|| {
        let host = (index as u32 % n) + 1;
        IpAddr::V4(Ipv4Addr::new(127, (host >> 16) as u8, (host >> 8) as u8, host as u8))
    })
}

/// The server connection `index` uses: `--url` may list several (a cluster's nodes),
/// comma-separated; connections take them in turn.
pub fn base_url(urls: &str, index: usize) -> &str {
    let n = urls.split(',').count();
    urls.split(',').nth(index % n).unwrap_or(urls).trim()
}

/// Opens connection `spec`, resuming each topic found in `since` after its position.
pub async fn open(
    spec: &ConnSpec,
    opts: &RunOpts,
    index: usize,
    local: Option<IpAddr>,
    since: &HashMap<String, TopicPos>,
) -> Result<Opened, OpenError> {
    let limit = Duration::from_millis(opts.connect_timeout_ms.max(1));
    tokio::time::timeout(limit, open_inner(spec, opts, index, local, since))
        .await
        .map_err(|_| OpenError::Timeout(limit))?
}

async fn open_inner(
    spec: &ConnSpec,
    opts: &RunOpts,
    index: usize,
    local: Option<IpAddr>,
    since: &HashMap<String, TopicPos>,
) -> Result<Opened, OpenError> {
    let topic = spec.raw_topic();
    let query = match since.get(topic) {
        Some(p) if opts.protocol == Protocol::Raw => format!("since={}", p.seq),
        _ => String::new(),
    };
    let url = opts
        .protocol
        .url(base_url(&opts.url, index), &opts.raw_path, topic, &query);
    let started = std::time::Instant::now();
    let config = ClientConfig {
        local_addr: local,
        deflate: opts.deflate,
        tls: opts.tls_config.clone(),
        ..ClientConfig::default()
    };
    let client = WsClient::connect_with(&url, config).await?;
    let connect_time = started.elapsed();
    let deflate = client.deflate().copied();
    let tls = client.tls().map(str::to_owned);
    let (mut reader, writer) = client.into_split();
    let mut pending = Vec::new();
    let mut positions = HashMap::new();
    let mut unrecovered = Vec::new();
    if opts.protocol == Protocol::Socketio {
        join_namespaces(&mut reader, &writer, spec, &mut pending).await?;
    }
    if opts.protocol.has_envelopes() && !spec.subscribe.is_empty() {
        let mut waiting: HashMap<u64, &str> = HashMap::new();
        for (k, t) in spec.subscribe.iter().enumerate() {
            let id = k as u64 + 1;
            let resume = since.get(t);
            match opts
                .protocol
                .subscribe(t, id, resume.map(|p| p.seq), resume.and_then(|p| p.epoch.as_deref()))
            {
                Some(Frame::Text(s)) => writer.queue_text(&s).await,
                Some(Frame::Binary(b)) => writer.queue_binary(&b).await,
                None => {}
            }
            waiting.insert(id, t);
        }
        writer.flush().await?;
        while !waiting.is_empty() {
            let msg = reader.next_message().await?;
            match opts.protocol.parse(&msg) {
                Incoming::Ack {
                    id,
                    seq,
                    epoch,
                    recovered,
                } => {
                    if let Some(t) = waiting.remove(&id) {
                        let pos = TopicPos {
                            seq: seq.unwrap_or(0),
                            epoch: epoch.map(|e| e.into_owned()),
                        };
                        positions.insert(t.to_string(), pos);
                        if recovered == Some(false) {
                            unrecovered.push(t.to_string());
                        }
                    }
                }
                Incoming::Error(reason) if !waiting.is_empty() && !matches!(msg, Message::Ping(_)) => {
                    let topic = spec.subscribe.first().cloned().unwrap_or_default();
                    return Err(OpenError::Subscribe { topic, reason });
                }
                _ => pending.push(msg),
            }
        }
    }
    Ok(Opened {
        reader,
        writer,
        pending,
        positions,
        unrecovered,
        connect_time,
        deflate,
        tls,
    })
}

/// Socket.IO: waits for the Engine.IO open packet, then joins the namespace
/// of every topic `spec` subscribes or publishes to (the main one when it has
/// none) and waits for each CONNECT answer. Heartbeats are answered meanwhile
/// and anything else is kept in `pending` for the receive thread.
async fn join_namespaces(
    reader: &mut WsReader,
    writer: &WsWriter,
    spec: &ConnSpec,
    pending: &mut Vec<Message>,
) -> Result<(), OpenError> {
    let published = spec.publish.iter().flat_map(|p| p.topics.iter());
    let mut topics: Vec<&str> = spec.subscribe.iter().chain(published).map(String::as_str).collect();
    topics.sort_unstable();
    topics.dedup();
    if topics.is_empty() {
        topics.push("");
    }
    let mut waiting: Vec<String> = topics.iter().map(|t| socketio::namespace(t)).collect();
    let mut open = false;
    while !waiting.is_empty() {
        let msg = reader.next_message().await?;
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Close(c) => return Err(OpenError::Handshake(format!("the server closed the WebSocket: {c:?}"))),
            _ => continue,
        };
        match socketio::parse(text.as_bytes()) {
            Packet::Open(_) if !open => {
                open = true;
                for t in &topics {
                    writer.queue_text(&socketio::connect(t)).await;
                }
                writer.flush().await?;
            }
            _ if !open => {
                let first: String = text.chars().take(80).collect();
                return Err(OpenError::Handshake(format!(
                    "expected the Engine.IO open packet, got `{first}`"
                )));
            }
            Packet::Ping => writer.send_text(socketio::PONG).await?,
            Packet::Connect { ns } => waiting.retain(|w| w != ns),
            Packet::ConnectError { ns, message } => {
                return Err(OpenError::Subscribe {
                    topic: ns.to_string(),
                    reason: message,
                })
            }
            Packet::Close | Packet::Disconnect { .. } => {
                return Err(OpenError::Handshake(format!("the server ended the session: `{text}`")))
            }
            _ => pending.push(msg),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addrs_cycle() {
        assert_eq!(base_url("ws://a", 7), "ws://a");
        assert_eq!(base_url("ws://a,ws://b,ws://c", 4), "ws://b");
        assert_eq!(local_addr(0, 0), None);
        assert_eq!(local_addr(0, 3), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(local_addr(5, 3), Some("127.0.0.3".parse().unwrap()));
        assert_eq!(local_addr(299, 300), Some("127.0.1.44".parse().unwrap()));
    }
}
