//! The seeded deterministic simulator: N replicas of the real core, a hostile simulated
//! network, crashing disks-and-all servers, and Jepsen-style clients, in one discrete-time
//! event loop.
//!
//! ```text
//!   SimConfig ──> runner (event queue, ordered by (time, seq))
//!                   │ Tick / Deliver / Persisted / Request / Reply / Nemesis / Crash / Restart
//!                   ├─ servers: Replica + durable Storage + the Ready in flight  (storage.rs)
//!                   ├─ network: delay, loss, duplication, partitions            (network.rs)
//!                   ├─ nemesis: partitions, crashes, pauses, targeted crashes   (nemesis.rs)
//!                   ├─ clients: sequential processes, retries, history          (clients.rs)
//!                   ├─ after every event: Raft's safety properties              (invariants.rs)
//!                   └─ liveness after the heal, needless snapshots, read pacing (liveness.rs)
//!   at the end: the history (JSON Lines) -> checker::check (cas-register)  ──> SimReport
//! ```
//!
//! Everything random comes from the run's seed ([`rng`]); the simulation reads no clock,
//! starts no thread and iterates no hash map, so a seed replays bit for bit (only the final
//! history check, the checker crate's, runs keys in parallel under a wall-clock budget).
//! Readies are persisted after a simulated fsync delay; a crash in between loses them, and
//! their messages are never sent; a targeted crash can also strike after the fsync and before
//! the sends. (A crash is a power cut: under the storage bugs `skip-fsync`, `periodic-fsync`
//! and `skip-dir-fsync` it loses acknowledged writes that were never synced: see [`storage`].
//! Under `send-before-persist`
//! a Ready's messages leave when it is taken, before its fsync, so a crash in between loses
//! writes they promised.) A paused server (SIGSTOP) keeps its memory and misses the time in
//! between (see the runner).
//!
//! Use [`run`] with a [`SimConfig`] (e.g. [`SimConfig::randomized`]) and inspect the
//! [`SimReport`].

pub mod clients;
pub mod history;
pub mod invariants;
pub mod liveness;
pub mod nemesis;
pub mod network;
pub mod rng;
mod runner;
pub mod storage;
pub mod workload;

use crate::bugs::{Bug, Bugs};
pub use checker::Verdict;
pub use clients::ClientTiming;
pub use nemesis::NemesisConfig;
pub use network::{NetworkFaults, Shape};
use std::fmt;

/// Everything a run depends on. The same config gives the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Number of servers (ids `1..=nodes`).
    pub nodes: usize,
    /// Concurrent client processes.
    pub clients: usize,
    /// Simulated milliseconds of workload under faults.
    pub duration: u64,
    /// Simulated milliseconds of workload after every fault is healed (extended by half a
    /// period at a time, up to three periods in all, while no operation has succeeded since
    /// the heal).
    pub quiet: u64,
    /// After the workload stops, how long outstanding operations may still complete.
    pub drain: u64,
    pub bugs: Bugs,
    /// Each server compacts its log every this many applied entries (0: never).
    pub compact_every: u64,
    pub max_batch: usize,
    pub max_inflight: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Milliseconds per core tick (the core's election timeout is 10 to 20 ticks).
    pub tick: u64,
    /// A Ready's fsync takes `0..=persist_delay` milliseconds.
    pub persist_delay: u64,
    pub network: NetworkFaults,
    pub nemesis: NemesisConfig,
    pub timing: ClientTiming,
    /// Simulated milliseconds after which an unused client session expires (the servers'
    /// `KvConfig::expire_after_ms`; the leader stamps commands with simulated time).
    pub session_expiry: u64,
    /// Check the recorded history with the linearizability checker at the end.
    pub check_history: bool,
    /// Keep a description of the last this many events (0: none) for the report.
    pub trace: usize,
    /// Stop after this many events (a guard; a normal run never reaches it).
    pub max_events: u64,
}

