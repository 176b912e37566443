//! Outbound: one sender task per peer, fed by a bounded queue.
//!
//! ```text
//! Transport::send(to, msgs) ──try_send──► [bounded queue] ──► sender task for `to`
//!        (full: drop + count)                                  │ resolve host, dial `node-<to>.raftlab`
//!                                                              │ open one uni stream, write Hello
//!                                                              │ loop: take everything queued (≤ max_batch)
//!                                                              │       write it as ONE Messages frame
//!                                                              │       (a message too big for a frame:
//!                                                              │        as a run of Chunk frames)
//!                                                              └ on error: drop, back off, redial
//! ```
//!
//! Raft tolerates lost messages, so nothing here blocks the core: a full queue drops the
//! newest message, and while the peer is unreachable (during backoff) queued messages are
//! discarded rather than delivered stale; both are counted in `dropped`. A stalled stream
//! (QUIC flow control) fills the queue, which then drops: back-pressure never reaches the
//! core. Reconnection backs off exponentially from `backoff_min` to `backoff_max` with
//! jitter from a cheap per-link xorshift generator.

use super::chunks::{self, ChunkRef};
use super::framing::{self, FrameError};
use super::Events;
use crate::certs;
use crate::protocol::PeerFrame;
use model::core::{Message, NodeId};
use model::kv::Command;
use quinn::SendStream;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// A frame borrowing its contents: encodes exactly like [`PeerFrame`] (postcard writes a
/// slice and a `Vec` the same way; a test checks it), without moving the messages into a
/// frame so that an oversized batch can still be split.
#[derive(Serialize)]
enum PeerFrameRef<'a> {
    #[allow(dead_code)]
    Hello {
        from: NodeId,
    },
    Messages(&'a [Message<Command>]),
    Chunk {
        total: u64,
        data: &'a [u8],
    },
}

