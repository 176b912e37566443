//! The simulated network: per-message delay (and so reordering), loss, duplication, and
//! partitions of every shape between servers.
//!
//! Links between servers can be cut (a partition is a set of cut directed links, so one-way
//! partitions are possible); a message is dropped if its link is cut when it is sent or when
//! it would be delivered. Clients reach every server (as in Jepsen, partitions are between
//! servers), but their requests and replies are delayed and lost like any other message
//! (replies may also be duplicated; requests are not, see [`Network::request_delay`]).

use super::rng::Rng;
use crate::core::NodeId;
use std::collections::BTreeSet;

/// How the network misbehaves outside partitions.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Delay of a message, uniform in `min_delay..=max_delay` (milliseconds).
    pub min_delay: u64,
    pub max_delay: u64,
    /// Probability that a message takes up to ten times `max_delay` (strong reordering).
    pub long_delay: f64,
}

impl NetworkFaults {
    /// A perfect network with a fixed small delay.
    pub fn reliable() -> Self {
        NetworkFaults {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: 1,
            max_delay: 1,
            long_delay: 0.0,
        }
    }
}

/// The partition shapes the nemesis can impose (Jepsen's names where Jepsen has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// Two random sides.
    RandomSplit,
    /// One random server cut off from all others.
    IsolateOne,
    /// The current leader cut off from all others.
    IsolateLeader,
    /// Two halves that only one server in the middle talks to.
    Bridge,
    /// Every server sees a majority, no two see the same one (a ring; 5+ servers).
    MajoritiesRing,
    /// One side's messages to the other are lost, the other direction works.
    OneWay,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::RandomSplit,
        Shape::IsolateOne,
        Shape::IsolateLeader,
        Shape::Bridge,
        Shape::MajoritiesRing,
        Shape::OneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::RandomSplit => "random-split",
            Shape::IsolateOne => "isolate-one",
            Shape::IsolateLeader => "isolate-leader",
            Shape::Bridge => "bridge",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::OneWay => "one-way",
        }
    }
}

/// The network between servers: which links are cut, and how messages are delayed.
#[derive(Clone, Debug)]
pub struct Network {
    faults: NetworkFaults,
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Self {
        Network {
            faults,
            cut: BTreeSet::new(),
        }
    }

    /// Whether a message from `from` to `to` gets through the partition (if any).
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    pub fn partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Delivery delay of a client request: `None` if it is lost. Client requests are never
    /// duplicated: a client talks over a connection, which may drop a request but does not
    /// deliver it twice; a resend is a new attempt the client knows about. (Were a request
    /// delivered twice, the server could propose it and then answer its copy with
    /// `NotLeader`, and the client would wrongly take that as proof of no effect.)
    pub fn request_delay(&self, rng: &mut Rng) -> Option<u64> {
        if rng.chance(self.faults.loss) {
            None
        } else {
            Some(self.delay(rng))
        }
    }

    /// Delivery delays for one message: empty if it is lost, two entries if duplicated.
    pub fn delays(&self, rng: &mut Rng) -> Vec<u64> {
        if rng.chance(self.faults.loss) {
            return Vec::new();
        }
        let copies = if rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        let f = &self.faults;
        let max = if rng.chance(f.long_delay) {
            f.max_delay.saturating_mul(10)
        } else {
            f.max_delay
        };
        rng.range(f.min_delay, max).max(1)
    }

    /// Cuts the links of `shape` among `nodes` (replacing any current partition) and returns
    /// a description of the sides for the history.
    pub fn partition(
        &mut self,
        shape: Shape,
        nodes: &[NodeId],
        leader: Option<NodeId>,
        rng: &mut Rng,
    ) -> String {
        let mut order = nodes.to_vec();
        rng.shuffle(&mut order);
        let n = order.len();
        let mut cut = BTreeSet::new();
        let cut_between = |cut: &mut BTreeSet<(NodeId, NodeId)>, a: &[NodeId], b: &[NodeId]| {
            for &x in a {
                for &y in b {
                    cut.insert((x, y));
                    cut.insert((y, x));
                }
            }
        };
        let detail = match shape {
            Shape::RandomSplit => {
                let k = rng.range(1, n.saturating_sub(1) as u64) as usize;
                let (a, b) = order.split_at(k.min(n));
                cut_between(&mut cut, a, b);
                format!("{a:?} | {b:?}")
            }
            Shape::IsolateOne | Shape::IsolateLeader => {
                let lonely = match (shape, leader) {
                    (Shape::IsolateLeader, Some(leader)) => leader,
                    _ => order.first().copied().unwrap_or(1),
                };
                let rest: Vec<NodeId> = nodes.iter().copied().filter(|&x| x != lonely).collect();
                cut_between(&mut cut, &[lonely], &rest);
                format!("[{lonely}] | {rest:?}")
            }
            Shape::Bridge => {
                let half = n / 2;
                let a = &order[..half.min(n)];
                let bridge = order.get(half).copied();
                let b = order.get(half + 1..).unwrap_or(&[]);
                cut_between(&mut cut, a, b);
                format!("{a:?} <{bridge:?}> {b:?}")
            }
            Shape::MajoritiesRing => {
                // Each server talks to its two ring neighbours only: with five servers each
                // sees three (a majority), and no two see the same three. With fewer
                // servers, this degenerates into cutting one link (a bridge).
                if n >= 5 {
                    for i in 0..n {
                        for j in 0..n {
                            let d = (i + n - j) % n;
                            if i != j && d != 1 && d != n - 1 {
                                cut.insert((order[i], order[j]));
                            }
                        }
                    }
                } else if n >= 2 {
                    cut_between(&mut cut, &order[..1], &order[n - 1..]);
                }
                format!("ring {order:?}")
            }
            Shape::OneWay => {
                let k = rng.range(1, n.saturating_sub(1) as u64) as usize;
                let (a, b) = order.split_at(k.min(n));
                for &x in a {
                    for &y in b {
                        cut.insert((x, y));
                    }
                }
                format!("{a:?} -/-> {b:?}")
            }
        };
        self.cut = cut;
        format!("{} {detail}", shape.name())
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_ring_lets_each_of_five_see_exactly_three() {
        let mut net = Network::new(NetworkFaults::reliable());
        let nodes = [1, 2, 3, 4, 5];
        net.partition(Shape::MajoritiesRing, &nodes, None, &mut Rng::new(3));
        for &a in &nodes {
            let seen = nodes.iter().filter(|&&b| net.connected(a, b)).count();
            assert_eq!(seen, 3, "node {a}");
        }
    }

    #[test]
    fn isolate_leader_cuts_the_leader_both_ways() {
        let mut net = Network::new(NetworkFaults::reliable());
        net.partition(Shape::IsolateLeader, &[1, 2, 3], Some(2), &mut Rng::new(1));
        assert!(!net.connected(2, 1) && !net.connected(3, 2));
        assert!(net.connected(1, 3));
        net.heal();
        assert!(net.connected(2, 1));
    }

    #[test]
    fn one_way_cuts_one_direction() {
        let mut net = Network::new(NetworkFaults::reliable());
        net.partition(Shape::OneWay, &[1, 2], None, &mut Rng::new(5));
        assert!(net.connected(1, 2) != net.connected(2, 1));
    }
}
