//! A cluster whose nodes run on other machines (or in network namespaces of this one), driven
//! only through the `[remote]` command template of `cluster.toml` ([`CommandTemplate`]): the
//! lab never signals, reads `/proc` of or opens files of a node itself, so `ssh {host}` and
//! `ip netns exec {host} sh -c` take exactly the same code path.
//!
//! On each node's host (Linux, POSIX `sh`), with `DIR` = `remote.dir`:
//! ```text
//! DIR/node-N.log          node N's stdout and stderr, appended across restarts
//! DIR/pids/node-N.pid     node N's pid, written when the lab starts it
//! ```
//! What runs there is a [`program::Program`]: `raft-node` by default, or an etcd member
//! ([`crate::db::etcd`]). A pid file is believed only if `/proc/PID/cmdline` there is the
//! program's node N (`raft-node ... run ... --id N`, `etcd ... --name node-N`) and
//! `/proc/PID/stat` does not say zombie (PID 1 of some containers never reaps orphans).
//!
//! Network faults on the hosts are [`crate::net::remote::RemoteNetwork`]'s.
//!
//! Ctrl-C: every node paused by this process registers its SIGCONT in [`cleanup`] (as every
//! network registers its removal), and with [`RemoteCluster::kill_on_ctrl_c`] every node it
//! started its SIGKILL, which [`cleanup::run_all`] runs all at once, each within a bounded
//! time; afterwards owned clusters start no nodes. Otherwise stopping the nodes of an owned
//! cluster is left to [`RemoteCluster::stop_all`] (or, for namespaces, to deleting them).

mod commands;
pub mod program;

use super::{Db, DbError, DbNode, DownReport, Needs, UpReport};
use crate::control::cleanup::{self, Cleanup};
use crate::control::concurrently;
use crate::control::template::{output_line, CommandTemplate, TemplateError};
use crate::net::remote::RemoteNetwork;
use crate::net::{NetError, Network};
use commands::{
    believed, install_command, kill_command, local_absolute, log_command, log_file,
    log_tail_command, parse_probe, path_str, pause_command, pid_file, probe_command, resolve,
    resume_command, start_command, stop_command, NodeProcess, Probe,
};
use model::core::NodeId;
use node::config::{ClusterConfig, NodeEntry};
use program::{Program, RaftNode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{debug, info, warn};

/// Longest a control command (probe, start, pause, resume) may take, round trip included.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGKILLed node may take to disappear (waited for on the host).
const KILL_PATIENCE_MS: u64 = 5000;
/// How long [`RemoteCluster::stop_all`] waits after SIGTERM before SIGKILL.
const STOP_GRACE_MS: u64 = 5000;
/// How long a started node's process may take to show up.
const START_PATIENCE: Duration = Duration::from_secs(5);
/// Interval of the start check.
const START_POLL: Duration = Duration::from_millis(20);
/// How long [`RemoteCluster::pause`] waits on the host for the node to be stopped.
const PAUSE_WAIT_MS: u64 = 1000;
/// Copying one node's log.
const LOG_TIMEOUT: Duration = Duration::from_secs(120);
/// Each command of the Ctrl-C cleanup ([`cleanup::run_all`] runs them all at once).
const EMERGENCY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node killed on Ctrl-C may take to disappear (within [`EMERGENCY_TIMEOUT`]).
const EMERGENCY_PATIENCE_MS: u64 = 2000;
/// Exit status of the log command when the log does not exist.
const NO_LOG_STATUS: i32 = 3;

/// What went wrong with a remote cluster; every message names the node, its host, the
/// command or the file.
#[derive(Debug, Error)]
pub enum RemoteError {
    #[error(
        "{path}: no [remote] section: a remote cluster needs `[remote]` in cluster.toml \
         (e.g. command = \"ssh {{host}}\", raft_node, dir)"
    )]
    NoRemote { path: PathBuf },
    #[error("{path}: {source}")]
    BadTemplate {
        path: PathBuf,
        source: Box<TemplateError>,
    },
    /// A command through the template failed (boxed: it is large).
    #[error(transparent)]
    Command(Box<TemplateError>),
    #[error("no node {id} in {config}")]
    UnknownNode { id: NodeId, config: PathBuf },
    #[error(
        "node {id} on {host} is not running (no live {program} of node {id} named by {pid_file})"
    )]
    NotRunning {
        id: NodeId,
        host: String,
        program: String,
        pid_file: String,
    },
    #[error("node {id} on {host}: not started: the lab was interrupted and is cleaning up")]
    Interrupted { id: NodeId, host: String },
    #[error("node {id} on {host} did not start: {how}; end of {log}: {tail}")]
    DidNotStart {
        id: NodeId,
        host: String,
        how: String,
        log: String,
        tail: String,
    },
    #[error("node {id} on {host} (pid {pid}) is still there after {signal}")]
    Stuck {
        id: NodeId,
        host: String,
        pid: u32,
        signal: &'static str,
    },
    #[error("node {id} on {host}: unexpected answer to `{what}`: {answer:?}")]
    Unexpected {
        id: NodeId,
        host: String,
        what: &'static str,
        answer: String,
    },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Network(String),
    #[error("{action}: {errors}")]
    Several {
        action: &'static str,
        errors: String,
    },
}

