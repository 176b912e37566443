//! An etcd v3 cluster as a system under test: `etcd` processes on this machine, each member on
//! its own loopback address, with mutual TLS between members and towards clients, from
//! certificates made by the lab's own tooling (`node::certs`).
//!
//! ```text
//! DIR/certs/              CA, node-N.pem/.key (IP SAN 127.0.0.(10+N)), client.pem/.key
//! DIR/data/node-N/        member N's data directory
//! DIR/node-N.log          member N's stdout and stderr, appended across restarts
//! ```
//!
//! Member N is named `node-N` and listens on `https://127.0.0.(10+N):P` for clients and on
//! `:P+1` for its peers (the same two ports on every member's address; `P` is the first free
//! pair from `--base-port`, 2379 by default). Members are children of this process: always
//! stopped, by [`EtcdCluster::stop_all`], by `Drop` and by [`cleanup::run_all`] (Ctrl-C).
//! The leader is read from etcd's own status API (`POST /v3/maintenance/status`).
//!
//! With `netns` ([`EtcdOptions::netns`], `raft-lab run --db etcd --hosts netns`) member N
//! runs instead in a network namespace of its own (`ip netns exec NS etcd ...`, still a
//! child of this process), at its namespace's address on the lab's bridge
//! ([`NetnsHosts`]): its links are cut by address in every namespace and `latency` delays
//! its interface, through the same [`RemoteNetwork`] as raftlab's namespace nodes.
//!
//! With `--cluster cluster.toml` (a `[remote]` section, [`EtcdCluster::create_remote`]) member
//! N runs on its host instead, reached through the command template, at the `addr` of its
//! `[[node]]` entry ([`hosts`] says what goes where on the hosts); its certificate and the CA
//! are copied there, its log fetched back at the end, and its links cut by address on the
//! hosts ([`RemoteNetwork`]).
//!
//! Partitions on loopback: an etcd member dials its peers from the loopback's primary address
//! (127.0.0.1), not from its own, so nftables rules by address cannot tell members apart.
//! Each member therefore runs under a group id of its own (which needs root), and the run's
//! nftables table matches packets by the group of the process sending them
//! ([`Nft::by_group`]).

mod error;
mod hosts;
mod members;
mod status;
mod transfer;

pub use error::{EtcdError, MAX_MEMBERS};
pub use hosts::{member_addrs, EtcdHosts, EtcdProgram};
pub use members::EtcdMember;
pub use status::{MemberStatus, StatusClient};

use super::local::local_node_ip;
use super::{Db, DbError, DbNode, LeaderFuture, Needs, ProbeFuture, MEMBERSHIP_STEP};
use crate::control::cleanup::{self, Cleanup};
use crate::control::locked;
use crate::control::process::{self, wait_for};
use crate::control::template::CommandTemplate;
use crate::net::netns::{NetnsHosts, EXEC_TEMPLATE};
use crate::net::nft::{Match, Nft};
use crate::net::remote::RemoteNetwork;
use crate::net::{NetError, Network, LATENCY_NEEDS_HOSTS};
use model::core::NodeId;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use node::config::ClusterConfig;
use node::config::NodeEntry;
use node::transport::ClientConnector;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// etcd's registered client port; the peer port is the next one.
pub const DEFAULT_BASE_PORT: u16 = 2379;
/// How many port pairs (10 apart) are tried when ports are taken.
const PORT_ATTEMPTS: u16 = 32;
/// Interval of every wait-for-a-condition loop on processes, and of leader polls.
const POLL: Duration = Duration::from_millis(50);
/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a status call may take when the members are being stopped.
const STOP_STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// How long etcd may refuse a membership change (a member connected only just, a learner
/// still catching up) before the change fails.
const CHANGE_PATIENCE: Duration = Duration::from_secs(30);
/// Between two attempts at a membership change.
const CHANGE_POLL: Duration = Duration::from_millis(200);
/// Why partitions cannot be applied when the members do not run under groups of their own.
pub const PARTITION_NEEDS_GROUPS: &str =
    "etcd members on loopback dial their peers from 127.0.0.1, not from their own address, \
     so their links are cut by the group id each member runs under, and starting a member \
     under another group needs root";
/// First group id of the members' groups (member N of cluster C of process P runs under
/// `GROUP_BASE + (P mod 1000000) * 100 + (C mod 10) * 10 + N`).
const GROUP_BASE: u32 = 1_000_000_000;
/// Clusters made by this process, for their group ids.
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// Base ports held by the etcd clusters of this process.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How to start an etcd cluster.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    pub members: usize,
    /// The `etcd` binary (see [`etcd_binary`]).
    pub etcd: PathBuf,
    /// Client port tried first (its peer port is the next one).
    pub base_port: u16,
    /// Use `base_port` or fail (`--etcd-port`): no search for free ports.
    pub fixed_port: bool,
    /// One network namespace per member (see the module) instead of loopback addresses.
    pub netns: bool,
    /// How long [`EtcdCluster::stop_all`] waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

impl EtcdOptions {
    pub fn new(members: usize, etcd: PathBuf) -> EtcdOptions {
        EtcdOptions {
            members,
            etcd,
            base_port: DEFAULT_BASE_PORT,
            fixed_port: false,
            netns: false,
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// Finds the `etcd` binary: `explicit` if given (it must exist), else `etcd` on `PATH`.
pub fn etcd_binary(explicit: Option<&Path>) -> Result<PathBuf, EtcdError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(EtcdError::BinaryNotFound {
                tried: path.display().to_string(),
            })
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        })
        .ok_or_else(|| EtcdError::BinaryNotFound {
            tried: "etcd on PATH".into(),
        })
}

/// The oldest etcd the lab drives (`major`, `minor`): learners and the `/v3/` JSON gateway
/// the lab's status and member calls use came with 3.4.
pub const MIN_VERSION: (u32, u32) = (3, 4);

