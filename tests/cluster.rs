//! Cluster mode: three fanout nodes on loopback behave as one broker through a
//! real nats-server with JetStream. Every subscriber on every node gets each
//! message exactly once in seq order; patterns work across nodes; a client of a
//! dead node recovers on another with `since`; a NATS restart loses nothing and
//! makes the nodes not ready while it lasts; Socket.IO sockets on two nodes share
//! a namespace and recover on another node.
//!
//! Skipped (loudly) when nats-server is not installed, unless `CI` is set.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::cluster::{next_message, node, spawn_node, subscribe, three_nodes, wait_ready, NATS_WAIT};
use common::nats::{free_port, NatsServer};
use common::{
    connect, eventually, get_json, holds_by, http_get, http_json, http_publish, spawn_broker_with, TestBroker, WAIT,
};
use serde_json::{json, Value};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_on_every_node_gets_each_message_once_in_seq_order() {
    let Some(nats) = NatsServer::start("once") else { return };
    let [a, b, c] = three_nodes(&nats.url()).await;
    let mut subs = Vec::new();
    for n in [&a, &a, &b, &c] {
        let mut s = connect(&n.ws_url("/ws")).await;
        let ack = subscribe(&mut s, "feed.x", None).await;
        assert_eq!(ack["seq"], 0, "a new topic starts at 0 on every node");
        subs.push(s);
    }
    // Two WebSocket publishers on B and C race for the seqs; A publishes over HTTP.
    let per = 20;
    let mut tasks = Vec::new();
    for (i, n) in [&b, &c].into_iter().enumerate() {
        let url = n.ws_url("/ws");
        tasks.push(tokio::spawn(async move {
            let mut p = connect(&url).await;
            let mut seqs = Vec::new();
            for k in 0..per {
                seqs.push(p.publish("feed.x", json!({"from": i, "k": k})).await);
            }
            seqs
        }));
    }
    let mut acked = Vec::new();
    for k in 0..per {
        acked.push(http_publish(a.addr, "feed.x", &json!({"from": 2, "k": k})).await);
    }
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let total = 3 * per as u64;
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=total).collect::<Vec<_>>(),
        "publish acks: every seq once, no gap"
    );
    // One last message from A: if any duplicate were on its way, it would come before this.
    http_publish(a.addr, "feed.x", &json!("end")).await;
    for (i, s) in subs.iter_mut().enumerate() {
        let mut seen = HashSet::new();
        for seq in 1..=total {
            let m = next_message(s).await;
            assert_eq!(m["seq"], seq, "subscriber {i}: in seq order, no gap, no duplicate");
            assert!(seen.insert(m["data"].to_string()), "subscriber {i}: {m} twice");
        }
        let end = next_message(s).await;
        assert_eq!((end["seq"].as_u64(), &end["data"]), (Some(total + 1), &json!("end")));
    }
    // The publishing node's own subscribers got it once too (they are subs[0], subs[1] on A).
    let (_, metrics) = http_get(a.addr, "/metrics", &[]).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("fanout_cluster_connected 1"), "{metrics}");
    assert!(
        metrics.contains("fanout_cluster_messages_out_total 21"),
        "A published 21: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patterns_and_raw_sockets_work_across_nodes() {
    let Some(nats) = NatsServer::start("patterns") else {
        return;
    };
    let [a, b, c] = three_nodes(&nats.url()).await;
    let mut star = connect(&a.ws_url("/ws")).await;
    subscribe(&mut star, "scores.*", None).await;
    // Same node, overlapping exact interest: A follows both, each client still gets one copy.
    let mut exact = connect(&a.ws_url("/ws")).await;
    subscribe(&mut exact, "scores.nba", None).await;
    let mut tail = connect(&b.ws_url("/ws")).await;
    subscribe(&mut tail, "scores.>", None).await;
    let mut raw = connect(&b.ws_url("/ws/t/scores.nba")).await;
    // The raw socket's subscription is in place once a message published after it arrives:
    // probe until one does (bounded), the only signal a raw socket gives.
    let mut probe = connect(&c.ws_url("/ws")).await;
    let deadline = Instant::now() + WAIT;
    let mut probes = 0;
    loop {
        probes += 1;
        probe.publish("scores.nba", json!("probe")).await;
        if let Ok(common::Got::Text(t)) = tokio::time::timeout(Duration::from_millis(200), raw.next()).await {
            assert_eq!(t, "probe", "a JSON string arrives as its text");
            break;
        }
        assert!(Instant::now() < deadline, "raw socket never subscribed");
    }
    // Drain the probes the others got.
    for _ in 0..probes {
        for s in [&mut star, &mut exact, &mut tail] {
            assert_eq!(next_message(s).await["data"], "probe");
        }
    }
    let mut sent = Vec::new();
    for k in 0..5 {
        probe.publish("scores.nba", json!({"k": k})).await;
        probe.publish("scores.nfl.week1", json!({"k": k})).await;
        probe.publish("other.topic", json!({"k": k})).await;
        sent.push(k);
    }
    // A raw socket publishes too (on B); everyone on scores.nba gets it, itself excepted (echo off).
    raw.send_text("from raw").await;
    for k in &sent {
        let m = next_message(&mut star).await;
        assert_eq!(
            (m["topic"].as_str(), &m["data"]),
            (Some("scores.nba"), &json!({"k": k}))
        );
        let m = next_message(&mut exact).await;
        assert_eq!(
            (m["topic"].as_str(), &m["data"]),
            (Some("scores.nba"), &json!({"k": k}))
        );
        match raw.next().await {
            common::Got::Text(t) => assert_eq!(t, json!({"k": k}).to_string()),
            other => panic!("raw socket got {other:?}"),
        }
    }
    // Order holds within a topic, not across topics: each topic has its own publish lane, so
    // `scores.>` may see scores.nba k+1 before scores.nfl.week1 k. Split what it got by topic.
    let (mut nba, mut nfl) = (Vec::new(), Vec::new());
    for _ in 0..sent.len() * 2 + 1 {
        let m = next_message(&mut tail).await;
        match m["topic"].as_str() {
            Some("scores.nba") => nba.push(m),
            Some("scores.nfl.week1") => nfl.push(m),
            other => panic!("scores.> got {other:?}: {m}"),
        }
    }
    let data = |ms: &[Value]| ms.iter().map(|m| m["data"].clone()).collect::<Vec<_>>();
    let mut want_nba: Vec<Value> = sent.iter().map(|k| json!({"k": k})).collect();
    assert_eq!(data(&nfl), want_nba, "scores.nfl.week1 in publish order");
    let seqs: Vec<_> = nfl.iter().map(|m| m["seq"].as_u64()).collect();
    let want_seqs: Vec<_> = (1..=sent.len() as u64).map(Some).collect();
    assert_eq!(seqs, want_seqs, "scores.nfl.week1 has its own seq");
    want_nba.push(json!("from raw"));
    assert_eq!(
        data(&nba),
        want_nba,
        "scores.nba in publish order, the raw socket's last"
    );
    assert_eq!(nba.last().unwrap()["seq"].as_u64(), Some(probes + 6));
    for s in [&mut star, &mut exact] {
        let m = next_message(s).await;
        assert_eq!(
            (m["topic"].as_str(), &m["data"]),
            (Some("scores.nba"), &json!("from raw"))
        );
        assert_eq!(
            m["seq"].as_u64(),
            Some(probes + 6),
            "one seq line per topic, cluster-wide"
        );
    }
    // Nothing else is on its way: a last message is the very next one everywhere.
    probe.publish("scores.nba", json!("last")).await;
    for s in [&mut star, &mut exact, &mut tail] {
        assert_eq!(next_message(s).await["data"], "last");
    }
    match raw.next().await {
        common::Got::Text(t) => assert_eq!(t, "last", "the raw socket did not get its own echo"),
        other => panic!("raw socket got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_of_a_dead_node_recovers_on_another_with_since() {
    let Some(nats) = NatsServer::start("failover") else {
        return;
    };
    let [a, b, c] = three_nodes(&nats.url()).await;
    let mut client = connect(&a.ws_url("/ws")).await;
    let first = subscribe(&mut client, "chat.room", None).await;
    let epoch = first["epoch"].as_str().expect("an epoch in the ack").to_owned();
    let mut publisher = connect(&b.ws_url("/ws")).await;
    for k in 1..=5 {
        publisher.publish("chat.room", json!(k)).await;
    }
    let mut last = 0;
    for _ in 1..=5 {
        last = next_message(&mut client).await["seq"].as_u64().unwrap();
    }
    assert_eq!(last, 5);
    a.stop().await;
    drop(client);
    for k in 6..=10 {
        publisher.publish("chat.room", json!(k)).await;
    }
    // The client comes back on C with `since` and A's epoch (seqs mean the same on every
    // node): the shared history fills the hole, then live.
    let mut client = connect(&c.ws_url("/ws")).await;
    client
        .send(json!({"op": "subscribe", "topic": "chat.room", "since": last, "epoch": epoch, "id": 1}))
        .await;
    let ack = client.recv().await;
    assert_eq!(ack["seq"], 10, "C knows the cluster's seq: {ack}");
    assert_eq!(
        (ack["epoch"].as_str(), ack["recovered"].as_bool()),
        (Some(epoch.as_str()), Some(true))
    );
    publisher.publish("chat.room", json!(11)).await;
    for seq in 6..=11 {
        let m = next_message(&mut client).await;
        assert_eq!((m["seq"].as_u64(), &m["data"]), (Some(seq), &json!(seq)));
    }
    // Any node answers the history API from the shared history.
    let (status, page) = get_json(c.addr, "/api/topics/chat.room/history?since=3").await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (4..=11).collect::<Vec<_>>(), "{page}");
    // SSE and long-polling on yet another node catch up from the shared history too.
    let mut sse = common::sse_connect(b.addr, "/sse/chat.room?since=9", &[]).await;
    assert_eq!(sse.status, 200);
    for seq in 10..=11 {
        let ev = sse.next_event().await;
        assert_eq!(
            (ev.id.as_deref(), &ev.json()["data"]),
            (Some(seq.to_string().as_str()), &json!(seq))
        );
    }
    let (status, polled) = get_json(b.addr, "/api/poll/chat.room?since=10&timeout=5").await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["messages"][0]["seq"], 11, "{polled}");
    // `since` beyond the cluster's seq is not recovered on any node, as on one node.
    let mut other = connect(&b.ws_url("/ws")).await;
    other
        .send(json!({"op": "subscribe", "topic": "chat.room", "since": 99, "id": 7}))
        .await;
    let ack = other.recv().await;
    assert_eq!(
        (ack["type"].as_str(), ack["recovered"].as_bool()),
        (Some("ack"), Some(false)),
        "{ack}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_makes_nodes_unready_and_then_loses_nothing() {
    let Some(mut nats) = NatsServer::start("restart") else {
        return;
    };
    let (a, b) = (node(&nats.url()).await, node(&nats.url()).await);
    let mut sub = connect(&a.ws_url("/ws")).await;
    subscribe(&mut sub, "live.feed", None).await;
    let mut publisher = connect(&b.ws_url("/ws")).await;
    for k in 1..=5 {
        publisher.publish("live.feed", json!(k)).await;
    }
    for seq in 1..=5 {
        assert_eq!(next_message(&mut sub).await["seq"], seq);
    }
    nats.kill();
    wait_ready(&a, false).await;
    wait_ready(&b, false).await;
    let (status, body) = http_get(a.addr, "/readyz", &[]).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("NATS"));
    // A publish while NATS is gone fails loudly instead of vanishing.
    publisher
        .send(json!({"op": "publish", "topic": "live.feed", "data": "lost?", "id": 9}))
        .await;
    let refused = publisher.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("internal")),
        "{refused}"
    );
    nats.restart();
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    // The stream survived (file store): seqs continue; the subscriber's consumer resumes.
    // Ready is not yet writable: publish until JetStream takes it, the only sign it does.
    let mut answer = Value::Null;
    let published = async || {
        publisher
            .send(json!({"op": "publish", "topic": "live.feed", "data": "after", "id": 10}))
            .await;
        answer = publisher.recv().await;
        answer["type"] == "ack"
    };
    assert!(
        holds_by(Instant::now() + NATS_WAIT, published).await,
        "publishing never recovered: {answer}"
    );
    let first = answer["seq"].as_u64().unwrap();
    assert_eq!(first, 6, "the seq line continues after the restart");
    for k in 7..=10 {
        publisher.publish("live.feed", json!(k)).await;
    }
    for seq in 6..=10 {
        let m = next_message(&mut sub).await;
        assert_eq!(m["seq"], seq, "no loss and no gap across the restart: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_starts_without_nats_is_unready_and_connects_when_it_comes() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    if NatsServer::start_on("probe-installed", free_port()).is_none() {
        return;
    }
    let a = spawn_node(&url).await;
    let (status, body) = http_get(a.addr, "/readyz", &[]).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let mut c = connect(&a.ws_url("/ws")).await;
    c.send(json!({"op": "subscribe", "topic": "t", "id": 1})).await;
    let e = c.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("internal")),
        "{e}"
    );
    // Publishers hear of it at once, every way in: nothing is queued to be lost.
    c.send(json!({"op": "publish", "topic": "t", "data": 1, "id": 2})).await;
    let e = c.recv().await;
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str()),
        (Some(2), Some("internal")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("not connected to NATS"), "{e}");
    let (status, body) = http_json(a.addr, "POST", "/api/publish/t", &json!(1)).await;
    assert_eq!((status, body["code"].as_str()), (500, Some("internal")), "{body}");
    let mut raw = connect(&a.ws_url("/ws/t/t")).await;
    raw.send_text("lost?").await;
    assert!(raw.expect_close(1008).await.contains("not connected to NATS"));
    let Some(_nats) = NatsServer::start_on("late", port) else {
        return;
    };
    wait_ready(&a, true).await;
    subscribe(&mut c, "t", None).await;
    let b = node(&url).await;
    http_publish(b.addr, "t", &json!("hello")).await;
    assert_eq!(next_message(&mut c).await["data"], "hello");
}

