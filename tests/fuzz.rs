//! Property tests over everything that parses client input: the JSON and
//! MessagePack request decoders, topic and pattern parsing, pattern
//! coverage, and token verification. None may panic on any input. And data
//! crosses formats unchanged: whatever `data` is accepted in one format
//! reaches the other as the value a reader of the first reads, modulo the
//! documented changes (docs/protocol.md, "Data across formats"). No payload
//! gets out of an iframe stream's script element, and a payload-only SSE
//! event reads back as its payload.

use base64::Engine;
use fanout::auth::Auth;
use fanout::config::{AuthMode, Config};
use fanout::protocol::{decode, iframe, json, sse, transcode, ClientMsg, Payload, Wire};
use fanout::topic::{Filter, TopicName};
use proptest::prelude::*;

/// Topic-like text: mostly valid tokens, with wildcards and stray characters mixed in.
fn topicish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof!["[a-c]{1,2}", Just("*".to_string()), Just(">".to_string()), "[.$ ]?"],
        1..6,
    )
    .prop_map(|tokens| tokens.join("."))
}

/// A JSON request with arbitrary field values.
fn json_request() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[1,{\"a\":[]}]".to_string()),
        Just("{".to_string()),
    ];
    let op = prop_oneof![
        "subscribe",
        "unsubscribe",
        "publish",
        "ping",
        "auth",
        "presence",
        ".{0,8}"
    ];
    (op, value.clone(), value.clone(), value).prop_map(|(op, topic, data, id)| {
        format!(r#"{{"op":"{op}","topic":{topic},"data":{data},"id":{id},"since":{id},"token":{topic}}}"#).into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(Wire::Json, &bytes);
        let _ = decode(Wire::Msgpack, &bytes);
    }

    #[test]
    fn the_json_decoder_never_panics_on_near_valid_requests(request in json_request()) {
        let _ = decode(Wire::Json, &request);
    }

    #[test]
    fn the_msgpack_decoder_never_panics_on_any_value(value in any_msgpack()) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let _ = decode(Wire::Msgpack, &bytes);
    }

    #[test]
    fn topic_parsing_never_panics(text in any::<String>()) {
        let _ = TopicName::parse(&text);
        let _ = Filter::parse(&text);
    }

    #[test]
    fn coverage_agrees_with_matching(a in topicish(), b in topicish(), t in topicish()) {
        if let (Ok(a), Ok(b), Ok(t)) = (Filter::parse(&a), Filter::parse(&b), TopicName::parse(&t)) {
            // Whatever `b` matches, a filter covering `b` matches too.
            if a.covers(&b) && b.matches(&t) {
                prop_assert!(a.matches(&t), "{a:?} covers {b:?} but not {t:?}");
            }
            prop_assert!(a.covers(&a));
        }
    }

    #[test]
    fn token_verification_never_panics(token in "[A-Za-z0-9_.=-]{0,200}") {
        let mut config = Config::default();
        config.auth.mode = AuthMode::Jwt;
        config.auth.jwt_secret = "fuzz".into();
        let auth = Auth::from_config(&config).unwrap();
        prop_assert!(auth.verify(&token).is_err());
    }
}

fn any_msgpack() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        ".{0,12}".prop_map(rmpv::Value::from),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(rmpv::Value::from),
        prop_oneof![
            "op",
            "topic",
            "data",
            "id",
            "since",
            "token",
            "subscribe",
            "publish",
            "auth"
        ]
        .prop_map(rmpv::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(rmpv::Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(rmpv::Value::Map),
        ]
    })
}

/// How deep `data` may nest arrays and maps (docs/protocol.md).
const MAX_DEPTH: usize = 64;

/// One JSON string: plain characters, escapes, and lone surrogate halves.
fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(|c| {
            let quoted = serde_json::to_string(&c.to_string()).unwrap();
            quoted[1..quoted.len() - 1].to_string()
        }),
        Just(r"\u00e9".to_string()),
        Just(r"\ud83d\ude00".to_string()),
        Just(r"\n\/\u0000".to_string()),
        Just(r"\ud800".to_string()),
        Just(r"\udfff".to_string()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// JSON text that stresses the cross-format rules: integers past 64 bits,
/// floats at any exponent (past the f64 range too), escapes, objects with
/// repeated keys, and nesting on both sides of the limit.
fn json_data() -> impl Strategy<Value = String> {
    let finite = || any::<f64>().prop_filter("finite", |f| f.is_finite());
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{18,40}",
        finite().prop_map(|f| format!("{f:?}")),
        finite().prop_map(|f| format!("{f:e}")),
        "-?[0-9]\\.[0-9]{1,20}[eE][+-]?[0-9]{1,3}",
        json_string(),
    ];
    let value = leaf.prop_recursive(4, 32, 5, |inner| {
        let key = prop_oneof!["[a-c]{0,2}".prop_map(|k| format!("\"{k}\"")), json_string()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((key, inner), 0..5).prop_map(|entries| {
                let entries: Vec<String> = entries.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", entries.join(","))
            }),
        ]
    });
    (value, 0..MAX_DEPTH + 4).prop_map(|(v, levels)| format!("{}{v}{}", "[".repeat(levels), "]".repeat(levels)))
}

