//! Workload files (`workloads/*.toml`): what a run does, validated on load.
//!
//! ```toml
//! name = "kv"                      # default: the file name without .toml
//! description = "..."              # optional, shown in reports
//! nodes = 5                        # cluster size (default 5)
//! concurrency = "2n"               # client processes: an integer, or "Kn" = K per node (default "2n")
//! rate = 100                       # operations per second, all processes together; 0 = unlimited
//! time_limit = 30                  # seconds of workload (faults included), before recovery
//! op_timeout = 5                   # seconds an operation may take (retries included) before `info`
//! connect_timeout = 0.3            # seconds a client waits for a connection to a node before the next
//! attempt_timeout = 0.3            # seconds a client waits for a node's answer before the next
//!                                  # (doubling from the third unanswered attempt at one node)
//! node_backoff = 1                 # seconds a node that failed is not asked first
//! ops = { read = 2, write = 1, cas = 1 }   # op mix (relative weights; omitted = 0)
//! keys = "independent"             # or "single": one register for the whole run
//! ops_per_key = 100                # independent: ops a key group does before taking a fresh key
//! processes_per_key = 2            # independent: processes sharing one key at a time
//! value_range = 5                  # optional: write/cas values random in 0..5 (default: unique)
//! nemesis = ["kill", "partition-halves"]   # fault kinds (default none)
//! nemesis_interval = 10            # seconds between the start of two faults
//! nemesis_duration = 5             # seconds a fault lasts before it is healed
//! recovery_time = 10               # seconds after healing everything, before final reads
//! final_reads = true               # after recovery, each process reads every key it used
//! route = "node"                   # "node": process i sends to node i mod n first and follows
//!                                  # redirects (Jepsen); "leader": straight to the known leader
//! read_consistency = "linearizable"  # or "serializable": reads from the member's own state
//!                                  # (db = "etcd" only)
//! seed = 42                        # optional: the run's seed (default: random, recorded)
//! check_timeout = 120              # seconds the checker may take before `unknown`
//! ```
//!
//! Unknown keys, values of the wrong type and out-of-range values are errors naming the
//! file and line. Command-line flags ([`Overrides`]) win over the file.

use crate::control::one_line;
use crate::kv::etcd::ReadConsistency;
use crate::kv::policy::Timing;
use crate::nemesis::NemesisKind;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use toml::Spanned;

/// Every nemesis kind the lab knows, by its contract name ([`NemesisKind::ALL`]).
pub const NEMESIS_KINDS: &[&str] = &crate::nemesis::names(NemesisKind::ALL);

/// Kinds that need nodes with network interfaces of their own (`--hosts netns` or a remote
/// cluster): not in `all` ([`NemesisKind::OWN_INTERFACES`]).
pub const OWN_INTERFACE_KINDS: &[&str] = &crate::nemesis::names(NemesisKind::OWN_INTERFACES);

/// The partition kinds (they need root and `nft`) ([`NemesisKind::PARTITIONS`]).
pub const PARTITION_KINDS: &[&str] = &crate::nemesis::names(NemesisKind::PARTITIONS);

/// Largest cluster the local launcher is expected to handle.
pub const MAX_NODES: usize = 25;

/// A problem with a workload file or an override.
#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        /// Not a `source`: the message already says it (no repetition in `{:#}` chains).
        error: std::io::Error,
    },
    /// Something wrong at a place in the file.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A command-line override is wrong.
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
}

/// How many client processes: an absolute number, or a multiple of the node count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Absolute(usize),
    PerNode(usize),
}

impl Concurrency {
    pub fn resolve(self, nodes: usize) -> usize {
        match self {
            Concurrency::Absolute(n) => n,
            Concurrency::PerNode(k) => k.saturating_mul(nodes),
        }
    }
}

impl FromStr for Concurrency {
    type Err = String;

