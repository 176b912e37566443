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
//!
//! What one remote end can make the node hold is bounded (`[transport]` settings):
//! - one connection per peer id: a newer connection from the same node replaces the older
//!   one (a restarted peer must not wait for its old connection to time out), so a peer
//!   cannot pile up connections;
//! - no stream at all before a connection is authorized; then one peer stream per peer
//!   connection, and `max_client_streams` concurrent requests per client connection;
//! - a deadline per frame: a client's request must arrive whole within `stream_timeout`
//!   of its stream opening (and its answer be taken within `stream_timeout` too), a peer's
//!   Hello likewise, and each later peer frame (and the
//!   next chunk of a message in chunks) within `stream_timeout` of its first byte; a
//!   stalled stream is closed with [`CLOSE_TIMEOUT`] and its buffer freed;
//! - a peer frame of at most `max_frame_bytes`, and a `Messages` frame of at most
//!   `max_batch` messages, checked before it is decoded; a message in chunks of at most
//!   `max_message_bytes`;
//! - when more than `retry_above_handshakes` handshakes are in progress, a new connection
//!   attempt must first prove its source address with a QUIC Retry.

use super::chunks::Reassembly;
use super::credentials::{Caller, Credentials};
use super::framing::{self, Deadline, FrameError};
use super::tls::{self, Authorized};
use super::{Events, CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_REPLACED, CLOSE_TIMEOUT};
use crate::config::TransportSettings;
use crate::protocol::{self, PeerFrame, Request, Response};
use model::core::{Message, NodeId};
use model::kv::Command;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// Peer connections closed because a newer one from the same node replaced them.
    pub replaced_connections: u64,
    /// Streams closed because a frame did not arrive whole, or an answer was not taken,
    /// within the stream timeout.
    pub timed_out_streams: u64,
    /// Connection attempts answered with a QUIC Retry (address validation).
    pub retries: u64,
}

/// Concurrent streams of one peer connection: a peer sends everything on one stream, and
/// reconnects (a new connection) when it fails.
const PEER_STREAMS: u32 = 1;

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
    limits: TransportSettings,
    /// The live inbound connection of each peer id.
    peer_conns: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Connection attempts accepted whose handshake has not finished.
    handshakes: AtomicUsize,
    refused: AtomicU64,
    bad_frames: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    delivered: AtomicU64,
    replaced: AtomicU64,
    timed_out: AtomicU64,
    retries: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        me: NodeId,
        peers: BTreeSet<NodeId>,
        peer_tx: mpsc::Sender<Message<Command>>,
        client_tx: mpsc::Sender<ClientCall>,
        events: Events,
        credentials: Arc<Credentials>,
        limits: TransportSettings,
    ) -> Shared {
        Shared {
            me,
            peers: RwLock::new(peers),
            peer_tx,
            client_tx,
            events,
            credentials,
            limits,
            peer_conns: Mutex::new(HashMap::new()),
            handshakes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Replaces the set of admitted peers; the connections of those no longer in it close.
    pub(crate) fn set_peers(&self, peers: BTreeSet<NodeId>) {
        let departed: Vec<quinn::Connection> = self
            .peer_conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(id, _)| !peers.contains(id))
            .map(|(_, conn)| conn.clone())
            .collect();
        // A poisoned lock only means a reader panicked; the set itself is always whole.
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = peers;
        for conn in departed {
            self.refuse(&conn, "no longer a member of this cluster");
        }
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
            replaced_connections: self.replaced.load(Ordering::Relaxed),
            timed_out_streams: self.timed_out.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Makes `conn` the one connection of the peer ids its certificate names, closing the
    /// connection it replaces, if any.
    fn register_peer(&self, conn: &quinn::Connection, ids: &[NodeId]) {
        let mut replaced = Vec::new();
        {
            let mut conns = self.peer_conns.lock().unwrap_or_else(|p| p.into_inner());
            for &id in ids {
                if let Some(old) = conns.insert(id, conn.clone()) {
                    if old.stable_id() != conn.stable_id()
                        && !replaced
                            .iter()
                            .any(|r: &quinn::Connection| r.stable_id() == old.stable_id())
                    {
                        replaced.push(old);
                    }
                }
            }
        }
        for old in replaced {
            info!(remote = %old.remote_address(), newer = %conn.remote_address(), ?ids, "closing a peer connection: replaced by a newer connection from the same node");
            self.replaced.fetch_add(1, Ordering::Relaxed);
            self.events.bump();
            old.close(CLOSE_REPLACED.into(), b"replaced by a newer connection");
        }
    }

    /// Forgets `conn` as the connection of `ids`, unless a newer one took its place.
    fn unregister_peer(&self, conn: &quinn::Connection, ids: &[NodeId]) {
        let mut conns = self.peer_conns.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if conns.get(id).map(quinn::Connection::stable_id) == Some(conn.stable_id()) {
                conns.remove(id);
            }
        }
    }

    fn timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
        self.events.bump();
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
                    if let Some(incoming) = validate_if_busy(incoming, &shared) {
                        let handshake = Handshake::start(&shared);
                        conns.spawn(serve_connection(incoming, handshake, shared.clone()));
                    }
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    debug!("endpoint closed; accept loop ends");
}

