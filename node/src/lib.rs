//! raftlab `node`: the runtime that embeds the Raft core: tokio, QUIC with mutual TLS,
//! durable storage, and the `cluster.toml` configuration.

pub mod certs;
pub mod config;
pub mod protocol;
pub mod revocation;
pub mod runtime;
pub mod storage;
pub mod transport;
