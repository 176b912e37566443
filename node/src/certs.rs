//! The cluster's certificates: `raft-node certs` makes them, nodes and the lab load them.
//!
//! One directory holds everything (the file names `docs/deploy.md` uses):
//!
//! | file | what |
//! |------|------|
//! | `ca.pem`, `ca.key` | the cluster CA (self-signed). `ca.key` is only needed to issue certificates |
//! | `node-N.pem`, `node-N.key` | node N: server *and* client authentication (it accepts and dials peers) |
//! | `client.pem`, `client.key` | the lab's client: client authentication only |
//!
//! Identity is carried by DNS names in the subject alternative name: node N's certificate
//! names `node-N.raftlab` (see [`node_name`]) plus the host of its address (an IP address or
//! a DNS name), and the client certificate names `client.raftlab` ([`CLIENT_NAME`]). Those
//! `.raftlab` names are what the transport checks: a node dials peer N with server name
//! `node-N.raftlab`, so the TLS handshake itself verifies it reached N; a node accepts a
//! peer connection only from a certificate naming the id the peer claims, and a client
//! connection only from one naming `client.raftlab`.
//!
//! Private keys are PKCS#8 PEM written with mode 0600 (atomically: temporary file, fsync,
//! rename). An existing CA is never replaced unless asked (`force`), because replacing it
//! invalidates every certificate already handed out. Certificates are valid from 1975 to
//! 4096 (rcgen's defaults): this is a lab, rotation is "run `raft-node certs --force`".

use crate::config::ClusterConfig;
use model::core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key's file name.
pub const CA_KEY: &str = "ca.key";
/// The client certificate's file name.
pub const CLIENT_CERT: &str = "client.pem";
/// The client private key's file name.
pub const CLIENT_KEY: &str = "client.key";
/// The DNS name a client certificate must carry.
pub const CLIENT_NAME: &str = "client.raftlab";
/// Suffix of node identity names.
const NODE_SUFFIX: &str = ".raftlab";

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
    format!("node-{id}{NODE_SUFFIX}")
}

/// The node id of an identity name (`node-N.raftlab` → N); `None` for any other name.
pub fn node_id_of_name(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix("node-")?.strip_suffix(NODE_SUFFIX)?;
    // Exactly the canonical spelling: no sign, no leading zeros.
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A problem making or loading certificates, naming the file at fault.
#[derive(Debug, Error)]
pub enum CertError {
    #[error(
        "{path}: a cluster CA already exists; pass --force to replace it \
         (every node and client then needs the new files)"
    )]
    CaExists { path: PathBuf },
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
    #[error("node {id}: address {addr:?}: {message}")]
    Address {
        id: NodeId,
        addr: String,
        message: String,
    },
    #[error("generating the {what} certificate: {source}")]
    Generate { what: String, source: rcgen::Error },
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

/// Makes the cluster CA, one certificate per node of `config`, and a client certificate,
/// in `out` (created if missing). Refuses if `out` already holds a CA, unless `force`.
pub fn generate(config: &ClusterConfig, out: &Path, force: bool) -> Result<(), CertError> {
    for existing in [CA_CERT, CA_KEY].map(|f| out.join(f)) {
        if !force && existing.exists() {
            return Err(CertError::CaExists { path: existing });
        }
    }
    fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let generate_err = |what: &str| {
        let what = what.to_string();
        move |source: rcgen::Error| CertError::Generate { what, source }
    };

    let ca_key = KeyPair::generate().map_err(generate_err("CA"))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("raftlab cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate_err("CA"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut files: Vec<(String, String, u32)> = Vec::new();
    for node in &config.nodes {
        let what = format!("node {}", node.id);
        let identity = node_name(node.id);
        let mut sans = vec![dns(&identity).map_err(generate_err(&what))?];
        let host = addr_host(&node.addr).ok_or_else(|| CertError::Address {
            id: node.id,
            addr: node.addr.clone(),
            message: "expected host:port".into(),
        })?;
        let host_san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => dns(host).map_err(|e| CertError::Address {
                id: node.id,
                addr: node.addr.clone(),
                message: format!("host is not a valid DNS name: {e}"),
            })?,
        };
        if !sans.contains(&host_san) {
            sans.push(host_san);
        }
        let key = KeyPair::generate().map_err(generate_err(&what))?;
        let cert = leaf_params(
            &identity,
            sans,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
        .signed_by(&key, &issuer)
        .map_err(generate_err(&what))?;
        files.push((node_cert_file(node.id), cert.pem(), 0o644));
        files.push((node_key_file(node.id), key.serialize_pem(), 0o600));
    }

    let key = KeyPair::generate().map_err(generate_err("client"))?;
    let sans = vec![dns(CLIENT_NAME).map_err(generate_err("client"))?];
    let cert = leaf_params(CLIENT_NAME, sans, &[ExtendedKeyUsagePurpose::ClientAuth])
        .signed_by(&key, &issuer)
        .map_err(generate_err("client"))?;
    files.push((CLIENT_CERT.into(), cert.pem(), 0o644));
    files.push((CLIENT_KEY.into(), key.serialize_pem(), 0o600));

    // The CA last: its presence means a complete set was written.
    files.push((CA_KEY.into(), issuer.key().serialize_pem(), 0o600));
    files.push((CA_CERT.into(), ca_cert.pem(), 0o644));
    for (file, contents, mode) in files {
        write_atomic(&out.join(file), contents.as_bytes(), mode)?;
    }
    sync_dir(out);
    Ok(())
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

/// The client certificate and key: `dir/client.pem`, `dir/client.key`.
pub fn load_client_identity(dir: &Path) -> Result<Identity, CertError> {
    load_identity(&dir.join(CLIENT_CERT), &dir.join(CLIENT_KEY))
}

/// A certificate chain (end-entity first) from a PEM file and the private key from another.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, CertError> {
    let chain = load_certs(cert)?;
    let bytes = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::Invalid {
        path: key.to_path_buf(),
        message: format!("no usable private key: {e}"),
    })?;
    Ok(Identity {
        chain,
        key: key_der,
    })
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

fn leaf_params(
    common_name: &str,
    sans: Vec<SanType>,
    usages: &[ExtendedKeyUsagePurpose],
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    params
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
}
