//! raftlab `client`: the lab. Drives a real cluster from outside, as a user would: starts
//! `raft-node` processes, talks to them over QUIC with a client certificate, breaks things
//! with real signals and packet drops, records what every client saw, and has the checker
//! judge it.
//!
//! The modules are layered after Jepsen's; each imports only the layers below it:
//!
//! ```text
//! cli      the binary's subcommands (kv, console, cluster up/down/status, bench flags)
//! bench    raftlab and etcd side by side under one closed-loop load: cells, CPU, tables
//! matrix   bugs × nemeses × seeds, detection, tables
//! lab      workload files, generator, the cluster a run drives, one run
//! report   results folder, statistics, HTML, timeline, plots, serve
//! nemesis  fault kinds, schedule, partitions, the runner (over `dyn Db`, `dyn Network`)
//! db       the system under test's lifecycle: local, remote (and netns) raftlab clusters
//! net      network faults: nftables, tc/netem, rules on remote hosts, network namespaces
//! kv       the client library: sessions, redirects, outcomes; status and leader lookup
//! control  running commands: template, processes, shell quoting, cleanup on Ctrl-C
//! ```

pub mod bench;
pub mod cli;
pub mod control;
pub mod db;
pub mod history;
pub mod kv;
pub mod lab;
pub mod matrix;
pub mod nemesis;
pub mod net;
pub mod report;
