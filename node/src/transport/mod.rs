//! Node-to-node and client-to-node transport: QUIC (quinn) with mutual TLS, and framing.

pub mod framing;
