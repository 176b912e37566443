//! End to end, as CI runs it: a real 3-node cluster under partitions and kills must be judged
//! linearizable, and the same lab must catch a node switched to serve stale reads, and nodes
//! that never fdatasync their log under a power cut, and a leader reading on an expired lease
//! after a freeze (the short version of the bug matrix for
//! the bugs the lab catches; the model checker's hunts cover the others in `model/tests`).

mod support;

use client::lab::workload::{parse_nemesis_list, Overrides};
use std::path::Path;

fn workload(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads")
        .join(format!("{name}.toml"))
}

/// Partitions need nftables and root; without them the run refuses partition faults, so
/// the test falls back to kills (and says so).
fn nemesis() -> Vec<String> {
    if client::net::nft::Nft::new().is_ok() {
        parse_nemesis_list("partition-halves,isolate-leader,kill")
    } else {
        eprintln!("nftables unavailable: testing with kills only");
        parse_nemesis_list("kill")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_under_partitions_and_kills_is_linearizable() {
    support::ensure_raft_node();
    let root = support::results_root("e2e-valid");
    let overrides = Overrides {
        nodes: Some(3),
        time_limit: Some(16.0),
        nemesis: Some(nemesis()),
        seed: Some(42),
        results: Some(root.join("results")),
        quiet: true,
        ..Overrides::default()
    };
    let outcome = client::lab::run::run_detailed(&workload("ci"), &overrides)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let summary = &outcome.summary;
    assert_eq!(outcome.verdict, checker::Verdict::Valid, "{summary:?}");
    assert!(summary.counts["all"].ok > 100, "{summary:?}");
    let applied: u64 = summary.nemesis.applied.values().sum();
    assert!(applied >= 2, "faults were applied: {:?}", summary.nemesis);
}

/// Runs `bug` with workload `name` under `nemesis` for up to three seeds (detection depends
/// on timing); panics unless one run is judged invalid.
async fn caught(bug: &str, name: &str, nemesis: Vec<String>, time_limit: f64) {
    support::ensure_raft_node();
    let root = support::results_root(&format!("e2e-{bug}"));
    for seed in 1..=3 {
        let overrides = Overrides {
            nodes: Some(3),
            time_limit: Some(time_limit),
            nemesis: Some(nemesis.clone()),
            seed: Some(seed),
            results: Some(root.join("results")),
            bug: Some(bug.into()),
            quiet: true,
            ..Overrides::default()
        };
        let outcome = client::lab::run::run_detailed(&workload(name), &overrides)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        if outcome.verdict == checker::Verdict::Invalid {
            assert!(outcome.run_dir.join("report.html").is_file());
            return;
        }
        eprintln!("seed {seed}: {bug} not caught ({:?})", outcome.verdict);
    }
    panic!("--bug {bug} was not caught in 3 seeded runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_bug_is_caught() {
    caught("stale-read", "ci", nemesis(), 10.0).await;
}

/// Appends never fdatasync'd (`skip-fsync`) are lost when every node's lazy disk loses what
/// was not synced (needs FUSE; a SIGKILL alone keeps the page cache and loses nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_fsync_is_caught_by_a_power_cut() {
    if !support::fuse_usable() {
        return;
    }
    caught("skip-fsync", "ci", parse_nemesis_list("power-cut"), 12.0).await;
}

/// A leader trusting its tick-measured lease (`lease-read`) answers stale reads when it wakes
/// from a freeze still cut off from its peers. Needs nftables (the freeze cuts links).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_read_is_caught_by_a_frozen_leader() {
    if client::net::nft::Nft::new().is_err() {
        eprintln!("nftables unavailable: freeze-leader cannot run, lease-read not tested");
        return;
    }
    caught(
        "lease-read",
        "lease",
        parse_nemesis_list("freeze-leader"),
        12.0,
    )
    .await;
}
