//! What can go wrong with a local cluster; every error names the node, file or process.

use crate::kv::status::NoLeader;
use model::bugs::UnknownBug;
use model::core::NodeId;
use nix::sys::signal::Signal;
use node::config::ConfigError;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Most nodes of a local cluster (node N lives on 127.0.0.(10+N)).
pub const MAX_LOCAL_NODES: usize = 200;

/// What went wrong with a local cluster; every variant names the node, file or process.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("remote cluster: {0}")]
    Remote(String),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    LazyDisk(#[from] crate::db::lazy_disks::LazyDiskError),
    #[error("cannot make the certificates for {config}: {source}")]
    Certs {
        config: PathBuf,
        source: node::certs::CertError,
    },
    #[error("--bug: {0}")]
    Bug(#[from] UnknownBug),
    #[error("{0} already exists: use `raft-lab cluster up --config {0}` or an empty directory")]
    Exists(PathBuf),
    #[error("a local cluster has 1..={max} nodes, not {0}", max = MAX_LOCAL_NODES)]
    NodeCount(usize),
    #[error(
        "no free UDP ports for {nodes} nodes on 127.0.0.11..: tried base ports {tried} ({last})"
    )]
    NoFreePorts {
        nodes: usize,
        tried: String,
        last: String,
    },
    #[error(
        "{binary} binary not found (tried {tried}): build it with \
         `cargo build -p {package} --bin {binary}` or set {env}"
    )]
    BinaryNotFound {
        binary: &'static str,
        package: &'static str,
        env: &'static str,
        tried: String,
    },
    #[error("node {id}: cannot start {binary}: {source}")]
    Spawn {
        id: NodeId,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("no node {id} in {config}")]
    UnknownNode { id: NodeId, config: PathBuf },
    #[error("node {id} is not running")]
    NotRunning { id: NodeId },
    #[error("node {id}: not started: the lab was interrupted and is cleaning up")]
    Interrupted { id: NodeId },
    #[error(
        "node {id}: no pid known: it was not started by this raft-lab and {pid_file} \
         does not name a live raft-node of this cluster"
    )]
    NoPid { id: NodeId, pid_file: PathBuf },
    #[error("node {id} (pid {pid}): cannot send {signal}: {source}")]
    Signal {
        id: NodeId,
        pid: i32,
        signal: Signal,
        source: nix::errno::Errno,
    },
    #[error("node {id} (pid {pid}) is still there {waited:?} after {signal}")]
    Stuck {
        id: NodeId,
        pid: i32,
        signal: Signal,
        waited: Duration,
    },
    #[error(transparent)]
    NoLeader(#[from] NoLeader),
    #[error("client certificate in {certs}: {reason}")]
    Connector { certs: PathBuf, reason: String },
}
