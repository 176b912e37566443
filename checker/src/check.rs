//! Checks a whole history: split by key, check keys in parallel, combine verdicts.
//!
//! Keys are independent registers, so a history is linearizable iff each key's sub-history is
//! (P-compositionality, Herlihy & Wing's locality). Keys are checked on all cores, largest
//! first (a single key, or a small history, on the calling thread); the first invalid key
//! cancels the rest unless every anomaly was asked for. Each key takes the fastest sound and
//! complete algorithm that applies ([`crate::decide`]).

use crate::budget::{Budget, KeyOutcome, Want};
use crate::decide::{decide, Decision, Method};
use crate::error::HistoryError;
use crate::explain::{self, Anomaly};
use crate::history::{Key, Op};
use crate::spec::ModelKind;
use hashbrown::HashMap;
use rayon::prelude::*;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to check against and within which limits.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub model: ModelKind,
    /// Wall-clock limit for the whole check; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Bytes of search state (memo tables) allowed before the verdict becomes `unknown`.
    pub memory_limit: usize,
    /// Keep checking after the first invalid key, and explain every anomaly.
    pub all_anomalies: bool,
}

impl CheckOptions {
    /// Defaults of `raft-check`: no timeout, 2 GiB of search state, stop at the first anomaly.
    pub fn new(model: ModelKind) -> Self {
        CheckOptions {
            model,
            timeout: None,
            memory_limit: 2 << 30,
            all_anomalies: false,
        }
    }
}

/// The overall verdict. Serialises as `true | false | "unknown"` (`docs/history-format.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    /// The process exit code for this verdict (`docs/cli.md`).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Verdict::Valid => s.serialize_bool(true),
            Verdict::Invalid => s.serialize_bool(false),
            Verdict::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// The verdict for one key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    pub key: Key,
    pub ops: usize,
    pub valid: Verdict,
    pub method: Method,
    pub seconds: f64,
    /// Why the check gave up, for `unknown` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<String>,
}

/// The result of checking a history; `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub valid: Verdict,
    pub model: &'static str,
    pub ops: usize,
    pub keys: usize,
    pub seconds: f64,
    pub anomalies: Vec<Anomaly>,
    /// The slowest keys first (at most [`WORST_KEYS`]), for the summary.
    pub worst_keys: Vec<KeyReport>,
    /// Keys whose check gave up (timeout or memory), with the reason.
    pub unknown_keys: Vec<KeyReport>,
}

/// Histories with fewer ops than this are checked on the calling thread.
const SEQUENTIAL_BELOW_OPS: usize = 512;

/// How many of the slowest keys a report lists.
pub const WORST_KEYS: usize = 5;

/// Checks `ops` (from [`crate::history::pairing::pair`]) against the model in `options`.
///
/// Fails only on operations the model cannot interpret (e.g. `acquire` in a register history).
pub fn check(mut ops: Vec<Op>, options: &CheckOptions) -> Result<Report, HistoryError> {
    let started = Instant::now();
    if let Some(op) = ops
        .iter()
        .find(|op| !options.model.accepts(op.action.func()))
    {
        return Err(HistoryError::at(
            op.invoke_line,
            format!(
                "the {} model has no operation {:?}",
                options.model.name(),
                op.action.func().name()
            ),
        ));
    }
    let total_ops = ops.len();
    let keys = split_by_key(&ops);
    let budget = Budget::new(options.timeout.map(|t| started + t), options.memory_limit);

    let check_one = |(key, positions): &(Key, Vec<usize>)| {
        // Each key's ops are copied only while it is checked, so the copies reuse the same
        // memory: moving every op into its group up front cost a sequential copy of the
        // whole history into fresh memory, a fifth of a large check.
        let mut key_ops: Vec<Op> = positions
            .iter()
            .filter_map(|&position| ops.get(position).cloned())
            .collect();
        check_key(key, &mut key_ops, options, &budget)
    };
    // Starting the thread pool costs more than a small history takes to check, and one key
    // is checked on one core anyway (on the history itself: no copy).
    let mut results: Vec<(KeyReport, Option<Anomaly>)> = match keys.as_slice() {
        [(key, _)] => vec![check_key(key, &mut ops, options, &budget)],
        _ if total_ops < SEQUENTIAL_BELOW_OPS => keys.iter().map(check_one).collect(),
        _ => keys.par_iter().map(check_one).collect(),
    };
    results.sort_by(|a, b| a.0.key.cmp(&b.0.key));

    let mut anomalies = Vec::new();
    let mut unknown_keys = Vec::new();
    let mut worst: Vec<KeyReport> = Vec::new();
    for (report, anomaly) in results {
        anomalies.extend(anomaly);
        if report.valid == Verdict::Unknown && report.gave_up.as_deref() != Some("cancelled") {
            unknown_keys.push(report.clone());
        }
        worst.push(report);
    }
    worst.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    worst.truncate(WORST_KEYS);

    let valid = if !anomalies.is_empty() {
        Verdict::Invalid
    } else if !unknown_keys.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(Report {
        valid,
        model: options.model.name(),
        ops: total_ops,
        keys: keys.len(),
        seconds: started.elapsed().as_secs_f64(),
        anomalies,
        worst_keys: worst,
        unknown_keys,
    })
}

/// Each key with the positions of its ops in `ops` (in invocation order); the largest keys
/// come first so that the parallel check does not end waiting on one big key started last.
fn split_by_key(ops: &[Op]) -> Vec<(Key, Vec<usize>)> {
    // One key (a single register's history) needs no hashing.
    if let Some(first) = ops
        .first()
        .filter(|first| ops.iter().all(|op| op.key == first.key))
    {
        return vec![(first.key.clone(), (0..ops.len()).collect())];
    }
    let mut group_of_key: HashMap<&Key, usize> = HashMap::new();
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for (position, op) in ops.iter().enumerate() {
        let next = groups.len();
        let group = *group_of_key.entry(&op.key).or_insert(next);
        if group == next {
            groups.push((op.key.clone(), Vec::new()));
        }
        if let Some((_, positions)) = groups.get_mut(group) {
            positions.push(position);
        }
    }
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

/// Decides one key and, if it is not linearizable, explains why.
fn check_key(
    key: &Key,
    ops: &mut [Op],
    options: &CheckOptions,
    budget: &Budget,
) -> (KeyReport, Option<Anomaly>) {
    let started = Instant::now();
    let Decision {
        outcome,
        method,
        conflict,
    } = decide(ops, &options.model, budget, Want::Verdict);
    let mut anomaly = None;
    let valid = match outcome {
        KeyOutcome::Linearizable(_) => Verdict::Valid,
        KeyOutcome::NotLinearizable => {
            if !options.all_anomalies {
                budget.cancel();
            }
            anomaly = Some(explain::explain(key, ops, &options.model, budget, conflict));
            Verdict::Invalid
        }
        KeyOutcome::Unknown(_) => Verdict::Unknown,
    };
    let gave_up = match outcome {
        KeyOutcome::Unknown(reason) => Some(reason.name().to_string()),
        _ => None,
    };
    let report = KeyReport {
        key: key.clone(),
        ops: ops.len(),
        valid,
        method,
        seconds: started.elapsed().as_secs_f64(),
        gave_up,
    };
    (report, anomaly)
}