impl From<TemplateError> for RemoteError {
    fn from(e: TemplateError) -> Self {
        RemoteError::Command(Box::new(e))
    }
}

/// Nodes on their hosts, controlled through the command template: `raft-node` by default,
/// or another [`Program`]. All methods block.
#[derive(Debug)]
pub struct RemoteCluster<P: Program = RaftNode> {
    config: ClusterConfig,
    template: CommandTemplate,
    /// What runs on the hosts.
    program: P,
    /// `remote.dir`: pid files and logs on the hosts.
    dir: PathBuf,
    iface: String,
    owned: bool,
    paused: BTreeMap<NodeId, bool>,
    /// SIGCONTs a node on Ctrl-C while we hold it paused.
    resume_on_exit: BTreeMap<NodeId, Cleanup>,
    /// Whether a node this cluster starts is SIGKILLed on Ctrl-C ([`Self::kill_on_ctrl_c`]).
    kills_on_ctrl_c: bool,
    /// SIGKILLs a node this cluster started on Ctrl-C, until it is killed or stopped.
    kill_on_exit: BTreeMap<NodeId, Cleanup>,
    endpoints: BTreeMap<NodeId, SocketAddr>,
    /// `stop_all` succeeded and nothing was started since.
    stopped: bool,
}

impl RemoteCluster<RaftNode> {
    /// A cluster of `raft-node`s from `config`, which must have a `[remote]` section.
    /// Contacts no host. Not owned: set [`Self::set_owned`] when this run started the nodes
    /// and must stop them.
    pub fn open(config: ClusterConfig) -> Result<RemoteCluster, RemoteError> {
        let remote = remote_section(&config)?;
        let host_config = match remote.config {
            Some(path) if path != config.path => path,
            _ => local_absolute(&config.path),
        };
        let program = RaftNode {
            binary: remote.raft_node,
            config: host_config,
            bugs: Vec::new(),
        };
        RemoteCluster::with_program(config, program)
    }

    /// The `--bug` flags of later (re)starts (checked by `raft-node` itself).
    pub fn set_bugs(&mut self, bugs: Vec<String>) {
        self.program.bugs = bugs;
    }
}

/// `config`'s `[remote]` section.
fn remote_section(config: &ClusterConfig) -> Result<node::config::Remote, RemoteError> {
    config.remote.clone().ok_or_else(|| RemoteError::NoRemote {
        path: config.path.clone(),
    })
}

