//! Read-side queries on the registry: topic snapshots and listing (for the
//! topics API), history pages, and the start of a long-poll.

use std::sync::Arc;

use super::{since_beyond, Registry, TopicInfo, TopicState};
use crate::clock::now_ms;
use crate::error::{ErrorCode, RequestError};
use crate::protocol::Message;
use crate::queue::SendQueue;
use crate::topic::{Filter, TopicName};

/// Which topics a listing returns, in name order.
#[derive(Debug, Clone, Default)]
pub struct TopicQuery {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names this topic or pattern covers.
    pub filter: Option<Filter>,
    /// Only names after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Most topics returned.
    pub limit: usize,
}

/// Retained messages of one topic after some seq.
#[derive(Debug, Default)]
pub struct HistoryPage {
    /// The topic's current seq.
    pub seq: u64,
    /// Messages after `since` that are gone: `(from, to)`, inclusive.
    pub gap: Option<(u64, u64)>,
    /// Retained messages after `since`, oldest first, at most the limit asked for.
    pub messages: Vec<Arc<Message>>,
}

/// How a long-poll starts.
#[derive(Debug)]
pub enum PollStart {
    /// Something after `since` exists (messages or a gap): answer at once.
    Ready(HistoryPage),
    /// Nothing yet: the queue is subscribed; wait on it, then unsubscribe.
    Waiting {
        /// The seq waited after (the one passed, or the topic's current seq).
        since: u64,
    },
}

impl TopicQuery {
    /// Whether the query names the broker's `$` topics (by prefix or filter): only then
    /// are they listed, so a plain listing shows what clients made.
    fn asks_for_system(&self) -> bool {
        let prefix = self.prefix.as_deref().is_some_and(|p| p.starts_with('$'));
        prefix || self.filter.as_ref().is_some_and(|f| f.as_str().starts_with('$'))
    }
}

impl Registry {
    /// A snapshot of `name`, if it exists.
    pub fn topic_info(&self, name: &TopicName) -> Option<TopicInfo> {
        let t = self.topics.get(name).map(|t| Arc::clone(t.value()))?;
        let st = t.state.lock();
        Some(info(name, &st))
    }

    /// One page of topics in name order, and the cursor of the next page if there is one.
    pub fn list_topics(&self, q: &TopicQuery) -> (Vec<TopicInfo>, Option<String>) {
        let mut names: Vec<TopicName> = self
            .topics
            .iter()
            .map(|e| e.key().clone())
            .filter(|n| !n.is_system() || q.asks_for_system())
            .filter(|n| q.prefix.as_deref().is_none_or(|p| n.as_str().starts_with(p)))
            .filter(|n| q.filter.as_ref().is_none_or(|f| f.matches(n)))
            .filter(|n| q.after.as_deref().is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        let more = names.len() > q.limit;
        names.truncate(q.limit);
        let next = more.then(|| names.last().map(|n| n.to_string())).flatten();
        let infos = names.iter().filter_map(|n| self.topic_info(n)).collect();
        (infos, next)
    }

    /// Retained messages of `name` after `since`, at most `limit`.
    pub fn history(&self, name: &TopicName, since: u64, limit: usize) -> Result<HistoryPage, RequestError> {
        let t = self
            .topics
            .get(name)
            .map(|t| Arc::clone(t.value()))
            .ok_or_else(|| not_found(name))?;
        let st = t.state.lock();
        if since > st.seq {
            return Err(since_beyond(name, since, st.seq));
        }
        Ok(page(&st, since, limit))
    }

    /// Starts a long-poll on `name` after `since` (default: the current seq, so the
    /// next message). With nothing to answer yet, `queue` is subscribed under the same
    /// lock, so no message can fall between the check and the wait.
    pub fn poll_start(&self, name: &TopicName, since: Option<u64>, limit: usize, queue: &Arc<SendQueue>) -> PollStart {
        self.with_topic(name, |_, st| {
            // A `since` beyond the current seq is from an earlier life of the topic
            // (a restart, or reaped while idle): go on from where it stands now.
            let since = since.filter(|&s| s <= st.seq).unwrap_or(st.seq);
            let page = page(st, since, limit);
            if page.messages.is_empty() && page.gap.is_none() {
                st.add(queue);
                PollStart::Waiting { since }
            } else {
                PollStart::Ready(page)
            }
        })
    }
}

fn info(name: &TopicName, st: &TopicState) -> TopicInfo {
    TopicInfo {
        name: name.clone(),
        subscribers: st.subscribers.len(),
        seq: st.seq,
        retained: st.history.len(),
        rate: st.rate.per_second(now_ms()),
        members: st.members.as_ref().map(|m| m.len()),
    }
}

fn page(st: &TopicState, since: u64, limit: usize) -> HistoryPage {
    let mut replay = st.history.replay(since, st.seq);
    replay.messages.truncate(limit);
    HistoryPage {
        seq: st.seq,
        gap: replay.gap,
        messages: replay.messages,
    }
}

fn not_found(name: &TopicName) -> RequestError {
    RequestError::new(
        ErrorCode::NotFound,
        format!("topic `{name}` has no subscribers and nothing retained"),
    )
}
