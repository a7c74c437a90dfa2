//! Unit tests of the queue: policies, gaps, ownership between shard and task.

use super::*;
use crate::protocol::Payload;

fn queue(max_messages: usize) -> Arc<SendQueue> {
    Arc::new(SendQueue::new(
        SessionId(1),
        Wire::Raw,
        true,
        QueueLimits {
            max_messages,
            max_bytes: 1 << 20,
        },
    ))
}

fn msg(topic: &str, seq: u64) -> Arc<Message> {
    Arc::new(Message::new(
        TopicName::parse(topic).unwrap(),
        seq,
        0,
        Payload::text(format!("{seq}")),
        None,
    ))
}

fn seqs(q: &SendQueue) -> (Vec<u64>, Vec<(String, u64, u64)>) {
    let mut d = Drained::default();
    q.drain(&mut d);
    let gaps = d.gaps.iter().map(|g| (g.topic.to_string(), g.from, g.to)).collect();
    (d.message_seqs(), gaps)
}

#[test]
fn drop_oldest_keeps_the_newest_and_reports_the_lost_range() {
    let q = queue(3);
    for s in 1..=6 {
        q.push_message(&msg("t", s), Policy::DropOldest);
    }
    assert_eq!(seqs(&q), (vec![4, 5, 6], vec![("t".into(), 1, 3)]));
    assert_eq!(q.dropped(), 3);
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let q = queue(3);
    for s in 1..=6 {
        q.push_message(&msg("t", s), Policy::DropNewest);
    }
    assert_eq!(seqs(&q), (vec![1, 2, 3], vec![("t".into(), 4, 6)]));
}

#[test]
fn conflate_keeps_one_newest_message_per_topic_under_backpressure() {
    let q = queue(2);
    for s in 1..=5 {
        q.push_message(&msg("a", s), Policy::Conflate);
        q.push_message(&msg("b", s), Policy::Conflate);
    }
    let (seqs, gaps) = seqs(&q);
    assert_eq!(seqs, vec![5, 5]);
    assert_eq!(gaps, vec![("a".into(), 1, 4), ("b".into(), 1, 4)]);
}

#[test]
fn conflate_under_backpressure_leaves_exactly_one_message_per_topic() {
    let q = queue(4);
    for s in 1..=3 {
        q.push_message(&msg("a", s), Policy::Conflate);
    }
    q.push_message(&msg("b", 1), Policy::Conflate);
    // Full now: the next `a` replaces all three queued `a`s.
    assert_eq!(q.push_message(&msg("a", 4), Policy::Conflate), Pushed::Conflated);
    assert_eq!(q.depth(), 2);
    q.push_message(&msg("c", 1), Policy::Conflate);
    let (seqs, gaps) = seqs(&q);
    assert_eq!(seqs, vec![4, 1, 1]);
    assert_eq!(gaps, vec![("a".into(), 1, 3)]);
}

#[test]
fn conflate_loses_nothing_while_the_queue_has_room() {
    let q = queue(10);
    for s in 1..=5 {
        q.push_message(&msg("a", s), Policy::Conflate);
    }
    assert_eq!(seqs(&q), (vec![1, 2, 3, 4, 5], vec![]));
}

#[test]
fn conflate_falls_back_to_dropping_the_oldest_topic_when_full() {
    let q = queue(2);
    q.push_message(&msg("a", 1), Policy::Conflate);
    q.push_message(&msg("b", 1), Policy::Conflate);
    q.push_message(&msg("c", 1), Policy::Conflate);
    q.push_message(&msg("b", 2), Policy::Conflate);
    assert_eq!(seqs(&q), (vec![2, 1], vec![("a".into(), 1, 1), ("b".into(), 1, 1)]));
}

#[test]
fn disconnect_closes_with_1008_and_discards_the_queue() {
    let q = queue(2);
    assert_eq!(q.push_message(&msg("t", 1), Policy::Disconnect), Pushed::Queued);
    assert_eq!(q.push_message(&msg("t", 2), Policy::Disconnect), Pushed::Queued);
    assert_eq!(q.push_message(&msg("t", 3), Policy::Disconnect), Pushed::Disconnected);
    assert_eq!(q.push_message(&msg("t", 4), Policy::Disconnect), Pushed::Closed);
    let mut d = Drained::default();
    q.drain(&mut d);
    assert!(d.entries.is_empty());
    assert_eq!(&d.close.unwrap()[2..4], &1008u16.to_be_bytes());
}

