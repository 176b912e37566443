//! The vocabulary of the core: ids, terms, indexes, log entries, hard state, membership.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A server's id, as in `cluster.toml`.
pub type NodeId = u64;
/// An election term.
pub type Term = u64;
/// A log position; the first entry is at index 1, index 0 is "before the log".
pub type Index = u64;

/// The cluster's membership: voters decide elections and commitment; learners only receive
/// the log (a new server catches up as a learner before it is promoted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// The addresses of members that joined through the log (`host:port`, opaque to the
    /// core): the servers learn a new member's address from the entry that adds it. The
    /// members a cluster starts with have theirs in the servers' configuration.
    pub addresses: BTreeMap<NodeId, String>,
}

impl Membership {
    /// A membership of these voters and no learners.
    pub fn of_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            addresses: BTreeMap::new(),
        }
    }

    /// Every member, voters then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Whether `votes` (the ids that agree) are a majority of the voters.
    pub fn is_quorum<'a>(&self, agreeing: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let count = agreeing
            .into_iter()
            .filter(|id| self.voters.contains(id))
            .count();
        count > self.voters.len() / 2
    }

    /// Applies a single-server change, or explains why it is not one.
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, &'static str> {
        let mut next = self.clone();
        match *change {
            MembershipChange::AddLearner { id, ref addr } => {
                if self.voters.contains(&id) || !next.learners.insert(id) {
                    return Err("already a member");
                }
                if !addr.is_empty() {
                    next.addresses.insert(id, addr.clone());
                }
            }
            MembershipChange::PromoteLearner(id) => {
                if !next.learners.remove(&id) {
                    return Err("not a learner");
                }
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                let was_voter = next.voters.remove(&id);
                if !was_voter && !next.learners.remove(&id) {
                    return Err("not a member");
                }
                if next.voters.is_empty() {
                    return Err("would remove the last voter");
                }
                next.addresses.remove(&id);
            }
        }
        Ok(next)
    }
}

/// A single-server membership change (Ongaro's thesis, section 4.1): at most one voter is
/// added or removed at a time, so any two majorities of the old and new configurations
/// overlap and no joint consensus is needed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A new server joins as a learner; `addr` is where its peers reach it (empty: from
    /// their configuration).
    AddLearner {
        id: NodeId,
        addr: String,
    },
    PromoteLearner(NodeId),
    Remove(NodeId),
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind<C> {
    /// The entry a new leader appends at the start of its term, so that it can commit
    /// (and so learn the commit index of) entries from earlier terms.
    Noop,
    /// An application command.
    Command(C),
    /// A membership change: takes effect as soon as it is in the log, committed or not.
    Membership(MembershipChange),
}

/// A log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry<C> {
    pub term: Term,
    pub index: Index,
    pub kind: EntryKind<C>,
}

/// The state that must be durable before any message that depends on it leaves the server.
///
/// The commit index is deliberately not here: it is relearned from the leader after a
/// restart, and leaving it out keeps the hard state from changing on every commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// Describes a snapshot: the state after applying every entry up to `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub membership: Membership,
}

/// A state-machine snapshot, with the state machine's own bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: std::sync::Arc<Vec<u8>>,
}
