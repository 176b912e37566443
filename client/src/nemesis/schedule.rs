//! The fault schedule: which fault starts when, on which nodes, and when it ends, all drawn
//! from one seed, before the run starts.
//!
//! Fault starts are `interval` apart on average (uniform in `[interval/2, 3·interval/2]`), the
//! first one after `interval`; each fault lasts uniform in `[fault_min, fault_max]` and ends
//! no later than `duration`: everything is healed when the schedule ends.
//!
//! Kinds are drawn in shuffled rounds: every kind once per round, in the round's order, and a
//! new round only when the last one is used up. A kind that does not fit at its turn (the
//! limits below) stays first in line and is tried again at the next start; the first kind of
//! the round that fits starts instead. So in a schedule of `K` faults of `N` kinds, every
//! kind appears `floor(K/N)` or `ceil(K/N)` times, whatever the limits (they change the order
//! within a round and how many faults fit, never the counts' evenness: with nothing in effect
//! every kind fits).
//!
//! A run has room for about `k = (duration - fault_min) / interval` faults, often fewer than
//! kinds (30 s of `kv.toml`: 4 of 14). So that seeded runs in a row (a soak) cover every kind
//! rather than redraw the same few, consecutive seeds share their first round: seeds
//! `c·m .. c·m + m` (`m = ceil(N/k)`) take the round shuffled for cycle `c`, seed `c·m + j`
//! starting `j·k` kinds into it. Those `m` runs thus start with every kind once between them
//! (when each has room for `k` faults); later rounds of a run are shuffled by its own seed.
//!
//! Faults may overlap, within limits that keep the cluster able to recover: at most one
//! partition at a time, and at most a minority `(n-1)/2` of the nodes killed or paused at once
//! (a kind that does not fit now waits for its turn). Partitions and process faults may
//! overlap: the cluster may be unavailable for a while, never for good. The exception is
//! `kill-all`, a power cut of the whole cluster: it starts only when no other fault is in
//! effect, and nothing else starts until every node is back. Network faults (partitions,
//! `freeze-leader`, `packet-loss`, `latency`) and `membership` count as one family: at most
//! one at a time.
//! `freeze-leader` is both a network fault and a process fault (it cuts a node off and
//! pauses it): it starts only when both limits leave room.
//!
//! A `freeze-leader` fault has three steps: its start (cut and pause), its wake-up
//! ([`PlannedFault::wake_at`], three quarters into the fault: the node resumes, still cut
//! off) and its end (the cut healed).

use super::partition::{self, Grouping};
use super::{NemesisError, NemesisKind};
use model::core::NodeId;
use model::sim::rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Fewest nodes any nemesis needs (a minority to fault must exist).
pub const MIN_NODES: usize = 3;

/// One fault with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the node; restart it at the end. `leader`: kill the leader found when the
    /// fault starts instead (`node` when no leader is known then).
    Kill { node: NodeId, leader: bool },
    /// SIGSTOP the node; SIGCONT it at the end. `leader`: as for `Kill`.
    Pause { node: NodeId, leader: bool },
    /// SIGKILL every node at once (a power cut); restart them all at the end.
    KillAll,
    /// Drop a random share of the packets on every link between nodes; heal at the end.
    PacketLoss,
    /// Delay every node's packets (`tc`); removed at the end.
    Latency,
    /// Cut the links of this grouping; heal at the end.
    Partition(Grouping),
    /// Cut the current leader off from the rest (found when the fault starts); `fallback` is
    /// isolated instead when no leader is known then.
    IsolateLeader { fallback: NodeId },
    /// Cut the current leader off from the rest as `IsolateLeader` does and SIGSTOP it; SIGCONT
    /// it at [`PlannedFault::wake_at`], links still cut; heal at the end. `fallback` (a node
    /// not down when planned) is frozen instead when no leader is known then.
    FreezeLeader { fallback: NodeId },
    /// Remove the voter from the cluster (it keeps running); add it back at the end.
    RemoveMember { node: NodeId },
    /// Hand leadership to this voter (another one if it leads or is down then); nothing to
    /// undo at the end.
    Transfer { to: NodeId },
    /// SIGKILL every node and drop what each had not synced (its lazy disk tears the last
    /// unsynced write of each file); restart them all at the end.
    PowerCut,
    /// SIGKILL the node and drop what it had not synced; restart it at the end.
    LoseUnsynced { node: NodeId },
    /// The node's disk is full (writes needing space fail) and the node restarted on it;
    /// space returns at the end.
    DiskFull { node: NodeId },
    /// SIGKILL the node, flip bits in its log and check that it refuses to start; repair
    /// the bits and restart it at the end.
    Corrupt { node: NodeId },
}

