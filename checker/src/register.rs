//! Polynomial fast path for registers whose written values are unique.
//!
//! Deciding linearizability is NP-complete in general, but Gibbons and Korach ("Testing
//! shared memories", SIAM J. Computing 26(4), 1997) showed that a read/write register whose
//! every read can be mapped to the unique write it observed (the *read-mapping* case) is
//! decidable in O(n log n). Histories produced by Jepsen-style workloads write unique values
//! almost always, so this module decides such keys without any search. It extends the
//! result to compare-and-set, which the original paper does not have.
//!
//! # Applicability
//!
//! [`check_with_conflict`] answers `None` ("use the general search") when the key has an `append` (or any
//! non-register op) that did not fail, or when the written values are not unique: two
//! writers (`write v` or `cas _ v`, `fail` ones aside) of the same value, a writer of the
//! initial value, or a `cas a a`. `fail` ops never took effect and are dropped; reads whose
//! result is unknown (`Read(None)`) and `info` reads constrain nothing and are dropped too
//! (an `ok` `Read(None)` is still placed in the witness, anywhere in its interval).
//!
//! # Clusters and which indeterminate writers took effect
//!
//! With unique values every `ok` read of `v` and every `cas v _` names the one op that wrote
//! `v` (the initial value has a virtual writer at −∞). The *cluster* of `v` is its writer
//! plus the `ok` reads of `v`. An `ok` read of a value nobody wrote, or an included cas whose
//! expected value nobody wrote, can never be explained: not linearizable.
//!
//! `ok` writers are always included. An `info` (or never-completed) writer is included iff
//! its value is *observed* by an included op: an `ok` read of it, or an included cas that
//! consumes it; including an `info` cas makes its own expected value observed, so this is a
//! worklist fixpoint. Dropping an unobserved `info` writer is safe: in any linearization
//! containing it, the op after it is a write (no read sees its value, no cas consumes it),
//! so removing it leaves a legal sequence; keeping an observed one is forced.
//!
//! # Blocks
//!
//! A linearization is a sequence of writers, each followed by the reads of its value. A
//! `cas a b` needs the state `a`, so with unique values it comes *immediately* after cluster
//! `a` (after all reads of `a`): two included cas consuming the same value are impossible,
//! and clusters linked by cas form chains that occupy one contiguous stretch of the
//! sequence. A *block* is a maximal chain `c_1 .. c_n`: `c_1` is the cluster of a plain
//! `write` (or the initial value), and `c_{i+1}` is the cluster of the cas consuming `c_i`'s
//! value. Included clusters not reachable from such a head lie on a cas cycle: impossible.
//! Apart from the initial block, which comes first, blocks may go in any order, since a
//! plain write does not look at the state.
//!
//! Positions are event positions (distinct integers); each op takes effect at a real point
//! strictly inside its interval `(invoke, end)`. For a block let `S` be the invoke of its
//! first writer (−∞ for the initial block); for cluster `i`, `L_i` the minimum end and
//! `E_i` the maximum invoke over its ops (writer and reads), `S_i` the invoke of its cas.
//! Placing every op as early as possible behind its predecessors shows:
//!
//! * the block is internally feasible iff `S < L_1` and `K_i < L_i` for `i ≥ 2`, where
//!   `K_i = max(E_1 .. E_{i-1}, S_i)` is the earliest point stage `i` can start (for the
//!   initial block `L_1` is +∞: its virtual writer imposes nothing);
//! * with `L* = min L_i` and `K = max E_i`, the block can start at any `t ∈ (S, L*)`, and
//!   then exactly needs the span `[t, max(t, K)]` (every op is after `t` and before its end,
//!   so `t < L*`; the last op is after every invoke, so the span reaches `K`).
//!
//! A *forward* block (`L* < K`) therefore covers `[L*, K]` wherever it goes; a *backward*
//! block (`K < L*`) can shrink to one point anywhere in its window `(K, L*)` (and a longer
//! span is never easier to fit). The initial block covers `(−∞, K]`, a forward region. This
//! is Gibbons and Korach's zone argument with blocks in place of clusters, and the same
//! theorem follows:
//!
//! **The key is linearizable iff every block is internally feasible, the forward regions
//! are pairwise disjoint, and no backward window lies inside one forward region.**
//!
//! *Necessity:* spans of distinct blocks are disjoint, each forward span contains its
//! region, and a backward block's span always meets its window. *Sufficiency:* event
//! positions are distinct integers, so disjoint regions are separated by at least one unit;
//! forward block `f` starts at `L*_f − ½` and its ops go to their earliest points, inside
//! `[L*_f − ½, K_f]`; the disjoint closed regions cannot cover a connected window unless
//! one of them contains it, so every backward window holds a free half-integer point, where
//! the whole block is placed in chain order. Ordering all ops by point (ties: backward
//! blocks first, then by block and chain position) is the witness.
//!
//! Forward regions are sorted and checked pairwise-adjacent; each backward window finds its
//! free point by binary search. The whole check is O(n log n), iterative (no recursion), and
//! polls the [`Budget`] now and then.

