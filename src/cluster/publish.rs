//! Publishing in cluster mode: one gap-free seq per topic across every node,
//! with many publishes in flight.
//!
//! **Group commit.** Every topic this node publishes to has a lane.
//! Publishes queue on it in the order they arrive, and one flight at a time
//! carries everything queued to JetStream as *one* stream message (a batch
//! of consecutive seqs, `wire.rs`), so a topic's rate grows with its load
//! instead of being one round trip per message. Lanes fly independently:
//! publishes to different topics are in flight at once.
//!
//! **One seq per topic.** A flight claims its seqs with optimistic
//! concurrency: it carries `Nats-Expected-Last-Subject-Sequence`, the stream
//! sequence of the subject's last message as the lane last saw it. If another
//! node got there first, JetStream refuses it; the lane reads the subject's
//! last message and flies again with the seqs after it. So a subject's stored
//! order is its seq order, with no gap and no duplicate, whichever node
//! publishes. A lane that has not flown yet assumes a new topic (nothing
//! stored), which costs a refusal and a read when the topic is not new.
//!
//! **Idempotency.** A publish with a key flies alone with `Nats-Msg-Id` =
//! topic and key: JetStream keeps one of each id within the stream's
//! duplicate window (`publish.idempotency_window`), whichever node it arrives
//! on, and acknowledges a second one with the first one's stream sequence,
//! whose seq the lane reads back.
//!
//! **Failures.** A publisher hears of its publish only once JetStream has
//! stored it (or refused it): the ack is the promise that every node's
//! subscribers get it. Not connected to NATS: refused at once. A JetStream
//! error: every publish of the flight gets it. No answer within
//! `cluster.request_timeout`: every publish of the flight gets a timeout,
//! though the batch may have been stored (then its messages are delivered,
//! and a retry with an idempotency key is not stored twice); the lane reads
//! the truth before its next flight. A node that dies loses only what it had
//! not acknowledged.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{wire, Cluster, ClusterError, Link};
use crate::clock::now_ms;
use crate::protocol::{Payload, SessionId};
use crate::topic::TopicName;

/// Refusals (another node took the seq first) in a row before a flight gives up.
const MAX_ATTEMPTS: usize = 32;

/// Most messages one flight carries.
const MAX_BATCH_MESSAGES: usize = 1024;

/// Most payload bytes one flight carries (NATS refuses messages over its
/// `max_payload`, 1 MiB by default); a larger single message flies alone.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Lanes kept past which idle ones are dropped (an idle lane only saves a read).
pub(super) const MAX_LANES: usize = 100_000;

/// What a committed publish got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its seq in the topic.
    pub seq: u64,
    /// An earlier publish with the same idempotency key was stored with this seq;
    /// nothing was stored now.
    pub duplicate: bool,
}

/// The answer a queued publish waits for.
pub type Outcome = oneshot::Receiver<Result<Committed, ClusterError>>;

/// What a lane knows of its subject's last message.
#[derive(Debug, Clone, Copy, Default)]
enum Known {
    /// Nothing: the lane has not flown. It assumes a new topic (nothing stored).
    #[default]
    New,
    /// Not any more: a flight failed or timed out. The next one reads it first.
    Stale,
    /// Where this node's last flight left it.
    At(Last),
}

/// The last message of a topic's subject.
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    /// Its stream sequence (0: the subject is empty).
    stream: u64,
    /// Its topic seq (of a batch: its last message's).
    seq: u64,
}

/// One topic's publishes on this node.
pub(super) struct Lane {
    topic: TopicName,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// The subject's last message, as far as this node knows.
    last: Known,
    queued: VecDeque<Queued>,
    /// A flight task is running (it takes `queued` until it is empty).
    flying: bool,
    /// Dropped from the table while idle: a publisher that still holds it looks again.
    retired: bool,
}

/// A publish waiting for its flight.
struct Queued {
    payload: Payload,
    ts: u64,
    origin: Option<SessionId>,
    /// `Nats-Msg-Id` of a publish with an idempotency key: it flies alone.
    msg_id: Option<String>,
    done: oneshot::Sender<Result<Committed, ClusterError>>,
}

impl Cluster {
    /// Queues `payload` for `topic` and returns where its answer will come. The queueing
    /// happens now, so the publishes of one caller keep their order in the topic.
    /// Subscribers everywhere, this node's included, get the message when it arrives
    /// back from NATS.
    pub fn submit(
        self: &Arc<Self>,
        topic: &TopicName,
        payload: Payload,
        origin: Option<SessionId>,
        idempotency_key: Option<&str>,
    ) -> Result<Outcome, ClusterError> {
        self.link()?;
        let (done, outcome) = oneshot::channel();
        let queued = Queued {
            payload,
            ts: now_ms(),
            origin,
            msg_id: idempotency_key.map(|k| format!("{topic} {k}")),
            done,
        };
        loop {
            let lane = self.lane(topic);
            let mut st = lane.state.lock();
            if st.retired {
                continue;
            }
            st.queued.push_back(queued);
            let start = !std::mem::replace(&mut st.flying, true);
            drop(st);
            if start {
                tokio::spawn(Arc::clone(self).fly(lane));
            }
            return Ok(outcome);
        }
    }