/// Under a pile of handshakes, answers a connection attempt whose source address is not
/// yet proven with a QUIC Retry (returns `None`): a spoofed source never sees the Retry, so
/// it cannot come back and cost the node handshake state. Otherwise hands it back to serve.
fn validate_if_busy(incoming: quinn::Incoming, shared: &Shared) -> Option<quinn::Incoming> {
    let busy = shared.handshakes.load(Ordering::Relaxed) >= shared.limits.retry_above_handshakes;
    if !busy || incoming.remote_address_validated() {
        return Some(incoming);
    }
    let remote = incoming.remote_address();
    match incoming.retry() {
        Ok(()) => {
            debug!(%remote, "many handshakes in progress: asked the new connection to validate its address (QUIC Retry)");
            shared.retries.fetch_add(1, Ordering::Relaxed);
            shared.events.bump();
            None
        }
        // Retry is not possible for this attempt; serve it like any other.
        Err(e) => Some(e.into_incoming()),
    }
}

/// Counts a handshake in progress from its acceptance until it is dropped.
struct Handshake(Option<Arc<Shared>>);

impl Handshake {
    fn start(shared: &Arc<Shared>) -> Handshake {
        shared.handshakes.fetch_add(1, Ordering::Relaxed);
        Handshake(Some(shared.clone()))
    }

