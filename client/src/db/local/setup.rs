//! What a new local cluster is made of: its options, where the `raft-node` binary is, its
//! loopback addresses (free ports, reserved within this process so that two clusters of one
//! process never collide) and the text of its `cluster.toml`.

use super::error::ClusterError;
use crate::control::locked;
use model::core::NodeId;
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tracing::debug;

/// First port tried for node 1 (node N gets `base_port + N - 1`).
pub const DEFAULT_BASE_PORT: u16 = 15001;
/// How many alternative port ranges [`LocalCluster::create`] tries when ports are taken.
const PORT_ATTEMPTS: u16 = 64;

/// How to create a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// The `raft-node` binary (see [`raft_node_binary`]).
    pub raft_node: PathBuf,
    /// Catalogue bugs every node runs with (`--bug NAME`).
    pub bugs: Vec<String>,
    pub tick_ms: u64,
    /// Port of node 1; node N gets `base_port + N - 1`. Taken ports make
    /// [`LocalCluster::create`] try further ranges.
    pub base_port: u16,
    pub snapshot_every: u64,
    pub request_timeout_ms: u64,
    /// How long [`LocalCluster::stop_all`] waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// Put each node's data directory on a lazy disk ([`crate::db::lazy_disks`]), for the
    /// faults that lose unsynced writes (`power-cut`, `lose-unsynced`, `disk-full`).
    pub lazy_disks: Option<LazyDiskOptions>,
}

/// How to mount the lazy disks.
#[derive(Clone, Debug)]
pub struct LazyDiskOptions {
    /// The `raft-lazyfs` binary (see [`raft_lazyfs_binary`]).
    pub binary: PathBuf,
    /// Seeds which pages of a torn write reach the disk (the run's seed).
    pub seed: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            raft_node: raft_node_binary().unwrap_or_else(|_| PathBuf::from("raft-node")),
            bugs: Vec::new(),
            tick_ms: 50,
            base_port: DEFAULT_BASE_PORT,
            snapshot_every: 10_000,
            request_timeout_ms: 3000,
            stop_grace: Duration::from_secs(5),
            lazy_disks: None,
        }
    }
}

/// Finds the `raft-node` binary: `$RAFT_NODE_BIN`, else beside the running executable (where
/// cargo puts `raft-lab`; for test executables in `target/<profile>/deps/` one directory up),
/// else on `PATH`.
pub fn raft_node_binary() -> Result<PathBuf, ClusterError> {
    sibling_binary("raft-node", "RAFT_NODE_BIN").map_err(|tried| ClusterError::BinaryNotFound {
        binary: "raft-node",
        package: "node",
        env: "RAFT_NODE_BIN",
        tried,
    })
}

/// Finds the `raft-lazyfs` binary as [`raft_node_binary`] does (`$RAFT_LAZYFS_BIN` first).
pub fn raft_lazyfs_binary() -> Result<PathBuf, ClusterError> {
    sibling_binary("raft-lazyfs", "RAFT_LAZYFS_BIN").map_err(|tried| ClusterError::BinaryNotFound {
        binary: "raft-lazyfs",
        package: "lazyfs",
        env: "RAFT_LAZYFS_BIN",
        tried,
    })
}

/// `$env`, else `name` beside the running executable (or one directory up), else on `PATH`;
/// the places tried when none is a file.
fn sibling_binary(name: &str, env: &str) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(format!("{env}={}", path.display()));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
            dir = d.parent();
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        tried.push(format!("{name} on PATH"));
    }
    Err(tried.join(", "))
}

/// The loopback address of node `id` in a cluster made by [`LocalCluster::create`].
pub fn local_node_ip(id: NodeId) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + id.min(245) as u8)
}

/// (ip, port) pairs held by the clusters of this process, each with its lock file (see
/// [`lock_port`]).
static RESERVED_PORTS: Mutex<BTreeMap<(IpAddr, u16), Flock<File>>> = Mutex::new(BTreeMap::new());

/// Locks `ip:port` for this process's cluster against other `raft-lab` processes: an
/// exclusive flock on `<temp dir>/raftlab-ports/<ip>-<port>.lock`, released when the lock is
/// dropped or the process dies. A bind test alone is not enough: while a node of another
/// lab's cluster is down (killed by its nemesis), its port is free to bind, and a cluster
/// taking it would keep that node from restarting. `Err`: why the port cannot be had.
fn lock_port(ip: IpAddr, port: u16) -> Result<Flock<File>, String> {
    let dir = std::env::temp_dir().join("raftlab-ports");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{ip}-{port}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| format!("{ip}:{port} is held by another raft-lab ({e})"))
}

