//! [`TransportError`]: why a node's transport could not start or load its certificates.

use super::tls::TlsError;
use crate::certs::CertError;
use model::core::NodeId;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Why a transport could not start.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("node {0} is not in the cluster configuration")]
    UnknownNode(NodeId),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{what}: {source}")]
    Tls { what: String, source: TlsError },
    #[error("{path}: the certificate does not name {expected} (it names {names:?}); was it made for another node or cluster?")]
    WrongIdentity {
        path: PathBuf,
        expected: String,
        names: Vec<String>,
    },
    #[error("cannot resolve {addr}: {message}")]
    Resolve { addr: String, message: String },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