#[test]
fn replies_and_control_frames_bypass_a_full_queue() {
    let q = queue(1);
    q.push_message(&msg("t", 1), Policy::DropNewest);
    assert!(q.push_control(Bytes::from_static(b"ping")));
    assert!(q.push_reply(Bytes::from_static(b"ack")));
    assert_eq!(q.push_message(&msg("t", 2), Policy::DropNewest), Pushed::DroppedNewest);
    let mut d = Drained::default();
    q.drain(&mut d);
    assert_eq!(d.entries.len(), 3);
}

#[test]
fn drop_oldest_behind_a_reply_leaves_order_intact() {
    let q = queue(2);
    q.push_reply(Bytes::from_static(b"r"));
    for s in 1..=4 {
        q.push_message(&msg("t", s), Policy::DropOldest);
    }
    assert_eq!(seqs(&q), (vec![3, 4], vec![("t".into(), 1, 2)]));
}

#[test]
fn byte_limit_counts_frames() {
    let q = Arc::new(SendQueue::new(
        SessionId(1),
        Wire::Raw,
        true,
        QueueLimits {
            max_messages: 100,
            max_bytes: 8,
        },
    ));
    // Each frame is 2 header bytes + 1 payload byte.
    for s in 1..=5 {
        q.push_message(&msg("t", s), Policy::DropOldest);
    }
    assert_eq!(seqs(&q).0, vec![4, 5]);
}

#[test]
fn a_closed_queue_flushes_then_hands_over_the_close_frame() {
    let q = queue(10);
    q.push_message(&msg("t", 1), Policy::DropOldest);
    q.close(Bytes::from_static(b"bye"), true);
    assert_eq!(q.push_message(&msg("t", 2), Policy::DropOldest), Pushed::Closed);
    let mut d = Drained::default();
    q.drain(&mut d);
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.close.as_deref(), Some(&b"bye"[..]));
}

#[test]
fn own_messages_are_skipped_without_echo() {
    let q = Arc::new(SendQueue::new(
        SessionId(7),
        Wire::Raw,
        false,
        QueueLimits {
            max_messages: 1,
            max_bytes: 1,
        },
    ));
    let own = Message::new(
        TopicName::parse("t").unwrap(),
        1,
        0,
        Payload::text("x"),
        Some(SessionId(7)),
    );
    let other = Message::new(
        TopicName::parse("t").unwrap(),
        1,
        0,
        Payload::text("x"),
        Some(SessionId(8)),
    );
    assert!(q.skips(&own));
    assert!(!q.skips(&other));
}

#[test]
fn a_queue_idle_between_two_sweeps_returns_its_storage() {
    let q = queue(8);
    q.push_message(&msg("t", 1), Policy::DropOldest);
    let mut d = Drained::default();
    d.entries.reserve(16);
    q.drain(&mut d);
    assert!(
        q.state.lock().entries.capacity() >= 16,
        "the drain left its buffer in the queue"
    );
    q.trim_idle();
    assert!(q.state.lock().entries.capacity() > 0, "busy since the last sweep: kept");
    q.trim_idle();
    assert_eq!(q.state.lock().entries.capacity(), 0, "idle for a whole sweep: returned");
    q.push_message(&msg("t", 2), Policy::DropOldest);
    q.trim_idle();
    assert_eq!(seqs(&q).0, vec![2], "a queued message is never trimmed away");
}

#[test]
fn a_queue_that_never_backs_up_makes_no_cold_box_and_no_wakers() {
    let q = queue(8);
    q.push_reply(Bytes::from_static(b"ack"));
    q.push_message(&msg("t", 1), Policy::Conflate);
    q.push_message(&msg("u", 1), Policy::DropOldest);
    seqs(&q);
    futures_util::FutureExt::now_or_never(q.reply_room()).expect("room for replies");
    assert!(
        q.state.lock().cold.is_some(),
        "a conflating topic's map lives in the box"
    );
    q.trim_idle();
    q.trim_idle();
    assert!(q.state.lock().cold.is_none(), "idle for a whole sweep: returned");
    q.push_message(&msg("u", 2), Policy::DropOldest);
    seqs(&q);
    assert!(
        q.state.lock().cold.is_none(),
        "no backpressure, no conflation: never made"
    );
    assert!(
        q.wakers.get().is_none(),
        "taking replies nobody waited on makes no wakers"
    );
}

