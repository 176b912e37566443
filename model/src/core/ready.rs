//! The batch of work the core hands back, and the persistence contract that orders it.

use super::message::Message;
use super::types::{Entry, HardState, Index, Snapshot};

/// A ReadIndex read that became safe (or was abandoned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    /// The caller's context, as given to `read_index`.
    pub ctx: u64,
    /// Serve the read once the state machine has applied this index. `None`: this server
    /// stopped being leader before the read was confirmed; it was not served.
    pub index: Option<Index>,
}

/// Work for the caller, to be done in this order:
///
/// 1. send `early_messages`: they may leave at once, before or while step 2 writes (a
///    leader's AppendEntries, heartbeats, snapshots and TimeoutNow in a term already
///    durable here; they promise nothing step 2 writes: see `Raft::split_outbox`);
/// 2. make `hard_state`, `snapshot` and `entries` durable (fsync) — `entries` overwrite any
///    stored entries at or after `entries[0].index`; a `snapshot` replaces the stored
///    snapshot and every stored entry up to its index — and every stored entry after it too,
///    unless the stored entry at the snapshot's index has the snapshot's term (then the
///    suffix still follows on from it and is kept) — and the state machine is restored
///    from it;
/// 3. only then send `messages`: they may promise what step 2 wrote (a vote, an
///    acknowledged entry);
/// 4. apply `committed` to the state machine in order (they are already durable);
/// 5. serve `read_states` once the state machine has applied their index;
///
///    steps 4 and 5 may also come before step 2 is done (between 1 and 3), as long as
///    there is no `snapshot`: the committed entries were written by an earlier Ready and a
///    quorum holds them, the reads were confirmed in a term durable here, so their answers
///    promise nothing step 2 writes;
/// 6. call [`Raft::advance`](super::Raft::advance).
///
/// Until `advance` the core keeps accepting input but hands out no new batch. A leader
/// counts its own copy of an entry toward commitment only after the `advance` of the Ready
/// that wrote it, and never hands out in `committed` an entry that is not durable here,
/// even when its followers committed it meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a Ready must be persisted, sent and applied, then acknowledged with advance()"]
pub struct Ready<C> {
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry<C>>,
    /// May be sent before the writes are durable (step 1).
    pub early_messages: Vec<Message<C>>,
    /// Sent only once the writes are durable (step 3).
    pub messages: Vec<Message<C>>,
    pub committed: Vec<Entry<C>>,
    pub read_states: Vec<ReadState>,
}

impl<C> Ready<C> {
    /// Whether step 1 has anything to write (a caller may skip the fsync otherwise).
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}