impl Fault {
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill { leader: false, .. } => NemesisKind::Kill,
            Fault::Kill { leader: true, .. } => NemesisKind::KillLeader,
            Fault::Pause { leader: false, .. } => NemesisKind::Pause,
            Fault::Pause { leader: true, .. } => NemesisKind::PauseLeader,
            Fault::KillAll => NemesisKind::KillAll,
            Fault::PacketLoss => NemesisKind::PacketLoss,
            Fault::Latency => NemesisKind::Latency,
            Fault::Partition(g) => g.kind,
            Fault::IsolateLeader { .. } => NemesisKind::IsolateLeader,
            Fault::FreezeLeader { .. } => NemesisKind::FreezeLeader,
            Fault::RemoveMember { .. } => NemesisKind::Membership,
            Fault::Transfer { .. } => NemesisKind::Transfer,
            Fault::PowerCut => NemesisKind::PowerCut,
            Fault::LoseUnsynced { .. } => NemesisKind::LoseUnsynced,
            Fault::DiskFull { .. } => NemesisKind::DiskFull,
            Fault::Corrupt { .. } => NemesisKind::Corrupt,
        }
    }

    /// The node a process fault takes down.
    fn down_node(&self) -> Option<NodeId> {
        match self {
            // (A leader fault takes down whichever node leads then; counting its fallback
            // keeps the schedule's minority rule for the planned nodes.)
            Fault::Kill { node, .. }
            | Fault::Pause { node, .. }
            | Fault::FreezeLeader { fallback: node }
            | Fault::RemoveMember { node }
            | Fault::LoseUnsynced { node }
            | Fault::DiskFull { node }
            | Fault::Corrupt { node } => Some(*node),
            _ => None,
        }
    }
}

/// A fault and its time window, relative to the start of the nemesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    pub start: Duration,
    pub end: Duration,
    pub fault: Fault,
}

impl PlannedFault {
    /// When a `freeze-leader` fault wakes its node up: three quarters into the fault (`None`
    /// for every other fault). The last quarter is the node awake and still cut off.
    pub fn wake_at(&self) -> Option<Duration> {
        matches!(self.fault, Fault::FreezeLeader { .. })
            .then(|| self.start + self.end.saturating_sub(self.start) * 3 / 4)
    }
}

/// Start, wake-up or end of a planned fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    // Stops sort first: at equal times a fault heals before the next one starts (and a
    // frozen node wakes before another fault starts).
    Stop,
    /// A `freeze-leader` node resumes, its links still cut.
    Wake,
    Start,
}

/// One step of the schedule: at `at`, `action` fault number `fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
    pub fault: usize,
}

/// Timing of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Mean time between fault starts.
    pub interval: Duration,
    /// Every fault has ended by then (the run's time limit).
    pub duration: Duration,
    pub fault_min: Duration,
    pub fault_max: Duration,
}

impl ScheduleOptions {
    /// Faults last `interval/2 ..= interval`.
    pub fn new(interval: Duration, duration: Duration) -> Self {
        ScheduleOptions {
            interval,
            duration,
            fault_min: interval / 2,
            fault_max: interval,
        }
    }
}

/// A deterministic fault schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub kinds: Vec<NemesisKind>,
    pub nodes: Vec<NodeId>,
    pub options: ScheduleOptions,
    /// Sorted by start.
    pub faults: Vec<PlannedFault>,
}

