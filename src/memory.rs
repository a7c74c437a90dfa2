//! Gives the heap memory a storm freed back to the system.
//!
//! glibc's malloc keeps what the program frees: a page in the middle of the
//! heap stays resident until something reuses it, and only the top of an
//! arena is ever returned by itself. After a connect storm (every handshake
//! allocates and frees an HTTP buffer), once most of a storm's connections
//! have closed, after the keepalive sweep returns idle queues' storage, or
//! after a burst of large messages, the broker's RSS would otherwise stay at
//! that high-water mark for good. Once a second this task asks malloc how much
//! of its heap is free (`mallinfo2`); when that grew by [`return_at`] since the
//! last look that gave memory back, `malloc_trim` hands the free pages to the
//! kernel, on a blocking thread: it walks every arena, and an allocation on a
//! runtime thread waits for the arena it locks.
//!
//! Elsewhere than glibc (musl, macOS) the allocator does its own returning and
//! this task does nothing.

use std::time::Duration;

/// How often the heap's free space is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What malloc says of its heap.
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    /// Bytes held free for reuse.
    pub free: usize,
    /// Bytes in use.
    pub used: usize,
}

/// Newly freed bytes that make a return worth its walk over the heap: 1 MiB, or a
/// 64th of what is in use, so a big broker does not trim every second.
pub fn return_at(heap: Heap) -> usize {
    (heap.used / 64).max(1 << 20)
}

/// Returns freed memory whenever enough has piled up; runs until aborted.
pub async fn run() {
    if heap().is_none() {
        return;
    }
    // Free bytes as of the last return (none yet: all that is free counts).
    let mut since = 0;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(now) = heap() else { return };
        // Free space that was reused lowers the mark: only newly freed memory counts.
        since = since.min(now.free);
        if now.free - since >= return_at(now) {
            let _ = tokio::task::spawn_blocking(give_back).await;
            tracing::debug!(free = now.free, used = now.used, "freed heap returned to the system");
            // Trimmed chunks stay free in malloc's lists (their pages are gone): the mark
            // moves up to them, and what was freed while the trim ran counts for the next.
            since = now.free;
        }
    }
}

/// The heap's free and used bytes, where malloc can tell (glibc).
pub fn heap() -> Option<Heap> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads malloc's own statistics, under its locks.
        let info = unsafe { libc::mallinfo2() };
        Some(Heap {
            free: info.fordblks + info.fsmblks,
            used: info.uordblks,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Hands the heap's free pages back to the kernel (glibc); elsewhere does nothing.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's locks itself; 0 keeps no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_heap_waits_for_more_freed_memory_before_a_return() {
        let small = Heap { free: 0, used: 8 << 20 };
        assert_eq!(return_at(small), 1 << 20);
        let big = Heap { free: 0, used: 2 << 30 };
        assert_eq!(return_at(big), 32 << 20);
    }
}
