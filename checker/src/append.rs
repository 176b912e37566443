//! Linear-time fast path for append registers whose appended strings are unique.
//!
//! A key whose operations are `append` and `read` (any `fail` ops aside) holds a string that
//! only grows. When the appended strings are unique, non-empty and *prefix-free* (no appended
//! string is a prefix of another, as with Jepsen-style values `"17,"`), a read's value splits
//! in exactly one way into the appends it saw, in the order they took effect. Every read
//! then names a position in one total order of appends, and the history reduces to an
//! ordering problem that is decided without search, in time linear in the history plus the
//! bytes read.
//!
//! # Applicability
//!
//! [`check`] answers `None` ("use the general search") when the initial value is an integer,
//! when some op other than `append`/`read` did not fail, or when the appended strings (of
//! appends that did not fail) are not unique, non-empty and prefix-free. It answers only
//! when at least one such append exists (a key without any is the register fast path's).
//!
//! # The reduction
//!
//! Let `init` be the initial value's string (empty for `null`). Every state is `init`
//! followed by a concatenation of distinct appended strings, and every state is a prefix of
//! every later one. So:
//!
//! * two `ok` reads whose values are not prefixes of one another cannot both be explained;
//! * the longest read `L` must parse into appended strings (greedily: prefix-freeness leaves
//!   at most one candidate at each offset), each at most once; every other read must end on
//!   a boundary of that parse (or be the initial value itself);
//! * the appends `a_1 .. a_m` of `L`'s parse took effect first, in that order, and a read of
//!   the state after `a_i` (stage `i`) lies between `a_i` and `a_{i+1}`;
//! * an append no read saw: an `info` one never took effect (dropping it is always allowed:
//!   nothing observed it); an `ok` one took effect after `a_m` and after every read.
//!
//! Anything that fails these is not linearizable. What is left is a chain of precedence
//! constraints (`a_i` before the reads of stage `i`, which come before `a_{i+1}`) plus one
//! interval per op. Placing every op at its earliest point, after its predecessors and
//! after its own invocation, is optimal (an earliest-start schedule), so the key is
//! linearizable iff each op's earliest point is not after its completion. Points are event
//! positions: an op placed at the invocation of a later-invoked op is just after it, which
//! is before its own completion whenever that position is not smaller (an invocation and a
//! completion at one position count as concurrent, as in the general search). The witness
//! sorts ops by (point, chain order).

use crate::budget::{Budget, KeyOutcome, Want};
use crate::history::{Action, Op, Status, Value};
use hashbrown::{HashMap, HashSet};

/// Before everything: the earliest point of the first op in the chain.
const START: i64 = -1;

/// An op's position as a point; open-ended ops end at +∞.
fn point(pos: usize) -> i64 {
    i64::try_from(pos).unwrap_or(i64::MAX)
}

