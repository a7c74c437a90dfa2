//! The one way to publish. Every way in — `/ws` requests, raw topic sockets,
//! `POST /api/publish[/{topic}]` and the batch, and any transport added
//! later — hands what a client sent to [`Publisher::publish`], which alone
//! decides whether it may go, and where:
//!
//! 1. the topic is one clients may publish to (not a broker topic, `$...`);
//! 2. the publisher's grants allow it (`auth.rs`);
//! 3. a topic that does not exist yet fits under `limits.max_topics`;
//! 4. the publisher's budget (`limits.publish_rate_per_connection`) has room;
//!
//! then the publish is counted (`fanout_messages_published_total{transport}`)
//! and goes to the registry on a single node, or through the cluster's NATS
//! bridge in cluster mode (where this node's subscribers get it, like every
//! other node's, when it comes back from NATS).
//!
//! A transport adds a way in by describing its publisher as a [`Source`] and
//! calling this; it repeats none of the checks.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::auth::Grants;
use crate::cluster::{Cluster, Outcome};
use crate::error::{ErrorCode, RequestError};
use crate::metrics::{Metrics, Transport};
use crate::protocol::{Payload, SessionId};
use crate::registry::{Published, Registry};
use crate::topic::TopicName;

/// The publish entry point of one broker.
pub struct Publisher {
    registry: Arc<Registry>,
    /// The NATS bridge in cluster mode; `None` on a single node.
    cluster: Option<Arc<Cluster>>,
    metrics: Option<Arc<Metrics>>,
}

/// Who publishes: what they may publish to, their budget, and their connection.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// What the publisher may publish to.
    pub grants: &'a Grants,
    /// The publisher's connection's budget (`limits.publish_rate_per_connection`).
    pub budget: &'a PublishBudget,
    /// The publishing session, so a raw socket without echo skips its own messages;
    /// `None` for a publish with no session (HTTP).
    pub origin: Option<SessionId>,
    /// The way in, the `transport` label of the publish counter.
    pub transport: Transport,
}

impl<'a> Source<'a> {
    /// A publisher without a session, such as an HTTP request.
    pub fn sessionless(grants: &'a Grants, budget: &'a PublishBudget, transport: Transport) -> Self {
        Source {
            grants,
            budget,
            origin: None,
            transport,
        }
    }
}

impl Publisher {
    /// Publishes into `registry`, or through `cluster` when there is one.
    pub fn new(registry: Arc<Registry>, cluster: Option<Arc<Cluster>>, metrics: Option<Arc<Metrics>>) -> Self {
        Publisher {
            registry,
            cluster,
            metrics,
        }
    }

    /// Publishes `payload` to `topic` (as the client wrote it) for `source`, once per
    /// `idempotency_key` within `publish.idempotency_window`.
    pub async fn publish(
        &self,
        source: Source<'_>,
        topic: &str,
        payload: Payload,
        idempotency_key: Option<&str>,
    ) -> Result<Published, RequestError> {
        let name = TopicName::parse(topic)?;
        self.submit(source, &name, payload, idempotency_key)?.outcome().await
    }

