//! Operator endpoints: `GET /metrics` (Prometheus text) and
//! `GET /api/connections?sort=queue&limit=N` (who is slow).

use hyper::{Response, StatusCode};

use super::{error_response, json_response, Body};
use crate::connections::SortBy;
use crate::hub::Hub;

/// Rows `GET /api/connections` returns without `limit`.
const DEFAULT_LIMIT: usize = 20;

/// The most rows one request may ask for.
const MAX_LIMIT: usize = 10_000;

/// `GET /metrics`: every metric in the Prometheus text format; 404 with metrics off.
pub fn metrics(hub: &Hub) -> Response<Body> {
    let Some(m) = &hub.metrics else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are off; set [metrics] enabled = true",
        );
    };
    // Gauges that are cheaper to read at scrape time than to keep current.
    m.topics.set(hub.registry.topic_count() as i64);
    let mut r = Response::new(super::full(m.render()));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /api/connections?sort=queue|dropped|id&limit=N`: the open connections,
/// deepest queue first by default. With auth on it lists remote addresses, so it
/// needs a publish key (the operator's credential).
pub fn connections<B>(hub: &Hub, req: &hyper::Request<B>) -> Response<Body> {
    match super::http_api::grants(hub, req) {
        Ok(g) if g.is_operator() => {}
        Ok(_) => {
            hub.count_auth_failure();
            return error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                "listing connections needs a publish key (Authorization: Bearer <key>) while auth is on",
            );
        }
        Err(e) => return super::http_api::request_error(&e),
    }
    let query = req.uri().query();
    let (mut sort, mut limit) = (SortBy::Queue, DEFAULT_LIMIT);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "sort" => {
                sort = match &*v {
                    "queue" => SortBy::Queue,
                    "dropped" => SortBy::Dropped,
                    "id" => SortBy::Id,
                    other => {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            &format!("sort `{other}` is unknown; use sort=queue, sort=dropped or sort=id"),
                        )
                    }
                }
            }
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("limit `{v}` must be a number from 1 to {MAX_LIMIT}"),
                    )
                }
            },
            _ => {}
        }
    }
    let body = serde_json::json!({
        "total": hub.connections.len(),
        "connections": hub.connections.top(sort, limit),
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}
