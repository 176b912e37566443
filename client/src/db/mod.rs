//! The system under test's lifecycle, as Jepsen's `jepsen.db`: the [`Db`] trait through which
//! the nemesis kills, restarts, pauses and resumes nodes and the run finds the leader and tears
//! the cluster down, and its raftlab implementations: [`local::LocalCluster`] (processes on
//! this machine), [`remote::RemoteCluster`] (nodes on hosts of their own, reached through a
//! command template: ssh) and [`netns::NetnsCluster`] (one network namespace per node, through
//! the same remote code). Setting a cluster up is each implementation's constructor.
//!
//! The trait names nodes by id and by their client address only, so another system under
//! test fits it too: an etcd member is a process with a data directory, killed and paused by
//! signal like a raft node, its status (and leader) asked over its client address.

pub mod cluster_file;
pub mod etcd;
pub mod lazy_disks;
pub mod local;
pub mod netns;
pub mod remote;

use crate::kv::admin::Admin;
use crate::kv::status;
use crate::net::{NetError, Network};
use model::core::NodeId;
use node::transport::ClientConnector;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// A node as the nemesis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbNode {
    pub id: NodeId,
    /// `host:port` of its client endpoint, as in `cluster.toml` (for status calls).
    pub addr: String,
    /// The resolved address partitions cut (`None`: does not resolve).
    pub socket: Option<SocketAddr>,
}

/// A failed lifecycle action, on one node or on the whole cluster.
#[derive(Debug)]
pub struct DbError {
    pub action: &'static str,
    /// `None`: the action was on the whole cluster (leader, tear down).
    pub node: Option<NodeId>,
    pub reason: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node {
            Some(node) => write!(f, "{} node {node}: {}", self.action, self.reason),
            None => write!(f, "{}: {}", self.action, self.reason),
        }
    }
}

impl std::error::Error for DbError {}

impl DbError {
    /// Maps an implementation's error on `action` of `node` to a [`DbError`].
    pub fn of<E: std::fmt::Display>(
        action: &'static str,
        node: NodeId,
    ) -> impl FnOnce(E) -> DbError {
        move |e| DbError {
            action,
            node: Some(node),
            reason: e.to_string(),
        }
    }

    /// Maps an implementation's error on a cluster-wide `action` to a [`DbError`].
    pub fn cluster<E: std::fmt::Display>(action: &'static str) -> impl FnOnce(E) -> DbError {
        move |e| DbError {
            action,
            node: None,
            reason: format!("{e:#}"),
        }
    }
}

/// How long each step of a membership change may take (an election, a catch-up, a commit).
pub const MEMBERSHIP_STEP: Duration = Duration::from_secs(10);

/// What [`Db::leader`] returns.
pub type LeaderFuture<'a> = Pin<Box<dyn Future<Output = Result<NodeId, DbError>> + Send + 'a>>;

/// What [`Db::leader_probe`] returns: the node most likely leading, from one round of status
/// calls (`None`: nobody named one).
pub type ProbeFuture = Pin<Box<dyn Future<Output = Option<NodeId>> + Send + 'static>>;

/// What a fault asks of a cluster, for [`Db::supports`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Signals to node processes (kill, pause).
    pub processes: bool,
    /// Links between nodes cut or made lossy ([`Db::network`]).
    pub network: bool,
    /// Nodes with network interfaces of their own (`tc netem` on them).
    pub own_interfaces: bool,
    /// A member taken out of the membership and added back (`membership`).
    pub membership: bool,
    /// Leadership handed to a chosen member (`transfer`).
    pub transfer: bool,
    /// Each node's data directory on a lazy disk ([`Db::disk`]).
    pub lazy_disks: bool,
    /// The nodes' data files on this machine, to damage while a node is down
    /// ([`Db::data_dir`]).
    pub data_files: bool,
}

/// How a node exited ([`Db::wait_exit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// `None`: killed by a signal.
    pub code: Option<i32>,
    /// The end of its log, where it says why.
    pub log_tail: String,
}

/// A command to a node's lazy disk ([`lazy_disks`]), through [`Db::disk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskCommand {
    /// Drop every write and directory change the node did not sync: what a power cut
    /// leaves. Only while the node is down.
    LoseUnsynced,
    /// As `LoseUnsynced`, but a seeded subset of the pages of each file's last unsynced
    /// write reaches the disk first: a write torn by the power cut. Only while the node is
    /// down.
    Tear,
    /// The disk is full: writes that need new space fail with ENOSPC.
    Fill,
    /// Space returns.
    Free,
}

