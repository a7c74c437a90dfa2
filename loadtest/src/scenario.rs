//! Turns a scenario's command-line shape into a [`Plan`]: which connection
//! publishes what and subscribes to what.

use crate::plan::{ConnSpec, Plan, PubSpec};
use crate::protocol::Protocol;
use thiserror::Error;

/// A scenario that cannot be built as asked.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScenarioError {
    /// The scenario needs topics/patterns, which raw mode cannot express.
    #[error("the {0} scenario needs --protocol json or msgpack")]
    NeedsEnvelopes(&'static str),
    /// Nonsensical counts.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

fn sub(topic: &str) -> ConnSpec {
    ConnSpec {
        subscribe: vec![topic.to_string()],
        ..ConnSpec::default()
    }
}

fn publisher(id: usize, topics: Vec<String>) -> ConnSpec {
    ConnSpec {
        publish: Some(PubSpec { id: id as u32, topics }),
        ..ConnSpec::default()
    }
}

fn plan(scenario: &str, conns: Vec<ConnSpec>, topics_exist: bool) -> Plan {
    Plan {
        scenario: scenario.to_string(),
        conns,
        topics_exist,
    }
}

/// Whether topics are separate broadcast domains: always with envelopes
/// and Socket.IO, in raw mode when the path template has `{topic}`.
pub fn topics_exist(protocol: Protocol, raw_path: &str) -> bool {
    protocol.has_topics() || raw_path.contains("{topic}")
}

/// P publishers and N subscribers on one topic; the first `slow` subscribers
/// never read; with `reconnects` subscribers join reconnect storms.
pub fn fanout(
    name: &str,
    publishers: usize,
    subscribers: usize,
    slow: usize,
    reconnects: bool,
    topics: bool,
) -> Result<Plan, ScenarioError> {
    if publishers == 0 || subscribers == 0 {
        return Err(ScenarioError::Invalid(
            "need at least one publisher and one subscriber".into(),
        ));
    }
    let topic = format!("lt.{name}");
    let mut conns: Vec<ConnSpec> = (0..publishers).map(|p| publisher(p, vec![topic.clone()])).collect();
    conns.extend((0..subscribers).map(|i| ConnSpec {
        slow: i < slow,
        reconnects,
        ..sub(&topic)
    }));
    Ok(plan(name, conns, topics))
}

/// The stock-quote shape: T topics in G groups, publishers owning a share of
/// the topics each, exact, group-pattern and firehose subscribers.
pub fn topics(
    topics: usize,
    groups: usize,
    publishers: usize,
    exact: usize,
    pattern: usize,
    firehose: usize,
) -> Result<Plan, ScenarioError> {
    if topics == 0 || groups == 0 || publishers == 0 || publishers > topics {
        return Err(ScenarioError::Invalid(
            "need topics >= publishers >= 1 and groups >= 1".into(),
        ));
    }
    let name = |i: usize| format!("lt.q.g{}.s{i}", i % groups);
    let mut conns: Vec<ConnSpec> = (0..publishers)
        .map(|p| publisher(p, (p..topics).step_by(publishers).map(name).collect()))
        .collect();
    conns.extend((0..exact).map(|i| sub(&name(i % topics))));
    conns.extend((0..pattern).map(|i| sub(&format!("lt.q.g{}.*", i % groups))));
    conns.extend((0..firehose).map(|_| sub("lt.q.>")));
    Ok(plan("topics", conns, true))
}

/// Checks `--slow-fraction`: the share of subscribers that never read, below 1.
pub fn check_slow_fraction(fraction: f64) -> Result<(), ScenarioError> {
    if (0.0..1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(ScenarioError::Invalid("--slow-fraction must be in [0, 1)".into()))
    }
}

/// The soak shape: the `topics` mix (exact, group-pattern and firehose subscribers
/// of several publishers), where every `1 / slow_fraction`-th subscriber never reads
/// and the exact subscribers that read take part in reconnect storms (resuming with
/// `since`, which only exact topics have).
pub fn soak(
    topics: usize,
    groups: usize,
    publishers: usize,
    exact: usize,
    pattern: usize,
    firehose: usize,
    slow_fraction: f64,
) -> Result<Plan, ScenarioError> {
    check_slow_fraction(slow_fraction)?;
    let mut plan = self::topics(topics, groups, publishers, exact, pattern, firehose)?;
    plan.scenario = "soak".into();
    // Spread evenly over exact, pattern and firehose subscribers alike.
    let stride = (slow_fraction > 0.0).then(|| (1.0 / slow_fraction).round().max(1.0) as usize);
    for (i, c) in plan.conns.iter_mut().skip(publishers).enumerate() {
        c.slow = stride.is_some_and(|k| i % k == k - 1);
        c.reconnects = !c.slow && i < exact;
    }
    Ok(plan)
}

/// R rooms of C clients; every client publishes to and subscribes to its room.
pub fn rooms(rooms: usize, clients: usize, topics: bool) -> Result<Plan, ScenarioError> {
    if rooms == 0 || clients < 2 {
        return Err(ScenarioError::Invalid("need at least one room of two clients".into()));
    }
    let conns = (0..rooms * clients)
        .map(|i| {
            let room = format!("lt.room.r{}", i / clients);
            ConnSpec {
                subscribe: vec![room.clone()],
                ..publisher(i, vec![room])
            }
        })
        .collect();
    Ok(plan("rooms", conns, topics))
}

/// C idle connections (handshake only; raw mode connects to one topic).
pub fn connect(connections: usize, subscribe: Option<String>, reconnects: bool) -> Result<Plan, ScenarioError> {
    if connections == 0 {
        return Err(ScenarioError::Invalid("need at least one connection".into()));
    }
    let idle = ConnSpec {
        subscribe: subscribe.into_iter().collect(),
        publish: None,
        slow: false,
        reconnects,
    };
    Ok(plan("connect", vec![idle; connections], true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let p = fanout("fanout", 2, 10, 3, false, true).unwrap();
        assert_eq!((p.publishers(), p.subscribers()), (2, 10));
        assert_eq!(p.deliveries(0, "lt.fanout"), (7, 3));
        let t = topics(20, 4, 3, 20, 4, 1).unwrap();
        assert_eq!(t.publishers(), 3);
        // Topic s0 (group 0): one exact subscriber, one group pattern, one firehose.
        assert_eq!(t.deliveries(0, "lt.q.g0.s0"), (3, 0));
        let r = rooms(3, 4, true).unwrap();
        assert_eq!(r.deliveries(0, "lt.room.r0"), (3, 0));
        let generic = rooms(3, 4, false).unwrap();
        assert_eq!(generic.deliveries(0, "lt.room.r0"), (11, 0));
        assert!(fanout("f", 0, 1, 0, false, true).is_err());
        let s = soak(20, 4, 2, 40, 10, 10, 0.05).unwrap();
        assert_eq!(s.conns.iter().filter(|c| c.slow).count(), 3);
        assert_eq!(s.conns.iter().filter(|c| c.reconnects).count(), 38);
        assert!(soak(20, 4, 2, 40, 10, 10, 1.0).is_err());
        assert!(topics_exist(Protocol::Raw, "/ws/t/{topic}") && !topics_exist(Protocol::Raw, "/"));
        assert!(topics_exist(Protocol::Socketio, "/"));
    }
}
