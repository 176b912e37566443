//! Seeded append-register histories with many concurrent processes, and mutations of them.
//!
//! [`simulate`] runs `procs` client processes against a linearizable append register: each
//! op takes effect at a random step strictly inside its interval; appends add unique
//! strings `"N,"`, and puts (writes, when asked for) replace the value with one; some ops
//! fail (no effect), some crash (`info`: the effect happens or not, possibly long after the
//! crash) and some are still pending at the end. [`mutate`] then
//! edits reads (swaps, drops or adds parts, stale values, a cut inside a part) so that both
//! linearizable and non-linearizable histories arise; which is which is for the oracle or the
//! general search to say.

use super::register_gen::mk;
use checker::history::{Action, Op, Status, Value};

/// splitmix64: a tiny seeded generator, so a failing seed replays exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// How an invoked op will end.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    Ok,
    Fail,
    Crash,
}

/// The register's value after appending `suffix`.
fn appended(state: &Value, suffix: &str) -> Value {
    match state {
        Value::Str(s) => Value::Str(format!("{s}{suffix}")),
        _ => Value::Str(suffix.to_string()),
    }
}

/// A linearizable history of about `n_ops` reads, appends and (`put_percent` of the ops)
/// puts by `procs` processes.
pub fn simulate(
    rng: &mut Rng,
    initial: &Value,
    n_ops: usize,
    procs: usize,
    put_percent: usize,
) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    let mut state = initial.clone();
    let mut pos = 0usize;
    let mut next_string = 1;
    let mut pid: Vec<u64> = (0..procs as u64).collect();
    let mut next_pid = procs as u64;
    // Per process: (op, plan, whether it took effect).
    let mut open: Vec<Option<(usize, Plan, bool)>> = vec![None; procs];
    // Crashed ops that may still take effect.
    let mut late: Vec<usize> = Vec::new();
    let effect = |op: &mut Op, state: &mut Value| match &mut op.action {
        Action::Append(s) => *state = appended(state, s),
        Action::Write(v) => *state = v.clone(),
        Action::Read(seen) => *seen = Some(state.clone()),
        _ => {}
    };
    let mut idle_rounds = 0;
    while idle_rounds < 4 * procs {
        if !late.is_empty() && rng.chance(10) {
            let op = late.swap_remove(rng.below(late.len()));
            if rng.chance(50) && !matches!(ops[op].action, Action::Read(_)) {
                effect(&mut ops[op], &mut state);
            }
        }
        let p = rng.below(procs);
        match open[p] {
            None if ops.len() < n_ops => {
                idle_rounds = 0;
                let action = if rng.chance(50) {
                    next_string += 1;
                    let part = format!("{},", next_string - 1);
                    if rng.chance(put_percent * 2) {
                        Action::Write(Value::Str(part))
                    } else {
                        Action::Append(part)
                    }
                } else {
                    Action::Read(None)
                };
                let plan = match rng.below(100) {
                    0..=79 => Plan::Ok,
                    80..=86 => Plan::Fail,
                    _ => Plan::Crash,
                };
                ops.push(mk(ops.len(), pid[p], action, Status::Info, pos, None));
                pos += 1;
                open[p] = Some((ops.len() - 1, plan, false));
            }
            None => idle_rounds += 1,
            Some((op, plan, false)) if plan != Plan::Fail && rng.chance(60) => {
                effect(&mut ops[op], &mut state);
                open[p] = Some((op, plan, true));
            }
            Some((op, plan, effected)) if plan == Plan::Fail || effected || rng.chance(30) => {
                // A process may also stop waiting before the effect (its op stays pending
                // in the end when the simulation stops first).
                if rng.chance(3) {
                    continue;
                }
                let o = &mut ops[op];
                o.complete_line = Some(pos + 1);
                match plan {
                    Plan::Ok if effected => {
                        o.status = Status::Ok;
                        o.complete = Some(pos);
                    }
                    Plan::Fail => {
                        o.status = Status::Fail;
                        o.complete = Some(pos);
                        if let Action::Read(seen) = &mut o.action {
                            *seen = None;
                        }
                    }
                    _ => {
                        // Crash (or an ok plan that lost its effect): info.
                        o.status = Status::Info;
                        if let Action::Read(seen) = &mut o.action {
                            *seen = None;
                        }
                        if !effected {
                            late.push(op);
                        }
                        pid[p] = next_pid;
                        next_pid += 1;
                    }
                }
                pos += 1;
                open[p] = None;
            }
            Some(_) => {}
        }
    }
    // Ops still open stay pending: a read never seen completing has no result.
    for (op, _, _) in open.into_iter().flatten() {
        if let Action::Read(seen) = &mut ops[op].action {
            *seen = None;
        }
    }
    ops
}

/// The parts (`"N,"`) of a read's string.
fn parts(s: &str) -> Vec<String> {
    s.split_inclusive(',').map(str::to_string).collect()
}

/// Edits `count` random `ok` reads; the result may or may not stay linearizable.
pub fn mutate(rng: &mut Rng, ops: &mut [Op], count: usize) {
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].status == Status::Ok && matches!(ops[i].action, Action::Read(_)))
        .collect();
    if reads.is_empty() {
        return;
    }
    for _ in 0..count {
        let r = reads[rng.below(reads.len())];
        let other = reads[rng.below(reads.len())];
        let other_value = match &ops[other].action {
            Action::Read(Some(v)) => v.clone(),
            _ => Value::Null,
        };
        let Action::Read(Some(seen)) = &mut ops[r].action else {
            continue;
        };
        let text = match seen {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        };
        let mut p = parts(&text);
        match rng.below(6) {
            // Two neighbouring parts swapped.
            0 if p.len() >= 2 => {
                let i = rng.below(p.len() - 1);
                p.swap(i, i + 1);
            }
            // A part left out.
            1 if !p.is_empty() => {
                p.remove(rng.below(p.len()));
            }
            // A part nobody appended, or appended twice.
            2 => {
                let extra = if p.is_empty() || rng.chance(50) {
                    "999999,".to_string()
                } else {
                    p[rng.below(p.len())].clone()
                };
                p.push(extra);
            }
            // Another read's value: stale or from the future, or fine.
            3 => {
                *seen = other_value;
                continue;
            }
            // Cut inside a part.
            4 if !text.is_empty() => {
                *seen = Value::Str(text[..text.len() - 1].to_string());
                continue;
            }
            // The initial value (or nothing appended).
            _ => p.clear(),
        }
        *seen = if p.is_empty() && rng.chance(50) {
            Value::Null
        } else {
            Value::Str(p.concat())
        };
    }
}
