//! Flush shards: the tasks that write queued frames to WebSockets, plain TCP
//! and TLS alike (a TLS socket's frames are encrypted on the way, see
//! `crate::tls`).
//!
//! Every such connection belongs to one shard (one per core, assigned in
//! turn), and each shard serves one ready list (`queue::ReadyList`): work
//! queued on an idle queue puts the queue on its list, and a publish hands
//! each list all of its queues at once (`queue::ReadyBatch`), so fanning a
//! message out to a thousand subscribers wakes a task per core, not one per
//! subscriber. The shard takes each
//! listed queue's frames and writes them with one non-blocking `writev`;
//! frames queued while a round runs go out together in the next one. A
//! socket that is full is handed to its connection's own task (see
//! `SendQueue`), which waits for it to drain: a slow reader never holds a
//! shard up.
//!
//! `queue.flush_interval` spaces a shard's rounds (a round after a quiet
//! spell starts at once), trading that much latency for more frames per
//! system call.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::metrics::{Metrics, WriterStats};
use crate::protocol::Framing;
use crate::queue::{Direct, DirectSocket, FlushTake, Outgoing, ReadyList, SendQueue, Written, MAX_IOVECS};

/// Queues written between two yields to the runtime, so a long round does not hold a
/// worker thread away from the connections' readers.
const QUEUES_PER_YIELD: usize = 64;

/// The shards of one broker: one ready list each, and the task that serves it.
#[derive(Debug)]
pub struct Flushers {
    lists: Box<[Arc<ReadyList>]>,
    next: AtomicUsize,
    /// `queue.flush_interval` in microseconds, shared with every shard (a reload changes it).
    interval_us: Arc<AtomicU64>,
}

impl Flushers {
    /// `count` shards (at least one), rounds spaced by `interval`.
    pub fn new(count: usize, interval: Duration) -> Self {
        Flushers {
            lists: (0..count.max(1)).map(|i| Arc::new(ReadyList::new(i))).collect(),
            next: AtomicUsize::new(0),
            interval_us: Arc::new(AtomicU64::new(interval.as_micros() as u64)),
        }
    }

    /// `shards` shards, 0: one per core of this machine but one (at least one), so
    /// writing a fan-out leaves a core to the connections' readers and the publishers.
    pub fn with_shards(shards: usize, interval: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = match shards {
            0 => cores.saturating_sub(1).max(1),
            n => n,
        };
        Self::new(count, interval)
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether there are none (never: at least one is made).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The sink of a new connection writing to `socket`, on the next shard in turn.
    pub fn direct(&self, socket: DirectSocket) -> Direct {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lists.len();
        Direct::new(Arc::clone(&self.lists[i]), socket)
    }

    /// Changes the least time between two rounds (a reload).
    pub fn set_interval(&self, interval: Duration) {
        self.interval_us.store(interval.as_micros() as u64, Ordering::Relaxed);
    }

    /// Starts every shard's task; they run until aborted.
    pub fn spawn(&self, metrics: Option<Arc<Metrics>>) -> Vec<tokio::task::JoinHandle<()>> {
        self.lists
            .iter()
            .map(|list| {
                let shard = Shard {
                    list: Arc::clone(list),
                    interval_us: Arc::clone(&self.interval_us),
                };
                tokio::spawn(shard.run(metrics.clone()))
            })
            .collect()
    }
}

/// One shard's task: its ready list and the spacing of its rounds.
struct Shard {
    list: Arc<ReadyList>,
    interval_us: Arc<AtomicU64>,
}

/// The connection task's writing half of a socket its shard also writes to (never at
/// the same time: the queue says whose turn it is). Shutting it down half-closes.
#[derive(Debug)]
pub struct DirectWrite(pub Arc<TcpStream>);

impl DirectWrite {
    fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncWrite for DirectWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = self.socket();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            match socket.try_write_vectored(bufs) {
                // Readiness was stale; `try_write_vectored` cleared it, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.socket()).shutdown(std::net::Shutdown::Write))
    }
}

impl Shard {
    /// A round per wake-up, writing every listed queue; runs until aborted.
    async fn run(self, metrics: Option<Arc<Metrics>>) {
        let mut work: Vec<Arc<SendQueue>> = Vec::new();
        let mut out = Outgoing::default();
        // Counted per batch in plain counters, added to the shared metrics once a second.
        let mut stats = metrics.as_deref().map(WriterStats::new);
        let stats_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(stats_timer);
        let mut stats_armed = false;
        let mut last_round: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.list.listed() => {}
                _ = &mut stats_timer, if stats_armed => {
                    stats_armed = false;
                    if let Some(s) = &mut stats {
                        s.flush();
                    }
                    continue;
                }
            }
            self.space_round(&mut last_round).await;
            self.list.take(&mut work);
            let now = now_ms();
            let mut since_yield = 0;
            for queue in work.drain(..) {
                if flush_one(&queue, &mut out, stats.as_mut(), now) {
                    self.list.push(queue);
                }
                since_yield += 1;
                if since_yield == QUEUES_PER_YIELD {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
            if let (false, Some(at)) = (stats_armed, stats.as_ref().and_then(WriterStats::due)) {
                stats_timer.as_mut().reset(at);
                stats_armed = true;
            }
        }
    }

