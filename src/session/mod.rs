//! One connection: its subscriptions, how it answers requests, and its
//! writer loop. Nothing here knows how frames arrive (see `transport`).
//!
//! Replies go through the same [`SendQueue`] as messages, so they are
//! ordered with them and written in the same vectored writes.

pub mod keepalive;
pub mod subscriptions;
pub mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::subscriptions::Subscriptions;
use crate::auth::Grants;
use crate::clock::now_secs;
use crate::connections::{Expiry, Listed, Peer};
use crate::error::{ErrorCode, RequestError};
use crate::hub::Hub;
use crate::metrics::OpenConnection;
use crate::protocol::{self, ClientMsg, Framing, Payload, Reply, SessionId, Wire};
use crate::publish::{PublishBudget, Source, Submitted};
use crate::queue::{QueueLimits, SendQueue, Sink};
use crate::registry::{Position, Published, Resume};
use crate::topic::{Filter, TopicName};

/// One client connection's state.
pub struct Session {
    id: SessionId,
    queue: Arc<SendQueue>,
    hub: Arc<Hub>,
    /// Subscriptions by the text the client used, so unsubscribe finds them.
    subscriptions: Subscriptions,
    /// This session's row in the hub's connection table.
    listed: Arc<Listed>,
    /// What this client may subscribe and publish to (everything with `auth.mode = none`).
    grants: Arc<Grants>,
    /// `limits.publish_rate_per_connection`, as set when the client first publishes:
    /// made then, as most subscribers never publish.
    budget: OnceLock<Box<PublishBudget>>,
    /// Cluster mode: places for publishes in flight, made with the first publish.
    in_flight: Option<Arc<Semaphore>>,
    /// This session in `fanout_connections{transport}`, for as long as it lives.
    _open: Option<OpenConnection>,
}

impl Session {
    /// A session for `peer`, listed in the connection table and counted in the metrics,
    /// its queue drained by one task. Queue limits are the current settings' (a reload
    /// applies to later sessions).
    pub fn with_peer(hub: Arc<Hub>, wire: Wire, echo: bool, peer: Peer) -> Self {
        Self::with_sink(hub, wire, echo, peer, Sink::Task)
    }

    /// As [`Session::with_peer`], its queue written out by `sink`.
    /// `framing` is the connection's wire format, and permessage-deflate if it agreed to it.
    pub fn with_sink(hub: Arc<Hub>, framing: impl Into<Framing>, echo: bool, peer: Peer, sink: Sink) -> Self {
        let id = hub.next_session_id();
        let settings = hub.settings();
        let limits = QueueLimits {
            max_messages: settings.queue.max_messages,
            max_bytes: settings.queue.max_bytes,
        };
        let queue = Arc::new(
            SendQueue::new(id, framing, echo, limits)
                .with_sink(sink)
                .with_metrics(hub.metrics.clone()),
        );
        let open = hub.metrics.as_ref().map(|m| m.connection_opened(peer.transport));
        let listed = hub.connections.insert(id, peer, Arc::clone(&queue));
        Session {
            grants: hub.auth().anonymous_shared(),
            budget: OnceLock::new(),
            in_flight: None,
            id,
            queue,
            hub,
            subscriptions: Subscriptions::default(),
            listed,
            _open: open,
        }
    }

    /// The connection id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// When the token runs out, which the reader waits on (kept in the connection's row,
    /// so the reader can watch it through [`Session::listed`] while it reads).
    pub fn expiry(&self) -> &Expiry {
        &self.listed.expiry
    }

    /// Whether the client has gone on publishing over its rate for too long.
    pub fn rate_abused(&self) -> bool {
        self.budget
            .get()
            .is_some_and(|b| b.refused_in_a_row() >= MAX_RATE_LIMITED_IN_A_ROW)
    }

    /// Sets what the client may do (from a token); its `sub` names it in presence from now on.
    pub fn set_grants(&mut self, grants: Grants) {
        let left = self.hub.auth().seconds_left(&grants);
        self.listed.expiry.set(left.map(|l| now_secs() + l));
        self.grants = Arc::new(grants);
    }

    /// Verifies `token` and takes its grants; a bad token leaves the old grants in place.
    fn authenticate(&mut self, token: &str) -> Result<(), RequestError> {
        let auth = self.hub.auth();
        if auth.mode() == crate::config::AuthMode::None {
            // Every connection may do everything: the token is not needed.
            return Ok(());
        }
        match auth.verify(token) {
            Ok(grants) => {
                self.set_grants(grants);
                Ok(())
            }
            Err(e) => {
                self.hub.count_auth_failure();
                Err(e.into())
            }
        }
    }

