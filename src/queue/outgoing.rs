//! `Outgoing`: one batch of frames taken from a queue, in the order they go on
//! the wire (`gap` notices placed before their topic's next message), and how
//! much of it has been written. A flush shard that finds a socket full hands
//! the rest, a frame cut in the middle included, to the connection's task.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

use super::{Entry, Gap};
use crate::protocol::{Framing, GapReason, Reply};

/// Most buffers handed to one `writev` (Linux allows 1024; the array is built on the
/// stack per call, and batches past this are copy-bound anyway).
pub const MAX_IOVECS: usize = 128;

/// Frames to write, and how far writing has got.
#[derive(Debug, Default)]
pub struct Outgoing {
    frames: VecDeque<Entry>,
    /// Index of the first frame not completely written.
    next: usize,
    /// Bytes of `frames[next]` already written.
    offset: usize,
    /// Published messages among the frames (for the metrics).
    pub messages: u64,
    /// Bytes of all the frames.
    pub bytes: u64,
    /// The oldest message's publish time, Unix ms.
    pub oldest_ts: Option<u64>,
}

impl Outgoing {
    /// Takes `entries` (leaving `entries` empty with this batch's old capacity) and
    /// places a notice for each of `gaps` before the first later message of its topic.
    /// Returns how many entries it took.
    pub(super) fn load(&mut self, entries: &mut VecDeque<Entry>, gaps: &[Gap], framing: Framing) -> u64 {
        self.clear();
        std::mem::swap(&mut self.frames, entries);
        let taken = self.frames.len() as u64;
        if !gaps.is_empty() && framing.wire.carries_notices() {
            self.insert_gaps(gaps, framing);
        }
        for f in &self.frames {
            if let Entry::Message(m) = f {
                self.messages += 1;
                self.oldest_ts = Some(self.oldest_ts.map_or(m.ts, |o| o.min(m.ts)));
            }
            self.bytes += f.bytes(framing).len() as u64;
        }
        taken
    }

    /// The rare path: rebuilds the frames with the gap notices in place.
    fn insert_gaps(&mut self, gaps: &[Gap], framing: Framing) {
        let placed = place_gaps(&self.frames, gaps, framing);
        let mut frames = VecDeque::with_capacity(self.frames.len() + placed.len());
        let mut placed = placed.into_iter().peekable();
        for (i, f) in self.frames.drain(..).enumerate() {
            while let Some((_, g)) = placed.next_if(|(at, _)| *at == i) {
                frames.push_back(Entry::Control(g));
            }
            frames.push_back(f);
        }
        frames.extend(placed.map(|(_, g)| Entry::Control(g)));
        self.frames = frames;
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.next = 0;
        self.offset = 0;
        self.messages = 0;
        self.bytes = 0;
        self.oldest_ts = None;
    }

    /// Whether every frame has been written.
    pub fn is_done(&self) -> bool {
        self.next >= self.frames.len()
    }

    /// Whether a frame has been cut: only its rest may follow on the wire.
    pub fn mid_frame(&self) -> bool {
        self.offset > 0
    }

    /// Fills `out` with the unwritten bytes, in order; returns how many slices it used.
    pub fn slices<'a>(&'a self, framing: Framing, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut skip = self.offset;
        for f in self.frames.range(self.next..) {
            if n == out.len() {
                break;
            }
            let b = &f.bytes(framing)[skip..];
            skip = 0;
            if !b.is_empty() {
                out[n] = IoSlice::new(b);
                n += 1;
            }
        }
        n
    }

    /// Marks `written` more bytes as sent.
    pub fn advance(&mut self, framing: Framing, mut written: usize) {
        while self.next < self.frames.len() {
            let left = self.frames[self.next].bytes(framing).len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.next += 1;
            self.offset = 0;
        }
    }

    /// Drops the frames already written, so they are not held while a slow socket drains.
    pub(super) fn compact(&mut self) {
        self.frames.drain(..self.next);
        self.next = 0;
    }
}

/// For each gap, the entry index it goes before (`entries.len()`: at the end) and its frame.
pub fn place_gaps(entries: &VecDeque<Entry>, gaps: &[Gap], framing: Framing) -> Vec<(usize, Bytes)> {
    // Raw sockets and iframe streams carry payloads only: they cannot be told about a gap.
    if gaps.is_empty() || !framing.wire.carries_notices() {
        return Vec::new();
    }
    let mut placed: Vec<(usize, Bytes)> = gaps
        .iter()
        .map(|g| {
            let at = entries
                .iter()
                .position(|e| matches!(e, Entry::Message(m) if m.topic == g.topic && m.seq > g.to))
                .unwrap_or(entries.len());
            let frame = framing.reply(&Reply::Gap {
                topic: g.topic.as_str(),
                from: g.from,
                to: g.to,
                reason: GapReason::SlowConsumer,
            });
            (at, frame)
        })
        .collect();
    placed.sort_by_key(|(at, _)| *at);
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Wire;

    fn frames(parts: &[&'static [u8]]) -> Outgoing {
        let mut entries: VecDeque<Entry> = parts.iter().map(|p| Entry::Reply(Bytes::from_static(p))).collect();
        let mut out = Outgoing::default();
        out.load(&mut entries, &[], Wire::Json.into());
        out
    }

    fn unwritten(out: &Outgoing) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.slices(Wire::Json.into(), &mut iov);
        iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn partial_writes_resume_inside_the_cut_frame() {
        let mut out = frames(&[b"abc", b"", b"defg", b"h"]);
        assert_eq!(out.bytes, 8);
        out.advance(Wire::Json.into(), 4);
        assert!(out.mid_frame());
        assert_eq!(unwritten(&out), b"efgh");
        out.compact();
        assert_eq!(unwritten(&out), b"efgh", "compacting keeps the cut frame's offset");
        out.advance(Wire::Json.into(), 3);
        assert!(!out.mid_frame() && !out.is_done());
        out.advance(Wire::Json.into(), 1);
        assert!(out.is_done());
    }
}
