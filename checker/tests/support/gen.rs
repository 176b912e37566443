//! History construction for tests: a builder for hand-written histories, and a simulator that
//! generates valid histories (with random linearization points, crashes and never-completed
//! ops) from a stream of choices, plus mutations that usually make them invalid.
//!
//! The simulator is driven by [`Choices`], a byte stream: proptest shrinks the stream toward
//! fewer and smaller bytes, which shrinks the history (an exhausted stream reads as zeros,
//! which means "one process, ops complete in order, no crashes").

use checker::history::{Action, Op, Status, Value};

/// Positions are handed out in call order, so they are distinct and in real-time order.
#[derive(Default)]
pub struct HistoryBuilder {
    ops: Vec<Op>,
    clock: usize,
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn tick(&mut self) -> usize {
        self.clock += 1;
        self.clock - 1
    }

    /// Invokes `action` on `process`; the op stays pending (info) until completed. Returns a
    /// handle for [`ok`](Self::ok), [`fail`](Self::fail), [`info`](Self::info).
    pub fn invoke(&mut self, process: u64, action: Action) -> usize {
        let at = self.tick();
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            process,
            key: Value::Null,
            action,
            status: Status::Info,
            invoke: at,
            complete: None,
            invoke_line: at + 1,
            complete_line: None,
            index: at as u64,
            invoke_time: None,
            complete_time: None,
        });
        id
    }

    fn complete(&mut self, h: usize, status: Status) {
        let at = self.tick();
        let op = &mut self.ops[h];
        assert!(op.complete.is_none(), "op {h} completed twice");
        op.status = status;
        if status != Status::Info {
            op.complete = Some(at);
            op.complete_line = Some(at + 1);
        }
    }

    /// Completes `h` with `ok`.
    pub fn ok(&mut self, h: usize) {
        self.complete(h, Status::Ok);
    }

    /// Completes `h` with `ok`, replacing its action (a read's result is known only now).
    pub fn ok_with(&mut self, h: usize, action: Action) {
        self.ops[h].action = action;
        self.ok(h);
    }

    /// Completes `h` with `fail`.
    pub fn fail(&mut self, h: usize) {
        self.complete(h, Status::Fail);
    }

    /// Completes `h` with `info`: indeterminate, open-ended.
    pub fn info(&mut self, h: usize) {
        self.complete(h, Status::Info);
    }

    /// Invokes and immediately completes `action` with `ok`.
    pub fn ok_op(&mut self, process: u64, action: Action) -> usize {
        let h = self.invoke(process, action);
        self.ok(h);
        h
    }

    /// The ops, by invoke position (handles are their indices).
    pub fn build(self) -> Vec<Op> {
        self.ops
    }
}

pub fn int(i: i64) -> Value {
    Value::Int(i)
}
pub fn read(i: i64) -> Action {
    Action::Read(Some(Value::Int(i)))
}
pub fn read_null() -> Action {
    Action::Read(Some(Value::Null))
}
pub fn read_unknown() -> Action {
    Action::Read(None)
}
pub fn write(i: i64) -> Action {
    Action::Write(Value::Int(i))
}
pub fn cas(old: i64, new: i64) -> Action {
    Action::Cas(Value::Int(old), Value::Int(new))
}

/// A stream of choices; reads zeros once exhausted.
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes, at: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A choice in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }
}

/// `len` pseudo-random bytes from `seed` (splitmix64), for large generated histories.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// Which object the simulator runs.
#[derive(Clone, Debug)]
pub enum Object {
    /// A cas register starting at `initial`; writes and cas use values in `0..values`.
    Register {
        initial: Value,
        values: i64,
    },
    Mutex,
}

/// Parameters of a simulated run.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub object: Object,
    pub processes: usize,
    pub ops: usize,
    /// Out of 256: the chance that an op in flight crashes (ends `info`) at a given turn.
    pub crash: u8,
}

enum Outcome {
    /// Took effect with this (final) action.
    Applied,
    /// Did not take effect: a cas on another value, an acquire of a held lock.
    Refused,
}

struct InFlight {
    handle: usize,
    outcome: Option<Outcome>,
}

