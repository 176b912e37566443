//! TLS 1.3 (rustls, *ring*) for QUIC, with mutual authentication against the cluster CA.
//!
//! Three configurations:
//! - [`server_config`]: every node's listener. Demands a client certificate chaining to the
//!   cluster CA (rustls' `WebPkiClientVerifier`, which also requires the client-auth
//!   extended key usage), offers ALPN [`ALPN_PEER`] and [`ALPN_CLIENT`].
//! - [`peer_client_config`]: a node dialing a peer. Presents the node's certificate and
//!   verifies that the server chains to the CA and names the server name it was dialled
//!   with; the transport dials peer N as `node-N.raftlab`, so the handshake itself proves it
//!   reached N.
//! - [`lab_client_config`]: the lab's client. Presents the client certificate; verifies nodes
//!   the same way.
//!
//! The chain check is the TLS layer's; *which* identity a connection may act as is decided
//! after the handshake from the end-entity certificate's DNS names ([`dns_names`],
//! [`Authorized`]): on the peer ALPN the certificate must name `node-N.raftlab` for the id
//! N the peer claims in its `Hello`; on the client ALPN it must name `client.raftlab` (a
//! node certificate is not accepted as a client). No 0-RTT (replayable) and no session
//! resumption: every connection does a full handshake with a fresh certificate check.

use crate::certs::{self, Identity};
use crate::protocol::{ALPN_CLIENT, ALPN_PEER};
use model::core::NodeId;
use quinn::crypto::rustls::{
    HandshakeData, NoInitialCipherSuite, QuicClientConfig, QuicServerConfig,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
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

fn provider() -> Arc<CryptoProvider> {
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
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    Arc::new(t)
}

/// Interval of QUIC keep-alive packets.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A connection silent this long is closed (a killed or partitioned peer).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The listener of a node: requires a CA-signed client certificate, offers both ALPNs.
pub fn server_config(
    roots: Arc<RootCertStore>,
    identity: Identity,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
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

/// A node dialing its peers: presents the node certificate, ALPN [`ALPN_PEER`].
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
    let mut tls = match identity {
        Some(identity) => builder.with_client_auth_cert(identity.chain, identity.key)?,
        None => builder.with_no_client_auth(),
    };
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
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| TlsError::Certificate(format!("unparsable certificate: {e}")))?;
    let sans = parsed
        .subject_alternative_name()
        .map_err(|e| TlsError::Certificate(format!("bad subject alternative names: {e}")))?;
    Ok(sans
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The ALPN protocol a connection negotiated.
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?
        .protocol
}

/// The DNS names of the remote end-entity certificate (TLS already verified its chain).
pub fn remote_dns_names(conn: &quinn::Connection) -> Result<Vec<String>, TlsError> {
    let chain = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::Certificate("no certificate presented".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::Certificate("empty certificate chain".into()))?;
    dns_names(leaf)
}

/// What an authenticated connection may act as, from its ALPN and certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorized {
    /// A node of the cluster (other than the listener), on the peer ALPN. Its certificate
    /// names these ids; its `Hello` must claim one of them.
    Peer(Vec<NodeId>),
    /// The lab's client, on the client ALPN.
    Client,
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
                    "peer certificate names no other node of this cluster (names: {names:?})"
                ))
            } else {
                Ok(Authorized::Peer(ids))
            }
        }
        Some(ALPN_CLIENT) => {
            if names.iter().any(|n| n == certs::CLIENT_NAME) {
                Ok(Authorized::Client)
            } else {
                Err(format!(
                    "client certificate does not name {} (names: {names:?})",
                    certs::CLIENT_NAME
                ))
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
            Ok(Authorized::Client)
        );
        assert!(authorize(Some(ALPN_CLIENT), &names(&["node-2.raftlab"]), member).is_err());
        assert!(authorize(Some(b"h3"), &names(&["client.raftlab"]), member).is_err());
        assert!(authorize(None, &names(&["client.raftlab"]), member).is_err());
    }
}
