//! Per-connection guards the WebSocket reader waits on or checks: the token
//! expiry, and how many rate-limited publishes in a row close a connection.
//! (The publish budget itself is the publish path's: `crate::publish`.)

/// A connection's token expiry, kept in its row of the connection table.
pub use crate::connections::Expiry;

/// Rate-limit refusals in a row after which the connection is closed (1008).
pub const MAX_RATE_LIMITED_IN_A_ROW: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn expiry_waits_and_a_refresh_moves_it() {
        let e = std::sync::Arc::new(Expiry::default());
        let now = crate::clock::now_secs();
        e.set(Some(now + 3600));
        let waiting = tokio::time::timeout(Duration::from_millis(50), e.expired()).await;
        assert!(waiting.is_err());
        e.set(Some(now - 1));
        tokio::time::timeout(Duration::from_secs(1), e.expired()).await.unwrap();
    }
}
