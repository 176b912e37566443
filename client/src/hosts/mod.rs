//! Nodes on hosts of their own: network namespaces on this machine (`raft-lab run --hosts
//! netns`), and the command template through which the lab controls nodes on any host.

pub mod netns;
pub mod remote;
pub mod remote_network;
pub mod run_cluster;
pub mod template;
