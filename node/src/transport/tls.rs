//! TLS 1.3 (rustls, *ring*) for QUIC, with mutual authentication against the cluster CA.
//!
//! The configurations:
//! - [`node_server_config`]: every node's listener. Demands a client certificate chaining to
//!   the cluster CA (rustls' `WebPkiClientVerifier`, which also requires the client-auth
//!   extended key usage) and not revoked, offers ALPN [`ALPN_PEER`] and [`ALPN_CLIENT`].
//! - [`node_peer_config`]: a node dialing a peer. Presents the node's certificate and
//!   verifies that the server chains to the CA, is not revoked and names the server name it
//!   was dialled with; the transport dials peer N as `node-N.raftlab`, so the handshake
//!   itself proves it reached N.
//!
//!   Both take a verifier and a certificate resolver: the node passes its credentials
//!   (`super::credentials`), asked at every handshake, so that a reload (SIGHUP) changes what
//!   new connections present and accept.
//! - [`lab_client_config`]: the lab's client. Presents a client certificate; verifies nodes
//!   the same way (without a deny-list: the lab trusts the CA). [`peer_client_config`] is
//!   the same with a node's certificate, for tests that act as a peer.
//!
//! The chain check is the TLS layer's; *which* identity a connection may act as is decided
//! after the handshake from the end-entity certificate's DNS names ([`dns_names`],
//! [`Authorized`]): on the peer ALPN the certificate must name `node-N.raftlab` for the id
//! N the peer claims in its `Hello`; on the client ALPN it must name one client identity,
//! `client.raftlab` or `client-NAME.raftlab` (a node certificate is not accepted as a
//! client), which fixes the client ids it may use. No 0-RTT (replayable) and no session
//! resumption: every connection does a full handshake with a fresh certificate check.

use crate::certs::{self, CertInfo, Identity};
use crate::protocol::{ALPN_CLIENT, ALPN_PEER};
use model::core::NodeId;
use quinn::crypto::rustls::{
    HandshakeData, NoInitialCipherSuite, QuicClientConfig, QuicServerConfig,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A TLS configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC: {0}")]
    Quic(#[from] NoInitialCipherSuite),
    #[error("certificate: {0}")]
    Certificate(String),
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC settings shared by every connection: keep-alives so an idle link stays up and a
/// dead one is noticed within [`IDLE_TIMEOUT`], and no stream allowed until the listener
/// has authorized the connection (it then grants streams by kind; a dialler grants none).
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Clusters live on one machine or a LAN: a lost first packet (a peer not up yet) is
    // retried after ~3 RTTs, so don't assume the 333 ms default.
    t.initial_rtt(Duration::from_millis(100));
    // Infallible for a few seconds (the limit is 2^62 ms).
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_concurrent_bidi_streams(0u32.into());
    // Every node-to-node connection carries data one way only (each node dials its own
    // link to each peer, and answers travel on the peer's link), so a receiver's ACKs never
    // ride on data: by default every second packet costs the receiver an ACK-only packet and
    // the sender a wake-up to read it. Ask the other side to ACK only every
    // `ACK_ELICITING_THRESHOLD + 1` packets, or after its max_ack_delay (unchanged, so the
    // loss-detection timeout is too); a gap that makes a packet count as lost is still
    // ACKed at once (the extension's default reordering threshold).
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
    t.ack_frequency_config(Some(acks));
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    Arc::new(t)
}

/// Ack-eliciting packets a QUIC receiver may take before it must ACK (see
/// [`transport_config`]).
const ACK_ELICITING_THRESHOLD: u32 = 7;

/// Interval of QUIC keep-alive packets.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A connection silent this long is closed (a killed or partitioned peer).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The listener of a node: presents the node's current certificate, requires a CA-signed,
/// unrevoked client certificate, offers both ALPNs.
pub fn node_server_config(
    verifier: Arc<dyn ClientCertVerifier>,
    certificate: Arc<dyn ResolvesServerCert>,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    tls.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    // Nodes and the lab do not move: a packet of a connection from another address is
    // dropped rather than followed.
    config.migration(false);
    Ok(config)
}

/// A node dialing its peers: presents the node's current certificate, verifies the peer's
/// against the current CA and deny-list, ALPN [`ALPN_PEER`].
pub fn node_peer_config(
    verifier: Arc<dyn ServerCertVerifier>,
    certificate: Arc<dyn ResolvesClientCert>,
) -> Result<quinn::ClientConfig, TlsError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(certificate);
    finish_client(tls, ALPN_PEER)
}

/// A node's certificate for dialing as a peer, ALPN [`ALPN_PEER`] (what tests use to act as
/// a peer; nodes use [`node_peer_config`]).
pub fn peer_client_config(
    roots: Arc<RootCertStore>,
    identity: Identity,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config(roots, Some(identity), ALPN_PEER)
}

/// The lab's client: presents the client certificate, ALPN [`ALPN_CLIENT`].
pub fn lab_client_config(
    roots: Arc<RootCertStore>,
    identity: Identity,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config(roots, Some(identity), ALPN_CLIENT)
}

