//! The Raft settings a node runs with unless its `cluster.toml` says otherwise: the one
//! source of these defaults for `raft-node` (its `[raft]` and `[timing]` sections) and for
//! `raft-model check` (which proves the configuration the nodes run), so the two cannot drift.

use serde::{Deserialize, Serialize};

/// A base election timeout of this many ticks (each timeout is drawn from
/// `(election, 2 * election]`).
pub const ELECTION_TICKS: u32 = 10;
/// A leader heartbeat every this many ticks.
pub const HEARTBEAT_TICKS: u32 = 2;

/// The protocol switches and replication pacing of the core (the `[raft]` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Probe with a pre-vote before disturbing the cluster with a new term (thesis 9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and
    /// followers that hear from a leader ignore vote requests (thesis 6.2, 4.2.3).
    pub check_quorum: bool,
    /// Most entries in one AppendEntries.
    pub max_batch: usize,
    /// Most AppendEntries in flight to one follower.
    pub max_inflight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pre_vote: true,
            check_quorum: true,
            max_batch: 256,
            max_inflight: 16,
        }
    }
}

impl Settings {
    /// The settings in words, e.g. for `raft-model check`'s header.
    pub fn describe(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "pre-vote {}, check-quorum {}, at most {} entries per AppendEntries, at most {} AppendEntries in flight per follower",
            on(self.pre_vote),
            on(self.check_quorum),
            self.max_batch,
            self.max_inflight
        )
    }
}
