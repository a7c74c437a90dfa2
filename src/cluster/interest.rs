//! Interests: the topics and patterns this node follows on NATS, one per filter its
//! own clients hold, counted per subscription and dropped with the last one.
//!
//! An interest is an ordered JetStream consumer on the filter's subject, so a node
//! sees each subject in stream order (= seq order), and after a NATS reconnect the
//! consumer resumes after the last stream sequence it delivered instead of losing
//! what was stored meanwhile. An exact topic's consumer starts at the subject's
//! retained messages: they fill the node's history (shared history for `since`,
//! last values) and bring its seq up to the cluster's before the subscribe is
//! acknowledged. A pattern's consumer starts after the stream's current end.
//!
//! A subscribe is acknowledged only once the consumer exists and the NATS client
//! has flushed its subscription, so the ack means: whatever is published after it,
//! on any node, reaches this subscriber.

use std::sync::Arc;

use async_nats::jetstream::consumer::{push, DeliverPolicy};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{watch, OnceCell};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::{wire, Cluster, ClusterError, Link};
use crate::clock::now_ms;
use crate::registry::Delivered;
use crate::topic::Filter;

/// One followed filter and how many local subscriptions hold it.
pub(super) struct Entry {
    refs: usize,
    interest: Arc<Interest>,
}

/// A followed filter: its consumer task, started once.
pub(super) struct Interest {
    filter: Filter,
    ready: OnceCell<()>,
    task: Mutex<Option<AbortHandle>>,
}

impl Cluster {
    /// Follows `filter` on NATS for one more local subscription; returns once what is
    /// published from now on will arrive (and, for a topic, its history is here).
    pub async fn acquire(self: &Arc<Self>, filter: &Filter) -> Result<(), ClusterError> {
        if is_local(filter) {
            return Ok(());
        }
        let interest = {
            let mut map = self.interests.lock();
            let entry = map.entry(filter.as_str().to_owned()).or_insert_with(|| Entry {
                refs: 0,
                interest: Arc::new(Interest {
                    filter: filter.clone(),
                    ready: OnceCell::new(),
                    task: Mutex::new(None),
                }),
            });
            entry.refs += 1;
            Arc::clone(&entry.interest)
        };
        // Released on failure, and if the subscriber goes away (this future dropped) meanwhile.
        let mut held = Acquiring {
            cluster: self,
            filter: Some(filter),
        };
        interest.ready.get_or_try_init(|| self.open(&interest)).await?;
        held.filter = None;
        Ok(())
    }

    /// Lets go of one [`Cluster::acquire`]; the last one stops following the filter.
    pub fn release(&self, filter: &Filter) {
        if is_local(filter) {
            return;
        }
        let mut map = self.interests.lock();
        let Some(entry) = map.get_mut(filter.as_str()) else {
            return;
        };
        entry.refs -= 1;
        if entry.refs > 0 {
            return;
        }
        let Some(entry) = map.remove(filter.as_str()) else {
            return;
        };
        drop(map);
        let task = entry.interest.task.lock().take();
        if let Some(task) = task {
            task.abort();
            if let Filter::Exact(name) = &entry.interest.filter {
                self.registry.unpin(name);
            }
            self.registry.forget(&entry.interest.filter);
            if let Some(m) = &self.metrics {
                m.interests.dec();
            }
        }
    }

