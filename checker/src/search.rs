//! General linearizability search: the Wing–Gong / Lowe algorithm with memoisation.
//!
//! [`check`] decides whether one key's operations can be totally ordered so that the order
//! respects real time (an op that completed before another was invoked comes first) and is a
//! legal sequential execution of a [`Model`]. It is the algorithm of Lowe's "Testing for
//! linearizability" (2017) as implemented by Porcupine, adapted to indeterminate ops.
//!
//! # The search
//! Every op that takes part gets a *call* entry at its invoke position and, if it must take
//! effect (`ok`), a *return* entry at its completion; the entries form one doubly-linked list
//! in real-time order. An op may be linearized next exactly when its call precedes the first
//! return still in the list: that return belongs to the earliest-completing `ok` op not yet
//! linearized, and nothing invoked after it completed may come before it. The search walks
//! the list from the head:
//! - at a call whose op the model accepts in the current state, it *linearizes* the op: pushes
//!   (op, state before) on an explicit stack, unlinks the op's call and return entries
//!   (dancing links), moves to the new state and starts again from the head;
//! - at a return (an op that should have been linearized by now but could not be), it
//!   *backtracks*: pops the last op, relinks its entries, restores the state and goes on with
//!   the entry after that op's call.
//!
//! The history is linearizable as soon as no `ok` op is left; the stack is the witness. It is
//! not linearizable when a backtrack finds the stack empty. The stack is a `Vec`, so histories
//! of any length run without recursion.
//!
//! # Memoisation
//! What the search can still do from a configuration depends only on the set of linearized ops
//! (which fixes the rest of the list) and the model state. Every configuration entered is
//! recorded; a step into a configuration already recorded is skipped, because everything
//! reachable from it has already been explored and failed (or the search would have stopped).
//! States are interned to `u32` ids. The set is kept as two bitsets, one over `ok` ops and one
//! over `info` ops, and a memo key stores only each bitset's *window*: its words after the
//! leading all-ones words and before the trailing all-zero words (with the window's start).
//! The window is a function of the set, so keys compare exactly; in a long history it covers
//! the ops in flight plus the `info` ops, not the whole history. Keys are hashed
//! incrementally (Zobrist: XOR of a fixed random word per linearized op, mixed with the state
//! id) and stored in one arena, so a step allocates nothing.
//!
//! # Indeterminate (`info`) ops
//! An `info` op (or one that never completed) may take effect at any time after its invoke, or
//! never. It gets a call entry and no return entry, which amounts to a return at +infinity: it
//! never blocks another op, stays a candidate until it is linearized (so it may be linearized
//! arbitrarily late), and the search succeeds once every `ok` op is linearized, whatever `info`
//! ops are left: those never happened. No `info` op is ever required.
//!
//! # Pruning, and why each is safe
//! - `fail` ops are dropped: they certainly had no effect, so no linearization contains them.
//! - `info` reads with an unknown result (`Action::Read(None)`) are dropped: they are optional
//!   and do not change the state, so a linearization with one is still one without it.
//! - An `info` op whose step leaves the model state unchanged is never linearized. From the
//!   configuration (linearized set S, state s) the search can do everything it could do from
//!   (S + op, s): the op has no return entry, so S + op has the same list as S less one
//!   optional candidate. Nothing is lost by not taking it.
//! - `info` ops with equal actions are interchangeable, so they are linearized in the order
//!   of their calls: one waits until every earlier one is linearized. An `info` op is in
//!   reach from the first point where its call precedes the first return left, and stays in
//!   reach from then on; an earlier call is in reach no later. So if a linearization uses
//!   equal `info` ops at points t1 < ... < tk, giving those points to the k earliest-called
//!   of them, in call order, still respects real time and yields the same states. Without
//!   this, k interchangeable `info` writes would be explored in up to 2^k subsets, not k + 1.
//! - A step after which some `ok` op could never apply is not taken: every `ok` op must
//!   still be linearized, so nothing beyond that step succeeds. Two tests say "never":
//!   - when the model knows every op's [`Effect`] (a register of reads, writes and cas): some
//!     `ok` op not yet linearized needs a state ([`Model::needs`]: a read of `v`, a cas from
//!     `v`) that is not the state now and that no op still to apply sets. Counts per needed
//!     state, kept as ops are linearized and undone, make this one comparison a step;
//!   - when the model can tell from the state ([`Model::may_still_apply`]), for the `ok`
//!     ops of the window (the calls before the first return, and that return's op): between
//!     writes, appends only make a string longer, so a read of a value that does not start
//!     with the state is out of reach unless an op still to apply writes a value the read's
//!     starts with ([`Model::revived_by`]; counts per written state, kept as ops are
//!     linearized and undone). This turns appends seen by reads, which would otherwise be
//!     tried in every order until a read's return refutes them, into a walk along the
//!     order the reads reveal.
//! - States the model knows to allow exactly the same ops from there on are one state
//!   ([`Model::step_given`]): with appends, every state holding an appended string that no
//!   read or cas holds (puts hiding appends nobody saw would otherwise make one state per
//!   order of those appends).
//! - Memoised configurations are skipped (above), and so are configurations *dominated* by a
//!   memoised one: (S + u, s) with u an `info` op, when (S, s) was seen. From (S, s) the
//!   search can do all it can from (S + u, s): the same `ok` ops are linearized, so the same
//!   returns remain; u, having no return, blocks nothing; and a twin of u that would now
//!   wait for u has u itself to use instead. A seen configuration that is not on the current
//!   path (and sets on the path only grow, so (S, s) is not) has been explored and failed.
//!   The check tries removing the op being linearized, if optional, and the last
//!   [`DOMINANCE_DEPTH`] optional ops linearized.
//!
//! An `ok` op without a completion position (malformed input) has its return at +infinity:
//! it must take effect, at any time after its invoke. An `info` op's completion position, if
//! any, is ignored: `info` means the op may take effect at any time after its invoke.
//!
//! # Limits
//! The budget is polled every [`POLL_INTERVAL`] steps, and the memo table, its key arena,
//! the interned states and the fixed per-op arrays are charged to it (by capacity, before
//! they grow). Giving up returns [`KeyOutcome::Unknown`]; everything charged is released
//! before [`check`] returns.

