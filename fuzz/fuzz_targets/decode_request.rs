//! Any bytes as a client request, in JSON and in MessagePack: decoding must
//! answer `Ok` or a `bad_request`, never panic, and a decoded publish must
//! encode for every wire format.
#![no_main]

use fanout::protocol::{decode, ClientMsg, Wire};
use fanout::topic::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, request)) = data.split_first() else {
        return;
    };
    let wire = if selector & 1 == 0 { Wire::Json } else { Wire::Msgpack };
    match decode(wire, request) {
        Ok(ClientMsg::Subscribe { topic, .. }) | Ok(ClientMsg::Unsubscribe { topic, .. }) => {
            let _ = Filter::parse(&topic);
        }
        Ok(ClientMsg::Publish { topic, data, .. }) => {
            if let Ok(Filter::Exact(name)) = Filter::parse(&topic) {
                let message = fanout::protocol::Message::new(name, 1, 0, data, None);
                for wire in Wire::ALL {
                    let _ = message.frame(wire);
                }
                // No payload may end an iframe stream's script element or start markup.
                let value = message.frame(Wire::Iframe);
                assert!(!value.iter().any(|b| matches!(b, b'<' | b'>' | b'&')), "escaped");
            }
        }
        Ok(_) => {}
        Err(e) => assert!(!e.error.message.is_empty(), "an error names the problem"),
    }
});