    /// `"10"` or `"2n"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || {
            format!("expected a number of processes like 10, or \"Kn\" like \"2n\" (K per node), got {s:?}")
        };
        let (digits, per_node) = match t.strip_suffix('n') {
            Some(d) => (d, true),
            None => (t, false),
        };
        let n: usize = digits.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err("concurrency must be at least 1".into());
        }
        Ok(if per_node {
            Concurrency::PerNode(n)
        } else {
            Concurrency::Absolute(n)
        })
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Concurrency::Absolute(n) => write!(f, "{n}"),
            Concurrency::PerNode(k) => write!(f, "{k}n"),
        }
    }
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Concurrency;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of processes, or a string like \"2n\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Concurrency, E> {
                if v < 1 {
                    return Err(E::custom("concurrency must be at least 1"));
                }
                Ok(Concurrency::Absolute(v as usize))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Concurrency, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Concurrency, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Relative weights of the operations. In a file, a weight left out of `ops` is 0; without
/// `ops` at all the mix is read = write = cas = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpMix {
    #[serde(default)]
    pub read: u32,
    #[serde(default)]
    pub write: u32,
    #[serde(default)]
    pub cas: u32,
    #[serde(default)]
    pub append: u32,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            read: 1,
            write: 1,
            cas: 1,
            append: 0,
        }
    }
}

impl OpMix {
    pub fn total(&self) -> u64 {
        u64::from(self.read) + u64::from(self.write) + u64::from(self.cas) + u64::from(self.append)
    }
}

/// Which keys the processes work on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// One register for the whole run (key `"k0"`).
    Single,
    /// Jepsen's independent generator: groups of `processes_per_key` processes each work one
    /// key for at most `ops_per_key` operations, then move to a fresh key.
    Independent {
        ops_per_key: u64,
        processes_per_key: usize,
    },
}

/// What values writes and cas use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueShape {
    /// A counter per key: every written value is unique (reads are attributable, checking is
    /// fast).
    Unique,
    /// Random values in `0..n` (repeats allowed: the general search checks them).
    Range(u64),
}

/// The system under test (`db` in workload files, `--db`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// raftlab's own nodes (`raft-node`).
    #[default]
    Raftlab,
    /// An etcd v3 cluster (the `etcd` binary).
    Etcd,
}

impl DbKind {
    /// The name in workload files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Raftlab => "raftlab",
            DbKind::Etcd => "etcd",
        }
    }
}

/// Where a process sends an operation first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Process `i` is bound to node `i mod n` (Jepsen): every operation goes there first and
    /// follows the node's redirect, so followers and deposed leaders see requests too.
    Node,
    /// Every operation goes to the last known leader.
    Leader,
}

