//! A node's live TLS material: its certificate and key, the cluster CA and the deny-list
//! (`[tls] revoked`), read at start and again by [`Credentials::reload`] (the node calls it
//! on SIGHUP), so that a renewed certificate, a new CA or a revocation takes effect without
//! a restart.
//!
//! The rustls configurations of the node ([`super::tls::node_server_config`],
//! [`super::tls::node_peer_config`]) do not hold certificates themselves: they ask
//! [`Credentials`] at every handshake, through the resolvers and verifiers below, so the
//! configurations built at start serve every later reload. A reload swaps everything at
//! once (or nothing, when a file is bad: the node keeps what it has and says why).
//!
//! Revocation is checked at two points: every handshake, either side (a revoked client,
//! peer or node certificate is refused with the TLS alert "certificate revoked"), and
//! every client request on an open connection ([`Credentials::refusal`]), so a revoked
//! client's next request is refused even on a connection made before the revocation.
//! The same check binds a client's ids to its certificate: a request whose client id lies
//! outside the namespace of the certificate it came with ([`crate::certs::client_namespace`])
//! is refused, so one client cannot use another's exactly-once session.

use super::error::TransportError;
use super::tls::{self, ClientIdentity, TlsError};
use crate::certs::{self, CertError, CertInfo, Identity};
use crate::config::{ClusterConfig, ConfigError};
use crate::protocol::Request;
use crate::revocation::Revocation;
use model::core::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// Why a reload kept the old material.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Node `me`'s TLS material as of the last (re)load.
pub struct Credentials {
    me: NodeId,
    config_path: PathBuf,
    certs_dir: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

/// Everything one load read, swapped as a whole.
struct Material {
    identity: Identity,
    key: Arc<CertifiedKey>,
    own: CertInfo,
    ca: Vec<CertInfo>,
    revoked: Vec<Revocation>,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<WebPkiServerVerifier>,
}

/// A client connection's certificate, as authorized after its handshake.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub identity: ClientIdentity,
    pub cert: CertInfo,
}

