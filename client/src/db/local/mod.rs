//! The local cluster launcher: `raft-node` processes on this machine, each on its own loopback
//! address, with their certificates, data, logs and pid files in one directory.
//!
//! ```text
//! DIR/cluster.toml        node N at 127.0.0.(10+N):(base_port+N-1)
//! DIR/certs/              CA, node-N.pem/.key, client.pem/.key
//! DIR/data/node-N/        node N's durable state
//! DIR/node-N.log          node N's stdout and stderr, appended across restarts
//! DIR/pids/node-N.pid     node N's pid while it runs
//! ```
//!
//! Three ways to hold a cluster:
//! - [`LocalCluster::create`] (what `raft-lab run` uses): the nodes are children of this process
//!   and are **always** stopped: by [`LocalCluster::stop_all`], by `Drop`, and by
//!   [`cleanup::run_all`] (Ctrl-C, see below).
//! - [`up`] (`raft-lab cluster up`): the nodes are started detached (`setsid`) and survive
//!   `raft-lab`; [`down`] stops them through their pid files.
//! - [`LocalCluster::open`] (`raft-lab cluster down|status`, `raft-lab run --cluster FILE`): an
//!   existing `cluster.toml`. Nodes are found through `DIR/pids/node-N.pid`, and a pid is only
//!   believed when `/proc/PID/cmdline` is `raft-node run` of that node id and config file. Such
//!   a cluster is never stopped on `Drop`; nodes it restarts are detached too.
//!
//! `run --cluster FILE` against nodes **not** started by `raft-lab cluster up`: kill and pause
//! need pid files (write `DIR/pids/node-N.pid` yourself, or start the nodes with `cluster up`);
//! partitions need every node's IP to be an address of this machine, because the drop rules
//! are nftables rules here. [`crate::db::Db::supports`] checks both before a run.
//!
//! Ctrl-C contract: every child started by an owned cluster registers its SIGKILL in
//! [`cleanup`] until it is reaped, and every node this process pauses its SIGCONT until it is
//! resumed; the run orchestration selects on `tokio::signal::ctrl_c()` and calls
//! [`cleanup::run_all`].

mod error;
mod setup;

pub use error::{ClusterError, MAX_LOCAL_NODES};
pub use setup::{
    cluster_toml, local_node_ip, raft_lazyfs_binary, raft_node_binary, ClusterOptions,
    LazyDiskOptions, DEFAULT_BASE_PORT,
};

use super::lazy_disks::LazyDisks;
use super::{Db, DbError, DbNode, DiskCommand, DownReport, Exit, Needs, UpReport};
use crate::control::cleanup::{self, Cleanup};
use crate::control::process::{self, wait_for};
use crate::kv::status::{find_leader, NoLeader};
use crate::net::nft::Nft;
use crate::net::{NetError, Network, LATENCY_NEEDS_HOSTS};
use model::bugs::Bug;
use model::core::NodeId;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use setup::{free_addresses, release_ports};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long a SIGKILLed or SIGTERMed process may take to disappear before we call it stuck.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// Who stops the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ownership {
    /// Children of this process, stopped on drop and by [`cleanup::run_all`].
    Owned,
    /// Started with `setsid` (or by someone else); left running on drop.
    Detached,
}

/// A node process.
#[derive(Debug)]
enum Proc {
    /// Our child: signalled, then reaped by us.
    Child(Child),
    /// Not our child (from a pid file): signalled by pid; its parent reaps it.
    Foreign(Pid),
}

