//! The cluster's certificates: `raft-node certs` makes and renews them, nodes and the lab
//! load them.
//!
//! One directory holds everything (the file names `docs/deploy.md` uses):
//!
//! | file | what |
//! |------|------|
//! | `ca.pem`, `ca.key` | the cluster CA (self-signed). `ca.key` is only needed to issue certificates |
//! | `node-N.pem`, `node-N.key` | node N: server *and* client authentication (it accepts and dials peers) |
//! | `client.pem`, `client.key` | the lab's shared client: client authentication only |
//! | `client-NAME.pem`, `client-NAME.key` | a client of its own ([`issue_client`]) |
//!
//! Identity is carried by DNS names in the subject alternative name: node N's certificate
//! names `node-N.raftlab` (see [`node_name`]) plus the host of its address (an IP address or
//! a DNS name outside `.raftlab`, so that an address can never add an identity), the shared
//! client certificate names `client.raftlab` ([`CLIENT_NAME`]) and a named client
//! `client-NAME.raftlab`. Those `.raftlab` names are what the transport checks: a node dials
//! peer N with server name `node-N.raftlab`, so the TLS handshake itself verifies it reached
//! N; a node accepts a peer connection only from a certificate naming the id the peer claims,
//! and a client connection only from a client name.
//!
//! A client certificate also bounds the client ids it may use ([`client_namespace`]): the
//! high [`NAMESPACE_BITS`] bits of a client id are its namespace, `0` for the shared client
//! and a hash of the name for a named client, so one client cannot act as another in the
//! nodes' exactly-once sessions.
//!
//! Certificates are valid for a limited time ([`Validity`]: one year for nodes and clients,
//! ten for the CA by default); [`renew`] signs a new certificate for an existing identity
//! (with its key, or a new one) under the same CA. A certificate is revoked by listing its
//! fingerprint or serial ([`Revocation`]) in `cluster.toml`. Private keys are PKCS#8 PEM
//! written with mode 0600 (atomically: temporary file, fsync, rename), and a key readable by
//! anyone but its owner is refused on load. An existing CA is never replaced unless asked
//! (`force`), because replacing it invalidates every certificate already handed out.

use crate::config::{ClusterConfig, NodeEntry};
use crate::revocation::{hex, strip_zeros, Revocation};
use model::core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;
use time::OffsetDateTime;

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key's file name.
pub const CA_KEY: &str = "ca.key";
/// The shared client certificate's file name.
pub const CLIENT_CERT: &str = "client.pem";
/// The shared client private key's file name.
pub const CLIENT_KEY: &str = "client.key";
/// The DNS name the shared client certificate carries.
pub const CLIENT_NAME: &str = "client.raftlab";
/// The domain of every identity name: no address host may lie in it.
const DOMAIN: &str = "raftlab";
/// Suffix of identity names.
const SUFFIX: &str = ".raftlab";
/// The widest mode a private key file may have.
const KEY_MODE: u32 = 0o600;

/// Bits of a client id that name the certificate it must come with.
pub const NAMESPACE_BITS: u32 = 24;
/// Bits of a client id free for the client to choose within its namespace.
pub const LOCAL_BITS: u32 = 64 - NAMESPACE_BITS;
// A registration keeps the namespace bits of the registering command and fills the rest
// from its log index: sound only if the two splits agree.
const _: () = assert!(LOCAL_BITS == model::kv::SESSION_INDEX_BITS);
/// The namespace of the shared client certificate (`client.raftlab`): client ids below
/// 2^[`LOCAL_BITS`].
pub const SHARED_CLIENT_NAMESPACE: u64 = 0;

/// Default lifetime of node and client certificates, in days.
pub const DEFAULT_DAYS: u32 = 365;
/// Default lifetime of the CA certificate, in days: long enough for many renewals.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// New certificates are valid from this long before now, so that machines whose clocks lag
/// a little accept them at once.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// `node-N.pem`.
pub fn node_cert_file(id: NodeId) -> String {
    format!("node-{id}.pem")
}

/// `node-N.key`.
pub fn node_key_file(id: NodeId) -> String {
    format!("node-{id}.key")
}

/// The identity name node `id`'s certificate carries: `node-N.raftlab`.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}{SUFFIX}")
}

