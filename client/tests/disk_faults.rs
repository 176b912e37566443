//! The storage faults end to end: a real 3-node cluster whose data directories are lazy disks
//! (raft-lazyfs over FUSE) stays linearizable through power cuts that drop every unsynced
//! write, a minority losing its unsynced writes, a full disk, and bit flips in a stopped
//! node's log that it must refuse to start on; no mount outlives the run. Needs /dev/fuse and fusermount3
//! (skips, saying why, without them unless `RAFTLAB_REQUIRE_FUSE=1`).

mod support;

use client::lab::cluster::HostsMode;
use client::lab::workload::{parse_nemesis_list, Overrides};
use std::path::Path;

fn ci_workload() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/ci.toml")
}

/// raft-lazyfs mounts under `root` still in the mount table.
fn mounts_under(root: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = root.display().to_string();
    table
        .lines()
        .filter(|l| l.starts_with("raft-lazyfs ") && l.contains(&root))
        .map(str::to_string)
        .collect()
}

/// Runs `ci.toml` on 3 nodes for `secs` under `nemesis` with `seed` (results under `root`),
/// and checks that the run is valid and that each kind of `nemesis` was applied.
async fn valid_run(
    root: &Path,
    nemesis: &str,
    secs: f64,
    hosts: HostsMode,
    seed: u64,
) -> client::lab::run::RunOutcome {
    let overrides = Overrides {
        nodes: Some(3),
        time_limit: Some(secs),
        nemesis: Some(parse_nemesis_list(nemesis)),
        hosts,
        seed: Some(seed),
        results: Some(root.join("results")),
        quiet: true,
        ..Overrides::default()
    };
    let outcome = client::lab::run::run_detailed(&ci_workload(), &overrides)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let summary = &outcome.summary;
    assert_eq!(outcome.verdict, checker::Verdict::Valid, "{summary:?}");
    for kind in &summary.nemesis.requested {
        let applied = summary.nemesis.applied.get(kind).copied().unwrap_or(0);
        assert!(
            applied >= 1,
            "{kind} applied {applied} times: {:?}",
            summary.nemesis
        );
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_build_survives_power_cuts_lost_writes_full_disks_and_bit_rot() {
    if !support::fuse_usable() {
        return;
    }
    support::ensure_raft_node();
    let root = support::results_root("disk-faults");
    let outcome = valid_run(&root, "disk", 20.0, HostsMode::Local, 5).await;
    let summary = &outcome.summary;
    assert_eq!(summary.nemesis.requested.len(), 4, "{:?}", summary.nemesis);
    let events = &summary.nemesis.events;
    let lost = events.iter().filter(|e| e.f == "lose-unsynced").count();
    assert!(
        lost >= 4,
        "a power cut and a lost minority: {lost} disks lost writes"
    );
    let refused = events
        .iter()
        .find(|e| e.f == "refused")
        .unwrap_or_else(|| panic!("no node refused its damaged log: {events:?}"));
    assert!(refused.value.get("error").is_none(), "{refused:?}");
    assert!(
        events.iter().any(|e| e.f == "repair"),
        "the damaged bit was flipped back"
    );
    assert!(
        mounts_under(&root).is_empty(),
        "mounts left behind: {:?}",
        mounts_under(&root)
    );
    // A node restarted on the full disk said so, and resumed once space returned.
    let logs: String = (1..=3)
        .map(|n| {
            let log = outcome.run_dir.join(format!("cluster/node-{n}.log"));
            std::fs::read_to_string(log).unwrap_or_default()
        })
        .collect();
    assert!(logs.contains("disk full"), "no node met the full disk");
    assert!(logs.contains("writes resume"), "no node resumed writing");
    // The nodes' data is in the backing directories once the mounts are gone.
    let durable = outcome.run_dir.join("cluster/data/node-1.durable/wal");
    assert!(durable.is_dir(), "{} holds the log", durable.display());
}

/// A cluster without lazy disks (e.g. one opened with `--cluster`) refuses the faults that
/// need them before anything starts, saying why; `corrupt` needs only local data files.
#[test]
fn a_cluster_without_lazy_disks_refuses_what_needs_them() {
    use client::db::local::{ClusterOptions, LocalCluster};
    use client::nemesis::{preflight, NemesisError, NemesisKind};
    let root = support::results_root("no-lazy-disks");
    let cluster = LocalCluster::create(
        &root.join("cluster"),
        &ClusterOptions {
            nodes: 3,
            raft_node: support::raft_node(),
            base_port: 16901,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    for kind in [
        NemesisKind::PowerCut,
        NemesisKind::LoseUnsynced,
        NemesisKind::DiskFull,
    ] {
        match preflight(&[kind], &cluster) {
            Err(NemesisError::Unsupported { kind: k, reason }) => {
                assert_eq!(k, kind);
                assert!(reason.contains("lazy disk"), "{reason}");
            }
            Err(e) => panic!("{kind}: {e}"),
            Ok(_) => panic!("{kind} accepted without lazy disks"),
        }
    }
    assert!(preflight(&[NemesisKind::Corrupt], &cluster).is_ok());
}

/// The same faults with one network namespace per node: the lazy disks are mounted on this
/// machine, whose mounts the namespaces share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_disks_work_for_nodes_in_network_namespaces() {
    if !support::fuse_usable() || !support::netns_available() {
        return;
    }
    support::ensure_raft_node();
    let root = support::results_root("disk-faults-netns");
    let outcome = valid_run(&root, "power-cut,corrupt", 12.0, HostsMode::Netns, 7).await;
    let summary = &outcome.summary;
    assert!(
        summary.nemesis.report["errors"]
            .as_array()
            .is_some_and(|e| e.is_empty()),
        "{:?}",
        summary.nemesis.report
    );
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
}
