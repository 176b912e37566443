//! The accept side: authorizes each connection, then serves peer streams and client calls.
//!
//! After the TLS handshake (the chain to the cluster CA is already verified), a connection
//! is authorized by its ALPN and certificate names ([`tls::authorize`]):
//! - peer (`raftlab-peer/1`): the certificate must name `node-N.raftlab` for some other
//!   member N; each unidirectional stream starts with `Hello { from }`, and `from` must be
//!   one of those N, else the whole connection is closed with [`CLOSE_REFUSED`]. Every
//!   message of every following `Messages` frame must be `from` that peer and addressed to
//!   this node; others are dropped and logged. Accepted messages go to the runtime through a
//!   bounded channel (full: drop + count).
//! - client (`raftlab-client/1`): the certificate must name one client identity
//!   (`client.raftlab` or `client-NAME.raftlab`). A request whose client id is outside
//!   that certificate's namespace, or that comes after the certificate was revoked, is
//!   answered `Refused` without reaching the runtime ([`Credentials::refusal`]). Each
//!   bidirectional stream carries one `Request` frame (at most
//!   [`framing::MAX_REQUEST_FRAME`] bytes), handed to the runtime as a [`ClientCall`];
//!   the `Response` is written back and the stream finished. The runtime owns the request
//!   timeout.
//!
//! A malformed frame closes the peer connection, or the client's stream (the client's
//! other requests carry on), with [`CLOSE_PROTOCOL`] and a warning.

use super::credentials::{Caller, Credentials};
use super::framing::{self, FrameError};
use super::tls::{self, Authorized};
use super::{Events, CLOSE_PROTOCOL, CLOSE_REFUSED};
use crate::protocol::{PeerFrame, Request, Response};
use model::core::{Message, NodeId};
use model::kv::Command;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// A client request for the runtime. Send exactly one [`Response`] on `reply` (dropping it
/// answers `Response::Unknown`: the transport cannot know whether it took effect).
#[derive(Debug)]
pub struct ClientCall {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// What the network delivers to the runtime.
#[derive(Debug)]
pub struct Inbound {
    /// Raft messages from authenticated peers, each checked to come from the peer whose
    /// certificate sent it and to be addressed to this node.
    pub peers: mpsc::Receiver<Message<Command>>,
    /// Client requests, each with its reply path.
    pub clients: mpsc::Receiver<ClientCall>,
}

/// Counters of the accept side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Connections refused: failed handshake (no or foreign certificate), wrong ALPN or
    /// identity, Hello claiming another node.
    pub refused_connections: u64,
    /// Streams or connections closed for a malformed frame.
    pub bad_frames: u64,
    /// Peer messages handed to the runtime.
    pub delivered: u64,
    /// Peer messages dropped because the runtime's queue was full.
    pub dropped: u64,
    /// Peer messages dropped because they were not from the authenticated peer or not for
    /// this node.
    pub rejected: u64,
}