impl Route {
    /// The name in workload files and in `results.json`.
    pub fn name(self) -> &'static str {
        match self {
            Route::Node => "node",
            Route::Leader => "leader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeysField {
    Single,
    Independent,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<Spanned<String>>,
    description: Option<String>,
    db: Option<DbKind>,
    nodes: Option<Spanned<i64>>,
    concurrency: Option<Spanned<Concurrency>>,
    rate: Option<Spanned<f64>>,
    time_limit: Option<Spanned<f64>>,
    op_timeout: Option<Spanned<f64>>,
    connect_timeout: Option<Spanned<f64>>,
    attempt_timeout: Option<Spanned<f64>>,
    node_backoff: Option<Spanned<f64>>,
    ops: Option<Spanned<OpMix>>,
    keys: Option<Spanned<KeysField>>,
    ops_per_key: Option<Spanned<i64>>,
    processes_per_key: Option<Spanned<i64>>,
    value_range: Option<Spanned<i64>>,
    nemesis: Option<Spanned<Vec<Spanned<String>>>>,
    nemesis_interval: Option<Spanned<f64>>,
    nemesis_duration: Option<Spanned<f64>>,
    recovery_time: Option<Spanned<f64>>,
    final_reads: Option<bool>,
    route: Option<Route>,
    read_consistency: Option<Spanned<ReadConsistency>>,
    seed: Option<Spanned<i64>>,
    check_timeout: Option<Spanned<f64>>,
}

/// Command-line flags that win over the workload file (`raft-lab run` passes them).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--nodes N`
    pub nodes: Option<usize>,
    /// `--time-limit SECONDS`
    pub time_limit: Option<f64>,
    /// `--concurrency N|Kn`
    pub concurrency: Option<Concurrency>,
    /// `--rate OPS` (0 = unlimited)
    pub rate: Option<f64>,
    /// `--nemesis LIST`: comma-separated kinds, `none` for no faults (see [`parse_nemesis_list`]).
    pub nemesis: Option<Vec<String>>,
    /// `--seed N`
    pub seed: Option<u64>,
    /// `--results DIR` (default `results`)
    pub results: Option<PathBuf>,
    /// `--bug NAME`: start the nodes with a catalogue bug.
    pub bug: Option<String>,
    /// `--cluster FILE`: use an already running cluster described by this `cluster.toml`.
    pub cluster: Option<PathBuf>,
    /// `--hosts local|netns`: where a fresh cluster's nodes run.
    pub hosts: crate::lab::cluster::HostsMode,
    /// `--db raftlab|etcd`: the system under test.
    pub db: Option<DbKind>,
    /// `--etcd-bin PATH`: the `etcd` binary (default: `etcd` on `PATH`).
    pub etcd_bin: Option<PathBuf>,
    /// `--etcd-port P`: etcd's client port (peer port `P+1`), used as given or the run
    /// fails; by default the first free pair from 2379.
    pub etcd_port: Option<u16>,
    /// `--keep-data`: keep the nodes' data directories after a valid run (those the
    /// cluster names in `Db::data_dirs`: etcd's members').
    pub keep_data: bool,
    /// Hide the progress bar (tests, non-interactive use).
    pub quiet: bool,
    /// Print nothing at all (no verdict line, no warnings): the caller reports the run
    /// itself (`raft-lab matrix`). Everything still goes into the run folder.
    pub silent: bool,
    /// `--stop-on-anomaly`: stop the run at the first anomaly the online check finds.
    pub stop_on_anomaly: bool,
    /// `--no-online-check`: check the history only at the end (to measure what the online
    /// check costs).
    pub no_online_check: bool,
}

/// A validated workload, overrides applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    /// The system under test.
    pub db: DbKind,
    pub nodes: usize,
    /// As written (for the report), and resolved against `nodes`.
    pub concurrency_spec: Concurrency,
    pub concurrency: usize,
    /// Operations per second, all processes together; 0 = unlimited.
    pub rate: f64,
    pub time_limit: Duration,
    pub op_timeout: Duration,
    /// How long clients wait on one node before they try the next.
    pub timing: Timing,
    pub mix: OpMix,
    pub keys: KeyShape,
    pub values: ValueShape,
    /// Canonical nemesis kind names, without duplicates, in the order given.
    pub nemesis: Vec<String>,
    pub nemesis_interval: Duration,
    pub nemesis_duration: Duration,
    pub recovery_time: Duration,
    pub final_reads: bool,
    pub route: Route,
    /// How reads are served (serializable only for etcd).
    pub read_consistency: ReadConsistency,
    pub seed: Option<u64>,
    pub check_timeout: Option<Duration>,
    pub bug: Option<String>,
}

impl Workload {
    /// Whether any requested nemesis is a partition (needs root and `nft`).
    pub fn wants_partitions(&self) -> bool {
        self.nemesis.iter().any(|k| needs_nft(k))
    }

