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
//! `results.json` is [`RunSummary`] (built by `crate::lab::summary`): verdict (`"valid" | "invalid" | "unknown"`, plus `valid`
//! as raft-check prints it), the checker's anomalies, counts of ok/fail/info per `f`, latency
//! quantiles per `f` (ok operations, milliseconds), throughput, the nemesis events applied and
//! the fault coverage (requested kinds never applied are listed and warned about), seed, git
//! revision, workload, nodes, bug.

use crate::history::{EventType, Record, Who};
use crate::report::stats::{quantile, PERCENTILES};
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

/// Latency quantiles in milliseconds (nearest rank), the [`PERCENTILES`].
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
    pub route: String,
    /// `"linearizable"` or `"serializable"` (etcd's member-local reads).
    pub read_consistency: String,
    pub bug: Option<String>,
    /// `"local"` (started by the lab in `<run>/cluster/`), `"netns"`, `"etcd VERSION (local)"`
    /// (`--db etcd`), or the `--cluster` file used.
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
    /// The check while the run went: when it found the first anomaly, whether the run
    /// stopped there.
    pub online: OnlineSummary,
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
pub fn op_stats(events: &[Record]) -> (BTreeMap<String, Counts>, BTreeMap<String, Quantiles>) {
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut pending: HashMap<u64, (String, u64)> = HashMap::new();
    for e in events {
        let Who::Process(p) = e.who else { continue };
        match e.kind {
            EventType::Invoke => {
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
                    EventType::Ok => {
                        c.ok += 1;
                        latencies
                            .entry(f)
                            .or_default()
                            .push(e.time.saturating_sub(invoked));
                    }
                    EventType::Fail => c.fail += 1,
                    EventType::Info | EventType::Invoke => c.info += 1,
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
    let at = |q: f64| round3(quantile(latencies_ns, q).unwrap_or(0) as f64 / 1e6);
    let [p50, p90, p99, p999, max] = PERCENTILES.map(|(q, _)| at(q));
    Quantiles {
        count: latencies_ns.len() as u64,
        p50,
        p90,
        p99,
        p999,
        max,
    }
}

pub(crate) fn round3(x: f64) -> f64 {
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
pub fn write_histories(dir: &Path, events: &[Record]) -> std::io::Result<()> {
    crate::control::files::write_atomically(
        &dir.join("history.jsonl"),
        &checker::history::jsonl::write_records(events),
    )?;
    crate::control::files::write_atomically(
        &dir.join("history.edn"),
        &checker::history::edn::write_records(events),
    )
}

/// Writes `results.json` into `dir`.
pub fn write_summary(dir: &Path, summary: &RunSummary) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    crate::control::files::write_atomically(&dir.join("results.json"), &(text + "\n"))
}

/// What the online check did in one run (`results.json`'s `online`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OnlineSummary {
    /// Whether it ran (`--no-online-check` turns it off).
    pub enabled: bool,
    /// `--stop-on-anomaly`: the run stops at the first anomaly found.
    pub stop_on_anomaly: bool,
    /// Seconds from the workload's start to when the first anomaly was found online.
    pub first_anomaly_s: Option<f64>,
    /// The first anomaly found online, as the checker says it.
    pub first_anomaly: Option<String>,
    /// The run stopped at that anomaly, before its time limit (workload, recovery and final
    /// reads skipped).
    pub stopped_early: bool,
    /// Rounds of checks, key checks in them, and seconds spent checking.
    pub rounds: u64,
    pub key_checks: u64,
    pub check_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn ev(index: u64, time_ms: u64, p: u64, kind: EventType, f: &str) -> Record {
        Record {
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
            ev(0, 0, 0, EventType::Invoke, "write"),
            ev(1, 1, 1, EventType::Invoke, "read"),
            ev(2, 10, 0, EventType::Ok, "write"),
            ev(3, 21, 1, EventType::Ok, "read"),
            ev(4, 30, 0, EventType::Invoke, "cas"),
            ev(5, 31, 0, EventType::Fail, "cas"),
            ev(6, 40, 0, EventType::Invoke, "write"),
            ev(7, 50, 0, EventType::Info, "write"),
            ev(8, 60, 10, EventType::Invoke, "read"),
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
}