/// How deep arrays and objects nest in JSON text (a repeated key's earlier
/// values count, though a reader keeps only the last).
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    deepest
}

/// The JSON value a reader of MessagePack data reads by the documented rules:
/// `bin`/`ext` become base64 strings, NaN and infinities `null`, a non-string
/// map key its JSON text, and a repeated key keeps its last value.
fn as_json(v: &rmpv::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number);
    match v {
        rmpv::Value::Nil => Json::Null,
        rmpv::Value::Boolean(b) => Json::Bool(*b),
        rmpv::Value::Integer(i) => i.as_u64().map_or_else(|| Json::from(i.as_i64().unwrap()), Json::from),
        rmpv::Value::F32(f) => float(f64::from(*f)),
        rmpv::Value::F64(f) => float(*f),
        rmpv::Value::String(s) => Json::String(s.as_str().unwrap().to_string()),
        rmpv::Value::Binary(b) | rmpv::Value::Ext(_, b) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        rmpv::Value::Array(items) => Json::Array(items.iter().map(as_json).collect()),
        rmpv::Value::Map(pairs) => Json::Object(pairs.iter().map(|(k, v)| (key_text(k), as_json(v))).collect()),
    }
}

/// A map key in JSON: a `str` is itself, anything else its JSON text.
fn key_text(k: &rmpv::Value) -> String {
    match k {
        rmpv::Value::String(s) => s.as_str().unwrap().to_string(),
        other => json_text(other),
    }
}

/// The JSON text of a value with maps in their MessagePack key order, each
/// key once where it first appeared, with its last value (as a key's JSON
/// text, order shows).
fn json_text(v: &rmpv::Value) -> String {
    match v {
        rmpv::Value::Array(items) => format!("[{}]", items.iter().map(json_text).collect::<Vec<_>>().join(",")),
        rmpv::Value::Map(pairs) => {
            let mut entries: Vec<(String, String)> = Vec::new();
            for (k, v) in pairs {
                let (k, v) = (key_text(k), json_text(v));
                match entries.iter_mut().find(|(seen, _)| *seen == k) {
                    Some(entry) => entry.1 = v,
                    None => entries.push((k, v)),
                }
            }
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                .collect();
            format!("{{{}}}", entries.join(","))
        }
        other => as_json(other).to_string(),
    }
}

/// Whether MessagePack data holds a `str` (value or key) that is not UTF-8, and how deep it nests.
fn msgpack_shape(v: &rmpv::Value) -> (bool, usize) {
    let inside = |parts: Vec<(bool, usize)>| {
        parts
            .into_iter()
            .fold((false, 1), |(bad, depth), (b, d)| (bad || b, depth.max(d + 1)))
    };
    match v {
        rmpv::Value::String(s) => (!s.is_str(), 0),
        rmpv::Value::Array(items) => inside(items.iter().map(msgpack_shape).collect()),
        rmpv::Value::Map(pairs) => inside(
            pairs
                .iter()
                .flat_map(|(k, v)| [msgpack_shape(k), msgpack_shape(v)])
                .collect(),
        ),
        _ => (false, 0),
    }
}

/// Encodes like `rmpv::encode::write_value`, except that a `str` that is not
/// UTF-8 stays a `str` (rmpv writes it as `bin`).
fn encode(v: &rmpv::Value, out: &mut Vec<u8>) {
    match v {
        rmpv::Value::String(s) => {
            rmp::encode::write_str_len(out, s.as_bytes().len() as u32).unwrap();
            out.extend_from_slice(s.as_bytes());
        }
        rmpv::Value::Array(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).unwrap();
            items.iter().for_each(|item| encode(item, out));
        }
        rmpv::Value::Map(pairs) => {
            rmp::encode::write_map_len(out, pairs.len() as u32).unwrap();
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
        other => rmpv::encode::write_value(out, other).unwrap(),
    }
}

