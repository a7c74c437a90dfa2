//! Freed heap goes back to the system: the broker's memory task
//! (`fanout::memory::run`) notices freed memory piling up and returns it,
//! where glibc by itself keeps every page that is not at the top of the heap.
//! The test fragments this process's own heap the way a storm of connections
//! does (many small blocks, a few of them kept all over the heap) and waits
//! for the resident size to come down.

mod common;

use common::{holds_by, rss_kib, WAIT};
use tokio::time::Instant;

/// Blocks allocated, their size, and one kept in so many.
const BLOCKS: usize = 64 * 1024;
const BLOCK: usize = 1024;
const KEPT_EVERY: usize = 16;

#[tokio::test]
async fn memory_freed_between_blocks_still_in_use_goes_back() {
    if fanout::memory::heap().is_none() {
        eprintln!("not glibc: the allocator returns memory its own way");
        return;
    }
    let task = tokio::spawn(fanout::memory::run());
    let before = rss_kib();
    // Touched, so every block is resident.
    let mut blocks: Vec<Box<[u8]>> = (0..BLOCKS).map(|i| vec![i as u8; BLOCK].into_boxed_slice()).collect();
    let peak = rss_kib();
    let grown = peak.saturating_sub(before);
    assert!(
        grown >= (BLOCKS * BLOCK / 1024 / 2) as u64,
        "the blocks are resident: {before} -> {peak} KiB"
    );
    let mut i = 0;
    blocks.retain(|_| {
        i += 1;
        i % KEPT_EVERY == 0
    });
    // A sixteenth is still in use, one block in every four pages: nothing is at the top.
    let goal = before + grown / 2;
    let mut now = rss_kib();
    let back = holds_by(Instant::now() + WAIT, async || {
        now = rss_kib();
        now <= goal
    })
    .await;
    assert!(
        back,
        "{now} KiB resident {WAIT:?} after freeing {} of {BLOCKS} blocks \
         ({before} KiB before them, {peak} KiB with all of them)",
        BLOCKS - blocks.len()
    );
    println!(
        "RSS {before} KiB -> {peak} KiB with {BLOCKS} blocks -> {now} KiB with {}",
        blocks.len()
    );
    task.abort();
}