impl Proc {
    fn pid(&self) -> Pid {
        match self {
            // Pids fit in i32 on every unix.
            Proc::Child(child) => Pid::from_raw(child.id() as i32),
            Proc::Foreign(pid) => *pid,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    proc: Option<Proc>,
    paused: bool,
    /// SIGKILLs our child on Ctrl-C, until it is reaped.
    kill_on_exit: Option<Cleanup>,
    /// SIGCONTs the node on Ctrl-C while we hold it paused.
    resume_on_exit: Option<Cleanup>,
}

/// A cluster of `raft-node` processes on this machine.
#[derive(Debug)]
pub struct LocalCluster {
    config: ClusterConfig,
    dir: PathBuf,
    raft_node: PathBuf,
    bugs: Vec<String>,
    ownership: Ownership,
    stop_grace: Duration,
    /// Resolved node addresses (absent when a host name does not resolve).
    endpoints: BTreeMap<NodeId, SocketAddr>,
    slots: BTreeMap<NodeId, Slot>,
    reserved: Vec<(IpAddr, u16)>,
    /// The nodes' lazy disks, when made with them (unmounted after the nodes stop: this
    /// field drops after `Drop::drop` stopped them).
    disks: LazyDisks,
}

impl LocalCluster {
    /// Writes `dir/cluster.toml` for `opts.nodes` nodes, makes the certificates, and starts
    /// every node as a child of this process. `dir` must not hold a `cluster.toml` yet.
    pub fn create(dir: &Path, opts: &ClusterOptions) -> Result<LocalCluster, ClusterError> {
        let mut cluster = LocalCluster::prepare(dir, opts, Ownership::Owned)?;
        if let Some(lazy) = &opts.lazy_disks {
            let data_dirs: Vec<(NodeId, PathBuf)> = cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.config.data_dir(id)))
                .collect();
            cluster.disks = LazyDisks::mount(
                &lazy.binary,
                &cluster.dir.join("lazyfs"),
                &data_dirs,
                lazy.seed,
            )?;
        }
        cluster.start_all()?;
        Ok(cluster)
    }