    /// Reads `path` and applies `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|error| WorkloadError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Workload::parse(path, &text, overrides)
    }

    /// Parses `text` as if read from `path` and applies `overrides`.
    pub fn parse(
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Workload, WorkloadError> {
        let at = |span: std::ops::Range<usize>, message: String| WorkloadError::Invalid {
            path: path.to_path_buf(),
            line: Some(line_of(text, span.start)),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let mut message = one_line(e.message())
                .replace("expected i64", "expected an integer")
                .replace("expected f64", "expected a number");
            if let Some(snippet) = e.span().and_then(|s| line_text(text, s.start)) {
                message.push_str(&format!(" (in `{snippet}`)"));
            }
            WorkloadError::Invalid {
                path: path.to_path_buf(),
                line: e.span().map(|s| line_of(text, s.start)),
                message,
            }
        })?;

        let name = match &file.name {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                    || v.starts_with('.')
                {
                    return Err(at(
                        n.span(),
                        format!("name {v:?}: use letters, digits, '-', '_' and '.' only (it names the results folder)"),
                    ));
                }
                v.clone()
            }
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(sanitize_name)
                .unwrap_or_else(|| "workload".into()),
        };

        let int_in = |field: &Option<Spanned<i64>>,
                      what: &str,
                      lo: i64,
                      hi: i64,
                      default: i64|
         -> Result<i64, WorkloadError> {
            match field {
                None => Ok(default),
                Some(s) => {
                    let v = *s.get_ref();
                    if v < lo || v > hi {
                        let range = if hi == i64::MAX {
                            format!("at least {lo}")
                        } else {
                            format!("in {lo}..={hi}")
                        };
                        Err(at(s.span(), format!("{what} must be {range}, got {v}")))
                    } else {
                        Ok(v)
                    }
                }
            }
        };
        let number = |field: &Option<Spanned<f64>>,
                      what: &str,
                      unit: &str,
                      allow_zero: bool,
                      default: f64|
         -> Result<f64, WorkloadError> {
            match field {
                None => Ok(default),
                Some(s) => {
                    let v = *s.get_ref();
                    let positive = if allow_zero { v >= 0.0 } else { v > 0.0 };
                    let ok = v.is_finite() && positive && v <= 1e7;
                    if ok {
                        Ok(v)
                    } else {
                        Err(at(
                            s.span(),
                            format!(
                                "{what} must be {} ({unit}), got {v}",
                                if allow_zero { ">= 0" } else { "> 0" }
                            ),
                        ))
                    }
                }
            }
        };

        let mut nodes = int_in(&file.nodes, "nodes", 1, MAX_NODES as i64, 5)? as usize;
        if let Some(n) = overrides.nodes {
            if n == 0 || n > MAX_NODES {
                return Err(WorkloadError::Flag {
                    flag: "--nodes",
                    message: format!("must be in 1..={MAX_NODES}, got {n}"),
                });
            }
            nodes = n;
        }

        let concurrency_spec = overrides
            .concurrency
            .or(file.concurrency.as_ref().map(|c| *c.get_ref()))
            .unwrap_or(Concurrency::PerNode(2));
        let concurrency = concurrency_spec.resolve(nodes);
        if concurrency == 0 || concurrency > 10_000 {
            let message = format!("resolves to {concurrency} processes; expected 1..=10000");
            return Err(match (&overrides.concurrency, &file.concurrency) {
                (Some(_), _) => WorkloadError::Flag {
                    flag: "--concurrency",
                    message,
                },
                (None, Some(s)) => at(s.span(), format!("concurrency {message}")),
                (None, None) => WorkloadError::Invalid {
                    path: path.to_path_buf(),
                    line: None,
                    message,
                },
            });
        }

        let seconds = |field: &Option<Spanned<f64>>, what: &str, allow_zero: bool, default: f64| {
            number(field, what, "seconds", allow_zero, default)
        };
        let mut rate = number(
            &file.rate,
            "rate",
            "operations per second, 0 = unlimited",
            true,
            0.0,
        )?;
        if let Some(r) = overrides.rate {
            if !(r.is_finite() && r >= 0.0) {
                return Err(WorkloadError::Flag {
                    flag: "--rate",
                    message: format!("must be operations per second >= 0, got {r}"),
                });
            }
            rate = r;
        }

        let mut time_limit = seconds(&file.time_limit, "time_limit", false, 60.0)?;
        if let Some(t) = overrides.time_limit {
            if !(t.is_finite() && t > 0.0 && t <= 1e7) {
                return Err(WorkloadError::Flag {
                    flag: "--time-limit",
                    message: format!("must be a number of seconds > 0, got {t}"),
                });
            }
            time_limit = t;
        }
        let op_timeout = seconds(&file.op_timeout, "op_timeout", false, 5.0)?;
        let defaults = Timing::default();
        let duration = |value, key, zero_ok, default: Duration| {
            seconds(value, key, zero_ok, default.as_secs_f64()).map(Duration::from_secs_f64)
        };
        let timing = Timing {
            connect_timeout: duration(
                &file.connect_timeout,
                "connect_timeout",
                false,
                defaults.connect_timeout,
            )?,
            attempt_timeout: duration(
                &file.attempt_timeout,
                "attempt_timeout",
                false,
                defaults.attempt_timeout,
            )?,
            node_backoff: duration(
                &file.node_backoff,
                "node_backoff",
                true,
                defaults.node_backoff,
            )?,
        };

        let mix = match &file.ops {
            None => OpMix::default(),
            Some(s) => {
                let m = *s.get_ref();
                if m.total() == 0 {
                    return Err(at(
                        s.span(),
                        "ops: at least one weight must be positive".into(),
                    ));
                }
                m
            }
        };

        let keys_field = file
            .keys
            .as_ref()
            .map(|k| *k.get_ref())
            .unwrap_or(KeysField::Independent);
        let keys = match keys_field {
            KeysField::Single => {
                for (field, name) in [
                    (&file.ops_per_key, "ops_per_key"),
                    (&file.processes_per_key, "processes_per_key"),
                ] {
                    if let Some(s) = field {
                        return Err(at(
                            s.span(),
                            format!("{name} only applies to keys = \"independent\" (this workload has keys = \"single\")"),
                        ));
                    }
                }
                KeyShape::Single
            }
            KeysField::Independent => {
                let ops_per_key =
                    int_in(&file.ops_per_key, "ops_per_key", 1, i64::MAX, 100)? as u64;
                let processes_per_key =
                    int_in(&file.processes_per_key, "processes_per_key", 1, 10_000, 2)? as usize;
                KeyShape::Independent {
                    ops_per_key,
                    // More processes per key than processes would leave the group short.
                    processes_per_key: processes_per_key.min(concurrency),
                }
            }
        };

        let values = match &file.value_range {
            None => ValueShape::Unique,
            Some(_) => {
                ValueShape::Range(int_in(&file.value_range, "value_range", 1, i64::MAX, 1)? as u64)
            }
        };

        let db = overrides.db.or(file.db).unwrap_or_default();
        let mut nemesis = Vec::new();
        if let Some(list) = &file.nemesis {
            for kind in list.get_ref() {
                let expanded = expand_nemesis(kind.get_ref()).map_err(|m| at(kind.span(), m))?;
                push_unique(&mut nemesis, expanded);
            }
        }
        if let Some(list) = &overrides.nemesis {
            nemesis.clear();
            for kind in list {
                let expanded = expand_nemesis(kind).map_err(|message| WorkloadError::Flag {
                    flag: "--nemesis",
                    message,
                })?;
                push_unique(&mut nemesis, expanded);
            }
        }
        let nemesis_interval = seconds(&file.nemesis_interval, "nemesis_interval", false, 10.0)?;
        let nemesis_duration = seconds(&file.nemesis_duration, "nemesis_duration", false, 5.0)?;
        if let (Some(d), true) = (&file.nemesis_duration, nemesis_duration > nemesis_interval) {
            return Err(at(
                d.span(),
                format!(
                    "nemesis_duration ({nemesis_duration} s) must not exceed nemesis_interval ({nemesis_interval} s)"
                ),
            ));
        }
        let recovery_time = seconds(&file.recovery_time, "recovery_time", true, 10.0)?;
        let check_timeout = seconds(&file.check_timeout, "check_timeout", false, 120.0)?;

        let seed = match overrides.seed {
            Some(s) => Some(s),
            None => match &file.seed {
                None => None,
                Some(s) if *s.get_ref() < 0 => {
                    return Err(at(
                        s.span(),
                        format!("seed must be >= 0, got {}", s.get_ref()),
                    ))
                }
                Some(s) => Some(*s.get_ref() as u64),
            },
        };

        let read_consistency = match &file.read_consistency {
            None => ReadConsistency::default(),
            Some(r) if *r.get_ref() == ReadConsistency::Serializable && db == DbKind::Raftlab => {
                return Err(at(
                    r.span(),
                    "read_consistency = \"serializable\" needs db = \"etcd\": raftlab serves every \
                     read through the leader's read index and has no member-local read (the \
                     catalogue bug stale-read is the nearest thing, as a bug)"
                        .into(),
                ))
            }
            Some(r) => *r.get_ref(),
        };

        Ok(Workload {
            name,
            path: path.to_path_buf(),
            description: file.description,
            db,
            nodes,
            concurrency_spec,
            concurrency,
            rate,
            time_limit: Duration::from_secs_f64(time_limit),
            op_timeout: Duration::from_secs_f64(op_timeout),
            timing,
            mix,
            keys,
            values,
            nemesis,
            nemesis_interval: Duration::from_secs_f64(nemesis_interval),
            nemesis_duration: Duration::from_secs_f64(nemesis_duration),
            recovery_time: Duration::from_secs_f64(recovery_time),
            final_reads: file.final_reads.unwrap_or(true),
            route: file.route.unwrap_or(Route::Node),
            read_consistency,
            seed,
            check_timeout: Some(Duration::from_secs_f64(check_timeout)),
            bug: overrides.bug.clone(),
        })
    }
}

