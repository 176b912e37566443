//! etcd members on hosts of their own (`raft-lab run --db etcd --cluster cluster.toml` with
//! `[remote]`), driven through the command template by the same [`RemoteCluster`] code as
//! remote `raft-node`s: `etcd` ([`EtcdProgram`]) started with `nohup` and a pid file in
//! `remote.dir`, a pid file believed only if `/proc/PID/cmdline` there is etcd with
//! `--name node-N`, signals sent there, logs fetched back.
//!
//! On each member's host, with `DIR` = `remote.dir`:
//! ```text
//! DIR/certs/              ca.pem, node-N.pem, node-N.key (copied there by the lab)
//! DIR/data/node-N/        member N's data directory
//! DIR/node-N.log          member N's stdout and stderr, appended across restarts
//! DIR/pids/node-N.pid     member N's pid
//! ```
//! Member N listens for clients at its `addr` in `cluster.toml` and for its peers on the next
//! port, both on the address `addr` resolves to (an IPv4 address: it goes into the member's
//! certificate).

use super::error::EtcdError;
use super::{judge_version, member_name};
use crate::control::concurrently;
use crate::control::template::shell_quote;
use crate::db::remote::program::{has_flag, runs_program, Program};
use crate::db::remote::{RemoteCluster, RemoteError};
use crate::net::nft::Match;
use crate::net::remote::RemoteNetwork;
use crate::net::NetError;
use model::core::NodeId;
use node::config::ClusterConfig;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Longest `etcd --version` or a removal of a data directory may take on a host.
const HOST_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit status of a shell whose command was not found.
const NOT_FOUND_STATUS: i32 = 127;

/// `etcd ARGS...` of each member, as the lab last set them (a member added back starts with
/// other arguments than a founding one).
#[derive(Clone, Debug, Default)]
pub struct EtcdProgram {
    /// `remote.etcd`: the binary on the hosts.
    pub binary: String,
    pub args: BTreeMap<NodeId, Vec<String>>,
}

impl Program for EtcdProgram {
    fn name(&self) -> &str {
        "etcd"
    }

    fn command(&self, id: NodeId) -> String {
        let mut words = vec![shell_quote(&self.binary)];
        words.extend(
            self.args
                .get(&id)
                .into_iter()
                .flatten()
                .map(|a| shell_quote(a)),
        );
        words.join(" ")
    }

    fn banner(&self, id: NodeId) -> String {
        format!("=== raft-lab: starting etcd member {id} ===")
    }

    fn is_node(&self, args: &[String], id: NodeId) -> bool {
        runs_program(args, &self.binary, "etcd") && has_flag(args, "--name", &member_name(id))
    }
}

/// Each member's client address in `config`: its `addr` resolved to an IPv4 address (it goes
/// into the member's certificate), the peer port (the next one) free of every other member's
/// client port on the same address.
pub fn member_addrs(config: &ClusterConfig) -> Result<Vec<(NodeId, SocketAddr)>, EtcdError> {
    let bad = |id: NodeId, addr: &str, reason: String| EtcdError::MemberAddr {
        id,
        addr: addr.to_string(),
        reason,
    };
    let mut addrs = Vec::new();
    for node in &config.nodes {
        let resolved = node
            .addr
            .to_socket_addrs()
            .map_err(|e| bad(node.id, &node.addr, e.to_string()))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| bad(node.id, &node.addr, "no IPv4 address".into()))?;
        if resolved.port() == u16::MAX || resolved.port() == 0 {
            return Err(bad(
                node.id,
                &node.addr,
                "the client port must be 1..65534 (the peer port is the next one)".into(),
            ));
        }
        addrs.push((node.id, resolved));
    }
    for (id, addr) in &addrs {
        let peer = SocketAddr::new(addr.ip(), addr.port() + 1);
        if let Some((other, _)) = addrs.iter().find(|(_, a)| *a == peer) {
            return Err(bad(
                *id,
                &addr.to_string(),
                format!("its peer port {peer} is member {other}'s client port"),
            ));
        }
    }
    Ok(addrs)
}

/// The members' processes on their hosts.
#[derive(Debug)]
pub struct EtcdHosts {
    nodes: RemoteCluster<EtcdProgram>,
}

