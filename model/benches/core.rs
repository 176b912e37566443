//! Throughput benchmark of the Raft core: committed entries per second through a 3-node
//! in-memory cluster (not a test; run with `cargo bench -p model --bench core`).
//!
//! The harness does exactly what the persistence contract asks, synchronously: for every
//! Ready of every node it appends the entries (and hard state) to that node's in-memory
//! storage, queues the messages, applies the committed entries, and calls `advance`; then
//! it delivers every queued message (one round). There is no network model, no clock and no
//! fsync cost: this measures the core's own cost per entry, with batching (up to
//! `max_batch` entries per AppendEntries) and pipelining (up to `max_inflight` in flight).
//!
//! `P` concurrent proposers keep up to `P` proposals outstanding: before each round the
//! leader gets one proposal per free proposer, and every entry the leader applies frees one.
//! Commands are tiny (`u64`). Logs are compacted every `COMPACT_EVERY` applied entries, as a
//! server would, so memory stays bounded.
//!
//! Environment: `BENCH_SECS` (default 2) is the measured time per setting.

use model::core::{Config, Entry, EntryKind, HardState, Message, NodeId, Raft, Role};
use std::time::{Duration, Instant};

const NODES: [NodeId; 3] = [1, 2, 3];
const COMPACT_EVERY: u64 = 1 << 16;

/// One node's durable state, kept in memory.
struct Storage {
    hard_state: HardState,
    /// Index of the first entry in `entries` minus one.
    offset: u64,
    entries: Vec<Entry<u64>>,
}

impl Storage {
    fn append(&mut self, new: &[Entry<u64>]) {
        let first = new[0].index;
        let keep = (first - 1 - self.offset) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(new);
    }
}

struct Bench {
    nodes: Vec<Raft<u64>>,
    storage: Vec<Storage>,
    inbox: Vec<Message<u64>>,
    /// Entries applied by the leader (each frees a proposer).
    committed: u64,
    /// Most messages in one round, and rounds run (for the report).
    rounds: u64,
}

impl Bench {
    fn new(max_batch: usize, max_inflight: usize) -> Self {
        let nodes = NODES
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.max_batch = max_batch;
                config.max_inflight = max_inflight;
                Raft::new(config, NODES)
            })
            .collect();
        let storage = NODES
            .iter()
            .map(|_| Storage {
                hard_state: HardState::default(),
                offset: 0,
                entries: Vec::new(),
            })
            .collect();
        let mut bench = Bench {
            nodes,
            storage,
            inbox: Vec::new(),
            committed: 0,
            rounds: 0,
        };
        bench.nodes[0].election_timeout();
        while bench.nodes[0].role() != Role::Leader {
            bench.round();
        }
        // Let the no-op commit so the measured entries are all commands.
        for _ in 0..4 {
            bench.round();
        }
        bench.committed = 0;
        bench
    }

    /// Processes every node's Ready, then delivers every message once.
    fn round(&mut self) {
        self.rounds += 1;
        for (i, raft) in self.nodes.iter_mut().enumerate() {
            while let Some(ready) = raft.ready() {
                let storage = &mut self.storage[i];
                if let Some(hs) = ready.hard_state {
                    storage.hard_state = hs;
                }
                if !ready.entries.is_empty() {
                    storage.append(&ready.entries);
                }
                self.inbox.extend(ready.messages);
                if i == 0 {
                    self.committed += ready
                        .committed
                        .iter()
                        .filter(|e| matches!(e.kind, EntryKind::Command(_)))
                        .count() as u64;
                }
                raft.advance();
                let applied = raft.applied_index();
                if applied >= storage.offset + COMPACT_EVERY && raft.compact(applied, Vec::new()) {
                    let drop = (applied - storage.offset) as usize;
                    storage.entries.drain(..drop.min(storage.entries.len()));
                    storage.offset = applied;
                }
            }
        }
        for msg in self.inbox.drain(..) {
            let to = (msg.to - 1) as usize;
            self.nodes[to].step(msg).unwrap();
        }
    }
}

struct Outcome {
    committed: u64,
    elapsed: Duration,
    rounds: u64,
}

fn run(proposers: u64, max_batch: usize, max_inflight: usize, secs: f64) -> Outcome {
    let mut bench = Bench::new(max_batch, max_inflight);
    let mut proposed = 0u64;
    let mut next_command = 0u64;
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let rounds_before = bench.rounds;
    loop {
        for _ in 0..64 {
            let outstanding = proposed - bench.committed;
            for _ in outstanding..proposers {
                bench.nodes[0]
                    .propose(next_command)
                    .expect("node 1 stays leader");
                next_command += 1;
                proposed += 1;
            }
            bench.round();
        }
        if start.elapsed() >= deadline {
            break;
        }
    }
    Outcome {
        committed: bench.committed,
        elapsed: start.elapsed(),
        rounds: bench.rounds - rounds_before,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let defaults = Config::new(1);
    let (max_batch, max_inflight) = (defaults.max_batch, defaults.max_inflight);
    println!(
        "raft core throughput: 3 nodes in memory, synchronous persist, every message delivered \
         each round; max_batch={max_batch} max_inflight={max_inflight} command=u64 \
         compact_every={COMPACT_EVERY} measured={secs}s per setting"
    );
    // Warm-up (page faults, allocator, caches).
    run(256, max_batch, max_inflight, 0.3);
    for proposers in [1u64, 256] {
        let o = run(proposers, max_batch, max_inflight, secs);
        let per_sec = o.committed as f64 / o.elapsed.as_secs_f64();
        println!(
            "proposers={proposers:>3}: {:>12.0} committed entries/s  ({} entries in {:.2}s, {:.1} entries/round, {:.0} ns/round)",
            per_sec,
            o.committed,
            o.elapsed.as_secs_f64(),
            o.committed as f64 / o.rounds as f64,
            o.elapsed.as_nanos() as f64 / o.rounds as f64,
        );
    }
}
