//! What can go wrong with an etcd cluster run by the lab; every error names the member, file
//! or process.

use model::core::NodeId;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Most members of an etcd cluster the lab starts (member N lives on 127.0.0.(10+N)).
pub const MAX_MEMBERS: usize = 9;

/// What went wrong with an etcd cluster.
#[derive(Debug, Error)]
pub enum EtcdError {
    #[error(
        "the etcd binary was not found (tried {tried}): install it (Debian: \
         `apt-get install etcd-server`) or pass --etcd-bin"
    )]
    BinaryNotFound { tried: String },
    #[error("{binary} --version: cannot read the version: {detail}")]
    VersionUnreadable { binary: PathBuf, detail: String },
    #[error(
        "{binary} is etcd {found}; the lab needs etcd {major}.{minor} or later",
        major = super::MIN_VERSION.0,
        minor = super::MIN_VERSION.1
    )]
    TooOld { binary: PathBuf, found: String },
    #[error("etcd port {addr} is in use ({source}): choose another --etcd-port")]
    PortInUse {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("etcd port {0} is held by another etcd cluster of this process")]
    PortReserved(u16),
    #[error("etcd port {0}: the peer port {0}+1 does not fit in 16 bits")]
    PortRange(u16),
    #[error("an etcd cluster of the lab has 1..={max} members, not {0}", max = MAX_MEMBERS)]
    MemberCount(usize),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists: an etcd cluster needs a fresh directory")]
    Exists(PathBuf),
    #[error("no free TCP ports for {members} etcd members on 127.0.0.11..: tried {tried}")]
    NoFreePorts { members: usize, tried: String },
    #[error("cannot make the certificates in {dir}: {reason}")]
    Certs { dir: PathBuf, reason: String },
    #[error("member {id}: cannot start {binary}: {source}")]
    Spawn {
        id: NodeId,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("no member {0} in this etcd cluster")]
    UnknownMember(NodeId),
    #[error("member {0} is not running")]
    NotRunning(NodeId),
    #[error("member {0}: not started: the lab was interrupted and is cleaning up")]
    Interrupted(NodeId),
    #[error("member {id} (pid {pid}): cannot send {signal}: {source}")]
    Signal {
        id: NodeId,
        pid: i32,
        signal: Signal,
        source: nix::errno::Errno,
    },
    #[error("the client certificate in {dir}: {reason}")]
    ClientTls { dir: PathBuf, reason: String },
    #[error("the members' network namespaces: {0}")]
    Netns(String),
    #[error("member {id}: etcd's member API: {detail}")]
    MemberApi { id: NodeId, detail: String },
    #[error(
        "member {id}: {binary} not found on {host} ({detail}): install etcd 3.4 or later there, \
         or name it in remote.etcd of cluster.toml"
    )]
    NotOnHost {
        id: NodeId,
        host: String,
        binary: String,
        detail: String,
    },
    #[error("member {id}: addr {addr}: {reason}")]
    MemberAddr {
        id: NodeId,
        addr: String,
        reason: String,
    },
    #[error(
        "{0}: no [remote] section: etcd members on hosts of their own need `[remote]` with the \
         command template (e.g. command = \"ssh {{host}}\", dir, etcd)"
    )]
    NoRemote(PathBuf),
    /// Driving the members on their hosts failed (boxed: it is large).
    #[error(transparent)]
    Remote(Box<crate::db::remote::RemoteError>),
    #[error("no leader agreed by a majority of the members after {waited:?}: {detail}")]
    NoLeader { waited: Duration, detail: String },
}
