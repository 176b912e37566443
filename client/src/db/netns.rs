//! A cluster with one Linux network namespace per node (`raft-lab run --hosts netns`): each
//! node has an interface and an address of its own on a bridge, so latency faults (`tc
//! netem`) apply per node. The nodes are driven through the [`RemoteCluster`] code with the
//! command template `ip netns exec {host} sh -c`; the namespaces are this cluster's own and
//! go away with it.

use super::lazy_disks::{LazyDisks, NEEDS_LAZY_DISKS};
use super::local::{self, ClusterOptions};
use super::remote::RemoteCluster;
use super::{Db, DbError, DbNode, DiskCommand, Exit, LeaderFuture, Needs};
use crate::net::netns::NetnsHosts;
use crate::net::{NetError, Network};
use anyhow::{anyhow, Context};
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::info;

/// The port every node listens on in its namespace (each has an address of its own).
pub const NETNS_PORT: u16 = 15001;

/// The nodes, their lazy disks (if any) and their namespaces. Field order is drop order: on
/// failure the nodes (owned: stopped) go before their disks and the namespaces they run in.
pub struct NetnsCluster {
    nodes: RemoteCluster,
    /// Mounted on this machine, whose mounts every namespace sees.
    disks: LazyDisks,
    netns: NetnsHosts,
}

impl NetnsCluster {
    /// Starts a fresh cluster in `dir` with one network namespace per node: writes
    /// `cluster.toml` (node N at the namespace's address, `host` = the namespace, `[remote]`
    /// with the `ip netns exec` template), the certificates, and starts every node through
    /// the template. On failure everything made so far is removed.
    pub fn create(dir: &Path, opts: &ClusterOptions) -> anyhow::Result<NetnsCluster> {
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
        let disks = match &opts.lazy_disks {
            Some(lazy) => {
                let data_dirs: Vec<_> = config.ids().map(|id| (id, config.data_dir(id))).collect();
                LazyDisks::mount(&lazy.binary, &dir.join("lazyfs"), &data_dirs, lazy.seed)?
            }
            None => LazyDisks::default(),
        };
        let mut nodes = RemoteCluster::open(config)?;
        nodes.set_bugs(opts.bugs.clone());
        nodes.set_owned(true);
        // On failure `nodes` (owned: stops what started) drops before `disks` and `netns`.
        nodes.start_all()?;
        Ok(NetnsCluster {
            nodes,
            disks,
            netns,
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        self.nodes.config()
    }
}

impl Db for NetnsCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.nodes.nodes()
    }
    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        Db::kill(&mut self.nodes, id)
    }
    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        Db::start(&mut self.nodes, id)
    }
    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        Db::pause(&mut self.nodes, id)
    }
    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        Db::resume(&mut self.nodes, id)
    }
    fn supports(&self, needs: Needs) -> Result<(), String> {
        if needs.lazy_disks && self.disks.is_empty() {
            return Err(NEEDS_LAZY_DISKS.into());
        }
        // The data is on this machine, whose mounts the namespaces share.
        self.nodes.supports(Needs {
            lazy_disks: false,
            data_files: false,
            ..needs
        })
    }
    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        Db::network(&self.nodes)
    }
    fn leader<'a>(&'a self, client: &'a ClientConnector, timeout: Duration) -> LeaderFuture<'a> {
        self.nodes.leader(client, timeout)
    }
    /// The node must be down for a power cut: [`Db::kill`] waits until it is gone.
    fn disk(&mut self, id: NodeId, command: DiskCommand) -> Result<String, DbError> {
        self.disks
            .command(id, command.name())
            .map_err(DbError::of(command.action(), id))
    }
    fn data_dir(&self, id: NodeId) -> Option<PathBuf> {
        let config = self.nodes.config();
        config.node(id).map(|_| config.data_dir(id))
    }
    /// Polls whether the node still runs, through its namespace.
    fn wait_exit(&mut self, id: NodeId, patience: Duration) -> Result<Option<Exit>, DbError> {
        let mut failed = None;
        let exited =
            crate::control::process::wait_for(patience, || match self.nodes.is_running(id) {
                Ok(running) => !running,
                Err(e) => {
                    failed = Some(e);
                    true
                }
            });
        if let Some(e) = failed {
            return Err(DbError::of("wait for the exit of", id)(e));
        }
        let log = self.nodes.dir().join(format!("node-{id}.log"));
        Ok(exited.then(|| Exit {
            code: None,
            log_tail: super::local::log_tail(&log),
        }))
    }
    /// Stops every node (they log into the run folder already), unmounts their lazy disks
    /// and removes the namespaces.
    fn teardown(&mut self, _owned: bool, _logs_dir: &Path) -> Result<(), DbError> {
        let stopped = self
            .nodes
            .stop_all()
            .map_err(DbError::cluster("stop the cluster"));
        let unmounted = self
            .disks
            .unmount_all()
            .map_err(DbError::cluster("unmount the lazy disks"));
        let torn = self
            .netns
            .destroy()
            .map_err(DbError::cluster("remove the network namespaces"));
        stopped.and(unmounted).and(torn)
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
        "\n[remote]\ncommand = {:?}\nraft_node = {:?}\niface = {:?}\n",
        crate::net::netns::EXEC_TEMPLATE,
        opts.raft_node.display().to_string(),
        netns.hosts().first().map_or("eth0", |h| h.iface.as_str()),
    );
    text
}