impl SimConfig {
    /// A 3- or 5-server cluster with every fault kind at moderate rates.
    pub fn new(seed: u64, nodes: usize) -> Self {
        SimConfig {
            seed,
            nodes,
            clients: 4,
            duration: 2000,
            quiet: 1000,
            drain: 1000,
            bugs: Bugs::none(),
            compact_every: 20,
            max_batch: 64,
            max_inflight: 8,
            pre_vote: true,
            check_quorum: true,
            tick: 10,
            persist_delay: 3,
            network: NetworkFaults {
                loss: 0.03,
                duplicate: 0.02,
                min_delay: 1,
                max_delay: 8,
                long_delay: 0.02,
            },
            nemesis: NemesisConfig::all(nodes),
            timing: ClientTiming::default(),
            session_expiry: crate::kv::DEFAULT_EXPIRE_AFTER_MS,
            check_history: true,
            trace: 0,
            max_events: 2_000_000,
        }
    }

    /// Everything drawn from the seed: 3 or 5 servers, client count, network loss,
    /// duplication and delays, batching and pipelining, compaction, pre-vote and
    /// check-quorum, fsync delay, the nemesis's pace and leader bias, and the rates of the
    /// targeted crashes. Every fault kind is on.
    pub fn randomized(seed: u64) -> Self {
        let mut r = rng::Rng::new(rng::mix(seed ^ 0x5EED_C0DE));
        let nodes = if r.chance(0.5) { 3 } else { 5 };
        let mut c = SimConfig::new(seed, nodes);
        let pick = |r: &mut rng::Rng, xs: &[u64]| r.pick(xs).copied().unwrap_or(0);
        c.clients = r.range(3, 6) as usize;
        c.compact_every = pick(&mut r, &[0, 5, 10, 30, 100]);
        c.max_batch = pick(&mut r, &[1, 2, 4, 64, 256]) as usize;
        c.max_inflight = pick(&mut r, &[1, 2, 8, 32]) as usize;
        c.pre_vote = r.chance(0.8);
        c.check_quorum = r.chance(0.8);
        c.persist_delay = pick(&mut r, &[0, 1, 3, 8]);
        c.network = NetworkFaults {
            loss: [0.0, 0.01, 0.05, 0.15][r.below(4) as usize],
            duplicate: [0.0, 0.02, 0.1][r.below(3) as usize],
            min_delay: 1,
            max_delay: pick(&mut r, &[2, 5, 10, 25]),
            long_delay: [0.0, 0.01, 0.05][r.below(3) as usize],
        };
        c.nemesis.interval = pick(&mut r, &[120, 250, 500]);
        c.nemesis.leader_bias = [0.2, 0.5, 0.8][r.below(3) as usize];
        c.nemesis.crash_after_vote = [0.0, 0.05, 0.3][r.below(3) as usize];
        c.nemesis.crash_after_ack = [0.0, 0.02, 0.1][r.below(3) as usize];
        c.nemesis.crash_new_leader = [0.0, 0.05, 0.3][r.below(3) as usize];
        c.nemesis.crash_after_commit = [0.0, 0.01, 0.05][r.below(3) as usize];
        c
    }

