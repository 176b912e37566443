//! Counterexamples: which operation breaks linearizability, and how far the history was fine.
//!
//! A key's history observed up to event `p` is the prefix in which every op that had not
//! completed by `p` is pending (it may or may not take effect, and a read's result is not yet
//! known). Prefixes only gain constraints as `p` grows (at `ok` and `fail` completions), so
//! linearizability of prefixes is monotone and a binary search finds the first completion
//! after which no linearization exists: that op "cannot be placed", and the prefix just
//! before it is the longest linearizable prefix, with its witness order.

use crate::budget::{Budget, KeyOutcome, Want};
use crate::decide::decide;
use crate::history::{Action, Key, Op, Status};
use crate::register::Conflict;
use crate::spec::{CasRegister, Model, ModelKind, Mutex};
use serde::Serialize;

/// How many ops of the longest linearizable prefix an anomaly lists (its tail).
pub const PREFIX_TAIL: usize = 20;
/// How many ops around the failing one an anomaly keeps for rendering.
pub const WINDOW_BEFORE: usize = 60;
pub const WINDOW_AFTER: usize = 20;

/// An operation as reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct OpSummary {
    /// The `index` of its invoke event.
    pub index: u64,
    pub process: u64,
    pub f: &'static str,
    pub value: serde_json::Value,
    pub status: Status,
    /// Line of its invoke event in the history file.
    pub line: usize,
}

impl From<&Op> for OpSummary {
    fn from(op: &Op) -> Self {
        OpSummary {
            index: op.index,
            process: op.process,
            f: op.action.func().name(),
            value: op.action.value_json(),
            status: op.status,
            line: op.invoke_line,
        }
    }
}

/// A key whose history is not linearizable, explained.
#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    pub key: Key,
    /// The operation whose completion left no possible linearization; `None` when the
    /// explanation ran out of budget.
    pub op: Option<OpSummary>,
    /// One sentence a person can act on.
    pub message: String,
    /// Number of ops in the longest linearizable prefix's linearization.
    pub prefix_ops: usize,
    /// The last [`PREFIX_TAIL`] ops of that linearization, in order.
    pub prefix: Vec<OpSummary>,
    /// The model state after that linearization.
    pub state: Option<String>,
    /// Ops of this key around the failing one, for the HTML view (not serialised).
    #[serde(skip)]
    pub window: Vec<Op>,
    /// Positions in `window` of the linearized prefix's ops, in linearization order.
    #[serde(skip)]
    pub window_order: Vec<usize>,
    /// Position in `window` of the failing op.
    #[serde(skip)]
    pub window_failing: Option<usize>,
}

