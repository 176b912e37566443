//! `cluster.toml`: which node ids exist and where they listen, plus timing, storage and TLS
//! settings, each with a documented default and validated on load.
//!
//! ```toml
//! bootstrap = [1, 2, 3]       # optional: the voters the cluster started with (default:
//!                              # every [[node]]); raft-lab cluster add/remove pin it
//! removed = [1]                # optional: ids removed from the cluster, never to be reused
//!
//! [[node]]
//! id = 1
//! addr = "127.0.0.1:15001"     # host names are allowed: "db1.example.net:15001"
//! host = "db1"                 # optional: where raft-lab reaches the node's machine
//!                              # ({host} in remote.command); default: addr's host
//!
//! [timing]                     # all optional
//! tick_ms = 50                 # one core tick
//! election_ticks = 10          # election timeout: 11..20 ticks, randomized per term
//! heartbeat_ticks = 2
//! request_timeout_ms = 3000    # a client request unanswered this long is "unknown outcome"
//!
//! [storage]                    # optional
//! data_dir = "data"            # node N keeps its state in <data_dir>/node-N
//! fsync = true                 # never turn off outside of benchmarks
//! segment_bytes = 67108864     # write-ahead log segment size
//! snapshot_every = 10000       # compact the log every this many applied entries
//!
//! [tls]                        # optional
//! certs_dir = "certs"          # ca.pem, node-N.pem/.key, client.pem/.key, client-NAME.pem/.key
//! revoked = ["sha256:<64 hex digits>", "serial:<hex>"]  # refused at every handshake and
//!                              # request; `raft-node certs --fingerprint FILE` prints them;
//!                              # a running node re-reads the list on SIGHUP
//!
//! [transport]                  # optional: bounds on what one connection may hold
//! max_batch = 512              # most Raft messages in one peer frame
//! max_frame_bytes = 4194304    # largest peer frame; bigger messages travel in chunks
//! max_message_bytes = 268435456 # largest Raft message reassembled from chunks (a snapshot)
//! max_client_streams = 64      # concurrent requests on one client connection
//! stream_timeout_ms = 10000    # a started frame must arrive whole within this
//! retry_above_handshakes = 32  # beyond this many handshakes in progress, new ones must
//!                              # prove their address first (QUIC Retry)
//!
//! [sessions]                   # optional: every node must have the same values
//! expire_after_ms = 3600000    # a client session unused this long (log time) is removed
//! max_value_bytes = 1048576    # largest value a write or cas stores, and largest string an
//!                              # append makes (at most 1048576)
//!
//! [raft]                       # optional
//! pre_vote = true
//! check_quorum = true
//! max_batch = 256
//! max_inflight = 16
//!
//! [remote]                     # optional: how raft-lab controls the nodes on their machines
//! command = "ssh {host}"       # runs a shell command there: the command is appended as ONE
//!                              # shell-quoted word ({host}, {id} are substituted)
//! raft_node = "raft-node"      # the binary on the hosts
//! etcd = "etcd"                # etcd on the hosts (`raft-lab run --db etcd --cluster`)
//! config = "/etc/raftlab/cluster.toml"  # this file's path on the hosts (default: its path here)
//! dir = "/var/lib/raftlab"     # pid files and node logs on the hosts (default: this file's dir)
//! iface = "eth0"               # the nodes' network interface (tc netem nemeses)
//! ```
//! Relative paths are relative to the directory holding `cluster.toml`. The nodes ignore
//! `host` and `[remote]`; they are validated here so that one file serves every machine.
//!
//! The file bootstraps a cluster; after that the log is the truth about membership. Every
//! node starts from the `bootstrap` voters and replays the membership changes in its log (or
//! its snapshot's), and a member that joined through the log is reached at the address its
//! entry carries, whatever the file says.