use crate::budget::{Budget, GiveUp, KeyOutcome};
use crate::history::{Action, Op, Status};
use crate::spec::{Effect, Model};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;
use std::mem::size_of;

/// Steps between two polls of [`Budget::exhausted`] (the first step polls too).
pub const POLL_INTERVAL: u64 = 1024;

/// "No entry" in the linked list's index arrays.
const NIL: u32 = u32::MAX;

/// A read whose needed state the model does not name: [`Model::step`] decides.
const ANY_STATE: u32 = u32::MAX - 1;

/// How many of the most recently linearized `info` ops the dominance check tries removing
/// (trying all of them costs more than it saves on long histories).
const DOMINANCE_DEPTH: usize = 8;

/// Decides whether `ops` (one key's operations, sorted by invoke position) are linearizable
/// with respect to `model`.
///
/// Returns a witness ([`KeyOutcome::Linearizable`]: positions in `ops` of the ops that took
/// effect, in linearization order; `fail` ops and `info` ops that did not take effect are left
/// out), [`KeyOutcome::NotLinearizable`], or [`KeyOutcome::Unknown`] when the budget ran out.
pub fn check<M: Model>(model: &M, ops: &[Op], budget: &Budget) -> KeyOutcome {
    let mut charged = 0;
    let outcome = match Search::new(model, ops, budget, &mut charged) {
        Ok(mut search) => {
            let result = search.run();
            charged = search.charged;
            result
        }
        Err(give_up) => Err(give_up),
    };
    budget.release(charged);
    match outcome {
        Ok(Some(order)) => KeyOutcome::Linearizable(order),
        Ok(None) => KeyOutcome::NotLinearizable,
        Err(give_up) => KeyOutcome::Unknown(give_up),
    }
}

/// An op that takes part in the search.
struct Live {
    /// Position in the caller's `ops`.
    pos: usize,
    /// `ok`: must be linearized. Otherwise `info`: may be.
    required: bool,
    /// For an `ok` op that leaves the state as it is ([`Effect::Keeps`], a read): the id of
    /// the state it needs, [`ANY_STATE`] when the model does not say; `NIL` for other ops.
    reads: u32,
    /// Index in the `ok` or the `info` bitset.
    bit: usize,
    /// Zobrist word of this op.
    key: u64,
    /// The op's call entry.
    call: u32,
    /// For an `info` op: the `info` op with an equal action whose call comes last before this
    /// one's (`NIL` if none). This op is only linearized after that one.
    twin: u32,
}

/// One linearization step, undone by a backtrack.
#[derive(Clone, Copy)]
struct Frame {
    /// The live op linearized.
    op: u32,
    /// The state before it.
    state: u32,
    /// A read taken as the only choice (see [`Search::reader`]): when it fails, so does the
    /// configuration before it.
    forced: bool,
}