/// The version `etcd --version` reports, if it is [`MIN_VERSION`] or later.
pub fn check_version(etcd: &Path) -> Result<String, EtcdError> {
    let unreadable = |detail: String| EtcdError::VersionUnreadable {
        binary: etcd.to_path_buf(),
        detail,
    };
    let out = Command::new(etcd)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unreadable(e.to_string()))?;
    judge_version(
        etcd,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// The version `etcd --version` of `etcd` printed, if it is [`MIN_VERSION`] or later.
fn judge_version(etcd: &Path, stdout: &str, stderr: &str) -> Result<String, EtcdError> {
    let Some(found) = parse_version(stdout) else {
        let said = crate::control::one_line(&format!("{stdout}{stderr}"));
        return Err(EtcdError::VersionUnreadable {
            binary: etcd.to_path_buf(),
            detail: format!("no `etcd Version:` line in {said:?}"),
        });
    };
    match numeric_version(&found) {
        Some(v) if v >= MIN_VERSION => Ok(found),
        _ => Err(EtcdError::TooOld {
            binary: etcd.to_path_buf(),
            found,
        }),
    }
}

/// Member `id`'s etcd name, `node-N`.
fn member_name(id: NodeId) -> String {
    format!("node-{id}")
}

/// The version on the `etcd Version: X.Y.Z` line of `etcd --version`.
fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `(major, minor)` of `X.Y[.Z...]` (`None` when they are not numbers).
fn numeric_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether a fault with these needs can be applied to an etcd cluster whose members have
/// addresses and interfaces of their own (`own_hosts`: in namespaces or on remote hosts), or
/// on loopback with members that can (`groups`) or cannot run under group ids of their own;
/// the reason when not.
pub fn supports(needs: Needs, own_hosts: bool, groups: bool) -> Result<(), String> {
    if needs.lazy_disks {
        Err(
            "the lab puts raftlab nodes' data on lazy disks (raft-lazyfs), not etcd members'"
                .into(),
        )
    } else if own_hosts {
        Ok(())
    } else if needs.own_interfaces {
        Err(LATENCY_NEEDS_HOSTS.into())
    } else if needs.network && !groups {
        Err(PARTITION_NEEDS_GROUPS.into())
    } else {
        Ok(())
    }
}

/// Whether members can run under group ids of their own here: root can set them.
pub fn groups_possible() -> bool {
    crate::control::process::effective_uid() == Ok(0)
}

/// Checks that client port `port` and peer port `port + 1` are free on the address of every
/// one of `members` members.
pub fn check_ports(members: usize, port: u16) -> Result<(), EtcdError> {
    let ips: Vec<Ipv4Addr> = (1..=members as NodeId).map(local_node_ip).collect();
    ports_free(&ips, port)
}

/// [`check_ports`] on these addresses; the first one taken is named.
fn ports_free(ips: &[Ipv4Addr], port: u16) -> Result<(), EtcdError> {
    let peer = port.checked_add(1).ok_or(EtcdError::PortRange(port))?;
    for ip in ips {
        for p in [port, peer] {
            if let Err(source) = TcpListener::bind((*ip, p)) {
                return Err(EtcdError::PortInUse {
                    addr: SocketAddr::new(IpAddr::V4(*ip), p),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// One member and its process (on a remote host: only its addresses and how it joins).
#[derive(Debug)]
struct Member {
    ip: Ipv4Addr,
    /// Its client port; the peer port is the next one.
    port: u16,
    /// The network namespace it runs in (`None`: this machine's).
    ns: Option<String>,
    /// The group id the member runs under; `None` once it could not be set (not root).
    gid: Option<u32>,
    child: Option<Child>,
    paused: bool,
    /// The `--initial-cluster` of a member added back to a running cluster (it starts with
    /// `--initial-cluster-state existing`); `None` for a founding member.
    joins: Option<String>,
    /// SIGKILLs the process on Ctrl-C, until it is reaped.
    kill_on_exit: Option<Cleanup>,
    /// SIGCONTs it on Ctrl-C while we hold it paused.
    resume_on_exit: Option<Cleanup>,
}

impl Member {
    fn new(ip: Ipv4Addr, port: u16, ns: Option<String>, gid: Option<u32>) -> Member {
        Member {
            ip,
            port,
            ns,
            gid,
            child: None,
            paused: false,
            joins: None,
            kill_on_exit: None,
            resume_on_exit: None,
        }
    }

    /// `https://IP:PORT+1`, where its peers reach it.
    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, u32::from(self.port) + 1)
    }
}

/// An etcd cluster: child processes on this machine, or members on hosts of their own.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    etcd: PathBuf,
    client_port: u16,
    /// Whether [`RESERVED`] holds `client_port` for this cluster (not in namespaces).
    reserved: bool,
    stop_grace: Duration,
    members: BTreeMap<NodeId, Member>,
    status: StatusClient,
    /// The members' hosts, when they run on hosts of their own (`None`: children here).
    hosts: Option<EtcdHosts>,
    /// The members' namespaces; last, so they go after `Drop` has stopped the members.
    netns: Option<NetnsHosts>,
}

impl EtcdCluster {
    /// Makes the certificates in `dir/certs` and starts every member. `dir` must not hold
    /// certificates yet.
    pub fn create(dir: &Path, opts: &EtcdOptions) -> Result<EtcdCluster, EtcdError> {
        if opts.members == 0 || opts.members > MAX_MEMBERS {
            return Err(EtcdError::MemberCount(opts.members));
        }
        let dir = fresh_dir(dir)?;
        std::fs::create_dir_all(dir.join("data")).map_err(|source| EtcdError::Io {
            what: "create directory",
            path: dir.clone(),
            source,
        })?;
        let netns = if opts.netns {
            Some(NetnsHosts::create(opts.members).map_err(|e| EtcdError::Netns(e.to_string()))?)
        } else {
            None
        };
        let (ips, namespaces): (Vec<Ipv4Addr>, Vec<Option<String>>) = match &netns {
            Some(net) => net
                .hosts()
                .iter()
                .map(|h| (h.ip, Some(h.name.clone())))
                .unzip(),
            None => (1..=opts.members as NodeId)
                .map(|id| (local_node_ip(id), None))
                .unzip(),
        };
        // Fresh namespaces have every port free; loopback addresses are shared.
        let client_port = match netns {
            Some(_) => opts.base_port,
            None => reserve_ports(&ips, opts.base_port, opts.fixed_port)?,
        };
        let cluster_index = CLUSTERS.fetch_add(1, Ordering::Relaxed) % 10;
        let group_base = GROUP_BASE + (std::process::id() % 1_000_000) * 100 + cluster_index * 10;
        let mut cluster = EtcdCluster {
            members: ips
                .iter()
                .zip(namespaces)
                .enumerate()
                .map(|(i, (ip, ns))| {
                    let gid = ns.is_none().then_some(group_base + i as u32 + 1);
                    (i as NodeId + 1, Member::new(*ip, client_port, ns, gid))
                })
                .collect(),
            etcd: opts.etcd.clone(),
            client_port,
            reserved: netns.is_none(),
            stop_grace: opts.stop_grace,
            status: make_certs(&dir, &addrs_of(&ips, client_port))?,
            hosts: None,
            dir,
            netns,
        };
        for id in cluster.ids() {
            cluster.start(id)?;
        }
        info!(dir = %cluster.dir.display(), members = opts.members, "etcd cluster started");
        Ok(cluster)
    }

    /// Makes the certificates in `dir/certs` (this machine), copies each member's to its host
    /// and starts every member of `config` (which must have `[remote]`) there, through the
    /// command template. `dir` must not hold certificates yet; it receives the members' logs
    /// at [`Db::teardown`].
    pub fn create_remote(dir: &Path, config: ClusterConfig) -> Result<EtcdCluster, EtcdError> {
        let addrs = member_addrs(&config)?;
        let hosts = EtcdHosts::open(config, true)?;
        let dir = fresh_dir(dir)?;
        let status = make_certs(&dir, &addrs)?;
        hosts.ship_certs(&dir.join("certs"))?;
        let members = addrs
            .iter()
            .filter_map(|(id, addr)| match addr.ip() {
                IpAddr::V4(ip) => Some((*id, Member::new(ip, addr.port(), None, None))),
                IpAddr::V6(_) => None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            etcd: PathBuf::from(hosts.binary()),
            client_port: 0,
            reserved: false,
            // Members on hosts are stopped with the remote cluster's own grace period.
            stop_grace: Duration::ZERO,
            status,
            hosts: Some(hosts),
            dir,
            netns: None,
        };
        for id in cluster.ids() {
            cluster.start(id)?;
        }
        info!(dir = %cluster.dir.display(), members = cluster.members.len(), "etcd cluster started on its hosts");
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// `DIR/certs`: the CA, and the client certificate a client of this cluster presents.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The lab's id of each member by its peer URL (how etcd's member list tells them apart).
    fn ids_by_peer_url(&self) -> BTreeMap<String, NodeId> {
        self.members
            .iter()
            .map(|(id, m)| (m.peer_url(), *id))
            .collect()
    }

    /// Member `id`'s client address.
    pub fn client_addr(&self, id: NodeId) -> Option<SocketAddr> {
        let member = self.members.get(&id)?;
        Some(SocketAddr::new(IpAddr::V4(member.ip), member.port))
    }

    /// The pid of member `id`'s process, if it was started and not killed since.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        if let Some(hosts) = &self.hosts {
            return hosts.pid(id);
        }
        self.members.get(&id)?.child.as_ref().map(Child::id)
    }

    /// `DIR/node-N.log` (members on hosts of their own: once fetched at [`Db::teardown`]).
    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    fn member(&mut self, id: NodeId) -> Result<&mut Member, EtcdError> {
        self.members
            .get_mut(&id)
            .ok_or(EtcdError::UnknownMember(id))
    }

    /// Whether member `id`'s process is alive (a paused member is alive).
    pub fn is_running(&mut self, id: NodeId) -> bool {
        if let Some(hosts) = &self.hosts {
            return hosts.is_running(id);
        }
        self.members
            .get_mut(&id)
            .and_then(|m| m.child.as_mut())
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The arguments of `etcd` for member `id`, its certificates in `certs` and its data in
    /// `data/node-N` on the machine it runs on.
    fn member_args(&self, id: NodeId, certs: &Path, data: &Path) -> Vec<String> {
        let Some(member) = self.members.get(&id) else {
            return Vec::new();
        };
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let cert = path(certs.join(node::certs::node_cert_file(id)));
        let key = path(certs.join(node::certs::node_key_file(id)));
        let ca = path(certs.join(node::certs::CA_CERT));
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|(id, m)| format!("{}={}", member_name(*id), m.peer_url()))
            .collect();
        let client_url = format!("https://{}:{}", member.ip, member.port);
        let state = if member.joins.is_some() {
            "existing"
        } else {
            "new"
        };
        let mut args: Vec<String> = [
            "--name",
            &member_name(id),
            "--data-dir",
            &path(data.join(member_name(id))),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &member.peer_url(),
            "--initial-advertise-peer-urls",
            &member.peer_url(),
            "--initial-cluster",
            member.joins.as_deref().unwrap_or(&initial.join(",")),
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            &format!("raftlab-{}", self.dir.display()),
        ]
        .map(str::to_string)
        .to_vec();
        for (flag, path) in [
            ("--cert-file", &cert),
            ("--key-file", &key),
            ("--trusted-ca-file", &ca),
            ("--peer-cert-file", &cert),
            ("--peer-key-file", &key),
            ("--peer-trusted-ca-file", &ca),
        ] {
            args.extend([flag.to_string(), path.clone()]);
        }
        args.extend(
            [
                "--client-cert-auth",
                "--peer-client-cert-auth",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ]
            .map(str::to_string),
        );
        args
    }

    /// The `etcd` command line of member `id` on this machine (in its namespace, if any).
    fn command(&self, id: NodeId) -> Command {
        let ns = self.members.get(&id).and_then(|m| m.ns.as_deref());
        let mut command = match ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(&self.etcd);
                command
            }
            None => Command::new(&self.etcd),
        };
        command.args(self.member_args(id, &self.certs_dir(), &self.dir.join("data")));
        command
    }

    /// Starts member `id` (no-op if it runs); its output is appended to [`Self::log_path`].
    pub fn start(&mut self, id: NodeId) -> Result<(), EtcdError> {
        self.member(id)?;
        if let Some(dir) = self.hosts.as_ref().map(|h| h.dir().to_path_buf()) {
            let args = self.member_args(id, &dir.join("certs"), &dir.join("data"));
            return match &mut self.hosts {
                Some(hosts) => hosts.start(id, args),
                None => Ok(()),
            };
        }
        if self.is_running(id) {
            debug!(id, "start: already running");
            return Ok(());
        }
        if cleanup::ran() {
            return Err(EtcdError::Interrupted(id));
        }
        let log_path = self.log_path(id);
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| EtcdError::Io { what, path, source }
        };
        let mut log = log_file(&log_path)?;
        let _ = writeln!(log, "=== raft-lab: starting etcd member {id} ===");
        let stdout = log.try_clone().map_err(io("open log", &log_path))?;
        let mut command = self.command(id);
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .current_dir(&self.dir);
        let gid = self.member(id)?.gid;
        if let Some(gid) = gid {
            command.gid(gid);
        }
        let spawned = match command.spawn() {
            // Not root: the member runs under our own group, and cannot be partitioned.
            Err(e) if gid.is_some() && e.kind() == std::io::ErrorKind::PermissionDenied => {
                debug!(id, "cannot start the member under a group of its own: {e}");
                self.member(id)?.gid = None;
                self.command(id)
                    .stdin(Stdio::null())
                    .stdout(log_file(&log_path)?)
                    .stderr(log_file(&log_path)?)
                    .current_dir(&self.dir)
                    .spawn()
            }
            other => other,
        };
        let child = spawned.map_err(|source| EtcdError::Spawn {
            id,
            binary: self.etcd.clone(),
            source,
        })?;
        // Pids fit in i32 on every unix.
        let pid = Pid::from_raw(child.id() as i32);
        let member = self.member(id)?;
        member.kill_on_exit = Some(cleanup::register(move || {
            let _ = send_signal(pid, Signal::SIGCONT);
            let _ = send_signal(pid, Signal::SIGKILL);
        }));
        member.child = Some(child);
        member.paused = false;
        member.resume_on_exit = None;
        info!(id, pid = pid.as_raw(), "etcd member started");
        Ok(())
    }

    /// The pid of member `id` if it runs.
    fn live_pid(&mut self, id: NodeId) -> Result<Pid, EtcdError> {
        self.member(id)?;
        if !self.is_running(id) {
            return Err(EtcdError::NotRunning(id));
        }
        self.members
            .get(&id)
            .and_then(|m| m.child.as_ref())
            .map(|c| Pid::from_raw(c.id() as i32))
            .ok_or(EtcdError::NotRunning(id))
    }

    fn send(id: NodeId, pid: Pid, signal: Signal) -> Result<(), EtcdError> {
        send_signal(pid, signal).map_err(|source| EtcdError::Signal {
            id,
            pid: pid.as_raw(),
            signal,
            source,
        })
    }

    /// SIGKILLs member `id` and reaps it.
    pub fn kill(&mut self, id: NodeId) -> Result<(), EtcdError> {
        if let Some(hosts) = &mut self.hosts {
            return hosts.kill(id);
        }
        let pid = self.live_pid(id)?;
        Self::send(id, pid, Signal::SIGKILL)?;
        let member = self.member(id)?;
        if let Some(mut child) = member.child.take() {
            // SIGKILL cannot be ignored: the wait is short.
            let _ = child.wait();
        }
        member.kill_on_exit = None;
        member.resume_on_exit = None;
        member.paused = false;
        info!(id, "etcd member killed");
        Ok(())
    }

    /// SIGSTOPs member `id` and waits (briefly) until the kernel reports it stopped.
    pub fn pause(&mut self, id: NodeId) -> Result<(), EtcdError> {
        if let Some(hosts) = &mut self.hosts {
            return hosts.pause(id);
        }
        let pid = self.live_pid(id)?;
        Self::send(id, pid, Signal::SIGSTOP)?;
        let member = self.member(id)?;
        member.paused = true;
        member.resume_on_exit = Some(cleanup::register(move || {
            let _ = send_signal(pid, Signal::SIGCONT);
        }));
        wait_for(Duration::from_secs(1), || {
            process::state(pid.as_raw().unsigned_abs()).is_none_or(|s| s == 'T')
        });
        info!(id, "etcd member paused");
        Ok(())
    }

    /// SIGCONTs member `id`.
    pub fn resume(&mut self, id: NodeId) -> Result<(), EtcdError> {
        if let Some(hosts) = &mut self.hosts {
            return hosts.resume(id);
        }
        let pid = self.live_pid(id)?;
        Self::send(id, pid, Signal::SIGCONT)?;
        let member = self.member(id)?;
        member.paused = false;
        member.resume_on_exit = None;
        info!(id, "etcd member resumed");
        Ok(())
    }

    /// Takes member `id` out of the membership through etcd's member API (asking the other
    /// members), stops it and wipes its data: it can only come back as a new member
    /// ([`Self::add_member_back`]).
    pub fn remove_member(&mut self, id: NodeId) -> Result<(), EtcdError> {
        let peer = self.member(id)?.peer_url();
        self.change_until(
            id,
            |members| (!members.iter().any(|m| m.peer_urls.contains(&peer))).then_some(()),
            |client, addr, members| match members.iter().find(|m| m.peer_urls.contains(&peer)) {
                Some(member) => client.member_remove(addr, member.id, MEMBERSHIP_STEP),
                None => Ok(()),
            },
        )?;
        // A removed member shuts itself down once it learns it; it may be gone already.
        match self.kill(id) {
            Ok(()) | Err(EtcdError::NotRunning(_)) => {}
            Err(EtcdError::Signal {
                source: nix::errno::Errno::ESRCH,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        self.wipe(id)?;
        info!(
            id,
            "etcd member removed from the membership, its data wiped"
        );
        Ok(())
    }

    /// Adds member `id` back after [`Self::remove_member`]: as a learner (etcd's member API),
    /// started with a fresh data directory and `--initial-cluster-state existing`, then
    /// promoted to a voter once it has caught up.
    pub fn add_member_back(&mut self, id: NodeId) -> Result<(), EtcdError> {
        let peer = self.member(id)?.peer_url();
        let members = self.change_until(
            id,
            |members| {
                members
                    .iter()
                    .any(|m| m.peer_urls.contains(&peer))
                    .then(|| members.to_vec())
            },
            |client, addr, _| {
                client
                    .member_add(addr, &peer, true, MEMBERSHIP_STEP)
                    .map(drop)
            },
        )?;
        if !self.is_running(id) {
            let names = self.ids_by_peer_url();
            let initial: Vec<String> = members
                .iter()
                .filter_map(|m| {
                    let url = m.peer_urls.first()?;
                    Some(format!("node-{}={url}", names.get(url)?))
                })
                .collect();
            self.wipe(id)?;
            self.member(id)?.joins = Some(initial.join(","));
            self.start(id)?;
        }
        self.change_until(
            id,
            |members| {
                members
                    .iter()
                    .any(|m| m.peer_urls.contains(&peer) && !m.learner)
                    .then_some(())
            },
            |client, addr, members| match members.iter().find(|m| m.peer_urls.contains(&peer)) {
                Some(member) => client.member_promote(addr, member.id, MEMBERSHIP_STEP),
                None => Err("no longer a member".into()),
            },
        )?;
        info!(id, "etcd member added back as a voter");
        Ok(())
    }

    /// Lists the members and, until `done` finds what it wants in the list, tries `attempt`
    /// on it, through the members but `id`, for up to [`CHANGE_PATIENCE`]: etcd refuses a
    /// change while some member has been connected for less than its health interval
    /// ("unhealthy cluster"), and a learner's promotion until it has caught up.
    fn change_until<T>(
        &mut self,
        id: NodeId,
        done: impl Fn(&[EtcdMember]) -> Option<T>,
        attempt: impl Fn(&StatusClient, SocketAddr, &[EtcdMember]) -> Result<(), String>,
    ) -> Result<T, EtcdError> {
        let deadline = Instant::now() + CHANGE_PATIENCE;
        loop {
            let tried = self
                .ask_others(id, |c, addr| c.member_list(addr, MEMBERSHIP_STEP))
                .and_then(|members| match done(&members) {
                    Some(found) => Ok(Some(found)),
                    None => self
                        .ask_others(id, |c, addr| attempt(c, addr, &members))
                        .map(|()| None),
                });
            match tried {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => debug!(id, "membership change not done yet: {e}"),
            }
            std::thread::sleep(CHANGE_POLL);
        }
    }

    /// Removes member `id`'s data directory (it must not run).
    fn wipe(&self, id: NodeId) -> Result<(), EtcdError> {
        if let Some(hosts) = &self.hosts {
            return hosts.wipe(id);
        }
        let data = self.dir.join("data").join(format!("node-{id}"));
        match std::fs::remove_dir_all(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EtcdError::Io {
                what: "remove",
                path: data,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// `call` on the client address of each running member but `except`, in id order, until
    /// one answers.
    fn ask_others<T>(
        &mut self,
        except: NodeId,
        call: impl Fn(&StatusClient, SocketAddr) -> Result<T, String>,
    ) -> Result<T, EtcdError> {
        let mut failures = Vec::new();
        for id in self.ids() {
            if id == except || !self.is_running(id) {
                continue;
            }
            let Some(addr) = self.client_addr(id) else {
                continue;
            };
            match call(&self.status, addr) {
                Ok(answer) => return Ok(answer),
                Err(e) => failures.push(format!("member {id}: {e}")),
            }
        }
        if failures.is_empty() {
            failures.push("no other member runs".into());
        }
        Err(EtcdError::MemberApi {
            id: except,
            detail: failures.join("; "),
        })
    }

    /// Stops every member: SIGCONT, SIGTERM, up to the grace period, then SIGKILL; reaps them.
    /// The leader goes last: told to stop, an etcd leader first hands its leadership to the
    /// follower connected longest and waits for it, up to etcd's request timeout (7 s, more
    /// than the grace) when that follower is stopping too; once the followers are gone it
    /// finds none and stops at once. Returns the first failure (after trying every member).
    pub fn stop_all(&mut self) -> Result<(), EtcdError> {
        if self.hosts.is_some() {
            return self.stop_on_hosts();
        }
        let procs: Vec<(NodeId, Pid)> = self
            .members
            .iter_mut()
            .filter_map(|(id, m)| {
                let pid = Pid::from_raw(m.child.as_ref()?.id() as i32);
                m.resume_on_exit = None;
                Some((*id, pid))
            })
            .collect();
        let running: Vec<NodeId> = procs.iter().map(|(id, _)| *id).collect();
        let leader = (procs.len() > 1).then(|| self.leader_now(&procs)).flatten();
        let (last, first): (Vec<_>, Vec<_>) =
            procs.into_iter().partition(|(id, _)| Some(*id) == leader);
        let grace = self.stop_grace;
        let mut stubborn = process::terminate(&first, grace, |id| !self.is_running(id));
        stubborn.extend(process::terminate(&last, grace, |id| !self.is_running(id)));
        let mut first_error = None;
        for &id in &running {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(mut child) = member.child.take() else {
                continue;
            };
            if stubborn.contains(&id) {
                warn!(id, ?grace, "etcd member ignored SIGTERM; sending SIGKILL");
                let pid = Pid::from_raw(child.id() as i32);
                match send_signal(pid, Signal::SIGKILL) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {
                        let _ = child.wait();
                    }
                    Err(source) => {
                        first_error.get_or_insert(EtcdError::Signal {
                            id,
                            pid: pid.as_raw(),
                            signal: Signal::SIGKILL,
                            source,
                        });
                        member.child = Some(child);
                        continue;
                    }
                }
            }
            member.kill_on_exit = None;
            member.resume_on_exit = None;
            member.paused = false;
        }
        if !running.is_empty() {
            info!(members = running.len(), "etcd members stopped");
        }
        first_error.map_or(Ok(()), Err)
    }

    /// [`Self::stop_all`] of members on their hosts: the followers, then the leader.
    fn stop_on_hosts(&mut self) -> Result<(), EtcdError> {
        let answers: Vec<(NodeId, Result<MemberStatus, String>)> = self
            .client_addrs()
            .into_iter()
            .map(|(id, addr)| (id, self.status.status(addr, STOP_STATUS_TIMEOUT)))
            .collect();
        let leader = likely_leader(&answers);
        let (last, first): (Vec<NodeId>, Vec<NodeId>) =
            self.ids().into_iter().partition(|id| Some(*id) == leader);
        let Some(hosts) = &mut self.hosts else {
            return Ok(());
        };
        let followers = hosts.stop(&first);
        let stopped = hosts.stop(&last);
        followers.and(stopped)
    }

    /// The member that leads now, from one round of status calls to `procs` (resumed first:
    /// a paused member answers nothing).
    fn leader_now(&self, procs: &[(NodeId, Pid)]) -> Option<NodeId> {
        for (_, pid) in procs {
            let _ = send_signal(*pid, Signal::SIGCONT);
        }
        let answers: Vec<(NodeId, Result<MemberStatus, String>)> = procs
            .iter()
            .filter_map(|(id, _)| Some((*id, self.client_addr(*id)?)))
            .map(|(id, addr)| (id, self.status.status(addr, STOP_STATUS_TIMEOUT)))
            .collect();
        likely_leader(&answers)
    }

    /// Every member's client address, by id.
    fn client_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.ids()
            .into_iter()
            .filter_map(|id| Some((id, self.client_addr(id)?)))
            .collect()
    }

    /// Waits until a majority of the members names one leader that is itself a member
    /// answering, polling every running member's status each 50 ms.
    pub async fn leader(&self, timeout: Duration) -> Result<NodeId, EtcdError> {
        let start = Instant::now();
        let members = self.client_addrs();
        let majority = members.len() / 2 + 1;
        loop {
            let answers = ask_all(self.status.clone(), members.clone(), STATUS_TIMEOUT).await;
            let detail = match agreed_leader(&answers, majority) {
                Ok(id) => return Ok(id),
                Err(why) => why,
            };
            if start.elapsed() >= timeout {
                return Err(EtcdError::NoLeader {
                    waited: start.elapsed(),
                    detail: format!("{detail}; member logs in {}", self.dir.display()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl EtcdCluster {
    /// Every member's client address and group id; `None` when some member has no group.
    fn groups(&self) -> Option<BTreeMap<SocketAddr, u32>> {
        self.ids()
            .into_iter()
            .map(|id| Some((self.client_addr(id)?, self.members.get(&id)?.gid?)))
            .collect()
    }
}

/// Every member's status, asked one after another on a blocking thread.
async fn ask_all(
    client: StatusClient,
    members: Vec<(NodeId, SocketAddr)>,
    timeout: Duration,
) -> Vec<(NodeId, Result<MemberStatus, String>)> {
    tokio::task::spawn_blocking(move || {
        members
            .iter()
            .map(|(id, addr)| (*id, client.status(*addr, timeout)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default()
}

/// The member most likely leading: the one that says it leads (the highest term if a deposed
/// leader has not noticed yet), else the leader most members name.
fn likely_leader(answers: &[(NodeId, Result<MemberStatus, String>)]) -> Option<NodeId> {
    let ok: Vec<(NodeId, &MemberStatus)> = answers
        .iter()
        .filter_map(|(id, a)| Some((*id, a.as_ref().ok()?)))
        .collect();
    let self_declared = ok
        .iter()
        .filter(|(_, s)| s.leader != 0 && s.leader == s.member_id)
        .max_by_key(|(_, s)| s.term)
        .map(|(id, _)| *id);
    self_declared.or_else(|| {
        let ids: BTreeMap<u64, NodeId> = ok.iter().map(|(id, s)| (s.member_id, *id)).collect();
        let mut named: BTreeMap<NodeId, usize> = BTreeMap::new();
        for leader in ok.iter().filter_map(|(_, s)| ids.get(&s.leader)) {
            *named.entry(*leader).or_default() += 1;
        }
        named.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
    })
}

/// The lab's id of the leader a majority of the answers names, or why there is none.
fn agreed_leader(
    answers: &[(NodeId, Result<MemberStatus, String>)],
    majority: usize,
) -> Result<NodeId, String> {
    let ids: BTreeMap<u64, NodeId> = answers
        .iter()
        .filter_map(|(id, a)| Some((a.as_ref().ok()?.member_id, *id)))
        .collect();
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for status in answers.iter().filter_map(|(_, a)| a.as_ref().ok()) {
        if status.leader != 0 {
            *votes.entry(status.leader).or_default() += 1;
        }
    }
    if let Some((leader, _)) = votes.iter().find(|(_, n)| **n >= majority) {
        if let Some(id) = ids.get(leader) {
            return Ok(*id);
        }
    }
    let described: Vec<String> = answers
        .iter()
        .map(|(id, a)| match a {
            Ok(s) if s.leader == 0 => format!("member {id}: no leader"),
            Ok(s) => format!(
                "member {id}: leader {}",
                ids.get(&s.leader)
                    .map_or(format!("{:x} (not answering)", s.leader), |l| l.to_string())
            ),
            Err(e) => format!("member {id}: {e}"),
        })
        .collect();
    Err(described.join("; "))
}

/// Finds a client port `P` (and peer port `P+1`) free on every address, from `base` on in
/// steps of 10 (only `base` when `fixed`), and holds it for this process.
fn reserve_ports(ips: &[Ipv4Addr], base: u16, fixed: bool) -> Result<u16, EtcdError> {
    let mut reserved = locked(&RESERVED);
    if fixed {
        if reserved.contains(&base) {
            return Err(EtcdError::PortReserved(base));
        }
        ports_free(ips, base)?;
        reserved.insert(base);
        return Ok(base);
    }
    let mut tried = Vec::new();
    for attempt in 0..PORT_ATTEMPTS {
        let Some(port) = base.checked_add(attempt * 10).filter(|p| *p < u16::MAX) else {
            break;
        };
        tried.push(port.to_string());
        if reserved.contains(&port) {
            continue;
        }
        if ports_free(ips, port).is_ok() {
            reserved.insert(port);
            return Ok(port);
        }
    }
    Err(EtcdError::NoFreePorts {
        members: ips.len(),
        tried: tried.join(", "),
    })
}

/// `dir` made absolute; refused when it holds certificates already (another cluster's).
fn fresh_dir(dir: &Path) -> Result<PathBuf, EtcdError> {
    let dir = std::path::absolute(dir).map_err(|source| EtcdError::Io {
        what: "resolve",
        path: dir.to_path_buf(),
        source,
    })?;
    let certs = dir.join("certs");
    if certs.exists() {
        return Err(EtcdError::Exists(certs));
    }
    Ok(dir)
}

/// Every address at one port.
fn addrs_of(ips: &[Ipv4Addr], port: u16) -> Vec<(NodeId, SocketAddr)> {
    ips.iter()
        .enumerate()
        .map(|(i, ip)| (i as NodeId + 1, SocketAddr::new(IpAddr::V4(*ip), port)))
        .collect()
}

/// Makes the CA, one certificate per member (its IP as a SAN, for both its ports, and
/// 127.0.0.1) and the client certificate in `dir/certs`, with the lab's certificate tooling;
/// returns the status client that uses them.
fn make_certs(dir: &Path, members: &[(NodeId, SocketAddr)]) -> Result<StatusClient, EtcdError> {
    let certs = dir.join("certs");
    let certs_err = |reason: String| EtcdError::Certs {
        dir: certs.clone(),
        reason,
    };
    // The lab's cluster-file format names each member's address, from which the
    // certificate tooling takes the SANs; the file itself is never written.
    let mut text = String::from("[tls]\ncerts_dir = \"certs\"\n");
    for (id, addr) in members {
        text.push_str(&format!("\n[[node]]\nid = {id}\naddr = \"{addr}\"\n"));
    }
    let config = ClusterConfig::parse(&dir.join("members.toml"), &text)
        .map_err(|e| certs_err(e.to_string()))?;
    // etcd checks a connecting peer's address against the IP SANs of its certificate, and
    // members on loopback dial their peers from 127.0.0.1.
    let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let validity = node::certs::Validity::default();
    node::certs::generate_with_extra_ips(&config, &certs, false, &validity, &loopback)
        .map_err(|e| certs_err(e.to_string()))?;
    StatusClient::new(&certs)
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            warn!("stopping the etcd cluster in {}: {e}", self.dir.display());
        }
        if self.reserved {
            locked(&RESERVED).remove(&self.client_port);
        }
    }
}

impl Db for EtcdCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.ids()
            .into_iter()
            .map(|id| {
                let socket = self.client_addr(id);
                DbNode {
                    id,
                    addr: socket.map(|s| s.to_string()).unwrap_or_default(),
                    socket,
                }
            })
            .collect()
    }

    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        EtcdCluster::kill(self, id).map_err(DbError::of("kill", id))
    }

    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        EtcdCluster::start(self, id).map_err(DbError::of("start", id))
    }

    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        EtcdCluster::pause(self, id).map_err(DbError::of("pause", id))
    }

    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        EtcdCluster::resume(self, id).map_err(DbError::of("resume", id))
    }

    /// Signals work (the members are our children, or through the template); cutting links
    /// on loopback needs every member under a group of its own (see the module).
    fn supports(&self, needs: Needs) -> Result<(), String> {
        let own_hosts = self.netns.is_some() || self.hosts.is_some();
        supports(needs, own_hosts, self.groups().is_some())
    }

    /// In namespaces: a table in each, cutting by address, and `tc netem` on each member's
    /// interface. On loopback: the run's own nftables table, telling members apart by their
    /// groups.
    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        if let Some(hosts) = &self.hosts {
            return hosts.network().map(|n| Box::new(n) as Box<dyn Network>);
        }
        if let Some(net) = &self.netns {
            let template = CommandTemplate::parse(EXEC_TEMPLATE)
                .map_err(|e| NetError::Setup(e.to_string()))?;
            let nodes: Vec<NodeEntry> = self
                .nodes()
                .into_iter()
                .zip(net.hosts())
                .map(|(node, host)| NodeEntry {
                    id: node.id,
                    addr: node.addr,
                    host: Some(host.name.clone()),
                })
                .collect();
            let iface = net.hosts().first().map_or("eth0", |h| h.iface.as_str());
            return RemoteNetwork::create(template, &nodes, iface)
                .map(|n| Box::new(n.matching(Match::Addresses)) as Box<dyn Network>);
        }
        let groups = self
            .groups()
            .ok_or_else(|| NetError::Setup(PARTITION_NEEDS_GROUPS.into()))?;
        Nft::by_group(groups)
            .map(|nft| Box::new(nft) as Box<dyn Network>)
            .map_err(NetError::Nftables)
    }

    /// From etcd's status API; the raftlab client connector is not used.
    fn leader<'a>(&'a self, _client: &'a ClientConnector, timeout: Duration) -> LeaderFuture<'a> {
        Box::pin(async move {
            EtcdCluster::leader(self, timeout)
                .await
                .map_err(DbError::cluster("find the leader"))
        })
    }

    /// One round of etcd's status calls.
    fn leader_probe(&self, timeout: Duration) -> Option<ProbeFuture> {
        let (client, members) = (self.status.clone(), self.client_addrs());
        Some(Box::pin(async move {
            likely_leader(&ask_all(client, members, timeout).await)
        }))
    }

    /// Through etcd's member API ([`EtcdCluster::remove_member`]); `client` is not used.
    fn remove_member(
        &mut self,
        _client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        EtcdCluster::remove_member(self, id).map_err(DbError::of("remove member", id))
    }

    /// Through etcd's member API ([`EtcdCluster::add_member_back`]).
    fn add_member_back(
        &mut self,
        _client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        EtcdCluster::add_member_back(self, id).map_err(DbError::of("add member", id))
    }

    /// Through etcd's MoveLeader ([`EtcdCluster::transfer_leadership`]).
    fn transfer_leadership(
        &mut self,
        _client: Option<&ClientConnector>,
        planned: NodeId,
        down: &[NodeId],
    ) -> Result<(NodeId, NodeId), DbError> {
        EtcdCluster::transfer_leadership(self, planned, down)
    }

    /// `DIR/data`: the members' data directories (write-ahead logs of 64 MB each); none here
    /// when the members run on hosts of their own.
    fn data_dirs(&self) -> Vec<PathBuf> {
        match self.hosts {
            Some(_) => Vec::new(),
            None => vec![self.dir.join("data")],
        }
    }

    /// The data directories here, or on the members' hosts through the template.
    fn drop_data(&mut self) {
        match &self.hosts {
            Some(hosts) => {
                if let Err(e) = hosts.remove_data() {
                    warn!("cannot remove the etcd data on the members' hosts: {e}");
                }
            }
            None => super::remove_dirs(&self.data_dirs()),
        }
    }

    /// Stops the members, fetches their logs from their hosts (members here log into the
    /// cluster folder already) and removes their namespaces.
    fn teardown(&mut self, owned: bool, logs_dir: &Path) -> Result<(), DbError> {
        let stopped = if owned {
            self.stop_all()
                .map_err(DbError::cluster("stop the etcd cluster"))
        } else {
            Ok(())
        };
        let logs = match &self.hosts {
            Some(hosts) => hosts
                .collect_logs(logs_dir)
                .map_err(DbError::cluster("collect the etcd members' logs")),
            None => Ok(()),
        };
        let stopped = stopped.and(logs);
        let torn = match &mut self.netns {
            Some(net) => net
                .destroy()
                .map_err(DbError::cluster("remove the network namespaces")),
            None => Ok(()),
        };
        stopped.and(torn)
    }
}

/// `path` opened for appending (created if missing).
fn log_file(path: &Path) -> Result<std::fs::File, EtcdError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| EtcdError::Io {
            what: "open log",
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(member_id: u64, leader: u64) -> Result<MemberStatus, String> {
        Ok(MemberStatus {
            member_id,
            leader,
            term: 1,
        })
    }

    #[test]
    fn versions_are_read_from_etcd_version_lines() {
        let text = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(text).as_deref(), Some("3.4.23"));
        assert_eq!(parse_version("etcd Version: \n"), None);
        assert_eq!(parse_version("usage: etcd"), None);
        assert_eq!(numeric_version("3.4.23"), Some((3, 4)));
        assert_eq!(numeric_version("v3.10.0"), Some((3, 10)));
        assert!(numeric_version("3.3.25") < Some(MIN_VERSION));
        assert!(numeric_version("3.10.0") > Some(MIN_VERSION));
        assert_eq!(numeric_version("three"), None);
    }

    #[test]
    fn a_taken_port_is_named() {
        let ip = local_node_ip(1);
        let taken = TcpListener::bind((ip, 0)).expect("a port on 127.0.0.11");
        let port = taken.local_addr().expect("bound").port();
        // The client port taken, or the peer port (the one below it free or not).
        let err = ports_free(&[ip], port).unwrap_err().to_string();
        assert!(err.contains(&format!("{ip}:{port}")), "{err}");
        let err = ports_free(&[ip], port - 1).unwrap_err().to_string();
        assert!(err.contains(&format!("{ip}:")), "{err}");
        assert!(matches!(
            reserve_ports(&[ip], port, true),
            Err(EtcdError::PortInUse { .. })
        ));
        assert!(matches!(
            ports_free(&[ip], u16::MAX),
            Err(EtcdError::PortRange(_))
        ));
    }

    #[test]
    fn the_likely_leader_says_it_leads_or_is_named_most() {
        let deposed = MemberStatus {
            member_id: 100,
            leader: 100,
            term: 1,
        };
        let answers = [
            (1, Ok(deposed)),
            (
                2,
                Ok(MemberStatus {
                    member_id: 200,
                    leader: 200,
                    term: 2,
                }),
            ),
        ];
        assert_eq!(likely_leader(&answers), Some(2));
        let named = [
            (1, status(100, 300)),
            (2, status(200, 300)),
            (3, status(300, 0)),
        ];
        assert_eq!(likely_leader(&named), Some(3));
        assert_eq!(likely_leader(&[(1, Err("refused".to_string()))]), None);
    }

    #[test]
    fn a_leader_needs_a_majority_and_an_answering_member() {
        let agreed = [
            (1, status(100, 300)),
            (2, status(200, 300)),
            (3, status(300, 300)),
        ];
        assert_eq!(agreed_leader(&agreed, 2), Ok(3));
        let minority = [
            (1, status(100, 300)),
            (2, status(200, 0)),
            (3, Err("refused".to_string())),
        ];
        assert!(agreed_leader(&minority, 2).is_err());
        let silent_leader = [
            (1, status(100, 300)),
            (2, status(200, 300)),
            (3, Err("refused".to_string())),
        ];
        let why = agreed_leader(&silent_leader, 2).unwrap_err();
        assert!(why.contains("not answering"), "{why}");
    }
}
