//! The `raft-lab` subcommands that talk to a cluster by hand: one key-value command, the
//! interactive console, the cluster's status, its membership and leadership; and the flags
//! of `raft-lab bench`.

pub mod bench;
pub mod cluster;
pub mod console;
pub mod kv;
pub mod membership;