/// The node id of an identity name (`node-N.raftlab` → N); `None` for any other name.
pub fn node_id_of_name(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix("node-")?.strip_suffix(SUFFIX)?;
    // Exactly the canonical spelling: no sign, no leading zeros.
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks the NAME of a named client (`client-NAME`): 1 to 32 lowercase letters, digits and
/// inner hyphens, so that `client-NAME.raftlab` is one DNS label and one file name.
pub fn validate_client_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "client name {name:?}: use 1 to 32 lowercase letters, digits and inner hyphens"
        ))
    }
}

/// The client namespace of an identity name: [`SHARED_CLIENT_NAMESPACE`] for
/// `client.raftlab`, the first [`NAMESPACE_BITS`] bits of the SHA-256 of the name for
/// `client-NAME.raftlab`; `None` for a name that is no client identity.
pub fn client_namespace(identity: &str) -> Option<u64> {
    if identity == CLIENT_NAME {
        return Some(SHARED_CLIENT_NAMESPACE);
    }
    let name = identity.strip_prefix("client-")?.strip_suffix(SUFFIX)?;
    validate_client_name(name).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest.as_ref()[..8]);
    Some(u64::from_be_bytes(prefix) >> LOCAL_BITS)
}

/// The client id `local` (its low [`LOCAL_BITS`] bits) in `namespace`.
pub fn client_id(namespace: u64, local: u64) -> u64 {
    (namespace << LOCAL_BITS) | (local & ((1 << LOCAL_BITS) - 1))
}

/// The namespace a client id lies in.
pub fn namespace_of_client_id(id: u64) -> u64 {
    id >> LOCAL_BITS
}

/// Whose certificate: a node, the shared client, or a named client. Spelled as in the file
/// names: `node-N`, `client`, `client-NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Node(NodeId),
    /// `None`: the shared client certificate.
    Client(Option<String>),
}

impl Subject {
    /// The DNS name the certificate carries.
    pub fn identity(&self) -> String {
        match self {
            Subject::Node(id) => node_name(*id),
            Subject::Client(None) => CLIENT_NAME.to_string(),
            Subject::Client(Some(name)) => format!("client-{name}{SUFFIX}"),
        }
    }

    /// The certificate's file name.
    pub fn cert_file(&self) -> String {
        format!("{self}.pem")
    }

    /// The private key's file name.
    pub fn key_file(&self) -> String {
        format!("{self}.key")
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Node(id) => write!(f, "node-{id}"),
            Subject::Client(None) => write!(f, "client"),
            Subject::Client(Some(name)) => write!(f, "client-{name}"),
        }
    }
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "client" {
            return Ok(Subject::Client(None));
        }
        if let Some(name) = s.strip_prefix("client-") {
            validate_client_name(name)?;
            return Ok(Subject::Client(Some(name.to_string())));
        }
        s.strip_prefix("node-")
            .and_then(|_| node_id_of_name(&format!("{s}{SUFFIX}")))
            .map(Subject::Node)
            .ok_or_else(|| format!("{s:?}: expected node-N, client or client-NAME"))
    }
}

/// What a certificate is, as far as rotation and revocation care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the whole certificate (DER).
    pub sha256: [u8; 32],
    /// The serial number, without leading zero bytes.
    pub serial: Vec<u8>,
    /// The end of its validity, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The DNS names of its subject alternative name.
    pub names: Vec<String>,
}

impl CertInfo {
    /// Parses `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> Result<CertInfo, String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("unparsable certificate: {e}"))?;
        let sans = parsed
            .subject_alternative_name()
            .map_err(|e| format!("bad subject alternative names: {e}"))?;
        let names = sans
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
            .unwrap_or_default();
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, cert).as_ref());
        Ok(CertInfo {
            sha256,
            serial: strip_zeros(parsed.tbs_certificate.raw_serial()),
            not_after: parsed.validity().not_after.timestamp(),
            names,
        })
    }

    /// `sha256:<hex>`, what `[tls] revoked` takes.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex(&self.sha256))
    }

    /// `serial:<hex>`, the other spelling `[tls] revoked` takes.
    pub fn serial_number(&self) -> String {
        format!("serial:{}", hex(&self.serial))
    }

    /// Whether `[tls] revoked` entry `entry` names this certificate.
    pub fn is_named_by(&self, entry: &Revocation) -> bool {
        entry.matches(&self.sha256, &self.serial)
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn format_utc(seconds: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{seconds} s after 1970"),
    }
}

