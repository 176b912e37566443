//! [`Transport`]: a node's QUIC endpoint, what the runtime holds.
//!
//! [`Transport::start`] loads the certificates, binds one UDP socket on the node's address
//! (server and client share it), starts the accept loop and one sender task per peer, and
//! returns the [`Inbound`] channels the runtime reads. Everything it starts stops when the
//! `Transport` is dropped (or [`Transport::shutdown`]).
//!
//! The endpoint's QUIC stateless-reset and connection-id keys are derived from the node's
//! private key, so they are the same across restarts: when a node restarts on its address,
//! packets of its peers' and clients' old connections are answered with a valid stateless
//! reset and those connections end at once instead of waiting out the idle timeout.

use super::credentials::{Credentials, Dialling, Listening};
use super::error::TransportError;
use super::inbound::{self, Inbound, InboundStats, Shared};
use super::peers::{LinkOptions, PeerLink, PeerLinkStatus};
use super::tls;
use super::{Events, CLOSE_SHUTDOWN};
use crate::certs::{self, Identity};
use crate::config::ClusterConfig;
use model::core::{Message, NodeId};
use model::kv::Command;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{info, warn};

/// Queue sizes and timings; the defaults suit a cluster on one machine or a LAN.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Messages queued per peer before new ones are dropped.
    pub peer_queue: usize,
    /// Peer messages queued for the runtime before new ones are dropped.
    pub inbound_queue: usize,
    /// Client requests queued for the runtime before new ones are refused.
    pub client_queue: usize,
    /// First reconnection delay (then doubling, with jitter).
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// Resolution and handshake limit of one connection attempt.
    pub connect_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            peer_queue: 4096,
            inbound_queue: 8192,
            client_queue: 4096,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// A node's endpoint: send to peers, read [`Inbound`], report link status.
pub struct Transport {
    me: NodeId,
    local_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    /// What a new peer link dials with.
    peer_client: quinn::ClientConfig,
    link_options: LinkOptions,
    links: BTreeMap<NodeId, (PeerLink, AbortHandle)>,
    shared: Arc<Shared>,
    events: Events,
    accept_task: AbortHandle,
    warned_unknown: AtomicBool,
    credentials: Arc<Credentials>,
}

impl Transport {
    /// Starts node `me`'s endpoint with default options; see [`Transport::start_with`].
    pub async fn start(
        config: &ClusterConfig,
        me: NodeId,
        certs_dir: &Path,
    ) -> Result<(Transport, Inbound), TransportError> {
        Transport::start_with(config, me, certs_dir, TransportOptions::default()).await
    }

    /// Loads `ca.pem` and `node-<me>.pem/.key` from `certs_dir` (and the deny-list), binds
    /// `me`'s address from `config` (a host name is resolved, IPv4 preferred), and starts
    /// serving and dialling, within the bounds of `config`'s `[transport]` section.
    pub async fn start_with(
        config: &ClusterConfig,
        me: NodeId,
        certs_dir: &Path,
        options: TransportOptions,
    ) -> Result<(Transport, Inbound), TransportError> {
        let entry = config.node(me).ok_or(TransportError::UnknownNode(me))?;
        let credentials = Arc::new(Credentials::load(config, me, certs_dir)?);
        let identity = credentials.identity();

        let tls_err = |what: String| move |source| TransportError::Tls { what, source };
        let cert_files = format!(
            "{} with {}",
            certs_dir.join(certs::node_cert_file(me)).display(),
            certs_dir.join(certs::node_key_file(me)).display()
        );
        let server = tls::node_server_config(
            Arc::new(Listening(credentials.clone())),
            Arc::new(Listening(credentials.clone())),
        )
        .map_err(tls_err(cert_files.clone()))?;
        let client = tls::node_peer_config(
            Arc::new(Dialling(credentials.clone())),
            Arc::new(Dialling(credentials.clone())),
        )
        .map_err(tls_err(cert_files))?;

        let bind_addr = resolve_bind(&entry.addr).await?;
        let socket =
            std::net::UdpSocket::bind(bind_addr).map_err(|source| TransportError::Bind {
                addr: bind_addr,
                source,
            })?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(&identity),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind {
            addr: bind_addr,
            source,
        })?;
        let local_addr = endpoint.local_addr().unwrap_or(bind_addr);

        let events = Events::new();
        let (peer_tx, peer_rx) = mpsc::channel(options.inbound_queue.max(1));
        let (client_tx, client_rx) = mpsc::channel(options.client_queue.max(1));
        let peer_ids = config.ids().filter(|&id| id != me).collect();
        let shared = Arc::new(Shared::new(
            me,
            peer_ids,
            peer_tx,
            client_tx,
            events.clone(),
            credentials.clone(),
            config.transport.clone(),
        ));