    /// Opens an existing `cluster.toml`; nodes are found through `DIR/pids/node-N.pid` (and,
    /// for a restart, keep the `--bug` flags they were started with). Never stops anything on
    /// drop.
    pub fn open(config: &Path) -> Result<LocalCluster, ClusterError> {
        let path = std::path::absolute(config).map_err(|source| ClusterError::Io {
            what: "resolve",
            path: config.to_path_buf(),
            source,
        })?;
        let config = ClusterConfig::load(&path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let endpoints = resolve_endpoints(&config);
        let mut cluster = LocalCluster {
            raft_node: raft_node_binary().unwrap_or_else(|_| PathBuf::from("raft-node")),
            bugs: Vec::new(),
            ownership: Ownership::Detached,
            stop_grace: ClusterOptions::default().stop_grace,
            slots: config.ids().map(|id| (id, Slot::default())).collect(),
            endpoints,
            reserved: Vec::new(),
            disks: LazyDisks::default(),
            config,
            dir,
        };
        let mut bugs = None;
        for id in cluster.ids() {
            let Some(pid) = read_pid_file(&cluster.pid_path(id)) else {
                continue;
            };
            let Some(cmdline) = cluster.node_cmdline(pid, id) else {
                debug!(id, pid, "pid file names no live raft-node of this cluster");
                continue;
            };
            if bugs.is_none() {
                bugs = Some(bug_flags(&cmdline));
            }
            if let Some(slot) = cluster.slots.get_mut(&id) {
                slot.proc = Some(Proc::Foreign(Pid::from_raw(pid)));
                slot.paused = process::state(pid.unsigned_abs()) == Some('T');
            }
        }
        cluster.bugs = bugs.unwrap_or_default();
        Ok(cluster)
    }

    /// Writes the cluster files (unless `dir` is an existing `cluster.toml`) without starting
    /// anything.
    fn prepare(
        dir: &Path,
        opts: &ClusterOptions,
        ownership: Ownership,
    ) -> Result<LocalCluster, ClusterError> {
        if opts.nodes == 0 || opts.nodes > MAX_LOCAL_NODES {
            return Err(ClusterError::NodeCount(opts.nodes));
        }
        for bug in &opts.bugs {
            bug.parse::<Bug>()?;
        }
        let dir = std::path::absolute(dir).map_err(|source| ClusterError::Io {
            what: "resolve",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("cluster.toml");
        if path.exists() {
            return Err(ClusterError::Exists(path));
        }
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::Io {
            what: "create directory",
            path: dir.clone(),
            source,
        })?;
        let addrs = free_addresses(opts.nodes, opts.base_port)?;
        let reserved: Vec<(IpAddr, u16)> = addrs.iter().map(|a| (a.ip(), a.port())).collect();
        let text = cluster_toml(&addrs, &[], opts);
        if let Err(source) = std::fs::write(&path, text) {
            release_ports(&reserved);
            return Err(ClusterError::Io {
                what: "write",
                path,
                source,
            });
        }
        let config = match ClusterConfig::load(&path) {
            Ok(config) => config,
            Err(e) => {
                release_ports(&reserved);
                return Err(e.into());
            }
        };
        let cluster = LocalCluster {
            raft_node: opts.raft_node.clone(),
            bugs: opts.bugs.clone(),
            ownership,
            stop_grace: opts.stop_grace,
            slots: config.ids().map(|id| (id, Slot::default())).collect(),
            endpoints: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (i as NodeId + 1, *a))
                .collect(),
            reserved,
            disks: LazyDisks::default(),
            config,
            dir,
        };
        cluster.ensure_certs()?;
        info!(dir = %cluster.dir.display(), nodes = opts.nodes, "cluster files written");
        Ok(cluster)
    }

    /// Makes the certificates unless the CA is already there.
    fn ensure_certs(&self) -> Result<(), ClusterError> {
        let certs = &self.config.tls.certs_dir;
        if certs.join(node::certs::CA_CERT).exists() {
            return Ok(());
        }
        node::certs::generate(&self.config, certs, false).map_err(|source| ClusterError::Certs {
            config: self.config.path.clone(),
            source,
        })
    }

    fn start_all(&mut self) -> Result<(), ClusterError> {
        for id in self.ids() {
            self.start(id)?;
        }
        Ok(())
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The directory holding `cluster.toml`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.config.ids().collect()
    }

    /// `(id, "host:port")` of every node, as in `cluster.toml`.
    pub fn node_addrs(&self) -> Vec<(NodeId, String)> {
        self.config
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.clone()))
            .collect()
    }

    /// The resolved address of node `id` (`None`: unknown node or unresolvable host).
    pub fn node_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.endpoints.get(&id).copied()
    }

    pub fn node_ip(&self, id: NodeId) -> Option<IpAddr> {
        self.node_addr(id).map(|a| a.ip())
    }

    /// `DIR/node-N.log`: stdout and stderr of node N, appended across restarts.
    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// `DIR/pids/node-N.pid`, present while node N runs.
    pub fn pid_path(&self, id: NodeId) -> PathBuf {
        self.dir.join("pids").join(format!("node-{id}.pid"))
    }

    /// The `raft-node` binary used for (re)starts.
    pub fn set_raft_node(&mut self, binary: PathBuf) {
        self.raft_node = binary;
    }

    /// The `--bug` flags of later (re)starts.
    pub fn set_bugs(&mut self, bugs: Vec<String>) -> Result<(), ClusterError> {
        for bug in &bugs {
            bug.parse::<Bug>()?;
        }
        self.bugs = bugs;
        Ok(())
    }

    pub fn bugs(&self) -> &[String] {
        &self.bugs
    }

    /// The pid of node `id`, if a process is known for it (it may have exited since).
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        let slot = self.slots.get(&id)?;
        slot.proc.as_ref().map(|p| p.pid().as_raw() as u32)
    }

    /// Whether node `id`'s process is alive (a paused node is alive).
    pub fn is_running(&self, id: NodeId) -> bool {
        let Some(proc) = self.slots.get(&id).and_then(|s| s.proc.as_ref()) else {
            return false;
        };
        match proc {
            Proc::Child(child) => child_alive(child),
            Proc::Foreign(pid) => {
                process::alive(pid.as_raw().unsigned_abs())
                    && self.node_cmdline(pid.as_raw(), id).is_some()
            }
        }
    }

    /// Whether node `id` is paused (SIGSTOPped by this cluster, or found stopped on open).
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| s.paused)
    }

    fn slot(&mut self, id: NodeId) -> Result<&mut Slot, ClusterError> {
        let config = self.config.path.clone();
        self.slots
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode { id, config })
    }

    /// Starts node `id` (no-op if it runs). Its output is appended to [`Self::log_path`], its
    /// pid written to [`Self::pid_path`].
    pub fn start(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.slot(id)?;
        if self.is_running(id) {
            debug!(id, "start: already running");
            return Ok(());
        }
        if self.ownership == Ownership::Owned && cleanup::ran() {
            return Err(ClusterError::Interrupted { id });
        }
        self.forget(id);
        let log_path = self.log_path(id);
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io { what, path, source }
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open log", &log_path))?;
        let _ = writeln!(
            log,
            "=== raft-lab: starting node {id}{} ===",
            if self.bugs.is_empty() {
                String::new()
            } else {
                format!(" with bugs {}", self.bugs.join(","))
            }
        );
        let stdout = log.try_clone().map_err(io("open log", &log_path))?;
        let mut command = Command::new(&self.raft_node);
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config.path)
            .arg("--id")
            .arg(id.to_string());
        for bug in &self.bugs {
            command.arg("--bug").arg(bug);
        }
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .current_dir(&self.dir);
        if self.ownership == Ownership::Detached {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
            }
        }
        let child = command.spawn().map_err(|source| ClusterError::Spawn {
            id,
            binary: self.raft_node.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        let kill_on_exit = (self.ownership == Ownership::Owned).then(|| {
            cleanup::register(move || {
                let pid = Pid::from_raw(pid);
                let _ = send_signal(pid, Signal::SIGCONT);
                let _ = send_signal(pid, Signal::SIGKILL);
            })
        });
        let pid_path = self.pid_path(id);
        let written = pid_path
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|()| std::fs::write(&pid_path, format!("{pid}\n")));
        let slot = self.slot(id)?;
        slot.proc = Some(Proc::Child(child));
        slot.paused = false;
        slot.kill_on_exit = kill_on_exit;
        written.map_err(io("write pid file", &pid_path))?;
        info!(id, pid, "node started");
        Ok(())
    }

    /// SIGKILLs node `id` and waits until it is gone (reaped if it is our child).
    pub fn kill(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.slot(id)?;
        if !self.is_running(id) {
            self.forget(id);
            return Err(ClusterError::NotRunning { id });
        }
        let result = self.signal_and_wait(id, Signal::SIGKILL, KILL_PATIENCE);
        if result.is_ok() {
            info!(id, "node killed");
            self.forget(id);
        }
        result
    }

    /// Kills node `id` if it runs, then starts it.
    pub fn restart(&mut self, id: NodeId) -> Result<(), ClusterError> {
        match self.kill(id) {
            Ok(()) | Err(ClusterError::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        self.start(id)
    }

    /// SIGSTOPs node `id` and waits (briefly) until the kernel reports it stopped.
    pub fn pause(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let pid = self.live_pid(id)?;
        self.send(id, pid, Signal::SIGSTOP)?;
        let slot = self.slot(id)?;
        slot.paused = true;
        slot.resume_on_exit = Some(cleanup::register(move || {
            let _ = send_signal(pid, Signal::SIGCONT);
        }));
        wait_for(Duration::from_secs(1), || {
            process::state(pid.as_raw().unsigned_abs()).is_none_or(|s| s == 'T')
        });
        info!(id, "node paused");
        Ok(())
    }

    /// SIGCONTs node `id`.
    pub fn resume(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let pid = self.live_pid(id)?;
        self.send(id, pid, Signal::SIGCONT)?;
        let slot = self.slot(id)?;
        slot.paused = false;
        slot.resume_on_exit = None;
        info!(id, "node resumed");
        Ok(())
    }

    /// Stops every node this cluster knows a process for: SIGCONT, SIGTERM, up to the grace
    /// period for a clean exit, then SIGKILL; reaps our children and removes the pid files.
    /// Returns the first failure (after trying every node).
    pub fn stop_all(&mut self) -> Result<(), ClusterError> {
        let procs: Vec<(NodeId, Pid)> = self
            .slots
            .iter_mut()
            .filter_map(|(id, slot)| {
                let pid = slot.proc.as_ref().map(Proc::pid)?;
                slot.resume_on_exit = None;
                Some((*id, pid))
            })
            .collect();
        let ids: Vec<NodeId> = procs.iter().map(|(id, _)| *id).collect();
        let grace = self.stop_grace;
        let stubborn = process::terminate(&procs, grace, |id| self.gone(id));
        let mut first_error = None;
        for &id in &ids {
            if stubborn.contains(&id) {
                warn!(id, ?grace, "node ignored SIGTERM; sending SIGKILL");
                if let Err(e) = self.signal_and_wait(id, Signal::SIGKILL, KILL_PATIENCE) {
                    first_error.get_or_insert(e);
                    continue;
                }
            }
            self.forget(id);
        }
        if !ids.is_empty() {
            info!(nodes = ids.len(), "nodes stopped");
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until a majority of the cluster agrees on one leader (which itself says it
    /// leads), polling every running node (every node if none is known to run) each 50 ms.
    pub async fn leader(
        &self,
        client: &ClientConnector,
        timeout: Duration,
    ) -> Result<NodeId, ClusterError> {
        let running: Vec<(NodeId, String)> = self
            .node_addrs()
            .into_iter()
            .filter(|(id, _)| self.is_running(*id))
            .collect();
        let nodes = if running.is_empty() {
            self.node_addrs()
        } else {
            running
        };
        find_leader(client, &nodes, self.config.nodes.len(), timeout)
            .await
            .map_err(|NoLeader { waited, detail }| {
                ClusterError::from(NoLeader {
                    waited,
                    detail: self.describe_exits(detail),
                })
            })
    }

    /// Adds "node N exited" for nodes we started that are gone, and where the logs are.
    fn describe_exits(&self, mut detail: String) -> String {
        for (id, slot) in &self.slots {
            if let Some(Proc::Child(child)) = &slot.proc {
                if !child_alive(child) {
                    let _ = write!(
                        detail,
                        "; node {id} exited (see {})",
                        self.log_path(*id).display()
                    );
                }
            }
        }
        let _ = write!(detail, "; node logs in {}", self.dir.display());
        detail
    }

    /// Checks that every node's IP is an address of this machine, so nftables rules here
    /// can cut its links.
    pub fn check_partitionable(&self) -> Result<(), String> {
        for node in &self.config.nodes {
            let Some(addr) = self.node_addr(node.id) else {
                return Err(format!(
                    "node {} at {}: the address does not resolve",
                    node.id, node.addr
                ));
            };
            if !addr.ip().is_loopback() && UdpSocket::bind((addr.ip(), 0)).is_err() {
                return Err(format!(
                    "node {} at {}: {} is not an address of this machine; partitions are \
                     nftables rules on this machine and need local node addresses",
                    node.id,
                    node.addr,
                    addr.ip()
                ));
            }
        }
        Ok(())
    }

    /// Checks that every node has a known process (kill and pause need its pid).
    pub fn check_controllable(&self) -> Result<(), String> {
        for id in self.ids() {
            if !self.is_running(id) {
                return Err(ClusterError::NoPid {
                    id,
                    pid_file: self.pid_path(id),
                }
                .to_string());
            }
        }
        Ok(())
    }

    // --- process plumbing ---

    fn live_pid(&mut self, id: NodeId) -> Result<Pid, ClusterError> {
        self.slot(id)?;
        if !self.is_running(id) {
            return Err(ClusterError::NotRunning { id });
        }
        self.slots
            .get(&id)
            .and_then(|s| s.proc.as_ref())
            .map(Proc::pid)
            .ok_or(ClusterError::NotRunning { id })
    }

    fn send(&self, id: NodeId, pid: Pid, signal: Signal) -> Result<(), ClusterError> {
        send_signal(pid, signal).map_err(|source| ClusterError::Signal {
            id,
            pid: pid.as_raw(),
            signal,
            source,
        })
    }

    /// Whether node `id`'s process has exited (reaping our child if so).
    fn gone(&mut self, id: NodeId) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return true;
        };
        match &mut slot.proc {
            None => true,
            Some(Proc::Child(child)) => !matches!(child.try_wait(), Ok(None)),
            Some(Proc::Foreign(pid)) => foreign_gone(*pid),
        }
    }

    /// Sends `signal` and waits up to `patience` for the process to disappear.
    fn signal_and_wait(
        &mut self,
        id: NodeId,
        signal: Signal,
        patience: Duration,
    ) -> Result<(), ClusterError> {
        let Some(pid) = self
            .slots
            .get(&id)
            .and_then(|s| s.proc.as_ref())
            .map(Proc::pid)
        else {
            return Ok(());
        };
        match send_signal(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                return Err(ClusterError::Signal {
                    id,
                    pid: pid.as_raw(),
                    signal,
                    source,
                })
            }
        }
        if let Some(Slot {
            proc: Some(Proc::Child(child)),
            ..
        }) = self.slots.get_mut(&id)
        {
            if signal == Signal::SIGKILL {
                // SIGKILL cannot be ignored: the wait is short.
                let _ = child.wait();
                return Ok(());
            }
        }
        if wait_for(patience, || self.gone(id)) {
            Ok(())
        } else {
            Err(ClusterError::Stuck {
                id,
                pid: pid.as_raw(),
                signal,
                waited: patience,
            })
        }
    }

    /// Drops what we know about node `id`'s process (reaping our child if it exited) and
    /// its pid file.
    fn forget(&mut self, id: NodeId) {
        let pid_path = self.pid_path(id);
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.paused = false;
        let Some(proc) = slot.proc.take() else {
            return;
        };
        let pid = proc.pid().as_raw();
        slot.resume_on_exit = None;
        if let Proc::Child(mut child) = proc {
            if matches!(child.try_wait(), Ok(None)) {
                // Still alive: keep it (callers only forget processes that are gone).
                slot.proc = Some(Proc::Child(child));
                return;
            }
            slot.kill_on_exit = None;
        }
        if read_pid_file(&pid_path) == Some(pid) {
            let _ = std::fs::remove_file(&pid_path);
        }
    }

    /// The command line of `pid` if it is `raft-node run` of node `id` of this cluster's
    /// config file (`Some(empty)` where /proc is unavailable and the pid is alive).
    fn node_cmdline(&self, pid: i32, id: NodeId) -> Option<Vec<String>> {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return (!Path::new("/proc/self").exists() && process::alive(pid.unsigned_abs()))
                .then(Vec::new);
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
        };
        if !args.iter().any(|a| a == "run") || flag("--id") != Some(&id.to_string()) {
            return None;
        }
        let config = PathBuf::from(flag("--config")?);
        let config = if config.is_relative() {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()?
                .join(config)
        } else {
            config
        };
        let same = match (config.canonicalize(), self.config.path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        same.then_some(args)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.ownership == Ownership::Owned {
            if let Err(e) = self.stop_all() {
                warn!("stopping the cluster in {}: {e}", self.dir.display());
            }
        }
        release_ports(&self.reserved);
    }
}

impl Db for LocalCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.node_addrs()
            .into_iter()
            .map(|(id, addr)| DbNode {
                id,
                addr,
                socket: self.node_addr(id),
            })
            .collect()
    }

    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        LocalCluster::kill(self, id).map_err(DbError::of("kill", id))
    }

    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        LocalCluster::start(self, id).map_err(DbError::of("start", id))
    }

    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        LocalCluster::pause(self, id).map_err(DbError::of("pause", id))
    }

    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        LocalCluster::resume(self, id).map_err(DbError::of("resume", id))
    }

    fn supports(&self, needs: Needs) -> Result<(), String> {
        if needs.lazy_disks && self.disks.is_empty() {
            return Err(super::lazy_disks::NEEDS_LAZY_DISKS.into());
        }
        if needs.own_interfaces {
            Err(LATENCY_NEEDS_HOSTS.into())
        } else if needs.network && needs.processes {
            // `freeze-leader`: cuts links and pauses a process.
            self.check_partitionable()
                .and_then(|()| self.check_controllable())
        } else if needs.network {
            self.check_partitionable()
        } else {
            self.check_controllable()
        }
    }

    /// With the nodes that exited and where their logs are, when no leader is found.
    fn leader<'a>(
        &'a self,
        client: &'a ClientConnector,
        timeout: Duration,
    ) -> super::LeaderFuture<'a> {
        Box::pin(async move {
            LocalCluster::leader(self, client, timeout)
                .await
                .map_err(DbError::cluster("find the leader"))
        })
    }

    /// Only while the node is down: a running node would see its own files change.
    fn disk(&mut self, id: NodeId, command: DiskCommand) -> Result<String, DbError> {
        if command.needs_node_down() && self.is_running(id) {
            return Err(DbError::of(command.action(), id)("the node is running"));
        }
        self.disks
            .command(id, command.name())
            .map_err(DbError::of(command.action(), id))
    }

    fn data_dir(&self, id: NodeId) -> Option<PathBuf> {
        self.config.node(id).map(|_| self.config.data_dir(id))
    }

    fn wait_exit(&mut self, id: NodeId, patience: Duration) -> Result<Option<Exit>, DbError> {
        let mut status = None;
        wait_for(patience, || {
            status = match self.slots.get_mut(&id).and_then(|s| s.proc.as_mut()) {
                Some(Proc::Child(child)) => child.try_wait().ok().flatten(),
                _ => None,
            };
            status.is_some() || !self.is_running(id)
        });
        if self.is_running(id) {
            return Ok(None);
        }
        let code = status.and_then(|s| s.code());
        self.forget(id);
        Ok(Some(Exit {
            code,
            log_tail: log_tail(&self.log_path(id)),
        }))
    }

    /// Stops the nodes the run started (their logs are in the cluster folder already), then
    /// unmounts their lazy disks.
    fn teardown(&mut self, owned: bool, _logs_dir: &Path) -> Result<(), DbError> {
        if owned {
            self.stop_all()
                .map_err(DbError::cluster("stop the cluster"))?;
        }
        self.disks
            .unmount_all()
            .map_err(DbError::cluster("unmount the lazy disks"))
    }

    /// The run's own nftables table on this machine.
    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        Nft::new()
            .map(|nft| Box::new(nft) as Box<dyn Network>)
            .map_err(NetError::Nftables)
    }
}