/// A bitset that tracks its window: `lo` leading all-ones words, nonzero words below `hi`.
struct TrimBits {
    words: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl TrimBits {
    fn new(bits: usize) -> Self {
        TrimBits {
            words: vec![0; bits.div_ceil(64)],
            lo: 0,
            hi: 0,
        }
    }

    fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        debug_assert!(!self.get(i), "bit {i} set twice");
        self.words[w] |= 1 << (i % 64);
        if w >= self.hi {
            self.hi = w + 1;
        }
        if w == self.lo {
            while self.lo < self.words.len() && self.words[self.lo] == !0 {
                self.lo += 1;
            }
        }
        debug_assert!(self.lo <= self.hi);
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        debug_assert!(self.get(i), "bit {i} cleared twice");
        self.words[w] &= !(1 << (i % 64));
        if w < self.lo {
            self.lo = w;
        }
        if w + 1 == self.hi && self.words[w] == 0 {
            while self.hi > 0 && self.words[self.hi - 1] == 0 {
                self.hi -= 1;
            }
        }
        debug_assert!(self.lo <= self.hi);
    }

    fn window(&self) -> &[u64] {
        &self.words[self.lo..self.hi]
    }
}

/// A memoised configuration; its bitset windows live in the arena at `offset`.
struct Entry {
    hash: u64,
    offset: usize,
    state: u32,
    ok_lo: u32,
    ok_len: u32,
    info_lo: u32,
    info_len: u32,
}

impl Entry {
    fn matches(
        &self,
        arena: &[u64],
        hash: u64,
        state: u32,
        ok: &TrimBits,
        info: &TrimBits,
    ) -> bool {
        let (ok_w, info_w) = (ok.window(), info.window());
        self.hash == hash
            && self.state == state
            && self.ok_lo as usize == ok.lo
            && self.ok_len as usize == ok_w.len()
            && self.info_lo as usize == info.lo
            && self.info_len as usize == info_w.len()
            && arena[self.offset..self.offset + ok_w.len()] == *ok_w
            && arena[self.offset + ok_w.len()..self.offset + ok_w.len() + info_w.len()] == *info_w
    }
}

/// Bytes a hashbrown table of `cap` entries of `T` allocates (buckets are a power of two,
/// at most 7/8 full, plus one control byte each).
fn table_bytes<T>(cap: usize) -> usize {
    let buckets = if cap < 8 {
        cap + 1
    } else {
        (cap.saturating_mul(8) / 7).next_power_of_two()
    };
    buckets.saturating_mul(size_of::<T>() + 1)
}

/// splitmix64: the Zobrist words and the state mixing.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The states `ok` ops need, and how many ops still to apply set each: when every op's
/// [`Effect`] is known, a state comes back only through an op that sets it. A needed state
/// that no op still to apply sets is *starved*; unless it is the state now, its ops can
/// never apply.
struct Needs<S> {
    /// The distinct needed states, numbered: a group is a number here.
    group_of: HashMap<S, u32>,
    /// Per live op: the group it needs (`ok` ops only), and the group it sets (`NIL`: none).
    need: Vec<u32>,
    sets: Vec<u32>,
    /// Per group: `ok` ops needing it, and ops setting it, that are not linearized.
    needers: Vec<u32>,
    unset: Vec<u32>,
    /// Groups with needers and no setter left.
    starved: u32,
}

impl<S: Eq + std::hash::Hash> Needs<S> {
    /// `None` when some live op's effect is unknown, or no op needs a state.
    fn new<M: Model<State = S>>(model: &M, ops: &[Op], live: &[Live]) -> Option<Self> {
        let mut group_of: HashMap<S, u32> = HashMap::new();
        let mut need = vec![NIL; live.len()];
        for (i, l) in live.iter().enumerate() {
            let action = &ops[l.pos].action;
            if matches!(model.effect(action), Effect::Unknown) {
                return None;
            }
            if let Some(state) = model.needs(action).filter(|_| l.required) {
                let next = group_of.len() as u32;
                need[i] = *group_of.entry(state).or_insert(next);
            }
        }
        let groups = group_of.len();
        if groups == 0 {
            return None;
        }
        let mut sets = vec![NIL; live.len()];
        let mut needers = vec![0; groups];
        let mut unset = vec![0; groups];
        for (i, l) in live.iter().enumerate() {
            if need[i] != NIL {
                needers[need[i] as usize] += 1;
            }
            if let Effect::Sets(state) = model.effect(&ops[l.pos].action) {
                if let Some(&g) = group_of.get(&state) {
                    sets[i] = g;
                    unset[g as usize] += 1;
                }
            }
        }
        let starved = (0..groups)
            .filter(|&g| needers[g] > 0 && unset[g] == 0)
            .count() as u32;
        Some(Needs {
            group_of,
            need,
            sets,
            needers,
            unset,
            starved,
        })
    }

    fn is_starved(&self, g: u32) -> bool {
        self.needers[g as usize] > 0 && self.unset[g as usize] == 0
    }

