//! Node-to-node and client-to-node transport: QUIC (quinn) with mutual TLS (rustls), and
//! framing.
//!
//! ```text
//!                       one quinn Endpoint per node (UDP socket on the node's addr)
//!                ┌──────────────────────────────────────────────────────────────────┐
//!  runtime ──send(to, msgs)──► peers.rs: bounded queue + sender task per peer ──────┼──► peer
//!                │               (dial node-<to>.raftlab, Hello, batched frames)     │
//!                │                                                                  │
//!  runtime ◄─Inbound.peers──── inbound.rs ◄── ALPN raftlab-peer/1, uni stream:      │◄── peer
//!                │               cert must name node-<id>.raftlab for Hello{id}     │
//!  runtime ◄─Inbound.clients── inbound.rs ◄── ALPN raftlab-client/1, bidi stream    │◄── lab
//!    (ClientCall, reply via      per request: cert must name a client identity      │
//!     oneshot)   └──────────────────────────────────────────────────────────────────┘
//!
//!  lab: client.rs ClientConnector ── one connection per node, one bidi stream per call
//! ```
//!
//! - [`framing`]: length + version + postcard frames, size limits, read deadlines,
//!   decoding errors.
//! - `chunks`: a Raft message too large for one frame, cut into chunk frames and put back
//!   together under a bound.
//! - [`tls`]: rustls/quinn configurations and the identity rules.
//! - [`credentials`]: the node's certificate, key, CA and deny-list, reloadable.
//! - `peers`: outbound links (queues, batching, reconnect with backoff).
//! - `inbound`: the accept side (authorization, peer streams, client streams) and what it
//!   delivers to the runtime ([`Inbound`], [`ClientCall`], [`InboundStats`]).
//! - `endpoint`: [`Transport`], what the runtime holds.
//! - `client`: [`ClientConnector`], what the lab uses.
//!
//! Anything malformed (garbage, truncated, oversized or unknown-version frames, a Hello
//! that does not match the certificate) or stalled (a frame not complete within the stream
//! timeout) closes that stream or connection with a `tracing::warn!` naming the reason and
//! the remote address; the node keeps serving. The bounds on what one connection may hold
//! are listed in `inbound`.

mod chunks;
mod client;
pub mod credentials;
mod endpoint;
mod error;
pub mod framing;
mod inbound;
mod peers;
pub mod tls;

pub use client::{CallError, ClientConnector};
pub use endpoint::{Transport, TransportOptions};
pub use error::TransportError;
pub use inbound::{ClientCall, Inbound, InboundStats};
pub use peers::PeerLinkStatus;

use std::sync::Arc;
use tokio::sync::watch;

/// QUIC application close code: normal shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// QUIC application close code: the certificate does not allow what the connection tried
/// (wrong ALPN for it, a Hello claiming another node, not a client certificate). Nothing
/// it sent was acted on.
pub const CLOSE_REFUSED: u32 = 1;
/// QUIC application close / stream error code: a malformed frame.
pub const CLOSE_PROTOCOL: u32 = 2;
/// QUIC application close / stream error code: a frame did not arrive whole within the
/// stream timeout. Nothing of it was acted on.
pub const CLOSE_TIMEOUT: u32 = 3;
/// QUIC application close code: a newer connection from the same peer took this one's
/// place.
pub const CLOSE_REPLACED: u32 = 4;

/// A counter bumped on every observable change of the transport (a link up or down, a
/// refused connection, a bad frame): lets status readers and tests wait for a change
/// instead of sleeping.
#[derive(Clone)]
pub(crate) struct Events(Arc<watch::Sender<u64>>);

impl Events {
    pub(crate) fn new() -> Events {
        Events(Arc::new(watch::channel(0).0))
    }

    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