    /// The queue the writer drains.
    pub fn queue(&self) -> &Arc<SendQueue> {
        &self.queue
    }

    /// This session's row in the connection table (its keepalive clock among it).
    pub fn listed(&self) -> &Arc<Listed> {
        &self.listed
    }

    /// Decodes and carries out one request, queueing its reply. Only cluster mode ever
    /// waits here (on NATS); on a single node the future is ready at once.
    pub async fn handle_request(&mut self, frame: &[u8]) {
        let wire = self.queue.wire();
        match protocol::decode(wire, frame) {
            Ok(msg) => self.handle(msg).await,
            Err(e) => self.reply_error(e.id, &e.error),
        }
    }

    /// Carries out a request decoded by the transport (the Socket.IO main namespace reads
    /// its events into requests itself), queueing its reply.
    pub async fn handle_msg(&mut self, msg: ClientMsg) {
        self.handle(msg).await
    }

    /// Tells the client its frame was of the wrong kind for this connection.
    pub fn reject_frame(&mut self, message: &str) {
        self.reply_error(None, &RequestError::bad_request(message));
    }

    async fn handle(&mut self, msg: ClientMsg) {
        match msg {
            ClientMsg::Subscribe {
                id,
                topic,
                since,
                epoch,
            } => {
                let resume = since.map(|since| Resume { since, epoch });
                if let Err(e) = self.subscribe(&topic, resume, id).await {
                    self.reply_error(id, &e);
                }
            }
            ClientMsg::Unsubscribe { id, topic } => match self.unsubscribe(&topic) {
                Ok(()) => self.ack(id, Some(&topic), None),
                Err(e) => self.reply_error(id, &e),
            },
            ClientMsg::Publish {
                id,
                topic,
                data,
                idempotency_key,
            } => self.publish_request(id, &topic, data, idempotency_key.as_deref()).await,
            ClientMsg::Ping { id } => self.reply(&Reply::Pong { id }),
            ClientMsg::Auth { id, token } => match self.authenticate(&token) {
                Ok(()) => self.ack(id, None, None),
                Err(e) => self.reply_error(id, &e),
            },
            ClientMsg::Presence { id, topic } => match self.presence(&topic) {
                Ok(p) => self.reply(&Reply::Presence {
                    id,
                    topic: &topic,
                    count: p.count,
                    members: &p.members,
                }),
                Err(e) => self.reply_error(id, &e),
            },
        }
    }

    /// Subscribes to `text` (a topic or pattern), resuming after `resume` if given; the
    /// ack carries the topic's current seq and epoch.
    pub async fn subscribe(&mut self, text: &str, resume: Option<Resume>, id: Option<u64>) -> Result<(), RequestError> {
        self.subscribe_at(text, resume, id).await.map(|_| ())
    }

    /// As [`Session::subscribe`], returning the topic's position at the moment of
    /// subscribing (`None` for a pattern, or a subscription the connection already had).
    pub async fn subscribe_at(
        &mut self,
        text: &str,
        resume: Option<Resume>,
        id: Option<u64>,
    ) -> Result<Option<Position>, RequestError> {
        let wire = self.queue.wire();
        let answer = move |position: Option<Position>| {
            id.map(|id| {
                protocol::encode_reply(
                    wire,
                    &Reply::Ack {
                        id,
                        topic: Some(text),
                        seq: position.map(|p| p.seq),
                        epoch: position.map(|p| p.epoch),
                        recovered: position.filter(|_| resume.is_some()).map(|p| p.recovered),
                        duplicate: false,
                    },
                )
            })
        };
        self.subscribe_answered(text, resume, answer).await
    }