    /// Checks a publish and hands it over, now: on a single node it is done when this
    /// returns; in cluster mode it has taken its place in the topic's order, and
    /// [`Submitted::outcome`] waits for NATS. So a caller that submits several publishes
    /// before awaiting any keeps their order, and has them in flight at once.
    pub fn submit(
        &self,
        source: Source<'_>,
        topic: &TopicName,
        payload: Payload,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, RequestError> {
        self.admit(source, topic, idempotency_key)?;
        match (&self.cluster, idempotency_key) {
            (None, None) => Ok(Submitted::Done(self.registry.publish(topic, payload, source.origin))),
            (None, Some(key)) => Ok(Submitted::Done(self.registry.publish_once(
                topic,
                payload,
                source.origin,
                key,
            ))),
            (Some(cluster), key) => {
                let outcome = cluster.submit(topic, payload, source.origin, key)?;
                Ok(Submitted::InFlight(Box::new(InFlight {
                    outcome,
                    registry: Arc::clone(&self.registry),
                    topic: topic.clone(),
                })))
            }
        }
    }

    /// Publishes every item of a batch for `source`: one answer per item, in order, an
    /// item that could not be read keeping its error. Every item is handed over before
    /// any answer is awaited, so in cluster mode items for different topics are in
    /// flight together (and items for one topic keep their order).
    pub async fn publish_batch(
        &self,
        source: Source<'_>,
        items: impl IntoIterator<Item = Result<BatchItem, RequestError>>,
    ) -> Vec<Result<(String, Published), RequestError>> {
        let submitted: Vec<Result<(String, Submitted), RequestError>> = items
            .into_iter()
            .map(|item| {
                let item = item?;
                let name = TopicName::parse(&item.topic)?;
                let s = self.submit(source, &name, item.payload, item.idempotency_key.as_deref())?;
                Ok((item.topic, s))
            })
            .collect();
        let mut answers = Vec::with_capacity(submitted.len());
        for s in submitted {
            answers.push(match s {
                Ok((topic, s)) => s.outcome().await.map(|p| (topic, p)),
                Err(e) => Err(e),
            });
        }
        answers
    }

    /// Every check a publish must pass, in order, and its count once it has.
    fn admit(&self, source: Source<'_>, topic: &TopicName, idempotency_key: Option<&str>) -> Result<(), RequestError> {
        if topic.is_system() {
            return Err(RequestError::new(
                ErrorCode::Forbidden,
                format!("`{topic}` is a broker topic ($...); clients cannot publish to it"),
            ));
        }
        if let Some(key) = idempotency_key {
            check_key(key)?;
        }
        if let Err(e) = source.grants.check_publish(topic) {
            if let Some(m) = &self.metrics {
                m.auth_failures.inc();
            }
            return Err(e);
        }
        self.registry.admit(topic)?;
        source.budget.take()?;
        if let Some(m) = &self.metrics {
            // One add per published message, not per delivery: the publish locks the topic anyway.
            m.published(source.transport).inc();
        }
        Ok(())
    }
}

/// One item of a batch, read: its topic (as written), data and idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The topic, not yet checked.
    pub topic: String,
    /// The data.
    pub payload: Payload,
    /// Publish once per key (`publish.idempotency_window`).
    pub idempotency_key: Option<String>,
}

/// A publish handed over: done already (a single node), or in flight through the cluster.
pub enum Submitted {
    /// Published.
    Done(Published),
    /// Queued on its topic's lane; the answer comes when NATS has stored it.
    InFlight(Box<InFlight>),
}

/// A publish on its way through the cluster.
pub struct InFlight {
    outcome: Outcome,
    registry: Arc<Registry>,
    topic: TopicName,
}

impl Submitted {
    /// Whether the publish is done already (nothing to wait for).
    pub fn is_done(&self) -> bool {
        matches!(self, Submitted::Done(_))
    }

    /// What the publish got: its seq, and this node's subscribers of the topic now (in
    /// cluster mode the message reaches them when it arrives back from NATS).
    pub async fn outcome(self) -> Result<Published, RequestError> {
        let f = match self {
            Submitted::Done(p) => return Ok(p),
            Submitted::InFlight(f) => f,
        };
        let committed = f.outcome.await.map_err(|_| {
            RequestError::new(
                ErrorCode::Internal,
                "the cluster stopped before the publish was stored; retry it",
            )
        })??;
        Ok(Published {
            seq: committed.seq,
            subscribers: f.registry.topic_info(&f.topic).map_or(0, |t| t.subscribers),
            duplicate: committed.duplicate,
        })
    }
}

/// Most bytes of an idempotency key.
pub const MAX_KEY_BYTES: usize = 255;

/// Checks an idempotency key: 1 to 255 visible ASCII characters (it travels in a NATS
/// header in cluster mode).
fn check_key(key: &str) -> Result<(), RequestError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::bad_request(format!(
            "an idempotency key must be 1 to {MAX_KEY_BYTES} visible ASCII characters (no spaces), such as a UUID"
        )));
    }
    Ok(())
}

/// A connection's publish budget: a token bucket of `limits.publish_rate_per_connection`
/// publishes per second, holding one second's worth. Without a limit (rate 0) taking
/// from it costs nothing.
#[derive(Debug)]
pub struct PublishBudget {
    /// Publishes per second allowed; 0: no limit.
    rate: u32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Refusals since the last accepted publish.
    refused_in_a_row: u32,
}

