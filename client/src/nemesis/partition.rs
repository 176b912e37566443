//! Partition groupings: which nodes may still talk to which, for each partition nemesis, and the
//! packet-drop pairs that make it real.
//!
//! Every grouping is symmetric: when `a` cannot reach `b`, `b` cannot reach `a` either. Node
//! orders come shuffled from the schedule's seeded RNG, so the same seed cuts the same links.
//!
//! - `partition-halves`: two sides, the minority side `(n-1)/2` nodes, the rest a majority
//!   (4 nodes: 1 | 3, 5 nodes: 2 | 3).
//! - `partition-majorities-ring` (Jepsen's definition): every node sees a majority (itself
//!   included), and no two nodes see the same one. Nodes on a ring see their neighbours up to
//!   distance `k = ceil(floor(n/2)/2)`; three nodes make a line `a - b - c`.
//! - `partition-bridge`: two halves that cannot talk, plus one node that talks to both.
//! - `partition-one` / `isolate-leader`: one node alone (a random one / the current leader);
//!   `freeze-leader` cuts the leader off the same way (and pauses it).

use super::NemesisKind;
use model::core::NodeId;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// Who cannot talk to whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub kind: NemesisKind,
    /// Every node, sorted.
    pub nodes: Vec<NodeId>,
    /// The sides: `[minority, majority]` for halves, `[left, [bridge], right]` for a bridge,
    /// `[[alone], rest]` for one node alone, and the ring order (one group) for a ring.
    pub groups: Vec<Vec<NodeId>>,
    /// Directed links that are cut, `(from, to)`; always both directions.
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

impl Grouping {
    fn new(kind: NemesisKind, order: &[NodeId], groups: Vec<Vec<NodeId>>) -> Grouping {
        let mut nodes = order.to_vec();
        nodes.sort_unstable();
        Grouping {
            kind,
            nodes,
            groups,
            cut: BTreeSet::new(),
        }
    }

