//! The cluster one `raft-lab run` drives, whichever way it is reached:
//!
//! - **local**: `raft-node` children on loopback addresses ([`LocalCluster`]), or an existing
//!   local `cluster.toml` without `[remote]` (`--cluster`);
//! - **remote**: `--cluster cluster.toml` with a `[remote]` section: nodes on other machines,
//!   controlled through the command template ([`RemoteCluster`]); left running afterwards;
//! - **netns**: `--hosts netns`: a fresh cluster, one network namespace per node
//!   ([`NetnsHosts`]), controlled through the same [`RemoteCluster`] code with the template
//!   `ip netns exec {host} sh -c`; stopped and torn down afterwards.
//!
//! The nemesis sees each through [`Db`]; the run asks it for the leader, stops it, and
//! copies remote node logs into the run folder.

use crate::db::local::{self, ClusterOptions, LocalCluster};
use crate::db::remote::RemoteCluster;
use crate::db::{Db, DbError, DbNode, Needs};
use crate::kv::status;
use crate::net::netns::NetnsHosts;
use crate::net::{NetError, Network};
use anyhow::{anyhow, Context};
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tracing::info;

/// Where the nodes of a run live (`raft-lab run --hosts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostsMode {
    /// Processes on this machine, one loopback address each.
    #[default]
    Local,
    /// One Linux network namespace per node, on a bridge (needs root and `ip`).
    Netns,
}

/// The port every node listens on in its namespace (each has an address of its own).
pub const NETNS_PORT: u16 = 15001;

/// A run's cluster.
pub enum RunCluster {
    Local(LocalCluster),
    Remote {
        nodes: RemoteCluster,
        /// The namespaces, for `--hosts netns` (torn down with the cluster).
        netns: Option<NetnsHosts>,
    },
}

impl RunCluster {
    /// Opens `--cluster FILE`: remote when it has `[remote]`, local otherwise. Nodes of a
    /// remote cluster that do not run are started (with their usual flags).
    pub fn open(file: &Path) -> anyhow::Result<RunCluster> {
        let config = ClusterConfig::load(file)?;
        if config.remote.is_none() {
            return Ok(RunCluster::Local(LocalCluster::open(file)?));
        }
        let mut nodes = RemoteCluster::open(config)?;
        nodes.start_all()?;
        Ok(RunCluster::Remote { nodes, netns: None })
    }

    /// Starts a fresh local cluster in `dir`.
    pub fn create_local(dir: &Path, opts: &ClusterOptions) -> anyhow::Result<RunCluster> {
        Ok(RunCluster::Local(LocalCluster::create(dir, opts)?))
    }

    /// Starts a fresh cluster in `dir` with one network namespace per node: writes
    /// `cluster.toml` (node N at the namespace's address, `host` = the namespace, `[remote]`
    /// with the `ip netns exec` template), the certificates, and starts every node through
    /// the template. On failure everything made so far is removed.
    pub fn create_netns(dir: &Path, opts: &ClusterOptions) -> anyhow::Result<RunCluster> {
        crate::net::netns::check_available()?;
        let netns = NetnsHosts::create(opts.nodes)?;
        info!(
            namespaces = netns.hosts().len(),
            bridge = netns.bridge(),
            lab = %netns.lab_ip(),
            "network namespaces ready"
        );
        let dir = std::path::absolute(dir).context("resolving the cluster folder")?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("cluster.toml");
        std::fs::write(&path, netns_cluster_toml(&netns, opts))
            .with_context(|| format!("writing {}", path.display()))?;
        let config = ClusterConfig::load(&path)?;
        node::certs::generate(&config, &config.tls.certs_dir, false)
            .map_err(|e| anyhow!("making certificates for {}: {e}", path.display()))?;
        let mut nodes = RemoteCluster::open(config)?;
        nodes.set_bugs(opts.bugs.clone());
        nodes.set_owned(true);
        // On failure `nodes` (owned: stops what started) drops before `netns`, as in the enum.
        nodes.start_all()?;
        Ok(RunCluster::Remote {
            nodes,
            netns: Some(netns),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        match self {
            RunCluster::Local(c) => c.config(),
            RunCluster::Remote { nodes, .. } => nodes.config(),
        }
    }

    /// Waits until a majority agrees on a leader.
    pub async fn leader(
        &self,
        client: &ClientConnector,
        timeout: Duration,
    ) -> anyhow::Result<NodeId> {
        match self {
            RunCluster::Local(c) => Ok(c.leader(client, timeout).await?),
            RunCluster::Remote { nodes, .. } => {
                let addrs: Vec<(NodeId, String)> = nodes
                    .config()
                    .nodes
                    .iter()
                    .map(|n| (n.id, n.addr.clone()))
                    .collect();
                Ok(status::find_leader(client, &addrs, addrs.len(), timeout).await?)
            }
        }
    }

    /// Stops the nodes if the run started them (`owned`), copies remote logs into
    /// `logs_dir`, and tears the namespaces down. Tries every step; returns the first error.
    pub fn stop(&mut self, owned: bool, logs_dir: &Path) -> anyhow::Result<()> {
        match self {
            RunCluster::Local(c) if owned => Ok(c.stop_all()?),
            RunCluster::Local(_) => Ok(()),
            RunCluster::Remote { nodes, netns } => {
                let stopped = if netns.is_some() || owned {
                    nodes.stop_all().map_err(anyhow::Error::from)
                } else {
                    Ok(())
                };
                // Namespace nodes log into the run folder already.
                let logs = if netns.is_none() {
                    nodes.collect_logs(logs_dir).map_err(anyhow::Error::from)
                } else {
                    Ok(())
                };
                let torn = match netns {
                    Some(n) => n.destroy().map_err(anyhow::Error::from),
                    None => Ok(()),
                };
                stopped.and(logs).and(torn)
            }
        }
    }

    fn control(&self) -> &dyn Db {
        match self {
            RunCluster::Local(c) => c,
            RunCluster::Remote { nodes, .. } => nodes,
        }
    }

    fn control_mut(&mut self) -> &mut dyn Db {
        match self {
            RunCluster::Local(c) => c,
            RunCluster::Remote { nodes, .. } => nodes,
        }
    }
}

impl Db for RunCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.control().nodes()
    }
    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        self.control_mut().kill(id)
    }
    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        self.control_mut().start(id)
    }
    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        self.control_mut().pause(id)
    }
    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        self.control_mut().resume(id)
    }
    fn supports(&self, needs: Needs) -> Result<(), String> {
        self.control().supports(needs)
    }
    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        self.control().network()
    }
}

/// `cluster.toml` of a namespace cluster: node N at `<its address>:15001`, `host` = its
/// namespace, controlled with `ip netns exec`.
fn netns_cluster_toml(netns: &NetnsHosts, opts: &ClusterOptions) -> String {
    let addrs: Vec<SocketAddr> = netns
        .hosts()
        .iter()
        .map(|h| SocketAddr::new(h.ip.into(), NETNS_PORT))
        .collect();
    let hosts: Vec<String> = netns.hosts().iter().map(|h| h.name.clone()).collect();
    let mut text = local::cluster_toml(&addrs, &hosts, opts);
    let _ = write!(
        text,
        "\n[remote]\ncommand = \"ip netns exec {{host}} sh -c\"\nraft_node = {:?}\niface = {:?}\n",
        opts.raft_node.display().to_string(),
        netns.hosts().first().map_or("eth0", |h| h.iface.as_str()),
    );
    text
}
