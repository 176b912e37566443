//! The workload generator: `concurrency` sequential client processes (tokio tasks), each
//! driven by its own seeded RNG, recording every invoke before sending it and every
//! completion after its answer.
//!
//! - Keys are strings `"k<n>"`. `keys = "single"`: everyone works `"k0"`. `keys =
//!   "independent"` (Jepsen's independent generator): processes are split into groups of
//!   `processes_per_key`; a group works one key for at most `ops_per_key` operations, then
//!   takes a fresh key.
//! - Written values are unique per key (a counter per key; appends add `"<n>,"`) unless the
//!   workload asks for a `value_range`. A cas expects the last value its process saw for the
//!   key (read, written, or named by a cas mismatch), else the last value written to it.
//! - After an `info` the process continues as a NEW process id (`id + concurrency`, as in
//!   Jepsen) with a new client id: the old one may still have an operation in flight.
//! - A shared rate limiter spaces operations `1/rate` apart (all processes together).
//! - The op choice (which `f`, which random values) depends only on the seed and the
//!   process slot, so a seed reproduces the same sequence of choices per process.

use crate::history::{EventType, Recorder, Who};
use crate::kv::system::{Clients, SystemClient};
use crate::kv::OpResult;
use crate::lab::workload::{KeyShape, OpMix, Route, ValueShape, Workload};
use indicatif::{ProgressBar, ProgressStyle};
use model::core::NodeId;
use model::kv::{Operation, Outcome, Value};
use model::sim::rng::mix;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

/// One step of SplitMix64 (Steele, Lea, Flood): a tiny, good-enough seeded generator.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// A seeded RNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: no modulo bias worth caring about for a test generator.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The RNG seed of process slot `slot` in a run seeded `seed`.
pub fn slot_seed(seed: u64, slot: usize) -> u64 {
    let mut s = seed ^ (slot as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    splitmix64(&mut s)
}

/// A fresh seed when the workload gives none.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = nanos ^ u64::from(std::process::id()).rotate_left(40);
    // Keep seeds printable and re-typable.
    splitmix64(&mut s) % 1_000_000_000
}

/// An operation function of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum F {
    Read,
    Write,
    Cas,
    Append,
}

impl F {
    pub fn name(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Append => "append",
        }
    }
}

/// Chooses operations and random values for one process slot.
#[derive(Clone, Debug)]
pub struct OpChooser {
    rng: Rng,
    mix: OpMix,
}

impl OpChooser {
    pub fn new(seed: u64, slot: usize, mix: OpMix) -> Self {
        OpChooser {
            rng: Rng::new(slot_seed(seed, slot)),
            mix,
        }
    }

    /// The next operation function, by the mix's weights.
    pub fn next_f(&mut self) -> F {
        let total = self.mix.total();
        let mut pick = self.rng.below(total);
        for (f, w) in [
            (F::Read, self.mix.read),
            (F::Write, self.mix.write),
            (F::Cas, self.mix.cas),
            (F::Append, self.mix.append),
        ] {
            let w = u64::from(w);
            if pick < w {
                return f;
            }
            pick -= w;
        }
        F::Read
    }

    /// A random value in `0..n`.
    pub fn value_below(&mut self, n: u64) -> i64 {
        self.rng.below(n) as i64
    }
}