/// A client configuration trusting `roots`, presenting `identity` if given (tests use
/// `None` to show that a certificate-less client is refused), offering `alpn`.
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<Identity>,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let tls = match identity {
        Some(identity) => builder.with_client_auth_cert(identity.chain, identity.key)?,
        None => builder.with_no_client_auth(),
    };
    finish_client(tls, alpn)
}

/// The settings every client configuration shares: `alpn`, no resumption, no 0-RTT.
fn finish_client(
    mut tls: rustls::ClientConfig,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// The DNS names in the subject alternative names of `cert`.
pub fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    CertInfo::of(cert)
        .map(|info| info.names)
        .map_err(TlsError::Certificate)
}

/// The ALPN protocol a connection negotiated.
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?
        .protocol
}

/// The remote end-entity certificate (TLS already verified its chain).
pub fn remote_cert(conn: &quinn::Connection) -> Result<CertInfo, TlsError> {
    let chain = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::Certificate("no certificate presented".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::Certificate("empty certificate chain".into()))?;
    CertInfo::of(leaf).map_err(TlsError::Certificate)
}

/// What an authenticated connection may act as, from its ALPN and certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorized {
    /// A node of the cluster (other than the listener), on the peer ALPN. Its certificate
    /// names these ids; its `Hello` must claim one of them.
    Peer(Vec<NodeId>),
    /// A client, on the client ALPN.
    Client(ClientIdentity),
}

/// The client identity a certificate carries, and the client ids it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// `client.raftlab` or `client-NAME.raftlab`.
    pub name: String,
    /// See [`certs::client_namespace`].
    pub namespace: u64,
}

/// Decides what a connection may do; `Err` carries the reason to log and close with.
/// `is_member` says whether an id is a node of the cluster other than the listener itself.
pub fn authorize(
    alpn: Option<&[u8]>,
    names: &[String],
    is_member: impl Fn(NodeId) -> bool,
) -> Result<Authorized, String> {
    match alpn {
        Some(ALPN_PEER) => {
            let ids: Vec<NodeId> = names
                .iter()
                .filter_map(|n| certs::node_id_of_name(n))
                .filter(|&id| is_member(id))
                .collect();
            if ids.is_empty() {
                Err(format!(
                    "peer certificate names no other member of this cluster: not a node of it, removed from it, or not added yet (names: {names:?})"
                ))
            } else {
                Ok(Authorized::Peer(ids))
            }
        }
        Some(ALPN_CLIENT) => {
            let clients: Vec<ClientIdentity> = names
                .iter()
                .filter_map(|n| {
                    certs::client_namespace(n).map(|namespace| ClientIdentity {
                        name: n.clone(),
                        namespace,
                    })
                })
                .collect();
            match clients.as_slice() {
                [one] => Ok(Authorized::Client(one.clone())),
                [] => Err(format!(
                    "client certificate names no client identity ({} or client-NAME.raftlab; \
                     names: {names:?})",
                    certs::CLIENT_NAME
                )),
                _ => Err(format!(
                    "client certificate names several client identities: {names:?}"
                )),
            }
        }
        Some(other) => Err(format!(
            "unknown ALPN protocol {:?}",
            String::from_utf8_lossy(other)
        )),
        None => Err("no ALPN protocol negotiated".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn peers_must_name_another_member_and_clients_the_client_name() {
        let member = |id: NodeId| id == 2 || id == 3;
        assert_eq!(
            authorize(
                Some(ALPN_PEER),
                &names(&["node-2.raftlab", "127.0.0.1"]),
                member
            ),
            Ok(Authorized::Peer(vec![2]))
        );
        assert!(authorize(Some(ALPN_PEER), &names(&["node-1.raftlab"]), member).is_err());
        assert!(authorize(Some(ALPN_PEER), &names(&["client.raftlab"]), member).is_err());
        assert_eq!(
            authorize(Some(ALPN_CLIENT), &names(&["client.raftlab"]), member),
            Ok(Authorized::Client(ClientIdentity {
                name: "client.raftlab".into(),
                namespace: certs::SHARED_CLIENT_NAMESPACE
            }))
        );
        assert_eq!(
            authorize(Some(ALPN_CLIENT), &names(&["client-al.raftlab"]), member),
            Ok(Authorized::Client(ClientIdentity {
                name: "client-al.raftlab".into(),
                namespace: certs::client_namespace("client-al.raftlab").unwrap()
            }))
        );
        assert!(authorize(
            Some(ALPN_CLIENT),
            &names(&["client.raftlab", "client-al.raftlab"]),
            member
        )
        .is_err());
        assert!(authorize(Some(ALPN_CLIENT), &names(&["node-2.raftlab"]), member).is_err());
        assert!(authorize(Some(b"h3"), &names(&["client.raftlab"]), member).is_err());
        assert!(authorize(None, &names(&["client.raftlab"]), member).is_err());
    }
}
