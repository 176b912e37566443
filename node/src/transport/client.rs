//! [`ClientConnector`]: the lab's side of the client protocol.
//!
//! One QUIC connection per node (dialled as `node-N.raftlab`, presenting the client
//! certificate), reused by every call; one bidirectional stream per call: the request
//! frame, then the response frame.
//!
//! A failed call says whether the request can have reached the node ([`CallError`]): the
//! lab records an operation that certainly did not happen as `fail`, and one that may have
//! happened as `info`. It is [`CallError::NotSent`] when no byte of the request left (no
//! connection, no stream), when the node refused the connection before serving any stream
//! (certificate refused), or when it reset the stream because the request frame was
//! malformed (never handed to the core). Anything after the first byte was written is
//! [`CallError::NoAnswer`].

use super::error::TransportError;
use super::framing::{self, MAX_RESPONSE_FRAME};
use super::tls;
use super::{CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_TIMEOUT};
use crate::certs;
use crate::protocol::{Request, Response};
use model::core::NodeId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tracing::debug;

/// Why a call has no response.
#[derive(Debug, Error)]
pub enum CallError {
    /// Certainly not delivered: the operation had no effect.
    #[error("node {node} at {addr}: request not sent: {reason}")]
    NotSent {
        node: NodeId,
        addr: String,
        reason: String,
    },
    /// Sent (at least in part) but unanswered: the operation may or may not take effect.
    #[error("node {node} at {addr}: request sent, no answer (outcome unknown): {reason}")]
    NoAnswer {
        node: NodeId,
        addr: String,
        reason: String,
    },
}

impl CallError {
    /// Whether the operation may have taken effect (record `info`, not `fail`).
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, CallError::NoAnswer { .. })
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Calls nodes with the client certificate, reusing one connection per node.
pub struct ClientConnector {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    /// One slot per (node, addr); its lock is held while dialling, so concurrent first
    /// calls share one connection.
    slots: Mutex<HashMap<(NodeId, String), Slot>>,
}

impl ClientConnector {
    /// Loads `ca.pem`, `client.pem` and `client.key` from `certs_dir` and binds an
    /// ephemeral IPv4 UDP port. Must be called inside a tokio runtime.
    pub fn new(certs_dir: &Path) -> Result<ClientConnector, TransportError> {
        ClientConnector::as_client(certs_dir, None)
    }