/// MessagePack data with what JSON lacks: `bin`, `ext`, 32-bit floats, NaN
/// and infinities, `str` that is not UTF-8, non-string and repeated keys,
/// and nesting on both sides of the limit.
fn msgpack_data() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::F64),
        any::<f32>().prop_map(rmpv::Value::F32),
        Just(rmpv::Value::F64(f64::NAN)),
        Just(rmpv::Value::F64(f64::NEG_INFINITY)),
        ".{0,8}".prop_map(rmpv::Value::from),
        "[a-c]{0,2}".prop_map(rmpv::Value::from),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(rmpv::Value::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
        // A str of arbitrary bytes, decoded as a receiver would.
        prop::collection::vec(any::<u8>(), 0..6).prop_map(|bytes| {
            let mut encoded = vec![0xa0 | bytes.len() as u8];
            encoded.extend(bytes);
            rmpv::decode::read_value(&mut &encoded[..]).unwrap()
        }),
    ];
    let value = leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(rmpv::Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..5).prop_map(rmpv::Value::Map),
        ]
    });
    (value, 0..MAX_DEPTH + 4).prop_map(|(v, levels)| (0..levels).fold(v, |v, _| rmpv::Value::Array(vec![v])))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn accepted_json_data_reaches_msgpack_and_back_as_the_same_value(text in json_data()) {
        // What a JSON subscriber reads from the publisher's text.
        let read: Result<serde_json::Value, _> = serde_json::from_str(&text);
        match json::payload(&text) {
            Ok(Payload::Json(bytes)) => {
                let read = read.expect("accepted data is JSON a reader reads");
                let mut msgpack = Vec::new();
                transcode::json_to_msgpack(&bytes, &mut msgpack);
                let value = rmpv::decode::read_value(&mut &msgpack[..]).unwrap();
                prop_assert_eq!(&as_json(&value), &read, "MessagePack subscribers read {}", text);
                let mut back = Vec::new();
                transcode::msgpack_to_json(&msgpack, &mut back);
                prop_assert_eq!(&serde_json::from_slice::<serde_json::Value>(&back).unwrap(), &read);
            }
            Ok(Payload::Text(s)) => {
                prop_assert_eq!(serde_json::Value::String(String::from_utf8(s.to_vec()).unwrap()), read.unwrap());
            }
            Ok(other) => prop_assert!(false, "JSON data became {:?}", other),
            Err(e) => {
                // Refused only what some format cannot carry.
                let needed = read.is_err() || json_depth(&text) > MAX_DEPTH;
                prop_assert!(needed, "{} refused: {}", text, e);
            }
        }
    }

    #[test]
    fn accepted_msgpack_data_reaches_json_as_documented(data in msgpack_data()) {
        let request = rmpv::Value::Map(vec![
            ("op".into(), "publish".into()),
            ("topic".into(), "t".into()),
            ("data".into(), data.clone()),
        ]);
        let mut bytes = Vec::new();
        encode(&request, &mut bytes);
        let (bad_str, depth) = msgpack_shape(&data);
        match decode(Wire::Msgpack, &bytes) {
            Ok(ClientMsg::Publish { data: Payload::Msgpack(b), .. }) => {
                let mut json = Vec::new();
                transcode::msgpack_to_json(&b, &mut json);
                let read: serde_json::Value = serde_json::from_slice(&json).unwrap();
                prop_assert_eq!(read, as_json(&data));
                prop_assert!(!bad_str && depth <= MAX_DEPTH, "accepted {}", data);
            }
            Ok(ClientMsg::Publish { data: Payload::Text(s), .. }) => {
                prop_assert_eq!(rmpv::Value::from(std::str::from_utf8(&s).unwrap()), data);
            }
            Ok(ClientMsg::Publish { data: Payload::Binary(b), .. }) => {
                prop_assert_eq!(rmpv::Value::Binary(b.to_vec()), data);
            }
            Ok(other) => prop_assert!(false, "decoded as {:?}", other),
            Err(e) => prop_assert!(bad_str || depth > MAX_DEPTH, "{} refused: {}", data, e.error.message),
        }
    }
}

/// Text a page might be sent: anything, with markup, line terminators and line breaks mixed in.
fn page_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        Just("</script>".to_string()),
        Just("<!--".to_string()),
        Just("-->".to_string()),
        Just("&amp;".to_string()),
        Just("\u{2028}".to_string()),
        Just("\u{2029}".to_string()),
        Just("\r\n".to_string()),
        Just("\r".to_string()),
        Just("\n".to_string()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// The value an iframe stream hands its callback, after checking it cannot leave the script.
fn iframe_value(payload: &Payload) -> Result<serde_json::Value, TestCaseError> {
    let value = iframe::value(payload);
    let text = std::str::from_utf8(&value).unwrap();
    for c in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
        prop_assert!(!text.contains(c), "{:?} left in {}", c, text);
    }
    Ok(serde_json::from_str(text).unwrap())
}

/// What `EventSource` reads as `ev.data` from one event block: its `data:` lines, joined.
fn event_data(block: &[u8]) -> String {
    let text = std::str::from_utf8(block).unwrap();
    let body = text.strip_suffix("\n\n").expect("a block ends with a blank line");
    body.split('\n')
        .filter_map(|line| line.strip_prefix("data: "))
        .collect::<Vec<_>>()
        .join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn no_text_gets_out_of_an_iframe_script_and_it_reads_back(text in page_text()) {
        prop_assert_eq!(iframe_value(&Payload::text(text.clone()))?, serde_json::Value::String(text));
    }

    #[test]
    fn no_json_gets_out_of_an_iframe_script_and_it_reads_back(text in json_data()) {
        if let Ok(payload) = json::payload(&text) {
            let read: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(iframe_value(&payload)?, read);
        }
    }

    #[test]
    fn a_payload_event_reads_back_as_its_text(text in page_text()) {
        let block = sse::payload_event(&Payload::text(text.clone()));
        // EventSource reads `\r\n`, `\r` and `\n` all as one line break, and gives `\n`.
        prop_assert_eq!(event_data(&block), text.replace("\r\n", "\n").replace('\r', "\n"));
        prop_assert!(!block[..block.len() - 2].windows(2).any(|w| w == b"\n\n"), "one block");
    }
}
