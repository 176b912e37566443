//! Liveness and replication-efficiency properties, checked by the runner alongside the
//! safety invariants and reported the same way (as values, never panics).
//!
//! * **Liveness**: once the faults are over (every partition healed, every server
//!   restarted, no crash pending), a leader is elected within [`LEADER_BOUND`] simulated
//!   milliseconds, and every request a server took in (proposed, or a ReadIndex read) is
//!   answered within [`REQUEST_BOUND`] of the heal or of its arrival, whichever is later.
//!   (The network still loses, duplicates and delays messages: the bounds leave room for
//!   many retries and a few election rounds.) A request the server forgets without an
//!   answer (a proposal covered by an installed snapshot: its fate is unknown there, and
//!   the client's retry settles it) no longer counts as waiting.
//! * **Needless Snapshot**: a leader sends InstallSnapshot to a follower that already holds
//!   the snapshot's last entry (index and term, hence everything before it), although that
//!   follower has not rejected an append of the leader's term within [`REJECTION_WINDOW`].
//!   The exception keeps the property about the leader's decision: a follower that rejected
//!   the leader's probe may still receive the entries from a delayed or reordered append
//!   before the leader's snapshot is sent.
//! * **Read Pacing**: a ReadIndex request on a leader sends no entries and no snapshot and
//!   leaves every follower's replication progress as it was (a read only asks the
//!   followers to confirm the leader with a heartbeat).

use crate::core::progress::ReplicationState;
use crate::core::{Body, Index, Message, NodeId, Raft, Role, Term};
use crate::kv::Command;
use std::collections::BTreeMap;

pub const LIVENESS: &str = "Liveness";
pub const NEEDLESS_SNAPSHOT: &str = "Needless Snapshot";
pub const READ_PACING: &str = "Read Pacing";

/// A snapshot sent this many simulated milliseconds (a maximal election timeout) after the
/// follower rejected an append of the leader's term is not counted as needless: messages
/// reordered around that rejection may have brought the entries meanwhile.
pub const REJECTION_WINDOW: u64 = 200;
/// Simulated milliseconds after the heal by which a leader must exist.
pub const LEADER_BOUND: u64 = 2000;
/// Simulated milliseconds after the heal (or its arrival) by which a request is answered.
pub const REQUEST_BOUND: u64 = 2500;

/// A violated property and what shows it (as in [`super::invariants`]).
pub type Breach = (&'static str, String);

/// The run-wide record the liveness properties are checked against.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// When the faults ended.
    healed_at: Option<u64>,
    /// A leader was seen since the heal.
    leader_since_heal: bool,
    /// Request id -> (server index, when the server took it in).
    waiting: BTreeMap<u64, (usize, u64)>,
    /// (leader, follower) -> the term and time of the last rejection the leader got.
    last_rejection: BTreeMap<(NodeId, NodeId), (Term, u64)>,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness::default()
    }

    pub fn healed(&mut self, now: u64) {
        self.healed_at = Some(now);
    }

    /// A server took in a request that it will answer later.
    pub fn took(&mut self, id: u64, node: usize, now: u64) {
        self.waiting.insert(id, (node, now));
    }

    pub fn answered(&mut self, id: u64) {
        self.waiting.remove(&id);
    }

    /// A server crashed: what it was asked is lost with it (clients time out).
    pub fn crashed(&mut self, node: usize) {
        self.waiting.retain(|_, (n, _)| *n != node);
    }

    /// A message is about to be delivered (before the recipient steps it).
    pub fn delivering(&mut self, msg: &Message<Command>, now: u64) {
        if let Body::AppendResponse { success: false, .. } = msg.body {
            self.last_rejection
                .insert((msg.to, msg.from), (msg.term, now));
        }
    }

    /// Checks time-bounded progress. `leader`: whether some running server leads;
    /// `still_waiting(node, id)`: whether that server still holds the request.
    pub fn check_progress(
        &mut self,
        now: u64,
        leader: bool,
        still_waiting: impl Fn(usize, u64) -> bool,
    ) -> Result<(), Breach> {
        let Some(healed) = self.healed_at else {
            return Ok(());
        };
        self.leader_since_heal |= leader;
        if !self.leader_since_heal && now > healed + LEADER_BOUND {
            return Err((
                LIVENESS,
                format!("no leader {LEADER_BOUND}ms after every fault was healed (at {healed}ms)"),
            ));
        }
        self.waiting
            .retain(|&id, &mut (node, _)| still_waiting(node, id));
        let late = self
            .waiting
            .iter()
            .find(|(_, &(_, since))| now > since.max(healed) + REQUEST_BOUND);
        if let Some((id, (node, since))) = late {
            return Err((
                LIVENESS,
                format!(
                    "request {id} taken in by server {} at {since}ms is still unanswered at \
                     {now}ms (faults healed at {healed}ms)",
                    node + 1
                ),
            ));
        }
        Ok(())
    }

    /// A leader sends a message; `follower` is the recipient's core, if it is running.
    pub fn sending(
        &self,
        msg: &Message<Command>,
        follower: Option<&Raft<Command>>,
        now: u64,
    ) -> Result<(), Breach> {
        let Body::InstallSnapshot { snapshot, .. } = &msg.body else {
            return Ok(());
        };
        let Some(follower) = follower else {
            return Ok(());
        };
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        let log = follower.log();
        let holds = log.snapshot().meta.index > index || log.term(index) == Some(term);
        let rejected = self
            .last_rejection
            .get(&(msg.from, msg.to))
            .is_some_and(|&(t, at)| t == msg.term && now <= at + REJECTION_WINDOW);
        if holds && !rejected {
            return Err((
                NEEDLESS_SNAPSHOT,
                format!(
                    "leader {} (term {}) sent server {} a snapshot up to ({index},{term}), \
                     which it already holds (its last index {}), without having been told it \
                     lacks anything",
                    msg.from,
                    msg.term,
                    msg.to,
                    log.last_index()
                ),
            ));
        }
        Ok(())
    }
}