    /// Subscribes as [`Session::subscribe_at`] does, queueing the frame `answer` makes of the
    /// topic's position (if any) ahead of everything the subscription then delivers, replays
    /// included: how a transport with its own acks (Socket.IO's CONNECT) answers.
    pub async fn subscribe_answered(
        &mut self,
        text: &str,
        resume: Option<Resume>,
        answer: impl FnOnce(Option<Position>) -> Option<bytes::Bytes>,
    ) -> Result<Option<Position>, RequestError> {
        let filter = Filter::parse(text)?;
        if let Err(e) = self.grants.check_subscribe(&filter) {
            self.hub.count_auth_failure();
            return Err(e);
        }
        if resume.is_some() && matches!(filter, Filter::Pattern(_)) {
            return Err(RequestError::bad_request(format!(
                "`since` needs an exact topic; `{text}` is a pattern and seqs are per topic"
            )));
        }
        if self.subscriptions.contains(text) {
            if let Some(frame) = answer(None) {
                self.queue.push_reply(frame);
            }
            return Ok(None);
        }
        let max = self.hub.settings().limits.max_subscriptions_per_connection;
        if self.subscriptions.len() >= max {
            return Err(RequestError::new(
                ErrorCode::TooManySubscriptions,
                format!("this connection holds {max} subscriptions, the most allowed; unsubscribe first"),
            ));
        }
        if let Filter::Exact(name) = &filter {
            self.hub.registry.admit(name)?;
        }
        if let Some(cluster) = &self.hub.cluster {
            // The topic's history and seq arrive from the cluster before the registry answers.
            // Boxed: NATS's futures are kilobytes, and inline they would sit in every
            // connection's reader future, single-node mode included.
            Box::pin(cluster.acquire(&filter)).await?;
        }
        let queue = Arc::clone(&self.queue);
        let mut at = None;
        let subscribed = self.hub.registry.subscribe(&filter, &self.queue, resume, |position| {
            at = position;
            if let Some(frame) = answer(position) {
                queue.push_reply(frame);
            }
        });
        if let Err(e) = subscribed {
            if let Some(cluster) = &self.hub.cluster {
                cluster.release(&filter);
            }
            return Err(e);
        }
        if let Filter::Exact(name) = &filter {
            // Presence names a client by its token's `sub`, or else by its id: made here,
            // when a presence topic asks, rather than held by every session.
            let client: Arc<str> = match &self.grants.client {
                Some(sub) => Arc::from(sub.as_str()),
                None => Arc::from(format!("c{}", self.id)),
            };
            self.hub.registry.join(name, self.id, &client);
        }
        self.subscriptions.insert(text, filter);
        self.subscriptions_changed(1);
        Ok(at)
    }

    fn presence(&self, topic: &str) -> Result<crate::registry::PresenceInfo, RequestError> {
        let name = TopicName::parse(topic)?;
        // Members are what a subscriber would see: the same grant is needed.
        if let Err(e) = self.grants.check_subscribe(&Filter::Exact(name.clone())) {
            self.hub.count_auth_failure();
            return Err(e);
        }
        let max = self.hub.settings().presence.max_members_listed;
        self.hub.registry.presence(&name, max)
    }

    fn unsubscribe(&mut self, text: &str) -> Result<(), RequestError> {
        let filter = self
            .subscriptions
            .remove(text)
            .ok_or_else(|| RequestError::new(ErrorCode::NotFound, format!("not subscribed to `{text}`")))?;
        self.hub.registry.unsubscribe(&filter, self.id);
        if let Some(cluster) = &self.hub.cluster {
            cluster.release(&filter);
        }
        self.subscriptions_changed(-1);
        if let Filter::Exact(name) = &filter {
            self.hub.registry.leave(name, self.id);
        }
        Ok(())
    }

    /// Keeps the connection table and the subscription gauge current.
    fn subscriptions_changed(&self, by: i64) {
        self.listed
            .subscriptions
            .store(self.subscriptions.len(), Ordering::Relaxed);
        if let Some(m) = &self.hub.metrics {
            m.subscriptions.add(by);
        }
    }

    /// Publishes for a request: the answer (an ack with `id`, or an error) is queued when
    /// the publish is done, at once on a single node. In cluster mode it is queued when
    /// NATS has stored the message, and the next request is read meanwhile, so one
    /// connection has many publishes in flight (at most [`MAX_PUBLISHES_IN_FLIGHT`]; then
    /// this waits, slowing the client down rather than buffering without end).
    async fn publish_request(&mut self, id: Option<u64>, topic: &str, data: Payload, key: Option<&str>) {
        let permit = self.publish_permit().await;
        let submitted = TopicName::parse(topic)
            .map_err(RequestError::from)
            .and_then(|name| self.hub.publisher.submit(self.source(), &name, data, key));
        match submitted {
            Err(e) => self.reply_error(id, &e),
            Ok(Submitted::Done(p)) => ack_publish(&self.queue, id, topic, &p),
            Ok(in_flight) => {
                let (hub, queue, topic) = (Arc::clone(&self.hub), Arc::clone(&self.queue), topic.to_owned());
                tokio::spawn(async move {
                    match in_flight.outcome().await {
                        Ok(p) => ack_publish(&queue, id, &topic, &p),
                        Err(e) => reply_error(&hub, &queue, id, &e),
                    }
                    drop(permit);
                });
            }
        }
    }

