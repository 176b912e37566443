//! raftlab `model`: the Raft core as a pure, deterministic model ([`core`]), the replicated
//! key-value state machine ([`kv`]), one server's core + state machine + waiting requests
//! ([`replica`], what the node, the simulator and the model checker all drive), the bug
//! catalogue ([`bugs`]), the seeded deterministic simulator that runs them under faults
//! ([`sim`]), and the stateright model of the same core ([`check`]).
//!
//! Nothing here does I/O, reads a clock or starts a thread: the node runtime, the simulator
//! and the model checker all drive the very same code.

pub mod bugs;
pub mod check;
pub mod core;
pub mod kv;
pub mod replica;
pub mod sim;
