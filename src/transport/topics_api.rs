//! The read side of the HTTP API: `GET /api/topics` (paged, filtered),
//! `GET /api/topics/{topic}`, `.../history?since=N&limit=M` and
//! `.../presence`. JSON by default, MessagePack with `Accept: application/msgpack`.
//!
//! Messages in answers are the same objects a WebSocket client receives,
//! taken from each message's cached frame rather than encoded again.

use std::io::Write;
use std::sync::Arc;

use hyper::{header, HeaderMap, Request, Response, StatusCode};
use serde_json::json;

use super::http_api::request_error;
use super::{json_response, Body};
use crate::error::RequestError;
use crate::hub::Hub;
use crate::protocol::frame::payload_of;
use crate::protocol::{Message, Wire};
use crate::registry::{TopicInfo, TopicQuery};
use crate::topic::{Filter, TopicName};

/// How an answer is encoded, from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (the default).
    Json,
    /// `application/msgpack`.
    Msgpack,
}

impl Format {
    /// MessagePack if `Accept` asks for it, else JSON.
    pub fn of(headers: &HeaderMap) -> Format {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.contains("msgpack") {
            Format::Msgpack
        } else {
            Format::Json
        }
    }

    fn wire(self) -> Wire {
        match self {
            Format::Json => Wire::Json,
            Format::Msgpack => Wire::Msgpack,
        }
    }
}

/// The query string's pairs, decoded.
pub fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The last value of query parameter `name`.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parses parameter `name` as a non-negative integer.
pub fn u64_param(pairs: &[(String, String)], name: &str) -> Result<Option<u64>, RequestError> {
    param(pairs, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| RequestError::bad_request(format!("`{name}` must be a non-negative integer, not `{v}`")))
        })
        .transpose()
}

/// Parses `limit`: 1 to `http.max_limit`, defaulting to `default`.
pub fn limit_param(pairs: &[(String, String)], default: usize, max: usize) -> Result<usize, RequestError> {
    match u64_param(pairs, "limit")? {
        None => Ok(default.min(max)),
        Some(0) => Err(RequestError::bad_request("`limit` must be at least 1")),
        Some(n) if n > max as u64 => Err(RequestError::bad_request(format!(
            "`limit` {n} is over the maximum {max} (http.max_limit); page with a smaller limit"
        ))),
        Some(n) => Ok(n as usize),
    }
}

/// A structured answer in the asked format.
pub fn value_response(format: Format, value: &serde_json::Value) -> Response<Body> {
    let body = match format {
        Format::Json => value.to_string().into_bytes(),
        Format::Msgpack => rmp_serde::to_vec_named(value).unwrap_or_default(),
    };
    typed_response(format, body)
}

fn typed_response(format: Format, body: Vec<u8>) -> Response<Body> {
    let mut r = json_response(StatusCode::OK, body);
    if format == Format::Msgpack {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/msgpack"),
        );
    }
    r
}

/// `{"topic","seq","messages":[..],"gap":{"from","to"}}` (no `gap` when none is missing).
/// `seq` is where the client stands after reading the answer: pass it as `since` next.
pub fn messages_response(
    format: Format,
    topic: &TopicName,
    seq: u64,
    gap: Option<(u64, u64)>,
    messages: &[Arc<Message>],
) -> Response<Body> {
    let wire = format.wire();
    let mut out = Vec::with_capacity(64 + messages.len() * 64);
    // Writes into a Vec cannot fail.
    match format {
        Format::Json => {
            let _ = write!(out, "{{\"topic\":\"{topic}\",\"seq\":{seq},\"messages\":[");
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(payload_of(m.frame(wire)));
            }
            out.push(b']');
            if let Some((from, to)) = gap {
                let _ = write!(out, ",\"gap\":{{\"from\":{from},\"to\":{to}}}");
            }
            out.push(b'}');
        }
        Format::Msgpack => {
            let _ = rmp::encode::write_map_len(&mut out, 3 + gap.is_some() as u32);
            let _ = rmp::encode::write_str(&mut out, "topic");
            let _ = rmp::encode::write_str(&mut out, topic.as_str());
            let _ = rmp::encode::write_str(&mut out, "seq");
            let _ = rmp::encode::write_uint(&mut out, seq);
            let _ = rmp::encode::write_str(&mut out, "messages");
            let _ = rmp::encode::write_array_len(&mut out, messages.len() as u32);
            for m in messages {
                out.extend_from_slice(payload_of(m.frame(wire)));
            }
            if let Some((from, to)) = gap {
                let _ = rmp::encode::write_str(&mut out, "gap");
                let _ = rmp::encode::write_map_len(&mut out, 2);
                let _ = rmp::encode::write_str(&mut out, "from");
                let _ = rmp::encode::write_uint(&mut out, from);
                let _ = rmp::encode::write_str(&mut out, "to");
                let _ = rmp::encode::write_uint(&mut out, to);
            }
        }
    }
    typed_response(format, out)
}