impl DiskCommand {
    /// The control command (see `raft-lazyfs`).
    pub fn name(self) -> &'static str {
        match self {
            DiskCommand::LoseUnsynced => "lose-unsynced",
            DiskCommand::Tear => "tear",
            DiskCommand::Fill => "fill",
            DiskCommand::Free => "free",
        }
    }

    /// What a failure is reported as.
    pub fn action(self) -> &'static str {
        match self {
            DiskCommand::LoseUnsynced => "lose unsynced writes of",
            DiskCommand::Tear => "tear the last writes of",
            DiskCommand::Fill => "fill the disk of",
            DiskCommand::Free => "free the disk of",
        }
    }

    /// Whether the node must be down (the power is cut).
    pub fn needs_node_down(self) -> bool {
        matches!(self, DiskCommand::LoseUnsynced | DiskCommand::Tear)
    }
}

/// The lifecycle of the system under test, as the nemesis and the run drive it. Implemented
/// by [`local::LocalCluster`] with signals on local processes, by [`remote::RemoteCluster`]
/// through a command template on each node's host, by [`netns::NetnsCluster`] in network
/// namespaces. Set up is the implementation's constructor; [`Db::teardown`] ends it.
pub trait Db: Send + Sync {
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
    /// Waits until a majority of the nodes agrees on a leader; by default from raftlab's
    /// status call on each node's client address (another system asks its own status API).
    fn leader<'a>(&'a self, client: &'a ClientConnector, timeout: Duration) -> LeaderFuture<'a> {
        let nodes: Vec<(NodeId, String)> =
            self.nodes().into_iter().map(|n| (n.id, n.addr)).collect();
        Box::pin(async move {
            status::find_leader(client, &nodes, nodes.len(), timeout)
                .await
                .map_err(DbError::cluster("find the leader"))
        })
    }
    /// One quick round of asking who leads, for the nemesis (`kill-leader`,
    /// `isolate-leader`), when the system has a status API of its own; `None` (the default):
    /// the nemesis asks raftlab's status call.
    fn leader_probe(&self, timeout: Duration) -> Option<ProbeFuture> {
        let _ = timeout;
        None
    }
    /// Takes member `id` out of the membership, to come back with [`Db::add_member_back`].
    /// Blocking: the nemesis calls it on a blocking thread of its runtime. By default through
    /// raftlab's operator requests (the leader hands its leadership on first if it is the
    /// one), sent with `client`; the node keeps running and keeps its data, refused by its
    /// former peers. Another system changes its membership through its own member API.
    fn remove_member(
        &mut self,
        client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        let admin = raftlab_admin(self, client, "remove member", id)?;
        let step = |step: String| tracing::info!("nemesis: {step}");
        tokio::runtime::Handle::try_current()
            .map_err(DbError::of("remove member", id))?
            .block_on(admin.remove_member(id, step))
            .map_err(DbError::of("remove member", id))
    }
    /// Adds member `id`, removed by [`Db::remove_member`], back as a voter. By default through
    /// raftlab's operator requests: as a learner, caught up, then promoted.
    fn add_member_back(
        &mut self,
        client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        let admin = raftlab_admin(self, client, "add member", id)?;
        let addr = self
            .nodes()
            .into_iter()
            .find(|n| n.id == id)
            .map(|n| n.addr)
            .ok_or_else(|| DbError {
                action: "add member",
                node: Some(id),
                reason: "not a node of this cluster".into(),
            })?;
        let step = |step: String| tracing::info!("nemesis: {step}");
        tokio::runtime::Handle::try_current()
            .map_err(DbError::of("add member", id))?
            .block_on(admin.add_member(id, &addr, step))
            .map_err(DbError::of("add member", id))
    }
    /// Asks the leader to hand its leadership to `planned` if that is a voter that does not
    /// lead and is not in `down`, else to the first voter that is neither
    /// ([`transferee`]); returns `(from, to)`. Does not wait for the election to finish.
    /// Blocking, like the membership changes. By default through raftlab's operator
    /// requests, sent with `client`; another system through its own API.
    fn transfer_leadership(
        &mut self,
        client: Option<&ClientConnector>,
        planned: NodeId,
        down: &[NodeId],
    ) -> Result<(NodeId, NodeId), DbError> {
        let admin = raftlab_admin(self, client, "transfer leadership", planned)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(DbError::cluster("transfer leadership"))?;
        runtime.block_on(async {
            let members = admin
                .members()
                .await
                .map_err(DbError::cluster("transfer leadership"))?;
            let voters: Vec<NodeId> = members
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.id)
                .collect();
            let to = transferee(members.leader, &voters, planned, down)?;
            admin
                .request_transfer(to)
                .await
                .map_err(DbError::of("transfer leadership", to))?;
            Ok((members.leader, to))
        })
    }
    /// Sends `command` to node `id`'s lazy disk; its answer (e.g. pages kept and dropped).
    /// Only clusters made with lazy disks have them ([`Needs::lazy_disks`]).
    fn disk(&mut self, id: NodeId, command: DiskCommand) -> Result<String, DbError> {
        Err(DbError::of(command.action(), id)(
            lazy_disks::NEEDS_LAZY_DISKS,
        ))
    }
    /// Node `id`'s data directory on this machine, for faults that damage its files while it
    /// is down ([`Needs::data_files`]); `None` (the default) where it is not on this machine.
    fn data_dir(&self, id: NodeId) -> Option<PathBuf> {
        let _ = id;
        None
    }
    /// Waits up to `patience` for node `id`, just started, to exit: its exit code and the
    /// last lines of its log when it did (`None`: it still runs). For faults after which a
    /// node must refuse to start ([`Needs::data_files`]); unsupported by default.
    fn wait_exit(&mut self, id: NodeId, patience: Duration) -> Result<Option<Exit>, DbError> {
        let _ = patience;
        Err(DbError::of("wait for the exit of", id)(
            "this cluster cannot watch its nodes exit",
        ))
    }
    /// Directories on this machine holding the nodes' data (not their logs) that the run
    /// made, which a valid run drops once the nodes are stopped; none by default.
    fn data_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Removes the nodes' data (not their logs) once a valid run stopped them: by default the
    /// directories of [`Db::data_dirs`] on this machine.
    fn drop_data(&mut self) {
        remove_dirs(&self.data_dirs());
    }
    /// The end of a run: stops the nodes if the run started them (`owned`; a cluster it only
    /// opened keeps running), copies node logs that are not in the run folder yet into
    /// `logs_dir`, and removes what set-up made. Tries every step; returns the first error.
    fn teardown(&mut self, owned: bool, logs_dir: &Path) -> Result<(), DbError>;
}

