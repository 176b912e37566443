//! The fault kinds by their contract names, lists of them (`all`, `partitions`, `none`), what
//! each asks of a cluster, and the errors of setting a nemesis up.

use crate::db::Needs;
use crate::net::nft::NftError;
use crate::net::NetError;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NemesisKind {
    Kill,
    Pause,
    PartitionHalves,
    PartitionMajoritiesRing,
    PartitionBridge,
    IsolateLeader,
    PartitionOne,
    KillLeader,
    PauseLeader,
    FreezeLeader,
    KillAll,
    Latency,
    PacketLoss,
    Membership,
    Transfer,
    PowerCut,
    LoseUnsynced,
    DiskFull,
    Corrupt,
}

impl NemesisKind {
    pub const ALL: [NemesisKind; 14] = [
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::KillLeader,
        NemesisKind::PauseLeader,
        NemesisKind::KillAll,
        NemesisKind::PacketLoss,
        NemesisKind::PartitionHalves,
        NemesisKind::PartitionMajoritiesRing,
        NemesisKind::PartitionBridge,
        NemesisKind::IsolateLeader,
        NemesisKind::FreezeLeader,
        NemesisKind::PartitionOne,
        NemesisKind::Membership,
        NemesisKind::Transfer,
    ];

    /// Kinds that need nodes with network interfaces of their own (not in [`Self::ALL`]).
    pub const OWN_INTERFACES: [NemesisKind; 1] = [NemesisKind::Latency];

    /// The storage faults (`disk` in lists; not in [`Self::ALL`]): they need the nodes' data
    /// directories on this machine, all but `corrupt` on lazy disks (FUSE).
    pub const DISK: [NemesisKind; 4] = [
        NemesisKind::PowerCut,
        NemesisKind::LoseUnsynced,
        NemesisKind::DiskFull,
        NemesisKind::Corrupt,
    ];

    /// The pure partition shapes (`partitions` in lists). `freeze-leader` cuts links too
    /// ([`Self::is_partition`]) but is not one of them.
    pub const PARTITIONS: [NemesisKind; 5] = [
        NemesisKind::PartitionHalves,
        NemesisKind::PartitionMajoritiesRing,
        NemesisKind::PartitionBridge,
        NemesisKind::IsolateLeader,
        NemesisKind::PartitionOne,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::PartitionHalves => "partition-halves",
            NemesisKind::PartitionMajoritiesRing => "partition-majorities-ring",
            NemesisKind::PartitionBridge => "partition-bridge",
            NemesisKind::IsolateLeader => "isolate-leader",
            NemesisKind::PartitionOne => "partition-one",
            NemesisKind::KillLeader => "kill-leader",
            NemesisKind::PauseLeader => "pause-leader",
            NemesisKind::FreezeLeader => "freeze-leader",
            NemesisKind::KillAll => "kill-all",
            NemesisKind::Latency => "latency",
            NemesisKind::PacketLoss => "packet-loss",
            NemesisKind::Membership => "membership",
            NemesisKind::Transfer => "transfer",
            NemesisKind::PowerCut => "power-cut",
            NemesisKind::LoseUnsynced => "lose-unsynced",
            NemesisKind::DiskFull => "disk-full",
            NemesisKind::Corrupt => "corrupt",
        }
    }

    /// Cuts links (nftables): the partitions and `freeze-leader`.
    pub fn is_partition(self) -> bool {
        NemesisKind::PARTITIONS.contains(&self) || self == NemesisKind::FreezeLeader
    }

    /// Takes one node down (killed, paused, out of the membership, unable to write, or
    /// refusing its damaged log) while it lasts: counts for the minority rule. (`kill-all`
    /// and `power-cut` take every node down and run alone.)
    pub fn takes_node_down(self) -> bool {
        matches!(
            self,
            NemesisKind::Kill
                | NemesisKind::Pause
                | NemesisKind::KillLeader
                | NemesisKind::PauseLeader
                | NemesisKind::FreezeLeader
                | NemesisKind::Membership
                | NemesisKind::LoseUnsynced
                | NemesisKind::DiskFull
                | NemesisKind::Corrupt
        )
    }

    /// Takes every node down (`kill-all`, `power-cut`): runs alone, waiting for every other
    /// fault to end and holding back every other while it lasts.
    pub fn runs_alone(self) -> bool {
        matches!(self, NemesisKind::KillAll | NemesisKind::PowerCut)
    }

    /// Needs nodes with network interfaces of their own.
    pub fn needs_own_interfaces(self) -> bool {
        NemesisKind::OWN_INTERFACES.contains(&self)
    }

    /// A network fault: goes through the cluster's [`Network`], one at a time.
    pub fn needs_network(self) -> bool {
        self.is_partition() || matches!(self, NemesisKind::PacketLoss | NemesisKind::Latency)
    }

    /// Runs alone among the faults that need every link or cut them: network faults, and
    /// `membership` (a returning member catches up over the links, and the runner waits for
    /// it before it heals anything else).
    pub fn needs_the_links_alone(self) -> bool {
        self.needs_network() || self == NemesisKind::Membership
    }

    /// What this kind asks of the cluster, for [`Db::supports`].
    pub fn needs(self) -> Needs {
        Needs {
            // Everything that takes nodes down does so by signal (a full disk too: its node
            // is restarted on it), but a membership change.
            processes: (self.takes_node_down() || self.runs_alone())
                && self != NemesisKind::Membership,
            network: self.needs_network(),
            own_interfaces: self.needs_own_interfaces(),
            membership: self == NemesisKind::Membership,
            transfer: self == NemesisKind::Transfer,
            lazy_disks: matches!(
                self,
                NemesisKind::PowerCut | NemesisKind::LoseUnsynced | NemesisKind::DiskFull
            ),
            data_files: self == NemesisKind::Corrupt,
        }
    }
}