/// The first round of seed `seed`: the round of its cycle (shuffled by the cycle's number
/// alone, so the cycle's seeds share it), rotated so that each of the cycle's seeds starts
/// where the previous one's `per_run` faults end (see the module doc).
fn first_round(seed: u64, kinds: &[NemesisKind], per_run: usize) -> Vec<NemesisKind> {
    let per_run = per_run.clamp(1, kinds.len().max(1));
    let seeds_per_cycle = kinds.len().div_ceil(per_run) as u64;
    let (cycle, place) = (seed / seeds_per_cycle, seed % seeds_per_cycle);
    let mut round = kinds.to_vec();
    // Forked so that the cycle's stream is not the stream of the seed equal to its number.
    Rng::new(cycle).fork(FIRST_ROUND_STREAM).shuffle(&mut round);
    round.rotate_left(place as usize * per_run);
    round
}

/// The label of the stream that shuffles a cycle's first round.
const FIRST_ROUND_STREAM: u64 = 1;

impl Schedule {
    /// A schedule of `kinds` over `nodes` within `duration`, faults `interval` apart on average.
    pub fn new(
        seed: u64,
        kinds: &[NemesisKind],
        nodes: &[NodeId],
        interval: Duration,
        duration: Duration,
    ) -> Result<Schedule, NemesisError> {
        Schedule::with_options(seed, kinds, nodes, ScheduleOptions::new(interval, duration))
    }