/// Explains why `ops` (one key, known not linearizable) is not linearizable; `hint` is where
/// the conflict that refuted it shows ([`crate::decide::Decision`]), if known.
///
/// The prefixes it decides are made by rewriting `ops` in place (no copy of the history);
/// every op is as it was when this returns.
pub fn explain(
    key: &Key,
    ops: &mut [Op],
    model: &ModelKind,
    budget: &Budget,
    hint: Option<Conflict>,
) -> Anomaly {
    let budget = budget.fresh();
    let mut cuts: Vec<usize> = ops
        .iter()
        .filter(|op| op.status != Status::Info)
        .filter_map(|op| op.complete)
        .collect();
    cuts.sort_unstable();

    let mut prefixes = Prefixes::new(ops);
    let mut bounds = Bounds {
        lo: 0,
        hi: cuts.len().saturating_sub(1),
        witness: None,
    };
    // Where the conflict shows: the first cut at its earliest position and then at its latest
    // are probed; from the first refuted (or the last linearizable) the search gallops back
    // (or on) 1, 2, 4, ... cuts at a time until the outcome turns, then bisects what is left.
    // A hint that is right costs two or three probes, not ~log2(cuts) over the history. The
    // hint's probes ask for the verdict alone (the first of two is often linearizable but
    // not the answer); the others for a witness, which the last linearizable one gives.
    let first_cut_from = |position: usize| cuts.partition_point(|&cut| cut < position);
    let mut gallop: Option<(usize, bool)> = None;
    for at in hint
        .into_iter()
        .flat_map(|conflict| [conflict.earliest, conflict.latest])
        .map(first_cut_from)
    {
        if !(bounds.lo..bounds.hi).contains(&at) {
            continue;
        }
        match bounds.probe(&mut prefixes, &cuts, at, model, &budget, Want::Verdict) {
            Ok(true) => gallop = Some((at + 1, true)),
            Ok(false) => {
                gallop = at.checked_sub(1).map(|before| (before, false));
                break;
            }
            Err(why) => return stopped(key, why),
        }
    }
    let mut step = 1;
    while bounds.lo < bounds.hi {
        let galloping = gallop.filter(|(at, _)| (bounds.lo..bounds.hi).contains(at));
        let mid = galloping.map_or(bounds.lo + (bounds.hi - bounds.lo) / 2, |(at, _)| at);
        let linearizable =
            match bounds.probe(&mut prefixes, &cuts, mid, model, &budget, Want::Witness) {
                Ok(linearizable) => linearizable,
                Err(why) => return stopped(key, why),
            };
        gallop = galloping
            .filter(|&(_, forward)| forward == linearizable)
            .and_then(|(_, forward)| {
                step *= 2;
                let at = if forward {
                    mid.checked_add(step)
                } else {
                    mid.checked_sub(step)
                };
                at.map(|at| (at, forward))
            });
    }
    let lo = bounds.lo;

    // The longest linearizable prefix: the one at the last cut found linearizable; what the
    // anomaly shows of it is taken while its ops are as they were observed then.
    let (linearized_ids, prefix, state) = match lo.checked_sub(1) {
        None => (Vec::new(), Vec::new(), final_state(model, &[])),
        Some(last) => {
            let prefix_ops = prefixes.at(cuts[last]);
            let order = match bounds.witness {
                Some((at, order)) if at == last => order,
                _ => match decide(prefix_ops, model, &budget, Want::Witness).outcome {
                    KeyOutcome::Linearizable(order) => order,
                    KeyOutcome::Unknown(reason) => return stopped(key, reason.name()),
                    // Decided linearizable a moment ago by the same algorithm.
                    KeyOutcome::NotLinearizable => return stopped(key, "inconsistent verdicts"),
                },
            };
            let linearized: Vec<&Op> = order.iter().filter_map(|&i| prefix_ops.get(i)).collect();
            let tail = linearized.len().saturating_sub(PREFIX_TAIL);
            (
                linearized.iter().map(|op| op.id).collect(),
                linearized[tail..]
                    .iter()
                    .map(|op| OpSummary::from(*op))
                    .collect(),
                final_state(model, &linearized),
            )
        }
    };
    drop(prefixes);

    let failing = cuts
        .get(lo)
        .and_then(|&cut| ops.iter().position(|op| op.complete == Some(cut)));
    let message = match failing.map(|i| &ops[i]) {
        Some(op) => describe(op, linearized_ids.len(), state.as_deref()),
        None => "not linearizable".to_string(),
    };
    let (window, window_order, window_failing) = window_around(ops, failing, &linearized_ids);
    Anomaly {
        key: key.clone(),
        op: failing.map(|i| OpSummary::from(&ops[i])),
        message,
        prefix_ops: linearized_ids.len(),
        prefix,
        state,
        window,
        window_order,
        window_failing,
    }
}

/// The key's history as observed just after an event position, for one position after
/// another, made in the key's own ops: they are sorted by invoke, so a prefix is a leading
/// run of them in which the ops not completed by then are pending (they may or may not take
/// effect, and a read's result is not yet known). Only those few are rewritten, and put back
/// before the next prefix and when this is dropped.
struct Prefixes<'a> {
    ops: &'a mut [Op],
    /// Ops rewritten for the current prefix, as they were.
    rewritten: Vec<(usize, Op)>,
}

impl Drop for Prefixes<'_> {
    fn drop(&mut self) {
        self.restore();
    }
}

impl<'a> Prefixes<'a> {
    fn new(ops: &'a mut [Op]) -> Self {
        Prefixes {
            ops,
            rewritten: Vec::new(),
        }
    }

    /// Puts back every op the last prefix rewrote.
    fn restore(&mut self) {
        for (i, op) in self.rewritten.drain(..) {
            self.ops[i] = op;
        }
    }