/// Live counters for the progress bar; the nemesis sets its state string.
#[derive(Debug, Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    nemesis: Mutex<String>,
    phase: Mutex<String>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        let p = Progress::default();
        p.set_nemesis("none");
        p.set_phase("starting");
        Arc::new(p)
    }

    /// What the nemesis is doing now (`"partition-halves [1 2] | [3 4 5]"`, `"healed"`...).
    pub fn set_nemesis(&self, state: impl Into<String>) {
        *self.nemesis.lock().unwrap_or_else(|p| p.into_inner()) = state.into();
    }

    pub fn nemesis(&self) -> String {
        self.nemesis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The run's phase (`"workload"`, `"recovery"`, `"final reads"`, `"checking"`).
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase.into();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn completed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.fail.load(Ordering::Relaxed)
            + self.info.load(Ordering::Relaxed)
    }

    fn count(&self, r: &OpResult) {
        let c = match r {
            OpResult::Ok(_) => &self.ok,
            OpResult::Fail { .. } => &self.fail,
            OpResult::Info(_) => &self.info,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The progress bar on stderr (hidden when stderr is not a terminal or `quiet`).
pub struct ProgressView {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl ProgressView {
    /// Starts redrawing `progress` every 200 ms against a limit of `limit`.
    pub fn start(progress: Arc<Progress>, limit: Duration, quiet: bool) -> ProgressView {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(limit.as_secs().max(1))
        };
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {elapsed:>4}/{len}s [{bar:24}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let started = Instant::now();
        let view = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                view.set_position(started.elapsed().as_secs().min(view.length().unwrap_or(0)));
                view.set_message(format!(
                    "{} | ops {} (ok {} fail {} info {}) | nemesis: {}",
                    progress.phase(),
                    progress.completed(),
                    progress.ok.load(Ordering::Relaxed),
                    progress.fail.load(Ordering::Relaxed),
                    progress.info.load(Ordering::Relaxed),
                    progress.nemesis()
                ));
                view.tick();
            }
        });
        ProgressView { bar, ticker }
    }

    /// Prints a line above the bar without garbling it.
    pub fn println(&self, line: impl AsRef<str>) {
        self.bar.println(line);
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// A group of processes sharing a key.
#[derive(Debug)]
struct Group {
    key: u64,
    /// Operations started on `key`.
    issued: u64,
    /// Next unique value for `key`.
    next_value: i64,
    /// The last value some write/cas/append on `key` tried to set.
    last_written: Option<Value>,
}

/// Which key and values each operation gets: the key groups and their counters.
pub struct KeyPlanner {
    /// Prepended to every key name (empty on a fresh cluster; unique per run on a reused one,
    /// so that earlier runs' values never show up in this run's history).
    prefix: String,
    keys: KeyShape,
    values: ValueShape,
    groups: Vec<Mutex<Group>>,
    next_key: AtomicU64,
}

/// What one process slot's choices depend on: its RNG, and what it has seen.
#[derive(Clone, Debug)]
pub struct SlotPlan {
    pub index: usize,
    chooser: OpChooser,
    /// Every key this slot operated on (for final reads).
    pub keys_used: BTreeSet<u64>,
    /// The last value this process saw for a key.
    last_seen: Option<(u64, Option<Value>)>,
}

impl SlotPlan {
    pub fn new(seed: u64, index: usize, mix: OpMix) -> Self {
        SlotPlan {
            index,
            chooser: OpChooser::new(seed, index, mix),
            keys_used: BTreeSet::new(),
            last_seen: None,
        }
    }

    /// Notes the value the process saw for `key` (read, written, or named by a mismatch).
    pub fn saw(&mut self, key: u64, value: Option<Value>) {
        self.last_seen = Some((key, value));
    }

    /// Forgets what the process saw (a new process id starts afresh).
    pub fn forget(&mut self) {
        self.last_seen = None;
    }
}

/// State shared by the process tasks.
struct Shared {
    recorder: Recorder,
    cluster: Clients,
    progress: Arc<Progress>,
    concurrency: usize,
    op_timeout: Duration,
    planner: KeyPlanner,
    route: Route,
    /// Earliest time the next operation may start (rate limiting), if limited.
    interval: Option<Duration>,
    next_start: Mutex<Option<Instant>>,
}

/// One process slot: a sequential client that may go through several process ids.
pub struct Slot {
    /// The current process id (`index + k * concurrency` after `k` infos).
    pub process: u64,
    /// The node this slot's clients are bound to (`route = "node"`).
    pub home: Option<NodeId>,
    pub plan: SlotPlan,
    client: SystemClient,
}

/// An operation about to be invoked.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub f: F,
    /// Key number, and its name (`"k<n>"`, prefixed on reused clusters).
    pub key: u64,
    pub name: String,
    pub op: Operation,
    /// The invoke event's `value`.
    pub value: Json,
}

/// The history key of key number `n`.
pub fn key_name(n: u64) -> String {
    format!("k{n}")
}

/// A model value as a history value.
pub fn value_json(v: Option<&Value>) -> Json {
    match v {
        None => Json::Null,
        Some(Value::Int(i)) => json!(i),
        Some(Value::Str(s)) => json!(s),
    }
}

/// Drives a workload against a cluster.
pub struct Generator {
    shared: Arc<Shared>,
    seed: u64,
    mix: OpMix,
}

impl Generator {
    /// `key_prefix` is prepended to every key name: empty on a fresh cluster, unique per run
    /// on a reused one (see [`KeyPlanner::with_prefix`]).
    pub fn new(
        workload: &Workload,
        seed: u64,
        key_prefix: String,
        cluster: Clients,
        recorder: Recorder,
        progress: Arc<Progress>,
    ) -> Generator {
        let concurrency = workload.concurrency.max(1);
        let interval = (workload.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / workload.rate));
        Generator {
            shared: Arc::new(Shared {
                recorder,
                cluster,
                progress,
                concurrency,
                op_timeout: workload.op_timeout,
                planner: KeyPlanner::with_prefix(
                    key_prefix,
                    workload.keys,
                    workload.values,
                    concurrency,
                ),
                route: workload.route,
                interval,
                next_start: Mutex::new(None),
            }),
            seed,
            mix: workload.mix,
        }
    }

    /// Runs every process until `until` or until `stop` becomes true; returns the slots
    /// (for final reads). An operation in flight at `until` completes (within its
    /// timeout); one in flight when `stop` fires is abandoned (it stays an open invoke, which
    /// the checker treats as `info`).
    pub async fn run(&self, until: Instant, stop: watch::Receiver<bool>) -> Vec<Slot> {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.shared.concurrency {
            let home = match self.shared.route {
                Route::Leader => None,
                Route::Node => {
                    let nodes = self.shared.cluster.node_ids();
                    nodes.get(index % nodes.len().max(1)).copied()
                }
            };
            let slot = Slot {
                process: index as u64,
                home,
                plan: SlotPlan::new(self.seed, index, self.mix),
                client: self.shared.cluster.client_at(home, self.shared.op_timeout),
            };
            let shared = self.shared.clone();
            let stop = stop.clone();
            tasks.spawn(async move { process_loop(shared, slot, until, stop).await });
        }
        let mut slots = Vec::with_capacity(self.shared.concurrency);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(slot) => slots.push(slot),
                Err(e) => warn!("a client process task ended abnormally: {e}"),
            }
        }
        slots.sort_by_key(|s| s.plan.index);
        slots
    }

    /// Final reads: each slot reads every key it used, sequentially; slots run concurrently.
    pub async fn final_reads(&self, slots: Vec<Slot>, stop: watch::Receiver<bool>) -> Vec<Slot> {
        let mut tasks = tokio::task::JoinSet::new();
        for mut slot in slots {
            let shared = self.shared.clone();
            let mut stop = stop.clone();
            tasks.spawn(async move {
                let keys: Vec<u64> = slot.plan.keys_used.iter().copied().collect();
                for key in keys {
                    if *stop.borrow() {
                        break;
                    }
                    let planned = Planned {
                        f: F::Read,
                        key,
                        name: shared.planner.key_name(key),
                        op: Operation::Read {
                            key: shared.planner.key_name(key),
                        },
                        value: Json::Null,
                    };
                    if !perform(&shared, &mut slot, planned, &mut stop).await {
                        break;
                    }
                }
                slot
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(slot) => out.push(slot),
                Err(e) => warn!("a final-read task ended abnormally: {e}"),
            }
        }
        out.sort_by_key(|s| s.plan.index);
        out
    }
}