    pub fn with_options(
        seed: u64,
        kinds: &[NemesisKind],
        nodes: &[NodeId],
        options: ScheduleOptions,
    ) -> Result<Schedule, NemesisError> {
        let mut kinds: Vec<NemesisKind> = kinds.to_vec();
        let mut seen = BTreeSet::new();
        kinds.retain(|k| seen.insert(*k));
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let mut schedule = Schedule {
            seed,
            kinds: kinds.clone(),
            nodes: nodes.clone(),
            options,
            faults: Vec::new(),
        };
        if kinds.is_empty() {
            return Ok(schedule);
        }
        if nodes.len() < MIN_NODES {
            return Err(NemesisError::TooFewNodes {
                kinds: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
                nodes: nodes.len(),
            });
        }
        if options.interval.is_zero() || options.fault_max < options.fault_min {
            return Err(NemesisError::BadTiming(format!(
                "interval {:?} must be positive and fault time {:?}..{:?} a range",
                options.interval, options.fault_min, options.fault_max
            )));
        }
        let mut rng = Rng::new(seed);
        let max_down = (nodes.len() - 1) / 2;
        let ms = |d: Duration| d.as_millis() as u64;
        let interval = ms(options.interval).max(1);
        let (fault_min, fault_max) = (ms(options.fault_min).max(1), ms(options.fault_max).max(1));
        let duration = ms(options.duration);
        let per_run = duration.saturating_sub(fault_min) / interval;
        let mut round = first_round(seed, &kinds, per_run as usize);
        let mut t = interval;
        while t + fault_min <= duration {
            let end = (t + rng.range(fault_min, fault_max)).min(duration);
            let active: Vec<&PlannedFault> =
                schedule.faults.iter().filter(|f| ms(f.end) > t).collect();
            let partitioned = active
                .iter()
                .any(|f| f.fault.kind().needs_the_links_alone());
            let down: BTreeSet<NodeId> =
                active.iter().filter_map(|f| f.fault.down_node()).collect();
            let power_cut = active.iter().any(|f| f.fault.kind().runs_alone());
            // A power cut runs alone: nothing else starts while it lasts, and it waits
            // for every other fault to end (it is the only one beyond a minority). Other
            // kinds need room in each family they belong to (`freeze-leader`: both).
            let fits = |k: &NemesisKind| {
                if k.runs_alone() {
                    active.is_empty()
                } else if power_cut {
                    false
                } else {
                    (!k.needs_the_links_alone() || !partitioned)
                        && (!k.takes_node_down() || down.len() < max_down)
                }
            };
            if round.is_empty() {
                round = kinds.clone();
                rng.shuffle(&mut round);
            }
            let Some(pos) = round.iter().position(fits) else {
                // Nothing fits now: wait until the first active fault ends.
                t = active
                    .iter()
                    .map(|f| ms(f.end))
                    .min()
                    .unwrap_or(t + 1)
                    .max(t + 1);
                continue;
            };
            let kind = round.remove(pos);
            let up: Vec<NodeId> = nodes
                .iter()
                .copied()
                .filter(|n| !down.contains(n))
                .collect();
            let mut order = nodes.clone();
            rng.shuffle(&mut order);
            let pick = |rng: &mut Rng, from: &[NodeId]| {
                from.get(rng.below(from.len() as u64) as usize).copied()
            };
            let fault = match kind {
                NemesisKind::Kill | NemesisKind::KillLeader => {
                    pick(&mut rng, &up).map(|node| Fault::Kill {
                        node,
                        leader: kind == NemesisKind::KillLeader,
                    })
                }
                NemesisKind::Pause | NemesisKind::PauseLeader => {
                    pick(&mut rng, &up).map(|node| Fault::Pause {
                        node,
                        leader: kind == NemesisKind::PauseLeader,
                    })
                }
                NemesisKind::KillAll => Some(Fault::KillAll),
                NemesisKind::PacketLoss => Some(Fault::PacketLoss),
                NemesisKind::Latency => Some(Fault::Latency),
                NemesisKind::PartitionHalves => Some(Fault::Partition(partition::halves(&order))),
                NemesisKind::PartitionMajoritiesRing => {
                    Some(Fault::Partition(partition::majorities_ring(&order)))
                }
                NemesisKind::PartitionBridge => Some(Fault::Partition(partition::bridge(&order))),
                NemesisKind::PartitionOne => {
                    Some(Fault::Partition(partition::isolate(kind, order[0], &nodes)))
                }
                NemesisKind::IsolateLeader => Some(Fault::IsolateLeader { fallback: order[0] }),
                NemesisKind::FreezeLeader => {
                    pick(&mut rng, &up).map(|fallback| Fault::FreezeLeader { fallback })
                }
                NemesisKind::Membership => {
                    pick(&mut rng, &up).map(|node| Fault::RemoveMember { node })
                }
                NemesisKind::Transfer => Some(Fault::Transfer { to: order[0] }),
                NemesisKind::PowerCut => Some(Fault::PowerCut),
                NemesisKind::LoseUnsynced => {
                    pick(&mut rng, &up).map(|node| Fault::LoseUnsynced { node })
                }
                NemesisKind::DiskFull => pick(&mut rng, &up).map(|node| Fault::DiskFull { node }),
                NemesisKind::Corrupt => pick(&mut rng, &up).map(|node| Fault::Corrupt { node }),
            };
            if let Some(fault) = fault {
                schedule.faults.push(PlannedFault {
                    start: Duration::from_millis(t),
                    end: Duration::from_millis(end),
                    fault,
                });
            }
            t += rng.range(interval / 2, interval + interval / 2).max(1);
        }
        Ok(schedule)
    }

