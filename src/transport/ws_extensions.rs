//! `Sec-WebSocket-Extensions`: the permessage-deflate negotiation of RFC 7692 §7.
//!
//! The broker accepts the first offer it can honour and always answers with
//! `server_no_context_takeover` (so one compressed frame serves every
//! subscriber) and `client_no_context_takeover` (so it keeps no inflate state
//! between a client's messages; §7.1.1.1 lets a server ask it of any client).
//! An offer it cannot honour is declined, never answered wrongly.

use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// The extension's name.
const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// What the broker agreed to for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateAnswer {
    /// The client's inflate window for server messages, in bits: 15, or what its
    /// offer's `server_max_window_bits` asked for.
    pub server_window_bits: u8,
    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub header: String,
}

/// The answer to the client's permessage-deflate offers: the first one the broker can
/// honour, or `None` (no offer, or none acceptable: the connection goes uncompressed).
pub fn negotiate(headers: &HeaderMap) -> Option<DeflateAnswer> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_outside_quotes(v, ','))
        .filter_map(|offer| {
            let mut parts = split_outside_quotes(offer, ';').into_iter();
            let name = parts.next()?.trim();
            name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE).then(|| accept(parts))?
        })
        .next()
}

/// Accepts one offer's parameters, or declines it (RFC 7692 §7.1: an unknown or
/// repeated parameter, or an invalid value).
fn accept<'a>(params: impl Iterator<Item = &'a str>) -> Option<DeflateAnswer> {
    let mut seen: Vec<String> = Vec::new();
    let mut server_window_bits = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            // The window the client's inflater has: honoured by compressing with the
            // full window and sending a message compressed only when it is no longer
            // than that window (see `Agreement::fits`).
            ("server_max_window_bits", Some(v)) => server_window_bits = Some(window_bits(v)?),
            // The client may be told to use a smaller window; the broker inflates
            // with the full one, so it never asks, and only checks the value.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    let mut header = format!("{PERMESSAGE_DEFLATE}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_window_bits {
        header.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(DeflateAnswer {
        server_window_bits: server_window_bits.unwrap_or(15),
        header,
    })
}

/// A window size parameter: 1*DIGIT from 8 to 15, no leading zero (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// A parameter value, without the quotes of a quoted-string (RFC 6455 §9.1).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(v),
    }
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn offer(values: &[&str]) -> Option<DeflateAnswer> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&h)
    }

    const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn a_browser_offer_is_accepted_without_context_takeover() {
        let a = offer(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(a.header, ANSWER);
        assert_eq!(a.server_window_bits, 15);
        assert_eq!(offer(&["permessage-deflate"]).unwrap().header, ANSWER);
        assert_eq!(
            offer(&["Permessage-Deflate; Server_No_Context_Takeover; client_no_context_takeover"])
                .unwrap()
                .header,
            ANSWER
        );
    }

    #[test]
    fn a_smaller_server_window_is_agreed_and_echoed() {
        let a = offer(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(a.server_window_bits, 10);
        assert_eq!(a.header, format!("{ANSWER}; server_max_window_bits=10"));
        let a = offer(&["permessage-deflate; server_max_window_bits=\"8\"; client_max_window_bits=\"9\""]).unwrap();
        assert_eq!(a.server_window_bits, 8);
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins_across_lists_and_header_lines() {
        let a = offer(&["permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=12"]);
        assert_eq!(a.unwrap().server_window_bits, 12);
        let a = offer(&["foo; bar=\"a,b\"", "permessage-deflate; server_max_window_bits=9"]);
        assert_eq!(a.unwrap().server_window_bits, 9);
        let a = offer(&["permessage-deflate; server_max_window_bits=11", "permessage-deflate"]);
        assert_eq!(a.unwrap().server_window_bits, 11);
    }
}
