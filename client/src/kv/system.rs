//! A client of the system under test, whichever it is: raftlab's own client library
//! ([`KvCluster`], [`KvClient`]) or etcd's ([`EtcdKv`], [`EtcdKvClient`]). The run's workers
//! drive every system through this one pair of types.

use super::etcd::{EtcdKv, EtcdKvClient};
use super::{KvClient, KvCluster, OpResult};
use model::core::NodeId;
use model::kv::Operation;
use std::time::Duration;

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