fn info_json(info: &TopicInfo) -> serde_json::Value {
    let mut v = json!({
        "topic": info.name.as_str(),
        "subscribers": info.subscribers,
        "seq": info.seq,
        "retained": info.retained,
        "rate": info.rate,
    });
    if let Some(members) = info.members {
        v["members"] = json!(members);
    }
    v
}

/// Parses `topic` and checks the request may read it: what it reveals (messages,
/// members, counts) is what a subscription to it would (401/403 otherwise).
fn readable_topic<B>(hub: &Hub, req: &Request<B>, topic: &str) -> Result<TopicName, RequestError> {
    let name = TopicName::parse(topic)?;
    let grants = super::http_api::grants(hub, req)?;
    if let Err(e) = grants.check_subscribe(&crate::topic::Filter::Exact(name.clone())) {
        hub.count_auth_failure();
        return Err(e);
    }
    Ok(name)
}

/// `GET /api/topics?prefix=&pattern=&after=&limit=`: topics in name order; `next` is the
/// `after` of the next page (`null` on the last). With auth on, only topics the caller
/// may subscribe to are listed (a page may then hold fewer than `limit`).
pub fn list<B>(hub: &Hub, req: &Request<B>) -> Response<Body> {
    let result = || -> Result<Response<Body>, RequestError> {
        let grants = super::http_api::grants(hub, req)?;
        let pairs = query_pairs(req);
        let query = TopicQuery {
            prefix: param(&pairs, "prefix").map(str::to_owned),
            filter: param(&pairs, "pattern").map(Filter::parse).transpose()?,
            after: param(&pairs, "after").map(str::to_owned),
            limit: limit_param(&pairs, 100, hub.settings().http.max_limit)?,
        };
        let (topics, next) = hub.registry.list_topics(&query);
        let topics: Vec<_> = topics
            .iter()
            .filter(|t| grants.can_subscribe(&Filter::Exact(t.name.clone())))
            .map(info_json)
            .collect();
        Ok(value_response(
            Format::of(req.headers()),
            &json!({ "topics": topics, "next": next }),
        ))
    };
    result().unwrap_or_else(|e| request_error(&e))
}

/// `GET /api/topics/{topic}`: subscribers, last seq, retained count, publish rate
/// (and members, with presence).
pub fn info<B>(hub: &Hub, req: &Request<B>, topic: &str) -> Response<Body> {
    let result = || -> Result<Response<Body>, RequestError> {
        let name = readable_topic(hub, req, topic)?;
        let info = hub.registry.topic_info(&name).ok_or_else(|| {
            RequestError::new(
                crate::error::ErrorCode::NotFound,
                format!("topic `{name}` has no subscribers and nothing retained"),
            )
        })?;
        Ok(value_response(Format::of(req.headers()), &info_json(&info)))
    };
    result().unwrap_or_else(|e| request_error(&e))
}

/// `GET /api/topics/{topic}/history?since=N&limit=M`: retained messages after N
/// (default 0), oldest first, with a `gap` for what is gone.
pub async fn history<B>(hub: &Hub, req: &Request<B>, topic: &str) -> Response<Body> {
    let result = async {
        let name = readable_topic(hub, req, topic)?;
        let pairs = query_pairs(req);
        let since = u64_param(&pairs, "since")?.unwrap_or(0);
        let max = hub.settings().http.max_limit;
        let limit = limit_param(&pairs, max, max)?;
        // In cluster mode the shared history comes from the cluster, whichever node answers.
        let _held = match &hub.cluster {
            Some(c) => Some(c.hold(Filter::Exact(name.clone())).await?),
            None => None,
        };
        let page = hub.registry.history(&name, since, limit)?;
        let seq = page.messages.last().map_or(page.seq, |m| m.seq);
        Ok(messages_response(
            Format::of(req.headers()),
            &name,
            seq,
            page.gap,
            &page.messages,
        ))
    };
    result.await.unwrap_or_else(|e: RequestError| request_error(&e))
}

/// `GET /api/topics/{topic}/presence`: member count and up to `presence.max_members_listed` ids.
pub fn presence<B>(hub: &Hub, req: &Request<B>, topic: &str) -> Response<Body> {
    let result = || -> Result<Response<Body>, RequestError> {
        let name = readable_topic(hub, req, topic)?;
        let p = hub
            .registry
            .presence(&name, hub.settings().presence.max_members_listed)?;
        let members: Vec<&str> = p.members.iter().map(|m| &**m).collect();
        Ok(value_response(
            Format::of(req.headers()),
            &json!({ "topic": name.as_str(), "count": p.count, "members": members }),
        ))
    };
    result().unwrap_or_else(|e| request_error(&e))
}