    /// Every start, wake-up (`freeze-leader` only) and stop in time order (at equal times:
    /// stops first, then wake-ups, then starts, then by fault).
    pub fn steps(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = self
            .faults
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                let step = |at, action| Step {
                    at,
                    action,
                    fault: i,
                };
                [
                    Some(step(f.start, Action::Start)),
                    f.wake_at().map(|at| step(at, Action::Wake)),
                    Some(step(f.end, Action::Stop)),
                ]
                .into_iter()
                .flatten()
            })
            .collect();
        steps.sort_by_key(|s| (s.at, s.action, s.fault));
        steps
    }

    /// How many faults of each kind are planned.
    pub fn counts(&self) -> BTreeMap<NemesisKind, usize> {
        let mut counts: BTreeMap<NemesisKind, usize> = self.kinds.iter().map(|k| (*k, 0)).collect();
        for f in &self.faults {
            *counts.entry(f.fault.kind()).or_default() += 1;
        }
        counts
    }

    /// The most nodes killed or paused at the same time (a `freeze-leader` node counts from
    /// its start to its end: woken, it is still cut off).
    pub fn max_down(&self) -> usize {
        let mut down = BTreeSet::new();
        let mut most = 0;
        for step in self.steps() {
            let Some(node) = self.faults[step.fault].fault.down_node() else {
                continue;
            };
            match step.action {
                Action::Start => {
                    down.insert(node);
                }
                Action::Stop => {
                    down.remove(&node);
                }
                Action::Wake => {}
            }
            most = most.max(down.len());
        }
        most
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind the schedule can draw: `all`, `latency` and the storage faults.
    fn every_kind() -> Vec<NemesisKind> {
        let kinds = NemesisKind::ALL.iter().chain(&NemesisKind::OWN_INTERFACES);
        kinds.chain(&NemesisKind::DISK).copied().collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn same_seed_same_schedule_and_another_seed_differs() {
        let nodes = [1, 2, 3, 4, 5];
        let a = Schedule::new(7, &NemesisKind::ALL, &nodes, secs(2), secs(60)).unwrap();
        let b = Schedule::new(7, &NemesisKind::ALL, &nodes, secs(2), secs(60)).unwrap();
        let c = Schedule::new(8, &NemesisKind::ALL, &nodes, secs(2), secs(60)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.faults, c.faults);
    }

    /// `kv.toml`'s timing over 30 s: faults 6 s apart on average, 3 s long (room for 4).
    fn kv_30s() -> ScheduleOptions {
        ScheduleOptions {
            interval: secs(6),
            duration: secs(30),
            fault_min: secs(3),
            fault_max: secs(3),
        }
    }

    /// Every kind `floor(K/N)` or `ceil(K/N)` times in a schedule of `K` faults.
    fn assert_even(s: &Schedule, what: &str) {
        let k = s.faults.len();
        let n = s.kinds.len();
        for (kind, count) in s.counts() {
            assert!(
                count == k / n || count == k.div_ceil(n),
                "{what}: {kind} {count} times in {k} faults of {n} kinds: {:?}",
                s.counts()
            );
        }
    }

    #[test]
    fn every_kind_appears_evenly_whatever_the_limits() {
        // Roomy (every fault alone) and crowded (overlaps: the limits defer kinds).
        let roomy = |duration| ScheduleOptions {
            interval: secs(2),
            duration,
            fault_min: secs(1),
            fault_max: secs(1),
        };
        let crowded = |duration| ScheduleOptions {
            interval: Duration::from_millis(500),
            duration,
            fault_min: Duration::from_millis(200),
            fault_max: secs(3),
        };
        for seed in 0..40 {
            for duration in [secs(10), secs(30), secs(61), secs(120)] {
                for (name, options) in [("roomy", roomy(duration)), ("crowded", crowded(duration))]
                {
                    for nodes in [&[1, 2, 3][..], &[1, 2, 3, 4, 5]] {
                        let s =
                            Schedule::with_options(seed, &every_kind(), nodes, options).unwrap();
                        assert_even(&s, &format!("{name} seed {seed} {duration:?}"));
                    }
                }
            }
            let s = Schedule::new(seed, &every_kind(), &[1, 2, 3], secs(1), secs(30)).unwrap();
            for (kind, count) in s.counts() {
                assert!(count > 0, "seed {seed}: no {kind}: {:?}", s.faults);
            }
        }
    }

    #[test]
    fn a_kind_that_does_not_fit_is_tried_again_at_the_next_start() {
        // Faults overlap (4 s long, 1 s apart on average): a network fault in effect defers
        // the next one, which then starts first once the links are free, before any
        // kind after it in the round repeats.
        let kinds = [
            NemesisKind::PartitionHalves,
            NemesisKind::PacketLoss,
            NemesisKind::Kill,
            NemesisKind::Transfer,
        ];
        let options = ScheduleOptions {
            interval: secs(1),
            duration: secs(60),
            fault_min: secs(4),
            fault_max: secs(4),
        };
        let mut during_network_faults = 0;
        for seed in 0..20 {
            let s = Schedule::with_options(seed, &kinds, &[1, 2, 3, 4, 5], options).unwrap();
            assert_even(&s, &format!("seed {seed}"));
            let order: Vec<NemesisKind> = s.faults.iter().map(|f| f.fault.kind()).collect();
            // Every round (4 faults in a row, from the start) holds every kind once.
            for round in order.chunks_exact(kinds.len()) {
                let set: BTreeSet<NemesisKind> = round.iter().copied().collect();
                assert_eq!(set.len(), kinds.len(), "seed {seed}: {order:?}");
            }
            during_network_faults += s
                .faults
                .iter()
                .filter(|f| {
                    s.faults.iter().any(|n| {
                        n.fault.kind().needs_network() && n.start < f.start && f.start < n.end
                    })
                })
                .count();
        }
        // The limits were in play: faults started while a network fault was in effect, when
        // the other network kind, if next in line, had to wait.
        assert!(during_network_faults > 0);
    }

    #[test]
    fn consecutive_seeds_cover_every_kind_between_them() {
        // 30 s of kv.toml has room for about 4 faults: a cycle is ceil(14/4) = 4 seeds, whose
        // first 4 faults each are 16 draws along one shuffled round (every kind, 2 twice). A
        // run with room for fewer leaves the rest of its share undrawn.
        let per_run = 4;
        let cycle = NemesisKind::ALL.len().div_ceil(per_run) as u64;
        let mut first_faults = BTreeSet::new();
        let mut total: BTreeMap<NemesisKind, usize> = BTreeMap::new();
        for c in 250..300 {
            let mut seen = BTreeSet::new();
            let mut short = 0;
            for seed in c * cycle..(c + 1) * cycle {
                let s = Schedule::with_options(seed, &NemesisKind::ALL, &[1, 2, 3, 4, 5], kv_30s())
                    .unwrap();
                short += per_run.saturating_sub(s.faults.len());
                seen.extend(s.faults.iter().take(per_run).map(|f| f.fault.kind()));
                for (kind, n) in s.counts() {
                    *total.entry(kind).or_default() += n;
                }
                first_faults.insert(s.faults[0].fault.kind());
            }
            assert!(
                seen.len() + short >= NemesisKind::ALL.len(),
                "cycle {c}: {seen:?}, {short} faults short"
            );
        }
        // Over 200 runs, every kind within a fifth of the mean.
        let mean = total.values().sum::<usize>() / total.len();
        assert!(
            total
                .values()
                .all(|n| n * 5 >= mean * 4 && n * 5 <= mean * 6),
            "{total:?}"
        );
        // Cycles are shuffled apart: runs do not all start with the same few kinds.
        assert!(first_faults.len() > 4, "{first_faults:?}");
    }

    /// Prints the kinds of five 30 s kv.toml schedules (seeds 1001..=1005, as a soak draws
    /// them) and their totals: `cargo test -p client --lib soak_coverage -- --nocapture`.
    #[test]
    fn soak_coverage() {
        let mut total: BTreeMap<NemesisKind, usize> = BTreeMap::new();
        for seed in 1001..=1005 {
            let s = Schedule::with_options(seed, &NemesisKind::ALL, &[1, 2, 3, 4, 5], kv_30s())
                .unwrap();
            let kinds: Vec<&str> = s.faults.iter().map(|f| f.fault.kind().name()).collect();
            println!("seed {seed}: {}", kinds.join(" "));
            for (kind, n) in s.counts() {
                *total.entry(kind).or_default() += n;
            }
        }
        let line: Vec<String> = total.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("total: {}", line.join(" "));
        // Before seeds shared their rounds, one kind came up in all five runs and five
        // kinds in none.
        assert!(total.values().all(|n| *n <= 2), "{total:?}");
    }

    #[test]
    fn limits_hold_and_everything_ends_in_time() {
        for n in 3..=7u64 {
            let nodes: Vec<NodeId> = (1..=n).collect();
            for seed in 0..50 {
                let s = Schedule::with_options(
                    seed,
                    &every_kind(),
                    &nodes,
                    ScheduleOptions {
                        interval: Duration::from_millis(500),
                        duration: secs(20),
                        fault_min: Duration::from_millis(200),
                        fault_max: secs(3),
                    },
                )
                .unwrap();
                assert!(!s.faults.is_empty());
                assert!(s.max_down() <= (n as usize - 1) / 2, "n={n} seed {seed}");
                let mut partitions = 0i32;
                for step in s.steps() {
                    let f = &s.faults[step.fault];
                    assert!(f.start < f.end && f.end <= s.options.duration);
                    if f.fault.kind().needs_the_links_alone() {
                        partitions += match step.action {
                            Action::Start => 1,
                            Action::Stop => -1,
                            Action::Wake => 0,
                        };
                        assert!(partitions <= 1, "two network faults at once: seed {seed}");
                    }
                }
                assert_eq!(partitions, 0);
                // A power cut overlaps no other fault.
                for (i, cut) in s.faults.iter().enumerate() {
                    if !cut.fault.kind().runs_alone() {
                        continue;
                    }
                    for (j, other) in s.faults.iter().enumerate() {
                        let overlaps = other.start < cut.end && cut.start < other.end;
                        assert!(
                            i == j || !overlaps,
                            "n={n} seed {seed}: {other:?} during {cut:?}"
                        );
                    }
                }
                // Nodes faulted are nodes of the cluster.
                for f in &s.faults {
                    if let Some(node) = f.fault.down_node() {
                        assert!(nodes.contains(&node));
                    }
                }
            }
        }
    }

    #[test]
    fn timing_follows_the_options() {
        let s = Schedule::new(
            3,
            &[NemesisKind::PartitionHalves],
            &[1, 2, 3],
            secs(2),
            secs(30),
        )
        .unwrap();
        let first = &s.faults[0];
        assert_eq!(first.start, secs(2));
        for f in &s.faults {
            let length = f.end - f.start;
            assert!(length >= secs(1) && length <= secs(2), "{length:?}");
        }
        for pair in s.faults.windows(2) {
            let gap = pair[1].start - pair[0].start;
            assert!(gap >= secs(1) && gap <= secs(3), "{gap:?}");
            // One partition at a time: the next starts after the previous healed.
            assert!(pair[1].start >= pair[0].end);
        }
    }

    #[test]
    fn leader_kinds_plan_leader_faults() {
        let kinds = [NemesisKind::KillLeader, NemesisKind::PauseLeader];
        let s = Schedule::new(9, &kinds, &[1, 2, 3], secs(2), secs(30)).unwrap();
        let planned: BTreeSet<NemesisKind> = s.faults.iter().map(|f| f.fault.kind()).collect();
        assert_eq!(planned, kinds.into_iter().collect());
        assert!(s.faults.iter().all(|f| matches!(
            f.fault,
            Fault::Kill { leader: true, .. } | Fault::Pause { leader: true, .. }
        )));
    }

    #[test]
    fn freeze_leader_wakes_between_start_and_end_and_counts_in_both_families() {
        let kinds = [
            NemesisKind::FreezeLeader,
            NemesisKind::PauseLeader,
            NemesisKind::IsolateLeader,
        ];
        for seed in 0..30 {
            let s = Schedule::new(seed, &kinds, &[1, 2, 3], secs(2), secs(40)).unwrap();
            assert!(s.counts()[&NemesisKind::FreezeLeader] > 0, "seed {seed}");
            let steps = s.steps();
            let wakes: Vec<&Step> = steps.iter().filter(|x| x.action == Action::Wake).collect();
            let freezes = s
                .faults
                .iter()
                .filter(|f| matches!(f.fault, Fault::FreezeLeader { .. }))
                .count();
            assert_eq!(wakes.len(), freezes);
            assert_eq!(steps.len(), 2 * s.faults.len() + freezes);
            for (i, f) in s.faults.iter().enumerate() {
                let Some(wake) = f.wake_at() else {
                    assert!(!matches!(f.fault, Fault::FreezeLeader { .. }));
                    continue;
                };
                // Three quarters into the fault, strictly inside it.
                assert!(f.start < wake && wake < f.end, "{f:?}");
                assert_eq!(wake, f.start + (f.end - f.start) * 3 / 4);
                // The fault's own steps come start, wake, stop.
                let at = |a: Action| {
                    steps
                        .iter()
                        .position(|x| x.fault == i && x.action == a)
                        .unwrap()
                };
                assert!(at(Action::Start) < at(Action::Wake));
                assert!(at(Action::Wake) < at(Action::Stop));
                assert_eq!(steps[at(Action::Wake)].at, wake);
                // Its fallback node was up: 3 nodes allow one down, so no pause overlaps.
                for other in &s.faults {
                    let overlaps = other.start < f.end && f.start < other.end;
                    if other != f && overlaps {
                        assert!(
                            !other.fault.kind().needs_network()
                                && other.fault.down_node().is_none(),
                            "seed {seed}: {other:?} during {f:?}"
                        );
                    }
                }
            }
            assert!(s.max_down() <= 1);
        }
    }

    #[test]
    fn steps_order_stop_then_wake_then_start_at_equal_times() {
        assert!(Action::Stop < Action::Wake && Action::Wake < Action::Start);
        let fault = |start: u64, end: u64, fault: Fault| PlannedFault {
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            fault,
        };
        // A freeze waking at 1000 ms (400 + 800·3/4), a pause ending then and a kill
        // starting then.
        let s = Schedule {
            seed: 0,
            kinds: vec![
                NemesisKind::FreezeLeader,
                NemesisKind::Pause,
                NemesisKind::Kill,
            ],
            nodes: vec![1, 2, 3, 4, 5],
            options: ScheduleOptions::new(secs(1), secs(5)),
            faults: vec![
                fault(
                    200,
                    1000,
                    Fault::Pause {
                        node: 2,
                        leader: false,
                    },
                ),
                fault(400, 1200, Fault::FreezeLeader { fallback: 1 }),
                fault(
                    1000,
                    1500,
                    Fault::Kill {
                        node: 3,
                        leader: false,
                    },
                ),
            ],
        };
        let steps: Vec<(u64, Action, usize)> = s
            .steps()
            .iter()
            .map(|x| (x.at.as_millis() as u64, x.action, x.fault))
            .collect();
        assert_eq!(
            steps,
            vec![
                (200, Action::Start, 0),
                (400, Action::Start, 1),
                (1000, Action::Stop, 0),
                (1000, Action::Wake, 1),
                (1000, Action::Start, 2),
                (1200, Action::Stop, 1),
                (1500, Action::Stop, 2),
            ]
        );
        // The frozen node counts as down from its start to its end, woken or not.
        assert_eq!(s.max_down(), 2);
    }

    #[test]
    fn no_kinds_no_faults_and_too_few_nodes_is_an_error() {
        let s = Schedule::new(1, &[], &[1], secs(1), secs(10)).unwrap();
        assert!(s.faults.is_empty());
        let err = Schedule::new(1, &[NemesisKind::Kill], &[1, 2], secs(1), secs(10)).unwrap_err();
        assert!(err.to_string().contains("3 nodes"), "{err}");
        let err = Schedule::new(
            1,
            &[NemesisKind::Kill],
            &[1, 2, 3],
            Duration::ZERO,
            secs(10),
        )
        .unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");
    }

    #[test]
    fn steps_stop_before_start_at_the_same_time() {
        let s = Schedule::new(
            5,
            &[NemesisKind::PartitionOne],
            &[1, 2, 3],
            secs(1),
            secs(20),
        )
        .unwrap();
        let steps = s.steps();
        for pair in steps.windows(2) {
            assert!(pair[0].at <= pair[1].at);
            if pair[0].at == pair[1].at {
                assert!(pair[0].action <= pair[1].action);
            }
        }
        assert_eq!(steps.len(), 2 * s.faults.len());
    }
}
