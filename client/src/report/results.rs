//! The results folder of a run: `results/<workload>/<timestamp>/`.
//!
//! ```text
//! results/
//!   latest -> kv/20250101T120000Z          (symlink, replaced atomically)
//!   kv/20250101T120000Z/
//!     history.jsonl   the contract's JSON Lines (history.rs)
//!     history.edn     the same history as Jepsen EDN
//!     results.json    RunSummary (below)
//!     report.html     the lead's report (crate::report)
//!     cluster/        cluster.toml, certs/, data/node-N/, logs of the local cluster
//! ```
//!
//! `results.json` is [`RunSummary`]: verdict (`"valid" | "invalid" | "unknown"`, plus `valid`
//! as raft-check prints it), the checker's anomalies, counts of ok/fail/info per `f`, latency
//! quantiles per `f` (ok operations, milliseconds), throughput, the nemesis events applied and
//! the fault coverage (requested kinds never applied are listed and warned about), seed, git
//! revision, workload, nodes, bug.

use crate::history::{Event, Kind, Who};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// ok / fail / info counts. `info` includes invokes that never completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

/// Latency quantiles in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
    pub max: f64,
}

/// Operations per second over the workload phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// `ok` operations per second.
    pub ok_per_s: f64,
    /// Completed operations (ok, fail, info) per second.
    pub completed_per_s: f64,
}

/// One nemesis event as recorded in the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NemesisEvent {
    /// Seconds since the run started.
    pub time_s: f64,
    pub f: String,
    pub value: Json,
}

/// Which faults were asked for and which were really applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NemesisCoverage {
    /// Requested kinds.
    pub requested: Vec<String>,
    /// Applied kinds and how many times each was applied.
    pub applied: BTreeMap<String, u64>,
    /// Requested kinds never applied during the run.
    pub never_applied: Vec<String>,
    /// Human-readable warnings (e.g. "partitions were requested but never applied").
    pub warnings: Vec<String>,
    /// Every nemesis event of the history, in order.
    pub events: Vec<NemesisEvent>,
    /// The nemesis' own report (scheduled and applied counts, failed actions, whether
    /// everything was healed); `null` when no nemesis ran.
    pub report: Json,
}

/// What the checker said, besides the anomalies.
#[derive(Clone, Debug, Serialize)]
pub struct CheckSummary {
    pub model: String,
    pub ops: usize,
    pub keys: usize,
    pub seconds: f64,
    /// Keys the checker gave up on (timeout or memory), as the checker reports them.
    pub unknown_keys: Json,
    /// The slowest keys, as the checker reports them.
    pub worst_keys: Json,
}

/// `results.json`: everything a run produced, in one object. The report renders it.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// `"valid"`, `"invalid"` or `"unknown"`.
    pub verdict: String,
    /// The verdict as `raft-check --json` prints it: `true | false | "unknown"`.
    pub valid: checker::Verdict,
    pub workload: String,
    pub workload_file: String,
    pub description: Option<String>,
    /// UTC start time, RFC 3339.
    pub started_at: String,
    /// The run folder.
    pub run_dir: String,
    pub seed: u64,
    /// `git rev-parse HEAD` where the lab ran, if available.
    pub git_revision: Option<String>,
    pub nodes: usize,
    pub concurrency: usize,
    /// Requested rate (ops/s, 0 = unlimited).
    pub rate: f64,
    pub time_limit_s: f64,
    /// Seconds the workload phase (faults included) actually lasted.
    pub workload_s: f64,
    pub recovery_time_s: f64,
    pub final_reads: bool,
    /// `"node"` or `"leader"`: where processes send operations first.
    pub route: crate::lab::workload::Route,
    pub bug: Option<String>,
    /// `"local"` (started by the lab in `<run>/cluster/`) or the `--cluster` file used.
    pub cluster: String,
    /// Per `f`, and `"all"`.
    pub counts: BTreeMap<String, Counts>,
    /// Latency of `ok` operations per `f`, and `"all"`, in milliseconds.
    pub latency_ms: BTreeMap<String, Quantiles>,
    pub throughput: Throughput,
    pub nemesis: NemesisCoverage,
    /// The checker's anomalies (its JSON), empty when valid.
    pub anomalies: Json,
    pub check: CheckSummary,
    /// Problems that did not prevent a verdict (a node that did not stop cleanly...).
    pub errors: Vec<String>,
}

/// What [`summarize`] needs besides the history.
pub struct SummaryInput<'a> {
    pub workload: &'a crate::lab::workload::Workload,
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
}

/// Builds `results.json` from the history and the checker's report.
pub fn summarize(
    input: SummaryInput<'_>,
    events: &[Event],
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
        route: w.route,
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
    }
}