/// Parses a `--nemesis` value: comma-separated kinds (or `partition`/`all`/`disk` groups), or
/// `none`/empty for no faults. Names are checked when the workload is loaded.
pub fn parse_nemesis_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty() && *k != "none")
        .map(str::to_string)
        .collect()
}

/// A kind name, or a group name (`partition(s)`, `all`, `disk`: see [`parse_kinds`]).
///
/// [`parse_kinds`]: crate::nemesis::parse_kinds
fn expand_nemesis(kind: &str) -> Result<Vec<String>, String> {
    crate::nemesis::parse_kinds(kind)
        .map(|kinds| kinds.iter().map(|k| k.name().to_string()).collect())
        .map_err(|e| e.to_string())
}

fn push_unique(list: &mut Vec<String>, more: Vec<String>) {
    for k in more {
        if !list.contains(&k) {
            list.push(k);
        }
    }
}

/// Whether nemesis kind `kind` drops packets with nftables (partitions, `packet-loss`,
/// `freeze-leader`).
pub fn needs_nft(kind: &str) -> bool {
    kind.parse::<crate::nemesis::NemesisKind>()
        .is_ok_and(|k| k.needs_network() && !k.needs_own_interfaces())
}

/// Keeps what may name a folder.
fn sanitize_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "workload".into()
    } else {
        cleaned
    }
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
        + 1
}

