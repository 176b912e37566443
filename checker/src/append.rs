//! Fast path for strings built by puts and appends of unique values: reduced to the
//! register check.
//!
//! A key whose ops are `read`, `write` (a *put* of a string) and `append` (`fail` ops
//! aside) holds a string: a put replaces it, an append adds to its end, as in a key-value
//! store's `put`/`append` (Porcupine's kv histories) or an append-only list. When the put
//! and appended strings (of ops that did not fail) are unique, non-empty and *prefix-free*
//! (none is a prefix of another, as with Jepsen-style values `"17,"` or `"x 3 1 y"`), every
//! state is the initial value or one put's string, followed by distinct appended strings,
//! and it splits into those *parts* in exactly one way. A read's value then names the put
//! it saw (or the initial value) and, in order, the appends applied since.
//!
//! # Applicability
//!
//! [`check_with_conflict`] answers `None` ("use the general search") when the initial value is an
//! integer, when some op other than `read`/`write`/`append` did not fail, when a put writes
//! anything but a non-empty string, when the parts are not unique, non-empty and
//! prefix-free, or when the initial value is a non-empty string that some put's string
//! starts with or is a start of (a read could then split two ways). It answers only when at
//! least one append did not fail (a key without any is the register fast path's).
//!
//! # The reduction
//!
//! Call *stage* every state some `ok` read saw, and every part boundary on the way to it:
//! the initial value or a put's string (a *root*), or a stage followed by one appended
//! string (its *child*). Stages form a forest. Number them, and give each append some read
//! saw the one place it was seen at: the stage it was applied to and its child. Then the
//! key is linearizable iff this register history, whose written values are unique, is:
//!
//! * an `ok` read of a stage reads the stage's number; a read of any other value (one that
//!   does not split into parts, or that needs an append at a place other than its one
//!   place) reads a number nobody writes;
//! * a put writes its root's number; the initial value is the initial root's;
//! * an append some read saw is a cas from its place's stage to its child;
//! * an append no read saw writes a number of its own, which nobody reads.
//!
//! *Why.* Any state that equals a stage was reached by exactly that stage's root and
//! appends, in that order (the split is unique), so a read of a stage happens exactly when
//! the register holds its number; a value that needs an append at two places needs it
//! applied twice, and one that does not split is never a state. An append a read saw was
//! applied at its place, or that read could not see it there: a cas from its place. An
//! append no read saw leaves a string that no read holds until the next put, like a write
//! nobody reads: after it, both histories allow exactly puts and appends no read saw until
//! a put (a read or a seen append needs a stage, a cas a stage number). So the legal
//! sequences of the two histories are the same, op for op, and [`crate::register`] decides
//! the second in O(n log n). Its witness and conflict are positions in `ops`, as the ops
//! keep their places.
//!
//! Reads of one put's stages are split by walking the longest of them once; every other
//! read that is a prefix of it finds its stage by binary search over the part boundaries,
//! and only the rest are walked from where they leave it. Splitting costs the bytes
//! compared and a sort of the reads; the register check, O(n log n), does the rest.

use crate::budget::{Budget, KeyOutcome, Want};
use crate::history::{Action, Op, Status, Value};
use crate::register::{self, Conflict};
use hashbrown::HashMap;

/// "No stage": an append no read saw, an op with no root.
const NIL: u32 = u32::MAX;

/// The initial value's root stage, and the register's initial state.
const INITIAL_ROOT: u32 = 0;

/// Decides one key's ops (sorted by invoke position) against a cas register starting at
/// `initial`, when its strings are built by unique prefix-free puts and appends; `None`
/// when the fast path does not apply (see the module docs). For a key it refutes, where
/// the register check found the conflict.
///
/// A `Linearizable` witness lists positions in `ops`, in linearization order (empty when
/// only the verdict is wanted).
pub fn check_with_conflict(
    ops: &[Op],
    initial: &Value,
    budget: &Budget,
    want: Want,
) -> Option<(KeyOutcome, Option<Conflict>)> {
    let parts = Parts::of(ops, initial)?;
    if let Some(why) = budget.exhausted() {
        return Some((KeyOutcome::Unknown(why), None));
    }
    let stages = parts.stages(ops, initial);
    if let Some(why) = budget.exhausted() {
        return Some((KeyOutcome::Unknown(why), None));
    }
    let translated = stages.translate(ops);
    register::check_with_conflict(
        &translated,
        &Value::Int(i64::from(INITIAL_ROOT)),
        budget,
        want,
    )
}