/// `"valid" | "invalid" | "unknown"`.
pub fn verdict_name(v: checker::Verdict) -> &'static str {
    match v {
        checker::Verdict::Valid => "valid",
        checker::Verdict::Invalid => "invalid",
        checker::Verdict::Unknown => "unknown",
    }
}

/// Counts per `f` (and `"all"`) and latency quantiles of `ok` operations per `f` (and
/// `"all"`), pairing each process's invoke with its next completion.
pub fn op_stats(events: &[Event]) -> (BTreeMap<String, Counts>, BTreeMap<String, Quantiles>) {
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut pending: HashMap<u64, (String, u64)> = HashMap::new();
    for e in events {
        let Who::Process(p) = e.who else { continue };
        match e.kind {
            Kind::Invoke => {
                if let Some((f, _)) = pending.insert(p, (e.f.clone(), e.time)) {
                    // A second invoke without completion: the first never completed.
                    counts.entry(f).or_default().info += 1;
                }
            }
            kind => {
                let Some((f, invoked)) = pending.remove(&p) else {
                    continue;
                };
                let c = counts.entry(f.clone()).or_default();
                match kind {
                    Kind::Ok => {
                        c.ok += 1;
                        latencies
                            .entry(f)
                            .or_default()
                            .push(e.time.saturating_sub(invoked));
                    }
                    Kind::Fail => c.fail += 1,
                    Kind::Info | Kind::Invoke => c.info += 1,
                }
            }
        }
    }
    for (f, _) in pending.into_values() {
        counts.entry(f).or_default().info += 1;
    }
    let mut all = Counts::default();
    for c in counts.values() {
        all.ok += c.ok;
        all.fail += c.fail;
        all.info += c.info;
    }
    counts.insert("all".into(), all);
    let mut every: Vec<u64> = latencies.values().flatten().copied().collect();
    let mut quantiles: BTreeMap<String, Quantiles> = latencies
        .into_iter()
        .map(|(f, mut l)| (f, quantiles_ms(&mut l)))
        .collect();
    quantiles.insert("all".into(), quantiles_ms(&mut every));
    (counts, quantiles)
}

/// Nearest-rank quantiles of `latencies_ns`, in milliseconds (3 decimals).
pub fn quantiles_ms(latencies_ns: &mut [u64]) -> Quantiles {
    if latencies_ns.is_empty() {
        return Quantiles::default();
    }
    latencies_ns.sort_unstable();
    let n = latencies_ns.len();
    let at = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        let ns = latencies_ns.get(rank - 1).copied().unwrap_or(0);
        round3(ns as f64 / 1e6)
    };
    Quantiles {
        count: n as u64,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: round3(latencies_ns.last().copied().unwrap_or(0) as f64 / 1e6),
    }
}

/// (ok, completed) operations that completed within `[start, end]` (nanoseconds).
fn completions_within(events: &[Event], start: u64, end: u64) -> (u64, u64) {
    let mut ok = 0;
    let mut done = 0;
    for e in events {
        if matches!(e.who, Who::Process(_))
            && e.kind != Kind::Invoke
            && (start..=end).contains(&e.time)
        {
            done += 1;
            if e.kind == Kind::Ok {
                ok += 1;
            }
        }
    }
    (ok, done)
}

/// Fault coverage: requested kinds vs applied ones, with warnings.
pub fn coverage(requested: &[String], applied: &[String], events: &[Event]) -> NemesisCoverage {
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
        .any(|k| crate::lab::workload::PARTITION_KINDS.contains(&k.as_str()));
    let partitions_applied = counts
        .keys()
        .any(|k| crate::lab::workload::PARTITION_KINDS.contains(&k.as_str()));
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

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `git rev-parse HEAD` in the current directory, if git and a repository are there.
pub fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!rev.is_empty()).then_some(rev)
}

/// Creates `<root>/<workload>/<timestamp>/` (a suffix `-N` if it exists already) and
/// returns it with the RFC 3339 start time.
pub fn create_run_dir(root: &Path, workload: &str) -> std::io::Result<(PathBuf, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (stamp, rfc3339) = timestamps(now);
    let parent = root.join(workload);
    std::fs::create_dir_all(&parent)?;
    for n in 0..1000 {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, rfc3339)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{}: too many runs in the same second", parent.display()),
    ))
}

