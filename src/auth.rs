//! Who a client is and what it may do: JWT verification (HS256, RS256,
//! ES256), API keys for HTTP publishers, and the topic grants both carry.
//!
//! Errors say what failed (expired, bad signature, wrong algorithm) and never
//! hold the token itself, so they are safe to send back and to log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthMode, Config};
use crate::error::{ConfigError, ErrorCode, RequestError};
use crate::topic::{Filter, TopicName};

/// Why a token was refused. The texts never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired; get a fresh token and send it with {{\"op\":\"auth\"}}")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf is in the future); check the issuer's clock")]
    NotYetValid,
    /// The signature does not verify with the configured key.
    #[error("token signature does not verify with the configured key")]
    BadSignature,
    /// The header names an algorithm the broker has no key for (or `none`).
    #[error("token algorithm is not accepted; use HS256, RS256 or ES256 as configured")]
    WrongAlgorithm,
    /// Not three base64url parts of JSON.
    #[error("token is malformed: not a signed JWT")]
    Malformed,
    /// The claims are missing or of the wrong type.
    #[error("token claims are invalid: {0}")]
    BadClaims(String),
}

impl From<AuthError> for RequestError {
    fn from(e: AuthError) -> Self {
        RequestError::new(ErrorCode::Unauthorized, e.to_string())
    }
}

/// The claims the broker reads.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The client id (presence names the client with it).
    sub: Option<String>,
    /// Expiry, seconds since the epoch.
    exp: u64,
    /// Patterns the client may subscribe to.
    #[serde(default)]
    subscribe: Vec<String>,
    /// Patterns the client may publish to.
    #[serde(default)]
    publish: Vec<String>,
}

/// What one client may do.
#[derive(Debug, Clone)]
pub struct Grants {
    /// Everything allowed (`mode = "none"`, or a publish key for HTTP).
    all: bool,
    /// From a verified token (not anonymous).
    pub authenticated: bool,
    /// The token's `sub`.
    pub client: Option<String>,
    /// When the token expires, seconds since the epoch.
    pub expires_at: Option<u64>,
    subscribe: Vec<Filter>,
    publish: Vec<Filter>,
}

impl Grants {
    /// Everything allowed.
    pub fn all() -> Self {
        Grants {
            all: true,
            authenticated: false,
            client: None,
            expires_at: None,
            subscribe: Vec::new(),
            publish: Vec::new(),
        }
    }

    /// [`Grants::all`], shared: every connection of a broker without auth holds these, and
    /// a reference is smaller than the grants.
    pub fn all_shared() -> Arc<Grants> {
        static ALL: std::sync::OnceLock<Arc<Grants>> = std::sync::OnceLock::new();
        Arc::clone(ALL.get_or_init(|| Arc::new(Grants::all())))
    }

    /// Whether these grants allow everything: `auth.mode = "none"`, or a publish key.
    /// Operator endpoints (`/api/connections`) require this when auth is on.
    pub fn is_operator(&self) -> bool {
        self.all
    }

    /// Whether `filter` (a topic or pattern) may be subscribed: every topic it can match must be granted.
    pub fn can_subscribe(&self, filter: &Filter) -> bool {
        self.all || self.subscribe.iter().any(|g| g.covers(filter))
    }

    /// Whether `topic` may be published to.
    pub fn can_publish(&self, topic: &TopicName) -> bool {
        self.all || self.publish.iter().any(|g| g.matches(topic))
    }

    /// Checks a subscription; the error is `forbidden`, or `unauthorized` with no token yet.
    pub fn check_subscribe(&self, filter: &Filter) -> Result<(), RequestError> {
        if self.can_subscribe(filter) {
            return Ok(());
        }
        Err(self.refusal(format!("subscribing to `{}`", filter.as_str())))
    }

    /// Checks a publish; the error is `forbidden`, or `unauthorized` with no token yet.
    pub fn check_publish(&self, topic: &TopicName) -> Result<(), RequestError> {
        if self.can_publish(topic) {
            return Ok(());
        }
        Err(self.refusal(format!("publishing to `{topic}`")))
    }

    fn refusal(&self, what: String) -> RequestError {
        if self.authenticated {
            RequestError::new(ErrorCode::Forbidden, format!("{what} is not granted by your token"))
        } else {
            RequestError::new(
                ErrorCode::Unauthorized,
                format!("{what} needs a token; send one with {{\"op\":\"auth\"}}, ?token= or Authorization: Bearer"),
            )
        }
    }
}

/// The verification keys and rules, built from `[auth]`.
pub struct Auth {
    mode: AuthMode,
    /// Keys by algorithm: HS256 from the secret, RS256 or ES256 from the PEM file.
    keys: Vec<(Algorithm, DecodingKey)>,
    leeway_secs: u64,
    publish_keys: HashSet<String>,
    anonymous: Vec<Filter>,
}

