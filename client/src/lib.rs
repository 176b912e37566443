//! raftlab `client`: the lab. Drives a real cluster from outside, as a user would: starts
//! `raft-node` processes, talks to them over QUIC with a client certificate, breaks things
//! with real signals and packet drops, records what every client saw, and has the checker
//! judge it.

pub mod cluster;
pub mod console;
pub mod generator;
pub mod history;
pub mod hosts;
pub mod kv;
pub mod kv_client;
pub mod matrix;
pub mod nemesis;
pub mod report;
pub mod results;
pub mod run;
pub mod serve;
pub mod workload;
