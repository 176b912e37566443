//! The `membership` and `transfer` nemeses, through the cluster's operator requests
//! ([`Admin`]).
//!
//! `membership` (after Jepsen's etcd member nemesis) removes a voter from the cluster while
//! it keeps running, and adds it back when the fault ends: as a learner, caught up, then
//! promoted. The node keeps its data, so it comes back under its own id (a node that lost its
//! data must take a new one, `raft-lab cluster add`). While it is out, its former peers
//! refuse it and the cluster runs one voter short, so the schedule counts it as a node down:
//! at most a minority of the original voters is ever out, and a five-node cluster shrinks
//! to three voters and grows back. `membership` runs alone among the network faults: the
//! runner waits for the returning member to catch up, which needs the links. `transfer` asks
//! the leader to hand leadership to another voter.
//!
//! Recorded as `remove-member`, `add-member` (`{"node": N}`) and `transfer`
//! (`{"from": N, "to": M}`), with `"error"` when the change failed.

use super::record;
use crate::history::Recorder;
use crate::kv::admin::Admin;
use model::core::NodeId;
use serde_json::json;
use tracing::info;

/// Removes `node` from the membership (leadership moves first if it leads).
pub async fn remove(admin: &Admin<'_>, recorder: &Recorder, node: NodeId) -> Result<(), String> {
    let result = admin
        .remove_member(node, |step| info!("nemesis: {step}"))
        .await;
    record(recorder, "remove-member", json!({ "node": node }), &result);
    result.map_err(|e| e.to_string())
}

/// Adds `node` (listening at `addr`) back as a voter.
pub async fn add_back(
    admin: &Admin<'_>,
    recorder: &Recorder,
    node: NodeId,
    addr: &str,
) -> Result<(), String> {
    let result = admin
        .add_member(node, addr, |step| info!("nemesis: {step}"))
        .await;
    record(recorder, "add-member", json!({ "node": node }), &result);
    result.map_err(|e| e.to_string())
}

/// Asks the leader to hand leadership to `planned` if it is a voter that does not lead and
/// is not `down`, else to the first voter that is neither; returns `(from, to)`. Does not
/// wait for the election: the schedule goes on meanwhile.
pub async fn transfer(
    admin: &Admin<'_>,
    recorder: &Recorder,
    planned: NodeId,
    down: impl Fn(NodeId) -> bool,
) -> Result<(NodeId, NodeId), String> {
    let members = admin.members().await.map_err(|e| e.to_string())?;
    let from = members.leader;
    let eligible = |id: NodeId| id != from && !down(id);
    let voters = members.members.iter().filter(|m| m.voter).map(|m| m.id);
    let to = std::iter::once(planned)
        .filter(|&id| members.members.iter().any(|m| m.id == id && m.voter))
        .chain(voters)
        .find(|&id| eligible(id))
        .ok_or_else(|| format!("no voter but node {from} (the leader) is up"))?;
    let result = admin.request_transfer(to).await.map(|_| ());
    record(
        recorder,
        "transfer",
        json!({ "from": from, "to": to }),
        &result,
    );
    result.map(|()| (from, to)).map_err(|e| e.to_string())
}