/// A problem making or loading certificates, naming the file at fault.
#[derive(Debug, Error)]
pub enum CertError {
    #[error(
        "{path}: a cluster CA already exists; pass --force to replace it \
         (every node and client then needs the new files)"
    )]
    CaExists { path: PathBuf },
    #[error(
        "{path}: already exists; renew it with --renew {subject} (add --new-key for a new key)"
    )]
    Exists { path: PathBuf, subject: String },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path}: private key has mode {mode:04o}, wider than 0600 (others could read it); \
         run chmod 600 on it"
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("node {id}: address {addr:?}: {message}")]
    Address {
        id: NodeId,
        addr: String,
        message: String,
    },
    #[error("{0}")]
    Subject(String),
    #[error("generating the {what} certificate: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("no randomness for a serial number")]
    Random,
}

/// A certificate chain (end-entity first) and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// How long new certificates are valid, in days from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Node and client certificates (never past the CA's own end).
    pub days: u32,
    /// The CA certificate (only when a CA is made).
    pub ca_days: u32,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            days: DEFAULT_DAYS,
            ca_days: DEFAULT_CA_DAYS,
        }
    }
}

/// A certificate just written.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    /// The key file, when a new key was written.
    pub new_key: Option<PathBuf>,
    pub info: CertInfo,
    /// The requested lifetime would have outlived the CA: it ends with the CA instead.
    pub clamped_to_ca: bool,
}

/// Makes the cluster CA, one certificate per node of `config`, and the shared client
/// certificate, in `out` (created if missing), with the default [`Validity`]. Refuses if
/// `out` already holds a CA, unless `force`.
pub fn generate(config: &ClusterConfig, out: &Path, force: bool) -> Result<(), CertError> {
    generate_with(config, out, force, &Validity::default())
}

/// [`generate`] with any validity.
pub fn generate_with(
    config: &ClusterConfig,
    out: &Path,
    force: bool,
    validity: &Validity,
) -> Result<(), CertError> {
    generate_with_extra_ips(config, out, force, validity, &[])
}

/// [`generate_with`], every node certificate also naming `extra_ips`: for servers that check
/// a connecting peer's address against its certificate (etcd does) when peers dial from an
/// address other than their own (on loopback, from 127.0.0.1).
pub fn generate_with_extra_ips(
    config: &ClusterConfig,
    out: &Path,
    force: bool,
    validity: &Validity,
    extra_ips: &[IpAddr],
) -> Result<(), CertError> {
    for existing in [CA_CERT, CA_KEY].map(|f| out.join(f)) {
        if !force && existing.exists() {
            return Err(CertError::CaExists { path: existing });
        }
    }
    // Every address is checked before anything is written.
    let node_sans = config
        .nodes
        .iter()
        .map(|node| Ok((node.id, node_sans(node)?)))
        .collect::<Result<Vec<_>, CertError>>()?;
    fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_path_buf(),
        source,
    })?;

    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().map_err(generate_err("CA"))?;
    let mut ca_params = ca_params();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.not_before = now - CLOCK_SKEW;
    ca_params.not_after = now + time::Duration::days(validity.ca_days.into());
    ca_params.serial_number = Some(random_serial()?);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate_err("CA"))?;
    let ca = Ca {
        not_after: ca_params.not_after,
        issuer: Issuer::new(ca_params, ca_key),
    };

    let mut files: Vec<(String, String, u32)> = Vec::new();
    for (id, mut sans) in node_sans {
        for ip in extra_ips {
            let san = SanType::IpAddress(*ip);
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        let subject = Subject::Node(id);
        let key = KeyPair::generate().map_err(generate_err(&subject.to_string()))?;
        let (cert, _) = ca.sign(&subject, sans, &key, validity.days)?;
        files.push((subject.cert_file(), cert.pem(), 0o644));
        files.push((subject.key_file(), key.serialize_pem(), KEY_MODE));
    }
    let subject = Subject::Client(None);
    let key = KeyPair::generate().map_err(generate_err("client"))?;
    let (cert, _) = ca.sign(&subject, client_sans(&subject)?, &key, validity.days)?;
    files.push((subject.cert_file(), cert.pem(), 0o644));
    files.push((subject.key_file(), key.serialize_pem(), KEY_MODE));

    // The CA last: its presence means a complete set was written.
    files.push((CA_KEY.into(), ca.issuer.key().serialize_pem(), KEY_MODE));
    files.push((CA_CERT.into(), ca_cert.pem(), 0o644));
    for (file, contents, mode) in files {
        write_atomic(&out.join(file), contents.as_bytes(), mode)?;
    }
    sync_dir(out);
    Ok(())
}

