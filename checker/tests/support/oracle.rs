//! The brute-force oracle: linearizability by definition, for tiny histories only.
//!
//! Tries every order of the operations that respects real time (an op that completed before
//! another was invoked comes first), with every subset of the indeterminate (`info`) ops
//! included, and asks the model whether that sequence is legal. No memoisation, no pruning,
//! nothing clever: its verdicts are what the fast checkers are compared against.

use checker::history::{Op, Status};
use checker::Model;

/// Whether `ops` (one key) is linearizable with respect to `model`.
pub fn linearizable<M: Model>(model: &M, ops: &[Op]) -> bool {
    let live: Vec<&Op> = ops.iter().filter(|o| o.status != Status::Fail).collect();
    let mut placed = vec![false; live.len()];
    place(model, &live, &mut placed, &model.init())
}

fn place<M: Model>(model: &M, ops: &[&Op], placed: &mut [bool], state: &M::State) -> bool {
    let unplaced_ok = |placed: &[bool]| {
        ops.iter()
            .zip(placed.iter())
            .filter(|(o, p)| !**p && o.status == Status::Ok)
            .count()
    };
    if unplaced_ok(placed) == 0 {
        return true;
    }
    for i in 0..ops.len() {
        if placed[i] {
            continue;
        }
        // `i` may go next only if no unplaced op that must take effect finished before it began.
        let blocked = ops
            .iter()
            .zip(placed.iter())
            .any(|(q, p)| !*p && q.status == Status::Ok && q.end() < ops[i].invoke);
        if blocked {
            continue;
        }
        if let Some(next) = model.step(state, &ops[i].action) {
            placed[i] = true;
            if place(model, ops, placed, &next) {
                placed[i] = false;
                return true;
            }
            placed[i] = false;
        }
    }
    false
}

/// Whether `order` (positions in `ops`) is a linearization: legal for the model, respecting
/// real time, containing every `ok` op and no `fail` op.
pub fn is_witness<M: Model>(model: &M, ops: &[Op], order: &[usize]) -> bool {
    let mut seen = vec![false; ops.len()];
    let mut state = model.init();
    for (k, &i) in order.iter().enumerate() {
        if i >= ops.len() || seen[i] || ops[i].status == Status::Fail {
            return false;
        }
        seen[i] = true;
        // Nothing placed later may have completed before this op was invoked.
        if order[k + 1..].iter().any(|&j| ops[j].end() < ops[i].invoke) {
            return false;
        }
        match model.step(&state, &ops[i].action) {
            Some(next) => state = next,
            None => return false,
        }
    }
    // Every ok op took effect; an info op left out never did.
    ops.iter()
        .zip(seen.iter())
        .all(|(o, s)| *s || o.status != Status::Ok)
}