    /// One op of group `g` (a needer, or a setter) linearized or undone; keeps the starved
    /// count.
    fn count(&mut self, g: u32, needers: bool, linearized: bool) {
        if g == NIL {
            return;
        }
        let was = self.is_starved(g);
        let n = if needers {
            &mut self.needers[g as usize]
        } else {
            &mut self.unset[g as usize]
        };
        if linearized {
            *n -= 1;
        } else {
            *n += 1;
        }
        match (was, self.is_starved(g)) {
            (false, true) => self.starved += 1,
            (true, false) => self.starved -= 1,
            _ => {}
        }
    }

    /// Live op `op` was linearized (`true`) or undone.
    fn toggle(&mut self, op: u32, linearized: bool) {
        self.count(self.need[op as usize], true, linearized);
        self.count(self.sets[op as usize], false, linearized);
    }

    /// Whether some `ok` op still to apply can never apply, the state being `state`: its
    /// group is starved and is not `state`.
    fn dead(&self, state: &S) -> bool {
        if self.starved == 0 {
            return false;
        }
        match self.group_of.get(state) {
            Some(&g) if self.is_starved(g) => self.starved > 1,
            _ => true,
        }
    }
}

/// The ops that can set the state again, for the dead-end test by
/// [`Model::may_still_apply`]: an `ok` op that the state can no longer grow into stays in
/// reach while an op setting one of its [`Model::revived_by`] states is still to apply.
struct Revivals {
    /// Per live op: the group of the state it sets (`NIL`: none). A group is a distinct
    /// state some live op sets.
    sets: Vec<u32>,
    /// Per group: the ops setting it that are not linearized.
    unset: Vec<u32>,
    /// Per live op: its revivers' groups are `groups[from[op]..from[op + 1]]`.
    from: Vec<u32>,
    groups: Vec<u32>,
}

impl Revivals {
    fn new<M: Model>(model: &M, facts: &M::Facts, ops: &[Op], live: &[Live]) -> Self {
        let mut group_of: HashMap<M::State, u32> = HashMap::new();
        let mut sets = vec![NIL; live.len()];
        for (i, l) in live.iter().enumerate() {
            if let Effect::Sets(state) = model.effect(&ops[l.pos].action) {
                let next = group_of.len() as u32;
                sets[i] = *group_of.entry(state).or_insert(next);
            }
        }
        let mut unset = vec![0; group_of.len()];
        for &g in sets.iter().filter(|&&g| g != NIL) {
            unset[g as usize] += 1;
        }
        let mut from = Vec::with_capacity(live.len() + 1);
        let mut groups = Vec::new();
        from.push(0);
        for l in live {
            if l.required && !group_of.is_empty() {
                let revivers = model.revived_by(facts, &ops[l.pos].action);
                groups.extend(revivers.iter().filter_map(|state| group_of.get(state)));
            }
            from.push(groups.len() as u32);
        }
        Revivals {
            sets,
            unset,
            from,
            groups,
        }
    }

    /// Live op `op` was linearized (`true`) or undone.
    fn toggle(&mut self, op: u32, linearized: bool) {
        let g = self.sets[op as usize];
        if g != NIL {
            let n = &mut self.unset[g as usize];
            *n = if linearized { *n - 1 } else { *n + 1 };
        }
    }

    /// Whether an op still to apply, other than `stepping` (about to be linearized), sets a
    /// state that revives `op`.
    fn revivable(&self, op: u32, stepping: u32) -> bool {
        let own = self.sets[stepping as usize];
        let (from, to) = (self.from[op as usize], self.from[op as usize + 1]);
        self.groups[from as usize..to as usize]
            .iter()
            .any(|&g| self.unset[g as usize] > u32::from(g == own))
    }