/// Signs a new certificate for `subject` with the CA in `dir`, for its existing key (or a
/// new one if `new_key`: what a leaked key needs), and replaces its files atomically. A
/// node's names come from `config` as for [`generate`]; a client must have been issued
/// before.
pub fn renew(
    config: &ClusterConfig,
    dir: &Path,
    subject: &Subject,
    new_key: bool,
    days: u32,
) -> Result<Issued, CertError> {
    let sans = match subject {
        Subject::Node(id) => {
            let node = config.node(*id).ok_or_else(|| {
                CertError::Subject(format!(
                    "--renew {subject}: no node {id} in {} (ids: {:?})",
                    config.path.display(),
                    config.ids().collect::<Vec<_>>()
                ))
            })?;
            node_sans(node)?
        }
        Subject::Client(_) => {
            let cert = dir.join(subject.cert_file());
            if !cert.exists() {
                return Err(CertError::Subject(format!(
                    "--renew {subject}: {} does not exist; issue it first{}",
                    cert.display(),
                    match subject {
                        Subject::Client(Some(name)) => format!(" (--client {name})"),
                        _ => " (raft-node certs)".into(),
                    }
                )));
            }
            client_sans(subject)?
        }
    };
    let ca = Ca::load(dir)?;
    let key_path = dir.join(subject.key_file());
    let key = if new_key {
        KeyPair::generate().map_err(generate_err(&subject.to_string()))?
    } else {
        load_key_pair(&key_path)?
    };
    let (cert, clamped_to_ca) = ca.sign(subject, sans, &key, days)?;
    let cert_path = dir.join(subject.cert_file());
    let info = CertInfo::of(cert.der()).map_err(|message| CertError::Invalid {
        path: cert_path.clone(),
        message,
    })?;
    // The key first: a crash in between leaves the old certificate with a key it does not
    // match, which loading reports, rather than a new certificate nobody can use.
    if new_key {
        write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    }
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    sync_dir(dir);
    Ok(Issued {
        cert: cert_path,
        new_key: new_key.then_some(key_path),
        info,
        clamped_to_ca,
    })
}

/// Makes `client-NAME.pem` and `client-NAME.key` in `dir` with its CA: a client with an
/// identity (and a client id namespace) of its own. Refuses an existing one, and a name
/// whose namespace another client certificate in `dir` (or the shared one) already has.
pub fn issue_client(dir: &Path, name: &str, days: u32) -> Result<Issued, CertError> {
    validate_client_name(name).map_err(CertError::Subject)?;
    let subject = Subject::Client(Some(name.to_string()));
    for file in [subject.cert_file(), subject.key_file()] {
        let path = dir.join(file);
        if path.exists() {
            return Err(CertError::Exists {
                path,
                subject: subject.to_string(),
            });
        }
    }
    let namespace = client_namespace(&subject.identity())
        .ok_or_else(|| CertError::Subject(format!("{subject}: no client namespace")))?;
    for other in existing_clients(dir)? {
        if client_namespace(&other.identity()) == Some(namespace) {
            return Err(CertError::Subject(format!(
                "--client {name}: its client id namespace is the one of {other}; pick another name"
            )));
        }
    }
    let ca = Ca::load(dir)?;
    let key = KeyPair::generate().map_err(generate_err(&subject.to_string()))?;
    let (cert, clamped_to_ca) = ca.sign(&subject, client_sans(&subject)?, &key, days)?;
    let cert_path = dir.join(subject.cert_file());
    let key_path = dir.join(subject.key_file());
    let info = CertInfo::of(cert.der()).map_err(|message| CertError::Invalid {
        path: cert_path.clone(),
        message,
    })?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    sync_dir(dir);
    Ok(Issued {
        cert: cert_path,
        new_key: Some(key_path),
        info,
        clamped_to_ca,
    })
}