impl EtcdHosts {
    /// The hosts of `config` (which must have `[remote]`); contacts none. When `owned`, the
    /// members found running are stopped on `Drop`.
    pub fn open(config: ClusterConfig, owned: bool) -> Result<EtcdHosts, EtcdError> {
        let binary = config
            .remote
            .as_ref()
            .map(|r| r.etcd.clone())
            .ok_or_else(|| EtcdError::NoRemote(config.path.clone()))?;
        let program = EtcdProgram {
            binary,
            args: BTreeMap::new(),
        };
        let mut nodes = RemoteCluster::with_program(config, program).map_err(remote)?;
        nodes.set_owned(owned);
        // Members a run started must not outlive it, even when it is interrupted.
        nodes.kill_on_ctrl_c();
        Ok(EtcdHosts { nodes })
    }

    /// `remote.etcd`.
    pub fn binary(&self) -> &str {
        &self.nodes.program().binary
    }

    /// `remote.dir`: certificates, data, logs and pid files on the hosts.
    pub fn dir(&self) -> &Path {
        self.nodes.dir()
    }

    /// `etcd --version` on every member's host (all at once): the versions, or the first
    /// member whose etcd is missing, unreadable or older than 3.4.
    pub fn check_versions(&self) -> Result<Vec<String>, EtcdError> {
        let binary = self.binary().to_string();
        let command = format!("{} --version", shell_quote(&binary));
        let nodes = self.nodes.config().nodes.clone();
        let answers = concurrently(&nodes, |node| {
            self.nodes
                .template()
                .output(node, &command, None, HOST_TIMEOUT)
        });
        nodes
            .iter()
            .zip(answers)
            .map(|(node, answer)| {
                let host = node.control_host().to_string();
                let output = answer.map_err(|e| remote(e.into()))?;
                let stdout = String::from_utf8_lossy(&output.stdout);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let detail = crate::control::one_line(&stderr);
                match output.status.code() {
                    Some(0) => judge_version(
                        &PathBuf::from(format!("{binary} on {host}")),
                        &stdout,
                        &stderr,
                    ),
                    Some(NOT_FOUND_STATUS) => Err(EtcdError::NotOnHost {
                        id: node.id,
                        host,
                        binary: binary.clone(),
                        detail,
                    }),
                    code => Err(EtcdError::VersionUnreadable {
                        binary: PathBuf::from(format!("{binary} on {host}")),
                        detail: format!(
                            "exit status {}: {detail}",
                            code.map_or("none (a signal)".into(), |c| c.to_string())
                        ),
                    }),
                }
            })
            .collect()
    }

    /// Copies the CA certificate and member N's certificate and key from `certs` (this
    /// machine) to `DIR/certs/` on member N's host, for every member at once.
    pub fn ship_certs(&self, certs: &Path) -> Result<(), EtcdError> {
        let ids: Vec<NodeId> = self.nodes.config().ids().collect();
        let shipped = concurrently(&ids, |&id| {
            for name in [
                node::certs::CA_CERT.to_string(),
                node::certs::node_cert_file(id),
                node::certs::node_key_file(id),
            ] {
                let local = certs.join(&name);
                let text = std::fs::read_to_string(&local).map_err(|source| EtcdError::Io {
                    what: "read",
                    path: local.clone(),
                    source,
                })?;
                let there = self.dir().join("certs").join(&name);
                self.nodes.install(id, &there, &text).map_err(remote)?;
            }
            debug!(id, "certificates copied to the member's host");
            Ok(())
        });
        shipped.into_iter().collect::<Result<(), EtcdError>>()?;
        info!(
            members = ids.len(),
            "certificates copied to the members' hosts"
        );
        Ok(())
    }

    /// Starts member `id` with `args` (no-op if it runs) and waits until its process shows up.
    pub fn start(&mut self, id: NodeId, args: Vec<String>) -> Result<(), EtcdError> {
        self.nodes.program_mut().args.insert(id, args);
        self.nodes.start(id).map_err(remote)
    }