async fn process_loop(
    shared: Arc<Shared>,
    mut slot: Slot,
    until: Instant,
    mut stop: watch::Receiver<bool>,
) -> Slot {
    loop {
        if *stop.borrow() || Instant::now() >= until {
            break;
        }
        if let Some(start) = reserve_start(&shared) {
            if start >= until {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(start) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let planned = shared.planner.plan(&mut slot.plan);
        if !perform(&shared, &mut slot, planned, &mut stop).await {
            break;
        }
    }
    debug!(
        slot = slot.plan.index,
        process = slot.process,
        "process done"
    );
    slot
}

/// The start time of the next operation under the rate limit (`None` when unlimited).
fn reserve_start(shared: &Shared) -> Option<Instant> {
    let interval = shared.interval?;
    let now = Instant::now();
    let mut next = shared.next_start.lock().unwrap_or_else(|p| p.into_inner());
    let start = next.map_or(now, |n| n.max(now));
    *next = Some(start + interval);
    Some(start)
}

impl KeyPlanner {
    /// Groups for `concurrency` processes; group `g` starts on key `g`.
    pub fn new(keys: KeyShape, values: ValueShape, concurrency: usize) -> KeyPlanner {
        KeyPlanner::with_prefix(String::new(), keys, values, concurrency)
    }

    /// Like [`KeyPlanner::new`], key names prefixed by `prefix`.
    pub fn with_prefix(
        prefix: String,
        keys: KeyShape,
        values: ValueShape,
        concurrency: usize,
    ) -> KeyPlanner {
        let n = match keys {
            KeyShape::Single => 1,
            KeyShape::Independent {
                processes_per_key, ..
            } => concurrency.max(1).div_ceil(processes_per_key.max(1)),
        };
        KeyPlanner {
            prefix,
            keys,
            values,
            groups: (0..n)
                .map(|g| {
                    Mutex::new(Group {
                        key: g as u64,
                        issued: 0,
                        next_value: 1,
                        last_written: None,
                    })
                })
                .collect(),
            next_key: AtomicU64::new(n as u64),
        }
    }

    /// Chooses the next operation of `slot`: its key from the slot's group, its function
    /// from the slot's RNG, its values from the key's counter (or the RNG for value ranges).
    pub fn plan(&self, slot: &mut SlotPlan) -> Planned {
        plan(self, slot)
    }

    /// The history and store name of key number `n`: `<prefix>k<n>`.
    pub fn key_name(&self, n: u64) -> String {
        format!("{}{}", self.prefix, key_name(n))
    }
}

fn plan(shared: &KeyPlanner, slot: &mut SlotPlan) -> Planned {
    let f = slot.chooser.next_f();
    let (group_index, ops_per_key) = match shared.keys {
        KeyShape::Single => (0, u64::MAX),
        KeyShape::Independent {
            ops_per_key,
            processes_per_key,
        } => (slot.index / processes_per_key.max(1), ops_per_key),
    };
    let Some(group) = shared.groups.get(group_index) else {
        // Cannot happen: groups cover every slot. Fall back to a read of k0.
        return Planned {
            f: F::Read,
            key: 0,
            name: shared.key_name(0),
            op: Operation::Read {
                key: shared.key_name(0),
            },
            value: Json::Null,
        };
    };
    let mut g = group.lock().unwrap_or_else(|p| p.into_inner());
    if g.issued >= ops_per_key {
        g.key = shared.next_key.fetch_add(1, Ordering::Relaxed);
        g.issued = 0;
        g.next_value = 1;
        g.last_written = None;
    }
    g.issued += 1;
    let key = g.key;
    let name = shared.key_name(key);
    let seen = match &slot.last_seen {
        Some((k, v)) if *k == key => Some(v.clone()),
        _ => None,
    };
    let fresh = |g: &mut Group, chooser: &mut OpChooser| -> i64 {
        match shared.values {
            ValueShape::Unique => {
                let v = g.next_value;
                g.next_value += 1;
                v
            }
            ValueShape::Range(n) => chooser.value_below(n),
        }
    };
    let planned = match f {
        F::Read => Planned {
            f,
            key,
            op: Operation::Read { key: name.clone() },
            name,
            value: Json::Null,
        },
        F::Write => {
            let v = fresh(&mut g, &mut slot.chooser);
            g.last_written = Some(Value::Int(v));
            Planned {
                f,
                key,
                op: Operation::Write {
                    key: name.clone(),
                    value: Value::Int(v),
                },
                name,
                value: json!(v),
            }
        }
        F::Cas => {
            let expected = match shared.values {
                ValueShape::Range(n) => Some(Value::Int(slot.chooser.value_below(n))),
                ValueShape::Unique => seen.unwrap_or_else(|| g.last_written.clone()),
            };
            let new = fresh(&mut g, &mut slot.chooser);
            g.last_written = Some(Value::Int(new));
            Planned {
                f,
                key,
                value: json!([value_json(expected.as_ref()), new]),
                op: Operation::Cas {
                    key: name.clone(),
                    expected,
                    new: Value::Int(new),
                },
                name,
            }
        }
        F::Append => {
            let n = g.next_value;
            g.next_value += 1;
            let suffix = format!("{n},");
            Planned {
                f,
                key,
                value: json!(suffix),
                op: Operation::Append {
                    key: name.clone(),
                    suffix,
                },
                name,
            }
        }
    };
    drop(g);
    slot.keys_used.insert(key);
    planned
}

/// Invokes `planned`, records its completion, and updates the slot. Returns false when
/// `stop` fired while it was in flight (the invoke stays open).
async fn perform(
    shared: &Shared,
    slot: &mut Slot,
    planned: Planned,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let key = json!(planned.name);
    let who = Who::Process(slot.process);
    let f = planned.f.name();
    shared.recorder.record(
        who,
        EventType::Invoke,
        f,
        key.clone(),
        planned.value.clone(),
    );
    let result = tokio::select! {
        r = slot.client.execute(planned.op.clone()) => r,
        _ = stop.wait_for(|s| *s) => return false,
    };
    shared.progress.count(&result);
    match &result {
        OpResult::Ok(outcome) => {
            let value = match (&planned.op, outcome) {
                (Operation::Read { .. }, Outcome::Value(v)) => {
                    slot.plan.saw(planned.key, v.clone());
                    value_json(v.as_ref())
                }
                (Operation::Read { .. }, other) => {
                    // A read answered with something that is not a value: the node is
                    // confused; reads have no effect, so this is a certain `fail`.
                    warn!(?other, "read answered without a value");
                    shared
                        .recorder
                        .record(who, EventType::Fail, f, key, Json::Null);
                    return true;
                }
                (Operation::Write { value, .. }, _) => {
                    slot.plan.saw(planned.key, Some(value.clone()));
                    planned.value.clone()
                }
                (Operation::Cas { new, .. }, _) => {
                    slot.plan.saw(planned.key, Some(new.clone()));
                    planned.value.clone()
                }
                // An append answers only the new length: the process no longer knows the
                // value.
                (Operation::Append { .. }, _) => {
                    slot.plan.forget();
                    planned.value.clone()
                }
                // The generator plans no registrations (the client library registers).
                (Operation::Register, _) => planned.value.clone(),
            };
            shared.recorder.record(who, EventType::Ok, f, key, value);
        }
        OpResult::Fail { reason, outcome } => {
            if let Some(Outcome::CasMismatch { current }) = outcome {
                slot.plan.saw(planned.key, current.clone());
            }
            debug!(process = slot.process, f, reason, "fail");
            shared
                .recorder
                .record(who, EventType::Fail, f, key, planned.value.clone());
        }
        OpResult::Info(reason) => {
            debug!(process = slot.process, f, reason, "info");
            shared
                .recorder
                .record(who, EventType::Info, f, key, planned.value.clone());
            // The old process may still have its operation in flight: continue as a new
            // process with a new client id.
            slot.process += shared.concurrency as u64;
            slot.client = shared.cluster.client_at(slot.home, shared.op_timeout);
            slot.plan.forget();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> OpMix {
        OpMix {
            read: 3,
            write: 2,
            cas: 1,
            append: 1,
        }
    }

    #[test]
    fn op_choice_is_deterministic_per_seed_and_slot() {
        let run = |seed, slot| {
            let mut c = OpChooser::new(seed, slot, mix());
            (0..200).map(|_| c.next_f()).collect::<Vec<_>>()
        };
        assert_eq!(run(42, 3), run(42, 3));
        assert_ne!(run(42, 3), run(43, 3));
        assert_ne!(run(42, 3), run(42, 4));
    }

    #[test]
    fn op_choice_follows_the_weights() {
        let mut c = OpChooser::new(7, 0, mix());
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..70_000 {
            *counts.entry(c.next_f()).or_insert(0u32) += 1;
        }
        let frac = |f| f64::from(counts[&f]) / 70_000.0;
        assert!((frac(F::Read) - 3.0 / 7.0).abs() < 0.02);
        assert!((frac(F::Write) - 2.0 / 7.0).abs() < 0.02);
        assert!((frac(F::Cas) - 1.0 / 7.0).abs() < 0.02);
        assert!((frac(F::Append) - 1.0 / 7.0).abs() < 0.02);
        let mut only_reads = OpChooser::new(
            1,
            0,
            OpMix {
                read: 1,
                write: 0,
                cas: 0,
                append: 0,
            },
        );
        assert!((0..100).all(|_| only_reads.next_f() == F::Read));
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(1);
        assert!((0..10_000).all(|_| r.below(5) < 5));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn independent_groups_move_to_fresh_keys_with_unique_values() {
        let keys = KeyShape::Independent {
            ops_per_key: 5,
            processes_per_key: 2,
        };
        let planner = KeyPlanner::new(keys, ValueShape::Unique, 4);
        let mut slots: Vec<SlotPlan> = (0..4).map(|i| SlotPlan::new(1, i, mix())).collect();
        let mut per_key: std::collections::BTreeMap<u64, Vec<Planned>> = Default::default();
        for round in 0..10 {
            for slot in slots.iter_mut() {
                let p = planner.plan(slot);
                // Slots 0,1 share group 0; slots 2,3 group 1.
                assert_eq!(p.op.key(), Some(key_name(p.key).as_str()));
                assert_eq!(p.name, key_name(p.key));
                per_key.entry(p.key).or_default().push(p);
                let _ = round;
            }
        }
        // 40 ops, 5 per key.
        assert_eq!(per_key.len(), 8);
        for (key, ops) in &per_key {
            assert_eq!(ops.len(), 5, "key {key}");
            let mut written: Vec<Json> = ops
                .iter()
                .filter_map(|p| match p.f {
                    F::Write | F::Append => Some(p.value.clone()),
                    F::Cas => p.value.get(1).cloned(),
                    F::Read => None,
                })
                .collect();
            let n = written.len();
            written.sort_by_key(|v| v.to_string());
            written.dedup();
            assert_eq!(written.len(), n, "values unique on key {key}");
        }
        assert_eq!(slots[0].keys_used, slots[1].keys_used);
        assert!(slots[0].keys_used.is_disjoint(&slots[2].keys_used));
    }

    #[test]
    fn single_key_and_value_ranges() {
        let planner = KeyPlanner::new(KeyShape::Single, ValueShape::Range(3), 3);
        let mut slot = SlotPlan::new(9, 2, mix());
        for _ in 0..100 {
            let p = planner.plan(&mut slot);
            assert_eq!(p.key, 0);
            match &p.op {
                Operation::Write {
                    value: Value::Int(v),
                    ..
                } => assert!((0..3).contains(v)),
                Operation::Cas {
                    expected: Some(Value::Int(e)),
                    new: Value::Int(n),
                    ..
                } => assert!((0..3).contains(e) && (0..3).contains(n)),
                Operation::Cas { .. } => panic!("range cas expects a value: {p:?}"),
                _ => {}
            }
        }
    }

    #[test]
    fn cas_expects_what_the_process_saw() {
        let only_cas = OpMix {
            read: 0,
            write: 0,
            cas: 1,
            append: 0,
        };
        let planner = KeyPlanner::new(KeyShape::Single, ValueShape::Unique, 1);
        let mut slot = SlotPlan::new(1, 0, only_cas);
        let first = planner.plan(&mut slot);
        assert_eq!(first.value, json!([null, 1]));
        let second = planner.plan(&mut slot);
        // Nothing seen: the last value written to the key.
        assert_eq!(second.value, json!([1, 2]));
        slot.saw(0, Some(Value::Int(7)));
        assert_eq!(planner.plan(&mut slot).value, json!([7, 3]));
    }

    #[test]
    fn keys_and_values_as_history_json() {
        assert_eq!(key_name(7), "k7");
        let p = KeyPlanner::with_prefix("r1-".into(), KeyShape::Single, ValueShape::Unique, 1);
        assert_eq!(p.plan(&mut SlotPlan::new(1, 0, mix())).name, "r1-k0");
        assert_eq!(value_json(None), Json::Null);
        assert_eq!(value_json(Some(&Value::Int(3))), json!(3));
        assert_eq!(value_json(Some(&Value::Str("1,2,".into()))), json!("1,2,"));
    }
}