/// How one peer link is doing, for status reports and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLinkStatus {
    pub id: NodeId,
    pub addr: String,
    /// A connection is up and its stream is open.
    pub connected: bool,
    /// Messages sent (handed to QUIC).
    pub sent: u64,
    /// Messages dropped: queue full, peer unreachable, or lost with a failed connection.
    pub dropped: u64,
    /// Connection attempts that failed (resolution, handshake, refused).
    pub connect_failures: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct LinkState {
    connected: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    connect_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LinkState {
    fn drop_n(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn set_error(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
    }
}

/// Settings of a sender task.
#[derive(Clone, Debug)]
pub(crate) struct LinkOptions {
    pub queue: usize,
    /// Most messages in one frame.
    pub max_batch: usize,
    /// Largest frame; a bigger message goes in chunks.
    pub max_frame: usize,
    /// Largest message in chunks (the peer refuses bigger ones).
    pub max_message: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

/// The transport's handle on one peer's sender task.
pub(crate) struct PeerLink {
    id: NodeId,
    addr: String,
    queue: mpsc::Sender<Message<Command>>,
    state: Arc<LinkState>,
}

impl PeerLink {
    /// Starts the sender task for `peer` at `addr`, dialling from `endpoint`.
    pub(crate) fn spawn(
        me: NodeId,
        peer: NodeId,
        addr: String,
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        options: LinkOptions,
        events: Events,
    ) -> (PeerLink, tokio::task::AbortHandle) {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let state = Arc::new(LinkState::default());
        let seed = me
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(peer)
            .wrapping_add(clock_nanos());
        let sender = Sender {
            me,
            peer,
            addr: addr.clone(),
            endpoint,
            client_config,
            backoff: Backoff::new(options.backoff_min, options.backoff_max, seed),
            options,
            state: state.clone(),
            events,
        };
        let handle = tokio::spawn(sender.run(rx)).abort_handle();
        let link = PeerLink {
            id: peer,
            addr,
            queue: tx,
            state,
        };
        (link, handle)
    }

    /// Queues `msgs` without waiting; what does not fit is dropped and counted.
    pub(crate) fn push(&self, msgs: Vec<Message<Command>>) {
        let mut dropped = 0;
        for msg in msgs {
            if self.queue.try_send(msg).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.state.drop_n(dropped);
            debug!(
                peer = self.id,
                dropped, "peer queue full; dropping messages"
            );
        }
    }

    /// Where this link dials.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn status(&self) -> PeerLinkStatus {
        let s = &self.state;
        PeerLinkStatus {
            id: self.id,
            addr: self.addr.clone(),
            connected: s.connected.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            connect_failures: s.connect_failures.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

struct Sender {
    me: NodeId,
    peer: NodeId,
    addr: String,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    options: LinkOptions,
    backoff: Backoff,
    state: Arc<LinkState>,
    events: Events,
}

/// Why a link went down.
enum Down {
    /// The transport is gone (the queue closed): stop.
    Shutdown,
    Failed(String),
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Message<Command>>) {
        // Log a failure loudly once per outage, then quietly until the link comes back.
        let mut quiet = false;
        loop {
            match self.connect().await {
                Ok((conn, stream)) => {
                    let since = Instant::now();
                    self.state.connected.store(true, Ordering::Relaxed);
                    self.events.bump();
                    info!(peer = self.peer, addr = %conn.remote_address(), "connected to peer");
                    let down = self.pump(&conn, stream, &mut rx).await;
                    self.state.connected.store(false, Ordering::Relaxed);
                    match down {
                        Down::Shutdown => {
                            conn.close(0u32.into(), b"shutting down");
                            self.events.bump();
                            return;
                        }
                        Down::Failed(why) => {
                            warn!(peer = self.peer, reason = %why, "lost the connection to peer");
                            self.state.set_error(&why);
                            quiet = true;
                        }
                    }
                    self.events.bump();
                    // A link that stayed up a while starts over with a short backoff; one
                    // that is refused right after the handshake keeps backing off.
                    if since.elapsed() >= self.options.backoff_max {
                        self.backoff.reset();
                    }
                }
                Err(why) => {
                    self.state.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.state.set_error(&why);
                    self.events.bump();
                    if quiet {
                        debug!(peer = self.peer, addr = %self.addr, reason = %why, "cannot connect to peer");
                    } else {
                        warn!(peer = self.peer, addr = %self.addr, reason = %why, "cannot connect to peer; retrying with backoff");
                        quiet = true;
                    }
                }
            }
            // Back off, discarding what is queued meanwhile: it would be stale.
            let pause = tokio::time::sleep(self.backoff.next_delay());
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    msg = rx.recv() => match msg {
                        Some(_) => self.state.drop_n(1),
                        None => return,
                    },
                }
            }
        }
    }

    /// Resolves the peer's address, dials it as `node-<peer>.raftlab`, opens the stream and
    /// says Hello.
    async fn connect(&self) -> Result<(quinn::Connection, SendStream), String> {
        let timeout = self.options.connect_timeout;
        let prefer_v4 = self
            .endpoint
            .local_addr()
            .map(|a| a.is_ipv4())
            .unwrap_or(true);
        let remote = tokio::time::timeout(timeout, resolve(&self.addr, prefer_v4))
            .await
            .map_err(|_| format!("resolving {} timed out", self.addr))??;
        let server_name = certs::node_name(self.peer);
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), remote, &server_name)
            .map_err(|e| format!("cannot dial {remote}: {e}"))?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| format!("handshake with {remote} timed out"))?
            .map_err(|e| format!("handshake with {remote} ({server_name}) failed: {e}"))?;
        let mut stream = conn
            .open_uni()
            .await
            .map_err(|e| format!("opening a stream to {remote}: {e}"))?;
        framing::write_frame(&mut stream, &PeerFrame::Hello { from: self.me })
            .await
            .map_err(|e| format!("sending Hello to {remote}: {e}"))?;
        Ok((conn, stream))
    }

    /// Sends batches until the connection fails or the transport shuts down.
    async fn pump(
        &mut self,
        conn: &quinn::Connection,
        mut stream: SendStream,
        rx: &mut mpsc::Receiver<Message<Command>>,
    ) -> Down {
        loop {
            let first = tokio::select! {
                biased;
                reason = conn.closed() => return Down::Failed(format!("connection closed: {reason}")),
                msg = rx.recv() => msg,
            };
            let Some(first) = first else {
                let _ = stream.finish();
                return Down::Shutdown;
            };
            let mut batch = Vec::with_capacity(self.options.max_batch.min(rx.len() + 1));
            batch.push(first);
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            if let Err(why) = self.send_batch(&mut stream, &batch).await {
                return Down::Failed(why);
            }
        }
    }

    /// Writes `batch` as one frame, or as several if it exceeds the frame limit; a single
    /// message too large for any frame goes as a run of chunk frames, and one too large for
    /// the peer to put back together is dropped with an error log.
    async fn send_batch(
        &self,
        stream: &mut SendStream,
        batch: &[Message<Command>],
    ) -> Result<(), String> {
        let max = self.options.max_frame;
        // Ranges still to send, last to send first.
        let mut todo = vec![(0, batch.len())];
        while let Some((lo, hi)) = todo.pop() {
            let written = match framing::encode_limited(
                &PeerFrameRef::Messages(&batch[lo..hi]),
                max,
            ) {
                Ok(bytes) => stream.write_all(&bytes).await.map_err(|e| e.to_string()),
                Err(FrameError::TooLarge { .. }) if hi - lo > 1 => {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                    continue;
                }
                Err(FrameError::TooLarge { .. }) => {
                    match chunks::encode_message(&batch[lo], self.options.max_message) {
                        Ok(message) => write_chunks(stream, &message, max).await,
                        Err(e) => {
                            error!(peer = self.peer, kind = batch[lo].body.name(), reason = %e, "dropping a message too large to send even in chunks");
                            self.state.drop_n(1);
                            continue;
                        }
                    }
                }
                Err(e) => {
                    error!(peer = self.peer, kind = batch[lo].body.name(), reason = %e, "dropping a message that cannot be framed");
                    self.state.drop_n(hi - lo);
                    continue;
                }
            };
            if let Err(e) = written {
                let lost = hi - lo + todo.iter().map(|(l, h)| h - l).sum::<usize>();
                self.state.drop_n(lost);
                return Err(format!("writing to the stream: {e}"));
            }
            self.state
                .sent
                .fetch_add((hi - lo) as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Writes `message` (a postcard encoding) as its run of chunk frames of at most `max_frame`
/// bytes. A failure part-way leaves the run unfinished, which the receiver cannot resume:
/// the caller gives up the stream.
async fn write_chunks(
    stream: &mut SendStream,
    message: &[u8],
    max_frame: usize,
) -> Result<(), String> {
    let frames = chunks::frames(message, max_frame, |ChunkRef { total, data }| {
        framing::encode_limited(&PeerFrameRef::Chunk { total, data }, max_frame)
    });
    for frame in frames {
        let frame = frame.map_err(|e| format!("a chunk: {e}"))?;
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Resolves `addr` (host names allowed), preferring the endpoint's address family.
async fn resolve(addr: &str, prefer_v4: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == prefer_v4)
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

fn clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Exponential backoff with jitter: each delay is uniformly in [d/2, d), d doubling from
/// `min` up to `max`.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            current: min,
            rng: seed | 1,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let nanos = half.as_nanos() as u64;
        half + Duration::from_nanos(if nanos == 0 { 0 } else { self.rng % nanos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::core::Body;

    #[test]
    fn borrowed_frames_encode_like_owned_ones() {
        let msgs = vec![Message {
            from: 1,
            to: 2,
            term: 3,
            body: Body::TimeoutNow,
        }];
        assert_eq!(
            framing::encode(&PeerFrameRef::Messages(&msgs)).unwrap(),
            framing::encode(&PeerFrame::Messages(msgs.clone())).unwrap()
        );
        assert_eq!(
            framing::encode(&PeerFrameRef::Hello { from: 7 }).unwrap(),
            framing::encode(&PeerFrame::Hello { from: 7 }).unwrap()
        );
        let data = vec![1u8, 2, 3];
        assert_eq!(
            framing::encode(&PeerFrameRef::Chunk {
                total: 9,
                data: &data
            })
            .unwrap(),
            framing::encode(&PeerFrame::Chunk { total: 9, data }).unwrap()
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let min = Duration::from_millis(50);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max, 42);
        let mut cap = min;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= cap / 2 && d < cap,
                "{d:?} not in [{:?}, {cap:?})",
                cap / 2
            );
            cap = (cap * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() < min);
    }
}
