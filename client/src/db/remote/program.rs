//! What a remote cluster runs on each node's host ([`Program`]): the command line that starts
//! a node, the banner its log gets on each start, and how its process is recognised in
//! `/proc/PID/cmdline` before a pid file is believed. raftlab's own [`RaftNode`] is one; an
//! etcd member ([`crate::db::etcd`]) is another, driven by the same [`super::RemoteCluster`].

use crate::control::template::shell_quote;
use model::core::NodeId;
use std::path::{Path, PathBuf};

/// A program the lab starts, signals and recognises on the nodes' hosts.
pub trait Program: std::fmt::Debug + Send + Sync {
    /// What it is called in messages (`raft-node`, `etcd`).
    fn name(&self) -> &str;
    /// The shell command, every word quoted, that runs node `id` in the foreground.
    fn command(&self, id: NodeId) -> String;
    /// The line appended to the node's log before each start.
    fn banner(&self, id: NodeId) -> String;
    /// Whether `args` (a process's command line) is node `id` of this program. Not `nohup
    /// PROGRAM ...`: that process has not become the node yet (or failed to).
    fn is_node(&self, args: &[String], id: NodeId) -> bool;
}

/// `raft-node run --config CONFIG --id N [--bug B]...` (`remote.raft_node`, `remote.config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftNode {
    /// The binary on the hosts.
    pub binary: String,
    /// `cluster.toml` on the hosts.
    pub config: PathBuf,
    /// The `--bug` flags of later (re)starts (checked by `raft-node` itself).
    pub bugs: Vec<String>,
}

impl Program for RaftNode {
    fn name(&self) -> &str {
        "raft-node"
    }

    fn command(&self, id: NodeId) -> String {
        let mut node = format!(
            "{} run --config {} --id {id}",
            shell_quote(&self.binary),
            shell_quote(&self.config.to_string_lossy())
        );
        for bug in &self.bugs {
            node.push_str(" --bug ");
            node.push_str(&shell_quote(bug));
        }
        node
    }

    fn banner(&self, id: NodeId) -> String {
        format!(
            "=== raft-lab: starting node {id}{} ===",
            if self.bugs.is_empty() {
                String::new()
            } else {
                format!(" with bugs {}", self.bugs.join(","))
            }
        )
    }

    fn is_node(&self, args: &[String], id: NodeId) -> bool {
        is_node_cmdline(args, &self.binary, id)
    }
}

/// Whether `args` is `raft-node ... run ... --id N`: the program (first argument) named
/// `raft-node*` or like `raft_node`'s file name.
pub fn is_node_cmdline(args: &[String], raft_node: &str, id: NodeId) -> bool {
    let Some(run) = args.iter().position(|a| a == "run") else {
        return false;
    };
    runs_program(args, raft_node, "raft-node") && has_flag(&args[run..], "--id", &id.to_string())
}

/// Whether the program of `args` (its first argument) is named like `binary`'s file name or
/// holds `family` (`raft-node`, `etcd`) in its name.
pub fn runs_program(args: &[String], binary: &str, family: &str) -> bool {
    let Some(program) = args.first().map(|a| Path::new(a).file_name()) else {
        return false;
    };
    program.is_some_and(|n| n.to_string_lossy().contains(family))
        || (program.is_some() && program == Path::new(binary).file_name())
}

/// Whether `args` holds `flag value` or `flag=value`.
pub fn has_flag(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
        || args
            .iter()
            .any(|a| a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) == Some(value))
}
