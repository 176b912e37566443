//! An etcd cluster's membership, shutdown and disk, live. Three members from the `etcd` on
//! `PATH`: one is taken out of the membership through etcd's member API (stopped, its data
//! wiped) and added back as a learner that is promoted, the leader found each time, and all
//! end on SIGTERM (the leader last, so it does not wait on a stopping follower); a short
//! `raft-lab run --db etcd` under kills and membership changes is judged valid and leaves a
//! small run folder (the members' data dropped, their logs kept), or keeps the data with
//! `--keep-data`. With `--hosts netns` (one network namespace per member: root and `ip`;
//! `RAFTLAB_REQUIRE_NETNS=1` makes their absence a failure) a short run under partitions,
//! kills and latency is judged valid and leaves no namespace behind. Skipped (saying why)
//! without `etcd`, unless `RAFTLAB_REQUIRE_ETCD=1`.

mod support;

use client::db::etcd::{EtcdCluster, EtcdOptions};
use client::db::Db;
use client::lab::cluster::HostsMode;
use client::lab::workload::{parse_nemesis_list, DbKind, Overrides};
use std::path::Path;
use std::time::Duration;
use support::{etcd, netns_available, own_namespaces, valid_run};

const PATIENCE: Duration = Duration::from_secs(30);

/// One etcd cluster at a time: two would share two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The voters and learners etcd lists, asked through any member but `except`.
fn voters_and_learners(cluster: &EtcdCluster, certs: &Path, except: u64) -> (usize, usize) {
    let client = client::db::etcd::StatusClient::new(certs).expect("the client certificate");
    let addr = (1..=3)
        .filter(|&id| id != except)
        .find_map(|id| cluster.client_addr(id))
        .expect("a member address");
    let members = client
        .member_list(addr, Duration::from_secs(5))
        .expect("the member list");
    let learners = members.iter().filter(|m| m.learner).count();
    (members.len() - learners, learners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_and_added_back_through_etcds_member_api() {
    let Some(etcd) = etcd() else { return };
    let _serial = SERIAL.lock().await;
    let dir = std::env::temp_dir().join(format!("raftlab-etcd-members-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = EtcdOptions::new(3, etcd);
    opts.base_port = 25379;
    let mut cluster = EtcdCluster::create(&dir, &opts).expect("the etcd cluster starts");
    let certs = cluster.certs_dir();
    let leader = cluster.leader(PATIENCE).await.expect("a leader");

    // The leader itself taken out: stopped, its data wiped, the other two go on.
    let out = leader;
    let cluster = tokio::task::spawn_blocking(move || {
        Db::remove_member(&mut cluster, None, out).expect("remove");
        cluster
    })
    .await
    .expect("the removal thread");
    assert!(!dir.join(format!("data/node-{out}")).exists(), "data wiped");
    let mut cluster = cluster;
    assert!(!cluster.is_running(out));
    assert_eq!(voters_and_learners(&cluster, &certs, out), (2, 0));
    let next = cluster.leader(PATIENCE).await.expect("a leader of two");
    assert_ne!(next, out);

    // Added back: a learner, started afresh, promoted.
    let cluster = tokio::task::spawn_blocking(move || {
        Db::add_member_back(&mut cluster, None, out).expect("add back");
        cluster
    })
    .await
    .expect("the add thread");
    let mut cluster = cluster;
    assert!(cluster.is_running(out));
    assert_eq!(voters_and_learners(&cluster, &certs, 0), (3, 0));
    cluster
        .leader(PATIENCE)
        .await
        .expect("a leader of three again");
    let log = std::fs::read_to_string(cluster.log_path(out)).unwrap_or_default();
    assert!(log.contains("existing"), "it joined the running cluster");

    // Every member, the leader too, ends on SIGTERM (it logs its close), none needs SIGKILL.
    Db::teardown(&mut cluster, true, &dir).expect("teardown");
    for id in 1..=3 {
        let log = std::fs::read_to_string(cluster.log_path(id)).unwrap_or_default();
        let last_start = log
            .rsplit("=== raft-lab: starting")
            .next()
            .unwrap_or_default();
        assert!(
            last_start.contains("closed etcd server"),
            "member {id} closed on SIGTERM"
        );
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes under `dir`.
fn size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_run_under_kills_and_membership_leaves_a_small_folder() {
    if etcd().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let root = std::env::temp_dir().join(format!("raftlab-etcd-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (seed, keep_data) in [(11, false), (12, true)] {
        eprintln!("seed {seed}, keep_data {keep_data}");
        let overrides = Overrides {
            db: Some(DbKind::Etcd),
            time_limit: Some(8.0),
            nemesis: Some(parse_nemesis_list("kill,membership")),
            seed: Some(seed),
            results: Some(root.clone()),
            keep_data,
            quiet: true,
            ..Overrides::default()
        };
        let outcome = valid_run("ci", &overrides).await;
        let summary = &outcome.summary;
        let cluster = outcome.run_dir.join("cluster");
        assert!(cluster.join("node-1.log").is_file());
        let bytes = size(&outcome.run_dir);
        eprintln!("run folder: {bytes} bytes");
        if keep_data {
            assert!(cluster.join("data/node-1").is_dir(), "--keep-data keeps it");
        } else {
            assert!(!cluster.join("data").exists(), "the members' data dropped");
            assert!(bytes < 16 << 20, "a small run folder: {bytes} bytes");
            assert!(
                summary
                    .nemesis
                    .applied
                    .get("membership")
                    .is_some_and(|n| *n >= 1),
                "{:?}",
                summary.nemesis
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_in_namespaces_pass_under_partitions_kills_and_latency() {
    if etcd().is_none() || !netns_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let root = std::env::temp_dir().join(format!("raftlab-etcd-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let seed = 21;
    eprintln!("seed {seed}");
    let overrides = Overrides {
        db: Some(DbKind::Etcd),
        hosts: HostsMode::Netns,
        time_limit: Some(16.0),
        nemesis: Some(parse_nemesis_list(
            "partition-halves,isolate-leader,kill,latency",
        )),
        seed: Some(seed),
        results: Some(root.clone()),
        quiet: true,
        ..Overrides::default()
    };
    let outcome = valid_run("ci", &overrides).await;
    let summary = &outcome.summary;
    assert!(summary.cluster.starts_with("etcd"), "{}", summary.cluster);
    assert!(summary.cluster.ends_with("(netns)"), "{}", summary.cluster);
    let applied: u64 = summary.nemesis.applied.values().sum();
    assert!(applied >= 3, "faults were applied: {:?}", summary.nemesis);
    assert!(own_namespaces().is_empty(), "{:?}", own_namespaces());
    let _ = std::fs::remove_dir_all(&root);
}