    /// A fault schedule aimed at the interleavings that `bug` needs in order to do harm (the
    /// bug itself is not switched on: a correct core must pass these schedules too). Starts
    /// from [`randomized`](Self::randomized) and narrows it:
    ///
    /// * `vote-twice`: leader churn (leaders crash right after their election or after
    ///   acknowledging a client), no pre-vote, five servers: many elections with several
    ///   candidates in the same term;
    /// * `forget-vote`: the same, and every server that grants a vote reboots at once;
    /// * `commit-old-term`: Figure 8's churn: three servers, one entry per AppendEntries, new
    ///   leaders crash right after their election (their entries stay on their disk only)
    ///   or right after their first commit (before their own-term entries spread);
    /// * `stale-read`: everything random, for longer (clients that stick to a lagging
    ///   follower or a deposed leader read old values);
    /// * `ack-before-commit`: partitions that isolate the leader (or cut its outgoing
    ///   links), no crashes, so that a deposed leader keeps acknowledging clients;
    /// * `no-dedup`: a lossy network and impatient clients, so that requests are retried
    ///   after their first attempt took effect;
    /// * `lease-read`: frequent pauses (SIGSTOP) aimed at the leader, long enough for another
    ///   leader to be elected and take writes, and partitions that isolate the leader; no crashes
    ///   (a restarted server has no lease). Without pauses it is never caught: a leader whose
    ///   ticks keep running lets its lease expire before a successor can be elected;
    /// * `apply-uncommitted`: five servers and partitions that isolate the leader while its
    ///   latest entries have reached only some followers, which apply them; the next leader
    ///   replaces them. No crashes (a restart rebuilds the state machine from the log);
    /// * `truncate-on-append`: three servers, a strongly reordering network (no duplication:
    ///   see below), one entry per AppendEntries and many in flight, so that older
    ///   AppendEntries overtake newer ones; one server isolated or crashed now and then (so
    ///   that a leader commits on the word of one follower) and leaders crashing right after
    ///   they acknowledge a client or first commit. (A follower that truncated acknowledged
    ///   entries cannot catch up from that leader, which never backs up below what it was
    ///   told is matched; with duplication the resulting probe/reject exchanges multiply.)
    /// * `skip-fsync`, `periodic-fsync`: three servers, leader churn, and crashes right after
    ///   a server grants a vote or a leader acknowledges a client, before its log is synced;
    /// * `skip-dir-fsync`: the same churn (any crash empties the crashed server's disk).
    /// * `send-before-persist`: `forget-vote`'s churn with slow fsyncs (up to 8 ms), so that a
    ///   server that grants a vote crashes within two milliseconds of sending it, while the
    ///   vote is still on its way to the disk;
    /// * `concurrent-membership`: everything random. The simulator never changes membership,
    ///   so it cannot catch this bug (the default `raft-model check` does).
    pub fn targeting(seed: u64, bug: Bug) -> Self {
        let mut c = SimConfig::randomized(seed);
        let churn = |c: &mut SimConfig, nodes: usize| {
            c.nodes = nodes;
            c.nemesis = NemesisConfig {
                interval: 0,
                crash_new_leader: 0.5,
                crash_after_vote: 0.0,
                crash_after_ack: 0.0,
                crash_after_commit: 0.0,
                ..NemesisConfig::all(nodes)
            };
            c.duration = 4000;
        };
        let isolate_leader = |c: &mut SimConfig| {
            c.nemesis = NemesisConfig {
                shapes: vec![Shape::IsolateLeader, Shape::OneWay, Shape::RandomSplit],
                leader_bias: 0.9,
                crashes: false,
                crash_new_leader: 0.0,
                crash_after_vote: 0.0,
                crash_after_ack: 0.0,
                crash_after_commit: 0.0,
                ..c.nemesis.clone()
            };
        };
        match bug {
            Bug::VoteTwice => {
                churn(&mut c, 5);
                c.pre_vote = false;
                c.nemesis.crash_after_ack = 0.2;
            }
            Bug::ForgetVote => {
                churn(&mut c, 5);
                c.pre_vote = false;
                c.nemesis.crash_after_ack = 0.2;
                c.nemesis.crash_after_vote = 1.0;
            }
            Bug::CommitOldTerm => {
                churn(&mut c, 3);
                c.max_batch = 1;
                c.nemesis.crash_new_leader = 0.8;
                c.nemesis.crash_after_commit = 1.0;
                c.duration = 6000;
            }
            Bug::StaleRead => c.duration = 4000,
            Bug::AckBeforeCommit => isolate_leader(&mut c),
            Bug::NoDedup => {
                c.network.loss = 0.15;
                c.timing.attempt_timeout = 60;
            }
            Bug::LeaseRead => {
                isolate_leader(&mut c);
                c.nemesis.shapes = vec![Shape::IsolateLeader];
                c.nemesis.pauses = true;
                c.nemesis.pause_time = (250, 800);
                c.nemesis.interval = 200;
                c.duration = 6000;
            }
            Bug::ApplyUncommitted => {
                isolate_leader(&mut c);
                c.nodes = 5;
                c.nemesis.shapes = vec![Shape::IsolateLeader];
            }
            Bug::TruncateOnAppend => {
                c.nodes = 3;
                c.max_batch = 1;
                c.max_inflight = 32;
                c.network = NetworkFaults {
                    loss: 0.02,
                    duplicate: 0.0,
                    min_delay: 1,
                    max_delay: 25,
                    long_delay: 0.05,
                };
                c.nemesis = NemesisConfig {
                    interval: 250,
                    shapes: vec![Shape::IsolateOne],
                    leader_bias: 0.5,
                    crash_after_ack: 0.6,
                    crash_new_leader: 0.0,
                    crash_after_vote: 0.0,
                    crash_after_commit: 0.6,
                    ..NemesisConfig::all(3)
                };
                c.duration = 4000;
            }
            Bug::SkipFsync | Bug::PeriodicFsync | Bug::SkipDirFsync => {
                churn(&mut c, 3);
                c.pre_vote = false;
                c.nemesis.crash_after_vote = 0.3;
                c.nemesis.crash_after_ack = 0.8;
            }
            Bug::SendBeforePersist => {
                churn(&mut c, 5);
                c.pre_vote = false;
                c.persist_delay = 8;
                c.nemesis.crash_after_ack = 0.2;
                c.nemesis.crash_after_vote = 1.0;
            }
            // No membership changes here: nothing to aim at.
            Bug::ConcurrentMembership => {}
        }
        c
    }

