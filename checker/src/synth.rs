//! Seeded synthetic histories, for benchmarks and tests.
//!
//! [`generate`] simulates a linearizable compare-and-set register service with many
//! independent keys, the way a Jepsen test would record it: every key has its own client
//! processes; each process invokes an operation, the operation takes effect atomically at a
//! random instant strictly inside its interval, and the process sees the completion later.
//! A few operations crash (`info`): the client times out, the op may take effect at any time
//! after its invocation (even after the timeout) or never, and the process is replaced by a
//! fresh process id, as Jepsen does. All keys run at once, so their events interleave in one
//! global real-time order.
//!
//! Written values are unique per key (`1, 2, 3, ...`; the initial value is `null`), so the
//! register fast path ([`crate::register`]) applies. A mix of reads and appends (of unique
//! strings `"1,"`, `"2,"`, ...; reads return the whole concatenation) makes append histories
//! for the append fast path ([`crate::append`]). When the mix has appends, writes and cas
//! write strings `"N,"` too, so writes mixed with appends make a key-value store's puts and
//! appends on one string (Porcupine's kv histories). Without an anomaly the history is
//! linearizable by construction; with one, a single violation is injected in the last tenth
//! of one key's operations:
//!
//! * [`Anomaly::StaleRead`]: an `ok` read returns a value `v` although an `ok` write (or
//!   append) `w'` completed before the read was invoked, and `v` is the state left by an `ok`
//!   writer that completed before `w'` was invoked (or the initial value). With repeated
//!   values that value may well be written again; there `v` is a value that neither `w'` nor
//!   any op that may come between `w'` and the read writes.
//! * [`Anomaly::LostUpdate`]: an `ok` cas consumes a value that an earlier `ok` cas already
//!   consumed; the service overwrites the newer value.
//!
//! Everything is deterministic for a given [`SynthSpec`] (ChaCha8 streams from the seed).
//! [`to_jsonl`] prints ops as a JSON Lines `history.jsonl`, so a benchmark can include
//! parsing.

use crate::history::{jsonl, Action, EventType, Key, Op, Record, Status, Value, Who};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The injected violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    StaleRead,
    LostUpdate,
}

/// Relative weights of the operation kinds (need not sum to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    pub read: f64,
    pub write: f64,
    pub cas: f64,
    /// Appends of unique strings `"N,"` (prefix-free, as Jepsen's values are).
    pub append: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            read: 0.5,
            write: 0.25,
            cas: 0.25,
            append: 0.0,
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    pub seed: u64,
    /// Independent registers, keyed `0 .. keys` (integers).
    pub keys: usize,
    /// Operations invoked on each key.
    pub ops_per_key: usize,
    /// Concurrent client processes per key.
    pub processes_per_key: usize,
    /// Probability that an operation crashes (`info`).
    pub info_rate: f64,
    pub mix: Mix,
    pub anomaly: Option<Anomaly>,
    /// Written values drawn from `0..n` (repeats: the general search's histories, as in
    /// Jepsen's etcd tests) instead of unique ones.
    pub values: Option<i64>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            seed: 0,
            keys: 1,
            ops_per_key: 100,
            processes_per_key: 5,
            info_rate: 0.0,
            mix: Mix::default(),
            anomaly: None,
            values: None,
        }
    }
}

/// A generated history and where its anomaly went.
#[derive(Clone, Debug)]
pub struct Synth {
    /// Ops ordered by invoke position; `id` = index, positions = global event order.
    pub ops: Vec<Op>,
    /// The key holding the injected anomaly, if one was injected (tiny histories may offer
    /// no opportunity).
    pub anomaly_key: Option<Key>,
    /// `id` of the op that makes the history non-linearizable.
    pub anomaly_op: Option<usize>,
}

/// The history for `spec` (ops only); see [`generate_detailed`].
pub fn generate(spec: &SynthSpec) -> Vec<Op> {
    generate_detailed(spec).ops
}

/// Time unit of the simulation, in nanoseconds (1 µs).
const TICK_NS: i64 = 1_000;

