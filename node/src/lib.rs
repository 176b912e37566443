//! raftlab `node`: the runtime that embeds the Raft core: tokio, QUIC with mutual TLS,
//! durable storage, and the `cluster.toml` configuration.

pub mod config;
pub mod protocol;
pub mod transport;
