//! The system under test's lifecycle, as Jepsen's `jepsen.db`: the [`Db`] trait through which
//! the nemesis kills, restarts, pauses and resumes nodes, and its raftlab implementations:
//! [`local::LocalCluster`] (processes on this machine) and [`remote::RemoteCluster`] (nodes on
//! hosts of their own, reached through a command template: ssh, or network namespaces).
//!
//! The trait names nodes by id and by their client address only, so another system under
//! test fits it too: an etcd member is a process with a data directory, killed and paused by
//! signal like a raft node, its status (and leader) asked over its client address.

pub mod local;
pub mod remote;

use crate::net::{NetError, Network};
use model::core::NodeId;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// A node as the nemesis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbNode {
    pub id: NodeId,
    /// `host:port` of its client endpoint, as in `cluster.toml` (for status calls).
    pub addr: String,
    /// The resolved address partitions cut (`None`: does not resolve).
    pub socket: Option<SocketAddr>,
}

/// A failed lifecycle action on one node.
#[derive(Debug, Error)]
#[error("{action} node {node}: {reason}")]
pub struct DbError {
    pub action: &'static str,
    pub node: NodeId,
    pub reason: String,
}

impl DbError {
    /// Maps an implementation's error on `action` of `node` to a [`DbError`].
    pub fn of<E: std::fmt::Display>(
        action: &'static str,
        node: NodeId,
    ) -> impl FnOnce(E) -> DbError {
        move |e| DbError {
            action,
            node,
            reason: e.to_string(),
        }
    }
}

/// What a fault asks of a cluster, for [`Db::supports`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Signals to node processes (kill, pause).
    pub processes: bool,
    /// Links between nodes cut or made lossy ([`Db::network`]).
    pub network: bool,
    /// Nodes with network interfaces of their own (`tc netem` on them).
    pub own_interfaces: bool,
}

/// The lifecycle of the system under test, as the nemesis drives it. Implemented by
/// [`local::LocalCluster`] with signals on local processes, by [`remote::RemoteCluster`]
/// through a command template on each node's host.
pub trait Db: Send {
    fn nodes(&self) -> Vec<DbNode>;
    /// Crash the node (SIGKILL) and wait until it is gone.
    fn kill(&mut self, id: NodeId) -> Result<(), DbError>;
    /// Start the node if it does not run.
    fn start(&mut self, id: NodeId) -> Result<(), DbError>;
    /// Freeze the node (SIGSTOP): it keeps its sockets and state but answers nothing.
    fn pause(&mut self, id: NodeId) -> Result<(), DbError>;
    fn resume(&mut self, id: NodeId) -> Result<(), DbError>;
    /// Whether a fault with these needs can be applied to this cluster; the reason when not.
    fn supports(&self, needs: Needs) -> Result<(), String> {
        let _ = needs;
        Ok(())
    }
    /// What partitions and netem go through on this cluster (made once per run).
    fn network(&self) -> Result<Box<dyn Network>, NetError>;
}

/// What `cluster up` did ([`local::up`], [`remote::up`]).
#[derive(Debug)]
pub struct UpReport {
    pub config: PathBuf,
    /// Nodes started now, with their pids.
    pub started: Vec<(NodeId, u32)>,
    pub already_running: Vec<NodeId>,
}

/// What `cluster down` did ([`local::down`], [`remote::down`]).
#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped: Vec<NodeId>,
    /// Nodes with no live process found through their pid files.
    pub not_running: Vec<NodeId>,
}
