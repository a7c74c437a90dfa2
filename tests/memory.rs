//! Freed heap goes back to the system: the broker's memory task
//! (`fanout::memory::run`) notices freed memory piling up and returns it,
//! where glibc by itself keeps every page that is not at the top of the heap.
//! The test fragments this process's own heap the way a storm of connections
//! does (many small blocks, a few of them kept all over the heap) and waits
//! for the resident size to come down.

use std::time::Duration;

use tokio::time::Instant;

/// Blocks allocated, their size, and one kept in so many.
const BLOCKS: usize = 64 * 1024;
const BLOCK: usize = 1024;
const KEPT_EVERY: usize = 16;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

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
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = rss_kib();
    while now > goal {
        assert!(
            Instant::now() < deadline,
            "{now} KiB resident 10 s after freeing {} of {BLOCKS} blocks \
             ({before} KiB before them, {peak} KiB with all of them)",
            BLOCKS - blocks.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = rss_kib();
    }
    println!(
        "RSS {before} KiB -> {peak} KiB with {BLOCKS} blocks -> {now} KiB with {}",
        blocks.len()
    );
    task.abort();
}