/// A follower's replication pacing: match point, next index, state, what is in flight,
/// and the probe and snapshot timers (not the bookkeeping of read rounds and commit
/// indexes sent, which a read's heartbeat legitimately updates).
type Pacing = (
    Index,
    Index,
    ReplicationState,
    Vec<Index>,
    bool,
    u32,
    Option<Index>,
);

fn pacing(raft: &Raft<Command>, id: NodeId) -> Option<Pacing> {
    raft.progress(id).map(|pr| {
        (
            pr.matched,
            pr.next,
            pr.state,
            pr.inflight.iter().copied().collect(),
            pr.probe_sent,
            pr.snapshot_wait,
            pr.boundary_probe,
        )
    })
}

/// What a read must leave alone on a leader: each follower's pacing, and how many
/// messages were queued.
pub struct ReadProbe {
    progress: Vec<(NodeId, Option<Pacing>)>,
    queued: usize,
}

impl ReadProbe {
    /// Looks at the leader before a read (`None` if `raft` does not lead).
    pub fn before(raft: &Raft<Command>) -> Option<ReadProbe> {
        if raft.role() != Role::Leader {
            return None;
        }
        let peers: Vec<NodeId> = raft
            .membership()
            .members()
            .filter(|&id| id != raft.id())
            .collect();
        Some(ReadProbe {
            progress: peers.into_iter().map(|id| (id, pacing(raft, id))).collect(),
            queued: raft.outbox().len(),
        })
    }

    /// Compares after the read.
    pub fn after(self, raft: &Raft<Command>) -> Result<(), Breach> {
        for msg in raft.outbox().iter().skip(self.queued) {
            let resent = match &msg.body {
                Body::Append { entries, .. } if !entries.is_empty() => {
                    Some(entries.last().map_or(0, |e| e.index))
                }
                Body::InstallSnapshot { snapshot, .. } => Some(snapshot.meta.index),
                _ => None,
            };
            if let Some(last) = resent {
                return Err((
                    READ_PACING,
                    format!(
                        "a read on leader {} sent server {} {} up to index {last}",
                        raft.id(),
                        msg.to,
                        msg.body.name()
                    ),
                ));
            }
        }
        for (id, before) in self.progress {
            let after = pacing(raft, id);
            if after != before {
                return Err((
                    READ_PACING,
                    format!(
                        "a read on leader {} changed its pacing for server {id} (match, next, \
                         state, in flight, probe sent, snapshot wait, boundary probe): \
                         {before:?} -> {after:?}",
                        raft.id()
                    ),
                ));
            }
        }
        Ok(())
    }
}