impl Auth {
    /// Loads the keys `[auth]` names; errors name the key that is wrong.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let a = &config.auth;
        let mut keys = Vec::new();
        if !a.jwt_secret.is_empty() {
            keys.push((Algorithm::HS256, DecodingKey::from_secret(a.jwt_secret.as_bytes())));
        }
        if !a.jwt_public_key_file.is_empty() {
            let pem = std::fs::read(&a.jwt_public_key_file).map_err(|e| {
                ConfigError::invalid(
                    "auth.jwt_public_key_file",
                    format!("cannot read {}: {e}", a.jwt_public_key_file),
                )
            })?;
            if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((Algorithm::RS256, k));
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                keys.push((Algorithm::ES256, k));
            } else {
                return Err(ConfigError::invalid(
                    "auth.jwt_public_key_file",
                    format!(
                        "{} holds no RSA or EC public key in PEM form (-----BEGIN PUBLIC KEY-----)",
                        a.jwt_public_key_file
                    ),
                ));
            }
        }
        let anonymous = a
            .anonymous_subscribe
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Filter::parse(p)
                    .map_err(|e| ConfigError::invalid(format!("auth.anonymous_subscribe[{i}]"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Auth {
            mode: a.mode,
            keys,
            leeway_secs: a.jwt_leeway.as_secs(),
            publish_keys: a.publish_keys.iter().cloned().collect(),
            anonymous,
        })
    }

    /// Rules that refuse every token (keys that could not be loaded).
    pub fn locked(mode: AuthMode) -> Self {
        Auth {
            mode,
            keys: Vec::new(),
            leeway_secs: 0,
            publish_keys: HashSet::new(),
            anonymous: Vec::new(),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// [`Auth::anonymous`], shared where it is the same for everyone (no auth).
    pub fn anonymous_shared(&self) -> Arc<Grants> {
        match self.mode {
            AuthMode::None => Grants::all_shared(),
            AuthMode::Jwt => Arc::new(self.anonymous()),
        }
    }

    /// What a client without a token may do.
    pub fn anonymous(&self) -> Grants {
        match self.mode {
            AuthMode::None => Grants::all(),
            AuthMode::Jwt => Grants {
                all: false,
                authenticated: false,
                client: None,
                expires_at: None,
                subscribe: self.anonymous.clone(),
                publish: Vec::new(),
            },
        }
    }

    /// Whether `key` is one of `publish_keys`.
    pub fn is_publish_key(&self, key: &str) -> bool {
        self.publish_keys.contains(key)
    }

    /// Verifies a token: signature, algorithm, `exp` and `nbf` (with the leeway), claims.
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` and other names the library does not know fail here.
            ErrorKind::Json(_) | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
            _ => AuthError::Malformed,
        })?;
        let key = self
            .keys
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, k)| k)
            .ok_or(AuthError::WrongAlgorithm)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::MissingRequiredClaim(c) => AuthError::BadClaims(format!("`{c}` is missing")),
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                AuthError::BadClaims("`exp` must be a number, `subscribe`/`publish` lists of strings".into())
            }
            _ => AuthError::Malformed,
        })?;
        let claims = data.claims;
        // RFC 7519: expired once now reaches `exp`; the library still accepts that second,
        // and a connection cut at `exp` must not be able to come straight back with the token.
        if now_secs() >= claims.exp + self.leeway_secs {
            return Err(AuthError::Expired);
        }
        let parse = |list: &[String], what: &str| -> Result<Vec<Filter>, AuthError> {
            list.iter()
                .map(|p| Filter::parse(p).map_err(|e| AuthError::BadClaims(format!("`{what}`: {e}"))))
                .collect()
        };
        Ok(Grants {
            all: false,
            authenticated: true,
            subscribe: parse(&claims.subscribe, "subscribe")?,
            publish: parse(&claims.publish, "publish")?,
            client: claims.sub,
            expires_at: Some(claims.exp),
        })
    }

    /// The grants of an HTTP request from its `Authorization: Bearer` or `X-Api-Key`
    /// header or `?token=`: a publish key grants everything, a token its claims.
    pub fn from_request(&self, headers: &hyper::HeaderMap, query: Option<&str>) -> Result<Grants, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Grants::all());
        }
        let Some(credential) = credential(headers, query) else {
            return Ok(self.anonymous());
        };
        if self.is_publish_key(&credential) {
            return Ok(Grants {
                authenticated: true,
                ..Grants::all()
            });
        }
        self.verify(&credential)
    }

    /// Seconds left before `grants` expire (None: never).
    pub fn seconds_left(&self, grants: &Grants) -> Option<u64> {
        let now = now_secs();
        grants
            .expires_at
            .map(|exp| (exp + self.leeway_secs).saturating_sub(now))
    }
}

/// The credential an HTTP request carries, if any.
pub fn credential(headers: &hyper::HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let api_key = || {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim().to_owned())
    };
    let from_query = || {
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    };
    bearer.or_else(api_key).or_else(from_query).filter(|t| !t.is_empty())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