/// A valid history: each op takes effect atomically at a random point of its interval (or,
/// if it crashed first, never), on a simulated object.
pub fn simulate(cfg: &GenConfig, ch: &mut Choices) -> Vec<Op> {
    let mut b = HistoryBuilder::new();
    let mut register = match &cfg.object {
        Object::Register { initial, .. } => initial.clone(),
        Object::Mutex => Value::Null,
    };
    let mut held = false;
    let mut procs: Vec<Option<InFlight>> = (0..cfg.processes).map(|_| None).collect();
    let mut invoked = 0;
    let max_turns = cfg.ops * 4 + 16;
    for _ in 0..max_turns {
        if invoked == cfg.ops && procs.iter().all(Option::is_none) {
            break;
        }
        let p = ch.below(cfg.processes);
        let slot = &mut procs[p];
        match slot {
            None => {
                if invoked == cfg.ops {
                    continue;
                }
                invoked += 1;
                let action = match &cfg.object {
                    Object::Register { values, .. } => {
                        let v = |ch: &mut Choices| int((ch.byte() as i64) % values);
                        match ch.below(3) {
                            0 => Action::Read(None),
                            1 => Action::Write(v(ch)),
                            _ => Action::Cas(v(ch), v(ch)),
                        }
                    }
                    Object::Mutex => {
                        if ch.below(2) == 0 {
                            Action::Acquire
                        } else {
                            Action::Release
                        }
                    }
                };
                let handle = b.invoke(p as u64, action);
                *slot = Some(InFlight {
                    handle,
                    outcome: None,
                });
            }
            Some(flight) => {
                let handle = flight.handle;
                let crashed = ch.byte() < cfg.crash;
                match &flight.outcome {
                    None if crashed => {
                        // Crashed before taking effect.
                        b.info(handle);
                        *slot = None;
                    }
                    None => {
                        // The linearization point.
                        let ops = &mut b.ops;
                        let op = &mut ops[handle];
                        let applied = match &op.action {
                            Action::Read(_) => {
                                op.action = Action::Read(Some(register.clone()));
                                true
                            }
                            Action::Write(v) => {
                                register = v.clone();
                                true
                            }
                            Action::Cas(old, new) => {
                                let hit = *old == register;
                                if hit {
                                    register = new.clone();
                                }
                                hit
                            }
                            Action::Acquire => !std::mem::replace(&mut held, true),
                            Action::Release => std::mem::replace(&mut held, false),
                            // The simulator never appends.
                            Action::Append(_) => false,
                        };
                        flight.outcome = Some(if applied {
                            Outcome::Applied
                        } else {
                            Outcome::Refused
                        });
                    }
                    Some(outcome) => {
                        if crashed {
                            // Took effect (or was refused), but the client never learns.
                            // An info read's result is unknown, except sometimes (to
                            // exercise info reads that carry a value).
                            if matches!(b.ops[handle].action, Action::Read(_)) && ch.below(4) != 0 {
                                b.ops[handle].action = Action::Read(None);
                            }
                            b.info(handle);
                        } else {
                            match outcome {
                                Outcome::Applied => b.ok(handle),
                                Outcome::Refused => b.fail(handle),
                            }
                        }
                        *slot = None;
                    }
                }
            }
        }
    }
    // Ops still in flight never complete: pending, open-ended. A pending read's result is
    // unknown.
    for flight in procs.into_iter().flatten() {
        if matches!(b.ops[flight.handle].action, Action::Read(_)) {
            b.ops[flight.handle].action = Action::Read(None);
        }
    }
    b.build()
}

/// Applies one random mutation (usually making the history invalid) and renumbers: tries up
/// to eight times to find one that changes the history.
pub fn mutate(ops: &mut Vec<Op>, cfg: &GenConfig, ch: &mut Choices) {
    let before = ops.clone();
    for _ in 0..8 {
        mutate_once(ops, cfg, ch);
        if *ops != before {
            break;
        }
    }
    renumber(ops);
}

