//! `raft-check`: checks a history for linearizability. TODO(lead)
fn main() {}
