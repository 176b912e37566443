//! `results.json` of one run: the [`RunSummary`] built from the workload, the history, the
//! nemesis' report and the checker's verdict, with the fault coverage (requested kinds never
//! applied are listed and warned about).

use crate::history::{EventType, Record, Who};
use crate::lab::workload::{Workload, PARTITION_KINDS};
use crate::report::results::{
    git_revision, op_stats, round3, verdict_name, CheckSummary, NemesisCoverage, NemesisEvent,
    RunSummary, Throughput,
};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// What [`summarize`] needs besides the history.
pub struct SummaryInput<'a> {
    pub workload: &'a Workload,
    pub seed: u64,
    pub started_at: String,
    pub run_dir: &'a Path,
    pub cluster: String,
    /// When the workload phase started (recorder nanoseconds) and how many seconds it lasted.
    pub workload_start_ns: u64,
    pub workload_s: f64,
    /// The kind of every nemesis action applied (one entry per application).
    pub applied: Vec<String>,
    /// The nemesis' report as JSON (`null` when none ran).
    pub nemesis_report: Json,
    pub errors: Vec<String>,
    /// What the online check found, and when.
    pub online: crate::report::results::OnlineSummary,
}

/// Builds `results.json` from the history and the checker's report.
pub fn summarize(
    input: SummaryInput<'_>,
    events: &[Record],
    report: &checker::Report,
) -> RunSummary {
    let w = input.workload;
    let (counts, latency_ms) = op_stats(events);
    let secs = input.workload_s.max(1e-9);
    let ok_in_workload = completions_within(
        events,
        input.workload_start_ns,
        input.workload_start_ns + (input.workload_s * 1e9) as u64,
    );
    let mut nemesis = coverage(&w.nemesis, &input.applied, events);
    nemesis.report = input.nemesis_report;
    RunSummary {
        verdict: verdict_name(report.valid).into(),
        valid: report.valid,
        workload: w.name.clone(),
        workload_file: w.path.display().to_string(),
        description: w.description.clone(),
        started_at: input.started_at,
        run_dir: input.run_dir.display().to_string(),
        seed: input.seed,
        git_revision: git_revision(),
        nodes: w.nodes,
        concurrency: w.concurrency,
        rate: w.rate,
        time_limit_s: w.time_limit.as_secs_f64(),
        workload_s: round3(input.workload_s),
        recovery_time_s: w.recovery_time.as_secs_f64(),
        final_reads: w.final_reads,
        route: w.route.name().into(),
        read_consistency: w.read_consistency.name().into(),
        bug: w.bug.clone(),
        cluster: input.cluster,
        counts,
        latency_ms,
        throughput: Throughput {
            ok_per_s: round3(ok_in_workload.0 as f64 / secs),
            completed_per_s: round3(ok_in_workload.1 as f64 / secs),
        },
        nemesis,
        anomalies: serde_json::to_value(&report.anomalies).unwrap_or(Json::Null),
        check: CheckSummary {
            model: report.model.to_string(),
            ops: report.ops,
            keys: report.keys,
            seconds: round3(report.seconds),
            unknown_keys: serde_json::to_value(&report.unknown_keys).unwrap_or(Json::Null),
            worst_keys: serde_json::to_value(&report.worst_keys).unwrap_or(Json::Null),
        },
        errors: input.errors,
        online: input.online,
    }
}

/// (ok, completed) operations that completed within `[start, end]` (nanoseconds).
fn completions_within(events: &[Record], start: u64, end: u64) -> (u64, u64) {
    let mut ok = 0;
    let mut done = 0;
    for e in events {
        if matches!(e.who, Who::Process(_))
            && e.kind != EventType::Invoke
            && (start..=end).contains(&e.time)
        {
            done += 1;
            if e.kind == EventType::Ok {
                ok += 1;
            }
        }
    }
    (ok, done)
}