/// Every certificate in a PEM file, described (what `raft-node certs --fingerprint` prints).
pub fn describe(path: &Path) -> Result<Vec<CertInfo>, CertError> {
    load_certs(path)?
        .iter()
        .map(|cert| {
            CertInfo::of(cert).map_err(|message| CertError::Invalid {
                path: path.to_path_buf(),
                message,
            })
        })
        .collect()
}

/// The client certificates in `dir`: the shared one (always: its namespace is reserved) and
/// every `client-NAME.pem`.
fn existing_clients(dir: &Path) -> Result<Vec<Subject>, CertError> {
    let mut clients = vec![Subject::Client(None)];
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(clients),
        Err(source) => {
            return Err(CertError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(Ok(subject @ Subject::Client(Some(_)))) =
            file.strip_suffix(".pem").map(Subject::from_str)
        {
            clients.push(subject);
        }
    }
    Ok(clients)
}

/// The cluster CA, able to sign.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

impl Ca {
    /// `dir/ca.pem` and `dir/ca.key`, checked to belong together.
    fn load(dir: &Path) -> Result<Ca, CertError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert =
            load_certs(&cert_path)?
                .into_iter()
                .next()
                .ok_or_else(|| CertError::Invalid {
                    path: cert_path.clone(),
                    message: "no certificate in the file".into(),
                })?;
        let key = load_key_pair(&key_path)?;
        let invalid = |message: String| CertError::Invalid {
            path: cert_path.clone(),
            message,
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| invalid(format!("unparsable certificate: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(invalid(format!(
                "the CA certificate does not belong to {}",
                key_path.display()
            )));
        }
        let not_after =
            OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp())
                .map_err(|e| invalid(format!("bad end of validity: {e}")))?;
        // The CA's issuer fields (name, key identifier, usages) are those `generate` gave it.
        Ok(Ca {
            issuer: Issuer::new(ca_params(), key),
            not_after,
        })
    }

    /// A certificate for `subject` with `sans`, valid for `days` (but not past the CA);
    /// also whether it was cut short by the CA's end.
    fn sign(
        &self,
        subject: &Subject,
        sans: Vec<SanType>,
        key: &KeyPair,
        days: u32,
    ) -> Result<(rcgen::Certificate, bool), CertError> {
        let now = OffsetDateTime::now_utc();
        let identity = subject.identity();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&identity);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match subject {
            Subject::Node(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Subject::Client(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        // A fresh serial per certificate, so that a renewed one is told apart (and revoked)
        // by serial too.
        params.serial_number = Some(random_serial()?);
        params.not_before = now - CLOCK_SKEW;
        let wanted = now + time::Duration::days(days.into());
        let clamped = wanted > self.not_after;
        params.not_after = wanted.min(self.not_after);
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(generate_err(&subject.to_string()))?;
        Ok((cert, clamped))
    }
}

/// The CA's name and usages, the same when it is made and when it signs later.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("raftlab cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn generate_err(what: &str) -> impl Fn(rcgen::Error) -> CertError {
    let what = what.to_string();
    move |source| CertError::Generate {
        what: what.clone(),
        source,
    }
}

fn random_serial() -> Result<SerialNumber, CertError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Random)?;
    // Positive and never starting with a zero byte: DER keeps all 16 bytes as written.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Node `node`'s names: `node-N.raftlab` and the host of its address. A host in the
/// `raftlab` domain is refused: the certificate would carry that identity too (an address
/// `client.raftlab:1` would make the node a client, `node-2.raftlab:1` node 2).
fn node_sans(node: &NodeEntry) -> Result<Vec<SanType>, CertError> {
    let address_err = |message: String| CertError::Address {
        id: node.id,
        addr: node.addr.clone(),
        message,
    };
    let identity = node_name(node.id);
    let mut sans = vec![dns(&identity).map_err(generate_err(&format!("node-{}", node.id)))?];
    let host = addr_host(&node.addr).ok_or_else(|| address_err("expected host:port".into()))?;
    let host_san = match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => {
            if in_identity_domain(host) {
                return Err(address_err(format!(
                    "host {host:?} lies in the .{DOMAIN} domain of the cluster's identities, \
                     so the node's certificate would carry that identity too; \
                     use an IP address or a host name outside .{DOMAIN}"
                )));
            }
            dns(host).map_err(|e| address_err(format!("host is not a valid DNS name: {e}")))?
        }
    };
    if !sans.contains(&host_san) {
        sans.push(host_san);
    }
    Ok(sans)
}