    /// Creates the consumer, starts delivering from it, and waits for a topic's catch-up.
    async fn open(self: &Arc<Self>, interest: &Interest) -> Result<(), ClusterError> {
        let link = self.link()?;
        let subject = self.subject(interest.filter.as_str());
        // Pinned from before the catch-up until the interest goes: unpinned on the way out otherwise.
        let mut pinned = Pinned {
            cluster: self,
            name: None,
        };
        let (policy, floor, caught_up) = match &interest.filter {
            Filter::Exact(name) => {
                self.registry.pin(name);
                pinned.name = Some(name);
                (DeliverPolicy::All, 0, self.last_stream_seq(link, &subject).await?)
            }
            Filter::Pattern(_) => {
                let end = self.stream_end(link).await?;
                (
                    DeliverPolicy::ByStartSequence {
                        start_sequence: end + 1,
                    },
                    end,
                    0,
                )
            }
        };
        let (task, mut progress) = self.follow(link, subject, policy, floor).await?;
        // From here the task holds the pin: `release` (or the failure below) undoes both.
        *interest.task.lock() = Some(task);
        pinned.name = None;
        if let Some(m) = &self.metrics {
            m.interests.inc();
        }
        let flushed = async {
            link.client
                .flush()
                .await
                .map_err(|e| ClusterError::nats("registering a subscription", e))?;
            progress
                .wait_for(|&s| s >= caught_up)
                .await
                .map_err(|e| ClusterError::nats("catching up on a topic", e))?;
            Ok(())
        };
        let result = match tokio::time::timeout(self.timeout, flushed).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::TimedOut("catching up on a topic")),
        };
        if result.is_err() {
            if let Some(task) = interest.task.lock().take() {
                task.abort();
                if let Filter::Exact(name) = &interest.filter {
                    self.registry.unpin(name);
                }
                if let Some(m) = &self.metrics {
                    m.interests.dec();
                }
            }
        }
        result
    }

    /// The stream's last sequence now.
    async fn stream_end(&self, link: &Link) -> Result<u64, ClusterError> {
        let mut stream = link.stream.clone();
        let info = tokio::time::timeout(self.timeout, stream.info())
            .await
            .map_err(|_| ClusterError::TimedOut("reading the stream's end"))?
            .map_err(|e| ClusterError::nats("reading the stream's end", e))?;
        Ok(info.state.last_sequence)
    }

    /// Starts an ordered consumer on `subject` and a task delivering what it gets into the
    /// registry; returns the task and the stream sequence it has delivered up to.
    async fn follow(
        self: &Arc<Self>,
        link: &Link,
        subject: String,
        policy: DeliverPolicy,
        floor: u64,
    ) -> Result<(AbortHandle, watch::Receiver<u64>), ClusterError> {
        let config = push::OrderedConfig {
            deliver_subject: link.client.new_inbox(),
            filter_subject: subject,
            deliver_policy: policy,
            ..Default::default()
        };
        let messages = async {
            let consumer = link
                .stream
                .create_consumer(config)
                .await
                .map_err(|e| ClusterError::nats("creating a consumer", e))?;
            consumer
                .messages()
                .await
                .map_err(|e| ClusterError::nats("subscribing to a consumer", e))
        };
        let messages = tokio::time::timeout(self.timeout, messages)
            .await
            .map_err(|_| ClusterError::TimedOut("creating a consumer"))??;
        let (tx, rx) = watch::channel(floor);
        let me = Arc::clone(self);
        let task = tokio::spawn(async move { me.run_consumer(messages, floor, tx).await });
        Ok((task.abort_handle(), rx))
    }

    async fn run_consumer(self: Arc<Self>, mut messages: push::Ordered, floor: u64, progress: watch::Sender<u64>) {
        while let Some(next) = messages.next().await {
            let m = match next {
                Ok(m) => m,
                Err(e) => {
                    // The ordered consumer recreates itself after the last message it delivered.
                    debug!(error = %e, "cluster consumer interrupted; resuming");
                    continue;
                }
            };
            let Ok(stream_seq) = m.info().map(|i| i.stream_sequence) else {
                continue;
            };
            // A pattern consumer recreated before its first message replays from the start.
            if stream_seq <= floor {
                continue;
            }
            let msg = m.message;
            match wire::decode(&self.prefix, &msg.subject, msg.headers.as_ref(), msg.payload, self.node) {
                Ok(msgs) => self.arrived(msgs),
                Err(e) => warn!(error = %e, "dropping a NATS message"),
            }
            progress.send_replace(stream_seq);
        }
    }

    /// Fans out what one NATS message carried (one message, or a batch of one topic's).
    fn arrived(&self, msgs: Vec<crate::protocol::Message>) {
        if let Some(m) = &self.metrics {
            m.messages_in.inc_by(msgs.len() as u64);
            let now = now_ms();
            for msg in &msgs {
                m.lag.observe(now.saturating_sub(msg.ts) as f64 / 1000.0);
            }
        }
        self.registry.deliver_all(msgs, |topic, seq, delivered| {
            if let Delivered::AfterGap(from, to, _) = delivered {
                warn!(%topic, from, to, seq, "messages lost in the cluster; subscribers were sent a gap notice");
                if let Some(m) = &self.metrics {
                    m.gaps.inc();
                }
            }
        });
    }
}

/// One [`Cluster::acquire`] under way; released if it does not complete.
struct Acquiring<'a> {
    cluster: &'a Cluster,
    filter: Option<&'a Filter>,
}

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        if let Some(filter) = self.filter {
            self.cluster.release(filter);
        }
    }
}

/// A topic pinned by an interest still opening; unpinned if the opening stops short.
struct Pinned<'a> {
    cluster: &'a Cluster,
    name: Option<&'a crate::topic::TopicName>,
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name {
            self.cluster.registry.unpin(name);
        }
    }
}

/// Broker topics (`$...`) stay on the node that makes them.
fn is_local(filter: &Filter) -> bool {
    filter.as_str().starts_with('$')
}
