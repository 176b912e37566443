//! The `transfer` nemesis on etcd: its leader asked to hand leadership to a chosen member with
//! etcd's MoveLeader (`POST /v3/maintenance/transfer-leadership`), as `etcdctl move-leader`
//! does. The leader is the member whose status says it leads; the voters are the members that
//! etcd lists as not learners, told apart by their peer URLs.

use super::{likely_leader, EtcdCluster, EtcdError, MemberStatus};
use crate::db::{transferee, DbError, MEMBERSHIP_STEP};
use model::core::NodeId;
use std::collections::BTreeMap;

impl EtcdCluster {
    /// Asks the leader to hand its leadership to `planned`, or to the first other voter not
    /// in `down` ([`transferee`]); returns `(from, to)` in the lab's ids. etcd answers once
    /// the new leader has taken over (or its request timeout has passed).
    pub fn transfer_leadership(
        &mut self,
        planned: NodeId,
        down: &[NodeId],
    ) -> Result<(NodeId, NodeId), DbError> {
        let answers: Vec<(NodeId, Result<MemberStatus, String>)> = self
            .client_addrs()
            .into_iter()
            .map(|(id, addr)| (id, self.status.status(addr, MEMBERSHIP_STEP)))
            .collect();
        let Some(from) = likely_leader(&answers) else {
            return Err(DbError::cluster("transfer leadership")(
                "no member answers that it leads",
            ));
        };
        let leader_addr = self
            .client_addr(from)
            .ok_or(EtcdError::UnknownMember(from))
            .map_err(DbError::cluster("transfer leadership"))?;
        let members = self
            .status
            .member_list(leader_addr, MEMBERSHIP_STEP)
            .map_err(DbError::of("transfer leadership", from))?;
        let by_peer_url = self.ids_by_peer_url();
        let voters: BTreeMap<NodeId, u64> = members
            .iter()
            .filter(|m| !m.learner)
            .filter_map(|m| Some((*by_peer_url.get(m.peer_urls.first()?)?, m.id)))
            .collect();
        let ids: Vec<NodeId> = voters.keys().copied().collect();
        let to = transferee(from, &ids, planned, down)?;
        let target = voters[&to];
        self.status
            .move_leader(leader_addr, target, MEMBERSHIP_STEP)
            .map_err(DbError::of("transfer leadership", from))?;
        Ok((from, to))
    }
}