/// The parts of one key: every put's and append's string, by its bytes.
struct Parts<'a> {
    /// Part → the op (position in `ops`) that put or appended it.
    by_bytes: HashMap<&'a [u8], usize>,
    /// The distinct lengths of the parts, ascending.
    lengths: Vec<usize>,
    /// The initial value's string, `None` for `null`.
    init: Option<&'a [u8]>,
}

impl<'a> Parts<'a> {
    /// The parts, or `None` when the fast path does not apply.
    fn of(ops: &'a [Op], initial: &'a Value) -> Option<Self> {
        let init = match initial {
            Value::Null => None,
            Value::Str(s) => Some(s.as_bytes()),
            Value::Int(_) => return None,
        };
        let mut by_bytes: HashMap<&[u8], usize> = HashMap::new();
        let mut puts: Vec<&[u8]> = Vec::new();
        let mut appends = false;
        for (i, op) in ops.iter().enumerate() {
            if op.status == Status::Fail {
                continue;
            }
            let part = match &op.action {
                Action::Read(_) => continue,
                Action::Append(s) => {
                    appends = true;
                    s.as_bytes()
                }
                Action::Write(Value::Str(s)) => {
                    puts.push(s.as_bytes());
                    s.as_bytes()
                }
                _ => return None,
            };
            if part.is_empty() || by_bytes.insert(part, i).is_some() {
                return None;
            }
        }
        if !appends {
            return None;
        }
        let mut sorted: Vec<&[u8]> = by_bytes.keys().copied().collect();
        sorted.sort_unstable();
        // In sorted order, a string that is a prefix of another is a prefix of its successor.
        if sorted.windows(2).any(|w| w[1].starts_with(w[0])) {
            return None;
        }
        if let Some(init) = init.filter(|init| !init.is_empty()) {
            if puts
                .iter()
                .any(|put| put.starts_with(init) || init.starts_with(put))
            {
                return None;
            }
        }
        let mut lengths: Vec<usize> = sorted.iter().map(|s| s.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Some(Parts {
            by_bytes,
            lengths,
            init,
        })
    }

    /// The part `rest` starts with, and its op: at most one, as the parts are prefix-free.
    fn first(&self, rest: &[u8]) -> Option<(usize, usize)> {
        self.lengths
            .iter()
            .take_while(|&&n| n <= rest.len())
            .find_map(|&n| self.by_bytes.get(&rest[..n]).map(|&op| (op, n)))
    }

    /// Every `ok` read's stage, and every append's place.
    fn stages(&self, ops: &'a [Op], initial: &Value) -> Stages {
        let mut stages = Stages {
            root: vec![NIL; ops.len()],
            place: vec![(NIL, NIL); ops.len()],
            read: vec![NIL; ops.len()],
            count: INITIAL_ROOT + 1,
        };
        for (i, op) in ops.iter().enumerate() {
            if op.status != Status::Fail && matches!(op.action, Action::Write(_)) {
                stages.root[i] = stages.fresh();
            }
        }
        // (root, what follows the root's string, read): the reads to split, by root.
        let mut bodies: Vec<(u32, &'a [u8], usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let (Status::Ok, Action::Read(Some(seen))) = (op.status, &op.action) {
                match self.root_of(ops, seen, initial, &stages) {
                    Some((root, body)) => bodies.push((root, body, i)),
                    None => stages.read[i] = stages.fresh(),
                }
            }
        }
        // Each root's reads, longest first.
        bodies.sort_unstable_by(|a, b| (a.0, b.1.len()).cmp(&(b.0, a.1.len())));
        for same_root in bodies.chunk_by(|a, b| a.0 == b.0) {
            let (root, longest, _) = same_root[0];
            // The longest read's part boundaries, and the stage at each.
            let (mut bounds, mut at_bound) = (vec![0], vec![root]);
            let (mut at, mut stage) = (0, root);
            while let Some((next, n)) = self.step(ops, &mut stages, stage, &longest[at..]) {
                (at, stage) = (at + n, next);
                bounds.push(at);
                at_bound.push(stage);
            }
            for &(_, body, read) in same_root {
                let common = if longest.starts_with(body) {
                    body.len()
                } else {
                    common_prefix(longest, body)
                };
                // The last boundary within the common prefix (the first is 0).
                let k = bounds.partition_point(|&b| b <= common) - 1;
                stages.read[read] =
                    match self.walk(ops, &mut stages, at_bound[k], &body[bounds[k]..]) {
                        Some(stage) => stage,
                        // A value no state can be: a number nobody writes.
                        None => stages.fresh(),
                    };
            }
        }
        stages
    }