use crate::budget::{Budget, KeyOutcome, Want};
use crate::history::{Action, Op, Status, Value};
use hashbrown::HashMap;

/// Doubled positions: event `p` is at `2p`, so half-way points are odd integers.
type Pt = i64;
const NEG_INF: Pt = i64::MIN;
const POS_INF: Pt = i64::MAX;

/// How often (in loop iterations) long loops poll the budget.
const POLL_EVERY: usize = 1 << 14;

/// The doubled point of an event position; `usize::MAX` (open-ended) is +∞.
fn pt(pos: usize) -> Pt {
    if pos == usize::MAX {
        return POS_INF;
    }
    // Real positions are far below this; clamp instead of overflowing.
    let p = i64::try_from(pos).unwrap_or(i64::MAX / 4).min(i64::MAX / 4);
    p * 2
}

/// Where each of a list of distinct values is in it. Integers within a span a few times
/// their number (what counters and most generators write) go in a table indexed by value:
/// no hashing, which was a third of a check; any other values in a hash map.
enum ValueIndex<'a> {
    Dense { min: i64, slots: Vec<usize> },
    Hashed(HashMap<&'a Value, usize>),
}

/// An empty slot of a dense index.
const NO_POSITION: usize = usize::MAX;

impl<'a> ValueIndex<'a> {
    /// The index of `values`; `None` if a value repeats.
    fn new(values: &[&'a Value]) -> Option<Self> {
        let ints = values.iter().map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        });
        let span = ints
            .clone()
            .try_fold((i64::MAX, i64::MIN), |(lo, hi), i| {
                i.map(|i| (lo.min(i), hi.max(i)))
            })
            .and_then(|(lo, hi)| Some((lo, usize::try_from(hi.checked_sub(lo)?).ok()?)))
            .filter(|&(_, span)| span < 4 * values.len() + 64);
        if let Some((min, span)) = span {
            let mut slots = vec![NO_POSITION; span + 1];
            for (position, i) in ints.enumerate() {
                let slot = i.and_then(|i| usize::try_from(i - min).ok())?;
                if std::mem::replace(&mut slots[slot], position) != NO_POSITION {
                    return None;
                }
            }
            return Some(ValueIndex::Dense { min, slots });
        }
        let mut map = HashMap::with_capacity(values.len());
        for (position, value) in values.iter().enumerate() {
            if map.insert(*value, position).is_some() {
                return None;
            }
        }
        Some(ValueIndex::Hashed(map))
    }

    /// Where `value` is in the list, if it is.
    fn get(&self, value: &Value) -> Option<usize> {
        match (self, value) {
            (ValueIndex::Dense { min, slots }, Value::Int(i)) => {
                let slot = usize::try_from(i.checked_sub(*min)?).ok()?;
                slots.get(slot).copied().filter(|&c| c != NO_POSITION)
            }
            (ValueIndex::Dense { .. }, _) => None,
            (ValueIndex::Hashed(map), _) => map.get(value).copied(),
        }
    }
}

/// Cluster 0 is the initial value's, with no writer op.
const INITIAL: usize = 0;
const NO_OP: usize = usize::MAX;

/// Decides one key's ops (sorted by invoke position) against a cas register starting at
/// `initial`, when every written value is unique; `None` when the fast path does not apply
/// (see the module docs) and the general search must decide. For a key it refutes, where
/// the conflict it found shows in the history.
///
/// A `Linearizable` witness lists positions in `ops`, in linearization order (empty when
/// only the verdict is wanted).
pub fn check_with_conflict(
    ops: &[Op],
    initial: &Value,
    budget: &Budget,
    want: Want,
) -> Option<(KeyOutcome, Option<Conflict>)> {
    Some(match run(ops, initial, budget, want)? {
        Ok(outcome) => (outcome, None),
        Err(conflict) => (KeyOutcome::NotLinearizable, Some(conflict)),
    })
}

