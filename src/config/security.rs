//! `[auth]`: who may connect, subscribe and publish. The keys are read here;
//! tokens are checked in `crate::auth`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::topic::Filter;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum AuthMode {
    /// Everyone may do everything (the embedded start, trusted networks).
    None,
    /// A JSON Web Token grants a client id and subscribe/publish patterns.
    Jwt,
}

impl TryFrom<String> for AuthMode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "none" => Ok(AuthMode::None),
            "jwt" => Ok(AuthMode::Jwt),
            _ => Err(format!("`{s}` is not an auth mode; use none or jwt")),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none` or `jwt`.
    pub mode: AuthMode,
    /// The HS256 shared secret; empty: HS256 tokens are refused.
    #[serde(default)]
    pub jwt_secret: String,
    /// A PEM public key (RSA for RS256, P-256 for ES256); empty: none.
    #[serde(default)]
    pub jwt_public_key_file: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "super::duration")]
    pub jwt_leeway: Duration,
    /// API keys accepted for HTTP publishing when `mode` is not `none`.
    #[serde(default)]
    pub publish_keys: Vec<String>,
    /// Topics or patterns anyone may subscribe to without a token (public feeds).
    #[serde(default)]
    pub anonymous_subscribe: Vec<String>,
}

impl AuthConfig {
    /// Checks that `mode = "jwt"` has a key and that every pattern parses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mode == AuthMode::Jwt && self.jwt_secret.is_empty() && self.jwt_public_key_file.is_empty() {
            return Err(ConfigError::invalid(
                "auth.mode",
                "jwt needs auth.jwt_secret (HS256) or auth.jwt_public_key_file (RS256/ES256); set one",
            ));
        }
        if self.jwt_leeway > Duration::from_secs(600) {
            return Err(ConfigError::invalid(
                "auth.jwt_leeway",
                "is over the 10m maximum: expired tokens would stay valid too long",
            ));
        }
        if self.publish_keys.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                "auth.publish_keys",
                "holds an empty key; remove it",
            ));
        }
        for (i, p) in self.anonymous_subscribe.iter().enumerate() {
            Filter::parse(p)
                .map_err(|e| ConfigError::invalid(format!("auth.anonymous_subscribe[{i}]"), e.to_string()))?;
        }
        Ok(())
    }
}

/// `[tls]`: serve `wss://` and `https://` instead of plain text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; empty: no TLS.
    #[serde(default)]
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    #[serde(default)]
    pub key_file: String,
}

impl TlsConfig {
    /// Checks that both files are named, or neither (the files are read by `crate::tls`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, true) => Err(ConfigError::invalid(
                "tls.key_file",
                "is empty but tls.cert_file is set; set both or neither",
            )),
            (true, false) => Err(ConfigError::invalid(
                "tls.cert_file",
                "is empty but tls.key_file is set; set both or neither",
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `origin` is one of `allowed` (exact, or `*.example.com` for any subdomain).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    allowed.iter().any(|a| {
        if a == origin {
            return true;
        }
        match a.split_once("*.") {
            // `https://*.example.com` must match the scheme too; `*.example.com` any scheme.
            Some((scheme, domain)) => {
                let rest = if scheme.is_empty() {
                    origin.split_once("://").map_or(origin, |(_, host)| host)
                } else {
                    match origin.strip_prefix(scheme) {
                        Some(rest) => rest,
                        None => return false,
                    }
                };
                rest.strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1 && !sub.contains('/'))
            }
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let allowed = vec![
            "https://app.example.org".to_string(),
            "https://*.example.com".to_string(),
        ];
        assert!(origin_allowed(&allowed, "https://app.example.org"));
        assert!(origin_allowed(&allowed, "https://a.example.com"));
        assert!(origin_allowed(&allowed, "https://a.b.example.com"));
        assert!(!origin_allowed(&allowed, "https://example.com"));
        assert!(!origin_allowed(&allowed, "https://evil.com"));
        assert!(!origin_allowed(&allowed, "http://a.example.com"));
        assert!(!origin_allowed(&allowed, "https://evilexample.com"));
        assert!(origin_allowed(&[], "https://anything"));
        let bare = vec!["*.example.com".to_string()];
        assert!(origin_allowed(&bare, "https://a.example.com"));
    }
}