    /// The root a read of `seen` starts from, and what follows the root's string; `None`
    /// when no state can be `seen`.
    fn root_of(
        &self,
        ops: &[Op],
        seen: &'a Value,
        initial: &Value,
        stages: &Stages,
    ) -> Option<(u32, &'a [u8])> {
        let seen = match seen {
            Value::Str(s) => s.as_bytes(),
            Value::Null if *initial == Value::Null => return Some((INITIAL_ROOT, b"")),
            _ => return None,
        };
        if let Some((op, n)) = self.first(seen) {
            if matches!(ops[op].action, Action::Write(_)) {
                return Some((stages.root[op], &seen[n..]));
            }
        }
        match self.init {
            Some(init) => seen.strip_prefix(init).map(|body| (INITIAL_ROOT, body)),
            // From `null`, a string holds at least one (non-empty) append.
            None => (!seen.is_empty()).then_some((INITIAL_ROOT, seen)),
        }
    }

    /// The stage after the first part of `rest`, applied at `stage`, and the part's length;
    /// `None` when `rest` does not start with an appended string or that append has its
    /// place elsewhere.
    fn step(
        &self,
        ops: &[Op],
        stages: &mut Stages,
        stage: u32,
        rest: &[u8],
    ) -> Option<(u32, usize)> {
        let (op, n) = self.first(rest)?;
        if !matches!(ops[op].action, Action::Append(_)) {
            return None;
        }
        let (from, to) = stages.place[op];
        if from == NIL {
            let child = stages.fresh();
            stages.place[op] = (stage, child);
            return Some((child, n));
        }
        (from == stage).then_some((to, n))
    }

    /// The stage reached from `stage` through all of `rest`; `None` when some part cannot
    /// be taken there.
    fn walk(
        &self,
        ops: &[Op],
        stages: &mut Stages,
        mut stage: u32,
        mut rest: &[u8],
    ) -> Option<u32> {
        while !rest.is_empty() {
            let (next, n) = self.step(ops, stages, stage, rest)?;
            stage = next;
            rest = &rest[n..];
        }
        Some(stage)
    }
}

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The stages of one key, numbered, and what each op becomes in the register history.
struct Stages {
    /// Per put: its root.
    root: Vec<u32>,
    /// Per append some read saw: (the stage it was applied to, its child).
    place: Vec<(u32, u32)>,
    /// Per `ok` read of a value: the stage it saw, or a number nobody writes.
    read: Vec<u32>,
    /// Numbers handed out so far.
    count: u32,
}

impl Stages {
    /// A number not handed out before.
    fn fresh(&mut self) -> u32 {
        self.count += 1;
        self.count - 1
    }

    /// The register history: the same ops at the same places, with actions on numbers.
    fn translate(mut self, ops: &[Op]) -> Vec<Op> {
        let number = |n: u32| Value::Int(i64::from(n));
        let mut translated = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let action = match &op.action {
                _ if op.status == Status::Fail => Action::Read(None),
                Action::Read(Some(_)) if op.status == Status::Ok => {
                    Action::Read(Some(number(self.read[i])))
                }
                Action::Read(_) => Action::Read(None),
                Action::Write(_) => Action::Write(number(self.root[i])),
                Action::Append(_) => match self.place[i] {
                    (NIL, _) => Action::Write(number(self.fresh())),
                    (from, to) => Action::Cas(number(from), number(to)),
                },
                // Not applicable ops were turned away by `Parts::of`.
                other => other.clone(),
            };
            translated.push(Op {
                id: op.id,
                process: op.process,
                key: op.key.clone(),
                action,
                status: op.status,
                invoke: op.invoke,
                complete: op.complete,
                invoke_line: op.invoke_line,
                complete_line: op.complete_line,
                index: op.index,
                invoke_time: op.invoke_time,
                complete_time: op.complete_time,
            });
        }
        translated
    }
}
