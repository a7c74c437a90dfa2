//! Publishing in cluster mode: one seq per topic across every node.
//!
//! The topic's next seq is claimed in the JetStream stream with optimistic
//! concurrency: the message carries seq = last + 1 in a header and
//! `Nats-Expected-Last-Subject-Sequence` = the stream sequence of the subject's
//! last message. If another node got there first, JetStream refuses it; the node
//! learns the subject's real last message and tries again. So the stored order of
//! a subject is its seq order, with no gap and no duplicate, whichever node
//! publishes. Publishes to one topic from one node queue on a local lock, so they
//! do not race each other. The cost: one JetStream round trip per publish.

use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;

use super::{wire, Cluster, ClusterError, Link};
use crate::clock::now_ms;
use crate::protocol::{Payload, SessionId};
use crate::topic::TopicName;

/// Attempts before a publish that keeps losing the race gives up.
const MAX_ATTEMPTS: usize = 32;

/// Cached topics past which the cache starts over (it only saves a lookup).
const MAX_CACHED_TOPICS: usize = 100_000;

/// The last message of a topic's subject.
#[derive(Debug, Clone, Copy, Default)]
pub struct Last {
    /// Its stream sequence (0: the subject is empty).
    stream: u64,
    /// Its topic seq.
    seq: u64,
}

impl Cluster {
    /// Publishes `payload` to `topic` through NATS and returns the seq it got. Subscribers
    /// everywhere, this node's included, get it when it arrives back from NATS.
    pub async fn publish(
        &self,
        topic: &TopicName,
        payload: Payload,
        origin: Option<SessionId>,
    ) -> Result<u64, ClusterError> {
        let link = self.link()?;
        let subject = self.subject(topic.as_str());
        let lock = self.last_lock(topic);
        let mut last = lock.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let known = match *last {
                Some(l) => l,
                None => self.fetch_last(link, &subject).await?,
            };
            let seq = known.seq + 1;
            let mut headers = wire::headers(seq, now_ms(), &payload, origin.map(|s| (self.node, s)));
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                known.stream.to_string().as_str(),
            );
            let sent = async {
                link.js
                    .publish_with_headers(subject.clone(), headers, payload.bytes().clone())
                    .await?
                    .await
            };
            match tokio::time::timeout(self.timeout, sent).await {
                Ok(Ok(ack)) => {
                    *last = Some(Last {
                        stream: ack.sequence,
                        seq,
                    });
                    if let Some(m) = &self.metrics {
                        m.messages_out.inc();
                    }
                    return Ok(seq);
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    *last = None;
                    if let Some(m) = &self.metrics {
                        m.publish_retries.inc();
                    }
                }
                Ok(Err(e)) => {
                    *last = None;
                    return Err(ClusterError::nats("publishing", e));
                }
                Err(_) => {
                    // It may still be stored: learn the truth before the next publish.
                    *last = None;
                    return Err(ClusterError::TimedOut("publishing"));
                }
            }
        }
        Err(ClusterError::Contended(topic.clone()))
    }

    fn last_lock(&self, topic: &TopicName) -> Arc<tokio::sync::Mutex<Option<Last>>> {
        if let Some(l) = self.lasts.get(topic) {
            return Arc::clone(l.value());
        }
        if self.lasts.len() >= MAX_CACHED_TOPICS {
            // Only a cache: a publisher still holding an old lock is kept honest by JetStream.
            self.lasts.clear();
        }
        Arc::clone(self.lasts.entry(topic.clone()).or_default().value())
    }

    /// The subject's last message as the stream has it now.
    async fn fetch_last(&self, link: &Link, subject: &str) -> Result<Last, ClusterError> {
        let got = tokio::time::timeout(self.timeout, link.stream.get_last_raw_message_by_subject(subject))
            .await
            .map_err(|_| ClusterError::TimedOut("reading a topic's last seq"))?;
        match got {
            Ok(m) => Ok(Last {
                stream: m.sequence,
                seq: wire::seq(Some(&m.headers)).unwrap_or(0),
            }),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Last::default()),
            Err(e) => Err(ClusterError::nats("reading a topic's last seq", e)),
        }
    }

    /// The stream sequence of the subject's last message (0: none).
    pub(super) async fn last_stream_seq(&self, link: &Link, subject: &str) -> Result<u64, ClusterError> {
        self.fetch_last(link, subject).await.map(|l| l.stream)
    }
}