    /// Waits out the rest of `queue.flush_interval` since the last round, if it is set.
    async fn space_round(&self, last_round: &mut Option<Instant>) {
        let interval = Duration::from_micros(self.interval_us.load(Ordering::Relaxed));
        if interval.is_zero() {
            return;
        }
        if let Some(at) = last_round.map(|t| t + interval) {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
        }
        *last_round = Some(Instant::now());
    }
}

/// Writes one scheduled queue without blocking. True: more arrived meanwhile.
fn flush_one(queue: &SendQueue, out: &mut Outgoing, stats: Option<&mut WriterStats>, now: u64) -> bool {
    let Some(direct) = queue.direct() else { return false };
    if queue.take_scheduled(out) != FlushTake::Batch {
        return false;
    }
    if let Some(s) = stats {
        s.record_batch(out.messages, out.bytes, out.oldest_ts, now);
    }
    let written = write_now(direct.socket(), out, queue.framing());
    queue.flushed(out, written)
}

/// Writes `out` until it is done or the socket is full, never waiting: with one
/// vectored write per up to `MAX_IOVECS` frames on plain TCP, and over TLS with those
/// frames encrypted together into as few records as fit them.
pub fn write_now(socket: &DirectSocket, out: &mut Outgoing, framing: Framing) -> Written {
    loop {
        let result = {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = out.slices(framing, &mut iov);
            if n == 0 {
                return all_sent(socket);
            }
            match socket {
                DirectSocket::Tcp(tcp) => tcp.try_write_vectored(&iov[..n]),
                DirectSocket::Tls(t) => t.write_now(&iov[..n]),
            }
        };
        match result {
            Ok(0) => return Written::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(framing, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Written::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Written::Failed(e),
        }
    }
}

/// `All` once the frames are written, if the socket holds nothing back: TLS records
/// the socket did not take make it `Blocked`, for the connection's task to send.
fn all_sent(socket: &DirectSocket) -> Written {
    match socket {
        DirectSocket::Tcp(_) => Written::All,
        DirectSocket::Tls(t) => match t.flush_now() {
            Ok(true) => Written::All,
            Ok(false) => Written::Blocked,
            Err(e) => Written::Failed(e),
        },
    }
}

/// Loopback sockets, queues and a frame reader for the tests of the writing side
/// (here and in `session::writer`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::protocol::{Message, Payload, SessionId, Wire};
    use crate::queue::{QueueLimits, Sink};
    use crate::topic::TopicName;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A direct queue on one end of a loopback connection, and the other end.
    pub async fn direct_queue(flushers: &Flushers, limits: QueueLimits) -> (Arc<SendQueue>, Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let write = Arc::new(server);
        let sink = Sink::Direct(flushers.direct(DirectSocket::Tcp(Arc::clone(&write))));
        let q = Arc::new(SendQueue::new(SessionId(1), Wire::Raw, true, limits).with_sink(sink));
        (q, write, client)
    }

    /// A direct queue on the server end of a loopback TLS connection (a fresh
    /// self-signed certificate), and the client end.
    pub async fn tls_queue(
        flushers: &Flushers,
        limits: QueueLimits,
    ) -> (
        Arc<SendQueue>,
        Arc<crate::tls::TlsSocket>,
        tokio_rustls::client::TlsStream<TcpStream>,
    ) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let connecting =
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(ServerName::try_from("localhost").unwrap(), tcp);
        let accepting = async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap()
        };
        let (client, server) = tokio::join!(connecting, accepting);
        let (tcp, conn) = server.into_inner();
        let socket = crate::tls::TlsSocket::new(tcp, conn);
        let sink = Sink::Direct(flushers.direct(DirectSocket::Tls(Arc::clone(&socket))));
        let q = Arc::new(SendQueue::new(SessionId(1), Wire::Raw, true, limits).with_sink(sink));
        (q, socket, client.unwrap())
    }

    /// Limits no test reaches.
    pub fn limits() -> QueueLimits {
        QueueLimits {
            max_messages: 100_000,
            max_bytes: 1 << 30,
        }
    }

    /// Message `seq` of topic `t`: `"{seq}:"` and `len` bytes of padding.
    pub fn msg(seq: u64, len: usize) -> Arc<Message> {
        let text = format!("{seq}:{}", "x".repeat(len));
        Arc::new(Message::new(
            TopicName::parse("t").unwrap(),
            seq,
            0,
            Payload::text(text),
            None,
        ))
    }

    /// What shard `i` has listed, taken as its task would take it.
    pub fn take_listed(flushers: &Flushers, i: usize) -> Vec<Arc<SendQueue>> {
        let mut listed = Vec::new();
        flushers.lists[i].take(&mut listed);
        listed
    }

    /// How many queues shard `i` has listed.
    pub fn listed(flushers: &Flushers, i: usize) -> usize {
        flushers.lists[i].len()
    }

    /// One shard turn on `queue`, as its task would take it. True: more arrived meanwhile.
    pub fn flush(queue: &SendQueue, out: &mut Outgoing) -> bool {
        flush_one(queue, out, None, 0)
    }

    /// The raw frames' payloads as the client reads them, until `n` have arrived.
    pub async fn read_payloads<R: tokio::io::AsyncRead + Unpin>(client: &mut R, n: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while out.len() < n {
            let mut chunk = [0u8; 65536];
            let got = client.read(&mut chunk).await.unwrap();
            assert!(got > 0, "closed early");
            buf.extend_from_slice(&chunk[..got]);
            while let Some(&b1) = buf.get(1) {
                let (head, len) = match b1 & 0x7f {
                    126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                    127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize),
                    126 | 127 => break,
                    n => (2, n as usize),
                };
                if buf.len() < head + len {
                    break;
                }
                out.push(String::from_utf8(buf[head..head + len].to_vec()).unwrap());
                buf.drain(..head + len);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::config::Policy;
    use crate::queue::{ReadyBatch, TaskTurn};
    use bytes::Bytes;

    #[tokio::test]
    async fn the_shard_writes_a_queue_without_its_task() {
        let flushers = Flushers::new(1, Duration::ZERO);
        let tasks = flushers.spawn(None);
        let (q, _write, mut client) = direct_queue(&flushers, limits()).await;
        for s in 1..=3 {
            q.push_message(&msg(s, 10), Policy::DropOldest);
        }
        let got = read_payloads(&mut client, 3).await;
        assert!(got[0].starts_with("1:") && got[2].starts_with("3:"), "{got:?}");
        assert!(
            matches!(q.take_for_task(&mut Outgoing::default()), TaskTurn::Wait),
            "the connection's task had nothing to do"
        );
        tasks.iter().for_each(|t| t.abort());
    }

    #[tokio::test]
    async fn a_publish_hands_each_shard_its_queues_at_once() {
        let flushers = Flushers::new(2, Duration::ZERO);
        let mut queues = Vec::new();
        for _ in 0..4 {
            queues.push(direct_queue(&flushers, limits()).await);
        }
        ReadyBatch::collect(|batch| {
            for (q, _, _) in &queues {
                q.push_message_batched(&msg(1, 1), Policy::DropOldest, batch);
            }
            assert_eq!(
                (listed(&flushers, 0), listed(&flushers, 1)),
                (0, 0),
                "nothing before submit"
            );
        });
        assert_eq!(
            (listed(&flushers, 0), listed(&flushers, 1)),
            (2, 2),
            "two queues per shard, in turn"
        );
        // A queue already on its shard's list is not listed twice.
        queues[0].0.push_message(&msg(2, 1), Policy::DropOldest);
        assert_eq!(listed(&flushers, 0), 2);
    }

    #[tokio::test]
    async fn an_abort_in_the_middle_of_a_frame_loses_the_connection() {
        let flushers = Flushers::new(1, Duration::ZERO);
        let (q, _write, _client) = direct_queue(&flushers, limits()).await;
        for s in 1..=200 {
            q.push_message(&msg(s, 50_000), Policy::DropOldest);
        }
        let listed = take_listed(&flushers, 0);
        flush(&listed[0], &mut Outgoing::default());
        q.close(crate::protocol::frame::close(1008, "slow consumer"), false);
        let mut task = Outgoing::default();
        match q.take_for_task(&mut task) {
            TaskTurn::Failed(e) => assert!(e.to_string().contains("middle of a frame"), "{e}"),
            // The socket happened to take whole frames only: then the close frame is next.
            TaskTurn::Close { .. } => {}
            other => panic!("expected the connection lost or closed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn closing_a_scheduled_queue_hands_it_to_the_task() {
        let flushers = Flushers::new(1, Duration::ZERO);
        let (q, _write, _client) = direct_queue(&flushers, limits()).await;
        q.push_message(&msg(1, 1), Policy::DropOldest);
        q.close(Bytes::from_static(b"bye"), true);
        assert!(
            matches!(q.take_for_task(&mut Outgoing::default()), TaskTurn::Wait),
            "still the shard's turn"
        );
        let listed = take_listed(&flushers, 0);
        assert_eq!(
            listed[0].take_scheduled(&mut Outgoing::default()),
            FlushTake::HandedOver
        );
        let mut out = Outgoing::default();
        assert!(matches!(q.take_for_task(&mut out), TaskTurn::Write { resumed: false }));
        assert_eq!(out.messages, 1, "what was queued before the close is still sent");
        assert!(matches!(q.take_for_task(&mut out), TaskTurn::Close { idle: false, .. }));
    }
}