/// A TCP proxy in front of NATS that a test can cut and restore, to cut one node off.
struct Proxy {
    addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let p = Proxy {
            addr,
            upstream,
            tasks: Default::default(),
        };
        p.open();
        p
    }

    fn open(&self) {
        let listener = fanout::server::listen(self.addr).expect("proxy port is free again");
        let (upstream, tasks) = (self.upstream, std::sync::Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes every connection through the proxy and refuses new ones.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_nats_tells_its_subscribers_what_it_cannot_recover() {
    let Some(nats) = NatsServer::start("gap") else { return };
    let proxy = Proxy::start(nats.addr);
    // Every node keeps 3 messages per topic, so the stream does too.
    let spawn = |url: String| {
        spawn_broker_with(move |c| {
            c.cluster.nats_url = url;
            c.cluster.request_timeout = Duration::from_secs(3);
            c.history.size = 3;
        })
    };
    let a = spawn(format!("nats://{}", proxy.addr)).await;
    let b = spawn(nats.url()).await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    let mut sub = connect(&a.ws_url("/ws")).await;
    subscribe(&mut sub, "gap.t", None).await;
    let mut publisher = connect(&b.ws_url("/ws")).await;
    for k in 1..=2 {
        publisher.publish("gap.t", json!(k)).await;
    }
    for seq in 1..=2 {
        assert_eq!(next_message(&mut sub).await["seq"], seq);
    }
    proxy.cut();
    wait_ready(&a, false).await;
    // While A is cut off, B publishes more than the stream keeps per topic: 3..=7 are gone.
    for k in 3..=10 {
        publisher.publish("gap.t", json!(k)).await;
    }
    proxy.open();
    wait_ready(&a, true).await;
    publisher.publish("gap.t", json!(11)).await;
    let gap = sub.recv().await;
    assert_eq!(
        gap,
        json!({"type": "gap", "topic": "gap.t", "from": 3, "to": 7, "reason": "history"}),
        "what A cannot recover is told, not skipped silently"
    );
    for seq in 8..=11 {
        let m = next_message(&mut sub).await;
        assert_eq!((m["seq"].as_u64(), &m["data"]), (Some(seq), &json!(seq)));
    }
    let (_, metrics) = http_get(a.addr, "/metrics", &[]).await;
    assert!(String::from_utf8(metrics)
        .unwrap()
        .contains("fanout_cluster_gaps_total 1"));
}

/// `fanout_cluster_interests` of a node.
async fn interests(b: &TestBroker) -> u64 {
    let (_, metrics) = http_get(b.addr, "/metrics", &[]).await;
    String::from_utf8(metrics)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fanout_cluster_interests "))
        .and_then(|v| v.parse().ok())
        .expect("the interests gauge")
}

/// Waits (bounded) until a node follows exactly `n` filters on NATS.
async fn wait_interests(b: &TestBroker, n: u64) {
    eventually(&format!("node {} follows {n} filters", b.addr), async || {
        interests(b).await == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_follows_only_what_its_clients_hold_and_lets_go_with_the_last() {
    let Some(nats) = NatsServer::start("interest") else {
        return;
    };
    let (a, b) = (node(&nats.url()).await, node(&nats.url()).await);
    let mut first = connect(&a.ws_url("/ws")).await;
    subscribe(&mut first, "i.one", None).await;
    subscribe(&mut first, "i.*", None).await;
    let mut second = connect(&a.ws_url("/ws")).await;
    subscribe(&mut second, "i.one", None).await;
    assert_eq!(
        (interests(&a).await, interests(&b).await),
        (2, 0),
        "one per filter, only where held"
    );
    first
        .send(json!({"op": "unsubscribe", "topic": "i.one", "id": 5}))
        .await;
    assert_eq!(first.recv().await["type"], "ack");
    assert_eq!(interests(&a).await, 2, "the second client still holds i.one");
    second.close().await;
    wait_interests(&a, 1).await;
    first.close().await;
    wait_interests(&a, 0).await;
    // Nobody follows i.one now; publishing still works and the history is kept for later.
    let seq = http_publish(b.addr, "i.one", &json!("kept")).await;
    let mut late = connect(&a.ws_url("/ws")).await;
    let ack = subscribe(&mut late, "i.one", Some(0)).await;
    assert_eq!(ack["seq"].as_u64(), Some(seq));
    assert_eq!(next_message(&mut late).await["data"], "kept");
    // A pattern followed again later starts afresh: no gap notice for what nobody here followed.
    let mut before = connect(&a.ws_url("/ws")).await;
    subscribe(&mut before, "j.*", None).await;
    http_publish(b.addr, "j.x", &json!(1)).await;
    assert_eq!(next_message(&mut before).await["seq"], 1);
    before.close().await;
    wait_interests(&a, 1).await;
    for k in 2..=5 {
        http_publish(b.addr, "j.x", &json!(k)).await;
    }
    let mut after = connect(&a.ws_url("/ws")).await;
    subscribe(&mut after, "j.*", None).await;
    http_publish(b.addr, "j.x", &json!(6)).await;
    let m = after.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["seq"].as_u64()),
        (Some("message"), Some(6)),
        "{m}"
    );
}

#[tokio::test]
async fn socketio_sockets_on_two_nodes_share_a_namespace_and_recover_on_another_node() {
    use common::socketio::{event, join, open_ws, text};
    let Some(nats) = NatsServer::start("socketio") else {
        return;
    };
    let (n1, n2) = (node(&nats.url()).await, node(&nats.url()).await);
    let (mut a, _) = open_ws(&n1, "").await;
    let pid = join(&mut a, "sio.room", None).await["pid"].as_str().unwrap().to_owned();
    let (mut b, _) = open_ws(&n2, "").await;
    join(&mut b, "sio.room", None).await;
    a.send_text(r#"42/sio.room,1["message","from node 1"]"#).await;
    assert!(
        text(&mut a).await.starts_with("43/sio.room,1[{\"type\":\"ack\""),
        "stored by the cluster"
    );
    assert_eq!(
        event(&text(&mut b).await, "sio.room"),
        json!(["message", "from node 1", "1"])
    );
    drop(a);
    http_publish(n2.addr, "sio.room", &json!("missed 1")).await;
    http_publish(n2.addr, "sio.room", &json!("missed 2")).await;
    // The client comes back on the other node, with the pid and offset it had.
    let (mut a, _) = open_ws(&n2, "").await;
    let answer = join(&mut a, "sio.room", Some(json!({"pid": pid, "offset": "1"}))).await;
    assert_eq!(answer["pid"], pid.as_str(), "recovered on another node");
    assert_eq!(
        event(&text(&mut a).await, "sio.room"),
        json!(["message", "missed 1", "2"])
    );
    assert_eq!(
        event(&text(&mut a).await, "sio.room"),
        json!(["message", "missed 2", "3"])
    );
    n1.stop().await;
    n2.stop().await;
}
