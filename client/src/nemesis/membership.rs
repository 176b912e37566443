//! The `membership` and `transfer` nemeses.
//!
//! `membership` (after Jepsen's etcd member nemesis) removes a voter from the cluster and
//! adds it back when the fault ends, through the cluster ([`Db::remove_member`],
//! [`Db::add_member_back`]): on raftlab through its operator requests, the node running on
//! with its data and coming back under its own id as a learner, caught up, then promoted; on
//! etcd through its member API, the member stopped and its data wiped, and added back as a
//! learner under a new member id, started afresh, then promoted. While it is out, its former peers
//! refuse it and the cluster runs one voter short, so the schedule counts it as a node down:
//! at most a minority of the original voters is ever out, and a five-node cluster shrinks
//! to three voters and grows back. `membership` runs alone among the network faults: the
//! runner waits for the returning member to catch up, which needs the links. `transfer` asks
//! the leader to hand leadership to another voter ([`Db::transfer_leadership`]: raftlab's
//! operator request, etcd's MoveLeader).
//!
//! Recorded as `remove-member`, `add-member` (`{"node": N}`) and `transfer`
//! (`{"from": N, "to": M}`, or `{"to": M}` when it failed before the leader was known), with
//! `"error"` when the change failed.

use super::record;
use crate::db::{Db, DbError};
use crate::history::Recorder;
use model::core::NodeId;
use node::transport::ClientConnector;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// A change of one member's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Out of the membership ([`Db::remove_member`]), recorded as `remove-member`.
    Remove,
    /// Back in as a voter ([`Db::add_member_back`]), recorded as `add-member`.
    AddBack,
}

/// Makes `change` to `node` through the cluster (`client` for raftlab's operator requests)
/// and records it.
pub async fn change(
    control: &Arc<Mutex<dyn Db>>,
    client: Option<Arc<ClientConnector>>,
    recorder: &Recorder,
    node: NodeId,
    change: Change,
) -> Result<(), String> {
    let result = blocking(control, client, move |db, client| match change {
        Change::Remove => db.remove_member(client, node),
        Change::AddBack => db.add_member_back(client, node),
    })
    .await;
    let event = match change {
        Change::Remove => "remove-member",
        Change::AddBack => "add-member",
    };
    record(recorder, event, json!({ "node": node }), &result);
    result
}

/// Runs a change on a blocking thread (it waits on the cluster, and may stop and start a
/// member), holding the cluster meanwhile.
async fn blocking<T: Send + 'static>(
    control: &Arc<Mutex<dyn Db>>,
    client: Option<Arc<ClientConnector>>,
    f: impl FnOnce(&mut dyn Db, Option<&ClientConnector>) -> Result<T, DbError> + Send + 'static,
) -> Result<T, String> {
    let control = control.clone();
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means a panic elsewhere; the cluster is still there to change.
        let mut db = control.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut *db, client.as_deref())
    })
    .await
    .map_err(|e| format!("the membership change failed: {e}"))?
    .map_err(|e| e.to_string())
}

/// Asks the cluster's leader to hand leadership to `planned`, or to another voter that is not
/// `down` ([`Db::transfer_leadership`]), and records it; returns `(from, to)`. Does not wait
/// for the election: the schedule goes on meanwhile.
pub async fn transfer(
    control: &Arc<Mutex<dyn Db>>,
    client: Option<Arc<ClientConnector>>,
    recorder: &Recorder,
    planned: NodeId,
    down: Vec<NodeId>,
) -> Result<(NodeId, NodeId), String> {
    let result = blocking(control, client, move |db, client| {
        db.transfer_leadership(client, planned, &down)
    })
    .await;
    let value = match &result {
        Ok((from, to)) => json!({ "from": from, "to": to }),
        Err(_) => json!({ "to": planned }),
    };
    record(recorder, "transfer", value, &result.as_ref().map(drop));
    result
}