impl<P: Program> RemoteCluster<P> {
    /// A cluster running `program` on the hosts of `config`, which must have a `[remote]`
    /// section. Contacts no host. Not owned (see [`Self::set_owned`]).
    pub fn with_program(config: ClusterConfig, program: P) -> Result<Self, RemoteError> {
        let remote = remote_section(&config)?;
        let template =
            CommandTemplate::parse(&remote.command).map_err(|source| RemoteError::BadTemplate {
                path: config.path.clone(),
                source: Box::new(source),
            })?;
        // The defaults are this file's path and directory here: absolute, so that the hosts
        // (whose shells start elsewhere) find them.
        let default_dir = config
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let dir = match remote.dir {
            Some(dir) if dir != default_dir => dir,
            _ => local_absolute(&default_dir),
        };
        let endpoints = config
            .nodes
            .iter()
            .filter_map(|n| Some((n.id, resolve(n)?)))
            .collect();
        Ok(RemoteCluster {
            paused: config.ids().map(|id| (id, false)).collect(),
            resume_on_exit: BTreeMap::new(),
            kills_on_ctrl_c: false,
            kill_on_exit: BTreeMap::new(),
            template,
            program,
            dir,
            iface: remote.iface,
            owned: false,
            endpoints,
            stopped: false,
            config,
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// `remote.dir`: where pid files and logs are on the hosts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node `id`'s client address, resolved (IPv4 preferred); `None`: unknown or unresolved.
    pub fn endpoint(&self, id: NodeId) -> Option<SocketAddr> {
        self.endpoints.get(&id).copied()
    }

    /// What runs on the hosts.
    pub fn program(&self) -> &P {
        &self.program
    }

    /// What runs on the hosts, to change how later (re)starts run.
    pub fn program_mut(&mut self) -> &mut P {
        &mut self.program
    }

    /// The command template of `[remote]`.
    pub fn template(&self) -> &CommandTemplate {
        &self.template
    }

    /// Runs `command` on node `id`'s host (`stdin` fed to it); fails unless it exits 0.
    pub fn run_on(
        &self,
        id: NodeId,
        command: &str,
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<std::process::Output, RemoteError> {
        let node = self.node(id)?;
        Ok(self.template.run(node, command, stdin, timeout)?)
    }

    /// Writes `contents` to `path` on node `id`'s host, readable by its owner only.
    pub fn install(&self, id: NodeId, path: &Path, contents: &str) -> Result<(), RemoteError> {
        self.run_on(id, &install_command(path), Some(contents), CONTROL_TIMEOUT)
            .map(drop)
    }

    /// Owned clusters are stopped at the end of a run (and on `Drop`); others are left
    /// running (only nodes this value paused are resumed on `Drop`).
    pub fn set_owned(&mut self, owned: bool) {
        self.owned = owned;
    }

    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Whether node `id` was paused by this cluster and not resumed since.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.paused.get(&id).copied().unwrap_or(false)
    }

    fn node(&self, id: NodeId) -> Result<&NodeEntry, RemoteError> {
        self.config
            .node(id)
            .ok_or_else(|| RemoteError::UnknownNode {
                id,
                config: self.config.path.clone(),
            })
    }

    fn pid_file(&self, id: NodeId) -> PathBuf {
        pid_file(&self.dir, id)
    }

    /// Node `id`'s pid on its host: from its pid file, if that names a live (not zombie)
    /// `raft-node run --id N` there.
    pub fn pid(&self, id: NodeId) -> Result<Option<u32>, RemoteError> {
        let node = self.node(id)?;
        Ok(self.probe_process(node)?.map(|p| p.pid))
    }

    /// What node `id`'s pid file names on its host.
    fn probe(&self, node: &NodeEntry) -> Result<Probe, RemoteError> {
        let output = self.template.run(
            node,
            &probe_command(&self.dir, node.id),
            None,
            CONTROL_TIMEOUT,
        )?;
        Ok(parse_probe(&String::from_utf8_lossy(&output.stdout)))
    }

    fn probe_process(&self, node: &NodeEntry) -> Result<Option<NodeProcess>, RemoteError> {
        let probe = self.probe(node)?;
        let process = believed(&probe, &self.program, node.id);
        if process.is_none() {
            if let Some(stale) = probe.pid {
                debug!(id = node.id, pid = stale, state = ?probe.state, program = self.program.name(), "pid file names no live process of this node");
            }
        }
        Ok(process)
    }

    /// Node `id`'s pid on its host and whether it is stopped by a signal (`raft-lab cluster
    /// status`).
    pub fn process(&self, id: NodeId) -> Result<(Option<u32>, bool), RemoteError> {
        let node = self.node(id)?;
        let probe = self.probe(node)?;
        let pid = believed(&probe, &self.program, node.id).map(|p| p.pid);
        Ok((pid, pid.is_some() && probe.state == Some('T')))
    }

    /// Whether node `id` runs (a paused node runs).
    pub fn is_running(&self, id: NodeId) -> Result<bool, RemoteError> {
        Ok(self.pid(id)?.is_some())
    }

    /// Starts node `id` on its host (no-op if it runs) and waits until its process shows up.
    /// Output goes to `DIR/node-N.log`, the pid to `DIR/pids/node-N.pid`.
    pub fn start(&mut self, id: NodeId) -> Result<(), RemoteError> {
        let node = self.node(id)?.clone();
        let host = node.control_host().to_string();
        if self.probe_process(&node)?.is_some() {
            debug!(id, %host, "start: already running");
            return Ok(());
        }
        if self.owned && cleanup::ran() {
            return Err(RemoteError::Interrupted { id, host });
        }
        let command = start_command(&self.program, &self.dir, id);
        self.template.run(&node, &command, None, CONTROL_TIMEOUT)?;
        self.stopped = false;
        self.paused.insert(id, false);
        let started = Instant::now();
        let deadline = started + START_PATIENCE;
        loop {
            let probe = self.probe(&node)?;
            if let Some(process) = believed(&probe, &self.program, id) {
                if self.kills_on_ctrl_c {
                    let undo = self.emergency_kill(&node, process);
                    self.kill_on_exit.insert(id, undo);
                }
                info!(id, %host, pid = process.pid, "node started");
                return Ok(());
            }
            // The pid file was just written: its process gone (or a zombie) means it exited.
            let exited = probe.pid.is_some() && matches!(probe.state, None | Some('Z' | 'X'));
            if exited || Instant::now() >= deadline {
                let log = log_file(&self.dir, id);
                let tail = self
                    .template
                    .run(
                        &node,
                        &log_tail_command(&self.dir, id),
                        None,
                        CONTROL_TIMEOUT,
                    )
                    .map(|o| match output_line(&o.stdout) {
                        text if text.is_empty() => "empty".to_string(),
                        text => text,
                    })
                    .unwrap_or_else(|e| format!("(cannot read it: {e})"));
                return Err(RemoteError::DidNotStart {
                    id,
                    host,
                    how: if exited {
                        "it exited at once".into()
                    } else {
                        format!(
                            "no {} of node {id} runs {:?} later",
                            self.program.name(),
                            started.elapsed()
                        )
                    },
                    log: path_str(&log),
                    tail,
                });
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// Starts every node that does not run.
    pub fn start_all(&mut self) -> Result<(), RemoteError> {
        for id in self.config.ids().collect::<Vec<_>>() {
            self.start(id)?;
        }
        Ok(())
    }

    /// SIGCONT + SIGKILL to node `id`, then waits on its host until the process is gone (or a
    /// zombie), and removes its pid file.
    pub fn kill(&mut self, id: NodeId) -> Result<(), RemoteError> {
        let (node, process) = self.live(id)?;
        let pid = process.pid;
        let host = node.control_host().to_string();
        let output = self.template.run(
            &node,
            &kill_command(&self.dir, id, process, KILL_PATIENCE_MS),
            None,
            CONTROL_TIMEOUT + Duration::from_millis(KILL_PATIENCE_MS),
        )?;
        self.resume_on_exit.remove(&id);
        self.kill_on_exit.remove(&id);
        self.paused.insert(id, false);
        match String::from_utf8_lossy(&output.stdout).trim() {
            "gone" => {
                info!(id, %host, pid, "node killed");
                Ok(())
            }
            // The node died after the probe and its pid names another process now, which
            // was left alone: the node is gone all the same.
            "other" => {
                warn!(id, %host, pid, "node already gone, its pid reused: not signalled");
                Ok(())
            }
            "stuck" => Err(RemoteError::Stuck {
                id,
                host,
                pid,
                signal: "SIGKILL",
            }),
            other => Err(RemoteError::Unexpected {
                id,
                host,
                what: "kill",
                answer: other.to_string(),
            }),
        }
    }

    /// From now on, every node this cluster starts is SIGKILLed by the Ctrl-C cleanup (until
    /// it is killed or stopped the ordinary way): for nodes that nothing else stops then (not
    /// in namespaces of the run's own) and that must not outlive the run.
    pub fn kill_on_ctrl_c(&mut self) {
        self.kills_on_ctrl_c = true;
    }

    /// The Ctrl-C undo of starting `process` of `node`: SIGCONT + SIGKILL on its host (the
    /// start time checked first, as for every signal).
    fn emergency_kill(&self, node: &NodeEntry, process: NodeProcess) -> Cleanup {
        let (template, node) = (self.template.clone(), node.clone());
        let command = kill_command(&self.dir, node.id, process, EMERGENCY_PATIENCE_MS);
        cleanup::register(move || {
            if let Err(e) = template.run(&node, &command, None, EMERGENCY_TIMEOUT) {
                warn!("killing node {} on Ctrl-C: {e}", node.id);
            }
        })
    }

    /// SIGSTOPs node `id` and waits (briefly, on its host) until it is stopped.
    pub fn pause(&mut self, id: NodeId) -> Result<(), RemoteError> {
        let (node, process) = self.live(id)?;
        let pid = process.pid;
        // Registered first: if the answer is lost, the Ctrl-C cleanup still resumes it.
        let template = self.template.clone();
        let host = node.clone();
        let undo = cleanup::register(move || {
            let result = template.run(&host, &resume_command(process), None, EMERGENCY_TIMEOUT);
            if let Err(e) = result {
                warn!("resuming node {} on Ctrl-C: {e}", host.id);
            }
        });
        self.resume_on_exit.insert(id, undo);
        let output = self.template.run(
            &node,
            &pause_command(process, PAUSE_WAIT_MS),
            None,
            CONTROL_TIMEOUT + Duration::from_millis(PAUSE_WAIT_MS),
        )?;
        let state = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if state == "other" {
            // Died after the probe, its pid reused: nothing was stopped, nothing to resume.
            self.resume_on_exit.remove(&id);
            return Err(RemoteError::NotRunning {
                id,
                host: node.control_host().to_string(),
                program: self.program.name().to_string(),
                pid_file: path_str(&self.pid_file(id)),
            });
        }
        self.paused.insert(id, true);
        if state != "T" && state != "t" {
            warn!(id, pid, %state, "paused node is not reported stopped yet");
        }
        info!(id, host = node.control_host(), pid, "node paused");
        Ok(())
    }

    /// SIGCONTs node `id`.
    pub fn resume(&mut self, id: NodeId) -> Result<(), RemoteError> {
        let (node, process) = self.live(id)?;
        let pid = process.pid;
        self.template
            .run(&node, &resume_command(process), None, CONTROL_TIMEOUT)?;
        self.resume_on_exit.remove(&id);
        self.paused.insert(id, false);
        info!(id, host = node.control_host(), pid, "node resumed");
        Ok(())
    }

    /// The node entry and process of running node `id`.
    fn live(&mut self, id: NodeId) -> Result<(NodeEntry, NodeProcess), RemoteError> {
        let node = self.node(id)?.clone();
        match self.probe_process(&node)? {
            Some(process) => Ok((node, process)),
            None => {
                self.paused.insert(id, false);
                Err(RemoteError::NotRunning {
                    id,
                    host: node.control_host().to_string(),
                    program: self.program.name().to_string(),
                    pid_file: path_str(&self.pid_file(id)),
                })
            }
        }
    }

    /// Stops every running node, all hosts at once: SIGCONT + SIGTERM, up to 5 s for a clean
    /// exit, then SIGKILL; removes the pid files. Reports every failure together.
    pub fn stop_all(&mut self) -> Result<(), RemoteError> {
        let ids: Vec<NodeId> = self.config.ids().collect();
        self.stop(&ids)?;
        self.stopped = true;
        Ok(())
    }

    /// [`Self::stop_all`] of nodes `ids` only.
    pub fn stop(&mut self, ids: &[NodeId]) -> Result<(), RemoteError> {
        let nodes: Vec<NodeEntry> = self
            .config
            .nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .cloned()
            .collect();
        let probes = concurrently(&nodes, |n| self.probe_process(n));
        let mut errors = Vec::new();
        let mut running = Vec::new();
        for (node, probe) in nodes.into_iter().zip(probes) {
            match probe {
                Ok(Some(process)) => running.push((node, process)),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        let timeout = CONTROL_TIMEOUT + Duration::from_millis(STOP_GRACE_MS + KILL_PATIENCE_MS);
        let results = concurrently(&running, |(node, process)| {
            self.template.run(
                node,
                &stop_command(
                    &self.dir,
                    node.id,
                    *process,
                    STOP_GRACE_MS,
                    KILL_PATIENCE_MS,
                ),
                None,
                timeout,
            )
        });
        for ((node, process), result) in running.iter().zip(results) {
            self.resume_on_exit.remove(&node.id);
            self.kill_on_exit.remove(&node.id);
            let host = node.control_host().to_string();
            let id = node.id;
            match result {
                Err(e) => errors.push(e.to_string()),
                Ok(output) => match String::from_utf8_lossy(&output.stdout).trim() {
                    "stopped" => debug!(id, %host, "node stopped"),
                    "killed" => warn!(id, %host, "node ignored SIGTERM; killed it"),
                    "other" => debug!(id, %host, "node already gone, its pid reused"),
                    "stuck" => errors.push(
                        RemoteError::Stuck {
                            id,
                            host,
                            pid: process.pid,
                            signal: "SIGKILL",
                        }
                        .to_string(),
                    ),
                    other => errors.push(
                        RemoteError::Unexpected {
                            id,
                            host,
                            what: "stop",
                            answer: other.to_string(),
                        }
                        .to_string(),
                    ),
                },
            }
        }
        for (_, paused) in self.paused.iter_mut().filter(|(id, _)| ids.contains(id)) {
            *paused = false;
        }
        if !running.is_empty() {
            info!(nodes = running.len(), "remote nodes stopped");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RemoteError::Several {
                action: "stopping the remote nodes",
                errors: errors.join("; "),
            })
        }
    }

    /// Copies every node's `DIR/node-N.log` from its host to `into/node-N.log` (all hosts at
    /// once). A missing log is skipped with a warning; other failures are reported together
    /// after every log was tried.
    pub fn collect_logs(&self, into: &Path) -> Result<(), RemoteError> {
        std::fs::create_dir_all(into).map_err(|source| RemoteError::Io {
            what: "create directory",
            path: into.to_path_buf(),
            source,
        })?;
        let nodes = &self.config.nodes;
        let results = concurrently(nodes, |n| {
            let command = log_command(&self.dir, n.id);
            self.template
                .output(n, &command, None, LOG_TIMEOUT)
                .map(|o| (command, o))
        });
        let mut errors = Vec::new();
        for (node, result) in nodes.iter().zip(results) {
            let host = node.control_host();
            let remote_log = path_str(&log_file(&self.dir, node.id));
            match result {
                Err(e) => errors.push(e.to_string()),
                Ok((_, output)) if output.status.code() == Some(NO_LOG_STATUS) => {
                    warn!(id = node.id, %host, log = %remote_log, "no log on the host; none collected");
                }
                Ok((command, output)) if !output.status.success() => {
                    errors.push(TemplateError::failed(node, &command, &output).to_string())
                }
                Ok((_, output)) => {
                    let path = into.join(format!("node-{}.log", node.id));
                    if let Err(source) = std::fs::write(&path, &output.stdout) {
                        errors.push(
                            RemoteError::Io {
                                what: "write",
                                path,
                                source,
                            }
                            .to_string(),
                        );
                    } else {
                        debug!(id = node.id, %host, bytes = output.stdout.len(), "log collected");
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RemoteError::Several {
                action: "collecting the node logs",
                errors: errors.join("; "),
            })
        }
    }

    /// Partitions and netem on the nodes' hosts: a fresh nftables table on every host (checks
    /// that `nft` and `tc` work there).
    pub fn network(&self) -> Result<RemoteNetwork, NetError> {
        RemoteNetwork::create(self.template.clone(), &self.config.nodes, &self.iface)
    }
}

impl<P: Program> Drop for RemoteCluster<P> {
    fn drop(&mut self) {
        if self.owned {
            if !self.stopped {
                if let Err(e) = self.stop_all() {
                    warn!(
                        "stopping the remote cluster of {}: {e}",
                        self.config.path.display()
                    );
                }
            }
            return;
        }
        // Not ours to stop, but never leave a node frozen.
        let paused: Vec<NodeId> = self
            .paused
            .iter()
            .filter(|(_, p)| **p)
            .map(|(id, _)| *id)
            .collect();
        for id in paused {
            if let Err(e) = self.resume(id) {
                warn!(id, "resuming a paused node: {e}");
            }
        }
    }
}

impl Db for RemoteCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.config
            .nodes
            .iter()
            .map(|n| DbNode {
                id: n.id,
                addr: n.addr.clone(),
                socket: self.endpoints.get(&n.id).copied(),
            })
            .collect()
    }

    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        RemoteCluster::kill(self, id).map_err(DbError::of("kill", id))
    }

    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        RemoteCluster::start(self, id).map_err(DbError::of("start", id))
    }

    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        RemoteCluster::pause(self, id).map_err(DbError::of("pause", id))
    }

    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        RemoteCluster::resume(self, id).map_err(DbError::of("resume", id))
    }

    /// Everything: partitions and netem need `nft` and `tc` on the hosts, which
    /// [`Db::network`] checks.
    fn supports(&self, needs: Needs) -> Result<(), String> {
        if needs.lazy_disks {
            return Err(super::lazy_disks::NEEDS_LAZY_DISKS.into());
        }
        if needs.data_files {
            return Err("the nodes' data files are on their hosts, not on this machine".into());
        }
        Ok(())
    }

    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        RemoteCluster::network(self).map(|n| Box::new(n) as Box<dyn Network>)
    }

    /// Stops the nodes if the run started them, and copies every node's log from its host.
    fn teardown(&mut self, owned: bool, logs_dir: &Path) -> Result<(), DbError> {
        let stopped = if owned {
            self.stop_all()
                .map_err(DbError::cluster("stop the cluster"))
        } else {
            Ok(())
        };
        let logs = self
            .collect_logs(logs_dir)
            .map_err(DbError::cluster("collect the node logs"));
        stopped.and(logs)
    }
}

/// `raft-lab cluster up` for a `cluster.toml` with `[remote]`: starts every node that does
/// not run, on its host, through the command template (with `bugs`); they keep running.
pub fn up(config: ClusterConfig, bugs: Vec<String>) -> Result<UpReport, RemoteError> {
    let mut cluster = RemoteCluster::open(config)?;
    cluster.set_bugs(bugs);
    let mut report = UpReport {
        config: cluster.config().path.clone(),
        started: Vec::new(),
        already_running: Vec::new(),
    };
    let ids: Vec<NodeId> = cluster.config().ids().collect();
    for id in ids {
        if cluster.is_running(id)? {
            report.already_running.push(id);
            continue;
        }
        cluster.start(id)?;
        report.started.push((id, cluster.pid(id)?.unwrap_or(0)));
    }
    Ok(report)
}

/// `raft-lab cluster down` for a `cluster.toml` with `[remote]`: stops every node found
/// through its pid file on its host.
pub fn down(config: ClusterConfig) -> Result<DownReport, RemoteError> {
    let mut cluster = RemoteCluster::open(config)?;
    let mut report = DownReport::default();
    let ids: Vec<NodeId> = cluster.config().ids().collect();
    for id in ids {
        if cluster.is_running(id)? {
            report.stopped.push(id);
        } else {
            report.not_running.push(id);
        }
    }
    cluster.stop_all()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::program::is_node_cmdline;
    use super::*;
    use crate::control::process::state;
    use crate::control::template::shell_quote;
    use std::process::{Child, Command};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The process a probe saw, believed or not (its start time must be there).
    fn process_of(probe: &Probe) -> NodeProcess {
        NodeProcess {
            pid: probe.pid.expect("a pid"),
            start: probe.start.expect("a start time"),
        }
    }

    fn raft_node() -> RaftNode {
        RaftNode {
            binary: "raft-node".into(),
            config: "c.toml".into(),
            bugs: Vec::new(),
        }
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("30").spawn().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("raftlab-remote-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pids")).unwrap();
        dir
    }

    #[test]
    fn start_command_text() {
        let raft_node = |binary: &str, config: &str, bugs: &[&str]| RaftNode {
            binary: binary.into(),
            config: config.into(),
            bugs: bugs.iter().map(|b| b.to_string()).collect(),
        };
        let cmd = start_command(
            &raft_node(
                "/opt/raft lab/raft-node",
                "/etc/raftlab/cluster.toml",
                &["stale-read", "skip-fsync"],
            ),
            Path::new("/var/lib/raftlab"),
            2,
        );
        assert_eq!(
            cmd,
            "mkdir -p '/var/lib/raftlab/pids' && cd '/var/lib/raftlab' && \
             echo '=== raft-lab: starting node 2 with bugs stale-read,skip-fsync ===' >> \
             '/var/lib/raftlab/node-2.log' || exit 1; nohup '/opt/raft lab/raft-node' run \
             --config '/etc/raftlab/cluster.toml' --id 2 --bug 'stale-read' --bug 'skip-fsync' \
             >> '/var/lib/raftlab/node-2.log' 2>&1 < /dev/null & echo $! > \
             '/var/lib/raftlab/pids/node-2.pid'"
        );
        let plain = start_command(&raft_node("raft-node", "c.toml", &[]), Path::new("/d"), 1);
        assert!(
            plain.contains("'=== raft-lab: starting node 1 ==='"),
            "{plain}"
        );
        assert!(plain.contains("--id 1 >> '/d/node-1.log'"), "{plain}");
    }

    #[test]
    fn start_command_runs_in_the_background_and_records_its_pid() {
        let dir = temp_dir("start");
        // `sleep` stands in for raft-node: `sleep run ...` is not valid, so use sh.
        let fake = dir.join("fake-raft-node");
        std::fs::write(&fake, "#!/bin/sh\necho \"args: $*\"\nexec sleep 30\n").unwrap();
        sh(&format!("chmod +x {}", shell_quote(&path_str(&fake))));
        let program = RaftNode {
            binary: path_str(&fake),
            config: dir.join("cluster.toml"),
            bugs: vec!["x".into()],
        };
        let out = sh(&start_command(&program, &dir, 3));
        assert_eq!(out, "");
        let pid: u32 = std::fs::read_to_string(pid_file(&dir, 3))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The probe sees it; killing it through the kill command leaves it gone.
        let probe = parse_probe(&sh(&probe_command(&dir, 3)));
        assert_eq!(probe.pid, Some(pid));
        let killed = sh(&kill_command(&dir, 3, process_of(&probe), 5000));
        assert_eq!(killed.trim(), "gone");
        assert!(!pid_file(&dir, 3).exists());
        let log = std::fs::read_to_string(log_file(&dir, 3)).unwrap();
        assert!(
            log.starts_with("=== raft-lab: starting node 3 with bugs x ===\n"),
            "{log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kill_pause_and_stop_commands_work_on_a_real_process() {
        let dir = temp_dir("signals");
        let mut child = sleeper();
        let pid = child.id();
        std::fs::write(pid_file(&dir, 1), format!("{pid}\n")).unwrap();

        let probe = parse_probe(&sh(&probe_command(&dir, 1)));
        assert_eq!(probe.pid, Some(pid));
        assert!(matches!(probe.state, Some('S' | 'R')), "{probe:?}");
        assert_eq!(probe.args, args(&["sleep", "30"]));
        // Not a raft-node: not believed.
        assert_eq!(believed(&probe, &raft_node(), 1), None);
        let process = process_of(&probe);

        assert_eq!(sh(&pause_command(process, 1000)).trim(), "T");
        assert_eq!(state(pid), Some('T'));
        sh(&resume_command(process));
        assert_ne!(state(pid), Some('T'));

        // Our child stays a zombie until we reap it: that counts as gone.
        assert_eq!(sh(&kill_command(&dir, 1, process, 5000)).trim(), "gone");
        assert!(!pid_file(&dir, 1).exists());
        let _ = child.wait();

        // A stop: SIGTERM suffices for sleep.
        let mut child = sleeper();
        let pid = child.id();
        std::fs::write(pid_file(&dir, 2), format!("{pid}\n")).unwrap();
        let process = process_of(&parse_probe(&sh(&probe_command(&dir, 2))));
        assert_eq!(
            sh(&stop_command(&dir, 2, process, 5000, 5000)).trim(),
            "stopped"
        );
        assert!(!pid_file(&dir, 2).exists());
        let _ = child.wait();

        // One that ignores SIGTERM is killed after the grace period (once its trap is set).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("trap '' TERM; echo ready; while :; do sleep 1; done")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        let pid = child.id();
        std::fs::write(pid_file(&dir, 4), format!("{pid}\n")).unwrap();
        let process = process_of(&parse_probe(&sh(&probe_command(&dir, 4))));
        assert_eq!(
            sh(&stop_command(&dir, 4, process, 100, 5000)).trim(),
            "killed"
        );
        let _ = child.wait();

        // A missing pid file probes as nothing.
        assert_eq!(parse_probe(&sh(&probe_command(&dir, 9))), Probe::default());
        std::fs::write(pid_file(&dir, 8), "garbage").unwrap();
        assert_eq!(parse_probe(&sh(&probe_command(&dir, 8))), Probe::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A pid that names another process by now (the node died after the probe and the pid
    /// was reused) is never signalled: the kill, stop, pause and resume commands re-check the
    /// start time the probe saw, in the same shell, right before each signal.
    #[test]
    fn signals_spare_a_pid_that_names_another_process() {
        let dir = temp_dir("reused");
        let mut child = sleeper();
        let pid = child.id();
        std::fs::write(pid_file(&dir, 1), format!("{pid}\n")).unwrap();
        let probe = parse_probe(&sh(&probe_command(&dir, 1)));
        let ours = process_of(&probe);
        // The same pid with another start time: what a reused pid looks like.
        let other = NodeProcess {
            pid,
            start: ours.start + 1,
        };
        assert_eq!(sh(&kill_command(&dir, 1, other, 5000)).trim(), "other");
        assert_eq!(sh(&stop_command(&dir, 1, other, 100, 100)).trim(), "other");
        assert_eq!(sh(&pause_command(other, 100)).trim(), "other");
        assert!(matches!(state(pid), Some('S' | 'R')), "{:?}", state(pid));
        assert!(pid_file(&dir, 1).exists());
        // Paused by its own start time; a resume with the wrong one leaves it stopped.
        assert_eq!(sh(&pause_command(ours, 1000)).trim(), "T");
        assert_eq!(sh(&resume_command(other)).trim(), "other");
        assert_eq!(state(pid), Some('T'));
        // Its own start time: killed.
        assert_eq!(sh(&kill_command(&dir, 1, ours, 5000)).trim(), "gone");
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signal_commands_check_the_start_time_before_each_signal() {
        let node = NodeProcess {
            pid: 42,
            start: 9001,
        };
        for command in [
            kill_command(Path::new("/d"), 1, node, 100),
            stop_command(Path::new("/d"), 1, node, 100, 100),
            pause_command(node, 100),
            resume_command(node),
        ] {
            assert!(
                command.starts_with("p=42; want=9001; ours() {"),
                "{command}"
            );
            assert!(command.contains("then echo other; exit 0; fi"), "{command}");
            for signal in ["CONT", "KILL", "TERM", "STOP"] {
                let kill = format!("kill -s {signal} $p");
                assert_eq!(
                    command.matches(&kill).count(),
                    command.matches(&format!("ours && {kill}")).count(),
                    "{command}"
                );
            }
        }
    }

    #[test]
    fn probe_parsing_and_belief() {
        let probe = parse_probe(
            "pid 42\nstate S\nstart 777\narg /usr/local/bin/raft-node\narg run\narg --config\narg /etc/c.toml\narg --id\narg 2\narg\n",
        );
        assert_eq!(probe.pid, Some(42));
        assert_eq!(probe.state, Some('S'));
        assert_eq!(probe.start, Some(777));
        assert_eq!(probe.args.len(), 7);
        assert_eq!(
            believed(&probe, &raft_node(), 2),
            Some(NodeProcess {
                pid: 42,
                start: 777
            })
        );
        assert_eq!(believed(&probe, &raft_node(), 3), None);
        let no_start = Probe {
            start: None,
            ..probe.clone()
        };
        assert_eq!(believed(&no_start, &raft_node(), 2), None);
        let zombie = Probe {
            state: Some('Z'),
            ..probe.clone()
        };
        assert_eq!(believed(&zombie, &raft_node(), 2), None);
        let gone = Probe {
            state: None,
            args: Vec::new(),
            ..probe.clone()
        };
        assert_eq!(believed(&gone, &raft_node(), 2), None);
        assert_eq!(parse_probe(""), Probe::default());
    }

    #[test]
    fn cmdline_matching() {
        let id = |n| n;
        assert!(is_node_cmdline(
            &args(&["raft-node", "run", "--config", "c", "--id", "2"]),
            "raft-node",
            id(2)
        ));
        assert!(is_node_cmdline(
            &args(&["/x/raft-node", "run", "--id=2"]),
            "raft-node",
            2
        ));
        // Before nohup execs the node (or when it cannot): not the node.
        assert!(!is_node_cmdline(
            &args(&["nohup", "/x/raft-node", "run", "--id", "2"]),
            "raft-node",
            2
        ));
        // A renamed binary, named in remote.raft_node.
        assert!(is_node_cmdline(
            &args(&["/opt/rn", "run", "--id", "2"]),
            "/opt/rn",
            2
        ));
        assert!(!is_node_cmdline(
            &args(&["/opt/rn", "run", "--id", "2"]),
            "raft-node",
            2
        ));
        assert!(!is_node_cmdline(
            &args(&["raft-node", "run", "--id", "12"]),
            "raft-node",
            2
        ));
        assert!(!is_node_cmdline(
            &args(&["raft-node", "certs", "--id", "2"]),
            "raft-node",
            2
        ));
        assert!(!is_node_cmdline(
            &args(&["sh", "-c", "nohup raft-node run --id 2"]),
            "raft-node",
            2
        ));
    }

    #[test]
    fn open_needs_a_remote_section_and_makes_default_paths_absolute() {
        let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:15001\"\n";
        let config = ClusterConfig::parse(Path::new("/srv/lab/cluster.toml"), text).unwrap();
        let err = RemoteCluster::open(config).unwrap_err().to_string();
        assert!(err.contains("/srv/lab/cluster.toml"), "{err}");
        assert!(err.contains("[remote]"), "{err}");

        let text = format!("{text}[remote]\ncommand = \"ssh {{host}}\"\n");
        let config = ClusterConfig::parse(Path::new("rel/cluster.toml"), &text).unwrap();
        let cluster = RemoteCluster::open(config).unwrap();
        assert!(cluster.dir().is_absolute(), "{:?}", cluster.dir());
        assert!(cluster.dir().ends_with("rel"));
        assert!(cluster.program.config.is_absolute());
        assert!(!cluster.owned());
        let nodes = cluster.nodes();
        assert_eq!(nodes[0].socket, Some("127.0.0.1:15001".parse().unwrap()));

        let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:15001\"\n[remote]\ncommand = \"ssh {host} {bad}\"\n";
        let config = ClusterConfig::parse(Path::new("/srv/cluster.toml"), text).unwrap();
        let err = RemoteCluster::open(config).unwrap_err().to_string();
        assert!(
            err.contains("/srv/cluster.toml") && err.contains("{bad}"),
            "{err}"
        );
    }
}