    /// Bytes held.
    fn bytes(&self) -> usize {
        (self.sets.len() + self.unset.len() + self.from.len() + self.groups.len()) * 4
    }
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Op],
    budget: &'a Budget,
    /// Bytes charged to the budget so far (all released by [`check`]).
    charged: usize,

    live: Vec<Live>,
    /// Entry `n` is the call (`node[n] = 2 * op`) or the return (`2 * op + 1`) of live op `op`.
    node: Vec<u32>,
    /// Circular doubly-linked list over the entries; index `head` is the sentinel.
    next: Vec<u32>,
    prev: Vec<u32>,
    head: u32,
    /// The return entry of each live op (`NIL` for `info` ops).
    ret: Vec<u32>,

    ok_bits: TrimBits,
    info_bits: TrimBits,
    /// XOR of the Zobrist words of the linearized ops.
    zobrist: u64,

    states: Vec<M::State>,
    state_ids: HashTable<u32>,
    state_hasher: DefaultHashBuilder,

    memo: HashTable<Entry>,
    memo_charged: usize,
    arena: Vec<u64>,

    stack: Vec<Frame>,
    /// The linearized `info` ops, in order.
    info_used: Vec<u32>,
    /// What the model may assume about these ops to cut dead ends ([`Model::facts`]), and
    /// the ops that can set the state again.
    facts: Option<(M::Facts, Revivals)>,
    /// The dead-end test by needed states (see [`Search::dead_end`]); `None` unless the model
    /// knows every live op's [`Effect`].
    needs: Option<Needs<M::State>>,
    /// `ok` ops not linearized yet.
    remaining: usize,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        ops: &'a [Op],
        budget: &'a Budget,
        charged: &mut usize,
    ) -> Result<Self, GiveUp> {
        // Which ops take part (see the pruning notes above).
        let mut live = Vec::new();
        let (mut n_ok, mut n_info) = (0, 0);
        for (pos, op) in ops.iter().enumerate() {
            let required = match op.status {
                Status::Fail => continue,
                Status::Ok => true,
                Status::Info => false,
            };
            if !required && matches!(op.action, Action::Read(None)) {
                continue;
            }
            let bit = if required { &mut n_ok } else { &mut n_info };
            live.push(Live {
                pos,
                required,
                reads: NIL,
                bit: *bit,
                key: splitmix64(0x5eed_0000_0000 ^ pos as u64),
                call: NIL,
                twin: NIL,
            });
            *bit += 1;
        }

        // The fixed arrays (entries, links, bitsets, the stacks at their largest), charged
        // up front.
        let entries = live.len() + n_ok;
        if entries >= (NIL / 2) as usize {
            return Err(GiveUp::Memory);
        }
        let fixed = live.len() * (size_of::<Live>() + size_of::<Frame>() + 2 * 4)
            + (entries + 1) * (3 * 4 + size_of::<(usize, u8, u32)>())
            + (n_ok + n_info).div_ceil(64) * 8
            + 2 * 64;
        *charged += fixed;
        if let Some(give_up) = budget.charge(fixed) {
            return Err(give_up);
        }

        // Entries in real-time order; on equal positions a call precedes a return, so an op
        // invoked at the very position another completed counts as concurrent with it.
        let mut events: Vec<(usize, u8, u32)> = Vec::with_capacity(entries);
        for (i, l) in live.iter().enumerate() {
            let op = &ops[l.pos];
            events.push((op.invoke, 0, i as u32));
            if l.required {
                events.push((op.end(), 1, i as u32));
            }
        }
        events.sort_unstable();
        let head = entries as u32;
        let mut node = Vec::with_capacity(entries);
        let mut ret = vec![NIL; live.len()];
        for (n, &(_, kind, i)) in events.iter().enumerate() {
            node.push(2 * i + kind as u32);
            if kind == 0 {
                live[i as usize].call = n as u32;
            } else {
                ret[i as usize] = n as u32;
            }
        }
        let len = entries + 1;
        let next = (0..len).map(|n| ((n + 1) % len) as u32).collect();
        let prev = (0..len).map(|n| ((n + len - 1) % len) as u32).collect();

        // Chain `info` ops with equal actions in list order (see `twin`).
        let mut last_twin: HashMap<&Action, u32> = HashMap::new();
        for &code in &node {
            let i = code / 2;
            if code % 2 == 0 && !live[i as usize].required {
                let action = &ops[live[i as usize].pos].action;
                if let Some(prev) = last_twin.insert(action, i) {
                    live[i as usize].twin = prev;
                }
            }
        }
        drop(last_twin);

        let facts = model.facts(ops).map(|facts| {
            let revivals = Revivals::new(model, &facts, ops, &live);
            (facts, revivals)
        });
        if let Some((_, revivals)) = &facts {
            *charged += revivals.bytes();
            if let Some(give_up) = budget.charge(revivals.bytes()) {
                return Err(give_up);
            }
        }
        let needs = Needs::new(model, ops, &live);
        let stack = Vec::with_capacity(live.len());
        Ok(Search {
            model,
            ops,
            budget,
            charged: *charged,
            live,
            node,
            next,
            prev,
            head,
            ret,
            ok_bits: TrimBits::new(n_ok),
            info_bits: TrimBits::new(n_info),
            zobrist: 0,
            states: Vec::new(),
            state_ids: HashTable::new(),
            state_hasher: DefaultHashBuilder::default(),
            memo: HashTable::new(),
            memo_charged: 0,
            arena: Vec::new(),
            stack,
            info_used: Vec::new(),
            facts,
            needs,
            remaining: n_ok,
        })
    }

    /// Charges `bytes` to the budget.
    fn charge(&mut self, bytes: usize) -> Result<(), GiveUp> {
        self.charged += bytes;
        match self.budget.charge(bytes) {
            Some(give_up) => Err(give_up),
            None => Ok(()),
        }
    }

    /// The search proper: `Some(witness)`, `None` (not linearizable), or why it gave up.
    fn run(&mut self) -> Result<Option<Vec<usize>>, GiveUp> {
        self.intern_reads()?;
        let mut state = self.intern(self.model.init())?;
        let mut entry = self.next[self.head as usize];
        // At a configuration not yet looked at: a read may be the only choice.
        let mut fresh = true;
        let mut steps: u64 = 0;
        loop {
            if self.remaining == 0 {
                let order = self
                    .stack
                    .iter()
                    .map(|f| self.live[f.op as usize].pos)
                    .collect();
                return Ok(Some(order));
            }
            if steps % POLL_INTERVAL == 0 {
                if let Some(give_up) = self.budget.exhausted() {
                    return Err(give_up);
                }
            }
            steps += 1;
            if std::mem::take(&mut fresh) {
                if let Some(op) = self.reader(state) {
                    if !self.dead_end(op, state) && self.enter(op, state)? {
                        self.push(op, state, true);
                        entry = self.next[self.head as usize];
                        fresh = true;
                    } else {
                        // Every way on from here takes this read first: none is left.
                        let Some(next) = self.backtrack(&mut state) else {
                            return Ok(None);
                        };
                        entry = next;
                    }
                    continue;
                }
            }
            // An `ok` op is left, so its return entry lies ahead: the walk never reaches the
            // sentinel.
            debug_assert_ne!(entry, self.head);
            let code = self.node[entry as usize];
            let op = code / 2;
            if code % 2 == 0 {
                // A call: try to linearize its op now.
                if self.twin_waits(op) {
                    // An equal `info` op invoked earlier is still unused: use that first.
                } else if let Some(after) = self.step(state, op)? {
                    let required = self.live[op as usize].required;
                    if (required || after != state)
                        && !self.dead_end(op, after)
                        && self.enter(op, after)?
                    {
                        self.push(op, state, false);
                        state = after;
                        entry = self.next[self.head as usize];
                        fresh = true;
                        continue;
                    }
                }
                entry = self.next[entry as usize];
            } else {
                // The first return: its op was not linearized in time. Undo the last step.
                debug_assert!(!self.linearized(op));
                let Some(next) = self.backtrack(&mut state) else {
                    return Ok(None);
                };
                entry = next;
            }
        }
    }

    /// Gives every `ok` op that leaves the state as it is the id of the state it needs.
    fn intern_reads(&mut self) -> Result<(), GiveUp> {
        for op in 0..self.live.len() {
            let l = &self.live[op];
            let action = &self.ops[l.pos].action;
            if !l.required || !matches!(self.model.effect(action), Effect::Keeps) {
                continue;
            }
            self.live[op].reads = match self.model.needs(action) {
                Some(needed) => self.intern(needed)?,
                None => ANY_STATE,
            };
        }
        Ok(())
    }

    /// An `ok` read that is legal in `state` and may come next (its call is before the
    /// first return). Taking it next loses nothing, so it is the only choice: in any
    /// linearization from here that takes it later, it can move here (every op that must
    /// precede it is linearized, as its call precedes every return left; it reads the state
    /// it would read there, since reads change nothing, and leaves every other op's state
    /// as it was).
    fn reader(&self, state: u32) -> Option<u32> {
        let mut entry = self.next[self.head as usize];
        while entry != self.head {
            let code = self.node[entry as usize];
            if code % 2 == 1 {
                return None;
            }
            let op = code / 2;
            let l = &self.live[op as usize];
            let legal = l.reads == state
                || (l.reads == ANY_STATE
                    && self
                        .model
                        .step(&self.states[state as usize], &self.ops[l.pos].action)
                        .is_some());
            if legal {
                return Some(op);
            }
            entry = self.next[entry as usize];
        }
        None
    }

    /// Records `op` as linearized from state `state` (entered already).
    fn push(&mut self, op: u32, state: u32, forced: bool) {
        self.stack.push(Frame { op, state, forced });
        let required = self.live[op as usize].required;
        if !required {
            self.info_used.push(op);
        }
        self.lift(op);
        if required {
            self.remaining -= 1;
        }
    }

    /// Undoes the last step, and the one before while the undone step was a forced read;
    /// sets `state` back and returns where the walk goes on (the entry after the undone
    /// op's call), or `None` when nothing is left to undo: not linearizable.
    fn backtrack(&mut self, state: &mut u32) -> Option<u32> {
        loop {
            let frame = self.stack.pop()?;
            let required = self.live[frame.op as usize].required;
            if !required {
                self.info_used.pop();
            }
            self.unlift(frame.op);
            self.toggle(frame.op);
            *state = frame.state;
            if required {
                self.remaining += 1;
            }
            if !frame.forced {
                return Some(self.next[self.live[frame.op as usize].call as usize]);
            }
        }
    }

    /// Whether linearizing `op` into state `after` leaves some `ok` op of the window (the calls
    /// before the first return, and that return's op) unable ever to apply, by the model's
    /// [`Model::may_still_apply`]. Every `ok` op must still be linearized, so no completion
    /// exists from there.
    fn dead_end(&self, op: u32, after: u32) -> bool {
        let Some((facts, revivals)) = &self.facts else {
            return false;
        };
        let state = &self.states[after as usize];
        let mut entry = self.next[self.head as usize];
        while entry != self.head {
            let code = self.node[entry as usize];
            let other = code / 2;
            if other != op && self.live[other as usize].required {
                let action = &self.ops[self.live[other as usize].pos].action;
                if !self.model.may_still_apply(facts, state, action)
                    && !revivals.revivable(other, op)
                {
                    return true;
                }
            }
            if code % 2 == 1 {
                break;
            }
            entry = self.next[entry as usize];
        }
        false
    }

    /// Whether `op` is an `info` op whose earlier twin is not linearized yet.
    fn twin_waits(&self, op: u32) -> bool {
        let twin = self.live[op as usize].twin;
        twin != NIL && !self.linearized(twin)
    }

    fn linearized(&self, op: u32) -> bool {
        let l = &self.live[op as usize];
        if l.required {
            self.ok_bits.get(l.bit)
        } else {
            self.info_bits.get(l.bit)
        }
    }

    /// Flips `op` in the linearized set.
    fn toggle(&mut self, op: u32) {
        let l = &self.live[op as usize];
        let bits = if l.required {
            &mut self.ok_bits
        } else {
            &mut self.info_bits
        };
        let now_linearized = !bits.get(l.bit);
        if now_linearized {
            bits.set(l.bit);
        } else {
            bits.clear(l.bit);
        }
        self.zobrist ^= l.key;
        if let Some(needs) = &mut self.needs {
            needs.toggle(op, now_linearized);
        }
        if let Some((_, revivals)) = &mut self.facts {
            revivals.toggle(op, now_linearized);
        }
    }

    fn hash(&self, state: u32) -> u64 {
        self.zobrist ^ splitmix64(u64::from(state) ^ 0x57a7_e000_0000_0000)
    }

    /// Whether the current linearized set with the model in `state` is memoised.
    fn seen(&self, state: u32) -> bool {
        let hash = self.hash(state);
        let (ok, info, arena) = (&self.ok_bits, &self.info_bits, &self.arena);
        self.memo
            .find(hash, |e| e.matches(arena, hash, state, ok, info))
            .is_some()
    }

    /// Adds `op` to the linearized set with the model in `state`; `false` (and `op` left out)
    /// when that configuration was seen before.
    fn enter(&mut self, op: u32, state: u32) -> Result<bool, GiveUp> {
        debug_assert!(!self.linearized(op));
        self.toggle(op);
        let starved = |needs: &Needs<M::State>| needs.dead(&self.states[state as usize]);
        if self.needs.as_ref().is_some_and(starved) || self.seen(state) {
            self.toggle(op);
            return Ok(false);
        }
        // Dominance: the same state with one `info` op fewer was seen (and failed). First
        // `op` itself, if optional, then the latest optional ops linearized before it.
        let own = usize::from(!self.live[op as usize].required);
        let used = self.info_used.len();
        for k in 0..own + DOMINANCE_DEPTH.min(used) {
            let u = if k < own {
                op
            } else {
                self.info_used[used - 1 - (k - own)]
            };
            self.toggle(u);
            let hit = self.seen(state);
            self.toggle(u);
            if hit {
                self.toggle(op);
                return Ok(false);
            }
        }
        let hash = self.hash(state);

        // A new configuration: make room (charging first), then record it.
        let words = self.ok_bits.window().len() + self.info_bits.window().len();
        if self.arena.len() + words > self.arena.capacity() {
            let cap = self.arena.capacity();
            let new_cap = (cap * 2).max(self.arena.len() + words).max(1024);
            self.charge((new_cap - cap) * 8)?;
            self.arena.reserve_exact(new_cap - self.arena.len());
        }
        if self.memo.len() == self.memo.capacity() {
            let want = (self.memo.capacity() * 2).max(16);
            let predicted = table_bytes::<Entry>(want);
            if predicted > self.memo_charged {
                self.charge(predicted - self.memo_charged)?;
                self.memo_charged = predicted;
            }
            self.memo.reserve(want - self.memo.len(), |e| e.hash);
            let actual = table_bytes::<Entry>(self.memo.capacity());
            if actual > self.memo_charged {
                self.charge(actual - self.memo_charged)?;
                self.memo_charged = actual;
            }
        }
        let offset = self.arena.len();
        self.arena.extend_from_slice(self.ok_bits.window());
        self.arena.extend_from_slice(self.info_bits.window());
        let entry = Entry {
            hash,
            offset,
            state,
            ok_lo: self.ok_bits.lo as u32,
            ok_len: self.ok_bits.window().len() as u32,
            info_lo: self.info_bits.lo as u32,
            info_len: self.info_bits.window().len() as u32,
        };
        self.memo.insert_unique(hash, entry, |e| e.hash);
        Ok(true)
    }

    /// The state after live op `op` in `state`, interned; `None` if the model refuses it.
    fn step(&mut self, state: u32, op: u32) -> Result<Option<u32>, GiveUp> {
        let action = &self.ops[self.live[op as usize].pos].action;
        let state = &self.states[state as usize];
        let next = match &self.facts {
            Some((facts, _)) => self.model.step_given(facts, state, action),
            None => self.model.step(state, action),
        };
        match next {
            Some(next) => self.intern(next).map(Some),
            None => Ok(None),
        }
    }

    /// The id of `state`, assigning a new one if it is new. Charges the state's inline size
    /// and its table slot; heap data a state owns (a long string) is not seen.
    fn intern(&mut self, state: M::State) -> Result<u32, GiveUp> {
        let hash = self.state_hasher.hash_one(&state);
        let states = &self.states;
        if let Some(&id) = self
            .state_ids
            .find(hash, |&id| states[id as usize] == state)
        {
            return Ok(id);
        }
        if self.states.len() >= ANY_STATE as usize {
            return Err(GiveUp::Memory);
        }
        self.charge(size_of::<M::State>() + 2 * (size_of::<u32>() + 1))?;
        let id = self.states.len() as u32;
        self.states.push(state);
        let (states, hasher) = (&self.states, &self.state_hasher);
        self.state_ids
            .insert_unique(hash, id, |&i| hasher.hash_one(&states[i as usize]));
        Ok(id)
    }

    /// Unlinks live op `op`'s call entry, then its return entry.
    fn lift(&mut self, op: u32) {
        let call = self.live[op as usize].call;
        self.unlink(call);
        let ret = self.ret[op as usize];
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Relinks what [`lift`](Self::lift) unlinked, in reverse order.
    fn unlift(&mut self, op: u32) {
        let ret = self.ret[op as usize];
        if ret != NIL {
            self.relink(ret);
        }
        let call = self.live[op as usize].call;
        self.relink(call);
    }

    fn unlink(&mut self, n: u32) {
        let (p, q) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = q;
        self.prev[q as usize] = p;
    }

    fn relink(&mut self, n: u32) {
        let (p, q) = (self.prev[n as usize], self.next[n as usize]);
        debug_assert_eq!(self.next[p as usize], q);
        self.next[p as usize] = n;
        self.prev[q as usize] = n;
    }
}

