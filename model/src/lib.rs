//! raftlab `model`: the Raft core (deterministic, no I/O), the replicated KV state machine, the seeded simulator and the stateright model.
//!
//! Built by issue #3 and #6; see `../shared/ARCHITECTURE.md` for where it is heading.