fn mutate_once(ops: &mut [Op], cfg: &GenConfig, ch: &mut Choices) {
    if ops.is_empty() {
        return;
    }
    let values = match &cfg.object {
        Object::Register { values, .. } => *values,
        Object::Mutex => 2,
    };
    let any_value = |ch: &mut Choices| match ch.below(values as usize + 1) {
        0 => Value::Null,
        k => int(k as i64 - 1),
    };
    let n = ops.len();
    let i = ch.below(n);
    let j = ch.below(n);
    match ch.below(6) {
        0 => {
            // Change a read's result.
            if let Action::Read(seen) = &ops[i].action {
                let mut v = any_value(ch);
                if seen.as_ref() == Some(&v) {
                    v = match v {
                        Value::Int(k) => int((k + 1) % values),
                        _ => int(0),
                    };
                }
                ops[i].action = Action::Read(Some(v));
            }
        }
        1 => {
            // Swap two ops' actions.
            let a = ops[i].action.clone();
            ops[i].action = std::mem::replace(&mut ops[j].action, a);
        }
        2 => {
            // Pretend an op that failed or crashed succeeded.
            let max = ops.iter().filter_map(|o| o.complete).max().unwrap_or(0);
            let top = ops.iter().map(|o| o.invoke).max().unwrap_or(0).max(max);
            if ops[i].status != Status::Ok {
                ops[i].status = Status::Ok;
                if ops[i].complete.is_none() {
                    ops[i].complete = Some(top + 1);
                    ops[i].complete_line = Some(top + 2);
                }
                if ops[i].action == Action::Read(None) {
                    ops[i].action = Action::Read(Some(any_value(ch)));
                }
            }
        }
        3 => {
            // Change a cas's expected or new value.
            if let Action::Cas(old, new) = &ops[i].action {
                ops[i].action = if ch.below(2) == 0 {
                    Action::Cas(any_value(ch), new.clone())
                } else {
                    Action::Cas(old.clone(), any_value(ch))
                };
            }
        }
        4 => {
            // Swap two ops' intervals (reorder them in time).
            let (a, b) = (
                (ops[i].invoke, ops[i].complete),
                (ops[j].invoke, ops[j].complete),
            );
            if a.1.is_some() == b.1.is_some() {
                ops[i].invoke = b.0;
                ops[i].complete = b.1;
                ops[j].invoke = a.0;
                ops[j].complete = a.1;
            }
        }
        _ => {
            // A successful op into a failed one (its effect then goes missing).
            if ops[i].status == Status::Ok {
                ops[i].status = Status::Fail;
            }
        }
    }
}

/// Sorts by invoke position and sets `id` (and lines/index) to match.
pub fn renumber(ops: &mut [Op]) {
    ops.sort_by_key(|o| o.invoke);
    for (k, op) in ops.iter_mut().enumerate() {
        op.id = k;
        op.index = op.invoke as u64;
        op.invoke_line = op.invoke + 1;
        op.complete_line = op.complete.map(|c| c + 1);
    }
}

/// A history of `prefix` sequential `ok` ops (valid, on one process) followed by `tail`
/// (its positions shifted after the prefix; a register's tail must start from the value the
/// prefix leaves, which is returned with the prefix by [`sequential_prefix`]).
pub fn concat(mut prefix: Vec<Op>, tail: Vec<Op>) -> Vec<Op> {
    let offset = prefix
        .iter()
        .map(|o| o.complete.unwrap_or(o.invoke).max(o.invoke) + 1)
        .max()
        .unwrap_or(0);
    prefix.extend(tail.into_iter().map(|mut o| {
        o.invoke += offset;
        o.complete = o.complete.map(|c| c + offset);
        o
    }));
    renumber(&mut prefix);
    prefix
}

/// `len` sequential `ok` ops on `object` from a pseudo-random `seed`, and the register value
/// they leave (a mutex prefix always leaves the lock free).
pub fn sequential_prefix(object: &Object, len: usize, seed: u64) -> (Vec<Op>, Value) {
    let bytes = random_bytes(seed, len * 2);
    let mut ch = Choices::new(&bytes);
    let mut b = HistoryBuilder::new();
    match object {
        Object::Register { initial, values } => {
            let mut state = initial.clone();
            for _ in 0..len {
                let v = int(ch.byte() as i64 % values);
                let action = match ch.below(3) {
                    0 => Action::Read(Some(state.clone())),
                    1 => Action::Write(v.clone()),
                    _ => Action::Cas(state.clone(), v.clone()),
                };
                if !matches!(action, Action::Read(_)) {
                    state = v;
                }
                b.ok_op(9, action);
            }
            (b.build(), state)
        }
        Object::Mutex => {
            for k in 0..len - len % 2 {
                b.ok_op(
                    9,
                    if k % 2 == 0 {
                        Action::Acquire
                    } else {
                        Action::Release
                    },
                );
            }
            (b.build(), Value::Null)
        }
    }
}