    /// The prefix just after event position `cut`.
    fn at(&mut self, cut: usize) -> &[Op] {
        self.restore();
        let len = self.ops.partition_point(|op| op.invoke <= cut);
        for (i, op) in self.ops[..len].iter_mut().enumerate() {
            let done = op.complete.is_some_and(|done| done <= cut);
            let is_pending = op.status == Status::Info
                && op.complete.is_none()
                && !matches!(op.action, Action::Read(Some(_)));
            if done || is_pending {
                continue;
            }
            let mut pending = op.clone();
            pending.status = Status::Info;
            pending.complete = None;
            if let Action::Read(_) = pending.action {
                pending.action = Action::Read(None);
            }
            self.rewritten.push((i, std::mem::replace(op, pending)));
        }
        &self.ops[..len]
    }
}

/// The model's state after applying `linearized` in order, as text.
fn final_state(model: &ModelKind, linearized: &[&Op]) -> Option<String> {
    fn run<M: Model>(model: &M, ops: &[&Op]) -> Option<M::State> {
        ops.iter()
            .try_fold(model.init(), |state, op| model.step(&state, &op.action))
    }
    match model {
        ModelKind::CasRegister { initial } => {
            run(&CasRegister::new(initial.clone()), linearized).map(|v| v.to_string())
        }
        ModelKind::Mutex => {
            run(&Mutex, linearized).map(|held| if held { "held" } else { "free" }.to_string())
        }
    }
}

/// The search for the first cut after which a key's history has no linearization.
struct Bounds {
    /// The prefix at `cuts[hi]` is not linearizable; the one before `cuts[lo]` is (the empty
    /// prefix trivially).
    lo: usize,
    hi: usize,
    /// The last linearizable probe's position and witness, if it was asked for one.
    witness: Option<(usize, Vec<usize>)>,
}

impl Bounds {
    /// Decides the prefix at `cuts[at]` (asking for `want`) and narrows the bounds: whether
    /// it is linearizable; `Err` names why the search gave up.
    fn probe(
        &mut self,
        prefixes: &mut Prefixes<'_>,
        cuts: &[usize],
        at: usize,
        model: &ModelKind,
        budget: &Budget,
        want: Want,
    ) -> Result<bool, &'static str> {
        match decide(prefixes.at(cuts[at]), model, budget, want).outcome {
            KeyOutcome::Linearizable(order) => {
                self.lo = at + 1;
                self.witness = (want == Want::Witness).then_some((at, order));
                Ok(true)
            }
            KeyOutcome::NotLinearizable => {
                self.hi = at;
                Ok(false)
            }
            KeyOutcome::Unknown(reason) => Err(reason.name()),
        }
    }
}

/// The anomaly when the search for the first failing operation stopped (`why`).
fn stopped(key: &Key, why: &str) -> Anomaly {
    Anomaly {
        key: key.clone(),
        op: None,
        message: format!(
            "not linearizable; the search for the first failing operation stopped ({why})"
        ),
        prefix_ops: 0,
        prefix: Vec::new(),
        state: None,
        window: Vec::new(),
        window_order: Vec::new(),
        window_failing: None,
    }
}

fn describe(op: &Op, prefix_len: usize, state: Option<&str>) -> String {
    let outcome = match op.status {
        Status::Fail => "failed (so it had no effect)",
        _ => "completed",
    };
    let line = op.complete_line.unwrap_or(op.invoke_line);
    format!(
        "{} by process {} {} at line {}, and no order of the operations so far that respects \
         real time explains it; up to the completion before it the history is linearizable \
         ({} ops linearized, leaving state {})",
        op.action,
        op.process,
        outcome,
        line,
        prefix_len,
        state.unwrap_or("?"),
    )
}

/// A bounded slice of ops around the failing one, with the witness and failing op mapped into
/// it, so reports stay small however long the history is.
fn window_around(
    ops: &[Op],
    failing: Option<usize>,
    linearized_ids: &[usize],
) -> (Vec<Op>, Vec<usize>, Option<usize>) {
    let centre = failing.unwrap_or(ops.len().saturating_sub(1));
    let start = centre.saturating_sub(WINDOW_BEFORE);
    let end = (centre + WINDOW_AFTER + 1).min(ops.len());
    let window: Vec<Op> = ops[start..end].to_vec();
    // The key's ops, and so the window's, are in id order.
    let order = linearized_ids
        .iter()
        .filter_map(|&id| window.binary_search_by_key(&id, |w| w.id).ok())
        .collect();
    (window, order, failing.map(|i| i - start))
}