use crate::revocation::Revocation;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// A problem with `cluster.toml`, naming the file and what is wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The I/O error is part of the message rather than a `source`, so that printing the
    /// error chain does not repeat it.
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One `[[node]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: u64,
    /// `host:port`; the host may be a name, resolved when connecting.
    pub addr: String,
    /// Where the lab reaches this node's machine (`{host}` in [`Remote::command`]); `None`:
    /// the host part of `addr`.
    #[serde(default)]
    pub host: Option<String>,
}

impl NodeEntry {
    /// [`Self::host`], else the host part of `addr` (without IPv6 brackets).
    pub fn control_host(&self) -> &str {
        if let Some(host) = &self.host {
            return host;
        }
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// `[remote]`: how `raft-lab` starts, stops, kills and pauses the nodes on their machines and
/// applies faults there.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// Runs a shell command on a node's machine: `{host}` and `{id}` are substituted, and the
    /// command is appended as one shell-quoted word (`ssh {host}`; `ip netns exec {host} sh -c`).
    #[serde(default = "Remote::default_command")]
    pub command: String,
    /// The `raft-node` binary on the hosts.
    #[serde(default = "Remote::default_raft_node")]
    pub raft_node: String,
    /// The `etcd` binary on the hosts, when the lab runs etcd members there
    /// (`raft-lab run --db etcd --cluster`).
    #[serde(default = "Remote::default_etcd")]
    pub etcd: String,
    /// This file's path on the hosts (default: its path on this machine).
    pub config: Option<PathBuf>,
    /// Pid files and node logs on the hosts (default: this file's directory).
    pub dir: Option<PathBuf>,
    /// The nodes' network interface, for `tc netem`.
    #[serde(default = "Remote::default_iface")]
    pub iface: String,
}

impl Remote {
    fn default_command() -> String {
        "ssh {host}".into()
    }
    fn default_raft_node() -> String {
        "raft-node".into()
    }
    fn default_etcd() -> String {
        "etcd".into()
    }
    fn default_iface() -> String {
        "eth0".into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    pub tick_ms: u64,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub request_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick_ms: 50,
            election_ticks: model::core::settings::ELECTION_TICKS,
            heartbeat_ticks: model::core::settings::HEARTBEAT_TICKS,
            request_timeout_ms: 3000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
    pub fsync: bool,
    pub segment_bytes: u64,
    pub snapshot_every: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("data"),
            fsync: true,
            segment_bytes: 64 << 20,
            snapshot_every: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub certs_dir: PathBuf,
    /// Certificates no node accepts, by fingerprint or serial; re-read on SIGHUP.
    pub revoked: Vec<Revocation>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            certs_dir: PathBuf::from("certs"),
            revoked: Vec::new(),
        }
    }
}

/// `[transport]`: how much one connection may make a node hold. A peer or client that
/// exceeds a bound loses its stream or connection; the node keeps serving the others.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSettings {
    /// Most Raft messages in one peer frame; a frame announcing more is refused before its
    /// messages are decoded (decoded messages take many times their wire size).
    pub max_batch: usize,
    /// Largest peer frame in bytes. A Raft message that does not fit (an InstallSnapshot)
    /// is sent as a sequence of chunk frames of at most this size.
    pub max_frame_bytes: usize,
    /// Largest Raft message a node reassembles from chunks: bounds a snapshot in transit.
    pub max_message_bytes: usize,
    /// Requests one client connection may have open at once (QUIC stream limit).
    pub max_client_streams: u32,
    /// Once a stream is open (a client's request) or a frame has started (a peer's), the
    /// whole frame must arrive within this; else the stream is closed and its memory freed.
    /// A client must likewise take its answer within this.
    pub stream_timeout_ms: u64,
    /// Handshakes in progress beyond which a new connection attempt must first prove it
    /// can receive at its source address (a QUIC Retry round trip), so that spoofed
    /// packets cannot pile up handshake state.
    pub retry_above_handshakes: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            max_batch: 512,
            max_frame_bytes: 4 << 20,
            max_message_bytes: 256 << 20,
            max_client_streams: 64,
            stream_timeout_ms: 10_000,
            retry_above_handshakes: 32,
        }
    }
}

impl TransportSettings {
    /// See [`Self::stream_timeout_ms`].
    pub fn stream_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_timeout_ms)
    }

    fn validate(&self) -> Result<(), String> {
        use crate::transport::framing::{MAX_FRAME, MIN_PEER_FRAME};
        if self.max_batch == 0 {
            return Err("transport.max_batch must be at least 1".into());
        }
        if !(MIN_PEER_FRAME..=MAX_FRAME).contains(&self.max_frame_bytes) {
            return Err(format!(
                "transport.max_frame_bytes must be {MIN_PEER_FRAME}..={MAX_FRAME}, got {}",
                self.max_frame_bytes
            ));
        }
        if self.max_message_bytes < self.max_frame_bytes {
            return Err(format!(
                "transport.max_message_bytes ({}) must be at least transport.max_frame_bytes ({})",
                self.max_message_bytes, self.max_frame_bytes
            ));
        }
        if !(1..=MAX_CLIENT_STREAMS).contains(&self.max_client_streams) {
            return Err(format!(
                "transport.max_client_streams must be 1..={MAX_CLIENT_STREAMS}, got {}",
                self.max_client_streams
            ));
        }
        if self.stream_timeout_ms == 0 {
            return Err("transport.stream_timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// More concurrent requests per client connection than this buys nothing (the runtime
/// queues at most a few thousand) and only lets one client hold more of the node.
const MAX_CLIENT_STREAMS: u32 = 4096;

/// The `[sessions]` section: the state machine's client sessions and value limit. They
/// decide what applying a command does, so every node must have the same ones.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    pub expire_after_ms: u64,
    pub max_value_bytes: u64,
}

/// The largest `sessions.max_value_bytes`: a larger value could not reach a node in one
/// client request frame ([`crate::transport::framing::MAX_REQUEST_FRAME`] leaves room for it
/// and its key).
pub const MAX_VALUE_BYTES: u64 = 1 << 20;

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            expire_after_ms: model::kv::DEFAULT_EXPIRE_AFTER_MS,
            max_value_bytes: model::kv::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// The `[raft]` section: the core's protocol settings, whose defaults are the ones
/// `raft-model check` proves (one definition, in the model crate).
pub type RaftSettings = model::core::Settings;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bootstrap: Option<Vec<u64>>,
    #[serde(default)]
    removed: Vec<u64>,
    node: Vec<NodeEntry>,
    #[serde(default)]
    timing: Timing,
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    transport: TransportSettings,
    #[serde(default)]
    sessions: Sessions,
    #[serde(default)]
    raft: RaftSettings,
    remote: Option<Remote>,
}

/// A validated cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The voters the cluster started with, sorted.
    pub bootstrap: Vec<u64>,
    /// Ids removed from the cluster: a removed node's votes and log are gone with it, so its
    /// id must never come back (a new node takes a new id).
    pub removed: BTreeSet<u64>,
    /// Nodes sorted by id.
    pub nodes: Vec<NodeEntry>,
    pub timing: Timing,
    pub storage: Storage,
    pub tls: Tls,
    pub transport: TransportSettings,
    pub sessions: Sessions,
    pub raft: RaftSettings,
    /// `[remote]`, with `config` and `dir` filled in.
    pub remote: Option<Remote>,
}

impl ClusterConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        ClusterConfig::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ClusterConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
        let mut nodes = file.node;
        if nodes.is_empty() {
            return Err(invalid("no [[node]] entries".into()));
        }
        nodes.sort_by_key(|n| n.id);
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for node in &nodes {
            if node.id == 0 {
                return Err(invalid("node id 0 is reserved; ids start at 1".into()));
            }
            if !ids.insert(node.id) {
                return Err(invalid(format!("duplicate node id {}", node.id)));
            }
            check_addr(&node.addr)
                .map_err(|why| invalid(format!("node {}: addr {:?}: {why}", node.id, node.addr)))?;
            if !addrs.insert(node.addr.clone()) {
                return Err(invalid(format!(
                    "node {}: addr {} is already used by another node",
                    node.id, node.addr
                )));
            }
            validate_host(node.control_host()).map_err(|why| {
                invalid(format!(
                    "node {}: host {:?}: {why}",
                    node.id,
                    node.control_host()
                ))
            })?;
        }
        let bootstrap = match file.bootstrap {
            None => ids.iter().copied().collect(),
            Some(list) => {
                let set: BTreeSet<u64> = list.iter().copied().collect();
                if set.is_empty() {
                    return Err(invalid("bootstrap: needs at least one voter".into()));
                }
                if set.len() != list.len() {
                    return Err(invalid("bootstrap: an id is listed twice".into()));
                }
                if set.contains(&0) {
                    return Err(invalid("bootstrap: node id 0 is reserved".into()));
                }
                set.into_iter().collect()
            }
        };
        let removed: BTreeSet<u64> = file.removed.iter().copied().collect();
        if let Some(id) = removed.iter().find(|id| ids.contains(id)) {
            return Err(invalid(format!(
                "node {id} is listed in `removed` and as a [[node]]: a removed id is never reused"
            )));
        }
        let t = &file.timing;
        if t.tick_ms == 0 {
            return Err(invalid("timing.tick_ms must be at least 1".into()));
        }
        if t.heartbeat_ticks == 0 || t.election_ticks <= t.heartbeat_ticks {
            return Err(invalid(format!(
                "timing: need 0 < heartbeat_ticks < election_ticks, got {} and {}",
                t.heartbeat_ticks, t.election_ticks
            )));
        }
        if t.request_timeout_ms == 0 {
            return Err(invalid(
                "timing.request_timeout_ms must be at least 1".into(),
            ));
        }
        if file.storage.segment_bytes < 4096 {
            return Err(invalid(
                "storage.segment_bytes must be at least 4096".into(),
            ));
        }
        let sessions = &file.sessions;
        if sessions.expire_after_ms == 0 {
            return Err(invalid(
                "sessions.expire_after_ms must be at least 1".into(),
            ));
        }
        if sessions.max_value_bytes == 0 || sessions.max_value_bytes > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "sessions.max_value_bytes must be between 1 and {MAX_VALUE_BYTES} (a client \
                 request frame carries no more), got {}",
                sessions.max_value_bytes
            )));
        }
        if file.raft.max_batch == 0 || file.raft.max_inflight == 0 {
            return Err(invalid(
                "raft.max_batch and raft.max_inflight must be at least 1".into(),
            ));
        }
        file.transport.validate().map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let remote = match file.remote {
            None => None,
            Some(mut r) => {
                if !r.command.contains("{host}") && !r.command.contains("{id}") {
                    return Err(invalid(format!(
                        "remote.command {:?} names no machine: use {{host}} or {{id}}",
                        r.command
                    )));
                }
                if r.raft_node.trim().is_empty()
                    || r.etcd.trim().is_empty()
                    || r.iface.trim().is_empty()
                {
                    return Err(invalid(
                        "remote.raft_node, remote.etcd and remote.iface must not be empty".into(),
                    ));
                }
                r.config = Some(r.config.unwrap_or_else(|| path.to_path_buf()));
                r.dir = Some(r.dir.unwrap_or_else(|| base.to_path_buf()));
                Some(r)
            }
        };
        let mut storage = file.storage;
        storage.data_dir = base.join(&storage.data_dir);
        let mut tls = file.tls;
        tls.certs_dir = base.join(&tls.certs_dir);
        Ok(ClusterConfig {
            path: path.to_path_buf(),
            bootstrap,
            removed,
            nodes,
            timing: file.timing,
            storage,
            tls,
            transport: file.transport,
            sessions: file.sessions,
            raft: file.raft,
            remote,
        })
    }

    pub fn node(&self, id: u64) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    /// `<data_dir>/node-N`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.storage.data_dir.join(format!("node-{id}"))
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.timing.tick_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.timing.request_timeout_ms)
    }

    /// The state machine's settings from `[sessions]`.
    pub fn kv_config(&self) -> model::kv::KvConfig {
        model::kv::KvConfig {
            expire_after_ms: self.sessions.expire_after_ms,
            max_value_bytes: self.sessions.max_value_bytes,
            preregistered: 0..0,
        }
    }
}

/// The machine name `{host}` stands for in `remote.command` (`ssh {host}`): it must not read
/// as an option (`-oProxyCommand=...` would make ssh run a command of the file's choosing)
/// nor split into several words.
fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        Err("empty")
    } else if host.starts_with('-') {
        Err("starts with '-', which a command would read as an option")
    } else if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("contains whitespace or a control character")
    } else {
        Ok(())
    }
}

/// A node address: `host:port` with a port in 1..=65535 and a host that is not empty, does
/// not read as an option and does not split into words.
pub fn check_addr(addr: &str) -> Result<(), &'static str> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected host:port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("empty host");
    }
    validate_host(host)?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be 1..65535"),
        Ok(_) => Ok(()),
    }
}

/// TOML errors span several lines (with a caret diagram); an error is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(Path::new("/etc/raftlab/cluster.toml"), text)
    }

    const THREE: &str = r#"
[[node]]
id = 2
addr = "127.0.0.2:15002"
[[node]]
id = 1
addr = "127.0.0.1:15001"
[[node]]
id = 3
addr = "db3.example.net:15003"
"#;

    #[test]
    fn defaults_and_paths_relative_to_the_file() {
        let c = parse(THREE).unwrap();
        assert_eq!(c.ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(c.timing, Timing::default());
        assert_eq!(c.transport, TransportSettings::default());
        assert_eq!(c.data_dir(2), PathBuf::from("/etc/raftlab/data/node-2"));
        assert_eq!(c.tls.certs_dir, PathBuf::from("/etc/raftlab/certs"));
        assert!(c.storage.fsync);
    }

    #[test]
    fn every_invalid_value_is_named() {
        let cases = [
            ("", "node"),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[[node]]\nid = 1\naddr = \"y:1\"",
                "duplicate node id 1",
            ),
            ("[[node]]\nid = 0\naddr = \"x:1\"", "id 0"),
            ("[[node]]\nid = 1\naddr = \"nohost\"", "host:port"),
            ("[[node]]\nid = 1\naddr = \"x:0\"", "port"),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[[node]]\nid = 2\naddr = \"x:1\"",
                "already used",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[timing]\nheartbeat_ticks = 10",
                "heartbeat_ticks",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[timing]\nbogus = 1",
                "bogus",
            ),
            ("[[node]]\nid = 1\naddr = \"x:1\"\nextra = true", "extra"),
            ("[[node]]\nid = \"one\"\naddr = \"x:1\"", "id"),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[remote]\ncommand = \"ssh db1\"",
                "names no machine",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[remote]\nbogus = 1",
                "bogus",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[transport]\nmax_batch = 0",
                "transport.max_batch",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[transport]\nmax_frame_bytes = 1",
                "transport.max_frame_bytes",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[transport]\nmax_message_bytes = 65536\nmax_frame_bytes = 131072",
                "transport.max_message_bytes",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[transport]\nmax_client_streams = 0",
                "transport.max_client_streams",
            ),
            (
                "[[node]]\nid = 1\naddr = \"x:1\"\n[transport]\nstream_timeout_ms = 0",
                "transport.stream_timeout_ms",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?} -> {err}");
            assert!(err.contains("cluster.toml"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn remote_section_and_hosts() {
        let c = parse(THREE).unwrap();
        assert_eq!(c.remote, None);
        assert_eq!(c.nodes[0].control_host(), "127.0.0.1");
        let text = format!("{THREE}\n[remote]\ndir = \"/srv/rl\"\n");
        let c = parse(&text.replace(
            "id = 1\naddr = \"127.0.0.1:15001\"",
            "id = 1\naddr = \"[::1]:15001\"\nhost = \"db1\"",
        ))
        .unwrap();
        let remote = c.remote.unwrap();
        assert_eq!(remote.command, "ssh {host}");
        assert_eq!(remote.raft_node, "raft-node");
        assert_eq!(remote.etcd, "etcd");
        assert_eq!(remote.iface, "eth0");
        assert_eq!(remote.dir, Some(PathBuf::from("/srv/rl")));
        assert_eq!(
            remote.config,
            Some(PathBuf::from("/etc/raftlab/cluster.toml"))
        );
        assert_eq!(c.nodes[0].control_host(), "db1");
        assert_eq!(c.nodes[1].control_host(), "127.0.0.2");
    }

    #[test]
    fn hosts_that_would_read_as_options_or_split_are_refused() {
        for host in ["-oProxyCommand=touch /tmp/x", "db 1", "db\t1", ""] {
            let text = THREE.replace(
                "id = 1\naddr = \"127.0.0.1:15001\"",
                &format!("id = 1\naddr = \"127.0.0.1:15001\"\nhost = {host:?}"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("node 1: host"), "{host:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn revoked_entries_are_parsed_and_bad_ones_named() {
        let sum = "ab".repeat(32);
        let c = parse(&format!(
            "{THREE}[tls]\nrevoked = [\"sha256:{sum}\", \"serial:00:1f\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.tls.revoked,
            vec![
                Revocation::Sha256([0xab; 32]),
                Revocation::Serial(vec![0x1f])
            ]
        );
        for bad in ["sha256:abcd", "md5:00", "serial:xyz", "serial:00", "ab"] {
            let err = parse(&format!("{THREE}[tls]\nrevoked = [{bad:?}]\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = ClusterConfig::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cluster.toml"));
    }
}
