//! The crate's error enums, one per layer, each saying what was wrong and
//! what to do about it.
//!
//! Client-facing errors carry an [`ErrorCode`]: the `code` field of the
//! protocol's `error` reply (see `docs/protocol.md`).

use std::fmt;

/// The `code` of an `error` reply, as listed in the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed: not JSON/MessagePack, a missing or mistyped field, an unknown op.
    BadRequest,
    /// A topic name or pattern breaks the naming rules.
    BadTopic,
    /// The client has not authenticated.
    Unauthorized,
    /// The client may not do this (for example publish to a `$` topic).
    Forbidden,
    /// A message is over the size limit.
    TooLarge,
    /// The client publishes faster than allowed.
    RateLimited,
    /// The connection holds the maximum number of subscriptions.
    TooManySubscriptions,
    /// The broker holds `limits.max_topics` topics; no new one can be made.
    TooManyTopics,
    /// The thing asked for does not exist (for example unsubscribing what was never subscribed).
    NotFound,
    /// The broker failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// Every code, so the metrics can show each one at 0 before it first happens.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::BadTopic,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::TooManySubscriptions,
        ErrorCode::TooManyTopics,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that matches this code on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadTopic => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::TooManySubscriptions => 429,
            ErrorCode::Internal => 500,
            ErrorCode::TooManyTopics => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic name or subscription pattern that breaks the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name is empty.
    #[error("topic is empty; use dot-separated tokens such as `chat.room1`")]
    Empty,
    /// The name is longer than 255 bytes.
    #[error("topic is {0} bytes long; the limit is 255")]
    TooLong(usize),
    /// A token between dots is empty.
    #[error("topic `{0}` has an empty token; tokens are separated by single dots")]
    EmptyToken(String),
    /// A token holds a character outside `[A-Za-z0-9_-:@]`.
    #[error("topic `{0}` has the character {1:?}; tokens may hold only A-Z a-z 0-9 _ - : @")]
    BadChar(String, char),
    /// A wildcard is used where only an exact topic is allowed.
    #[error("`{0}` is a pattern; publish needs an exact topic (no `*` or `>`)")]
    Wildcard(String),
    /// `>` is not the last token of a pattern.
    #[error("pattern `{0}` has `>` before its last token; `>` may only end a pattern")]
    TailNotLast(String),
}

/// A client request that cannot be carried out, answered with an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// A human-readable explanation naming the problem.
    pub message: String,
}

impl RequestError {
    /// A request error with the given code and explanation.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<TopicError> for RequestError {
    fn from(e: TopicError) -> Self {
        RequestError::new(ErrorCode::BadTopic, e.to_string())
    }
}

/// A client message that could not be decoded, with the request id when one was readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeError {
    /// The request id, if the message got far enough to carry one.
    pub id: Option<u64>,
    /// What was wrong.
    pub error: RequestError,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags could not be read or parsed.
    #[error("{0}")]
    Load(String),
    /// A key holds a value outside what it allows.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The dotted key, for example `queue.policy`.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

impl ConfigError {
    /// An invalid value for `key`.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A metric could not be registered (a name clash in the registry passed in).
#[derive(Debug, thiserror::Error)]
#[error("cannot register the broker's metrics: {0}; pass a registry that does not already hold fanout_* metrics")]
pub struct MetricsError(#[from] prometheus::Error);

/// Why a broker could not be made from its settings.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key file or certificate the settings name cannot be used (the message names the key).
    #[error(transparent)]
    Credentials(#[from] ConfigError),
    /// The metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The broker could not be made from the settings.
    #[error("{0}")]
    Start(#[from] StartError),
    /// Binding or accepting on the listen address failed.
    #[error("listener error: {0}")]
    Io(#[from] std::io::Error),
    /// The separate metrics address could not be bound.
    #[error("cannot listen on {addr} (metrics.listen): {source}; pick a free port, or set metrics.listen = \"\" to serve /metrics on server.listen")]
    MetricsListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}