/// Whom a leadership transfer goes to: `planned` if it is one of the `voters`, does not lead
/// and is not `down`, else the first voter that is neither.
pub fn transferee(
    leader: NodeId,
    voters: &[NodeId],
    planned: NodeId,
    down: &[NodeId],
) -> Result<NodeId, DbError> {
    let eligible = |id: &NodeId| *id != leader && !down.contains(id);
    std::iter::once(planned)
        .filter(|id| voters.contains(id))
        .chain(voters.iter().copied())
        .find(eligible)
        .ok_or_else(|| DbError {
            action: "transfer leadership",
            node: None,
            reason: format!("no voter but node {leader} (the leader) is up"),
        })
}

/// Removes `dirs` and what they hold (a missing one is fine; a failure only warns): the nodes'
/// data of a valid run, whose evidence is its history and logs (an etcd member's
/// write-ahead log alone is 64 MB).
pub fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => tracing::info!(dir = %dir.display(), "node data removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the node data in {}: {e}", dir.display()),
        }
    }
}

/// raftlab's operator requests to every node of `db`, sent with `client`.
fn raftlab_admin<'a, D: Db + ?Sized>(
    db: &D,
    client: Option<&'a ClientConnector>,
    action: &'static str,
    id: NodeId,
) -> Result<Admin<'a>, DbError> {
    let client = client.ok_or(DbError {
        action,
        node: Some(id),
        reason: "no client to send raftlab's operator requests with".into(),
    })?;
    let nodes = db.nodes().into_iter().map(|n| (n.id, n.addr)).collect();
    Ok(Admin::new(client, nodes, MEMBERSHIP_STEP))
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
