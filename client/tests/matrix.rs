//! `raft-lab matrix` end to end, as CI can afford it: the real binary runs the stale-read
//! recipe of `workloads/matrix.toml` for three seeds (8 s each on a real 3-node cluster)
//! with the simulator and raft-model columns, and the test checks `matrix.json`'s shape, that
//! stale-read was detected, and `matrix.md`. Without nftables or root the recipe's
//! partitions become kills (the matrix notes it) and detection is not asserted.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The one matrix folder under `root/matrix/`.
fn matrix_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root.join("matrix"))
        .expect("results/matrix exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one matrix folder: {dirs:?}");
    dirs.into_iter().next().expect("one folder")
}

#[test]
fn matrix_catches_stale_read() {
    support::ensure_raft_node();
    let partitions = client::net::nft::Nft::new().is_ok();
    if !partitions {
        eprintln!("nftables unavailable: the recipe's partitions become kills");
    }
    let root = support::results_root("matrix");
    let results = root.join("results");
    // The shipped recipe (isolate.toml: one register, read-heavy, the leader cut off every
    // 3 s) catches the bug in every run; three seeds with at least one detection leave room
    // for a slow machine.
    let output = Command::new(env!("CARGO_BIN_EXE_raft-lab"))
        .current_dir(workspace())
        .args(["matrix", "--seeds", "3", "--bugs", "stale-read"])
        .args(["--time-limit", "8", "--no-correct", "--quiet"])
        .arg("--results")
        .arg(&results)
        .output()
        .expect("raft-lab runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    // No correct runs and nothing failed to run: 0.
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    let dir = matrix_dir(&results);
    let text = std::fs::read_to_string(dir.join("matrix.json")).expect("matrix.json");
    let m: Value = serde_json::from_str(&text).expect("matrix.json is JSON");
    assert_eq!(m["seeds"], 3);
    assert_eq!(m["exit_code"], 0);
    assert_eq!(m["interrupted"], false);
    assert_eq!(m["correct"].as_array().map(Vec::len), Some(0));
    assert!(m["command"].as_str().unwrap_or_default().contains("matrix"));
    assert!(m["finished_at"].is_string());
    let bugs = m["bugs"].as_array().expect("bugs");
    assert_eq!(bugs.len(), 1);
    let row = &bugs[0];
    assert_eq!(row["bug"], "stale-read");
    assert_eq!(row["recipe"], "file");
    assert_eq!(row["workload"], "isolate.toml");
    assert!(row["why"].as_str().is_some_and(|w| !w.is_empty()));
    let runs = row["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3);
    for (seed, run) in (1..).zip(runs) {
        assert_eq!(run["seed"], seed);
        let run_dir = PathBuf::from(run["run_dir"].as_str().expect("run_dir"));
        assert!(
            run_dir.starts_with(dir.join("runs")),
            "runs go under the matrix folder: {}",
            run_dir.display()
        );
        assert!(run_dir.join("history.jsonl").is_file());
        assert!(run_dir.join("results.json").is_file());
        assert!(run["ok"].as_u64().unwrap_or(0) > 0, "{run}");
    }

    // The model columns: the simulator's schedule for stale-read and its stateright hunt.
    let sim = &row["simulator"];
    assert_eq!(sim["seeds"], 20);
    assert!(sim["caught"].as_u64().unwrap_or(0) > 0, "{sim}");
    assert_eq!(row["hunted"], true);
    assert_eq!(row["raft_model"]["property"], "Linearizable");

    if partitions {
        let detected: Vec<&Value> = runs.iter().filter(|r| r["verdict"] == "invalid").collect();
        assert!(!detected.is_empty(), "{row}");
        assert_eq!(row["detected"], detected.len());
        assert!(row["median_detection_s"]
            .as_f64()
            .is_some_and(|s| (0.0..60.0).contains(&s)));
        assert!(row["median_found_online_s"].as_f64().is_some(), "{row}");
        for run in &detected {
            assert!(run["detection_s"].as_f64().is_some(), "{run}");
            // Found while running, which cannot be before the anomaly shows.
            assert!(
                run["found_online_s"].as_f64() >= run["detection_s"].as_f64(),
                "{run}"
            );
            // Bug runs stop at the first anomaly found while running.
            let run_dir = PathBuf::from(run["run_dir"].as_str().expect("run_dir"));
            let summary: Value = serde_json::from_str(
                &std::fs::read_to_string(run_dir.join("results.json")).expect("results.json"),
            )
            .expect("results.json is JSON");
            assert_eq!(summary["online"]["stopped_early"], true, "{summary}");
        }
        assert!(
            row["anomaly_kinds"]
                .as_array()
                .is_some_and(|k| !k.is_empty()),
            "{row}"
        );
        assert!(
            stdout.contains(&format!("{}/3", detected.len())),
            "{stdout}"
        );
    } else {
        assert!(row["nemesis_note"].is_string(), "{row}");
    }

    let md = std::fs::read_to_string(dir.join("matrix.md")).expect("matrix.md");
    assert!(
        md.contains("| bug | workload | nemesis | detected |"),
        "{md}"
    );
    assert!(md.contains("`stale-read`"), "{md}");
    assert!(md.contains("raft-lab matrix --seeds 3"), "{md}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Bad input is refused before anything starts, with exit code 3 and one line naming the
/// flag or the file.
#[test]
fn bad_input_is_refused_up_front() {
    let root = support::results_root("matrix-bad");
    let recipes = root.join("recipes.toml");
    std::fs::write(
        &recipes,
        "[bug.stale-read]\nworkload = \"missing.toml\"\nnemesis = [\"kill\"]\nwhy = \"x\"\n",
    )
    .expect("write recipes");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bugs".into(), "eat-data".into()], "--bugs"),
        (vec!["--seeds".into(), "0".into()], "--seeds"),
        (vec!["--time-limit=0".into()], "--time-limit"),
        (
            vec!["--recipes".into(), recipes.display().to_string()],
            "recipes.toml:2: bug.stale-read.workload",
        ),
        (
            vec![
                "--recipes".into(),
                root.join("nope.toml").display().to_string(),
            ],
            "nope.toml",
        ),
    ];
    for (args, needle) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_raft-lab"))
            .current_dir(workspace())
            .arg("matrix")
            .args(&args)
            .arg("--results")
            .arg(root.join("results"))
            .output()
            .expect("raft-lab runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    assert!(
        !root.join("results").exists(),
        "no matrix folder for refused input"
    );
    let _ = std::fs::remove_dir_all(&root);
}
