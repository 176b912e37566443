//! The Raft core: a deterministic, sans-IO state machine (Ongaro's thesis), driven like
//! etcd/raft.
//!
//! ```text
//!   tick() / step(msg) / propose(cmd) / read_index(ctx) / transfer_leadership(id)
//!                      |
//!                      v
//!                 +---------+   ready()   +-------------------------------------------+
//!                 |  Raft   | ----------> | Ready: persist hard state, snapshot,      |
//!                 +---------+             | entries -> then send messages -> apply     |
//!                      ^                  | committed entries -> serve read states     |
//!                      +----- advance() --+-------------------------------------------+
//! ```
//! One client write: `propose` appends it to the leader's log ([`raft`]), the next
//! [`Ready`] asks to persist it and carries the AppendEntries; followers `step` those, persist,
//! and answer; when a majority holds it (counting the leader only once its own copy is
//! durable) and it is of the leader's term, `maybe_commit` advances the commit index, and the
//! entry comes out in a Ready's `committed`, to be applied by [`crate::kv`].

pub mod log;
pub mod message;
pub mod progress;
pub mod raft;
pub mod ready;
pub mod settings;
pub mod types;

pub use message::{Body, Campaign, Message};
pub use raft::{Config, Dropped, Raft, Refused, Restored, Role};
pub use ready::{ReadState, Ready};
pub use settings::Settings;
pub use types::{
    Entry, EntryKind, HardState, Index, Membership, MembershipChange, NodeId, Snapshot,
    SnapshotMeta, Term,
};
