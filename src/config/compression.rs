//! `[compression]`: permessage-deflate on WebSockets (RFC 7692) and gzip on
//! HTTP answers with bodies.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// `[compression]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Accept permessage-deflate offers and gzip HTTP answers for clients that ask.
    pub enabled: bool,
    /// Messages (and HTTP bodies) smaller than this go uncompressed.
    pub min_bytes: usize,
    /// The deflate level, 1 (fastest) to 9 (smallest).
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            min_bytes: 256,
            level: 6,
        }
    }
}

impl CompressionConfig {
    /// Checks the level.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=9).contains(&self.level) {
            return Err(ConfigError::invalid(
                "compression.level",
                format!(
                    "{} is not a deflate level; use 1 (fastest) to 9 (smallest), or enabled = false for none",
                    self.level
                ),
            ));
        }
        Ok(())
    }

    /// What a topic's messages get: `None` when compression is off for it.
    pub fn for_topic(&self, rule_allows: bool) -> Option<Deflate> {
        (self.enabled && rule_allows).then_some(Deflate {
            level: self.level as u8,
            min_bytes: self.min_bytes.min(u32::MAX as usize) as u32,
        })
    }
}

/// How one topic's messages are compressed for the subscribers that negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// The deflate level.
    pub level: u8,
    /// Frames with a smaller payload go uncompressed.
    pub min_bytes: u32,
}
