//! Property tests over everything that parses client input: the JSON and
//! MessagePack request decoders, topic and pattern parsing, pattern
//! coverage, and token verification. None may panic on any input.

use fanout::auth::Auth;
use fanout::config::{AuthMode, Config};
use fanout::protocol::{decode, Wire};
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