    /// Publishes a raw socket's frame to its topic. A refusal comes back here; in cluster
    /// mode a failure to store it closes the connection (1008) when it is known, as a raw
    /// socket has no other way to be told.
    pub async fn publish_raw(&mut self, topic: &TopicName, data: Payload) -> Result<(), RequestError> {
        let permit = self.publish_permit().await;
        match self.hub.publisher.submit(self.source(), topic, data, None)? {
            Submitted::Done(_) => {}
            in_flight => {
                let queue = Arc::clone(&self.queue);
                tokio::spawn(async move {
                    if let Err(e) = in_flight.outcome().await {
                        queue.close(protocol::frame::close(1008, &e.message), true);
                    }
                    drop(permit);
                });
            }
        }
        Ok(())
    }

    /// Publishes for a transport that answers the client itself (Socket.IO acks): `done`
    /// gets the outcome, at once on a single node, when NATS has stored the message in
    /// cluster mode (with the same bound on publishes in flight as requests).
    pub async fn publish_then<F>(&mut self, topic: &TopicName, data: Payload, done: F)
    where
        F: FnOnce(Result<Published, RequestError>) + Send + 'static,
    {
        let permit = self.publish_permit().await;
        match self.hub.publisher.submit(self.source(), topic, data, None) {
            Err(e) => done(Err(e)),
            Ok(Submitted::Done(p)) => done(Ok(p)),
            Ok(in_flight) => {
                tokio::spawn(async move {
                    done(in_flight.outcome().await);
                    drop(permit);
                });
            }
        }
    }

    /// In cluster mode, a place among this connection's publishes in flight, waiting for
    /// one if all are taken; on a single node nothing is ever in flight.
    async fn publish_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.hub.cluster.as_ref()?;
        let permits = self
            .in_flight
            .get_or_insert_with(|| Arc::new(Semaphore::new(MAX_PUBLISHES_IN_FLIGHT)));
        // The semaphore is never closed.
        Arc::clone(permits).acquire_owned().await.ok()
    }

    /// This connection as a publisher.
    fn source(&self) -> Source<'_> {
        Source {
            grants: &self.grants,
            budget: self.budget.get_or_init(|| {
                let rate = self.hub.settings().limits.publish_rate_per_connection;
                Box::new(PublishBudget::new(rate))
            }),
            origin: Some(self.id),
            transport: self.listed.peer.transport,
        }
    }

    fn ack(&self, id: Option<u64>, topic: Option<&str>, seq: Option<u64>) {
        if let Some(id) = id {
            self.reply(&Reply::Ack {
                id,
                topic,
                seq,
                epoch: None,
                recovered: None,
                duplicate: false,
            });
        }
    }

    fn reply_error(&self, id: Option<u64>, e: &RequestError) {
        reply_error(&self.hub, &self.queue, id, e);
    }

    fn reply(&self, reply: &Reply<'_>) {
        reply_to(&self.queue, reply);
    }
}

/// Publishes one connection may have in flight at once (cluster mode).
pub const MAX_PUBLISHES_IN_FLIGHT: usize = 1024;

/// Rate-limit refusals in a row after which the connection is closed (1008).
pub const MAX_RATE_LIMITED_IN_A_ROW: u32 = 5;

/// Queues `reply` for the client of `queue`.
fn reply_to(queue: &Arc<SendQueue>, reply: &Reply<'_>) {
    // Raw sockets and the HTTP streams carry payloads and notices only, and a Socket.IO
    // topic namespace answers its own events (`transport::socketio`): no replies here.
    if queue.wire().answers_requests() {
        queue.push_reply(queue.framing().reply(reply));
    }
}

/// Queues the `error` reply for `e`, and counts it.
fn reply_error(hub: &Hub, queue: &Arc<SendQueue>, id: Option<u64>, e: &RequestError) {
    hub.count_protocol_error(e.code.as_str());
    reply_to(
        queue,
        &Reply::Error {
            id,
            code: e.code,
            message: &e.message,
        },
    );
}

/// Queues the ack of a publish request with `id` (none without an id).
fn ack_publish(queue: &Arc<SendQueue>, id: Option<u64>, topic: &str, p: &Published) {
    if let Some(id) = id {
        reply_to(
            queue,
            &Reply::Ack {
                id,
                topic: Some(topic),
                seq: Some(p.seq),
                epoch: None,
                recovered: None,
                duplicate: p.duplicate,
            },
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for filter in self.subscriptions.filters() {
            self.hub.registry.unsubscribe(filter, self.id);
            if let Some(cluster) = &self.hub.cluster {
                cluster.release(filter);
            }
            if let Filter::Exact(name) = filter {
                self.hub.registry.leave(name, self.id);
            }
        }
        self.hub.connections.remove(self.id);
        if let Some(m) = &self.hub.metrics {
            m.subscriptions.sub(self.subscriptions.len() as i64);
        }
    }
}
