//! The nemesis: which fault to inject next, on a seeded schedule.
//!
//! Every `interval` (on average) it picks one fault: a partition of some [`Shape`] (healed after
//! a while; one partition at a time), a crash of a server (restarted after a while, from
//! its durable state only), a pause of a server when [`NemesisConfig::pauses`] is on (SIGSTOP
//! and, after a while, SIGCONT: it keeps its memory and misses the time in between), or now
//! and then a leadership transfer. Crashes and isolations prefer the leader with probability
//! `leader_bias`. Targeted faults make the rare interleavings that some bugs need common:
//! crashing a server right after it granted a vote (so a forgotten vote can be given again in
//! the same term), crashing a leader right after it acknowledged a client (so an
//! acknowledgement that outran commitment can be lost), and Figure 8's leader churn: crashing
//! a leader right after it was elected (so its fresh entries stay on a minority) or right
//! after its commit index advanced (before its own-term entries spread). Targeted outages are
//! short, often shorter than a message delay, so the server is back within the same term.

use super::network::Shape;
use super::rng::Rng;
use crate::core::NodeId;

/// What faults to inject, how often and for how long (milliseconds).
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisConfig {
    /// Mean time between faults; 0 disables scheduled faults.
    pub interval: u64,
    /// Partition shapes to use (none: no partitions).
    pub shapes: Vec<Shape>,
    /// How long a partition lasts, uniform in this range.
    pub partition_time: (u64, u64),
    /// Whether servers crash.
    pub crashes: bool,
    /// Whether servers are paused (one at a time; off in [`all`](Self::all), so that the
    /// schedules drawn for every seed stay as they were; on in the `lease-read` schedule).
    pub pauses: bool,
    /// How long a pause lasts, uniform in this range.
    pub pause_time: (u64, u64),
    /// How long a crashed server stays down, uniform in this range.
    pub down_time: (u64, u64),
    /// Most servers down at once (scheduled crashes).
    pub max_down: usize,
    /// Most servers down at once counting targeted crashes (which are short).
    pub max_down_targeted: usize,
    /// Probability that a crash or an isolation targets the current leader.
    pub leader_bias: f64,
    /// Whether the nemesis also asks the leader to hand leadership to another server
    /// (thesis 3.10: TimeoutNow, an election that may depose a leader with a lease).
    pub transfers: bool,
    /// Probability of crashing a server right after it granted a vote.
    pub crash_after_vote: f64,
    /// Probability of crashing a leader right after it acknowledged a client write.
    pub crash_after_ack: f64,
    /// Probability of crashing a server right after it became leader.
    pub crash_new_leader: f64,
    /// Probability of crashing a leader right after its commit index advanced.
    pub crash_after_commit: f64,
}

impl NemesisConfig {
    /// No faults at all.
    pub fn none() -> Self {
        NemesisConfig {
            interval: 0,
            shapes: Vec::new(),
            partition_time: (0, 0),
            crashes: false,
            pauses: false,
            pause_time: (0, 0),
            down_time: (0, 0),
            max_down: 0,
            max_down_targeted: 0,
            leader_bias: 0.0,
            transfers: false,
            crash_after_vote: 0.0,
            crash_after_ack: 0.0,
            crash_new_leader: 0.0,
            crash_after_commit: 0.0,
        }
    }

    /// Every fault kind, at moderate rates, for a cluster of `nodes`.
    pub fn all(nodes: usize) -> Self {
        NemesisConfig {
            interval: 300,
            shapes: Shape::ALL.to_vec(),
            partition_time: (100, 1200),
            crashes: true,
            pauses: false,
            pause_time: (100, 800),
            down_time: (5, 800),
            max_down: nodes.saturating_sub(1) / 2,
            max_down_targeted: nodes.saturating_sub(1),
            transfers: true,
            leader_bias: 0.5,
            crash_after_vote: 0.05,
            crash_after_ack: 0.02,
            crash_new_leader: 0.05,
            crash_after_commit: 0.01,
        }
    }
}

/// One fault to inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Partition {
        shape: Shape,
        heal_after: u64,
    },
    Crash {
        node: NodeId,
        down: u64,
    },
    /// Freeze a server (its ticks, inputs and disk completions wait) for `resume_after`.
    Pause {
        node: NodeId,
        resume_after: u64,
    },
    /// Ask the leader to transfer leadership to this server.
    Transfer {
        leader: NodeId,
        to: NodeId,
    },
}

/// What the nemesis knows about the cluster when it decides.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub up: Vec<NodeId>,
    pub down: usize,
    pub leader: Option<NodeId>,
    pub partitioned: bool,
    /// A server is paused now.
    pub paused: bool,
}

