//! The HTTP API's publish side: one message (`POST /api/publish/{topic}`) or a
//! batch (`POST /api/publish`). The read side is in `topics_api`.
//!
//! The body's `Content-Type` says what the data is: `application/json`,
//! `application/msgpack`, `text/plain` (a string) or
//! `application/octet-stream` (bytes).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{header, Request, Response, StatusCode};
use rmpv::ValueRef;
use serde_json::value::RawValue;

use super::{error_response, json_response, Body};
use crate::auth::Grants;
use crate::error::{ErrorCode, RequestError};
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::{json, msgpack, Payload};
use crate::publish::{BatchItem, PublishBudget, Source};
use crate::registry::Published;

/// The kinds of body a publish accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Msgpack,
    Text,
    Binary,
}

fn body_kind<B>(req: &Request<B>) -> Result<BodyKind, RequestError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => Ok(BodyKind::Msgpack),
        "text/plain" => Ok(BodyKind::Text),
        "application/octet-stream" => Ok(BodyKind::Binary),
        other => Err(RequestError::bad_request(format!(
            "Content-Type `{other}` is not supported; use application/json, application/msgpack, text/plain or application/octet-stream"
        ))),
    }
}

/// Reads the body, refusing more than `limit` bytes.
async fn read_body(req: Request<hyper::body::Incoming>, limit: usize) -> Result<Bytes, RequestError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("body over {limit} bytes (limits.max_message_bytes)"),
        )),
        Err(e) => Err(RequestError::bad_request(format!("could not read the body: {e}"))),
    }
}

/// Turns a body into a payload, checking it is what its type says; JSON and
/// MessagePack data is checked like a `/ws` publish's `data`, in one pass.
fn payload(kind: BodyKind, body: Bytes) -> Result<Payload, RequestError> {
    match kind {
        BodyKind::Json => {
            let text = std::str::from_utf8(&body).map_err(|_| RequestError::bad_request("JSON body is not UTF-8"))?;
            Ok(json::payload(text)?)
        }
        BodyKind::Msgpack => Ok(msgpack::body_payload(&body)?),
        BodyKind::Text => match std::str::from_utf8(&body) {
            Ok(_) => Ok(Payload::Text(body)),
            Err(_) => Err(RequestError::bad_request("text/plain body is not valid UTF-8")),
        },
        BodyKind::Binary => Ok(Payload::Binary(body)),
    }
}

fn published_json(topic: &str, p: Published) -> serde_json::Value {
    let mut answer = serde_json::json!({ "topic": topic, "seq": p.seq, "subscribers": p.subscribers });
    if p.duplicate {
        answer["duplicate"] = serde_json::Value::Bool(true);
    }
    answer
}

/// The request's `Idempotency-Key` header, if it has one.
fn idempotency_key<B>(req: &Request<B>) -> Result<Option<String>, RequestError> {
    req.headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| RequestError::bad_request("Idempotency-Key is not visible ASCII text"))
        })
        .transpose()
}

fn error_json(e: &RequestError) -> serde_json::Value {
    serde_json::json!({ "code": e.code.as_str(), "message": e.message })
}

fn count_received(hub: &Hub, body: &[u8]) {
    if let Some(m) = &hub.metrics {
        m.bytes_received.inc_by(body.len() as u64);
    }
}

/// What the request's credential (`Authorization: Bearer`, `X-Api-Key`, `?token=`) allows;
/// a bad token is a 401 naming what failed.
pub fn grants<B>(hub: &Hub, req: &Request<B>) -> Result<Grants, RequestError> {
    hub.auth().from_request(req.headers(), req.uri().query()).map_err(|e| {
        hub.count_auth_failure();
        e.into()
    })
}

/// Counts a refused request, then answers it.
fn refused(hub: &Hub, e: &RequestError) -> Response<Body> {
    hub.count_protocol_error(e.code.as_str());
    request_error(e)
}

/// The error response for `e`: its status and a JSON body naming the problem.
pub fn request_error(e: &RequestError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_response(status, e.code.as_str(), &e.message)
}

/// An HTTP request as a publisher: its credential's grants, its connection's budget.
fn source<'a>(grants: &'a Grants, budget: &'a PublishBudget) -> Source<'a> {
    Source::sessionless(grants, budget, Transport::Http)
}

/// `POST /api/publish/{topic}`.
pub async fn publish(
    hub: &Hub,
    req: Request<hyper::body::Incoming>,
    topic: &str,
    budget: &PublishBudget,
) -> Response<Body> {
    let result = async {
        let grants = grants(hub, &req)?;
        let kind = body_kind(&req)?;
        let key = idempotency_key(&req)?;
        let body = read_body(req, hub.settings().limits.max_message_bytes).await?;
        count_received(hub, &body);
        let payload = payload(kind, body)?;
        hub.publisher
            .publish(source(&grants, budget), topic, payload, key.as_deref())
            .await
    }
    .await;
    match result {
        Ok(p) => json_response(StatusCode::OK, published_json(topic, p).to_string().into_bytes()),
        Err(e) => refused(hub, &e),
    }
}