/// One op of one key, as the simulation records it.
struct SimOp {
    process: u64,
    action: Action,
    status: Status,
    inv_time: u64,
    /// Completion event time; `None` if the op never completed (unused: all complete).
    done_time: Option<u64>,
    /// Index of its invoke / completion in the key's event list.
    inv_ev: usize,
    done_ev: Option<usize>,
}

/// One key's simulated events: (time, op, is_invoke), in processing order.
struct SimKey {
    ops: Vec<SimOp>,
    events: Vec<(u64, u32, bool)>,
    anomaly_op: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A process slot invokes its next op.
    Invoke(usize),
    /// An op takes effect.
    Effect(usize),
    /// An op completes (ok / fail / info), freeing its slot.
    Complete(usize),
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn simulate_key(spec: &SynthSpec, key: usize, inject: Option<Anomaly>) -> SimKey {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(spec.seed ^ splitmix(key as u64 + 1)));
    let procs = spec.processes_per_key.max(1);
    let info_rate = spec.info_rate.clamp(0.0, 1.0);
    let (wr, ww, wc, wa) = (
        spec.mix.read.max(0.0),
        spec.mix.write.max(0.0),
        spec.mix.cas.max(0.0),
        spec.mix.append.max(0.0),
    );
    let total_w = if wr + ww + wc + wa > 0.0 {
        wr + ww + wc + wa
    } else {
        1.0
    };
    let inject_from = spec.ops_per_key - spec.ops_per_key / 10;

    let mut ops: Vec<SimOp> = Vec::with_capacity(spec.ops_per_key);
    let mut events: Vec<(u64, u32, bool)> = Vec::with_capacity(spec.ops_per_key * 2);
    // Current process id of each slot, and the number of ids handed out for this key.
    let mut slot_pid: Vec<u64> = Vec::with_capacity(procs);
    let mut ids_used = 0u64;
    let fresh_pid = |ids_used: &mut u64| {
        let id = key as u64 + spec.keys as u64 * *ids_used;
        *ids_used += 1;
        id
    };
    // Per op: its slot, whether it crashed, and whether it is the injected anomaly.
    let mut op_slot: Vec<usize> = Vec::with_capacity(spec.ops_per_key);
    let mut crashed: Vec<bool> = Vec::with_capacity(spec.ops_per_key);

    let mut state = Value::Null;
    let mut next_value = 1i64;
    // A fresh number: the next unique one, or a random one of `0..values`.
    let mut number = |rng: &mut ChaCha8Rng| match spec.values {
        Some(n) => rng.random_range(0..n.max(1)),
        None => {
            next_value += 1;
            next_value - 1
        }
    };
    // A written value: the number, or the string `"N,"` when the mix has appends (a
    // key-value store's puts and appends on one string, as in Porcupine's kv histories).
    let strings = wa > 0.0;
    let value = |n: i64| {
        if strings {
            Value::Str(format!("{n},"))
        } else {
            Value::Int(n)
        }
    };
    let mut written: Vec<Value> = Vec::new();
    // Ok writers in completion order: (state they left, invoke event, completion event).
    let mut ok_writers: Vec<(Value, usize, usize)> = Vec::new();
    // The state each append left when it took effect.
    let mut appended: Vec<Option<Value>> = Vec::with_capacity(spec.ops_per_key);
    // A value consumed by a cas that took effect and will complete ok.
    let mut last_consumed: Option<Value> = None;
    let mut pending_anomaly = inject;
    let mut anomaly_op = None;
    let mut forced: Option<usize> = None;

    let mut queue: BinaryHeap<Reverse<(u64, u64, Step)>> = BinaryHeap::new();
    let mut tiebreak = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, t: u64, s: Step| {
        tiebreak += 1;
        queue.push(Reverse((t, tiebreak, s)));
    };
    for slot in 0..procs {
        slot_pid.push(fresh_pid(&mut ids_used));
        let t = rng.random_range(0..20u64);
        push(&mut queue, t, Step::Invoke(slot));
    }