impl Credentials {
    /// Loads `ca.pem` and `node-<me>.pem/.key` from `certs_dir` and the deny-list of
    /// `config`; `config.path` is re-read on reload.
    pub fn load(
        config: &ClusterConfig,
        me: NodeId,
        certs_dir: &Path,
    ) -> Result<Credentials, TransportError> {
        let provider = tls::provider();
        let material = Material::load(me, certs_dir, config.tls.revoked.clone(), &provider)?;
        Ok(Credentials {
            me,
            config_path: config.path.clone(),
            certs_dir: certs_dir.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(material)),
        })
    }

    /// Re-reads the certificate, key and CA from the certificates directory and the
    /// deny-list from `cluster.toml`; new handshakes and requests use them from now on.
    /// Returns what changed, one line each (empty: nothing did). On error nothing changes.
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let config = ClusterConfig::load(&self.config_path)?;
        let new = Material::load(
            self.me,
            &self.certs_dir,
            config.tls.revoked.clone(),
            &self.provider,
        )?;
        let old = self.current();
        let mut changes = Vec::new();
        if old.own.sha256 != new.own.sha256 {
            changes.push(format!(
                "certificate {}: {} (valid until {}) replaces {} (valid until {})",
                self.certs_dir
                    .join(certs::node_cert_file(self.me))
                    .display(),
                new.own.fingerprint(),
                certs::format_utc(new.own.not_after),
                old.own.fingerprint(),
                certs::format_utc(old.own.not_after),
            ));
        }
        if old.identity.key.secret_der() != new.identity.key.secret_der() {
            changes.push(format!(
                "private key {} replaced",
                self.certs_dir.join(certs::node_key_file(self.me)).display()
            ));
        }
        if old.ca != new.ca {
            let sums = |ca: &[CertInfo]| {
                ca.iter()
                    .map(CertInfo::fingerprint)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            changes.push(format!("CA: {} replaces {}", sums(&new.ca), sums(&old.ca)));
        }
        for added in new.revoked.iter().filter(|r| !old.revoked.contains(r)) {
            changes.push(format!("revoked: {added}"));
        }
        for removed in old.revoked.iter().filter(|r| !new.revoked.contains(r)) {
            changes.push(format!("no longer revoked: {removed}"));
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        Ok(changes)
    }

    /// The node's own certificate's end of validity (seconds since the Unix epoch).
    pub fn not_after(&self) -> i64 {
        self.current().own.not_after
    }

    /// The node's certificate and key as loaded last.
    pub fn identity(&self) -> Identity {
        self.current().identity.clone()
    }

    /// Why `caller` may not make `request`, if it may not: its certificate is revoked, or
    /// the request's client id is outside the certificate's namespace.
    pub(crate) fn refusal(&self, caller: &Caller, request: &Request) -> Option<String> {
        if let Some(entry) = self.revoked(&caller.cert) {
            return Some(format!(
                "the client certificate ({}) is revoked ({entry})",
                caller.identity.name
            ));
        }
        match request {
            Request::Op(command)
                if certs::namespace_of_client_id(command.client) != caller.identity.namespace =>
            {
                Some(format!(
                    "client id {} is outside the namespace of the certificate {} \
                     (its ids are {:#x}..={:#x})",
                    command.client,
                    caller.identity.name,
                    certs::client_id(caller.identity.namespace, 0),
                    certs::client_id(caller.identity.namespace, u64::MAX),
                ))
            }
            _ => None,
        }
    }

    fn current(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The deny-list entry naming `cert`, if any.
    fn revoked(&self, cert: &CertInfo) -> Option<Revocation> {
        self.current()
            .revoked
            .iter()
            .find(|r| cert.is_named_by(r))
            .cloned()
    }

    /// A handshake's certificate, refused if revoked.
    fn check_revoked(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let cert = CertInfo::of(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match self.revoked(&cert) {
            Some(_) => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
            None => Ok(()),
        }
    }
}

impl Material {
    fn load(
        me: NodeId,
        certs_dir: &Path,
        revoked: Vec<Revocation>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Material, TransportError> {
        let roots = Arc::new(certs::load_roots(certs_dir)?);
        let ca = certs::describe(&certs_dir.join(certs::CA_CERT))?;
        let identity = certs::load_node_identity(certs_dir, me)?;
        let cert_path = certs_dir.join(certs::node_cert_file(me));
        let own = check_own_identity(&cert_path, me, &identity)?;
        let tls_err = |source: TlsError| TransportError::Tls {
            what: format!(
                "{} with {}",
                cert_path.display(),
                certs_dir.join(certs::node_key_file(me)).display()
            ),
            source,
        };
        let key =
            CertifiedKey::from_der(identity.chain.clone(), identity.key.clone_key(), provider)
                .map_err(|e| tls_err(e.into()))?;
        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_err(e.into()))?;
        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| tls_err(TlsError::Certificate(e.to_string())))?;
        Ok(Material {
            identity,
            key: Arc::new(key),
            own,
            ca,
            revoked,
            clients,
            servers,
        })
    }
}

/// The node's own certificate must carry its identity name: catches a certs directory made
/// for another cluster layout before any peer has to refuse it.
fn check_own_identity(
    path: &Path,
    me: NodeId,
    identity: &Identity,
) -> Result<CertInfo, TransportError> {
    let invalid = |message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let leaf = identity
        .chain
        .first()
        .ok_or_else(|| invalid("no certificate in the file".into()))?;
    let info = CertInfo::of(leaf).map_err(invalid)?;
    let expected = certs::node_name(me);
    if info.names.contains(&expected) {
        Ok(info)
    } else {
        Err(TransportError::WrongIdentity {
            path: path.to_path_buf(),
            expected,
            names: info.names,
        })
    }
}

/// The listening side of every handshake: presents the current certificate, verifies the
/// client's against the current CA and deny-list.
pub(crate) struct Listening(pub Arc<Credentials>);

/// The dialling side of a peer handshake: presents the current certificate, verifies the
/// peer's against the current CA and deny-list.
pub(crate) struct Dialling(pub Arc<Credentials>);

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listening(node {})", self.0.me)
    }
}

impl fmt::Debug for Dialling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dialling(node {})", self.0.me)
    }
}

impl ResolvesServerCert for Listening {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }
}

impl ClientCertVerifier for Listening {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would have to outlive a reload; an empty list tells the client to send the
        // one certificate it has, which every raftlab client does anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified =
            self.0
                .current()
                .clients
                .verify_client_cert(end_entity, intermediates, now)?;
        self.0.check_revoked(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .clients
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .clients
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().clients.supported_verify_schemes()
    }
}

impl ResolvesClientCert for Dialling {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for Dialling {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.0.current().servers.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.0.check_revoked(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .servers
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .servers
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().servers.supported_verify_schemes()
    }
}
