//! The systems under test as the bench starts and drives them: a fresh cluster of each,
//! started through its [`Db`](crate::db::Db) implementation's constructor, and the clients
//! of every cell.
//!
//! - **raftlab**: [`LocalCluster`] (release `raft-node` processes, `storage.fsync = true`,
//!   QUIC + mutual TLS) and the lab's [`KvCluster`] over shared [`ClientConnector`]s: one
//!   per 32 clients (each one QUIC connection per node carrying its clients' streams; a
//!   node admits 64 concurrent requests per connection by default, `max_client_streams`,
//!   so one connection would cap a cell at 64 requests in flight). Before each cell the leader
//!   is looked up, and each [`KvClient`](crate::kv::KvClient) sends to the last known leader
//!   first: leader-direct, with a session per client, exactly what the node crate's load
//!   bench did, through the lab's own client (its per-operation overhead, a policy step
//!   under two uncontended locks, is noise beside a QUIC round trip and an fsync). Its
//!   failover timing is the one thing set apart: an attempt waits for the leader's answer
//!   as long as the operation may take ([`BENCH_TIMING`]), rather than moving on to another
//!   node after 0.3 s as the lab's clients do to ride out faults, so that a slow moment of
//!   a healthy leader costs latency, not a detour.
//! - **etcd**: [`EtcdCluster`] (members from the `etcd` binary, mutual TLS from the lab's
//!   certificates; etcd always fsyncs) and the lab's [`EtcdKv`] clients, sent to the leader
//!   only (`benchmark --target-leader`) over shared gRPC connections: one per 10 clients,
//!   rounded up, the ratio of the runs etcd documents for its own `benchmark` tool
//!   (`--conns=100 --clients=1000`).

use super::{BenchError, SystemKind};
use crate::db::etcd::{EtcdCluster, EtcdOptions, StatusClient};
use crate::db::local::{ClusterOptions, LocalCluster};
use crate::kv::etcd::EtcdKv;
use crate::kv::policy::Timing;
use crate::kv::system::{Clients, SystemClient};
use crate::kv::KvCluster;
use model::core::NodeId;
use node::transport::ClientConnector;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the cluster may take to agree on a leader.
const LEADER_PATIENCE: Duration = Duration::from_secs(30);
/// How long one operation may take before it counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// etcd clients per shared gRPC connection.
const ETCD_CLIENTS_PER_CONNECTION: usize = 10;
/// raftlab clients per shared connector: half a node's default `max_client_streams`.
const RAFTLAB_CLIENTS_PER_CONNECTION: usize = 32;
/// How raftlab clients wait on a node: the whole operation's time for an answer.
const BENCH_TIMING: Timing = Timing {
    connect_timeout: Duration::from_secs(2),
    attempt_timeout: OP_TIMEOUT,
    node_backoff: Duration::from_secs(1),
};

/// What a system is started from.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub raft_node: PathBuf,
    pub etcd: PathBuf,
    /// What `etcd --version` said when the bench checked it (named in `bench.md`).
    pub etcd_version: Option<String>,
}

/// One running system under test.
pub enum System {
    Raftlab {
        db: Box<LocalCluster>,
        kv: KvCluster,
    },
    Etcd {
        db: Box<EtcdCluster>,
        kv: EtcdKv,
        status: StatusClient,
    },
}

impl System {
    /// Starts a fresh `nodes`-node cluster of `kind` in `dir`; must run inside tokio.
    pub fn start(
        kind: SystemKind,
        dir: &Path,
        nodes: usize,
        binaries: &Binaries,
    ) -> Result<System, BenchError> {
        let failed = |e: &dyn std::fmt::Display| BenchError::Start {
            system: kind,
            reason: e.to_string(),
        };
        match kind {
            SystemKind::Raftlab => {
                let opts = ClusterOptions {
                    nodes,
                    raft_node: binaries.raft_node.clone(),
                    ..ClusterOptions::default()
                };
                let db = LocalCluster::create(dir, &opts).map_err(|e| failed(&e))?;
                if !db.config().storage.fsync {
                    return Err(failed(&"the cluster's storage.fsync is off"));
                }
                let connector =
                    ClientConnector::new(&db.config().tls.certs_dir).map_err(|e| failed(&e))?;
                let kv = KvCluster::with_connector(Arc::new(connector), db.config())
                    .with_timing(BENCH_TIMING);
                Ok(System::Raftlab {
                    db: Box::new(db),
                    kv,
                })
            }
            SystemKind::Etcd => {
                let db = EtcdCluster::create(dir, &EtcdOptions::new(nodes, binaries.etcd.clone()))
                    .map_err(|e| failed(&e))?;
                let members = db
                    .ids()
                    .into_iter()
                    .filter_map(|id| Some((id, format!("https://{}", db.client_addr(id)?))))
                    .collect();
                let kv = EtcdKv::new(members, &db.certs_dir()).map_err(|e| failed(&e))?;
                let status = StatusClient::new(&db.certs_dir()).map_err(|e| failed(&e))?;
                Ok(System::Etcd {
                    db: Box::new(db),
                    kv,
                    status,
                })
            }
        }
    }