    fn finish(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.handshakes.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    mut handshake: Handshake,
    shared: Arc<Shared>,
) {
    let remote = incoming.remote_address();
    let done = incoming.await;
    handshake.finish();
    let conn = match done {
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
        Ok(Authorized::Peer(ids)) => {
            shared.register_peer(&conn, &ids);
            serve_peer(conn.clone(), ids.clone(), shared.clone()).await;
            shared.unregister_peer(&conn, &ids);
        }
        Ok(Authorized::Client(identity)) => {
            serve_client(conn, Arc::new(Caller { identity, cert }), shared).await
        }
        Err(reason) => shared.refuse(&conn, &reason),
    }
}

async fn serve_peer(conn: quinn::Connection, ids: Vec<NodeId>, shared: Arc<Shared>) {
    // No stream could be opened before this point; peers talk on one unidirectional
    // stream only.
    conn.set_max_concurrent_uni_streams(PEER_STREAMS.into());
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
    let limits = &shared.limits;
    let timeout = limits.stream_timeout();
    let close = |code: u32, why: &str| {
        conn.close(code.into(), truncate(why).as_bytes());
    };
    let hello =
        framing::read_body_within(&mut recv, framing::MAX_HELLO_FRAME, timeout, Deadline::Now)
            .await
            .and_then(|body| {
                body.map(|b| framing::decode_body::<PeerFrame>(&b))
                    .transpose()
            });
    let from = match hello {
        Ok(Some(PeerFrame::Hello { from })) => from,
        Ok(Some(_)) => return peer_protocol_error(&shared, &conn, "first frame is not Hello"),
        Ok(None) => return,
        Err(FrameError::Io(e)) if is_connection_loss(&e) => return,
        Err(e @ FrameError::TimedOut(_)) => {
            warn!(%remote, reason = %e, "peer sent no Hello in time; closing the connection");
            shared.timed_out();
            return close(CLOSE_TIMEOUT, &e.to_string());
        }
        Err(e) => return peer_protocol_error(&shared, &conn, &e.to_string()),
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
    let mut chunks = Reassembly::new(limits.max_message_bytes);
    loop {
        // Between batches a peer stream may idle; inside a message in chunks, the next
        // chunk is due at once.
        let deadline = if chunks.in_progress() {
            Deadline::Now
        } else {
            Deadline::FirstByte
        };
        let body = match framing::read_body_within(
            &mut recv,
            limits.max_frame_bytes,
            timeout,
            deadline,
        )
        .await
        {
            Ok(Some(body)) => body,
            Ok(None) if chunks.in_progress() => {
                return peer_protocol_error(
                    &shared,
                    &conn,
                    "stream ended inside a message in chunks",
                )
            }
            Ok(None) => {
                debug!(%remote, peer = from, "peer stream finished");
                return;
            }
            Err(FrameError::Io(e)) if is_connection_loss(&e) => {
                debug!(%remote, peer = from, reason = %e, "peer stream ended");
                return;
            }
            Err(e @ FrameError::TimedOut(_)) => {
                warn!(%remote, peer = from, reason = %e, "peer frame stalled; closing the connection");
                shared.timed_out();
                return close(CLOSE_TIMEOUT, &e.to_string());
            }
            Err(e) => return peer_protocol_error(&shared, &conn, &e.to_string()),
        };
        match decode_peer_frame(&body, limits.max_batch) {
            Ok(PeerFrame::Messages(_)) | Ok(PeerFrame::Hello { .. }) if chunks.in_progress() => {
                return peer_protocol_error(
                    &shared,
                    &conn,
                    "another frame inside a message in chunks",
                )
            }
            Ok(PeerFrame::Messages(batch)) => shared.deliver(from, remote, batch),
            Ok(PeerFrame::Chunk { total, data }) => match chunks.push(total, data) {
                Ok(None) => {}
                Ok(Some(bytes)) => match framing::decode_exact::<Message<Command>>(&bytes) {
                    Ok(msg) => shared.deliver(from, remote, vec![msg]),
                    Err(e) => {
                        let why = format!("message in chunks: {e}");
                        return peer_protocol_error(&shared, &conn, &why);
                    }
                },
                Err(e) => return peer_protocol_error(&shared, &conn, &e.to_string()),
            },
            Ok(PeerFrame::Hello { .. }) => {
                return peer_protocol_error(&shared, &conn, "a second Hello")
            }
            Err(why) => return peer_protocol_error(&shared, &conn, &why),
        }
    }
}

/// Decodes a peer frame body, refusing a `Messages` frame that announces more than
/// `max_batch` messages before decoding any of them.
fn decode_peer_frame(body: &[u8], max_batch: usize) -> Result<PeerFrame, String> {
    let payload = framing::payload(body).map_err(|e| e.to_string())?;
    if let Some(n) = protocol::announced_messages(payload) {
        if n > max_batch as u64 {
            return Err(format!(
                "Messages frame announces {n} messages, more than max_batch {max_batch}"
            ));
        }
    }
    framing::decode_exact(payload).map_err(|e| e.to_string())
}

/// A peer sent something malformed: its connection is closed, with a warning.
fn peer_protocol_error(shared: &Shared, conn: &quinn::Connection, why: &str) {
    warn!(remote = %conn.remote_address(), reason = %why, "bad frame from peer; closing the connection");
    shared.bad_frame();
    conn.close(CLOSE_PROTOCOL.into(), truncate(why).as_bytes());
}

async fn serve_client(conn: quinn::Connection, caller: Arc<Caller>, shared: Arc<Shared>) {
    // No stream could be opened before this point; clients talk on bidirectional streams
    // only, a bounded number at a time.
    conn.set_max_concurrent_bi_streams(shared.limits.max_client_streams.into());
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
    let timeout = shared.limits.stream_timeout();
    let request = match framing::read_body_within(
        &mut recv,
        framing::MAX_REQUEST_FRAME,
        timeout,
        Deadline::Now,
    )
    .await
    .and_then(|body| {
        body.map(|b| framing::decode_body::<Request>(&b))
            .transpose()
    }) {
        Ok(Some(request)) => request,
        Ok(None) => {
            debug!(%remote, "client stream closed without a request");
            return;
        }
        Err(FrameError::Io(e)) if is_connection_loss(&e) => {
            debug!(%remote, reason = %e, "client stream ended");
            return;
        }
        Err(e @ FrameError::TimedOut(_)) => {
            warn!(%remote, reason = %e, "client request stalled; closing the stream");
            shared.timed_out();
            let _ = recv.stop(CLOSE_TIMEOUT.into());
            let _ = send.reset(CLOSE_TIMEOUT.into());
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
    // A client that does not read its answer (QUIC flow control) must not hold the stream
    // and the answer forever either.
    match tokio::time::timeout(timeout, framing::write_frame(&mut send, &response)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        Ok(Err(e)) => debug!(%remote, reason = %e, "could not answer the client"),
        Err(_) => {
            warn!(%remote, ?timeout, "client did not take its answer in time; closing the stream");
            shared.timed_out();
            let _ = send.reset(CLOSE_TIMEOUT.into());
        }
    }
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
