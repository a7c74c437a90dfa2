//! A minimal safe wrapper over Linux `epoll` and `eventfd`, for the blocking
//! loops that are written like C programs: the receive threads
//! ([`crate::engine::receive`]) and the floor server ([`crate::floor`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Readable (or a peer hang-up to read).
pub const IN: u32 = libc::EPOLLIN as u32;
/// Writable again.
pub const OUT: u32 = libc::EPOLLOUT as u32;
/// Edge-triggered: one event per change, the reader drains.
pub const ET: u32 = libc::EPOLLET as u32;
/// The peer shut its write side.
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// Wake only one of the loops waiting on a shared fd (a listener).
pub const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// Returns the last OS error when `ret` is negative.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An epoll instance. Tokens are caller-chosen `u64`s.
pub struct Epoll(OwnedFd);

impl Epoll {
    /// Creates an epoll instance (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the returned fd is ours alone.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Starts watching `fd` for `events`, reported with `token`.
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Stops watching `fd`. Do this before closing a socket that has a
    /// duplicate elsewhere: epoll watches the open file, not the number.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ms` (-1: forever) and fills `events`; returns
    /// how many are ready. An interrupted wait returns 0.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        let cap = events.0.capacity() as libc::c_int;
        // SAFETY: the kernel writes at most `cap` entries into the spare capacity.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.0.as_mut_ptr(), cap, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                // SAFETY: zero entries are initialized.
                unsafe { events.0.set_len(0) };
                return Ok(0);
            }
            return Err(e);
        }
        // SAFETY: the kernel initialized the first `n` entries.
        unsafe { events.0.set_len(n as usize) };
        Ok(n as usize)
    }
}

/// A reusable buffer of ready events.
pub struct Events(Vec<libc::epoll_event>);

impl Events {
    /// Room for `n` events per wait.
    pub fn with_capacity(n: usize) -> Events {
        Events(Vec::with_capacity(n.max(1)))
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the last wait returned none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `(token, event bits)` of ready event `i` of the last wait.
    pub fn get(&self, i: usize) -> (u64, u32) {
        // Copy the fields out: the struct is packed on x86_64.
        let e = self.0[i];
        (e.u64, e.events)
    }
}

/// An eventfd: one thread wakes another's epoll loop.
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the returned fd is ours alone.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable (wakes the loop watching it).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN)
        // still leaves the fd readable, which is all a wake-up needs.
        unsafe { libc::write(self.0.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Resets the counter after a wake-up.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (already drained) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_epoll() {
        let ep = Epoll::new().unwrap();
        let ev = EventFd::new().unwrap();
        ep.add(ev.as_raw_fd(), IN, 7).unwrap();
        let mut events = Events::with_capacity(4);
        assert_eq!(ep.wait(&mut events, 0).unwrap(), 0);
        ev.notify();
        assert_eq!(ep.wait(&mut events, 1000).unwrap(), 1);
        assert_eq!(events.get(0).0, 7);
        ev.drain();
        assert_eq!(ep.wait(&mut events, 0).unwrap(), 0);
        ep.delete(ev.as_raw_fd()).unwrap();
    }
}
