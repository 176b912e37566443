//! The `raft-lab` subcommands that talk to a cluster by hand: one key-value command, the
//! interactive console.

pub mod console;
pub mod kv;
