//! Data crosses wire formats as the same value. With a JSON and a
//! MessagePack `/ws` subscriber on one topic, data published every way in
//! (`/ws` JSON, `/ws` MessagePack, HTTP `application/json` and
//! `application/msgpack` bodies, both batch forms) reaches both as the same
//! value, after the changes docs/protocol.md lists ("Data across formats");
//! data one format cannot carry is refused at publish with a `bad_request`
//! naming why, and reaches no one.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use base64::Engine;
use common::*;
use fanout::protocol::json;
use rmpv::Value as Mp;
use serde_json::{json, Value};

const TOPIC: &str = "formats.t";

/// Every way a publisher's data gets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    WsJson,
    WsMsgpack,
    HttpJson,
    HttpMsgpack,
    BatchJson,
    BatchMsgpack,
}

const JSON_WAYS: [Way; 3] = [Way::WsJson, Way::HttpJson, Way::BatchJson];
const MSGPACK_WAYS: [Way; 3] = [Way::WsMsgpack, Way::HttpMsgpack, Way::BatchMsgpack];

/// A refusal: the error's code, its message, and where it was reported.
type Refused = (String, String, Reported);

/// Where a refusal was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// In a `/ws` `error` reply, naming this request id.
    Reply(Option<u64>),
    /// As an HTTP 400.
    Status,
    /// As a batch item's `error`, the batch answered 200.
    Item,
}