/// The last lines of the log at `path` (a few KiB), or why it cannot be read.
pub(crate) fn log_tail(path: &Path) -> String {
    const TAIL: usize = 4096;
    match std::fs::read(path) {
        Ok(bytes) => {
            let from = bytes.len().saturating_sub(TAIL);
            String::from_utf8_lossy(&bytes[from..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `raft-lab cluster up`: `target` is an existing `cluster.toml` (its nodes are started), a
/// `*.toml` path that does not exist yet (a cluster is created there), or a directory (a
/// cluster is created in it unless it holds a `cluster.toml`, which is then used). Nodes are
/// started detached and keep running after `raft-lab` exits; pid files are written. Returns
/// the (detached) cluster, e.g. to wait for a leader.
pub fn up(target: &Path, opts: &ClusterOptions) -> Result<(LocalCluster, UpReport), ClusterError> {
    let is_toml = target.extension().is_some_and(|e| e == "toml");
    let (dir, file) = if target.is_file() || (is_toml && !target.exists()) {
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (dir, target.to_path_buf())
    } else {
        (target.to_path_buf(), target.join("cluster.toml"))
    };
    let mut cluster = if file.exists() {
        let mut cluster = LocalCluster::open(&file)?;
        cluster.set_raft_node(opts.raft_node.clone());
        if !opts.bugs.is_empty() {
            cluster.set_bugs(opts.bugs.clone())?;
        }
        cluster.stop_grace = opts.stop_grace;
        cluster.ensure_certs()?;
        cluster
    } else if file.file_name().is_some_and(|n| n == "cluster.toml") {
        LocalCluster::prepare(&dir, opts, Ownership::Detached)?
    } else {
        // A custom file name: write the cluster beside it under that name.
        let cluster = LocalCluster::prepare(&dir, opts, Ownership::Detached)?;
        let written = cluster.config.path.clone();
        drop(cluster);
        std::fs::rename(&written, &file).map_err(|source| ClusterError::Io {
            what: "rename",
            path: written,
            source,
        })?;
        let mut cluster = LocalCluster::open(&file)?;
        cluster.set_raft_node(opts.raft_node.clone());
        cluster.set_bugs(opts.bugs.clone())?;
        cluster
    };
    let mut report = UpReport {
        config: cluster.config.path.clone(),
        started: Vec::new(),
        already_running: Vec::new(),
    };
    for id in cluster.ids() {
        if cluster.is_running(id) {
            report.already_running.push(id);
            continue;
        }
        cluster.start(id)?;
        report.started.push((id, cluster.pid(id).unwrap_or(0)));
    }
    Ok((cluster, report))
}

/// `raft-lab cluster down`: stops the nodes of `config` found through their pid files
/// (SIGCONT, SIGTERM, grace, SIGKILL).
pub fn down(config: &Path) -> Result<DownReport, ClusterError> {
    let mut cluster = LocalCluster::open(config)?;
    let mut report = DownReport::default();
    for id in cluster.ids() {
        if cluster.is_running(id) {
            report.stopped.push(id);
        } else {
            report.not_running.push(id);
            cluster.forget(id);
        }
    }
    cluster.stop_all()?;
    Ok(report)
}

fn resolve_endpoints(config: &ClusterConfig) -> BTreeMap<NodeId, SocketAddr> {
    let mut endpoints = BTreeMap::new();
    for node in &config.nodes {
        match node.addr.to_socket_addrs() {
            Ok(mut addrs) => {
                let all: Vec<SocketAddr> = addrs.by_ref().collect();
                if let Some(a) = all.iter().find(|a| a.is_ipv4()).or(all.first()) {
                    endpoints.insert(node.id, *a);
                }
            }
            Err(e) => warn!(id = node.id, addr = %node.addr, "cannot resolve: {e}"),
        }
    }
    endpoints
}

fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `--bug NAME` values of a command line.
fn bug_flags(args: &[String]) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == "--bug")
        .map(|w| w[1].clone())
        .collect()
}

/// Our child has not exited (checked without reaping it).
fn child_alive(child: &Child) -> bool {
    let pid = Pid::from_raw(child.id() as i32);
    matches!(
        waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Ok(WaitStatus::StillAlive)
    )
}

/// A process that is not our child has exited: no such pid, or a zombie (which we reap if it
/// happens to be our child after all, e.g. started by `up` in this very process).
fn foreign_gone(pid: Pid) -> bool {
    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    let pid = pid.as_raw().unsigned_abs();
    !process::alive(pid) || process::state(pid) == Some('Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_flags_of_a_command_line() {
        let args: Vec<String> = ["raft-node", "run", "--bug", "stale-read", "--id", "2"]
            .map(String::from)
            .to_vec();
        assert_eq!(bug_flags(&args), vec!["stale-read".to_string()]);
    }
}