/// `POST /api/publish`: a JSON or MessagePack array of `{topic, data}`; one answer per item.
pub async fn publish_batch(hub: &Hub, req: Request<hyper::body::Incoming>, budget: &PublishBudget) -> Response<Body> {
    let result = async {
        let grants = grants(hub, &req)?;
        let kind = body_kind(&req)?;
        // A batch may carry many messages: allow a generous multiple of one message's limit.
        let limit = hub.settings().limits.max_message_bytes.saturating_mul(16);
        let body = read_body(req, limit).await?;
        count_received(hub, &body);
        let items = match kind {
            BodyKind::Json => batch_json(&body)?,
            BodyKind::Msgpack => batch_msgpack(&body)?,
            _ => {
                return Err(RequestError::bad_request(
                    "a batch body must be application/json or application/msgpack: an array of {topic, data}",
                ))
            }
        };
        let answers = hub.publisher.publish_batch(source(&grants, budget), items).await;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                Ok((topic, p)) => published_json(&topic, p),
                Err(e) => serde_json::json!({ "error": error_json(&e) }),
            })
            .collect())
    }
    .await;
    match result {
        Ok(items) => json_response(StatusCode::OK, serde_json::Value::Array(items).to_string().into_bytes()),
        Err(e) => refused(hub, &e),
    }
}

/// One batch item, read, or what is wrong with it.
type ReadItem = Result<BatchItem, RequestError>;

fn batch_json(body: &[u8]) -> Result<Vec<ReadItem>, RequestError> {
    #[derive(serde::Deserialize)]
    struct Item<'a> {
        #[serde(borrow)]
        topic: Option<&'a RawValue>,
        /// A present `null` is data like any other, not a missing field.
        #[serde(borrow, default, deserialize_with = "json::present")]
        data: Option<&'a RawValue>,
        #[serde(borrow)]
        idempotency_key: Option<&'a RawValue>,
    }
    let items: Vec<Item<'_>> = serde_json::from_slice(body).map_err(|e| {
        RequestError::bad_request(format!("batch must be a JSON array of {{topic, data}} objects: {e}"))
    })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let one = || -> ReadItem {
                let topic: String = item
                    .topic
                    .and_then(|t| serde_json::from_str(t.get()).ok())
                    .ok_or_else(|| RequestError::bad_request(format!("item {i}: needs a string `topic`")))?;
                let data = item
                    .data
                    .ok_or_else(|| RequestError::bad_request(format!("item {i}: needs a `data` field")))?;
                let payload =
                    json::payload(data.get()).map_err(|e| RequestError::bad_request(format!("item {i}: {e}")))?;
                let idempotency_key = item
                    .idempotency_key
                    .map(|k| serde_json::from_str::<String>(k.get()).map_err(|_| key_not_a_string(i)))
                    .transpose()?;
                Ok(BatchItem {
                    topic,
                    payload,
                    idempotency_key,
                })
            };
            one()
        })
        .collect())
}

fn batch_msgpack(body: &[u8]) -> Result<Vec<ReadItem>, RequestError> {
    // Each item's `data` lies two levels down: in the array, in the item's map.
    let value = msgpack::read_value(body, 2)?;
    let ValueRef::Array(items) = value else {
        return Err(RequestError::bad_request(
            "batch must be a MessagePack array of {topic, data} maps",
        ));
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let one = || -> ReadItem {
                let ValueRef::Map(fields) = item else {
                    return Err(RequestError::bad_request(format!(
                        "item {i}: must be a map of {{topic, data}}"
                    )));
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| matches!(k, ValueRef::String(s) if s.as_str() == Some(name)))
                        .map(|(_, v)| v)
                };
                let topic = match field("topic") {
                    Some(ValueRef::String(s)) => s.as_str().map(str::to_owned),
                    _ => None,
                }
                .ok_or_else(|| RequestError::bad_request(format!("item {i}: needs a string `topic`")))?;
                let data = field("data")
                    .ok_or_else(|| RequestError::bad_request(format!("item {i}: needs a `data` field")))?;
                let payload =
                    msgpack::payload(data).map_err(|e| RequestError::bad_request(format!("item {i}: {e}")))?;
                let idempotency_key = match field("idempotency_key") {
                    None => None,
                    Some(ValueRef::String(s)) => Some(s.as_str().ok_or_else(|| key_not_a_string(i))?.to_owned()),
                    Some(_) => return Err(key_not_a_string(i)),
                };
                Ok(BatchItem {
                    topic,
                    payload,
                    idempotency_key,
                })
            };
            one()
        })
        .collect())
}

fn key_not_a_string(item: usize) -> RequestError {
    RequestError::bad_request(format!("item {item}: `idempotency_key` must be a string"))
}