    fn lane(&self, topic: &TopicName) -> Arc<Lane> {
        if let Some(l) = self.lanes.get(topic) {
            return Arc::clone(l.value());
        }
        if self.lanes.len() >= self.lanes_sweep_at.load(Ordering::Relaxed) {
            self.lanes.retain(|_, l| {
                let mut st = l.state.lock();
                st.retired = !st.flying && st.queued.is_empty();
                !st.retired
            });
            // Busy lanes stay: the next sweep waits until the table has doubled again.
            let at = (self.lanes.len() * 2).max(MAX_LANES);
            self.lanes_sweep_at.store(at, Ordering::Relaxed);
        }
        let lane = self.lanes.entry(topic.clone()).or_insert_with(|| {
            Arc::new(Lane {
                topic: topic.clone(),
                state: Mutex::new(LaneState::default()),
            })
        });
        Arc::clone(lane.value())
    }

    /// Carries `lane`'s queue to JetStream, a batch per round trip, until it is empty.
    async fn fly(self: Arc<Self>, lane: Arc<Lane>) {
        let subject = self.subject(lane.topic.as_str());
        let mut batch = Vec::new();
        loop {
            let known = {
                let mut st = lane.state.lock();
                take_batch(&mut st.queued, &mut batch);
                if batch.is_empty() {
                    st.flying = false;
                    return;
                }
                st.last
            };
            let (last, result) = match self.link() {
                Ok(link) => self.commit(link, &lane.topic, &subject, known, &batch).await,
                Err(e) => (known, Err(e)),
            };
            lane.state.lock().last = last;
            answer(&mut batch, result);
        }
    }

    /// Stores `batch` as the subject's next messages: the subject's last message now, and
    /// the first seq the batch got (or its one publish's, for a duplicate).
    async fn commit(
        &self,
        link: &Link,
        topic: &TopicName,
        subject: &str,
        known: Known,
        batch: &[Queued],
    ) -> (Known, Result<Committed, ClusterError>) {
        let outgoing: Vec<wire::Outgoing<'_>> = batch
            .iter()
            .map(|q| wire::Outgoing {
                payload: &q.payload,
                ts: q.ts,
                origin: q.origin,
            })
            .collect();
        let msg_id = batch.first().and_then(|q| q.msg_id.as_deref());
        let mut known = match known {
            // Not flown yet: assume a new topic rather than read first.
            Known::New => Last::default(),
            Known::Stale => match self.fetch_last(link, subject).await {
                Ok(l) => l,
                Err(e) => return (Known::Stale, Err(e)),
            },
            Known::At(l) => l,
        };
        for _ in 0..MAX_ATTEMPTS {
            let first = known.seq + 1;
            let (mut headers, body) = wire::encode(first, &outgoing, self.node);
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                known.stream.to_string().as_str(),
            );
            if let Some(id) = msg_id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
            }
            let sent = async {
                link.js
                    .publish_with_headers(subject.to_owned(), headers, body)
                    .await?
                    .await
            };
            match tokio::time::timeout(self.timeout, sent).await {
                Ok(Ok(ack)) if ack.duplicate => {
                    // Nothing stored now: what the lane knew still stands (or is refused next time).
                    let seq = self.seq_at(link, ack.sequence).await;
                    return (Known::At(known), seq.map(|seq| Committed { seq, duplicate: true }));
                }
                Ok(Ok(ack)) => {
                    if let Some(m) = &self.metrics {
                        m.messages_out.inc_by(batch.len() as u64);
                    }
                    let last = Last {
                        stream: ack.sequence,
                        seq: first + batch.len() as u64 - 1,
                    };
                    return (
                        Known::At(last),
                        Ok(Committed {
                            seq: first,
                            duplicate: false,
                        }),
                    );
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    if let Some(m) = &self.metrics {
                        m.publish_retries.inc();
                    }
                    known = match self.fetch_last(link, subject).await {
                        Ok(l) => l,
                        Err(e) => return (Known::Stale, Err(e)),
                    };
                }
                Ok(Err(e)) => return (Known::Stale, Err(ClusterError::nats("publishing", e))),
                // It may still be stored: the next flight reads the truth first.
                Err(_) => return (Known::Stale, Err(ClusterError::TimedOut("publishing"))),
            }
        }
        (Known::Stale, Err(ClusterError::Contended(topic.clone())))
    }

    /// The subject's last message as the stream has it now.
    async fn fetch_last(&self, link: &Link, subject: &str) -> Result<Last, ClusterError> {
        let got = tokio::time::timeout(self.timeout, link.stream.get_last_raw_message_by_subject(subject))
            .await
            .map_err(|_| ClusterError::TimedOut("reading a topic's last seq"))?;
        match got {
            Ok(m) => Ok(Last {
                stream: m.sequence,
                seq: wire::last_seq(Some(&m.headers)).unwrap_or(0),
            }),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Last::default()),
            Err(e) => Err(ClusterError::nats("reading a topic's last seq", e)),
        }
    }

    /// The topic seq of the stream's message `sequence` (a duplicate's original).
    async fn seq_at(&self, link: &Link, sequence: u64) -> Result<u64, ClusterError> {
        let what = "reading an earlier publish with the same idempotency key";
        let m = tokio::time::timeout(self.timeout, link.stream.get_raw_message(sequence))
            .await
            .map_err(|_| ClusterError::TimedOut(what))?
            .map_err(|e| ClusterError::nats(what, e))?;
        wire::first_seq(Some(&m.headers)).ok_or_else(|| ClusterError::nats(what, "the message has no seq"))
    }

    /// The stream sequence of the subject's last message (0: none).
    pub(super) async fn last_stream_seq(&self, link: &Link, subject: &str) -> Result<u64, ClusterError> {
        self.fetch_last(link, subject).await.map(|l| l.stream)
    }
}