/// State shared by the accept loop and its connection tasks.
pub(crate) struct Shared {
    pub me: NodeId,
    /// The other members of the cluster: who is admitted as a peer.
    peers: RwLock<BTreeSet<NodeId>>,
    pub peer_tx: mpsc::Sender<Message<Command>>,
    pub client_tx: mpsc::Sender<ClientCall>,
    pub events: Events,
    /// The deny-list and the client id namespaces, checked on every client request.
    pub credentials: Arc<Credentials>,
    refused: AtomicU64,
    bad_frames: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    delivered: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        me: NodeId,
        peers: BTreeSet<NodeId>,
        peer_tx: mpsc::Sender<Message<Command>>,
        client_tx: mpsc::Sender<ClientCall>,
        events: Events,
        credentials: Arc<Credentials>,
    ) -> Shared {
        Shared {
            me,
            peers: RwLock::new(peers),
            peer_tx,
            client_tx,
            events,
            credentials,
            refused: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// Replaces the set of admitted peers.
    pub(crate) fn set_peers(&self, peers: BTreeSet<NodeId>) {
        // A poisoned lock only means a reader panicked; the set itself is always whole.
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    fn is_peer(&self, id: NodeId) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub(crate) fn stats(&self) -> InboundStats {
        InboundStats {
            refused_connections: self.refused.load(Ordering::Relaxed),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Closes `conn` as refused, with a warning.
    fn refuse(&self, conn: &quinn::Connection, reason: &str) {
        warn!(remote = %conn.remote_address(), %reason, "refused connection");
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.events.bump();
        conn.close(CLOSE_REFUSED.into(), truncate(reason).as_bytes());
    }

    fn bad_frame(&self) {
        self.bad_frames.fetch_add(1, Ordering::Relaxed);
        self.events.bump();
    }

    /// Hands a peer's batch to the runtime, keeping only messages from `from` to this node.
    fn deliver(&self, from: NodeId, remote: SocketAddr, batch: Vec<Message<Command>>) {
        let total = batch.len();
        if !self.is_peer(from) {
            // Admitted while a member, since removed from the cluster.
            debug!(%remote, peer = from, total, "dropping messages from a node that is no longer a member");
            self.rejected.fetch_add(total as u64, Ordering::Relaxed);
            self.events.bump();
            return;
        }
        let mut rejected = 0;
        let mut dropped = 0;
        for msg in batch {
            if msg.from != from || msg.to != self.me {
                rejected += 1;
                continue;
            }
            match self.peer_tx.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => dropped += 1,
            }
        }
        if rejected > 0 {
            warn!(%remote, peer = from, rejected, total, "dropping messages not from the authenticated peer or not for this node");
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
            self.events.bump();
        }
        if dropped > 0 {
            debug!(
                peer = from,
                dropped, "inbound queue full; dropping peer messages"
            );
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.delivered
            .fetch_add(total as u64 - rejected - dropped, Ordering::Relaxed);
    }
}

/// Accepts connections until the endpoint closes; each connection runs in its own task,
/// aborted with this one.
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    conns.spawn(serve_connection(incoming, shared.clone()));
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    debug!("endpoint closed; accept loop ends");
}

async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            warn!(%remote, reason = %e, "refused connection: TLS handshake failed");
            shared.refused.fetch_add(1, Ordering::Relaxed);
            shared.events.bump();
            return;
        }
    };
    let cert = match tls::remote_cert(&conn) {
        Ok(cert) => cert,
        Err(e) => return shared.refuse(&conn, &e.to_string()),
    };
    let alpn = tls::negotiated_alpn(&conn);
    match tls::authorize(alpn.as_deref(), &cert.names, |id| shared.is_peer(id)) {
        Ok(Authorized::Peer(ids)) => serve_peer(conn, ids, shared).await,
        Ok(Authorized::Client(identity)) => {
            serve_client(conn, Arc::new(Caller { identity, cert }), shared).await
        }
        Err(reason) => shared.refuse(&conn, &reason),
    }
}