    while let Some(Reverse((now, _, step))) = queue.pop() {
        match step {
            Step::Invoke(slot) => {
                if ops.len() >= spec.ops_per_key {
                    continue;
                }
                let id = ops.len();
                // One forced op in flight at a time.
                let want = if ops.len() >= inject_from && forced.is_none() {
                    pending_anomaly
                } else {
                    None
                };
                let mut is_forced = false;
                let action = match want {
                    Some(Anomaly::StaleRead) => {
                        is_forced = true;
                        Action::Read(None)
                    }
                    Some(Anomaly::LostUpdate) if last_consumed.is_some() => {
                        is_forced = true;
                        let old = last_consumed.clone().unwrap_or(Value::Null);
                        Action::Cas(old, value(number(&mut rng)))
                    }
                    _ => {
                        let x = rng.random::<f64>() * total_w;
                        if x < wr {
                            Action::Read(None)
                        } else if x < wr + ww {
                            Action::Write(value(number(&mut rng)))
                        } else if x >= wr + ww + wc {
                            Action::Append(format!("{},", number(&mut rng)))
                        } else {
                            let old = if written.is_empty() || rng.random_bool(0.75) {
                                state.clone()
                            } else {
                                let back = rng.random_range(0..written.len().min(8));
                                written[written.len() - 1 - back].clone()
                            };
                            Action::Cas(old, value(number(&mut rng)))
                        }
                    }
                };
                if is_forced {
                    forced = Some(id);
                }
                let crash = !is_forced && info_rate > 0.0 && rng.random_bool(info_rate);
                // Latency: mostly short, sometimes long.
                let dur = if rng.random_bool(0.1) {
                    rng.random_range(20..400u64)
                } else {
                    rng.random_range(2..40u64)
                };
                if crash {
                    // Timeout, then maybe an effect at any time after the invocation.
                    let timeout = rng.random_range(50..400u64);
                    push(&mut queue, now + timeout, Step::Complete(id));
                    if rng.random_bool(0.5) {
                        let at = now + rng.random_range(1..2 * timeout);
                        push(&mut queue, at, Step::Effect(id));
                    }
                } else {
                    let at = now + rng.random_range(1..dur);
                    push(&mut queue, at, Step::Effect(id));
                    push(&mut queue, now + dur, Step::Complete(id));
                }
                // A cas may still turn into `Fail` at its effect.
                let status = if crash { Status::Info } else { Status::Ok };
                events.push((now, id as u32, true));
                ops.push(SimOp {
                    process: slot_pid[slot],
                    action,
                    status,
                    inv_time: now,
                    done_time: None,
                    inv_ev: events.len() - 1,
                    done_ev: None,
                });
                op_slot.push(slot);
                crashed.push(crash);
                appended.push(None);
            }
            Step::Effect(id) => {
                let is_anomaly = forced == Some(id);
                let op = &mut ops[id];
                match &mut op.action {
                    Action::Read(result) => {
                        let mut seen = state.clone();
                        // With repeated values the stale value is chosen at completion.
                        if is_anomaly && spec.values.is_none() {
                            if let Some(stale) = stale_value(&ok_writers, op.inv_ev) {
                                seen = stale;
                                anomaly_op = Some(id);
                                pending_anomaly = None;
                            }
                            forced = None;
                        }
                        if op.status == Status::Ok {
                            *result = Some(seen);
                        }
                    }
                    Action::Write(v) => {
                        state = v.clone();
                        written.push(v.clone());
                    }
                    Action::Append(suffix) => {
                        state = match &state {
                            Value::Str(s) => Value::Str(format!("{s}{suffix}")),
                            _ => Value::Str(suffix.clone()),
                        };
                        appended[id] = Some(state.clone());
                    }
                    Action::Cas(old, new) => {
                        if is_anomaly {
                            // The service compares against a stale copy: lost update.
                            state = new.clone();
                            written.push(new.clone());
                            anomaly_op = Some(id);
                            pending_anomaly = None;
                            forced = None;
                        } else if *old == state {
                            if !crashed[id] {
                                last_consumed = Some(old.clone());
                            }
                            state = new.clone();
                            written.push(new.clone());
                        } else if op.status == Status::Ok {
                            op.status = Status::Fail;
                        }
                    }
                    _ => {}
                }
            }
            Step::Complete(id) => {
                events.push((now, id as u32, false));
                let done_ev = events.len() - 1;
                if forced == Some(id) {
                    if let (Some(n), Action::Read(Some(_))) = (spec.values, &ops[id].action) {
                        if let Some(v) = impossible_value(&ops, &ok_writers, id, n) {
                            ops[id].action = Action::Read(Some(v));
                            anomaly_op = Some(id);
                            pending_anomaly = None;
                        }
                    }
                    forced = None;
                }
                let op = &mut ops[id];
                op.done_time = Some(now);
                op.done_ev = Some(done_ev);
                if op.status == Status::Ok {
                    let left = match &op.action {
                        Action::Write(v) | Action::Cas(_, v) => Some(v.clone()),
                        Action::Append(_) => appended[id].clone(),
                        _ => None,
                    };
                    if let Some(v) = left {
                        ok_writers.push((v, op.inv_ev, done_ev));
                    }
                }
                let slot = op_slot[id];
                if crashed[id] {
                    slot_pid[slot] = fresh_pid(&mut ids_used);
                }
                let think = rng.random_range(0..20u64);
                push(&mut queue, now + think, Step::Invoke(slot));
            }
        }
    }
    SimKey {
        ops,
        events,
        anomaly_op,
    }
}