impl PublishBudget {
    /// A full budget of `rate` publishes per second; 0 means no limit.
    pub fn new(rate: u32) -> Self {
        PublishBudget {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(rate),
                last: Instant::now(),
                refused_in_a_row: 0,
            }),
        }
    }

    /// Publishes per second allowed (0: no limit).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes one publish, or says it is over the rate.
    pub fn take(&self) -> Result<(), RequestError> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let mut b = self.bucket.lock();
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate.max(1.0));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refused_in_a_row = 0;
            return Ok(());
        }
        b.refused_in_a_row += 1;
        Err(rate_limited(self.rate))
    }

    /// Publishes refused since the last one accepted.
    pub fn refused_in_a_row(&self) -> u32 {
        if self.rate == 0 {
            return 0;
        }
        self.bucket.lock().refused_in_a_row
    }
}

/// The error for a publish over its connection's rate.
fn rate_limited(rate: u32) -> RequestError {
    RequestError::new(
        ErrorCode::RateLimited,
        format!("over {rate} publishes per second (limits.publish_rate_per_connection); slow down"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn publisher() -> Publisher {
        Publisher::new(Arc::new(Registry::new(Arc::new(Config::default()))), None, None)
    }

    fn source<'a>(grants: &'a Grants, budget: &'a PublishBudget) -> Source<'a> {
        Source::sessionless(grants, budget, Transport::Http)
    }

    #[test]
    fn the_budget_allows_its_rate_then_refuses() {
        let b = PublishBudget::new(3);
        assert!(b.take().is_ok() && b.take().is_ok() && b.take().is_ok());
        let e = b.take().unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("publish_rate_per_connection"), "{e}");
        assert_eq!(b.refused_in_a_row(), 1);
        let free = PublishBudget::new(0);
        assert!((0..1000).all(|_| free.take().is_ok()));
    }

    #[tokio::test]
    async fn every_way_in_gets_the_same_checks() {
        let p = publisher();
        let all = Grants::all();
        let budget = PublishBudget::new(0);
        let s = source(&all, &budget);
        let e = p.publish(s, "$sys.stats", Payload::text("x"), None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = p.publish(s, "a..b", Payload::text("x"), None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadTopic);
        let mut config = Config::default();
        config.auth.mode = crate::config::AuthMode::Jwt;
        config.auth.jwt_secret = "s".into();
        let none = crate::auth::Auth::from_config(&config).unwrap().anonymous();
        let e = p
            .publish(source(&none, &budget), "a", Payload::text("x"), None)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{e}");
        let published = p.publish(s, "a", Payload::text("x"), None).await.unwrap();
        assert_eq!(published.seq, 1);
        for bad in ["", "has space", &"k".repeat(256), "é"] {
            let e = p.publish(s, "a", Payload::text("x"), Some(bad)).await.unwrap_err();
            assert!(e.message.contains("idempotency key"), "{bad:?}: {e}");
        }
        let keyed = p.publish(s, "a", Payload::text("y"), Some("k-1")).await.unwrap();
        let again = p.publish(s, "a", Payload::text("y"), Some("k-1")).await.unwrap();
        assert_eq!(
            (keyed.seq, keyed.duplicate, again.seq, again.duplicate),
            (2, false, 2, true)
        );
    }

    #[tokio::test]
    async fn a_batch_keeps_its_order_and_each_items_error() {
        let p = publisher();
        let all = Grants::all();
        let budget = PublishBudget::new(0);
        let item = |topic: &str, data: &str| {
            Ok(BatchItem {
                topic: topic.to_owned(),
                payload: Payload::text(data),
                idempotency_key: None,
            })
        };
        let items = vec![
            item("a", "1"),
            Err(RequestError::bad_request("item 1: needs a `data` field")),
            item("a", "2"),
            item("$x", "3"),
        ];
        let answers = p.publish_batch(source(&all, &budget), items).await;
        let seqs: Vec<Option<u64>> = answers.iter().map(|a| a.as_ref().ok().map(|(_, p)| p.seq)).collect();
        assert_eq!(seqs, [Some(1), None, Some(2), None]);
    }
}