/// Where a refutation's conflict shows (event positions): the history observed up to
/// `latest` holds every op whose constraints the check found in conflict, and most likely
/// the conflict shows up to `earliest` already (when the others only widened it). A hint
/// for [`crate::explain`], which verifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub earliest: usize,
    pub latest: usize,
}

impl Conflict {
    /// A conflict all of whose ops were seen by `position`.
    fn by(position: usize) -> Self {
        Conflict {
            earliest: position,
            latest: position,
        }
    }
}

/// [`check_with_conflict`], telling a refutation's conflict apart: `Err` is `NotLinearizable`.
fn run(
    ops: &[Op],
    initial: &Value,
    budget: &Budget,
    want: Want,
) -> Option<Result<KeyOutcome, Conflict>> {
    // Where an op's constraints are all known: its completion, or (info) its invocation.
    let seen = |o: usize| ops[o].complete.unwrap_or(ops[o].invoke);

    // ---- Scan: applicability, writers, reads. ----
    // Sized for every op up front: growing them was a fifth of the work on a 1,000-op key.
    // writer op per cluster (cluster 0 has none), and the values written by clusters 1...
    let mut writer: Vec<usize> = Vec::with_capacity(ops.len() + 1);
    writer.push(NO_OP);
    let mut written_values: Vec<&Value> = Vec::with_capacity(ops.len());
    let mut reads: Vec<(&Value, usize)> = Vec::with_capacity(ops.len());
    let mut noops: Vec<usize> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.status == Status::Fail {
            continue;
        }
        let written = match &op.action {
            Action::Read(Some(v)) => {
                if op.status == Status::Ok {
                    reads.push((v, i));
                }
                continue;
            }
            Action::Read(None) => {
                if op.status == Status::Ok {
                    noops.push(i);
                }
                continue;
            }
            Action::Write(v) => v,
            Action::Cas(a, b) => {
                if a == b {
                    return None;
                }
                b
            }
            Action::Append(_) | Action::Acquire | Action::Release => return None,
        };
        if written == initial {
            return None;
        }
        writer.push(i);
        written_values.push(written);
    }
    let clusters = writer.len();
    // `None` when a value is written twice.
    let written_at = ValueIndex::new(&written_values)?;
    // Polled once it is known the fast path applies, so that a key given up on is reported
    // with the method that would have decided it.
    if let Some(why) = budget.exhausted() {
        return Some(Ok(KeyOutcome::Unknown(why)));
    }
    let lookup = |v: &Value| -> Option<usize> {
        if v == initial {
            Some(INITIAL)
        } else {
            written_at.get(v).map(|position| position + 1)
        }
    };
    // The cluster a cas writer consumes (`None`: nobody wrote its expected value).
    let consumes = |c: usize| -> Option<Option<usize>> {
        match ops.get(writer[c]).map(|o| &o.action) {
            Some(Action::Cas(a, _)) => Some(lookup(a)),
            _ => None,
        }
    };

    // ---- Reads into clusters (CSR, each cluster's reads in invoke order). ----
    let mut read_cluster = Vec::with_capacity(reads.len());
    for &(v, r) in &reads {
        match lookup(v) {
            Some(c) => read_cluster.push(c),
            None => return Some(Err(Conflict::by(seen(r)))),
        }
    }
    let mut read_start = vec![0usize; clusters + 1];
    for &c in &read_cluster {
        read_start[c + 1] += 1;
    }
    for c in 0..clusters {
        read_start[c + 1] += read_start[c];
    }
    let mut fill = read_start.clone();
    let mut read_ops = vec![0usize; reads.len()];
    for (k, &c) in read_cluster.iter().enumerate() {
        read_ops[fill[c]] = reads[k].1;
        fill[c] += 1;
    }
    drop(fill);
    let cluster_reads = |c: usize| &read_ops[read_start[c]..read_start[c + 1]];

    // ---- Which writers took effect: ok ones, and info ones that are observed. ----
    // Each with where the history first showed it took effect (for conflicts).
    let mut included = vec![false; clusters];
    let mut included_by = vec![0usize; clusters];
    let mut stack: Vec<(usize, usize)> = Vec::with_capacity(clusters + reads.len());
    stack.push((INITIAL, 0));
    for c in 1..clusters {
        if ops[writer[c]].status == Status::Ok {
            stack.push((c, seen(writer[c])));
        }
    }
    stack.extend(
        read_cluster
            .iter()
            .zip(&reads)
            .map(|(&c, &(_, r))| (c, seen(r))),
    );
    while let Some((c, by)) = stack.pop() {
        if included[c] {
            // The earliest reason counts (those reached later through a cas may still carry
            // a later one: a hint need not be exact).
            included_by[c] = included_by[c].min(by);
            continue;
        }
        included[c] = true;
        included_by[c] = by;
        if c != INITIAL {
            let by = by.max(ops[writer[c]].invoke);
            match consumes(c) {
                Some(Some(prev)) => stack.push((prev, by)),
                Some(None) => return Some(Err(Conflict::by(by))),
                None => {}
            }
        }
    }
    drop(stack);

    // ---- Chains: each cluster has at most one included cas consuming it. ----
    let mut next = vec![NO_OP; clusters];
    for (c, _) in included.iter().enumerate().skip(1).filter(|(_, &inc)| inc) {
        if let Some(Some(prev)) = consumes(c) {
            if next[prev] != NO_OP {
                let by = included_by[c].max(included_by[next[prev]]);
                return Some(Err(Conflict::by(by)));
            }
            next[prev] = c;
        }
    }
    if let Some(why) = budget.exhausted() {
        return Some(Ok(KeyOutcome::Unknown(why)));
    }

    // ---- Blocks: walk chains from the initial cluster and from each included write. ----
    struct Block {
        /// Range in `chain`.
        start: usize,
        end: usize,
        initial: bool,
        l_star: Pt,
        k: Pt,
        /// Where the ops giving `l_star` and `k` were seen, and where its clusters were
        /// (for conflicts).
        l_star_by: usize,
        k_by: usize,
        included_by: usize,
    }
    let mut chain: Vec<usize> = Vec::with_capacity(clusters);
    // K_i per cluster: the earliest point its stage may start (for witness placement).
    let mut stage_k = vec![NEG_INF; clusters];
    let mut blocks: Vec<Block> = Vec::with_capacity(clusters);
    let heads = std::iter::once(INITIAL).chain(
        (1..clusters).filter(|&c| included[c] && matches!(ops[writer[c]].action, Action::Write(_))),
    );
    for (n, head) in heads.enumerate() {
        if n % POLL_EVERY == 0 {
            if let Some(why) = budget.exhausted() {
                return Some(Ok(KeyOutcome::Unknown(why)));
            }
        }
        let is_initial = head == INITIAL;
        let start = chain.len();
        let (s, s_by) = if is_initial {
            (NEG_INF, 0)
        } else {
            (pt(ops[writer[head]].invoke), included_by[head])
        };
        let (mut l_star, mut running_e) = (POS_INF, NEG_INF);
        // Where the ops giving them were seen; `block_by`: where its clusters were.
        let (mut l_star_by, mut running_e_by, mut block_by) = (0, 0, 0);
        let mut c = head;
        let mut first = true;
        loop {
            chain.push(c);
            block_by = block_by.max(included_by[c]);
            let w = writer[c];
            let (mut l, mut e, mut l_by, mut e_by) = (POS_INF, NEG_INF, 0, 0);
            if w != NO_OP {
                (l, e) = (pt(ops[w].end()), pt(ops[w].invoke));
                (l_by, e_by) = (seen(w), seen(w));
            }
            for &r in cluster_reads(c) {
                if pt(ops[r].end()) < l {
                    (l, l_by) = (pt(ops[r].end()), seen(r));
                }
                if pt(ops[r].invoke) > e {
                    (e, e_by) = (pt(ops[r].invoke), seen(r));
                }
            }
            let (k_i, k_by) = if first {
                (s, s_by)
            } else if running_e >= pt(ops[w].invoke) {
                (running_e, running_e_by)
            } else {
                (pt(ops[w].invoke), seen(w))
            };
            // The initial cluster has no writer: nothing to check, no bound on the start.
            if !(first && is_initial) {
                if k_i >= l {
                    return Some(Err(Conflict::by(k_by.max(l_by).max(block_by))));
                }
                if l < l_star {
                    (l_star, l_star_by) = (l, l_by);
                }
            }
            stage_k[c] = k_i;
            if e > running_e {
                (running_e, running_e_by) = (e, e_by);
            }
            first = false;
            c = next[c];
            if c == NO_OP {
                break;
            }
        }
        blocks.push(Block {
            start,
            end: chain.len(),
            initial: is_initial,
            l_star,
            k: running_e,
            l_star_by,
            k_by: running_e_by,
            included_by: block_by,
        });
    }
    // Every included cluster is on some chain, or else on a cas cycle.
    if chain.len() != included.iter().filter(|&&b| b).count() {
        let by = included_by.iter().max().copied().unwrap_or(0);
        return Some(Err(Conflict::by(by)));
    }
    if let Some(why) = budget.exhausted() {
        return Some(Ok(KeyOutcome::Unknown(why)));
    }

    // ---- Forward regions: pairwise disjoint. ----
    // [L, K] per forward region (the initial block's is (−∞, K]), with its block.
    let mut regions: Vec<(Pt, Pt, &Block)> = Vec::with_capacity(blocks.len());
    for b in &blocks {
        if b.initial {
            if b.k != NEG_INF {
                regions.push((NEG_INF, b.k, b));
            }
        } else if b.l_star < b.k {
            regions.push((b.l_star, b.k, b));
        }
    }
    // Their starts are distinct (distinct ops end at distinct positions): the order by start
    // is the order.
    regions.sort_unstable_by_key(|region| region.0);
    if let Some(w) = regions.windows(2).find(|w| w[0].1 >= w[1].0) {
        // The later region starts inside the earlier one. How far it reaches, and which
        // clusters made up the two, may only have widened the conflict (a prefix without
        // them may still hold it, the later block then a backward window).
        let (earlier, later) = (w[0].2, w[1].2);
        let earliest = earlier.l_star_by.max(earlier.k_by).max(later.l_star_by);
        let latest = [later.k_by, earlier.included_by, later.included_by]
            .into_iter()
            .fold(earliest, usize::max);
        return Some(Err(Conflict { earliest, latest }));
    }

    // ---- Backward windows: a free half-way point in (K, L*) outside every region. ----
    // Also computes every block's placement `first` (the earliest point of its first op);
    // backward blocks put all their ops there.
    let mut first_pt = vec![NEG_INF; blocks.len()];
    let mut backward = vec![false; blocks.len()];
    for (n, b) in blocks.iter().enumerate() {
        if n % POLL_EVERY == 0 {
            if let Some(why) = budget.exhausted() {
                return Some(Ok(KeyOutcome::Unknown(why)));
            }
        }
        if b.initial {
            continue;
        }
        if b.l_star < b.k {
            first_pt[n] = b.l_star - 1;
            continue;
        }
        backward[n] = true;
        let mut x = b.k + 1;
        let mut by = b.k_by.max(b.l_star_by).max(b.included_by);
        let idx = regions.partition_point(|r| r.0 <= x);
        if idx > 0 && regions[idx - 1].1 > x {
            x = regions[idx - 1].1 + 1;
            let region = regions[idx - 1].2;
            by = by
                .max(region.l_star_by)
                .max(region.k_by)
                .max(region.included_by);
        }
        if x >= b.l_star {
            return Some(Err(Conflict::by(by)));
        }
        first_pt[n] = x;
    }

    if want == Want::Verdict {
        return Some(Ok(KeyOutcome::Linearizable(Vec::new())));
    }

    // ---- Witness: every op at its point; ties broken backward-first, then chain order. ----
    // (point, rank, block, sequence in block, op)
    let mut placed: Vec<(Pt, u8, usize, usize, usize)> =
        Vec::with_capacity(read_ops.len() + clusters + noops.len());
    for (n, b) in blocks.iter().enumerate() {
        let first = first_pt[n];
        let rank = if backward[n] { 0 } else { 1 };
        let mut seq = 0usize;
        for &c in &chain[b.start..b.end] {
            let k_i = stage_k[c];
            let w = writer[c];
            let members = (w != NO_OP)
                .then_some(w)
                .into_iter()
                .chain(cluster_reads(c).iter().copied());
            for o in members {
                let point = if backward[n] {
                    first
                } else {
                    first.max(k_i).max(pt(ops[o].invoke))
                };
                placed.push((point, rank, n, seq, o));
                seq += 1;
            }
        }
    }
    for &o in &noops {
        placed.push((pt(ops[o].invoke) + 1, 2, usize::MAX, 0, o));
    }
    if let Some(why) = budget.exhausted() {
        return Some(Ok(KeyOutcome::Unknown(why)));
    }
    placed.sort_unstable();
    Some(Ok(KeyOutcome::Linearizable(
        placed.into_iter().map(|p| p.4).collect(),
    )))
}
