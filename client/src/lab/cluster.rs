//! The cluster one `raft-lab run` drives, whichever way it is reached:
//!
//! - **local**: `raft-node` children on loopback addresses ([`LocalCluster`]), or an existing
//!   local `cluster.toml` without `[remote]` (`--cluster`);
//! - **remote**: `--cluster cluster.toml` with a `[remote]` section: nodes on other machines,
//!   controlled through the command template ([`RemoteCluster`]); left running afterwards;
//! - **netns**: `--hosts netns`: a fresh cluster, one network namespace per node
//!   ([`NetnsCluster`]); stopped and torn down afterwards.
//!
//! Each is a [`Db`]: the nemesis drives it through that trait, and so does the run (the leader
//! before the workload, the tear-down after it). The run's clients need the cluster file.

use crate::db::local::{ClusterOptions, LocalCluster};
use crate::db::netns::NetnsCluster;
use crate::db::remote::RemoteCluster;
use crate::db::{Db, DbError, DbNode, LeaderFuture, Needs};
use crate::net::{NetError, Network};
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::path::Path;
use std::time::Duration;

/// Where the nodes of a run live (`raft-lab run --hosts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostsMode {
    /// Processes on this machine, one loopback address each.
    #[default]
    Local,
    /// One Linux network namespace per node, on a bridge (needs root and `ip`).
    Netns,
}

/// A run's cluster: the system under test, and the `cluster.toml` its clients use.
pub struct RunCluster {
    db: Box<dyn Db>,
    config: ClusterConfig,
}

impl RunCluster {
    /// Opens `--cluster FILE`: remote when it has `[remote]`, local otherwise. Nodes of a
    /// remote cluster that do not run are started (with their usual flags).
    pub fn open(file: &Path) -> anyhow::Result<RunCluster> {
        let config = ClusterConfig::load(file)?;
        if config.remote.is_none() {
            let local = LocalCluster::open(file)?;
            return Ok(RunCluster::new(local.config().clone(), local));
        }
        let mut nodes = RemoteCluster::open(config.clone())?;
        nodes.start_all()?;
        Ok(RunCluster::new(config, nodes))
    }

    /// Starts a fresh local cluster in `dir`.
    pub fn create_local(dir: &Path, opts: &ClusterOptions) -> anyhow::Result<RunCluster> {
        let local = LocalCluster::create(dir, opts)?;
        Ok(RunCluster::new(local.config().clone(), local))
    }

    /// Starts a fresh cluster in `dir` with one network namespace per node.
    pub fn create_netns(dir: &Path, opts: &ClusterOptions) -> anyhow::Result<RunCluster> {
        let netns = NetnsCluster::create(dir, opts)?;
        Ok(RunCluster::new(netns.config().clone(), netns))
    }

    fn new(config: ClusterConfig, db: impl Db + 'static) -> RunCluster {
        RunCluster {
            db: Box::new(db),
            config,
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
}

impl Db for RunCluster {
    fn nodes(&self) -> Vec<DbNode> {
        self.db.nodes()
    }
    fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
        self.db.kill(id)
    }
    fn start(&mut self, id: NodeId) -> Result<(), DbError> {
        self.db.start(id)
    }
    fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
        self.db.pause(id)
    }
    fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
        self.db.resume(id)
    }
    fn supports(&self, needs: Needs) -> Result<(), String> {
        self.db.supports(needs)
    }
    fn network(&self) -> Result<Box<dyn Network>, NetError> {
        self.db.network()
    }
    fn leader<'a>(&'a self, client: &'a ClientConnector, timeout: Duration) -> LeaderFuture<'a> {
        self.db.leader(client, timeout)
    }
    fn teardown(&mut self, owned: bool, logs_dir: &Path) -> Result<(), DbError> {
        self.db.teardown(owned, logs_dir)
    }
}