/// DNS names compare without case and a trailing dot is the same name.
fn in_identity_domain(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == DOMAIN || host.ends_with(SUFFIX)
}

fn client_sans(subject: &Subject) -> Result<Vec<SanType>, CertError> {
    Ok(vec![
        dns(&subject.identity()).map_err(generate_err(&subject.to_string()))?
    ])
}

/// The CA certificates of `dir/ca.pem`, as a trust store.
pub fn load_roots(dir: &Path) -> Result<rustls::RootCertStore, CertError> {
    let path = dir.join(CA_CERT);
    let certs = load_certs(&path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| CertError::Invalid {
            path: path.clone(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Node `id`'s certificate and key: `dir/node-N.pem`, `dir/node-N.key`.
pub fn load_node_identity(dir: &Path, id: NodeId) -> Result<Identity, CertError> {
    load_identity(&dir.join(node_cert_file(id)), &dir.join(node_key_file(id)))
}

/// The shared client certificate and key: `dir/client.pem`, `dir/client.key`.
pub fn load_client_identity(dir: &Path) -> Result<Identity, CertError> {
    load_identity(&dir.join(CLIENT_CERT), &dir.join(CLIENT_KEY))
}

/// `subject`'s certificate and key in `dir` (`client-NAME.pem`, `client-NAME.key`, ...).
pub fn load_subject_identity(dir: &Path, subject: &Subject) -> Result<Identity, CertError> {
    load_identity(
        &dir.join(subject.cert_file()),
        &dir.join(subject.key_file()),
    )
}

/// A certificate chain (end-entity first) from a PEM file and the private key from another;
/// the key file must not be readable by anyone but its owner.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, CertError> {
    let chain = load_certs(cert)?;
    let bytes = read_key(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::Invalid {
        path: key.to_path_buf(),
        message: format!("no usable private key: {e}"),
    })?;
    Ok(Identity {
        chain,
        key: key_der,
    })
}

/// A private key file's bytes, after checking its mode is at most 0600.
fn read_key(path: &Path) -> Result<Vec<u8>, CertError> {
    let meta = fs::metadata(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !KEY_MODE != 0 {
        return Err(CertError::KeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    read(path)
}

/// A private key for signing, from a PEM file of mode at most 0600.
fn load_key_pair(path: &Path) -> Result<KeyPair, CertError> {
    let bytes = read_key(path)?;
    let invalid = |message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("not a PEM file".into()))?;
    KeyPair::from_pem(&text).map_err(|e| invalid(format!("no usable private key: {e}")))
}

/// Every certificate in a PEM file; an error if it holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::Invalid {
            path: path.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "raftlab");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn dns(name: &str) -> Result<SanType, rcgen::Error> {
    Ok(SanType::DnsName(name.try_into()?))
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn addr_host(addr: &str) -> Option<&str> {
    let (host, _port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(host)
}

/// Writes `path` through a temporary file created with `mode`, fsynced, then renamed over.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let write_err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` applies only when the file is created: enforce it on a leftover too.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Best effort: makes the renames durable.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_round_trip_and_only_canonical_ones_parse() {
        assert_eq!(node_name(7), "node-7.raftlab");
        assert_eq!(node_id_of_name("node-7.raftlab"), Some(7));
        for bad in [
            "node-07.raftlab",
            "node-+7.raftlab",
            "node-.raftlab",
            "node-7.raftlab.evil",
            "xnode-7.raftlab",
            CLIENT_NAME,
            "node-99999999999999999999999.raftlab",
        ] {
            assert_eq!(node_id_of_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(addr_host("127.0.0.1:1"), Some("127.0.0.1"));
        assert_eq!(addr_host("[::1]:1"), Some("::1"));
        assert_eq!(addr_host("db1.example.net:1"), Some("db1.example.net"));
        assert_eq!(addr_host(":1"), None);
    }

    /// A fresh directory of its own for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("raftlab-certs-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(dir: &Path, hosts: &[&str]) -> ClusterConfig {
        let text: String = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| format!("[[node]]\nid = {}\naddr = \"{host}:1500{i}\"\n", i + 1))
            .collect();
        ClusterConfig::parse(&dir.join("cluster.toml"), &text).unwrap()
    }

    fn info(path: &Path) -> CertInfo {
        describe(path).unwrap().remove(0)
    }

    /// Verifies `path`'s certificate against `dir/ca.pem` as a node does for a client.
    fn chains_to_ca(dir: &Path, path: &Path) -> bool {
        let roots = std::sync::Arc::new(load_roots(dir).unwrap());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        let cert = load_certs(path).unwrap().remove(0);
        verifier
            .verify_client_cert(&cert, &[], rustls_pki_types::UnixTime::now())
            .is_ok()
    }

    fn days_from_now(not_after: i64) -> i64 {
        (not_after - OffsetDateTime::now_utc().unix_timestamp() + 3600) / 86_400
    }

    #[test]
    fn certificates_have_a_validity_and_renewal_keeps_key_and_ca() {
        let dir = temp_dir("renew");
        let config = config(&dir, &["127.0.0.1", "db2.example.net"]);
        let out = dir.join("certs");
        let validity = Validity {
            days: 30,
            ca_days: 400,
        };
        generate_with(&config, &out, false, &validity).unwrap();
        let before = info(&out.join("node-2.pem"));
        assert_eq!(days_from_now(before.not_after), 30);
        assert_eq!(days_from_now(info(&out.join(CA_CERT)).not_after), 400);
        let key_before = fs::read(out.join("node-2.key")).unwrap();

        let issued = renew(&config, &out, &Subject::Node(2), false, 10).unwrap();
        assert!(issued.new_key.is_none() && !issued.clamped_to_ca);
        let after = info(&out.join("node-2.pem"));
        assert_eq!(after, issued.info);
        assert_eq!(days_from_now(after.not_after), 10);
        assert_ne!(after.sha256, before.sha256);
        assert_ne!(after.serial, before.serial);
        assert_eq!(after.names, before.names);
        assert_eq!(fs::read(out.join("node-2.key")).unwrap(), key_before);
        assert!(chains_to_ca(&out, &out.join("node-2.pem")));
        // The renewed certificate goes with the kept key.
        let identity = load_node_identity(&out, 2).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(identity.chain, identity.key, &provider).unwrap();

        // A new key for a leaked one; past the CA's end it is cut short.
        let issued = renew(&config, &out, &Subject::Client(None), true, 1000).unwrap();
        assert!(issued.clamped_to_ca);
        assert_eq!(days_from_now(issued.info.not_after), 400);
        assert_ne!(fs::read(out.join(CLIENT_KEY)).unwrap(), key_before);
        assert!(chains_to_ca(&out, &out.join(CLIENT_CERT)));
        let mode = fs::metadata(out.join(CLIENT_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing is left behind by the atomic replacement.
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // What cannot be renewed is named.
        let err = renew(&config, &out, &Subject::Node(9), false, 10).unwrap_err();
        assert!(err.to_string().contains("no node 9"), "{err}");
        let err = renew(&config, &out, &"client-bob".parse().unwrap(), false, 10).unwrap_err();
        assert!(err.to_string().contains("--client bob"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn addresses_that_would_mint_an_identity_are_refused() {
        for host in [
            "client.raftlab",
            "node-2.raftlab",
            "NODE-2.RaftLab",
            "node-2.raftlab.",
            "raftlab",
            "x.y.raftlab",
        ] {
            let dir = temp_dir("domain");
            let config = config(&dir, &["127.0.0.1", host]);
            let err = generate(&config, &dir.join("certs"), false)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("node 2: address"), "{host}: {err}");
            assert!(err.contains(".raftlab domain"), "{host}: {err}");
            assert!(!dir.join("certs").exists(), "{host}: nothing written");
            let _ = fs::remove_dir_all(&dir);
        }
        let dir = temp_dir("domain-ok");
        let config = config(&dir, &["127.0.0.1", "raftlab.example.net", "myraftlab"]);
        generate(&config, &dir.join("certs"), false).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_wider_than_0600_are_refused_naming_file_and_mode() {
        let dir = temp_dir("modes");
        let config = config(&dir, &["127.0.0.1"]);
        let out = dir.join("certs");
        generate(&config, &out, false).unwrap();
        load_node_identity(&out, 1).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o700] {
            fs::set_permissions(out.join("node-1.key"), fs::Permissions::from_mode(mode)).unwrap();
            let err = load_node_identity(&out, 1).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, CertError::KeyMode { .. }), "{text}");
            assert!(text.contains("node-1.key"), "{text}");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
        fs::set_permissions(out.join("node-1.key"), fs::Permissions::from_mode(0o400)).unwrap();
        load_node_identity(&out, 1).unwrap();
        // The CA key too, when renewing.
        fs::set_permissions(out.join(CA_KEY), fs::Permissions::from_mode(0o644)).unwrap();
        let err = renew(&config, &out, &Subject::Node(1), false, 1).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn named_clients_get_a_namespace_of_their_own() {
        assert_eq!(client_namespace(CLIENT_NAME), Some(SHARED_CLIENT_NAMESPACE));
        let alice = client_namespace("client-alice.raftlab").unwrap();
        let bob = client_namespace("client-bob.raftlab").unwrap();
        assert!(alice != bob && alice != 0 && bob != 0);
        assert!(alice < 1 << NAMESPACE_BITS);
        for no in [
            "node-1.raftlab",
            "client-.raftlab",
            "client-Al.raftlab",
            "alice",
        ] {
            assert_eq!(client_namespace(no), None, "{no}");
        }
        let id = client_id(alice, 12345);
        assert_eq!(namespace_of_client_id(id), alice);
        assert_eq!(id & ((1 << LOCAL_BITS) - 1), 12345);
        assert_eq!(namespace_of_client_id(client_id(0, u64::MAX)), 0);

        let dir = temp_dir("clients");
        let config = config(&dir, &["127.0.0.1"]);
        let out = dir.join("certs");
        generate(&config, &out, false).unwrap();
        let issued = issue_client(&out, "alice", 7).unwrap();
        assert_eq!(issued.info.names, vec!["client-alice.raftlab".to_string()]);
        assert_eq!(days_from_now(issued.info.not_after), 7);
        assert!(chains_to_ca(&out, &out.join("client-alice.pem")));
        load_subject_identity(&out, &"client-alice".parse().unwrap()).unwrap();
        let err = issue_client(&out, "alice", 7).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        assert!(issue_client(&out, "Alice", 7).is_err());

        // Two names with one namespace (found by the birthday bound, a few thousand
        // hashes): the second is refused, naming the first.
        let mut seen = std::collections::HashMap::new();
        let (first, second) = (0..)
            .map(|i| format!("c{i}"))
            .find_map(|name| {
                let ns = client_namespace(&format!("client-{name}.raftlab")).unwrap();
                seen.insert(ns, name.clone()).map(|first| (first, name))
            })
            .unwrap();
        issue_client(&out, &first, 7).unwrap();
        let err = issue_client(&out, &second, 7).unwrap_err().to_string();
        assert!(err.contains("namespace"), "{err}");
        assert!(err.contains(&format!("client-{first}")), "{err}");
        assert!(!out.join(format!("client-{second}.pem")).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn subjects_and_revocations_parse() {
        assert_eq!("node-3".parse(), Ok(Subject::Node(3)));
        assert_eq!("client".parse(), Ok(Subject::Client(None)));
        assert_eq!(
            "client-a1".parse(),
            Ok(Subject::Client(Some("a1".to_string())))
        );
        for bad in [
            "node-03",
            "node-",
            "client-",
            "client-A",
            "ca",
            "node-1.raftlab",
        ] {
            assert!(bad.parse::<Subject>().is_err(), "{bad}");
        }
        let cert = CertInfo {
            sha256: [7; 32],
            serial: vec![0x1f, 0x02],
            not_after: 0,
            names: vec![],
        };
        let by_sum: Revocation = cert.fingerprint().parse().unwrap();
        let by_serial: Revocation = cert.serial_number().parse().unwrap();
        assert!(cert.is_named_by(&by_sum) && cert.is_named_by(&by_serial));
        assert_eq!(by_sum.to_string(), cert.fingerprint());
        let colons: Revocation = "serial:00:1F:02".parse().unwrap();
        assert!(cert.is_named_by(&colons));
        assert!(!cert.is_named_by(&Revocation::Serial(vec![0x1f])));
        assert_eq!(format_utc(86_400 * 365), "1971-01-01 00:00 UTC");
    }
}
