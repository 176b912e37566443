//! Workload files through the public API: every shipped workload parses and means what its
//! name says; overrides win; errors name the file and the line.

use client::lab::workload::{
    parse_nemesis_list, Concurrency, KeyShape, Overrides, ValueShape, Workload, WorkloadError,
    NEMESIS_KINDS, PARTITION_KINDS,
};
use std::path::{Path, PathBuf};

mod support;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads")
        .join(format!("{name}.toml"))
}

fn load(name: &str) -> Workload {
    Workload::load(&shipped(name), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn register_is_one_key_of_reads_writes_and_cas() {
    let w = load("register");
    assert_eq!(w.keys, KeyShape::Single);
    assert!(w.mix.read > 0 && w.mix.write > 0 && w.mix.cas > 0);
    assert_eq!(w.mix.append, 0);
    assert_eq!(w.values, ValueShape::Unique);
}

#[test]
fn kv_is_independent_keys() {
    let w = load("kv");
    assert!(matches!(w.keys, KeyShape::Independent { .. }));
    assert!(w.final_reads);
}

#[test]
fn append_is_appends_and_reads() {
    let w = load("append");
    assert!(w.mix.append > 0 && w.mix.read > 0);
    assert_eq!(w.mix.write + w.mix.cas, 0);
}

#[test]
fn one_workload_per_nemesis_family() {
    assert_eq!(load("kill").nemesis, vec!["kill".to_string()]);
    assert_eq!(load("pause").nemesis, vec!["pause".to_string()]);
    let p = load("partition");
    assert!(p.wants_partitions());
    for k in PARTITION_KINDS {
        assert!(p.nemesis.iter().any(|n| n == k), "{k}");
    }
    for name in ["kill", "pause", "partition"] {
        let w = load(name);
        assert!(w
            .nemesis
            .iter()
            .all(|k| NEMESIS_KINDS.contains(&k.as_str())));
    }
}

#[test]
fn every_shipped_workload_loads_with_overrides_for_a_short_ci_run() {
    let o = Overrides {
        nodes: Some(3),
        time_limit: Some(10.0),
        concurrency: Some("2n".parse::<Concurrency>().unwrap()),
        nemesis: Some(parse_nemesis_list("kill,pause")),
        seed: Some(1),
        ..Overrides::default()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // matrix.toml holds raft-lab matrix's recipes, not a workload.
        if path.extension().and_then(|e| e.to_str()) != Some("toml")
            || path.file_name().is_some_and(|n| n == "matrix.toml")
        {
            continue;
        }
        let w = Workload::load(&path, &o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((w.nodes, w.concurrency, w.seed), (3, 6, Some(1)));
        assert_eq!(w.nemesis, vec!["kill".to_string(), "pause".to_string()]);
        n += 1;
    }
    assert!(n >= 6);
}

#[test]
fn bad_key_and_bad_value_name_the_line() {
    let dir = std::env::temp_dir().join(format!("raftlab-workload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "nodes = 3\ntime_limit = 5\nconcurrancy = 4\n").unwrap();
    let err = Workload::load(&file, &Overrides::default()).unwrap_err();
    assert!(
        matches!(err, WorkloadError::Invalid { line: Some(3), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad.toml:3:"), "{err}");
    assert!(err.to_string().contains("concurrancy"), "{err}");

    std::fs::write(&file, "nodes = 3\n\n\nrate = \"fast\"\n").unwrap();
    let err = Workload::load(&file, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.toml:4:") && err.contains("rate"), "{err}");

    let err = Workload::load(&dir.join("missing.toml"), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `run` is callable from a test: a temp results root, a short time limit, kill faults. The
/// lead's end-to-end test covers partitions and bugs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_leaves_a_complete_results_folder() {
    support::ensure_raft_node();
    let root = std::env::temp_dir().join(format!("raftlab-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("short.toml");
    std::fs::write(
        &file,
        "name = \"short\"\nnodes = 3\nconcurrency = 4\nrate = 100\ntime_limit = 6\n\
         ops_per_key = 20\nnemesis = [\"kill\"]\nnemesis_interval = 2\nnemesis_duration = 1\n\
         recovery_time = 1\nfinal_reads = true\n",
    )
    .unwrap();
    let overrides = Overrides {
        results: Some(root.join("results")),
        seed: Some(5),
        quiet: true,
        ..Overrides::default()
    };
    let outcome = client::lab::run::run_detailed(&file, &overrides)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        outcome.verdict,
        checker::Verdict::Valid,
        "{:?}",
        outcome.summary
    );
    let dir = &outcome.run_dir;
    for f in [
        "history.jsonl",
        "history.edn",
        "results.json",
        "report.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    for n in 1..=3 {
        assert!(dir.join(format!("cluster/node-{n}.log")).is_file());
    }
    let latest = std::fs::canonicalize(root.join("results/latest")).unwrap();
    assert_eq!(latest, std::fs::canonicalize(dir).unwrap());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "valid");
    assert_eq!(summary["seed"], 5);
    assert!(
        summary["counts"]["all"]["ok"].as_u64().unwrap() > 50,
        "{summary}"
    );
    assert!(
        summary["nemesis"]["applied"]["kill"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    // Every node was stopped.
    for n in 1..=3 {
        assert!(!dir.join(format!("cluster/pids/node-{n}.pid")).exists());
    }
    std::fs::remove_dir_all(&root).unwrap();
}
