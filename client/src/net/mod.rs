//! The network between the nodes, as Jepsen's `jepsen.net`: the [`Network`] trait (drop,
//! heal, slow links) with [`nft::Nft`] (nftables on this machine) and [`remote::RemoteNetwork`]
//! (nftables and `tc netem` on every remote host), and [`netns`]: network namespaces that give
//! nodes interfaces of their own on this machine.

pub mod netem;
pub mod netns;
pub mod nft;
pub mod remote;

use nft::NftError;
use std::net::SocketAddr;
use thiserror::Error;

/// Why a cluster on loopback refuses `latency`.
pub const LATENCY_NEEDS_HOSTS: &str = "latency needs nodes with network interfaces of their own \
     (raft-lab run --hosts netns, or a remote cluster); on loopback it would slow every \
     process of this machine";

/// A network that cannot be set up.
#[derive(Debug, Error)]
pub enum NetError {
    /// No nftables here, or no permission to use it.
    #[error(transparent)]
    Nftables(NftError),
    /// The rules cannot be set up on some host; the message names it.
    #[error("{0}")]
    Setup(String),
}

/// Where network faults take effect: nftables on this machine for a local cluster
/// ([`nft::Nft`]), or rules on every node's host for a remote one. Dropping it removes
/// everything it installed.
pub trait Network: Send + Sync + std::fmt::Debug {
    /// Replaces the drop rules with drops of these `(source, destination)` node addresses:
    /// every packet, or `loss_percent` of them at random.
    fn cut(
        &mut self,
        drops: &[(SocketAddr, SocketAddr)],
        loss_percent: Option<u8>,
    ) -> Result<(), String>;
    /// Removes every drop rule.
    fn heal(&mut self) -> Result<(), String>;
    /// Installs the `latency` delay on every node's interface (returning what was
    /// installed, see [`netem::describe`]), or removes it (`false`).
    fn delay(&mut self, on: bool) -> Result<String, String>;
}
