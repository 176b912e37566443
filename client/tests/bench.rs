//! `raft-lab bench` in miniature: one round of 1 s cells at 1 and 4 clients of every
//! operation, against raftlab always and against etcd when `etcd` is on PATH (skipped,
//! saying why, otherwise; a failure under `RAFTLAB_REQUIRE_ETCD=1`). Checks that
//! `bench.json` and `bench.md` are written and well formed and that every cell answered
//! operations; no timing is asserted.

mod support;

use client::bench::system::Binaries;
use client::bench::{self, BenchOp, BenchOptions, SystemKind};
use client::db::etcd::etcd_binary;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn required() -> bool {
    std::env::var_os("RAFTLAB_REQUIRE_ETCD").is_some_and(|v| v == "1")
}

/// The systems to bench, and the etcd binary when etcd is one of them.
fn systems() -> (Vec<SystemKind>, Option<PathBuf>) {
    match etcd_binary(None) {
        Ok(etcd) => (vec![SystemKind::Raftlab, SystemKind::Etcd], Some(etcd)),
        Err(e) if required() => panic!("RAFTLAB_REQUIRE_ETCD=1 but {e}"),
        Err(e) => {
            eprintln!("SKIPPED the etcd half of the bench test: {e}");
            (vec![SystemKind::Raftlab], None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_writes_well_formed_results_with_operations_in_every_cell() {
    let (systems, etcd) = systems();
    let out = support::results_root("bench").join("out");
    let opts = BenchOptions {
        rounds: 1,
        warmup: Duration::from_millis(200),
        window: Duration::from_secs(1),
        clients: vec![1, 4],
        ops: BenchOp::ALL.to_vec(),
        systems: systems.clone(),
        nodes: 3,
        binaries: Binaries {
            raft_node: support::raft_node(),
            etcd_version: etcd
                .as_deref()
                .and_then(|e| client::db::etcd::check_version(e).ok()),
            etcd: etcd.unwrap_or_default(),
        },
        out: out.clone(),
        quiet: true,
        command: "raft-lab bench (test)".into(),
    };
    let bench = bench::run(&opts).await.expect("the bench runs");
    let cells = BenchOp::ALL.len() * 2 * systems.len();
    assert_eq!(bench.cells.len(), cells);

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("bench.json")).expect("bench.json written"),
    )
    .expect("bench.json is JSON");
    let json_cells = json["cells"].as_array().expect("cells");
    assert_eq!(json_cells.len(), cells);
    for cell in json_cells {
        let what = format!("{} {} x{}", cell["system"], cell["op"], cell["clients"]);
        assert!(
            cell["ops"].as_u64().is_some_and(|n| n > 0),
            "{what}: {cell}"
        );
        assert!(
            cell["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0),
            "{what}"
        );
        assert!(cell["p50_ms"].as_f64().is_some(), "{what}");
        assert!(cell["p999_ms"].as_f64().is_some(), "{what}");
        assert!(cell["cpu_us_per_op"].as_f64().is_some(), "{what}");
        assert!(cell["other_cores"].as_f64().is_some(), "{what}");
        if cell["op"] != "cas-shared" {
            assert_eq!(cell["failed_compare"], 0, "{what}: own keys never conflict");
        }
    }
    let summary = json["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), cells);
    assert!(summary
        .iter()
        .all(|s| s["ops_per_sec"]["median"].as_f64() > Some(0.0)));
    let ratios = json["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), if systems.len() == 2 { 8 } else { 0 });
    assert_eq!(json["settings"]["clients"], serde_json::json!([1, 4]));

    let md = std::fs::read_to_string(out.join("bench.md")).expect("bench.md written");
    assert!(md.starts_with("# raft-lab bench"), "{md}");
    let header = md
        .lines()
        .position(|l| l.starts_with("| op | clients | system |"))
        .expect("the table's header");
    let rows: Vec<&str> = md
        .lines()
        .skip(header + 2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(rows.len(), cells, "{md}");
    let columns = md.lines().nth(header).map(|l| l.matches('|').count());
    assert!(
        rows.iter().all(|r| Some(r.matches('|').count()) == columns),
        "{md}"
    );
    for system in &systems {
        assert!(md.contains(&format!("**{}**", system.name())), "{md}");
    }
    if systems.len() == 2 {
        assert!(md.contains("| raftlab / etcd ops/s |"), "{md}");
    }
    assert!(
        !out.join("clusters").exists()
            || bench
                .cells
                .iter()
                .any(|c| c.errors > 0 || c.leader_changes != Some(0))
    );
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let out = support::results_root("bench-bad").join("out");
    let opts = BenchOptions {
        rounds: 1,
        warmup: Duration::ZERO,
        window: Duration::from_secs(1),
        clients: vec![1, 0],
        ops: vec![BenchOp::Write],
        systems: vec![SystemKind::Raftlab],
        nodes: 3,
        binaries: Binaries {
            raft_node: PathBuf::from("raft-node"),
            etcd: PathBuf::from("etcd"),
            etcd_version: None,
        },
        out: out.clone(),
        quiet: true,
        command: String::new(),
    };
    let err = bench::validate(&opts).expect_err("0 clients");
    assert!(err.to_string().contains("--clients"), "{err}");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    assert!(runtime.block_on(bench::run(&opts)).is_err());
    assert!(!out.exists(), "nothing made for bad input");
}