/// Every name [`parse_kinds`] accepts: the kinds, then the groups.
fn known_names() -> String {
    let kinds = NemesisKind::ALL
        .iter()
        .chain(&NemesisKind::OWN_INTERFACES)
        .chain(&NemesisKind::DISK);
    let mut names: Vec<&str> = kinds.map(|k| k.name()).collect();
    names.extend(["all", "partitions", "disk", "none"]);
    names.join(", ")
}

/// The contract names of `kinds`, in order (usable in constants).
pub const fn names<const N: usize>(kinds: [NemesisKind; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = kinds[i].name();
        i += 1;
    }
    out
}

impl fmt::Display for NemesisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for NemesisKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for NemesisKind {
    type Err = NemesisError;
    fn from_str(s: &str) -> Result<NemesisKind, NemesisError> {
        NemesisKind::ALL
            .into_iter()
            .chain(NemesisKind::OWN_INTERFACES)
            .chain(NemesisKind::DISK)
            .find(|k| k.name() == s)
            .ok_or_else(|| NemesisError::Unknown(s.to_string()))
    }
}

/// A comma list of kinds, `all`, `partitions`, `disk` and `none` (deduplicated, in order).
pub fn parse_kinds(list: &str) -> Result<Vec<NemesisKind>, NemesisError> {
    let mut kinds: Vec<NemesisKind> = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let more: Vec<NemesisKind> = match word {
            "all" => NemesisKind::ALL.to_vec(),
            "partition" | "partitions" => NemesisKind::PARTITIONS.to_vec(),
            "disk" => NemesisKind::DISK.to_vec(),
            "none" => Vec::new(),
            name => vec![name.parse()?],
        };
        for kind in more {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    Ok(kinds)
}

/// A nemesis that cannot be set up; every message names the kind or setting at fault.
#[derive(Debug, Error)]
pub enum NemesisError {
    #[error("unknown nemesis {0:?}; known: {known}", known = known_names())]
    Unknown(String),
    #[error("nemesis {kinds} needs at least 3 nodes (only a minority may be faulted), the cluster has {nodes}")]
    TooFewNodes { kinds: String, nodes: usize },
    #[error("nemesis schedule: {0}")]
    BadTiming(String),
    #[error("nemesis {kind} is not possible on this cluster: {reason}")]
    Unsupported { kind: NemesisKind, reason: String },
    #[error(
        "partition nemeses need nftables and root: {0}; run as root with nftables installed, \
         or choose --nemesis kill,pause"
    )]
    Partitions(NftError),
    #[error("cannot set up the network faults: {0}")]
    Network(String),
}

impl From<NetError> for NemesisError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Nftables(e) => NemesisError::Partitions(e),
            NetError::Setup(reason) => NemesisError::Network(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_with_groups_and_errors() {
        assert_eq!(
            parse_kinds("kill, pause,partition-halves").unwrap(),
            vec![
                NemesisKind::Kill,
                NemesisKind::Pause,
                NemesisKind::PartitionHalves
            ]
        );
        assert_eq!(parse_kinds("all").unwrap(), NemesisKind::ALL.to_vec());
        assert_eq!(
            parse_kinds("partitions,kill,partition-one").unwrap().len(),
            6
        );
        assert!(parse_kinds("none").unwrap().is_empty());
        assert!(parse_kinds("").unwrap().is_empty());
        let err = parse_kinds("kill,partition-everything")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"partition-everything\""), "{err}");
        for kind in NemesisKind::ALL
            .into_iter()
            .chain(NemesisKind::OWN_INTERFACES)
            .chain(NemesisKind::DISK)
        {
            assert_eq!(kind.name().parse::<NemesisKind>().unwrap(), kind);
        }
        assert!(!NemesisKind::ALL.iter().any(|k| k.needs_own_interfaces()));
        assert_eq!(
            parse_kinds("all,disk").unwrap().len(),
            NemesisKind::ALL.len() + NemesisKind::DISK.len()
        );
        // `all` asks nothing of the data directories: no FUSE needed.
        assert!(!NemesisKind::ALL
            .iter()
            .any(|k| k.needs().lazy_disks || k.needs().data_files));
    }

    #[test]
    fn freeze_leader_is_a_network_fault_that_takes_a_node_down() {
        let k = NemesisKind::FreezeLeader;
        assert!(k.is_partition() && k.needs_network() && k.takes_node_down());
        assert!(!NemesisKind::PARTITIONS.contains(&k));
        assert!(NemesisKind::ALL.contains(&k));
        assert_eq!(parse_kinds("freeze-leader").unwrap(), vec![k]);
        assert!(!parse_kinds("partitions").unwrap().contains(&k));
        let err = parse_kinds("freeze").unwrap_err().to_string();
        assert!(err.contains("freeze-leader"), "{err}");
    }
}