/// The text of `cluster.toml` for nodes at `addrs` (node N = `addrs[N-1]`), with node N's
/// `host` = `hosts[N-1]` when given.
pub fn cluster_toml(addrs: &[SocketAddr], hosts: &[String], opts: &ClusterOptions) -> String {
    let mut text = String::from("# Written by raft-lab.\n");
    for (i, addr) in addrs.iter().enumerate() {
        let _ = write!(text, "\n[[node]]\nid = {}\naddr = \"{addr}\"\n", i + 1);
        if let Some(host) = hosts.get(i) {
            let _ = writeln!(text, "host = {host:?}");
        }
    }
    let _ = write!(
        text,
        "\n[timing]\ntick_ms = {}\nrequest_timeout_ms = {}\n\n[storage]\nsnapshot_every = {}\n",
        opts.tick_ms, opts.request_timeout_ms, opts.snapshot_every
    );
    text
}

/// Node addresses `127.0.0.(10+N):(base+N-1)` whose UDP ports are free (a bind test) and not
/// held by another cluster of this process, trying further bases when taken; reserves them.
pub(super) fn free_addresses(
    nodes: usize,
    base_port: u16,
) -> Result<Vec<SocketAddr>, ClusterError> {
    let mut tried = Vec::new();
    let mut last = String::from("no attempt");
    let mut reserved = locked(&RESERVED_PORTS);
    for attempt in 0..PORT_ATTEMPTS {
        let Some(base) = (attempt as u32)
            .checked_mul(nodes as u32)
            .and_then(|o| u16::try_from(base_port as u32 + o).ok())
            .filter(|b| (*b as usize) + nodes <= u16::MAX as usize)
        else {
            break;
        };
        tried.push(base.to_string());
        let addrs: Vec<SocketAddr> = (0..nodes)
            .map(|i| SocketAddr::new(local_node_ip(i as NodeId + 1).into(), base + i as u16))
            .collect();
        let taken = addrs.iter().find_map(|a| {
            if reserved.contains_key(&(a.ip(), a.port())) {
                return Some(format!("{a} is used by another cluster of this process"));
            }
            UdpSocket::bind(a).err().map(|e| format!("{a}: {e}"))
        });
        match taken {
            None => {
                // Lock every port of the range, or give the range up.
                let locks: Result<Vec<_>, String> =
                    addrs.iter().map(|a| lock_port(a.ip(), a.port())).collect();
                match locks {
                    Ok(locks) => {
                        let keys = addrs.iter().map(|a| (a.ip(), a.port()));
                        reserved.extend(keys.zip(locks));
                        return Ok(addrs);
                    }
                    Err(why) => {
                        debug!(base, %why, "ports locked; trying the next range");
                        last = why;
                    }
                }
            }
            Some(why) => {
                debug!(base, %why, "ports taken; trying the next range");
                last = why;
            }
        }
    }
    Err(ClusterError::NoFreePorts {
        nodes,
        tried: tried.join(","),
        last,
    })
}

pub(super) fn release_ports(ports: &[(IpAddr, u16)]) {
    let mut reserved = locked(&RESERVED_PORTS);
    for p in ports {
        reserved.remove(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node::config::ClusterConfig;
    use std::path::Path;

    #[test]
    fn cluster_toml_parses_with_one_address_per_node() {
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::new(local_node_ip(i).into(), 15000 + i as u16))
            .collect();
        let opts = ClusterOptions {
            tick_ms: 20,
            snapshot_every: 77,
            raft_node: PathBuf::from("raft-node"),
            ..ClusterOptions::default()
        };
        let text = cluster_toml(&addrs, &[], &opts);
        let config = ClusterConfig::parse(Path::new("/x/cluster.toml"), &text).unwrap();
        assert_eq!(config.nodes.len(), 3);
        assert_eq!(config.nodes[1].addr, "127.0.0.12:15002");
        assert_eq!(config.timing.tick_ms, 20);
        assert_eq!(config.storage.snapshot_every, 77);
        assert_eq!(config.data_dir(2), PathBuf::from("/x/data/node-2"));
    }

    #[test]
    fn taken_ports_move_the_range() {
        let first = free_addresses(3, 17101).unwrap();
        // The same range is now reserved by "another cluster" of this process.
        let second = free_addresses(3, 17101).unwrap();
        assert_ne!(first, second);
        assert_eq!(second[0].port(), 17104);
        // A port bound by someone else is skipped too.
        let blocker = UdpSocket::bind((local_node_ip(1), 17201)).unwrap();
        let third = free_addresses(2, 17201).unwrap();
        assert_eq!(third[0].port(), 17203);
        drop(blocker);
        // A port another raft-lab holds (its node may be down: the port binds) is skipped.
        let other = lock_port(local_node_ip(1).into(), 17401).unwrap();
        let fourth = free_addresses(2, 17401).unwrap();
        assert_eq!(fourth[0].port(), 17403);
        drop(other);
        release_ports(
            &fourth
                .iter()
                .map(|a| (a.ip(), a.port()))
                .collect::<Vec<_>>(),
        );
        release_ports(&first.iter().map(|a| (a.ip(), a.port())).collect::<Vec<_>>());
        release_ports(
            &second
                .iter()
                .map(|a| (a.ip(), a.port()))
                .collect::<Vec<_>>(),
        );
        release_ports(&third.iter().map(|a| (a.ip(), a.port())).collect::<Vec<_>>());
    }
}