/// The latest `ok` writer `w'` that completed before event `read_inv` (its position in
/// `ok_writers`, which is in completion order): the one a read invoked then must follow.
fn last_writer_before(ok_writers: &[(Value, usize, usize)], read_inv: usize) -> Option<usize> {
    ok_writers.iter().rposition(|w| w.2 < read_inv)
}

/// A value an ok read invoked at event `read_inv` may not return: the state `v` left by an ok
/// writer that completed before some ok writer `w'` was invoked, `w'` completing before the
/// read (for appends too: that state lacks `w'`'s string, which the read must see).
fn stale_value(ok_writers: &[(Value, usize, usize)], read_inv: usize) -> Option<Value> {
    let later = last_writer_before(ok_writers, read_inv)?;
    let w_inv = ok_writers[later].1;
    Some(
        ok_writers[..later]
            .iter()
            .rev()
            .find(|w| w.2 < w_inv)
            .map(|w| w.0.clone())
            .unwrap_or(Value::Null),
    )
}

/// With repeated values, a value of `0..n` that the read `id`, completing now, cannot
/// return: the latest `ok` writer `w'` that completed before the read was invoked comes
/// before it, so the read sees a value set by `w'` or by an op ordered after `w'` and
/// before the read: one that was invoked before now (every op so far) and did not complete
/// before `w'` was invoked, or crashed (it may take effect at any time). `None` when those
/// write every value.
fn impossible_value(
    ops: &[SimOp],
    ok_writers: &[(Value, usize, usize)],
    id: usize,
    n: i64,
) -> Option<Value> {
    let later = last_writer_before(ok_writers, ops[id].inv_ev)?;
    let w_inv = ok_writers[later].1;
    let mut possible: Vec<&Value> = ops
        .iter()
        .filter(|o| match o.status {
            Status::Fail => false,
            // A crashed op may take effect at any time after its invocation.
            Status::Info => true,
            Status::Ok => o.done_ev.is_none_or(|done| done > w_inv),
        })
        .filter_map(|o| match &o.action {
            Action::Write(v) | Action::Cas(_, v) => Some(v),
            _ => None,
        })
        .collect();
    possible.sort_unstable();
    possible.dedup();
    (0..n.max(1))
        .map(Value::Int)
        .find(|v| possible.binary_search(&v).is_err())
}