/// (`20250101T120000Z`, `2025-01-01T12:00:00Z`) for UNIX time `secs`.
pub fn timestamps(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

/// Points `<root>/latest` at `run_dir` (relative when inside `root`), atomically: a new
/// symlink beside it, renamed over the old one.
pub fn update_latest(root: &Path, run_dir: &Path) -> std::io::Result<()> {
    let target = run_dir
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| run_dir.to_path_buf());
    let tmp = root.join(format!(".latest.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)?;
    std::fs::rename(&tmp, root.join("latest")).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes `history.jsonl` and `history.edn` (fsynced) into `dir`.
pub fn write_histories(dir: &Path, events: &[Event]) -> std::io::Result<()> {
    crate::history::write_durably(
        &dir.join("history.jsonl"),
        &crate::history::to_jsonl(events),
    )?;
    crate::history::write_durably(&dir.join("history.edn"), &crate::history::to_edn(events))
}

/// Writes `results.json` into `dir`.
pub fn write_summary(dir: &Path, summary: &RunSummary) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    crate::history::write_durably(&dir.join("results.json"), &(text + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;
    use serde_json::json;

    fn ev(index: u64, time_ms: u64, p: u64, kind: Kind, f: &str) -> Event {
        Event {
            index,
            time: time_ms * 1_000_000,
            who: Who::Process(p),
            kind,
            f: f.into(),
            key: json!("k0"),
            value: Json::Null,
        }
    }

    #[test]
    fn quantiles_from_fixed_latencies() {
        let mut l: Vec<u64> = (1..=1000).map(|ms| ms * 1_000_000).collect();
        let q = quantiles_ms(&mut l);
        assert_eq!(q.count, 1000);
        assert_eq!(q.p50, 500.0);
        assert_eq!(q.p90, 900.0);
        assert_eq!(q.p99, 990.0);
        assert_eq!(q.p999, 999.0);
        assert_eq!(q.max, 1000.0);
        let mut one = vec![1_500_000];
        let q = quantiles_ms(&mut one);
        assert_eq!((q.p50, q.p999, q.max), (1.5, 1.5, 1.5));
        assert_eq!(quantiles_ms(&mut []), Quantiles::default());
    }

    #[test]
    fn counts_and_latencies_per_f() {
        let events = vec![
            ev(0, 0, 0, Kind::Invoke, "write"),
            ev(1, 1, 1, Kind::Invoke, "read"),
            ev(2, 10, 0, Kind::Ok, "write"),
            ev(3, 21, 1, Kind::Ok, "read"),
            ev(4, 30, 0, Kind::Invoke, "cas"),
            ev(5, 31, 0, Kind::Fail, "cas"),
            ev(6, 40, 0, Kind::Invoke, "write"),
            ev(7, 50, 0, Kind::Info, "write"),
            ev(8, 60, 10, Kind::Invoke, "read"),
        ];
        let (counts, lat) = op_stats(&events);
        assert_eq!(
            counts["write"],
            Counts {
                ok: 1,
                fail: 0,
                info: 1
            }
        );
        assert_eq!(
            counts["read"],
            Counts {
                ok: 1,
                fail: 0,
                info: 1
            }
        );
        assert_eq!(
            counts["cas"],
            Counts {
                ok: 0,
                fail: 1,
                info: 0
            }
        );
        assert_eq!(counts["all"].total(), 5);
        assert_eq!(lat["write"].p50, 10.0);
        assert_eq!(lat["read"].max, 20.0);
        assert_eq!(lat["all"].count, 2);
        assert!(!lat.contains_key("cas"));
    }

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
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamps(0).0, "19700101T000000Z");
        assert_eq!(timestamps(1_709_210_096).1, "2024-02-29T12:34:56Z");
        assert_eq!(timestamps(951_782_400).1, "2000-02-29T00:00:00Z");
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let root = std::env::temp_dir().join(format!("raftlab-results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (a, _) = create_run_dir(&root, "kv").unwrap();
        let (b, _) = create_run_dir(&root, "kv").unwrap();
        assert_ne!(a, b);
        update_latest(&root, &a).unwrap();
        update_latest(&root, &b).unwrap();
        let link = std::fs::read_link(root.join("latest")).unwrap();
        assert_eq!(root.join(link), b);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn results_json_shape() {
        let r = Recorder::new();
        r.record(
            Who::Process(0),
            Kind::Invoke,
            "write",
            json!("k0"),
            json!(1),
        );
        r.record(Who::Process(0), Kind::Ok, "write", json!("k0"), json!(1));
        r.nemesis("start-partition", json!("halves"));
        r.record(
            Who::Process(0),
            Kind::Invoke,
            "read",
            json!("k0"),
            Json::Null,
        );
        r.record(Who::Process(0), Kind::Ok, "read", json!("k0"), json!(1));
        let events = r.events();
        let ops = checker::history::parse(
            crate::history::to_jsonl(&events).as_bytes(),
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
        let w = crate::lab::workload::Workload::parse(
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
    }
}
