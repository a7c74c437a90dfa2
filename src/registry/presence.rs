//! Presence: who is subscribed to a topic whose rule sets `presence = true`,
//! announced to the topic's subscribers as `join` and `leave` notices.
//!
//! Counting is O(1) per join or leave; a query lists at most
//! `presence.max_members_listed` ids, so rooms of 100,000 cost no more to ask about.

use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;

use super::{Registry, Subscribers};
use crate::error::RequestError;
use crate::protocol::{Reply, SessionId, Wire};
use crate::topic::TopicName;

/// The members of one presence topic, by connection.
#[derive(Debug, Default)]
pub(super) struct Members {
    ids: IndexMap<SessionId, Arc<str>>,
}

/// A presence answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceInfo {
    /// Members now.
    pub count: usize,
    /// Up to the configured number of member ids, oldest member first.
    pub members: Vec<Arc<str>>,
}

impl Members {
    /// How many members there are.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

impl Registry {
    /// Records that `session` (known to others as `client`) joined `name`, and tells the
    /// topic's subscribers. Does nothing on a topic without presence.
    pub fn join(&self, name: &TopicName, session: SessionId, client: &Arc<str>) {
        self.change_membership(name, session, Some(client));
    }

    /// Records that `session` left `name`, and tells the remaining subscribers.
    pub fn leave(&self, name: &TopicName, session: SessionId) {
        self.change_membership(name, session, None);
    }

    fn change_membership(&self, name: &TopicName, session: SessionId, joined: Option<&Arc<str>>) {
        let Some(t) = self.topics.get(name).map(|t| Arc::clone(t.value())) else {
            return;
        };
        let mut st = t.state.lock();
        let Some(members) = st.members.as_mut() else {
            return;
        };
        let client = match joined {
            Some(client) => {
                if members.ids.insert(session, Arc::clone(client)).is_some() {
                    return;
                }
                Arc::clone(client)
            }
            None => match members.ids.shift_remove(&session) {
                Some(client) => client,
                None => return,
            },
        };
        let count = members.ids.len();
        let reply = if joined.is_some() {
            Reply::Join {
                topic: name.as_str(),
                client: &client,
                count,
            }
        } else {
            Reply::Leave {
                topic: name.as_str(),
                client: &client,
                count,
            }
        };
        announce(&st.subscribers, &reply);
    }

    /// The member count and up to `max_listed` ids of `name`.
    pub fn presence(&self, name: &TopicName, max_listed: usize) -> Result<PresenceInfo, RequestError> {
        if !self.config.read().topic_settings(name).presence {
            return Err(RequestError::bad_request(format!(
                "presence is not enabled for topic `{name}`; set presence = true on a [[topics]] rule that matches it"
            )));
        }
        let Some(t) = self.topics.get(name).map(|t| Arc::clone(t.value())) else {
            return Ok(PresenceInfo {
                count: 0,
                members: Vec::new(),
            });
        };
        let st = t.state.lock();
        let ids = st.members.as_ref().map(|m| &m.ids);
        Ok(PresenceInfo {
            count: ids.map_or(0, IndexMap::len),
            members: ids.map_or_else(Vec::new, |ids| ids.values().take(max_listed).cloned().collect()),
        })
    }
}

/// Queues a notice for every subscriber that can read one, encoded once per format
/// (and compressed once for those that negotiated permessage-deflate).
fn announce(subscribers: &Subscribers, reply: &Reply<'_>) {
    let mut frames: [Option<Bytes>; 2 * Wire::COUNT] = Default::default();
    for sub in subscribers.values() {
        let framing = sub.queue.framing();
        // Raw sockets and iframe streams carry payloads only.
        if !framing.wire.carries_notices() {
            continue;
        }
        let slot = match framing.deflate {
            None => framing.wire as usize,
            Some(a) if a.window_bits == 15 => framing.wire as usize + Wire::COUNT,
            // A client that asked for a smaller window (rare) gets its own.
            Some(_) => {
                sub.queue.push_reply(framing.reply(reply));
                continue;
            }
        };
        let frame = frames[slot].get_or_insert_with(|| framing.reply(reply));
        sub.queue.push_reply(frame.clone());
    }
}