/// Publishes `data` (JSON text for the JSON ways, MessagePack bytes for the others) to TOPIC.
async fn publish(b: &TestBroker, way: Way, data: &[u8]) -> Result<u64, Refused> {
    match way {
        Way::WsJson | Way::WsMsgpack => {
            let format = if way == Way::WsJson { "json" } else { "msgpack" };
            let mut c = connect(&b.ws_url(&format!("/ws?format={format}"))).await;
            if way == Way::WsJson {
                let data = std::str::from_utf8(data).unwrap();
                c.send_text(&format!(r#"{{"op":"publish","topic":"{TOPIC}","id":9,"data":{data}}}"#))
                    .await;
            } else {
                let mut request = Vec::new();
                rmp::encode::write_map_len(&mut request, 4).unwrap();
                for (k, v) in [("op", "publish"), ("topic", TOPIC)] {
                    rmp::encode::write_str(&mut request, k).unwrap();
                    rmp::encode::write_str(&mut request, v).unwrap();
                }
                rmp::encode::write_str(&mut request, "id").unwrap();
                rmp::encode::write_uint(&mut request, 9).unwrap();
                rmp::encode::write_str(&mut request, "data").unwrap();
                request.extend_from_slice(data);
                c.send_binary(&request).await;
            }
            let reply = c.recv().await;
            c.close().await;
            match reply["type"].as_str() {
                Some("ack") => Ok(reply["seq"].as_u64().unwrap()),
                Some("error") => Err(refusal(&reply, Reported::Reply(reply["id"].as_u64()))),
                _ => panic!("{way:?}: neither ack nor error: {reply}"),
            }
        }
        Way::HttpJson | Way::HttpMsgpack => {
            let ct = if way == Way::HttpJson {
                "application/json"
            } else {
                "application/msgpack"
            };
            let (status, body) = http(b.addr, "POST", &format!("/api/publish/{TOPIC}"), Some(ct), data).await;
            let answer: Value = serde_json::from_slice(&body).unwrap();
            match status {
                200 => Ok(answer["seq"].as_u64().unwrap()),
                400 => Err(refusal(&answer, Reported::Status)),
                other => panic!("{way:?}: status {other}: {answer}"),
            }
        }
        Way::BatchJson | Way::BatchMsgpack => {
            let (ct, body) = if way == Way::BatchJson {
                let data = std::str::from_utf8(data).unwrap();
                (
                    "application/json",
                    format!(r#"[{{"topic":"{TOPIC}","data":{data}}}]"#).into_bytes(),
                )
            } else {
                let mut body = Vec::new();
                rmp::encode::write_array_len(&mut body, 1).unwrap();
                rmp::encode::write_map_len(&mut body, 2).unwrap();
                rmp::encode::write_str(&mut body, "topic").unwrap();
                rmp::encode::write_str(&mut body, TOPIC).unwrap();
                rmp::encode::write_str(&mut body, "data").unwrap();
                body.extend_from_slice(data);
                ("application/msgpack", body)
            };
            let (status, answer) = http(b.addr, "POST", "/api/publish", Some(ct), &body).await;
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            if status == 400 {
                return Err(refusal(&answer, Reported::Status));
            }
            assert_eq!(status, 200, "{way:?}: {answer}");
            let item = &answer[0];
            match item.get("error") {
                None => Ok(item["seq"].as_u64().unwrap()),
                Some(e) => Err(refusal(e, Reported::Item)),
            }
        }
    }
}

fn refusal(e: &Value, reported: Reported) -> Refused {
    (
        e["code"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
        reported,
    )
}

/// A JSON and a MessagePack subscriber to TOPIC, and the seq they stand at.
struct Subscribers {
    json: Client,
    msgpack: Client,
    seq: u64,
}

/// What the two subscribers got for one message.
struct Got2 {
    /// The `data` the JSON subscriber read, parsed.
    json: Value,
    /// The `data` text exactly as the JSON subscriber received it (to see key order).
    json_text: String,
    /// The `data` the MessagePack subscriber read.
    msgpack: Mp,
}

impl Subscribers {
    async fn new(b: &TestBroker) -> Self {
        let mut json = connect(&b.ws_url("/ws")).await;
        json.subscribe(TOPIC).await;
        let mut msgpack = connect(&b.ws_url("/ws?format=msgpack")).await;
        msgpack.subscribe(TOPIC).await;
        Subscribers { json, msgpack, seq: 0 }
    }

    /// The next message each subscriber receives; it must carry the next seq.
    async fn next(&mut self) -> Got2 {
        self.seq += 1;
        let Got::Text(text) = self.json.next().await else {
            panic!("the JSON subscriber gets text frames")
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&message["type"], message["seq"].as_u64()),
            (&json!("message"), Some(self.seq)),
            "{text}"
        );
        let (_, rest) = text.split_once(r#""data":"#).unwrap();
        let rest = rest.strip_suffix('}').unwrap();
        let json_text = rest.strip_suffix(r#","encoding":"base64""#).unwrap_or(rest).to_string();
        let Got::Binary(frame) = self.msgpack.next().await else {
            panic!("the MessagePack subscriber gets binary frames")
        };
        let message = rmpv::decode::read_value(&mut &frame[..]).unwrap();
        assert_eq!(
            (&message["type"], message["seq"].as_u64()),
            (&Mp::from("message"), Some(self.seq))
        );
        Got2 {
            json: serde_json::from_str::<Value>(&text).unwrap()["data"].clone(),
            json_text,
            msgpack: message["data"].clone(),
        }
    }

    /// Proves nothing reached either subscriber since the last message: the
    /// next thing both receive is a fresh publish with the next seq.
    async fn nothing_delivered(&mut self, b: &TestBroker) {
        let (status, _) = http(
            b.addr,
            "POST",
            &format!("/api/publish/{TOPIC}"),
            Some("text/plain"),
            b"sentinel",
        )
        .await;
        assert_eq!(status, 200);
        let got = self.next().await;
        assert_eq!(got.json, json!("sentinel"));
        assert_eq!(got.msgpack, Mp::from("sentinel"));
    }
}

/// What a JSON reader reads from MessagePack data, by the documented rules:
/// `bin` and `ext` become base64 strings, NaN and infinities `null`, a
/// non-string map key its JSON text, and a key seen twice keeps the last value.
fn as_json(v: &Mp) -> Value {
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => i.as_u64().map_or_else(|| Value::from(i.as_i64().unwrap()), Value::from),
        Mp::F32(f) => float(f64::from(*f)),
        Mp::F64(f) => float(*f),
        Mp::String(s) => Value::String(s.as_str().expect("accepted strings are UTF-8").to_string()),
        Mp::Binary(b) | Mp::Ext(_, b) => b64(b),
        Mp::Array(items) => Value::Array(items.iter().map(as_json).collect()),
        Mp::Map(pairs) => {
            let mut object = serde_json::Map::new();
            for (k, v) in pairs {
                let key = match k {
                    Mp::String(s) => s.as_str().unwrap().to_string(),
                    other => as_json(other).to_string(),
                };
                object.insert(key, as_json(v));
            }
            Value::Object(object)
        }
    }
}

fn encode(v: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// `levels` arrays around `leaf`, in JSON.
fn json_arrays(levels: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", "[".repeat(levels), "]".repeat(levels))
}

/// `levels` objects around `leaf`, in JSON.
fn json_objects(levels: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", r#"{"k":"#.repeat(levels), "}".repeat(levels))
}

/// `levels` arrays around `leaf`, in MessagePack (written flat: a deep
/// `rmpv::Value` would overflow the test's stack when encoded or dropped).
fn msgpack_arrays(levels: usize, leaf: Mp) -> Vec<u8> {
    let mut out = vec![0x91; levels];
    out.extend(encode(&leaf));
    out
}

/// A MessagePack `str` holding `bytes` (which need not be UTF-8).
fn raw_str(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0xa0 | bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// Publishes JSON `data` every JSON way and checks both subscribers read what
/// a JSON reader of the publisher's text reads; returns the MessagePack values.
async fn json_arrives_equal(b: &TestBroker, subs: &mut Subscribers, data: &str) -> Vec<Mp> {
    let published: Value = serde_json::from_str(data).unwrap();
    let mut got = Vec::new();
    for way in JSON_WAYS {
        let seq = publish(b, way, data.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{way:?} refused {data}: {e:?}"));
        let g = subs.next().await;
        assert_eq!(seq, subs.seq);
        assert_eq!(
            g.json, published,
            "{way:?}: the JSON subscriber reads the publisher's value"
        );
        assert_eq!(
            as_json(&g.msgpack),
            published,
            "{way:?}: the MessagePack subscriber reads {data}"
        );
        got.push(g.msgpack);
    }
    got
}

/// Publishes MessagePack `data` every MessagePack way: MessagePack subscribers
/// read the value published, JSON subscribers its documented JSON form.
/// Returns the JSON texts received.
async fn msgpack_arrives_equal(b: &TestBroker, subs: &mut Subscribers, data: &Mp) -> Vec<String> {
    let bytes = encode(data);
    let mut texts = Vec::new();
    for way in MSGPACK_WAYS {
        let seq = publish(b, way, &bytes)
            .await
            .unwrap_or_else(|e| panic!("{way:?} refused {data}: {e:?}"));
        let g = subs.next().await;
        assert_eq!(seq, subs.seq);
        assert_eq!(encode(&g.msgpack), bytes, "{way:?}: MessagePack subscribers get {data}");
        assert_eq!(
            g.json,
            as_json(data),
            "{way:?}: JSON subscribers get the documented form of {data}"
        );
        texts.push(g.json_text);
    }
    texts
}

/// How much of a request a refusal could read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    /// All of it: the `/ws` error names the request id, a batch refuses the one item.
    Named,
    /// None: MessagePack nested too deep to be read at all (docs/protocol.md),
    /// so the `/ws` error has no id and a batch is refused whole.
    Unreadable,
}

/// Publishes `data` the given ways; each must be refused with a `bad_request`
/// whose message says `why`, and deliver nothing to anyone.
async fn refused(b: &TestBroker, subs: &mut Subscribers, ways: [Way; 3], data: &[u8], why: &str, id: Id) {
    for way in ways {
        let shown = String::from_utf8_lossy(&data[..data.len().min(60)]).to_string();
        let (code, message, reported) = match publish(b, way, data).await {
            Ok(seq) => panic!("{way:?} accepted {shown} as seq {seq}"),
            Err(e) => e,
        };
        assert_eq!(code, "bad_request", "{way:?} {shown}: {message}");
        assert!(message.contains(why), "{way:?} {shown}: `{message}` should say `{why}`");
        let expected = match (way, id) {
            (Way::WsJson | Way::WsMsgpack, Id::Named) => Reported::Reply(Some(9)),
            (Way::WsJson | Way::WsMsgpack, Id::Unreadable) => Reported::Reply(None),
            (Way::BatchJson | Way::BatchMsgpack, Id::Named) => Reported::Item,
            _ => Reported::Status,
        };
        assert_eq!(reported, expected, "{way:?} {shown}: where the refusal was reported");
        if reported == Reported::Item {
            assert!(message.starts_with("item 0: "), "{message}");
        }
        subs.nothing_delivered(b).await;
    }
}

#[tokio::test]
async fn json_data_reaches_msgpack_subscribers_as_the_same_value() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    for data in [
        r#"{"user":"a","text":"hi","n":[1,-2,2.5,true,null],"e":{},"l":[]}"#,
        r#""h\u00e9 \ud83d\ude00""#,
        r#"{"\u00e9\ud83d\ude00":"line\nbreak \"q\" \u0000 \/","":""}"#,
        // Integers are exact up to 64 bits; past that, and below the smallest
        // float, a number is the nearest 64-bit float, as a JSON reader reads it.
        "[18446744073709551615,-9223372036854775808,18446744073709551616,-1e-400,-0,1e308,1.0]",
        &json_arrays(64, r#""deep""#),
        &json_objects(64, "1"),
        "null",
    ] {
        json_arrives_equal(&b, &mut subs, data).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn json_floats_reach_msgpack_subscribers_exactly() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    // Shortest round-trip forms (what JSON.stringify writes) that a parser
    // without correct rounding reads one unit in the last place off.
    let numbers = [
        "0.1",
        "-6.3965148428664631e91",
        "1.914391596672368e-308",
        "-1.1161907704092974e39",
        "-2.0257172499640025e62",
        "0.6046602879796196",
        "5e-324",
    ];
    let data = format!("[{}]", numbers.join(","));
    for got in json_arrives_equal(&b, &mut subs, &data).await {
        let Mp::Array(items) = got else { panic!("{got}") };
        for (text, item) in numbers.iter().zip(items) {
            let exact: f64 = text.parse().unwrap();
            assert_eq!(item, Mp::F64(exact), "{text} must arrive as the float it names");
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn json_objects_keep_their_key_order_and_the_last_of_a_repeated_key() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    let data = r#"{"b":1,"a":2,"b":3,"c":{"z":1,"y":2}}"#;
    for got in json_arrives_equal(&b, &mut subs, data).await {
        // What JSON.parse reads: each key once, where it first appeared, with its last value.
        let expected = Mp::Map(vec![
            ("b".into(), 3.into()),
            ("a".into(), 2.into()),
            (
                "c".into(),
                Mp::Map(vec![("z".into(), 1.into()), ("y".into(), 2.into())]),
            ),
        ]);
        assert_eq!(got, expected);
    }
    b.stop().await;
}

#[tokio::test]
async fn json_data_msgpack_cannot_carry_is_refused_at_publish() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    for (data, why) in [
        // The two cases from the issue.
        (json_arrays(128, "1"), "64 levels"),
        ("1e400".to_string(), "64-bit float"),
        ("-1e400".to_string(), "64-bit float"),
        (r#"{"price":[1,-1e400]}"#.to_string(), "64-bit float"),
        (json_arrays(65, "1"), "64 levels"),
        (json_objects(65, "1"), "64 levels"),
        (json_arrays(5000, "1"), "64 levels"),
        (r#"["\ud800"]"#.to_string(), "surrogate"),
        (r#"{"\udc00":1}"#.to_string(), "surrogate"),
        (r#""a\ud800b""#.to_string(), "surrogate"),
    ] {
        refused(&b, &mut subs, JSON_WAYS, data.as_bytes(), why, Id::Named).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn msgpack_data_reaches_json_subscribers_as_documented() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    for data in [
        Mp::Map(vec![
            ("user".into(), "a".into()),
            (
                "n".into(),
                Mp::Array(vec![1.into(), (-2).into(), 2.5.into(), true.into(), Mp::Nil]),
            ),
        ]),
        // bin and ext become base64 strings (ext: its data, the type is dropped).
        Mp::Map(vec![
            ("k".into(), Mp::Binary(vec![1, 2, 3])),
            ("e".into(), Mp::Ext(5, vec![1, 2])),
            ("t".into(), Mp::Ext(-1, vec![0, 0, 0, 1])),
        ]),
        // NaN and infinities become null; a 32-bit float the same number as a 64-bit one.
        Mp::Array(vec![
            Mp::F64(f64::NAN),
            Mp::F64(f64::INFINITY),
            Mp::F64(f64::NEG_INFINITY),
            Mp::F32(f32::NAN),
            Mp::F32(0.1),
            Mp::F64(0.1),
            Mp::F64(-0.0),
        ]),
        // Non-string keys become their JSON text.
        Mp::Map(vec![
            (1.into(), "int".into()),
            ((-1).into(), "neg".into()),
            (true.into(), "bool".into()),
            (Mp::Nil, "nil".into()),
            (1.5.into(), "float".into()),
            (Mp::Array(vec![1.into(), "x".into()]), "array".into()),
            (Mp::Map(vec![("m".into(), 1.into())]), "map".into()),
            (Mp::Binary(vec![1]), "bin".into()),
        ]),
        Mp::Array(vec![u64::MAX.into(), i64::MIN.into()]),
        rmpv::decode::read_value(&mut &msgpack_arrays(64, "deep".into())[..]).unwrap(),
        Mp::Binary(vec![0, 255]),
        "h\u{e9}".into(),
    ] {
        msgpack_arrives_equal(&b, &mut subs, &data).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn msgpack_maps_keep_their_key_order_and_the_last_of_a_repeated_key() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    // `7` and "7" are one key in JSON.
    let data = Mp::Map(vec![
        ("b".into(), 1.into()),
        ("a".into(), 2.into()),
        ("b".into(), 3.into()),
        (7.into(), "x".into()),
        ("7".into(), "y".into()),
    ]);
    for text in msgpack_arrives_equal(&b, &mut subs, &data).await {
        assert_eq!(text, r#"{"b":3,"a":2,"7":"y"}"#);
    }
    b.stop().await;
}

#[tokio::test]
async fn msgpack_data_json_cannot_carry_is_refused_at_publish() {
    let b = spawn_broker().await;
    let mut subs = Subscribers::new(&b).await;
    let mut nested_str = vec![0x92];
    nested_str.extend(encode(&"ok".into()));
    nested_str.extend(raw_str(&[0xff, 0xfe]));
    let mut bad_key = vec![0x81];
    bad_key.extend(raw_str(&[0xc3, 0x28]));
    bad_key.push(0x01);
    let mut bad_key_inside_a_key = vec![0x81, 0x91];
    bad_key_inside_a_key.extend(raw_str(&[0xe2, 0x82]));
    bad_key_inside_a_key.push(0x01);
    for (data, why, id) in [
        (msgpack_arrays(65, 1.into()), "64 levels", Id::Named),
        (msgpack_arrays(65, "deep".into()), "64 levels", Id::Named),
        (msgpack_arrays(128, 1.into()), "64 levels", Id::Named),
        (msgpack_arrays(5000, 1.into()), "64 levels", Id::Unreadable),
        (raw_str(&[0xff]), "UTF-8", Id::Named),
        (nested_str, "UTF-8", Id::Named),
        (bad_key, "UTF-8", Id::Named),
        (bad_key_inside_a_key, "UTF-8", Id::Named),
    ] {
        refused(&b, &mut subs, MSGPACK_WAYS, &data, why, id).await;
    }
    b.stop().await;
}

thread_local! {
    /// Allocations made by this thread so far.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread.
struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; counting touches
// only a const-initialised thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn checking_typical_json_data_allocates_only_its_copy() {
    let data =
        r#"{"user":"alice","room":"chat.room1","text":"hello there","ts":1763768000123,"p":[189.21,-3,true,null]}"#;
    let before = ALLOCATIONS.with(Cell::get);
    let payload = json::payload(data);
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert!(payload.is_ok());
    assert_eq!(allocations, 1, "the payload's own bytes, and nothing for the check");
}
