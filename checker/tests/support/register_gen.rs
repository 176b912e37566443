//! Generators of small single-key register histories, and a builder for hand-written ones.
//!
//! [`history`] turns a list of raw random choices (from proptest) into a well-formed history:
//! 1–4 processes, each doing one op at a time; ops complete `ok`, `fail` or crash (`info`,
//! the process is replaced); ops still open at the end stay pending. Written values are
//! unique (`1, 2, 3, ...`) except for a few deliberate duplicates and writes of the initial
//! value, so the fast path's "not applicable" answer is exercised too. Reads return the
//! initial value or any value up to one past the last written, so both valid and invalid
//! histories arise.

use checker::history::{Action, Op, Status, Value};
use proptest::prelude::*;

/// One raw choice per simulation step: (process, kind, value, outcome).
pub type Step = (u8, u8, u8, u8);

/// A random history: (initial value, ops).
pub fn small_history(max_ops: usize, max_procs: usize) -> impl Strategy<Value = (Value, Vec<Op>)> {
    (
        1..=max_ops,
        1..=max_procs,
        any::<bool>(),
        proptest::collection::vec(any::<Step>(), 0..(max_ops * 5)),
    )
        .prop_map(|(n_ops, n_procs, null_initial, steps)| {
            let initial = if null_initial {
                Value::Null
            } else {
                Value::Int(0)
            };
            let ops = history(&initial, n_ops, n_procs, &steps);
            (initial, ops)
        })
}

/// Builds a history from raw choices; see the module docs.
pub fn history(initial: &Value, n_ops: usize, n_procs: usize, steps: &[Step]) -> Vec<Op> {
    struct Open {
        op: usize,
    }
    let mut ops: Vec<Op> = Vec::new();
    let mut open: Vec<Option<Open>> = (0..n_procs).map(|_| None).collect();
    let mut pid: Vec<u64> = (0..n_procs as u64).collect();
    let mut next_pid = n_procs as u64;
    let mut pos = 0usize;
    let mut next_value = 1i64;
    for &(p, kind, val, outcome) in steps {
        let p = p as usize % n_procs;
        match open[p].take() {
            Some(Open { op }) => {
                let o = &mut ops[op];
                match outcome % 8 {
                    // ok
                    0..=4 => {
                        o.status = Status::Ok;
                        o.complete = Some(pos);
                        o.complete_line = Some(pos + 1);
                        if let Action::Read(r) = &mut o.action {
                            let pick = val as i64 % (next_value + 1);
                            *r = Some(if pick == 0 {
                                initial.clone()
                            } else {
                                Value::Int(pick)
                            });
                        }
                    }
                    // fail
                    5 => {
                        o.status = Status::Fail;
                        o.complete = Some(pos);
                        o.complete_line = Some(pos + 1);
                    }
                    // crash: info, the process is replaced
                    _ => {
                        o.status = Status::Info;
                        o.complete_line = Some(pos + 1);
                        pid[p] = next_pid;
                        next_pid += 1;
                    }
                }
                pos += 1;
            }
            None => {
                if ops.len() >= n_ops {
                    if open.iter().all(|o| o.is_none()) {
                        break;
                    }
                    continue;
                }
                let fresh = |next_value: &mut i64| {
                    let v = Value::Int(*next_value);
                    *next_value += 1;
                    v
                };
                let action = match kind % 3 {
                    0 => Action::Read(None),
                    1 => {
                        // About 1 in 25 writes break uniqueness.
                        if val < 10 && next_value > 1 {
                            Action::Write(Value::Int(1 + val as i64 % (next_value - 1)))
                        } else if val < 10 {
                            Action::Write(initial.clone())
                        } else {
                            Action::Write(fresh(&mut next_value))
                        }
                    }
                    _ => {
                        // Any written value, the initial one, or one written later.
                        let pick = val as i64 % (next_value + 1);
                        let old = if pick == 0 {
                            initial.clone()
                        } else if pick == next_value {
                            Value::Int(next_value + 1)
                        } else {
                            Value::Int(pick)
                        };
                        Action::Cas(old, fresh(&mut next_value))
                    }
                };
                ops.push(mk(ops.len(), pid[p], action, Status::Info, pos, None));
                open[p] = Some(Open { op: ops.len() - 1 });
                pos += 1;
            }
        }
    }
    ops
}

/// An op of the single-register key (`null`); `complete: None` is open-ended.
pub fn mk(
    id: usize,
    process: u64,
    action: Action,
    status: Status,
    invoke: usize,
    complete: Option<usize>,
) -> Op {
    Op {
        id,
        process,
        key: Value::Null,
        action,
        status,
        invoke,
        complete,
        invoke_line: invoke + 1,
        complete_line: complete.map(|c| c + 1),
        index: invoke as u64,
        invoke_time: None,
        complete_time: None,
    }
}

/// Hand-written histories: `(action, status, invoke, complete)` per op, one process each,
/// sorted by invoke as the checker expects.
pub fn ops(spec: &[(Action, Status, usize, Option<usize>)]) -> Vec<Op> {
    let mut v: Vec<_> = spec.to_vec();
    v.sort_by_key(|s| s.2);
    v.into_iter()
        .enumerate()
        .map(|(i, (a, s, inv, c))| mk(i, i as u64, a, s, inv, c))
        .collect()
}

/// Splits ops by key, keeping each key's ops in invoke order.
pub fn split_by_key(ops: &[Op]) -> Vec<(Value, Vec<Op>)> {
    let mut keys: std::collections::BTreeMap<Value, Vec<Op>> = Default::default();
    for op in ops {
        keys.entry(op.key.clone()).or_default().push(op.clone());
    }
    keys.into_iter().collect()
}