    /// [`ClientConnector::new`] presenting `client-NAME.pem` (`name`) instead of the shared
    /// client certificate.
    pub fn as_client(
        certs_dir: &Path,
        name: Option<&str>,
    ) -> Result<ClientConnector, TransportError> {
        let subject = certs::Subject::Client(name.map(str::to_string));
        let roots = Arc::new(certs::load_roots(certs_dir)?);
        let identity = certs::load_subject_identity(certs_dir, &subject)?;
        let config = tls::lab_client_config(roots, identity).map_err(|source| {
            let what = format!(
                "{} with {}",
                certs_dir.join(subject.cert_file()).display(),
                certs_dir.join(subject.key_file()).display()
            );
            TransportError::Tls { what, source }
        })?;
        ClientConnector::with_config(config, SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// A connector with any client configuration (see [`tls::client_config`]), bound to
    /// `bind` (use `[::]:0` to reach IPv6 nodes). Must be called inside a tokio runtime.
    pub fn with_config(
        config: quinn::ClientConfig,
        bind: SocketAddr,
    ) -> Result<ClientConnector, TransportError> {
        let endpoint = quinn::Endpoint::client(bind)
            .map_err(|source| TransportError::Bind { addr: bind, source })?;
        Ok(ClientConnector {
            endpoint,
            config,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `request` to node `node` listening at `addr` and waits for its response, all
    /// within `timeout`.
    pub async fn call(
        &self,
        node: NodeId,
        addr: &str,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        self.call_with(node, addr, request, timeout, timeout).await
    }

    /// Like [`ClientConnector::call`], but gives up on a connection that is not up within
    /// `connect_timeout` (a dead or unreachable node answers no handshake; without a
    /// shorter bound the whole `timeout` would go into waiting for it). Nothing has been
    /// sent then: the error is [`CallError::NotSent`].
    pub async fn call_with(
        &self,
        node: NodeId,
        addr: &str,
        request: &Request,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let not_sent = |reason: String| CallError::NotSent {
            node,
            addr: addr.to_string(),
            reason,
        };
        let no_answer = |reason: String| CallError::NoAnswer {
            node,
            addr: addr.to_string(),
            reason,
        };
        let bytes = framing::encode(request).map_err(|e| not_sent(e.to_string()))?;
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let connect_by = start + connect_timeout.min(timeout);
        let (conn, mut send, mut recv) =
            match tokio::time::timeout_at(connect_by, self.open(node, addr)).await {
                Ok(Ok(opened)) => opened,
                Ok(Err(reason)) => return Err(not_sent(reason)),
                Err(_) => {
                    return Err(not_sent(format!(
                        "no connection within {:?}",
                        connect_by - start
                    )))
                }
            };
        let exchange = async {
            match send.write_all(&bytes).await {
                Ok(()) => {}
                Err(quinn::WriteError::Stopped(code)) if unread(code) => {
                    return Err(Failure::Unread)
                }
                Err(e) => return Err(Failure::Other(format!("writing the request: {e}"))),
            }
            let _ = send.finish();
            match framing::read_frame_limited::<_, Response>(&mut recv, MAX_RESPONSE_FRAME).await {
                Ok(Some(response)) => Ok(response),
                Ok(None) => Err(Failure::Other(
                    "the node closed the stream without answering".into(),
                )),
                Err(framing::FrameError::Io(e)) if reset_unread(&e) => Err(Failure::Unread),
                Err(e) => Err(Failure::Other(format!("reading the response: {e}"))),
            }
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(Failure::Unread)) => Err(not_sent(
                "the node refused the request frame as malformed or not arriving in time".into(),
            )),
            Ok(Err(Failure::Other(reason))) => match refused(&conn) {
                Some(why) => Err(not_sent(why)),
                None => Err(no_answer(reason)),
            },
            Err(_) => Err(no_answer(format!("no answer within {timeout:?}"))),
        }
    }

    /// Closes every connection and waits briefly for the closes to be sent.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"client done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// A stream to `node` on a live connection, redialling once if the cached connection
    /// turns out dead. Nothing has been sent when this returns.
    async fn open(
        &self,
        node: NodeId,
        addr: &str,
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), String> {
        let mut last = String::new();
        for _ in 0..2 {
            let conn = self.connection(node, addr).await?;
            match conn.open_bi().await {
                Ok((send, recv)) => return Ok((conn, send, recv)),
                Err(e) => last = format!("opening a stream: {e}"),
            }
        }
        Err(last)
    }

    async fn connection(&self, node: NodeId, addr: &str) -> Result<quinn::Connection, String> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry((node, addr.to_string())).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            debug!(node, addr, "cached connection is closed; redialling");
        }
        *cached = None;
        let conn = self.dial(node, addr).await?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    async fn dial(&self, node: NodeId, addr: &str) -> Result<quinn::Connection, String> {
        let prefer_v4 = self
            .endpoint
            .local_addr()
            .map(|a| a.is_ipv4())
            .unwrap_or(true);
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .collect();
        let remote = resolved
            .iter()
            .find(|a| a.is_ipv4() == prefer_v4)
            .or(resolved.first())
            .copied()
            .ok_or_else(|| format!("{addr} resolves to no address"))?;
        let server_name = certs::node_name(node);
        self.endpoint
            .connect_with(self.config.clone(), remote, &server_name)
            .map_err(|e| format!("cannot dial {remote}: {e}"))?
            .await
            .map_err(|e| format!("handshake with {remote} ({server_name}) failed: {e}"))
    }
}

/// How the exchange on a stream failed.
enum Failure {
    /// The node stopped or reset the stream with [`CLOSE_PROTOCOL`] or [`CLOSE_TIMEOUT`]:
    /// the request frame was malformed or did not arrive in time, and was never handed on.
    Unread,
    Other(String),
}

/// A stream error code saying the node never handed the request on.
fn unread(code: quinn::VarInt) -> bool {
    code == CLOSE_PROTOCOL.into() || code == CLOSE_TIMEOUT.into()
}

/// The node reset the response stream with an [`unread`] code.
fn reset_unread(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|inner| inner.downcast_ref::<quinn::ReadError>()),
        Some(quinn::ReadError::Reset(code)) if unread(*code)
    )
}

/// Why the node closed `conn` without serving it, if it did: our certificate was refused
/// (a TLS alert, or [`CLOSE_REFUSED`] after the handshake).
fn refused(conn: &quinn::Connection) -> Option<String> {
    match conn.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from(CLOSE_REFUSED) =>
        {
            Some(format!(
                "connection refused by the node: {}",
                String::from_utf8_lossy(&close.reason)
            ))
        }
        quinn::ConnectionError::ConnectionClosed(close)
            if (0x100..0x200).contains(&u64::from(close.error_code)) =>
        {
            Some(format!("the node rejected the TLS handshake: {close}"))
        }
        _ => None,
    }
}