async fn serve_peer(conn: quinn::Connection, ids: Vec<NodeId>, shared: Arc<Shared>) {
    // Peers talk on unidirectional streams only.
    conn.set_max_concurrent_bi_streams(0u32.into());
    debug!(remote = %conn.remote_address(), ?ids, "peer connection");
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => match stream {
                Ok(recv) => {
                    streams.spawn(serve_peer_stream(conn.clone(), recv, ids.clone(), shared.clone()));
                }
                Err(e) => {
                    debug!(remote = %conn.remote_address(), reason = %e, "peer connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

async fn serve_peer_stream(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    ids: Vec<NodeId>,
    shared: Arc<Shared>,
) {
    let remote = conn.remote_address();
    let protocol_error = |why: &str| {
        warn!(%remote, reason = %why, "bad frame from peer; closing the connection");
        shared.bad_frame();
        conn.close(CLOSE_PROTOCOL.into(), truncate(why).as_bytes());
    };
    let from = match framing::read_frame::<_, PeerFrame>(&mut recv).await {
        Ok(Some(PeerFrame::Hello { from })) => from,
        Ok(Some(PeerFrame::Messages(_))) => return protocol_error("first frame is not Hello"),
        Ok(None) => return,
        Err(FrameError::Io(e)) if is_connection_loss(&e) => return,
        Err(e) => return protocol_error(&e.to_string()),
    };
    if !ids.contains(&from) {
        let reason = format!(
            "Hello claims node {from} but the certificate names {}",
            ids.iter()
                .map(|id| crate::certs::node_name(*id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return shared.refuse(&conn, &reason);
    }
    info!(%remote, peer = from, "peer stream open");
    loop {
        match framing::read_frame::<_, PeerFrame>(&mut recv).await {
            Ok(Some(PeerFrame::Messages(batch))) => shared.deliver(from, remote, batch),
            Ok(Some(PeerFrame::Hello { .. })) => return protocol_error("a second Hello"),
            Ok(None) => {
                debug!(%remote, peer = from, "peer stream finished");
                return;
            }
            Err(FrameError::Io(e)) if is_connection_loss(&e) => {
                debug!(%remote, peer = from, reason = %e, "peer stream ended");
                return;
            }
            Err(e) => return protocol_error(&e.to_string()),
        }
    }
}

async fn serve_client(conn: quinn::Connection, caller: Arc<Caller>, shared: Arc<Shared>) {
    // Clients talk on bidirectional streams only.
    conn.set_max_concurrent_uni_streams(0u32.into());
    let remote = conn.remote_address();
    debug!(%remote, "client connection");
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    calls.spawn(serve_call(remote, send, recv, caller.clone(), shared.clone()));
                }
                Err(e) => {
                    debug!(%remote, reason = %e, "client connection ended");
                    break;
                }
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
        }
    }
}

async fn serve_call(
    remote: SocketAddr,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    caller: Arc<Caller>,
    shared: Arc<Shared>,
) {
    let request = match framing::read_frame_limited::<_, Request>(
        &mut recv,
        framing::MAX_REQUEST_FRAME,
    )
    .await
    {
        Ok(Some(request)) => request,
        Ok(None) => {
            debug!(%remote, "client stream closed without a request");
            return;
        }
        Err(FrameError::Io(e)) if is_connection_loss(&e) => {
            debug!(%remote, reason = %e, "client stream ended");
            return;
        }
        Err(e) => {
            warn!(%remote, reason = %e, "bad frame from client; closing the stream");
            shared.bad_frame();
            let _ = recv.stop(CLOSE_PROTOCOL.into());
            let _ = send.reset(CLOSE_PROTOCOL.into());
            return;
        }
    };
    if let Some(why) = shared.credentials.refusal(&caller, &request) {
        warn!(%remote, reason = %why, "refused a client request");
        if framing::write_frame(&mut send, &Response::Refused(why))
            .await
            .is_ok()
        {
            let _ = send.finish();
        }
        return;
    }
    let (reply, answer) = oneshot::channel();
    let call = ClientCall { request, reply };
    let response = match shared.client_tx.try_send(call) {
        Ok(()) => answer.await.unwrap_or_else(|_| {
            Response::Unknown("the node dropped the request without answering".into())
        }),
        Err(TrySendError::Full(_)) => {
            Response::Refused("node overloaded: too many requests queued".into())
        }
        Err(TrySendError::Closed(_)) => Response::Refused("node is shutting down".into()),
    };
    if let Err(e) = framing::write_frame(&mut send, &response).await {
        debug!(%remote, reason = %e, "could not answer the client");
        return;
    }
    let _ = send.finish();
}

/// An I/O error that only says the stream or connection went away (not a bad frame).
fn is_connection_loss(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Close reasons travel in one packet: keep them short.
fn truncate(reason: &str) -> &str {
    const MAX: usize = 200;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}