/// Decides one key's ops (sorted by invoke position) against a cas register starting at
/// `initial` when it is an append register with unique prefix-free appends; `None` when the
/// fast path does not apply (see the module docs).
///
/// A `Linearizable` witness lists positions in `ops`, in linearization order (empty when
/// only the verdict is wanted).
pub fn check(ops: &[Op], initial: &Value, budget: &Budget, want: Want) -> Option<KeyOutcome> {
    let init: &[u8] = match initial {
        Value::Null => b"",
        Value::Str(s) => s.as_bytes(),
        Value::Int(_) => return None,
    };

    // ---- Scan: applicability, appends by string, reads. ----
    let mut appends: HashMap<&[u8], usize> = HashMap::new();
    let mut reads: Vec<(&Value, usize)> = Vec::new();
    let mut noops: Vec<usize> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.status == Status::Fail {
            continue;
        }
        match &op.action {
            Action::Append(s) => {
                if s.is_empty() || appends.insert(s.as_bytes(), i).is_some() {
                    return None;
                }
            }
            Action::Read(Some(v)) if op.status == Status::Ok => reads.push((v, i)),
            Action::Read(None) if op.status == Status::Ok => noops.push(i),
            // Indeterminate reads constrain nothing.
            Action::Read(_) => {}
            Action::Write(_) | Action::Cas(_, _) | Action::Acquire | Action::Release => {
                return None
            }
        }
    }
    if appends.is_empty() {
        return None;
    }
    let mut sorted: Vec<&[u8]> = appends.keys().copied().collect();
    sorted.sort_unstable();
    // In sorted order, a string that is a prefix of another is a prefix of its successor.
    if sorted.windows(2).any(|w| w[1].starts_with(w[0])) {
        return None;
    }
    let mut lengths: Vec<usize> = sorted.iter().map(|s| s.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    drop(sorted);
    if let Some(why) = budget.exhausted() {
        return Some(KeyOutcome::Unknown(why));
    }

    // ---- Each read's body: what the appends added to the initial value. ----
    // `None` body: the initial value itself when it is `null` (stage 0).
    let mut bodies: Vec<(Option<&[u8]>, usize)> = Vec::with_capacity(reads.len());
    for &(v, i) in &reads {
        let body = match (v, initial) {
            (Value::Null, Value::Null) => None,
            // With a `null` start, a string state holds at least one (non-empty) append.
            (Value::Str(s), Value::Null) if !s.is_empty() => Some(s.as_bytes()),
            (Value::Str(s), Value::Str(_)) => match s.as_bytes().strip_prefix(init) {
                Some(rest) => Some(rest),
                None => return Some(KeyOutcome::NotLinearizable),
            },
            _ => return Some(KeyOutcome::NotLinearizable),
        };
        bodies.push((body, i));
    }
    let longest: &[u8] = bodies
        .iter()
        .filter_map(|b| b.0)
        .max_by_key(|b| b.len())
        .unwrap_or(b"");

    // ---- Parse the longest read: the order of the observed appends. ----
    let mut chain: Vec<usize> = Vec::new();
    // `bounds[k]`: bytes of `longest` covered by the first `k` appends.
    let mut bounds: Vec<usize> = vec![0];
    let mut used: HashSet<usize> = HashSet::new();
    let mut at = 0;
    while at < longest.len() {
        let rest = &longest[at..];
        let found = lengths
            .iter()
            .take_while(|&&n| n <= rest.len())
            .find_map(|&n| appends.get(&rest[..n]).map(|&op| (op, n)));
        let Some((op, n)) = found else {
            return Some(KeyOutcome::NotLinearizable);
        };
        if !used.insert(op) {
            return Some(KeyOutcome::NotLinearizable);
        }
        chain.push(op);
        at += n;
        bounds.push(at);
    }
    if let Some(why) = budget.exhausted() {
        return Some(KeyOutcome::Unknown(why));
    }

    // ---- Every read names a stage: the number of appends it saw. ----
    let mut stage_reads: Vec<Vec<usize>> = vec![Vec::new(); chain.len() + 1];
    for &(body, i) in &bodies {
        let stage = match body {
            None => 0,
            Some(b) => {
                if !longest.starts_with(b) {
                    return Some(KeyOutcome::NotLinearizable);
                }
                match bounds.binary_search(&b.len()) {
                    Ok(stage) => stage,
                    Err(_) => return Some(KeyOutcome::NotLinearizable),
                }
            }
        };
        stage_reads[stage].push(i);
    }

    // ---- Earliest points along the chain, then the appends nobody saw. ----
    // (point, order, op): the witness sorted.
    let mut placed: Vec<(i64, usize, usize)> = Vec::with_capacity(ops.len());
    let place = |op: usize, after: i64, placed: &mut Vec<(i64, usize, usize)>| {
        let at = after.max(point(ops[op].invoke));
        if at > point(ops[op].end()) {
            return None;
        }
        placed.push((at, placed.len() + 1, op));
        Some(at)
    };
    let mut stage_end = START;
    for (stage, readers) in stage_reads.iter().enumerate() {
        let mut after = stage_end;
        if stage > 0 {
            match place(chain[stage - 1], stage_end, &mut placed) {
                Some(at) => after = at,
                None => return Some(KeyOutcome::NotLinearizable),
            }
        }
        stage_end = after;
        for &r in readers {
            match place(r, after, &mut placed) {
                Some(at) => stage_end = stage_end.max(at),
                None => return Some(KeyOutcome::NotLinearizable),
            }
        }
    }
    let mut unseen: Vec<usize> = appends
        .values()
        .copied()
        .filter(|op| !used.contains(op) && ops[*op].status == Status::Ok)
        .collect();
    unseen.sort_unstable();
    for op in unseen {
        if place(op, stage_end, &mut placed).is_none() {
            return Some(KeyOutcome::NotLinearizable);
        }
    }
    if want == Want::Verdict {
        return Some(KeyOutcome::Linearizable(Vec::new()));
    }
    // A read of unknown result goes anywhere in its interval: at its invocation.
    for &r in &noops {
        placed.push((point(ops[r].invoke), 0, r));
    }
    placed.sort_unstable();
    Some(KeyOutcome::Linearizable(
        placed.into_iter().map(|p| p.2).collect(),
    ))
}
