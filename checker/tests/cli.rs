//! `raft-check` as users run it: verdicts, exit codes, JSON, HTML, and bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn raft_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raft-check"))
        .args(args)
        .output()
        .expect("raft-check runs")
}

/// A history written to a temporary file with the given extension.
fn temp_history(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raft-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    path
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

#[test]
fn valid_histories_exit_0_in_both_formats() {
    for name in [
        "valid-register.jsonl",
        "valid-register.edn",
        "independent-keys.jsonl",
        "independent-keys.edn",
    ] {
        let out = raft_check(&[data(name).to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let report = json(&out);
        assert_eq!(report["valid"], true, "{name}");
        assert_eq!(report["anomalies"].as_array().map(Vec::len), Some(0));
    }
}

#[test]
fn stale_read_exits_1_and_names_the_read_in_both_formats() {
    for name in ["stale-read.jsonl", "stale-read.edn"] {
        let out = raft_check(&[data(name).to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let report = json(&out);
        assert_eq!(report["valid"], false);
        assert_eq!(report["ops"], 3);
        assert_eq!(report["keys"], 1);
        let anomaly = &report["anomalies"][0];
        assert_eq!(anomaly["op"]["f"], "read");
        assert_eq!(anomaly["op"]["value"], 1);
        assert_eq!(anomaly["op"]["process"], 2);
        // The two writes are the longest linearizable prefix; the register then holds 2.
        assert_eq!(anomaly["prefix_ops"], 2);
        assert_eq!(anomaly["state"], "2");
    }
}

#[test]
fn human_summary_states_the_verdict() {
    let out = raft_check(&[data("stale-read.jsonl").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("INVALID"), "{text}");
    assert!(text.contains("read 1 by process 2"), "{text}");
}

#[test]
fn html_page_is_self_contained_and_marks_the_failing_op() {
    let page = std::env::temp_dir().join(format!("raft-check-{}.html", std::process::id()));
    let out = raft_check(&[
        data("stale-read.jsonl").to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.contains("NOT linearizable"));
    assert!(html.contains("class=\"bad\""), "the failing op is marked");
    for fetch in ["src=", "href=", "<link", "url("] {
        assert!(
            !html.contains(fetch),
            "the page must not load anything: {fetch}"
        );
    }
}

#[test]
fn html_stays_small_for_a_huge_invalid_history() {
    let spec = checker::synth::SynthSpec {
        seed: 7,
        keys: 1,
        ops_per_key: 100_000,
        processes_per_key: 10,
        anomaly: Some(checker::synth::Anomaly::StaleRead),
        ..Default::default()
    };
    let history = checker::synth::to_jsonl(&checker::synth::generate(&spec));
    let path = temp_history("huge.jsonl", &history);
    let page = path.with_extension("html");
    let out = raft_check(&[path.to_str().unwrap(), "--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let size = std::fs::metadata(&page).expect("page written").len();
    assert!(size < 200_000, "report is {size} bytes for 100k ops");
}

#[test]
fn mutex_model() {
    let held_twice = "\
{\"process\":0,\"type\":\"invoke\",\"f\":\"acquire\",\"value\":null}
{\"process\":0,\"type\":\"ok\",\"f\":\"acquire\",\"value\":null}
{\"process\":1,\"type\":\"invoke\",\"f\":\"acquire\",\"value\":null}
{\"process\":1,\"type\":\"ok\",\"f\":\"acquire\",\"value\":null}
";
    let path = temp_history("mutex.jsonl", held_twice);
    let out = raft_check(&[path.to_str().unwrap(), "--model", "mutex"]);
    assert_eq!(out.status.code(), Some(1));
    // The same ops under the register model are a usage error naming the line.
    let out = raft_check(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[test]
fn initial_value_flag() {
    let read_zero = "\
{\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}
{\"process\":0,\"type\":\"ok\",\"f\":\"read\",\"value\":0}
";
    let path = temp_history("initial.jsonl", read_zero);
    let out = raft_check(&[path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "initial null: reading 0 is impossible"
    );
    let out = raft_check(&[path.to_str().unwrap(), "--initial", "0"]);
    assert_eq!(out.status.code(), Some(0));
    let out = raft_check(&[path.to_str().unwrap(), "--initial", "{"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--initial"));
}

#[test]
fn key_value_store_histories_in_porcupines_format() {
    // Gets, puts and appends on keys named by `:key`, every value starting as "".
    let history = |stale: &str| {
        format!(
            "\
{{:process 0, :type :invoke, :f :put, :key \"a\", :value \"x 0 0 y\"}}
{{:process 0, :type :ok, :f :put, :key \"a\", :value \"x 0 0 y\"}}
{{:process 1, :type :invoke, :f :append, :key \"a\", :value \"x 1 0 y\"}}
{{:process 1, :type :ok, :f :append, :key \"a\", :value \"x 1 0 y\"}}
{{:process 2, :type :invoke, :f :get, :key \"b\", :value nil}}
{{:process 2, :type :ok, :f :get, :key \"b\", :value \"\"}}
{{:process 0, :type :invoke, :f :get, :key \"a\", :value nil}}
{{:process 0, :type :ok, :f :get, :key \"a\", :value \"{stale}\"}}
"
        )
    };
    let valid = temp_history("kv-valid.edn", &history("x 0 0 yx 1 0 y"));
    let out = raft_check(&[valid.to_str().unwrap(), "--initial", "\"\""]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stale = temp_history("kv-stale.edn", &history("x 0 0 y"));
    let out = raft_check(&[stale.to_str().unwrap(), "--initial", "\"\"", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert_eq!(report["anomalies"][0]["key"], "a");
    let key_a = report["worst_keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["key"] == "a"));
    assert_eq!(key_a.map(|k| &k["method"]), Some(&"append".into()));
}

#[test]
fn expired_timeout_is_unknown_exit_2() {
    let out = raft_check(&[
        data("valid-register.jsonl").to_str().unwrap(),
        "--timeout",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["valid"], "unknown");
}

#[test]
fn bad_input_exits_3_with_one_line_naming_the_place() {
    let completion_without_invoke = "{\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1}\n";
    let cases = [
        ("orphan.jsonl", completion_without_invoke, "line 1"),
        ("garbage.jsonl", "{\"process\":\n", "line 1"),
        ("garbage.edn", "[{:process 0 :type :invoke", "line 1"),
        ("history.txt", "", "history.txt"),
    ];
    for (name, text, needle) in cases {
        let path = temp_history(name, text);
        let out = raft_check(&[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = raft_check(&["/nonexistent/history.jsonl"]);
    assert_eq!(out.status.code(), Some(3));
    let out = raft_check(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(3));
}