    pub fn kind(&self) -> SystemKind {
        match self {
            System::Raftlab { .. } => SystemKind::Raftlab,
            System::Etcd { .. } => SystemKind::Etcd,
        }
    }

    /// The pids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            System::Raftlab { db, .. } => db.ids().iter().filter_map(|&id| db.pid(id)).collect(),
            System::Etcd { db, .. } => db.ids().iter().filter_map(|&id| db.pid(id)).collect(),
        }
    }

    /// Waits until the cluster agrees on a leader; the leader and its term.
    pub async fn leader(&self) -> Result<(NodeId, Option<u64>), BenchError> {
        let failed = |e: &dyn std::fmt::Display| BenchError::NoLeader {
            system: self.kind(),
            reason: e.to_string(),
        };
        let leader = match self {
            // Also makes the clients send to this leader first.
            System::Raftlab { kv, .. } => kv
                .wait_for_leader(LEADER_PATIENCE)
                .await
                .map_err(|e| failed(&e))?,
            System::Etcd { db, .. } => db.leader(LEADER_PATIENCE).await.map_err(|e| failed(&e))?,
        };
        Ok((leader, self.term(leader).await))
    }

    /// Node `node`'s current term (`None`: it did not answer).
    pub async fn term(&self, node: NodeId) -> Option<u64> {
        match self {
            System::Raftlab { kv, .. } => kv.status(node).await.ok().map(|s| s.term),
            System::Etcd { db, status, .. } => {
                let addr = db.client_addr(node)?;
                let status = status.clone();
                tokio::task::spawn_blocking(move || status.status(addr, STATUS_TIMEOUT))
                    .await
                    .ok()?
                    .ok()
                    .map(|s| s.term)
            }
        }
    }

    /// `n` fresh clients, sending to `leader` first (see the module).
    pub async fn clients(&self, leader: NodeId, n: usize) -> Result<Vec<SystemClient>, BenchError> {
        match self {
            System::Raftlab { db, kv } => {
                let mut clusters = vec![kv.clone()];
                while clusters.len() < n.div_ceil(RAFTLAB_CLIENTS_PER_CONNECTION) {
                    let connector =
                        ClientConnector::new(&db.config().tls.certs_dir).map_err(|e| {
                            BenchError::Cell {
                                system: SystemKind::Raftlab,
                                op: None,
                                reason: e.to_string(),
                            }
                        })?;
                    clusters.push(kv.over(Arc::new(connector)));
                }
                Ok((0..n)
                    .map(|i| {
                        Clients::Raftlab(clusters[i % clusters.len()].clone())
                            .client_at(None, OP_TIMEOUT)
                    })
                    .collect())
            }
            System::Etcd { kv, .. } => {
                let mut connections = Vec::new();
                for _ in 0..n.div_ceil(ETCD_CLIENTS_PER_CONNECTION) {
                    let connection = kv.connect(Some(leader), OP_TIMEOUT).await.map_err(|e| {
                        BenchError::Cell {
                            system: SystemKind::Etcd,
                            op: None,
                            reason: e.to_string(),
                        }
                    })?;
                    connections.push(connection);
                }
                Ok((0..n)
                    .map(|i| {
                        let connection = connections[i % connections.len()].clone();
                        SystemClient::Etcd(Box::new(kv.client_on(connection, OP_TIMEOUT)))
                    })
                    .collect())
            }
        }
    }

    /// Stops the nodes (dropping the cluster stops them too).
    pub fn stop(self) -> Result<(), BenchError> {
        let kind = self.kind();
        let stopped = match self {
            System::Raftlab { mut db, .. } => db.stop_all().map_err(|e| e.to_string()),
            System::Etcd { mut db, .. } => db.stop_all().map_err(|e| e.to_string()),
        };
        stopped.map_err(|reason| BenchError::Stop {
            system: kind,
            reason,
        })
    }
}
