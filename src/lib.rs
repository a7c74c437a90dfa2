//! fanout: a WebSocket pub/sub broker.