    /// Whether member `id` runs (a paused member runs); a host that cannot be asked counts
    /// as not running, with a warning.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.is_running(id).unwrap_or_else(|e| {
            warn!(id, "cannot ask whether the etcd member runs: {e}");
            false
        })
    }

    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.nodes.pid(id).ok().flatten()
    }

    pub fn kill(&mut self, id: NodeId) -> Result<(), EtcdError> {
        self.nodes.kill(id).map_err(not_running)
    }

    pub fn pause(&mut self, id: NodeId) -> Result<(), EtcdError> {
        self.nodes.pause(id).map_err(not_running)
    }

    pub fn resume(&mut self, id: NodeId) -> Result<(), EtcdError> {
        self.nodes.resume(id).map_err(not_running)
    }

    /// Stops members `ids` (SIGTERM, then SIGKILL after the grace), all at once.
    pub fn stop(&mut self, ids: &[NodeId]) -> Result<(), EtcdError> {
        self.nodes.stop(ids).map_err(remote)
    }

    /// Removes member `id`'s data directory on its host (it must not run).
    pub fn wipe(&self, id: NodeId) -> Result<(), EtcdError> {
        let data = self.data_dir(id);
        let command = format!("rm -rf {}", shell_quote(&data.to_string_lossy()));
        self.nodes
            .run_on(id, &command, None, HOST_TIMEOUT)
            .map(drop)
            .map_err(remote)
    }

    /// `DIR/data/node-N` on member `id`'s host.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir().join("data").join(member_name(id))
    }

    /// Removes every member's data directory on its host (all at once); the first failure.
    pub fn remove_data(&self) -> Result<(), EtcdError> {
        let ids: Vec<NodeId> = self.nodes.config().ids().collect();
        concurrently(&ids, |&id| self.wipe(id))
            .into_iter()
            .collect::<Result<(), EtcdError>>()?;
        info!(
            members = ids.len(),
            "etcd data removed on the members' hosts"
        );
        Ok(())
    }

    /// Copies every member's log from its host into `into/node-N.log`.
    pub fn collect_logs(&self, into: &Path) -> Result<(), EtcdError> {
        self.nodes.collect_logs(into).map_err(remote)
    }

    /// Drop rules by address on every host (each member has an address of its own; etcd's
    /// peers dial from ephemeral ports), `tc netem` on `remote.iface`.
    pub fn network(&self) -> Result<RemoteNetwork, NetError> {
        self.nodes
            .network()
            .map(|network| network.matching(Match::Addresses))
    }
}

/// A remote cluster's error as an etcd cluster's.
fn remote(e: RemoteError) -> EtcdError {
    EtcdError::Remote(Box::new(e))
}

/// [`remote`], with a member found not running said as [`EtcdError::NotRunning`].
fn not_running(e: RemoteError) -> EtcdError {
    match e {
        RemoteError::NotRunning { id, .. } => EtcdError::NotRunning(id),
        other => remote(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_etcd_member_is_recognised_by_its_name() {
        let program = EtcdProgram {
            binary: "/opt/etcd/bin/etcd".into(),
            args: BTreeMap::from([(2, args(&["--name", "node-2", "--data-dir", "/d x"]))]),
        };
        assert_eq!(
            program.command(2),
            "'/opt/etcd/bin/etcd' '--name' 'node-2' '--data-dir' '/d x'"
        );
        assert!(program.is_node(&args(&["etcd", "--name", "node-2"]), 2));
        assert!(program.is_node(&args(&["/usr/bin/etcd", "--name=node-2"]), 2));
        assert!(!program.is_node(&args(&["etcd", "--name", "node-12"]), 2));
        assert!(!program.is_node(&args(&["nohup", "etcd", "--name", "node-2"]), 2));
        assert!(!program.is_node(&args(&["sleep", "--name", "node-2"]), 2));
        assert!(!program.is_node(&[], 2));
    }

    #[test]
    fn member_addresses_need_ipv4_and_free_peer_ports() {
        let config = |addrs: &[&str]| {
            let mut text = String::from("[remote]\ncommand = \"ssh {host}\"\n");
            for (i, addr) in addrs.iter().enumerate() {
                text.push_str(&format!("[[node]]\nid = {}\naddr = {addr:?}\n", i + 1));
            }
            ClusterConfig::parse(Path::new("/x/cluster.toml"), &text).expect("a cluster file")
        };
        let ok = member_addrs(&config(&["127.0.0.1:2379", "127.0.0.1:2389"])).expect("fine");
        assert_eq!(ok[1], (2, "127.0.0.1:2389".parse().expect("addr")));
        let err = member_addrs(&config(&["127.0.0.1:2379", "127.0.0.1:2380"]))
            .expect_err("a peer port taken")
            .to_string();
        assert!(err.contains("member 2's client port"), "{err}");
        let err = member_addrs(&config(&["127.0.0.1:65535"]))
            .expect_err("no peer port")
            .to_string();
        assert!(err.contains("peer port"), "{err}");
        let err = member_addrs(&config(&["[::1]:2379"]))
            .expect_err("IPv6")
            .to_string();
        assert!(err.contains("no IPv4"), "{err}");
    }
}