    /// The same run with `bug` switched on.
    pub fn with_bug(mut self, bug: Bug) -> Self {
        self.bugs = self.bugs.with(bug);
        self
    }
}

/// A violated safety property (or a core assertion that fired, or, for the correct core, a
/// liveness property of [`liveness`]), with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The Raft paper's name for the property, `"Core Assertion"` for a panic in the core,
    /// or `"Durability"` for a Ready that broke the persistence contract.
    pub property: &'static str,
    pub seed: u64,
    /// The event number (1-based) after which it was detected.
    pub step: u64,
    /// Simulated milliseconds.
    pub time: u64,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated (seed {}, step {}, t={}ms): {}",
            self.property, self.seed, self.step, self.time, self.detail
        )
    }
}

/// What happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    /// Simulated milliseconds when the run ended.
    pub end_time: u64,
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// `ok` completions after every fault was healed (liveness).
    pub ok_after_heal: u64,
    pub keys: u64,
    pub faults: u64,
    pub partitions: u64,
    pub crashes: u64,
    /// Pauses (SIGSTOP) of a server.
    pub pauses: u64,
    /// Written records (hard states, entries) that crashes lost because they were never
    /// synced (only under the storage bugs).
    pub unsynced_lost: u64,
    /// Leadership transfers the nemesis asked for.
    pub transfers: u64,
    pub elections: u64,
    pub snapshots_installed: u64,
    pub compactions: u64,
    /// Requests answered "session expired".
    pub sessions_expired: u64,
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Distinct log entries seen across all servers.
    pub entries: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub violation: Option<Violation>,
    /// The checker's verdict on the history; `None` when it was not checked (a violation
    /// ended the run, or `check_history` was off).
    pub verdict: Option<Verdict>,
    /// The checker's first anomaly, or why the history could not be checked.
    pub anomaly: Option<String>,
    pub stats: Stats,
    /// The recorded history, JSON Lines.
    pub history: String,
    /// The last events before the end (see [`SimConfig::trace`]).
    pub trace: Vec<String>,
}

impl SimReport {
    /// Whether a safety property failed or the history is not linearizable.
    pub fn caught(&self) -> bool {
        self.violation.is_some() || self.verdict == Some(Verdict::Invalid)
    }

    /// Whether the run is anything but clean (violation, invalid or unknown history).
    pub fn failed(&self) -> bool {
        self.violation.is_some() || self.verdict.is_some_and(|v| v != Verdict::Valid)
    }

    /// One line saying what went wrong, if anything.
    pub fn failure(&self) -> Option<String> {
        if let Some(v) = &self.violation {
            return Some(v.to_string());
        }
        match self.verdict {
            Some(Verdict::Valid) | None => None,
            Some(Verdict::Invalid) => Some(format!(
                "history not linearizable (seed {}): {}",
                self.seed,
                self.anomaly.as_deref().unwrap_or("no explanation")
            )),
            Some(Verdict::Unknown) => Some(format!(
                "history check gave up (seed {}): {}",
                self.seed,
                self.anomaly.as_deref().unwrap_or("budget exhausted")
            )),
        }
    }
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> SimReport {
    runner::run(config)
}
