//! Liveness under pressure: a subscriber whose queue is full still gets the
//! server's pings and its pongs still count; a peer that vanished without a
//! FIN (stops reading, never answers) is cut within `idle_timeout` and one
//! ping interval and everything it held is freed; a client that never
//! finishes its handshake is cut at `handshake_timeout`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use fanout::connections::SortBy;
use fanout::protocol::Payload;
use fanout::topic::TopicName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PING_INTERVAL: Duration = Duration::from_millis(100);
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// Queue limit in messages; bytes never limit first (64 of 16 KiB is 1 MiB).
const MAX_MESSAGES: usize = 64;
/// Room for a loaded CI machine on top of what the protocol promises.
const SLACK: Duration = Duration::from_millis(1500);

fn small_queue_short_timers(c: &mut fanout::config::Config) {
    c.server.ping_interval = PING_INTERVAL;
    c.server.idle_timeout = IDLE_TIMEOUT;
    c.queue.max_messages = MAX_MESSAGES;
    c.queue.max_bytes = 4 << 20;
}

/// Publishes 16 KiB messages to `topic` in bursts until the only connection's writer
/// is blocked on a full socket with a full queue behind it: after a pause long enough
/// for any writer that can write to empty its queue, the queue is still full.
async fn back_up(b: &TestBroker, topic: &str) {
    let topic = TopicName::parse(topic).unwrap();
    let payload = Bytes::from(vec![7u8; 16 * 1024]);
    let deadline = Instant::now() + WAIT;
    loop {
        for _ in 0..MAX_MESSAGES {
            b.broker
                .hub
                .registry
                .publish(&topic, Payload::Binary(payload.clone()), None);
        }
        // Not synchronisation but the proof: a writer that can write empties its queue
        // in this pause; one still full after it is blocked on the socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let listed = b.broker.hub.connections.top(SortBy::Queue, 1);
        if listed.first().is_some_and(|c| c.queue_depth == MAX_MESSAGES) {
            return;
        }
        assert!(Instant::now() < deadline, "the subscriber never backed up");
    }
}

/// A server frame: opcode and payload.
#[derive(Debug)]
struct ServerFrame {
    opcode: u8,
    payload: Vec<u8>,
}

/// Reads one unmasked server frame.
async fn read_frame(s: &mut TcpStream) -> ServerFrame {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => u64::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await.unwrap();
    ServerFrame {
        opcode: head[0] & 0x0f,
        payload,
    }
}

/// The topic's subscriber count (0 when the topic is gone).
async fn subscribers(b: &TestBroker, topic: &str) -> u64 {
    match get_json(b.addr, &format!("/api/topics/{topic}")).await {
        (200, v) => v["subscribers"].as_u64().unwrap(),
        (404, _) => 0,
        (status, v) => panic!("GET /api/topics/{topic}: {status} {v}"),
    }
}

#[tokio::test]
async fn a_backed_up_subscriber_still_gets_pings_and_its_pongs_keep_it_open() {
    let b = spawn_broker_with(small_queue_short_timers).await;
    let mut s = raw_ws(&b, "/ws/t/live.slow", Some(4096)).await;
    back_up(&b, "live.slow").await;

    // The client reads nothing but answers for 2.5 idle timeouts, as a slow reader
    // that is alive does. Each pong is a frame the server reads despite the full queue.
    let stall = Instant::now();
    let mut pongs = tokio::time::interval(PING_INTERVAL);
    while stall.elapsed() < IDLE_TIMEOUT * 5 / 2 {
        pongs.tick().await;
        s.write_all(&masked(0xA, true, b"")).await.unwrap();
    }
    assert_eq!(
        b.broker.hub.connections.len(),
        1,
        "a client that answers is not closed for idleness while it reads slowly"
    );

    // Everything before this marker in the stream was queued before it, during the stall.
    b.broker.hub.registry.publish(
        &TopicName::parse("live.slow").unwrap(),
        Payload::Text(Bytes::from_static(b"marker")),
        None,
    );
    let pings = tokio::time::timeout(WAIT, async {
        let mut pings = 0;
        loop {
            let f = read_frame(&mut s).await;
            match f.opcode {
                0x9 => pings += 1,
                0x1 if f.payload == b"marker" => return pings,
                0x8 => panic!("closed: {:?}", String::from_utf8_lossy(&f.payload)),
                _ => {}
            }
        }
    })
    .await
    .expect("the marker in time");
    // About one per interval over the stall; half of them is proof enough.
    let expected = (IDLE_TIMEOUT * 5 / 2).as_millis() / PING_INTERVAL.as_millis() / 2;
    assert!(
        pings as u128 >= expected,
        "pings queued while the writer was blocked: {pings}, expected at least {expected}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_dead_peer_with_data_pending_is_cut_and_freed() {
    let b = spawn_broker_with(small_queue_short_timers).await;
    let start = Instant::now();
    // Stops reading and never answers: what a vanished host looks like without a FIN.
    let _dead = raw_ws(&b, "/ws/t/live.dead", Some(4096)).await;
    back_up(&b, "live.dead").await;
    assert_eq!(subscribers(&b, "live.dead").await, 1);
    // Its server side ends in its own time, telling no one: watch until it has.
    let closed = async || b.broker.connections() == 0 && b.broker.hub.connections.is_empty();
    assert!(
        holds_by(start + IDLE_TIMEOUT + PING_INTERVAL + SLACK, closed).await,
        "the dead peer's connection is not closed in time"
    );
    assert_eq!(subscribers(&b, "live.dead").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn a_dead_idle_peer_is_cut_and_freed() {
    let b = spawn_broker_with(small_queue_short_timers).await;
    let start = Instant::now();
    let _dead = raw_ws(&b, "/ws/t/live.idle", None).await;
    assert_eq!(subscribers(&b, "live.idle").await, 1);
    let closed = async || b.broker.connections() == 0 && b.broker.hub.connections.is_empty();
    assert!(
        holds_by(start + IDLE_TIMEOUT + PING_INTERVAL + SLACK, closed).await,
        "the idle peer's connection is not closed in time"
    );
    assert_eq!(subscribers(&b, "live.idle").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn a_half_sent_handshake_is_cut_at_handshake_timeout() {
    let b = spawn_broker_with(|c| c.server.handshake_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /ws HTT").await.unwrap();
    let mut out = Vec::new();
    // Whatever hyper answers (408 or nothing), the connection must end.
    let ended = tokio::time::timeout(Duration::from_secs(1) + SLACK, s.read_to_end(&mut out)).await;
    assert!(ended.is_ok(), "still open after handshake_timeout");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "cut too early: {took:?}");
    let released = async || b.broker.connections() == 0;
    assert!(
        holds_by(Instant::now() + SLACK, released).await,
        "the slot is not released in time"
    );
    b.stop().await;
}
