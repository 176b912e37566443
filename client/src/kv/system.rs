//! A client of the system under test, whichever it is: raftlab's own client library
//! ([`KvCluster`], [`KvClient`]) or etcd's ([`EtcdKv`], [`EtcdKvClient`]). The run's workers
//! drive every system through this one pair of types.

use super::etcd::{EtcdKv, EtcdKvClient};
use super::{KvClient, KvCluster, OpResult};
use model::core::NodeId;
use model::kv::Operation;
use serde::Deserialize;
use std::time::Duration;

/// How reads are served (`read_consistency` in workload files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Every read reflects every write completed before it (etcd's default `Range`; the only
    /// reads raftlab serves).
    #[default]
    Linearizable,
    /// Served from the contacted member's local state, without asking the leader (etcd's
    /// `serializable` `Range`): a member behind the others, or cut off from them, answers
    /// with what it has.
    Serializable,
}

impl ReadConsistency {
    /// The name in workload files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Serializable => "serializable",
        }
    }
}

/// The clients' view of the system under test.
#[derive(Clone)]
pub enum Clients {
    Raftlab(KvCluster),
    Etcd(EtcdKv),
}

/// One sequential client of the system under test.
pub enum SystemClient {
    Raftlab(Box<KvClient>),
    Etcd(Box<EtcdKvClient>),
}

impl Clients {
    /// The nodes' ids, in configuration order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        match self {
            Clients::Raftlab(cluster) => cluster.nodes().iter().map(|n| n.id).collect(),
            Clients::Etcd(cluster) => cluster.node_ids(),
        }
    }

    /// A new client, bound to node `home` if given.
    pub fn client_at(&self, home: Option<NodeId>, op_timeout: Duration) -> SystemClient {
        match self {
            Clients::Raftlab(cluster) => {
                SystemClient::Raftlab(Box::new(cluster.client_at(home, op_timeout)))
            }
            Clients::Etcd(cluster) => {
                SystemClient::Etcd(Box::new(cluster.client_at(home, op_timeout)))
            }
        }
    }
}

impl SystemClient {
    /// Runs one operation to its classified end.
    pub async fn execute(&mut self, op: Operation) -> OpResult {
        match self {
            SystemClient::Raftlab(client) => client.execute(op).await,
            SystemClient::Etcd(client) => client.execute(op).await,
        }
    }
}
