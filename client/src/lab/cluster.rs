//! The cluster one `raft-lab run` drives, whichever way it is reached:
//!
//! - **local**: `raft-node` children on loopback addresses ([`LocalCluster`]), or an existing
//!   local `cluster.toml` without `[remote]` (`--cluster`);
//! - **remote**: `--cluster cluster.toml` with a `[remote]` section: nodes on other machines,
//!   controlled through the command template ([`RemoteCluster`]); left running afterwards;
//! - **netns**: `--hosts netns`: a fresh cluster, one network namespace per node
//!   ([`NetnsCluster`]); stopped and torn down afterwards;
//! - **etcd**: `--db etcd`: a fresh etcd cluster on loopback addresses or in namespaces
//!   ([`EtcdCluster`]), or with `--cluster cluster.toml` on the hosts its `[remote]` section
//!   reaches; stopped afterwards.
//!
//! Each is a [`Db`]: the nemesis drives it through that trait, and so does the run (the leader
//! before the workload, the tear-down after it). The run's clients reach it through
//! [`Access`]: raftlab's cluster file, or etcd's client URLs and certificates.

use crate::db::etcd::{EtcdCluster, EtcdOptions};
use crate::db::local::{ClusterOptions, LocalCluster};
use crate::db::netns::NetnsCluster;
use crate::db::remote::RemoteCluster;
use crate::db::{Db, DbError, DbNode, DiskCommand, Exit, LeaderFuture, Needs, ProbeFuture};
use crate::net::{NetError, Network};
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::path::{Path, PathBuf};
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

/// How the run's clients reach the system under test.
#[derive(Clone, Debug)]
pub enum Access {
    /// raftlab nodes, through their `cluster.toml`.
    Raftlab(Box<ClusterConfig>),
    /// etcd members: `(id, client URL)`, and the directory of the CA and client certificate.
    Etcd {
        members: Vec<(NodeId, String)>,
        certs: PathBuf,
    },
}

impl Access {
    /// The directory of the CA and the client certificate.
    pub fn certs_dir(&self) -> &Path {
        match self {
            Access::Raftlab(config) => &config.tls.certs_dir,
            Access::Etcd { certs, .. } => certs,
        }
    }
}

/// A run's cluster: the system under test, and how its clients reach it.
pub struct RunCluster {
    db: Box<dyn Db>,
    access: Access,
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

    /// Starts a fresh etcd cluster in `dir`.
    pub fn create_etcd(dir: &Path, opts: &EtcdOptions) -> anyhow::Result<RunCluster> {
        Ok(RunCluster::etcd(EtcdCluster::create(dir, opts)?))
    }

    /// Starts a fresh etcd cluster on the hosts of `file` (with `[remote]`); its certificates
    /// and, at the end, its members' logs in `dir`.
    pub fn create_etcd_remote(dir: &Path, file: &Path) -> anyhow::Result<RunCluster> {
        let config = ClusterConfig::load(file)?;
        Ok(RunCluster::etcd(EtcdCluster::create_remote(dir, config)?))
    }

    fn etcd(etcd: EtcdCluster) -> RunCluster {
        let members = etcd
            .ids()
            .into_iter()
            .filter_map(|id| Some((id, format!("https://{}", etcd.client_addr(id)?))))
            .collect();
        let access = Access::Etcd {
            members,
            certs: etcd.certs_dir(),
        };
        RunCluster {
            db: Box::new(etcd),
            access,
        }
    }

    fn new(config: ClusterConfig, db: impl Db + 'static) -> RunCluster {
        RunCluster {
            db: Box::new(db),
            access: Access::Raftlab(Box::new(config)),
        }
    }

    pub fn access(&self) -> &Access {
        &self.access
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
    fn leader_probe(&self, timeout: Duration) -> Option<ProbeFuture> {
        self.db.leader_probe(timeout)
    }
    fn remove_member(
        &mut self,
        client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        self.db.remove_member(client, id)
    }
    fn add_member_back(
        &mut self,
        client: Option<&ClientConnector>,
        id: NodeId,
    ) -> Result<(), DbError> {
        self.db.add_member_back(client, id)
    }
    fn transfer_leadership(
        &mut self,
        client: Option<&ClientConnector>,
        planned: NodeId,
        down: &[NodeId],
    ) -> Result<(NodeId, NodeId), DbError> {
        self.db.transfer_leadership(client, planned, down)
    }
    fn disk(&mut self, id: NodeId, command: DiskCommand) -> Result<String, DbError> {
        self.db.disk(id, command)
    }
    fn data_dir(&self, id: NodeId) -> Option<PathBuf> {
        self.db.data_dir(id)
    }
    fn wait_exit(&mut self, id: NodeId, patience: Duration) -> Result<Option<Exit>, DbError> {
        self.db.wait_exit(id, patience)
    }
    fn data_dirs(&self) -> Vec<PathBuf> {
        self.db.data_dirs()
    }
    fn drop_data(&mut self) {
        self.db.drop_data()
    }
    fn teardown(&mut self, owned: bool, logs_dir: &Path) -> Result<(), DbError> {
        self.db.teardown(owned, logs_dir)
    }
}