        let accept_task =
            tokio::spawn(inbound::accept_loop(endpoint.clone(), shared.clone())).abort_handle();
        let link_options = LinkOptions {
            queue: options.peer_queue,
            max_batch: config.transport.max_batch,
            max_frame: config.transport.max_frame_bytes,
            max_message: config.transport.max_message_bytes,
            backoff_min: options.backoff_min,
            backoff_max: options.backoff_max,
            connect_timeout: options.connect_timeout,
        };
        let mut transport = Transport {
            me,
            local_addr,
            endpoint,
            peer_client: client,
            link_options,
            links: BTreeMap::new(),
            shared,
            events,
            accept_task,
            warned_unknown: AtomicBool::new(false),
            credentials,
        };
        transport.set_peers(
            config
                .nodes
                .iter()
                .map(|n| (n.id, n.addr.clone()))
                .collect(),
        );
        info!(id = me, addr = %local_addr, peers = transport.links.len(), "transport listening");
        let inbound = Inbound {
            peers: peer_rx,
            clients: client_rx,
        };
        Ok((transport, inbound))
    }

    /// Makes `peers` (id to `host:port`; this node's own entry is skipped) the nodes this one
    /// sends to and admits: a new peer gets a link, a departed one loses its link and is no
    /// longer admitted (its connections' frames are dropped), a moved one is redialled.
    pub fn set_peers(&mut self, peers: BTreeMap<NodeId, String>) {
        let peers: BTreeMap<NodeId, String> =
            peers.into_iter().filter(|(id, _)| *id != self.me).collect();
        self.shared.set_peers(peers.keys().copied().collect());
        self.links.retain(|id, (link, task)| {
            let keep = peers.get(id) == Some(&link.addr().to_string());
            if !keep {
                task.abort();
                info!(
                    peer = id,
                    "peer link closed: no longer a member at this address"
                );
            }
            keep
        });
        for (id, addr) in peers {
            if self.links.contains_key(&id) {
                continue;
            }
            let (link, task) = PeerLink::spawn(
                self.me,
                id,
                addr,
                self.endpoint.clone(),
                self.peer_client.clone(),
                self.link_options.clone(),
                self.events.clone(),
            );
            self.links.insert(id, (link, task));
        }
        self.events.bump();
    }

    /// Queues `msgs` for peer `to` without waiting. Messages that do not fit in the peer's
    /// queue are dropped and counted; messages for an unknown node (or this one) are dropped.
    pub fn send(&self, to: NodeId, msgs: Vec<Message<Command>>) {
        match self.links.get(&to) {
            Some((link, _)) => link.push(msgs),
            None => {
                if !self.warned_unknown.swap(true, Ordering::Relaxed) {
                    warn!(
                        to,
                        me = self.me,
                        count = msgs.len(),
                        "dropping messages for a node that is not a peer in the configuration (logged once)"
                    );
                }
            }
        }
    }

    /// `(peer, connected, dropped)` for every peer, by id.
    pub fn peer_status(&self) -> Vec<(NodeId, bool, u64)> {
        self.links
            .values()
            .map(|(l, _)| {
                let s = l.status();
                (s.id, s.connected, s.dropped)
            })
            .collect()
    }

    /// Full status of every outbound link, by id.
    pub fn peer_links(&self) -> Vec<PeerLinkStatus> {
        self.links.values().map(|(l, _)| l.status()).collect()
    }

    /// Counters of the accept side.
    pub fn stats(&self) -> InboundStats {
        self.shared.stats()
    }

    /// A receiver that changes whenever a link goes up or down, a connection is refused or
    /// a bad frame is seen: wait on it, then re-read [`Transport::peer_links`] or
    /// [`Transport::stats`].
    pub fn events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// The node's TLS material: [`Credentials::reload`] it to pick up new files.
    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials.clone()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes every connection (peers see a clean close) and waits briefly for the close
    /// to be sent.
    pub async fn shutdown(self) {
        self.stop();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    fn stop(&self) {
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"node shutting down");
        self.accept_task.abort();
        for (_, task) in self.links.values() {
            task.abort();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address to bind for `addr` (`host:port`), IPv4 preferred for a host name with both.
async fn resolve_bind(addr: &str) -> Result<SocketAddr, TransportError> {
    let resolve_err = |message: String| TransportError::Resolve {
        addr: addr.to_string(),
        message,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| resolve_err(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| resolve_err("no address".into()))
}

/// QUIC endpoint settings that survive a restart: the stateless-reset key and the key of
/// the connection-id generator (which recognises this node's connection ids, so a packet
/// of a connection from before a restart is answered with a reset rather than dropped as
/// garbage) are derived from the node's private key, so only the node can forge them.
fn endpoint_config(identity: &Identity) -> quinn::EndpointConfig {
    let derive = |label: &[u8]| {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(b"raftlab quic endpoint v1\0");
        digest.update(label);
        digest.update(identity.key.secret_der());
        digest.finish()
    };
    let reset = derive(b"stateless reset");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset.as_ref());
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    let cid = derive(b"connection id");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}