#[test]
fn the_cold_box_is_made_under_backpressure_and_returned_by_the_sweep_once_empty() {
    let q = queue(2);
    for s in 1..=3 {
        q.push_message(&msg("t", s), Policy::DropOldest);
    }
    assert!(q.state.lock().cold.is_some(), "a loss is remembered in the cold box");
    q.trim_idle();
    q.trim_idle();
    assert!(q.state.lock().cold.is_some(), "held while its gap is queued");
    assert_eq!(seqs(&q), (vec![2, 3], vec![("t".into(), 1, 1)]));
    q.trim_idle();
    assert!(q.state.lock().cold.is_some(), "busy since the last sweep: kept");
    q.trim_idle();
    assert!(
        q.state.lock().cold.is_none(),
        "empty and idle for a whole sweep: returned"
    );
}

#[test]
fn a_close_frame_outlives_a_sweep() {
    let q = queue(2);
    q.close(Bytes::from_static(b"bye"), true);
    q.trim_idle();
    q.trim_idle();
    let mut d = Drained::default();
    q.drain(&mut d);
    assert_eq!(d.close.as_deref(), Some(&b"bye"[..]));
}

#[test]
fn conflation_and_gaps_carry_on_across_a_sweep() {
    let q = queue(2);
    q.push_message(&msg("a", 1), Policy::Conflate);
    q.push_message(&msg("b", 1), Policy::Conflate);
    // Full, and swept twice while full: nothing is returned, conflation still finds `a`.
    q.trim_idle();
    q.trim_idle();
    assert_eq!(q.push_message(&msg("a", 2), Policy::Conflate), Pushed::Conflated);
    assert_eq!(seqs(&q), (vec![2, 1], vec![("a".into(), 1, 1)]));
    q.trim_idle();
    q.trim_idle();
    assert!(q.state.lock().cold.is_none());
    // A fresh box after the sweep behaves as the first did.
    for s in 3..=5 {
        q.push_message(&msg("a", s), Policy::Conflate);
        q.push_message(&msg("b", s - 1), Policy::Conflate);
    }
    assert_eq!(seqs(&q), (vec![5, 4], vec![("a".into(), 3, 4), ("b".into(), 2, 3)]));
}

#[test]
fn an_abort_before_anyone_waits_still_wakes_the_writer() {
    let q = queue(2);
    assert!(q.wakers.get().is_none());
    q.close(Bytes::from_static(b"bye"), false);
    assert!(
        futures_util::FutureExt::now_or_never(q.aborted()).is_some(),
        "the abort left its permit"
    );
}

#[tokio::test]
async fn a_writer_waiting_for_an_abort_is_woken() {
    let q = queue(2);
    let waiting = tokio::spawn({
        let q = Arc::clone(&q);
        async move { q.aborted().await }
    });
    tokio::task::yield_now().await;
    q.close(Bytes::from_static(b"bye"), false);
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test]
async fn a_reader_short_of_reply_room_is_woken_by_the_drain() {
    let q = queue(2);
    for _ in 0..MAX_PENDING_REPLIES {
        q.push_reply(Bytes::from_static(b"ack"));
    }
    let mut room = Box::pin(q.reply_room());
    assert!(futures_util::poll!(&mut room).is_pending(), "the backlog is full");
    seqs(&q);
    tokio::time::timeout(std::time::Duration::from_secs(5), room)
        .await
        .expect("woken by the drain");
}

#[test]
fn a_drain_before_the_reader_waits_leaves_room_without_wakers() {
    let q = queue(2);
    for _ in 0..MAX_PENDING_REPLIES {
        q.push_reply(Bytes::from_static(b"ack"));
    }
    seqs(&q);
    assert!(q.wakers.get().is_none(), "nobody waited: no permit needed");
    assert!(futures_util::FutureExt::now_or_never(q.reply_room()).is_some());
}