#[cfg(test)]
mod tests {
    use super::{splitmix64, TrimBits};

    /// The window is a function of the set alone (so memo keys compare exactly), whatever
    /// sequence of sets and clears produced it.
    #[test]
    fn trim_bits_window_is_canonical() {
        let mut lo_moved = 0;
        for bits in [1, 63, 64, 65, 200, 640] {
            let mut t = TrimBits::new(bits);
            let mut naive = vec![false; bits];
            let mut x = bits as u64;
            for step in 0..20_000 {
                x = splitmix64(x);
                // Mostly set the lowest clear bit, as a search does, so that whole words
                // fill up and `lo` moves; sometimes toggle any bit.
                let i = match naive.iter().position(|b| !b) {
                    Some(first) if step % 4 != 0 => first,
                    _ => (x as usize) % bits,
                };
                if naive[i] {
                    t.clear(i);
                } else {
                    t.set(i);
                }
                naive[i] = !naive[i];
                let words: Vec<u64> = naive
                    .chunks(64)
                    .map(|c| {
                        c.iter()
                            .enumerate()
                            .fold(0, |w, (k, &b)| w | (u64::from(b) << k))
                    })
                    .collect();
                assert_eq!(t.words, words);
                let lo = words.iter().take_while(|&&w| w == !0).count();
                let hi = words.len() - words.iter().rev().take_while(|&&w| w == 0).count();
                assert_eq!((t.lo, t.hi), (lo, hi), "bits {bits} step {step}");
                assert!((0..bits).all(|k| t.get(k) == naive[k]));
                lo_moved += usize::from(lo > 0);
            }
        }
        assert!(lo_moved > 1000);
    }
}