/// The line holding byte `offset`, trimmed and shortened, for error messages.
pub(crate) fn line_text(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    let line = text.get(start..end)?.trim();
    if line.is_empty() {
        return None;
    }
    let mut short: String = line.chars().take(60).collect();
    if short.len() < line.len() {
        short.push_str("...");
    }
    Some(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workload, WorkloadError> {
        Workload::parse(Path::new("workloads/t.toml"), text, &Overrides::default())
    }

    /// The workload layer accepts every kind the nemesis implements (its lists are built from
    /// the nemesis's), and the nemesis names each when it refuses an unknown one.
    #[test]
    fn nemesis_kind_names_match_the_nemesis() {
        for kind in NEMESIS_KINDS.iter().chain(OWN_INTERFACE_KINDS) {
            assert_eq!(expand_nemesis(kind).unwrap(), [*kind]);
        }
        // The nemesis names every kind when it refuses an unknown one.
        let refusal = crate::nemesis::parse_kinds("no-such-kind")
            .unwrap_err()
            .to_string();
        let known: Vec<&str> = refusal
            .split("known: ")
            .nth(1)
            .unwrap_or_default()
            .split(", ")
            .collect();
        for name in NEMESIS_KINDS.iter().chain(OWN_INTERFACE_KINDS) {
            assert!(known.contains(name), "{name} missing from: {refusal}");
        }
        assert_eq!(expand_nemesis("freeze-leader").unwrap(), ["freeze-leader"]);
    }

    #[test]
    fn defaults() {
        let w = parse("").unwrap();
        assert_eq!(w.name, "t");
        assert_eq!(w.nodes, 5);
        assert_eq!(w.concurrency, 10);
        assert_eq!(w.values, ValueShape::Unique);
        assert!(w.final_reads);
        assert!(w.nemesis.is_empty());
        assert_eq!(
            w.keys,
            KeyShape::Independent {
                ops_per_key: 100,
                processes_per_key: 2
            }
        );
    }

    #[test]
    fn client_timing_defaults_and_keys() {
        assert_eq!(parse("").unwrap().timing, Timing::default());
        let w = parse("connect_timeout = 0.2\nattempt_timeout = 0.25\nnode_backoff = 0").unwrap();
        assert_eq!(w.timing.connect_timeout, Duration::from_millis(200));
        assert_eq!(w.timing.attempt_timeout, Duration::from_millis(250));
        assert_eq!(w.timing.node_backoff, Duration::ZERO);
        assert!(parse("attempt_timeout = 0").is_err());
        assert!(parse("connect_timeout = -1").is_err());
    }

    #[test]
    fn concurrency_absolute_or_per_node() {
        assert_eq!(
            parse("nodes = 3\nconcurrency = \"3n\"")
                .unwrap()
                .concurrency,
            9
        );
        assert_eq!(parse("nodes = 3\nconcurrency = 4").unwrap().concurrency, 4);
        assert_eq!(
            parse("nodes = 3\nconcurrency = \"7\"").unwrap().concurrency,
            7
        );
    }

    #[test]
    fn the_system_under_test_from_the_file_or_the_flag() {
        assert_eq!(parse("nodes = 3").unwrap().db, DbKind::Raftlab);
        assert_eq!(
            parse("nodes = 3").unwrap().read_consistency,
            ReadConsistency::Linearizable
        );
        let serializable = "db = \"etcd\"\nread_consistency = \"serializable\"";
        assert_eq!(
            parse(serializable).unwrap().read_consistency,
            ReadConsistency::Serializable
        );
        let e = parse("read_consistency = \"serializable\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":1: read_consistency = \"serializable\" needs db = \"etcd\""),
            "{e}"
        );
        let to_raftlab = Overrides {
            db: Some(DbKind::Raftlab),
            ..Overrides::default()
        };
        assert!(Workload::parse(Path::new("x.toml"), serializable, &to_raftlab).is_err());
        assert!(parse("read_consistency = \"sequential\"").is_err());
        // `all` is every kind, for etcd as for raftlab (transfer through etcd's MoveLeader).
        let all = parse("db = \"etcd\"\nnemesis = [\"all\"]").unwrap().nemesis;
        assert_eq!(all.len(), NEMESIS_KINDS.len(), "{all:?}");
        let raftlab_all = parse("nemesis = [\"all\"]").unwrap().nemesis;
        assert_eq!(raftlab_all, all);
        assert_eq!(parse("db = \"etcd\"").unwrap().db, DbKind::Etcd);
        assert!(parse("db = \"zookeeper\"").is_err());
        let flag = Overrides {
            db: Some(DbKind::Raftlab),
            ..Overrides::default()
        };
        let w = Workload::parse(Path::new("x.toml"), "db = \"etcd\"", &flag).unwrap();
        assert_eq!(w.db, DbKind::Raftlab);
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            nodes: Some(3),
            time_limit: Some(2.5),
            concurrency: Some(Concurrency::PerNode(1)),
            nemesis: Some(parse_nemesis_list("kill, partition")),
            seed: Some(9),
            bug: Some("stale-read".into()),
            ..Overrides::default()
        };
        let w = Workload::parse(
            Path::new("x.toml"),
            "nodes = 5\ntime_limit = 60\nnemesis = [\"pause\"]\nseed = 1\n",
            &o,
        )
        .unwrap();
        assert_eq!(w.nodes, 3);
        assert_eq!(w.concurrency, 3);
        assert_eq!(w.time_limit, Duration::from_millis(2500));
        assert_eq!(w.nemesis.len(), 1 + PARTITION_KINDS.len());
        assert_eq!(w.nemesis[0], "kill");
        assert_eq!(w.seed, Some(9));
        assert_eq!(w.bug.as_deref(), Some("stale-read"));
        assert!(w.wants_partitions());
        let none = Overrides {
            nemesis: Some(parse_nemesis_list("none")),
            ..Overrides::default()
        };
        let w = Workload::parse(Path::new("x.toml"), "nemesis = [\"kill\"]", &none).unwrap();
        assert!(w.nemesis.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            ("nodes = 3\nbogus = 1\n", 2, "bogus"),
            ("nodes = 3\n\nnodes_count = 1\n", 3, "nodes_count"),
            ("nodes = \"three\"\n", 1, "nodes"),
            ("time_limit = 10\nnodes = 0\n", 2, "nodes"),
            ("concurrency = \"2x\"\n", 1, "2x"),
            ("concurrency = 0\n", 1, "at least 1"),
            ("\nrate = -1\n", 2, "rate"),
            ("ops = { read = 1, delete = 2 }\n", 1, "delete"),
            ("ops = { read = 0 , write = 0, cas = 0 }\n", 1, "positive"),
            ("keys = \"many\"\n", 1, "many"),
            ("keys = \"single\"\nops_per_key = 3\n", 2, "ops_per_key"),
            ("a = 1\n", 1, "a"),
            ("nemesis = [\"kill\",\n  \"explode\"]\n", 2, "explode"),
            ("value_range = 0\n", 1, "value_range"),
            ("time_limit = 0\n", 1, "time_limit"),
            (
                "nemesis_interval = 2\nnemesis_duration = 3\n",
                2,
                "nemesis_duration",
            ),
            ("final_reads = 3\n", 1, "final_reads"),
            ("route = \"random\"\n", 1, "random"),
            ("name = \"../x\"\n", 1, "name"),
            ("nodes = [\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.starts_with(&format!("workloads/t.toml:{line}:")),
                "{text:?} -> {err}"
            );
            assert!(err.contains(needle), "{text:?} -> {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn bad_overrides_name_the_flag() {
        let o = Overrides {
            nemesis: Some(vec!["boom".into()]),
            ..Overrides::default()
        };
        let err = Workload::parse(Path::new("x.toml"), "", &o)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--nemesis:"), "{err}");
        let o = Overrides {
            nodes: Some(0),
            ..Overrides::default()
        };
        let err = Workload::parse(Path::new("x.toml"), "", &o)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--nodes:"), "{err}");
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // matrix.toml holds raft-lab matrix's recipes, not a workload.
            if path.extension().and_then(|e| e.to_str()) != Some("toml")
                || path.file_name().is_some_and(|n| n == "matrix.toml")
            {
                continue;
            }
            let w = Workload::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
            seen.push(w.name.clone());
        }
        seen.sort();
        for required in ["append", "kill", "kv", "partition", "pause", "register"] {
            assert!(
                seen.iter().any(|s| s == required),
                "missing {required}: {seen:?}"
            );
        }
    }
}