/// The fault scheduler.
#[derive(Clone, Debug)]
pub struct Nemesis {
    pub config: NemesisConfig,
    rng: Rng,
}

impl Nemesis {
    pub fn new(config: NemesisConfig, rng: Rng) -> Self {
        Nemesis { config, rng }
    }

    pub fn enabled(&self) -> bool {
        self.config.interval > 0
            && (self.config.crashes || self.config.pauses || !self.config.shapes.is_empty())
    }

    /// Time until the next decision: uniform in `[interval / 2, 3 * interval / 2]`.
    pub fn next_interval(&mut self) -> u64 {
        let i = self.config.interval.max(1);
        self.rng.range(i / 2, i + i / 2).max(1)
    }

    /// The next fault, if any applies now.
    pub fn choose(&mut self, view: &ClusterView) -> Option<Fault> {
        let can_partition = !view.partitioned && !self.config.shapes.is_empty();
        let can_crash =
            self.config.crashes && view.down < self.config.max_down && !view.up.is_empty();
        let transfer = match view.leader {
            Some(leader) if self.config.transfers && view.up.len() > 1 => {
                let others: Vec<NodeId> =
                    view.up.iter().copied().filter(|&n| n != leader).collect();
                self.rng
                    .pick(&others)
                    .map(|&to| Fault::Transfer { leader, to })
            }
            _ => None,
        };
        // Transfers are a rarer event than the other faults.
        if transfer.is_some() && self.rng.chance(0.15) {
            return transfer;
        }
        // (Only schedules with pauses draw for them: the others replay as before.)
        if self.config.pauses && !view.paused && !view.up.is_empty() && self.rng.chance(0.5) {
            let node = match view.leader {
                Some(leader) if self.rng.chance(self.config.leader_bias) => leader,
                _ => *self.rng.pick(&view.up)?,
            };
            let (lo, hi) = self.config.pause_time;
            let resume_after = self.rng.range(lo, hi).max(1);
            return Some(Fault::Pause { node, resume_after });
        }
        let partition = match (can_partition, can_crash) {
            (false, false) => return transfer,
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.rng.chance(0.5),
        };
        if partition {
            let shape = *self.rng.pick(&self.config.shapes)?;
            let (lo, hi) = self.config.partition_time;
            let heal_after = self.rng.range(lo, hi).max(1);
            let shape = match shape {
                Shape::IsolateOne | Shape::IsolateLeader
                    if view.leader.is_some() && self.rng.chance(self.config.leader_bias) =>
                {
                    Shape::IsolateLeader
                }
                Shape::IsolateLeader => Shape::IsolateOne,
                other => other,
            };
            return Some(Fault::Partition { shape, heal_after });
        }
        let node = match view.leader {
            Some(leader) if self.rng.chance(self.config.leader_bias) => leader,
            _ => *self.rng.pick(&view.up)?,
        };
        Some(Fault::Crash {
            node,
            down: self.down_time(),
        })
    }

    pub fn down_time(&mut self) -> u64 {
        let (lo, hi) = self.config.down_time;
        self.rng.range(lo, hi).max(1)
    }

    /// Whether to crash a server that just granted a vote; if so, for how long: it reboots
    /// at once (within two milliseconds), so that it is back while the election it voted in
    /// is still going on.
    pub fn crash_after_vote(&mut self, down: usize) -> Option<u64> {
        self.targeted(self.config.crash_after_vote, down)
            .map(|_| self.rng.range(0, 2))
    }

    /// Whether to crash a leader that just acknowledged a client; if so, for how long.
    pub fn crash_after_ack(&mut self, down: usize) -> Option<u64> {
        self.targeted(self.config.crash_after_ack, down)
    }

    /// Whether to crash a server that just became leader; if so, for how long.
    pub fn crash_new_leader(&mut self, down: usize) -> Option<u64> {
        self.targeted(self.config.crash_new_leader, down)
    }

    /// Whether to crash a leader whose commit index just advanced; if so, for how long.
    pub fn crash_after_commit(&mut self, down: usize) -> Option<u64> {
        self.targeted(self.config.crash_after_commit, down)
    }

    fn targeted(&mut self, p: f64, down: usize) -> Option<u64> {
        if p <= 0.0 || down >= self.config.max_down_targeted || !self.rng.chance(p) {
            return None;
        }
        // Short outages: a third shorter than a message delay (back within the same
        // election), a third within an election timeout, a third a few election timeouts
        // (so that the cluster moves on without the server and meets it again later).
        Some(match self.rng.below(3) {
            0 => self.rng.range(0, 3),
            1 => self.rng.range(5, 150),
            _ => self.rng.range(150, 500),
        })
    }
}