    fn cut_between(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.cut.insert((x, y));
                    self.cut.insert((y, x));
                }
            }
        }
    }

    pub fn can_talk(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// The nodes `node` can talk to, itself included, sorted.
    pub fn view(&self, node: NodeId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .copied()
            .filter(|&other| other == node || self.can_talk(node, other))
            .collect()
    }

    /// One line for logs and the progress bar, e.g. `[1 3] | [2 4 5]`.
    pub fn describe(&self) -> String {
        let list = |g: &[NodeId]| {
            format!(
                "[{}]",
                g.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        match self.kind {
            NemesisKind::PartitionBridge if self.groups.len() == 3 => format!(
                "{} <{}> {}",
                list(&self.groups[0]),
                self.groups[1]
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<String>(),
                list(&self.groups[2])
            ),
            NemesisKind::PartitionMajoritiesRing => format!(
                "ring {}",
                self.groups
                    .first()
                    .map(|g| g
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join("-"))
                    .unwrap_or_default()
            ),
            _ => self
                .groups
                .iter()
                .map(|g| list(g))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    /// The history value of `start-partition`: the nemesis name, its groups, and what every
    /// node can see.
    pub fn to_json(&self) -> Json {
        let views: BTreeMap<String, Vec<NodeId>> = self
            .nodes
            .iter()
            .map(|&n| (n.to_string(), self.view(n)))
            .collect();
        json!({
            "nemesis": self.kind.name(),
            "groups": self.groups,
            "views": views,
            "description": self.describe(),
        })
    }

    /// The `(source, destination)` address pairs to drop, for nodes at `endpoints` (nodes
    /// without an address are skipped).
    pub fn drops(&self, endpoints: &BTreeMap<NodeId, SocketAddr>) -> Vec<(SocketAddr, SocketAddr)> {
        self.cut
            .iter()
            .filter_map(|(from, to)| Some((*endpoints.get(from)?, *endpoints.get(to)?)))
            .collect()
    }
}

/// Every `(source, destination)` pair of distinct nodes at `endpoints` (`packet-loss`).
pub fn all_links(endpoints: &BTreeMap<NodeId, SocketAddr>) -> Vec<(SocketAddr, SocketAddr)> {
    endpoints
        .iter()
        .flat_map(|(a, from)| {
            endpoints
                .iter()
                .filter(move |(b, _)| *b != a)
                .map(move |(_, to)| (*from, *to))
        })
        .collect()
}

/// Two sides, the smaller with `(n-1)/2` nodes: a majority stays on the other.
pub fn halves(order: &[NodeId]) -> Grouping {
    let minority = order.len().saturating_sub(1) / 2;
    let (a, b) = order.split_at(minority);
    let mut g = Grouping::new(
        NemesisKind::PartitionHalves,
        order,
        vec![a.to_vec(), b.to_vec()],
    );
    g.cut_between(a, b);
    g
}

/// Every node sees a majority, no two the same one (needs 3+ nodes to differ from no cut).
pub fn majorities_ring(order: &[NodeId]) -> Grouping {
    let n = order.len();
    let mut g = Grouping::new(
        NemesisKind::PartitionMajoritiesRing,
        order,
        vec![order.to_vec()],
    );
    if n == 3 {
        // A line a - b - c: a and c see two of three, b sees all; all three views differ.
        g.cut_between(&order[..1], &order[2..]);
        return g;
    }
    // Each node sees itself and its ring neighbours up to distance k: 2k+1 >= n/2+1 nodes
    // (a majority) and 2k+1 < n, so no two windows are equal.
    let k = (n / 2).div_ceil(2);
    for i in 0..n {
        for j in 0..n {
            let d = (i + n - j) % n;
            let distance = d.min(n - d);
            if distance > k {
                g.cut.insert((order[i], order[j]));
            }
        }
    }
    g
}

/// Two halves that cannot talk to each other, and one node in the middle talking to both.
pub fn bridge(order: &[NodeId]) -> Grouping {
    let n = order.len();
    if n == 0 {
        return Grouping::new(NemesisKind::PartitionBridge, order, Vec::new());
    }
    let bridge = order[0];
    let rest = &order[1..];
    let (a, b) = rest.split_at(rest.len() / 2);
    let mut g = Grouping::new(
        NemesisKind::PartitionBridge,
        order,
        vec![a.to_vec(), vec![bridge], b.to_vec()],
    );
    g.cut_between(a, b);
    g
}

/// `alone` cut off from every other node (`partition-one`, `isolate-leader`, `freeze-leader`).
pub fn isolate(kind: NemesisKind, alone: NodeId, nodes: &[NodeId]) -> Grouping {
    let rest: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != alone).collect();
    let mut g = Grouping::new(kind, nodes, vec![vec![alone], rest.clone()]);
    g.cut_between(&[alone], &rest);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<NodeId> {
        (1..=n).collect()
    }

    fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    fn assert_symmetric(g: &Grouping) {
        for &(a, b) in &g.cut {
            assert!(g.cut.contains(&(b, a)), "{g:?}");
            assert_ne!(a, b);
        }
    }

    #[test]
    fn halves_keep_a_majority_on_one_side() {
        for n in 3..=9 {
            let g = halves(&ids(n));
            assert_symmetric(&g);
            let sizes: Vec<usize> = g.groups.iter().map(Vec::len).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n as usize);
            assert_eq!(sizes[1], majority(n as usize), "n={n}: {sizes:?}");
            assert!(sizes[1] - sizes[0] <= 2, "as equal as possible: {sizes:?}");
            // Nodes see exactly their side.
            for side in &g.groups {
                for &node in side {
                    let mut expected = side.clone();
                    expected.sort_unstable();
                    assert_eq!(g.view(node), expected);
                }
            }
        }
        assert_eq!(halves(&[5, 2, 4, 1, 3]).describe(), "[5 2] | [4 1 3]");
    }

    #[test]
    fn majorities_ring_gives_every_node_a_different_majority() {
        for n in 3..=11u64 {
            let order: Vec<NodeId> = ids(n).into_iter().rev().collect();
            let g = majorities_ring(&order);
            assert_symmetric(&g);
            let views: Vec<Vec<NodeId>> = g.nodes.iter().map(|&x| g.view(x)).collect();
            for (node, view) in g.nodes.iter().zip(&views) {
                assert!(
                    view.len() >= majority(n as usize),
                    "n={n} node {node}: {view:?}"
                );
                // (Three nodes make a line: its middle sees both ends.)
                assert!(
                    n == 3 || view.len() < n as usize,
                    "n={n}: node {node} sees everyone"
                );
            }
            let distinct: BTreeSet<&Vec<NodeId>> = views.iter().collect();
            assert_eq!(distinct.len(), n as usize, "n={n}: {views:?}");
        }
        // Five nodes: each sees exactly its two ring neighbours.
        let g = majorities_ring(&[1, 2, 3, 4, 5]);
        assert_eq!(g.view(1), vec![1, 2, 5]);
        assert_eq!(g.view(3), vec![2, 3, 4]);
        assert_eq!(g.describe(), "ring 1-2-3-4-5");
    }

    #[test]
    fn bridge_node_talks_to_everyone_and_the_halves_do_not() {
        for n in 3..=9u64 {
            let g = bridge(&ids(n));
            assert_symmetric(&g);
            let (a, mid, b) = (&g.groups[0], g.groups[1][0], &g.groups[2]);
            assert_eq!(g.view(mid), g.nodes, "n={n}");
            for x in a {
                for y in b {
                    assert!(!g.can_talk(*x, *y));
                }
            }
            // Each half with the bridge is a majority or one short of it (even n).
            assert!(b.len() + 1 >= majority(n as usize));
            assert!(a.len().abs_diff(b.len()) <= 1);
        }
        assert_eq!(bridge(&[3, 1, 2, 5, 4]).describe(), "[1 2] <3> [5 4]");
    }

    #[test]
    fn isolate_cuts_one_node_from_all_others() {
        let g = isolate(NemesisKind::IsolateLeader, 2, &ids(5));
        assert_eq!(g.view(2), vec![2]);
        assert_eq!(g.view(1), vec![1, 3, 4, 5]);
        assert_eq!(g.cut.len(), 8);
        assert_eq!(g.describe(), "[2] | [1 3 4 5]");
        let json = g.to_json();
        assert_eq!(json["nemesis"], "isolate-leader");
        assert_eq!(json["groups"], json!([[2], [1, 3, 4, 5]]));
    }

    #[test]
    fn drops_map_cut_links_to_addresses() {
        let g = isolate(NemesisKind::PartitionOne, 1, &ids(3));
        let endpoints: BTreeMap<NodeId, SocketAddr> = (1..=3)
            .map(|i| (i, format!("127.0.0.{}:1500{i}", 10 + i).parse().unwrap()))
            .collect();
        let drops = g.drops(&endpoints);
        assert_eq!(drops.len(), 4);
        assert!(drops.contains(&(endpoints[&1], endpoints[&3])));
        assert!(drops.contains(&(endpoints[&3], endpoints[&1])));
        assert!(!drops.contains(&(endpoints[&2], endpoints[&3])));
    }
}