/// Fault coverage: requested kinds vs applied ones, with warnings.
pub fn coverage(requested: &[String], applied: &[String], events: &[Record]) -> NemesisCoverage {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for k in applied {
        *counts.entry(k.clone()).or_default() += 1;
    }
    let never_applied: Vec<String> = requested
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .cloned()
        .collect();
    let mut warnings = Vec::new();
    for k in &never_applied {
        warnings.push(format!(
            "nemesis {k} was requested but never applied: this run says nothing about it"
        ));
    }
    let partitions_requested = requested
        .iter()
        .any(|k| PARTITION_KINDS.contains(&k.as_str()));
    let partitions_applied = counts.keys().any(|k| PARTITION_KINDS.contains(&k.as_str()));
    if partitions_requested && !partitions_applied {
        warnings.push("partitions were requested but no partition was ever applied".into());
    }
    let events = events
        .iter()
        .filter(|e| e.who == Who::Nemesis)
        .map(|e| NemesisEvent {
            time_s: round3(e.time as f64 / 1e9),
            f: e.f.clone(),
            value: e.value.clone(),
        })
        .collect();
    NemesisCoverage {
        requested: requested.to_vec(),
        applied: counts,
        never_applied,
        warnings,
        events,
        report: Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;
    use serde_json::json;

    #[test]
    fn coverage_warns_about_requested_faults_never_applied() {
        let r = Recorder::new();
        r.nemesis("kill", json!({"node": 2}));
        let requested = vec!["kill".to_string(), "partition-halves".to_string()];
        let c = coverage(&requested, &["kill".into(), "kill".into()], &r.events());
        assert_eq!(c.applied["kill"], 2);
        assert_eq!(c.never_applied, vec!["partition-halves".to_string()]);
        assert_eq!(c.warnings.len(), 2);
        assert_eq!(c.events.len(), 1);
        let c = coverage(&requested[..1], &["kill".into()], &[]);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn results_json_shape() {
        let r = Recorder::new();
        r.record(
            Who::Process(0),
            EventType::Invoke,
            "write",
            json!("k0"),
            json!(1),
        );
        r.record(
            Who::Process(0),
            EventType::Ok,
            "write",
            json!("k0"),
            json!(1),
        );
        r.nemesis("start-partition", json!("halves"));
        r.record(
            Who::Process(0),
            EventType::Invoke,
            "read",
            json!("k0"),
            Json::Null,
        );
        r.record(
            Who::Process(0),
            EventType::Ok,
            "read",
            json!("k0"),
            json!(1),
        );
        let events = r.events();
        let ops = checker::history::parse(
            checker::history::jsonl::write_records(&events).as_bytes(),
            checker::history::Format::Jsonl,
        )
        .unwrap();
        let report = checker::check(
            ops,
            &checker::CheckOptions::new(checker::ModelKind::CasRegister {
                initial: checker::history::Value::Null,
            }),
        )
        .unwrap();
        let w = Workload::parse(
            Path::new("workloads/kv.toml"),
            "nemesis = [\"partition-halves\"]\nseed = 3",
            &Default::default(),
        )
        .unwrap();
        let s = summarize(
            SummaryInput {
                workload: &w,
                seed: 3,
                started_at: "2025-01-01T00:00:00Z".into(),
                run_dir: Path::new("results/kv/x"),
                cluster: "local".into(),
                workload_start_ns: 0,
                workload_s: 1.0,
                applied: vec!["partition-halves".into()],
                nemesis_report: json!({"healed": true}),
                errors: vec![],
                online: Default::default(),
            },
            &events,
            &report,
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["verdict"], "valid");
        assert_eq!(v["valid"], true);
        assert_eq!(v["seed"], 3);
        assert_eq!(v["workload"], "kv");
        assert_eq!(v["counts"]["write"]["ok"], 1);
        assert_eq!(v["counts"]["all"]["ok"], 2);
        for q in ["p50", "p90", "p99", "p99.9", "max", "count"] {
            assert!(v["latency_ms"]["read"].get(q).is_some(), "{q}");
        }
        assert_eq!(v["throughput"]["ok_per_s"], 2.0);
        assert_eq!(v["nemesis"]["applied"]["partition-halves"], 1);
        assert_eq!(v["nemesis"]["events"][0]["f"], "start-partition");
        assert_eq!(v["nemesis"]["report"]["healed"], true);
        assert!(v["anomalies"].as_array().unwrap().is_empty());
        assert!(v.get("git_revision").is_some());
        assert!(v.get("bug").is_some());
        assert_eq!(v["nodes"], 5);
        assert_eq!(v["route"], "node");
        assert_eq!(v["read_consistency"], "linearizable");
    }
}
