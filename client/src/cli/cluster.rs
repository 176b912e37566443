//! `raft-lab cluster up|down|status`: each goes to the remote cluster when `cluster.toml` has
//! a `[remote]` section (through its command template), to the local one otherwise. Status
//! shows every node's process (found through its pid file) and its answer to a status call,
//! one line per node.

use crate::db::local::{self, ClusterError, ClusterOptions, LocalCluster};
use crate::db::remote;
use crate::db::remote::RemoteCluster;
use crate::db::{DownReport, UpReport};
use crate::kv::status::status_all;
use model::core::NodeId;
use node::config::ClusterConfig;
use node::protocol::NodeStatus;
use node::transport::ClientConnector;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use tracing::warn;

/// One node in [`status`].
#[derive(Debug)]
pub struct NodeReport {
    pub id: NodeId,
    pub addr: String,
    /// The live process found through the pid file, if any.
    pub pid: Option<u32>,
    pub paused: bool,
    /// Its answer to a status call, or why there is none.
    pub status: Result<NodeStatus, String>,
}

/// `raft-lab cluster status`: pid (from the pid files) and the status call's answer of every
/// node. Must be called inside a tokio runtime.
/// With `[remote]` in the file, the processes are looked up on the nodes' hosts through its
/// command template.
pub async fn status(config: &Path) -> Result<Vec<NodeReport>, ClusterError> {
    let loaded = ClusterConfig::load(config)?;
    let process: Box<dyn Fn(NodeId) -> (Option<u32>, bool) + Send> = if loaded.remote.is_some() {
        let remote =
            RemoteCluster::open(loaded.clone()).map_err(|e| ClusterError::Remote(e.to_string()))?;
        Box::new(move |id| {
            remote.process(id).unwrap_or_else(|e| {
                warn!(id, "cannot look up the process: {e}");
                (None, false)
            })
        })
    } else {
        let cluster = LocalCluster::open(config)?;
        Box::new(move |id| {
            (
                cluster.is_running(id).then(|| cluster.pid(id)).flatten(),
                cluster.is_paused(id),
            )
        })
    };
    let certs = loaded.tls.certs_dir.clone();
    let client = ClientConnector::new(&certs).map_err(|e| ClusterError::Connector {
        certs: certs.clone(),
        reason: e.to_string(),
    })?;
    let nodes: Vec<(NodeId, String)> = loaded
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    let answers = status_all(&client, &nodes, Duration::from_secs(1)).await;
    client.close().await;
    let reports = tokio::task::spawn_blocking(move || {
        answers
            .into_iter()
            .zip(nodes)
            .map(|((id, status), (_, addr))| {
                let (pid, paused) = process(id);
                NodeReport {
                    id,
                    addr,
                    pid,
                    paused,
                    status,
                }
            })
            .collect()
    })
    .await
    .map_err(|e| ClusterError::Remote(format!("looking up the processes: {e}")))?;
    Ok(reports)
}

/// [`status`] as `raft-lab cluster status` prints it, one line per node.
pub fn format_status(reports: &[NodeReport]) -> String {
    let mut out = String::new();
    for node in reports {
        let process = match (node.pid, node.paused) {
            (Some(pid), true) => format!("pid {pid} (paused)"),
            (Some(pid), false) => format!("pid {pid}"),
            (None, _) => "no process".to_string(),
        };
        let _ = match &node.status {
            Ok(s) => writeln!(
                out,
                "node {} {:<22} {:<18} {:<13} term {:<4} leader {:<4} commit {} applied {}",
                node.id,
                node.addr,
                process,
                s.role,
                s.term,
                s.leader.map_or("-".into(), |l| l.to_string()),
                s.commit_index,
                s.applied_index
            ),
            Err(e) => writeln!(
                out,
                "node {} {:<22} {:<18} unreachable: {e}",
                node.id, node.addr, process
            ),
        };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for node in reports {
        let not_after = node.status.as_ref().ok().and_then(|s| s.cert_not_after);
        if let Some(warning) = not_after.and_then(|t| expiry_warning(node.id, t, now)) {
            let _ = writeln!(out, "{warning}");
        }
    }
    out
}

/// Certificates expiring within this many days are reported by `cluster status`.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A warning when node `id`'s certificate, valid until `not_after`, expires within
/// [`EXPIRY_WARNING_DAYS`] of `now` (both in seconds since the Unix epoch) or has expired.
pub fn expiry_warning(id: NodeId, not_after: i64, now: i64) -> Option<String> {
    let left = not_after - now;
    let date = node::certs::format_utc(not_after);
    let renew = format!("renew it: raft-node certs --renew node-{id}, then SIGHUP the node");
    if left <= 0 {
        Some(format!(
            "warning: node {id}'s certificate expired on {date}; {renew}"
        ))
    } else if left < EXPIRY_WARNING_DAYS * 86_400 {
        Some(format!(
            "warning: node {id}'s certificate expires on {date}, in {} days; {renew}",
            left / 86_400
        ))
    } else {
        None
    }
}

/// `raft-lab cluster up`: starts the nodes that do not run (creating a local cluster first
/// when `config` names none yet, see [`local::up`]); they keep running after `raft-lab`.
pub async fn up(config: &Path, nodes: usize, bugs: Vec<String>) -> anyhow::Result<UpReport> {
    match remote_config(config)? {
        Some(loaded) => Ok(tokio::task::spawn_blocking(move || remote::up(loaded, bugs)).await??),
        None => {
            let opts = ClusterOptions {
                nodes,
                raft_node: local::raft_node_binary()?,
                bugs,
                ..ClusterOptions::default()
            };
            Ok(local::up(config, &opts)?.1)
        }
    }
}

/// `raft-lab cluster down`: stops the nodes found through their pid files.
pub async fn down(config: &Path) -> anyhow::Result<DownReport> {
    match remote_config(config)? {
        Some(loaded) => Ok(tokio::task::spawn_blocking(move || remote::down(loaded)).await??),
        None => Ok(local::down(config)?),
    }
}

/// `config` loaded, when it exists and has a `[remote]` section (its nodes live on other
/// hosts, reached through the command template).
fn remote_config(config: &Path) -> anyhow::Result<Option<ClusterConfig>> {
    if !config.is_file() {
        return Ok(None);
    }
    let loaded = ClusterConfig::load(config)?;
    Ok(loaded.remote.is_some().then_some(loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_expiring_within_30_days_are_warned_about() {
        let now = 1_800_000_000;
        let day = 86_400;
        assert_eq!(expiry_warning(1, now + 365 * day, now), None);
        assert_eq!(expiry_warning(1, now + 30 * day, now), None);
        let soon = expiry_warning(2, now + 29 * day + 60, now).unwrap();
        assert!(soon.contains("node 2's certificate expires"), "{soon}");
        assert!(soon.contains("in 29 days"), "{soon}");
        assert!(soon.contains("--renew node-2"), "{soon}");
        let gone = expiry_warning(3, now - day, now).unwrap();
        assert!(gone.contains("node 3's certificate expired on"), "{gone}");
    }
}
