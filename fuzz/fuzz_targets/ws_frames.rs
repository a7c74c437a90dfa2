//! Any bytes as what a client sends after the handshake: the frame reader
//! ends with a message, a close code or `Gone`, never panics, and never
//! buffers a message past its limit.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use fanout::transport::ws_read::MessageReader;
use libfuzzer_sys::fuzz_target;

/// The reader's input is in memory, so every read is ready: poll to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut reader = MessageReader::new(data, LIMIT);
    while let Ok(message) = ready(reader.next()) {
        use fanout::transport::ws_read::Incoming;
        if let Incoming::Text(b) | Incoming::Binary(b) = &message {
            assert!(b.len() <= LIMIT, "a message over the limit was buffered");
        }
    }
});
