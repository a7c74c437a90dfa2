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
use crate::cluster::Cluster;
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

impl Publisher {
    /// Publishes into `registry`, or through `cluster` when there is one.
    pub fn new(registry: Arc<Registry>, cluster: Option<Arc<Cluster>>, metrics: Option<Arc<Metrics>>) -> Self {
        Publisher {
            registry,
            cluster,
            metrics,
        }
    }

    /// Publishes `payload` to `topic` (as the client wrote it) for `source`.
    pub async fn publish(&self, source: Source<'_>, topic: &str, payload: Payload) -> Result<Published, RequestError> {
        let name = TopicName::parse(topic)?;
        self.publish_to(source, &name, payload).await
    }

    /// Publishes `payload` to `topic` for `source`. On a single node the future is ready
    /// at once; only cluster mode waits (for NATS).
    pub async fn publish_to(
        &self,
        source: Source<'_>,
        topic: &TopicName,
        payload: Payload,
    ) -> Result<Published, RequestError> {
        self.admit(source, topic)?;
        match &self.cluster {
            None => Ok(self.registry.publish(topic, payload, source.origin)),
            // Boxed: NATS's futures are kilobytes, and inline they would sit in every
            // connection's reader future, single-node mode included.
            Some(cluster) => Box::pin(self.publish_through(cluster, source, topic, payload)).await,
        }
    }

    /// Publishes every item of a batch for `source`, in order: one answer per item, an
    /// item that could not be read keeping its error.
    pub async fn publish_batch(
        &self,
        source: Source<'_>,
        items: impl IntoIterator<Item = Result<(String, Payload), RequestError>>,
    ) -> Vec<Result<(String, Published), RequestError>> {
        let mut answers = Vec::new();
        for item in items {
            answers.push(match item {
                Ok((topic, payload)) => self.publish(source, &topic, payload).await.map(|p| (topic, p)),
                Err(e) => Err(e),
            });
        }
        answers
    }

    /// Every check a publish must pass, in order, and its count once it has.
    fn admit(&self, source: Source<'_>, topic: &TopicName) -> Result<(), RequestError> {
        if topic.is_system() {
            return Err(RequestError::new(
                ErrorCode::Forbidden,
                format!("`{topic}` is a broker topic ($...); clients cannot publish to it"),
            ));
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

    /// Cluster mode: the seq NATS gave the message, and this node's subscribers of the
    /// topic now (the message reaches them when it arrives back from NATS).
    async fn publish_through(
        &self,
        cluster: &Cluster,
        source: Source<'_>,
        topic: &TopicName,
        payload: Payload,
    ) -> Result<Published, RequestError> {
        let seq = cluster.publish(topic, payload, source.origin).await?;
        let subscribers = self.registry.topic_info(topic).map_or(0, |t| t.subscribers);
        Ok(Published { seq, subscribers })
    }
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
        Source {
            grants,
            budget,
            origin: None,
            transport: Transport::Http,
        }
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
        let e = p.publish(s, "$sys.stats", Payload::text("x")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = p.publish(s, "a..b", Payload::text("x")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadTopic);
        let mut config = Config::default();
        config.auth.mode = crate::config::AuthMode::Jwt;
        config.auth.jwt_secret = "s".into();
        let none = crate::auth::Auth::from_config(&config).unwrap().anonymous();
        let e = p
            .publish(source(&none, &budget), "a", Payload::text("x"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "{e}");
        let published = p.publish(s, "a", Payload::text("x")).await.unwrap();
        assert_eq!(published.seq, 1);
    }

    #[tokio::test]
    async fn a_batch_keeps_its_order_and_each_items_error() {
        let p = publisher();
        let all = Grants::all();
        let budget = PublishBudget::new(0);
        let items = vec![
            Ok(("a".to_owned(), Payload::text("1"))),
            Err(RequestError::bad_request("item 1: needs a `data` field")),
            Ok(("a".to_owned(), Payload::text("2"))),
            Ok(("$x".to_owned(), Payload::text("3"))),
        ];
        let answers = p.publish_batch(source(&all, &budget), items).await;
        let seqs: Vec<Option<u64>> = answers.iter().map(|a| a.as_ref().ok().map(|(_, p)| p.seq)).collect();
        assert_eq!(seqs, [Some(1), None, Some(2), None]);
    }
}