/// Moves the next flight's publishes from `queued` into `batch` (empty before): the
/// front one with an idempotency key alone, else keyless ones up to the batch limits.
fn take_batch(queued: &mut VecDeque<Queued>, batch: &mut Vec<Queued>) {
    let mut bytes = 0;
    while let Some(q) = queued.front() {
        let alone = q.msg_id.is_some();
        let fits = batch.len() < MAX_BATCH_MESSAGES && bytes + q.payload.len() <= MAX_BATCH_BYTES;
        if !batch.is_empty() && (alone || !fits) {
            break;
        }
        bytes += q.payload.len();
        batch.extend(queued.pop_front());
        if alone {
            break;
        }
    }
}

/// Tells every publish of `batch` (emptied) how it went: consecutive seqs from the
/// first one's, or the same error.
fn answer(batch: &mut Vec<Queued>, result: Result<Committed, ClusterError>) {
    for (i, q) in batch.drain(..).enumerate() {
        let mine = match &result {
            Ok(c) => Ok(Committed {
                seq: c.seq + i as u64,
                duplicate: c.duplicate,
            }),
            Err(e) => Err(e.clone()),
        };
        // A publisher that went away no longer waits for its answer.
        let _ = q.done.send(mine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: Option<&str>, len: usize) -> (Queued, Outcome) {
        let (done, outcome) = oneshot::channel();
        let q = Queued {
            payload: Payload::text("x".repeat(len)),
            ts: 0,
            origin: None,
            msg_id: key.map(str::to_owned),
            done,
        };
        (q, outcome)
    }

    /// The sizes of the flights that would carry publishes of these keys and lengths.
    fn flights(publishes: &[(Option<&str>, usize)]) -> Vec<usize> {
        let (mut q, _outcomes): (VecDeque<Queued>, Vec<Outcome>) =
            publishes.iter().map(|&(key, len)| queued(key, len)).unzip();
        let mut sizes = Vec::new();
        let mut batch = Vec::new();
        while !q.is_empty() {
            take_batch(&mut q, &mut batch);
            sizes.push(batch.len());
            batch.clear();
        }
        sizes
    }

    #[test]
    fn a_flight_takes_what_is_queued_but_a_keyed_publish_flies_alone() {
        let keys = [None, None, Some("k"), None, Some("j"), Some("i")];
        let publishes: Vec<_> = keys.into_iter().map(|k| (k, 1)).collect();
        assert_eq!(flights(&publishes), [2, 1, 1, 1, 1], "order kept, keyed ones alone");
    }

    #[test]
    fn a_flight_stops_at_its_byte_limit_but_takes_one_larger_message() {
        let lens = [MAX_BATCH_BYTES / 2, MAX_BATCH_BYTES / 2, 1, MAX_BATCH_BYTES * 2];
        let publishes: Vec<_> = lens.into_iter().map(|len| (None, len)).collect();
        assert_eq!(flights(&publishes), [2, 1, 1]);
    }

    #[tokio::test]
    async fn every_publish_of_a_flight_hears_its_own_seq_or_the_error() {
        let mut batch = Vec::new();
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let (one, o) = queued(None, 1);
            batch.push(one);
            outcomes.push(o);
        }
        answer(
            &mut batch,
            Ok(Committed {
                seq: 7,
                duplicate: false,
            }),
        );
        let mut seqs = Vec::new();
        for o in outcomes {
            seqs.push(o.await.unwrap().unwrap().seq);
        }
        assert_eq!(seqs, [7, 8, 9]);
        let (one, o) = queued(None, 1);
        let mut batch = vec![one];
        answer(&mut batch, Err(ClusterError::TimedOut("publishing")));
        assert!(matches!(o.await.unwrap(), Err(ClusterError::TimedOut(_))));
    }
}
