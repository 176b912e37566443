//! Time to detection: a run's history re-checked with every anomaly asked for, and the
//! earliest completion among the operations the checker could not place.

use super::RECHECK_TIMEOUT;
use checker::history::{Format, Status};
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// When and how an invalid run was caught.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    pub seconds: Option<f64>,
    pub kinds: Vec<String>,
}

/// Reads `history.jsonl` of an invalid run, re-checks it asking for every anomaly, and returns
/// the time to detection and the anomaly kinds (see the module documentation). If the
/// re-check gives up, `fallback` (the run's own `anomalies`, as in `results.json`) is used.
pub fn detection(run_dir: &Path, fallback: &Json) -> Detection {
    let Ok(ops) = checker::history::read_file(&run_dir.join("history.jsonl"), Some(Format::Jsonl))
    else {
        return Detection::default();
    };
    let start = ops.iter().filter_map(|op| op.invoke_time).min();
    let completed: HashMap<u64, Option<i64>> =
        ops.iter().map(|op| (op.index, op.complete_time)).collect();
    let mut options = checker::CheckOptions::new(checker::ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    options.all_anomalies = true;
    options.timeout = Some(RECHECK_TIMEOUT);
    // (index of the failing op, kind); None for an anomaly the checker could not explain.
    let failing: Vec<Option<(u64, String)>> = match checker::check(ops, &options) {
        Ok(report) if !report.anomalies.is_empty() => report
            .anomalies
            .iter()
            .map(|a| a.op.as_ref().map(|op| (op.index, kind(op.f, op.status))))
            .collect(),
        _ => fallback
            .as_array()
            .map(|list| list.iter().map(failing_from_json).collect())
            .unwrap_or_default(),
    };
    failing_summary(&failing, &completed, start)
}

/// The failing op of one anomaly of `results.json`.
pub(super) fn failing_from_json(anomaly: &Json) -> Option<(u64, String)> {
    let op = anomaly.get("op")?;
    let index = op.get("index")?.as_u64()?;
    let f = op.get("f")?.as_str()?;
    let status: Status = serde_json::from_value(op.get("status")?.clone()).ok()?;
    Some((index, kind(f, status)))
}

/// Earliest completion (seconds after `start`) and the distinct kinds of the failing ops.
pub(super) fn failing_summary(
    failing: &[Option<(u64, String)>],
    completed: &HashMap<u64, Option<i64>>,
    start: Option<i64>,
) -> Detection {
    let seconds = failing
        .iter()
        .flatten()
        .filter_map(|(index, _)| {
            let done = (*completed.get(index)?)?;
            Some((done - start?) as f64 / 1e9)
        })
        .min_by(f64::total_cmp);
    let kinds: BTreeSet<String> = failing
        .iter()
        .map(|f| {
            f.as_ref()
                .map_or("not explained".to_string(), |(_, k)| k.clone())
        })
        .collect();
    Detection {
        seconds,
        kinds: kinds.into_iter().collect(),
    }
}

/// An anomaly kind: the failing op's `f`, with its status when not ok.
pub(super) fn kind(f: &str, status: Status) -> String {
    match status {
        Status::Ok => f.to_string(),
        Status::Fail => format!("{f} (fail)"),
        Status::Info => format!("{f} (info)"),
    }
}
