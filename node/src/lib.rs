//! raftlab `node`: the runtime that embeds the Raft core.
//!
//! Built by issue # tokio, QUIC with mutual TLS, durable storage, config file:4; see `../shared/ARCHITECTURE.md` for where it is heading.
