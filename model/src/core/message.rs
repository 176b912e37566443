//! Messages between Raft servers.

use serde::{Deserialize, Serialize};

use super::types::{Entry, Index, NodeId, Snapshot, Term};

/// A message from one server to another. Every message carries the sender's term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message<C> {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body<C>,
}

/// Why a campaign started: a pre-vote must not disturb anyone; a transfer may depose a
/// leader that still has a lease, because that leader asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Campaign {
    PreVote,
    Election,
    Transfer,
}

/// The payload of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Body<C> {
    /// RequestVote, or its pre-vote probe (sent with the term the candidate *would* use).
    Vote {
        campaign: Campaign,
        last_index: Index,
        last_term: Term,
    },
    VoteResponse {
        campaign: Campaign,
        granted: bool,
    },
    /// AppendEntries; with no entries it is a heartbeat. `read_round` lets the leader confirm
    /// it is still leader for ReadIndex reads.
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry<C>>,
        commit: Index,
        read_round: u64,
    },
    AppendResponse {
        /// On success: the last index now known to match the leader's log.
        /// On rejection: where the leader should try next (fast backtracking hint).
        index: Index,
        /// On rejection: the term of the follower's conflicting entry, if it has one at
        /// `prev_index`; the leader skips that whole term.
        conflict_term: Option<Term>,
        success: bool,
        read_round: u64,
        /// What this answers: the `prev_index` of the AppendEntries (the snapshot's index
        /// for an InstallSnapshot), so that the leader can tell a rejection of its current
        /// probe from a late or duplicated one.
        prev_index: Index,
    },
    InstallSnapshot {
        snapshot: Snapshot,
        read_round: u64,
    },
    /// Leadership transfer: "start an election now, you are up to date".
    TimeoutNow,
}

impl<C> Body<C> {
    /// A short name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Vote {
                campaign: Campaign::PreVote,
                ..
            } => "PreVote",
            Body::Vote { .. } => "RequestVote",
            Body::VoteResponse {
                campaign: Campaign::PreVote,
                ..
            } => "PreVoteResponse",
            Body::VoteResponse { .. } => "RequestVoteResponse",
            Body::Append { entries, .. } if entries.is_empty() => "Heartbeat",
            Body::Append { .. } => "AppendEntries",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::InstallSnapshot { .. } => "InstallSnapshot",
            Body::TimeoutNow => "TimeoutNow",
        }
    }
}