/// The history for `spec`, with where its anomaly (if any) was injected.
pub fn generate_detailed(spec: &SynthSpec) -> Synth {
    let mut master = ChaCha8Rng::seed_from_u64(splitmix(spec.seed));
    let anomaly_key = match (spec.anomaly, spec.keys) {
        (Some(_), k) if k > 0 => Some(master.random_range(0..k)),
        _ => None,
    };
    let sims: Vec<SimKey> = (0..spec.keys)
        .map(|k| {
            let inject = if anomaly_key == Some(k) {
                spec.anomaly
            } else {
                None
            };
            simulate_key(spec, k, inject)
        })
        .collect();

    // One global real-time order: by time, then key, then the key's own order.
    let total: usize = sims.iter().map(|s| s.events.len()).sum();
    let mut order: Vec<(u64, u32, u32)> = Vec::with_capacity(total);
    for (k, s) in sims.iter().enumerate() {
        for (e, ev) in s.events.iter().enumerate() {
            order.push((ev.0, k as u32, e as u32));
        }
    }
    order.sort_unstable();
    // Global position of each key's events.
    let mut pos: Vec<Vec<usize>> = sims.iter().map(|s| vec![0; s.events.len()]).collect();
    for (p, &(_, k, e)) in order.iter().enumerate() {
        pos[k as usize][e as usize] = p;
    }
    drop(order);

    // (invoke position, key, op) for ordering ops by invocation.
    let mut by_invoke: Vec<(usize, u32, u32)> = Vec::with_capacity(total / 2 + 1);
    for (k, s) in sims.iter().enumerate() {
        for (i, op) in s.ops.iter().enumerate() {
            by_invoke.push((pos[k][op.inv_ev], k as u32, i as u32));
        }
    }
    by_invoke.sort_unstable();

    let mut sims = sims;
    let mut anomaly_op = None;
    let mut ops = Vec::with_capacity(by_invoke.len());
    for (id, &(inv, k, i)) in by_invoke.iter().enumerate() {
        let (k, i) = (k as usize, i as usize);
        if sims[k].anomaly_op == Some(i) {
            anomaly_op = Some(id);
        }
        let sim = &mut sims[k].ops[i];
        let done = sim.done_ev.map(|e| pos[k][e]);
        let action = std::mem::replace(&mut sim.action, Action::Read(None));
        ops.push(Op {
            id,
            process: sim.process,
            key: Value::Int(k as i64),
            action,
            status: sim.status,
            invoke: inv,
            complete: if sim.status == Status::Info {
                None
            } else {
                done
            },
            invoke_line: inv + 1,
            complete_line: done.map(|d| d + 1),
            index: inv as u64,
            invoke_time: Some(sim.inv_time as i64 * TICK_NS),
            complete_time: sim.done_time.map(|t| t as i64 * TICK_NS),
        });
    }
    Synth {
        anomaly_key: anomaly_op.and(anomaly_key.map(|k| Value::Int(k as i64))),
        anomaly_op,
        ops,
    }
}

/// Prints ops as a JSON Lines history (with [`jsonl::write_record`]): invoke
/// and completion events in real-time order (by position), `index` = line number from 0.
///
/// An op's completion event sits at `complete`; an `info` op's at `complete_line - 1` (its
/// info event) when it has one, else it never completed and prints no completion. An event
/// without a (non-negative) time is written at time 0; generated ops always have one.
pub fn to_jsonl(ops: &[Op]) -> String {
    // (position, is_completion, op)
    let mut events: Vec<(usize, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        let done = match (op.complete, op.status, op.complete_line) {
            (Some(c), _, _) => Some(c),
            (None, Status::Info, Some(line)) => Some(line.saturating_sub(1)),
            _ => None,
        };
        if let Some(d) = done {
            events.push((d, true, i));
        }
    }
    events.sort_unstable();
    let mut out = String::with_capacity(events.len() * 90);
    for (index, &(_, completion, i)) in events.iter().enumerate() {
        let op = &ops[i];
        let (kind, time) = if completion {
            let kind = match op.status {
                Status::Ok => EventType::Ok,
                Status::Fail => EventType::Fail,
                Status::Info => EventType::Info,
            };
            (kind, op.complete_time)
        } else {
            (EventType::Invoke, op.invoke_time)
        };
        // A read's result belongs to its ok completion only.
        let value = match &op.action {
            Action::Read(_) if kind != EventType::Ok => serde_json::Value::Null,
            action => action.value_json(),
        };
        let record = Record {
            index: index as u64,
            time: time.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
            who: Who::Process(op.process),
            kind,
            f: op.action.func().name().to_owned(),
            key: op.key.to_json(),
            value,
        };
        jsonl::write_record(&mut out, &record);
    }
    out
}
