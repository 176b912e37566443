//! The run report built from a history: a small committed history (`data/small-history.jsonl`:
//! the page's sections in order, every operation in the timeline's data, HTML-special values
//! escaped) and a synthetic 100,000-operation history (the page's size stays bounded). Both
//! reports are left in `target/report-fixtures/{small,large}/` for the browser test.

use checker::history::jsonl::{read_records, write_records};
use client::history::{EventType, Record, Who};
use client::lab::summary::{summarize, SummaryInput};
use client::lab::workload::{Overrides, Workload};
use client::report::results::RunSummary;
use client::report::spans::{fault_spans, op_spans, OpSpan};
use client::report::{plots, render, write};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

/// `target/report-fixtures/NAME/`, created afresh.
fn fixture_dir(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .unwrap_or(tmp)
        .join("report-fixtures")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fixture folder");
    dir
}

/// The checker's verdict on `events`, as `raft-lab run` gets it.
fn check(events: &[Record]) -> checker::Report {
    let ops = checker::history::parse(
        write_records(events).as_bytes(),
        checker::history::Format::Jsonl,
    )
    .expect("the history parses");
    let options = checker::CheckOptions::new(checker::ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    checker::check(ops, &options).expect("the history checks")
}

/// `results.json` for `events` as if `workloads/ci.toml` had produced them.
fn summary(events: &[Record], report: &checker::Report, run_dir: &Path) -> RunSummary {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/ci.toml");
    let workload = Workload::load(&path, &Overrides::default()).expect("workloads/ci.toml");
    // The kind of each fault applied, as the nemesis reports them.
    let applied = events
        .iter()
        .filter(|e| e.who == Who::Nemesis && e.value.get("error").is_none())
        .filter_map(|e| match e.f.as_str() {
            "start-partition" => e.value["nemesis"].as_str().map(String::from),
            "kill" | "pause" => Some(e.f.clone()),
            _ => None,
        })
        .collect();
    summarize(
        SummaryInput {
            workload: &workload,
            seed: 42,
            started_at: "2025-01-01T12:00:00Z".into(),
            run_dir,
            cluster: "local".into(),
            workload_start_ns: 0,
            workload_s: events.last().map_or(0.0, |e| e.time as f64 / 1e9),
            applied,
            nemesis_report: Json::Null,
            errors: Vec::new(),
            online: Default::default(),
        },
        events,
        report,
    )
}

/// The timeline's embedded JSON.
fn timeline_data(page: &str) -> &str {
    let open = "<script type=\"application/json\" id=\"timeline-data\">";
    let start = page.find(open).expect("the timeline data block") + open.len();
    let len = page[start..].find("</script>").expect("its end");
    &page[start..start + len]
}

/// The embedded operations, decoded: (history index, process, start µs, end µs or -1, f, key
/// text, outcome, request text, response text).
type Row = (i64, u64, i64, i64, String, String, String, String, String);

fn decode(data: &Json) -> Vec<Row> {
    let column = |name: &str| data["ops"][name].as_array().expect("a column").clone();
    let table = |name: &str, at: &Json| data[name][at.as_u64().expect("an index") as usize].clone();
    let text = |v: &Json| v.as_str().expect("text").to_string();
    let [i, s, d, p, o, f, k, q, r] = ["i", "s", "d", "p", "o", "f", "k", "q", "r"].map(column);
    let (mut index, mut start) = (0, 0);
    (0..p.len())
        .map(|n| {
            index += i[n].as_i64().expect("an index delta");
            start += s[n].as_i64().expect("a start delta");
            let d = d[n].as_i64().expect("a duration");
            (
                index,
                table("processes", &p[n]).as_u64().expect("a process"),
                start,
                if d < 0 { -1 } else { start + d },
                text(&table("fs", &f[n])),
                text(&table("keys", &k[n])),
                text(&table("outcomes", &o[n])),
                text(&q[n]),
                text(&r[n]),
            )
        })
        .collect()
}

/// What the timeline should hold for `op`.
fn expected(op: &OpSpan) -> Row {
    let micros = |ns: u64| (ns / 1000) as i64;
    let text = |v: &Json| {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    };
    (
        op.index as i64,
        op.process,
        micros(op.start_ns),
        op.end_ns.map_or(-1, micros),
        op.f.clone(),
        op.key.to_string(),
        op.outcome.name().to_string(),
        text(&op.request),
        text(&op.response),
    )
}

#[test]
fn small_history_report() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/small-history.jsonl");
    let text = std::fs::read_to_string(&path).expect("the small history");
    let events = read_records(&text).expect("the small history reads");
    let report = check(&events);
    assert_eq!(
        report.valid,
        checker::Verdict::Invalid,
        "it holds a stale read"
    );
    let dir = fixture_dir("small");
    let summary = summary(&events, &report, &dir);
    write(&dir, &summary, &report, &events).expect("write the report");
    let page = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    println!("small report: {}", dir.join("report.html").display());

    let ops = op_spans(&events);
    let plots = plots::render(&ops, &fault_spans(&events));
    assert_eq!(page, render(&summary, &report, &events, &plots));
    for name in ["latency-raw.svg", "latency-quantiles.svg", "rate.svg"] {
        assert!(dir.join("plots").join(name).is_file(), "plots/{name}");
    }

    // The sections, in order.
    let at = |needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("the page has {needle}"))
    };
    let order = [
        at("<p class=\"verdict invalid\">invalid</p>"),
        at("<a href=\"#anomalies\">the operation that broke linearizability</a>"),
        at("<h2>Fault coverage</h2>"),
        at("<h2>Timeline</h2>"),
        at("<h3>Latency (every operation)</h3>"),
        at("<h3>Latency quantiles</h3>"),
        at("<h3>Throughput</h3>"),
        at("<h2>Faults</h2>"),
        at("id=\"anomalies\""),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(page.contains("isolate-leader \u{d7}1, kill \u{d7}1"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));

    // Every operation is in the timeline, as it is in the history.
    let data: Json = serde_json::from_str(timeline_data(&page)).expect("the data is JSON");
    let mut want: Vec<Row> = ops.iter().map(expected).collect();
    want.sort_by_key(|row| (row.2, row.0));
    assert_eq!(decode(&data), want);
    assert_eq!(data["total"], json!(ops.len()));
    assert_eq!(data["density"], Json::Null);
    let labels: Vec<&str> = data["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .filter_map(|f| f["label"].as_str())
        .collect();
    assert_eq!(labels, ["[2] | [1 3]", "kill node 3"]);

    // A value full of HTML specials never reaches the page raw.
    let evil = "<b>&amp;\"quoted\" 'x'</b></script><!--";
    assert!(ops.iter().any(|op| op.request == json!(evil)));
    assert!(!page.contains("<b>&amp;"));
    assert!(!timeline_data(&page).contains('<'));
    assert_eq!(page.matches("<script").count(), 2, "the data and the code");
    assert_eq!(page.matches("</script>").count(), 2);
}

/// A deterministic xorshift64* generator: the large history is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `ops` operations by 30 processes over about a minute, with some failures, timeouts and
/// faults: a history shaped like a `raft-lab run` of workloads/kv.toml.
fn synthetic_history(ops: usize) -> Vec<Record> {
    const CONCURRENCY: u64 = 30;
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    // (time, who, kind, f, key, value), before indexing.
    let mut timed: Vec<(u64, Who, EventType, &str, Json, Json)> = Vec::new();
    let mut clock = vec![0u64; CONCURRENCY as usize];
    let mut process: Vec<u64> = (0..CONCURRENCY).collect();
    let mut latest = 0u64;
    for n in 0..ops {
        let slot = n % CONCURRENCY as usize;
        let start = clock[slot] + 1_000_000 + rng.below(30_000_000);
        let latency = 500_000 + rng.below(4_000_000) + rng.below(8) * rng.below(5_000_000);
        let key = json!(format!("k{}", n / 60));
        let (f, request, response) = match rng.below(4) {
            0 => ("write", json!(n), json!(n)),
            1 => (
                "cas",
                json!([n.saturating_sub(1), n]),
                json!([n.saturating_sub(1), n]),
            ),
            _ => ("read", Json::Null, json!(rng.below(1000))),
        };
        let outcome = match rng.below(100) {
            0 => EventType::Info,
            1..=3 => EventType::Fail,
            _ => EventType::Ok,
        };
        let who = Who::Process(process[slot]);
        timed.push((start, who, EventType::Invoke, f, key.clone(), request));
        timed.push((start + latency, who, outcome, f, key, response));
        clock[slot] = start + latency;
        latest = latest.max(start + latency);
        if outcome == EventType::Info {
            process[slot] += CONCURRENCY;
        }
    }
    // A fault every 5 s, lasting 2 s.
    for (n, at) in (1..latest / 5_000_000_000)
        .map(|k| k * 5_000_000_000)
        .enumerate()
    {
        let node = json!({ "node": n % 5 + 1 });
        let partition = json!({ "description": "[1 2] | [3 4 5]", "nemesis": "partition-halves" });
        let (start, stop, value) = match n % 3 {
            0 => ("start-partition", "stop-partition", partition),
            1 => ("kill", "start", node),
            _ => ("pause", "resume", node),
        };
        timed.push((
            at,
            Who::Nemesis,
            EventType::Info,
            start,
            Json::Null,
            value.clone(),
        ));
        timed.push((
            at + 2_000_000_000,
            Who::Nemesis,
            EventType::Info,
            stop,
            Json::Null,
            value,
        ));
    }
    timed.sort_by_key(|e| e.0);
    timed
        .into_iter()
        .zip(0..)
        .map(|((time, who, kind, f, key, value), index)| Record {
            index,
            time,
            who,
            kind,
            f: f.into(),
            key,
            value,
        })
        .collect()
}

#[test]
fn large_history_report_stays_small() {
    const OPS: usize = 100_000;
    let events = synthetic_history(OPS);
    // Checking is not what this test is about: a valid verdict is assumed.
    let report = checker::Report {
        valid: checker::Verdict::Valid,
        model: "cas-register",
        ops: OPS,
        keys: OPS / 60,
        seconds: 0.0,
        anomalies: Vec::new(),
        worst_keys: Vec::new(),
        unknown_keys: Vec::new(),
    };
    let dir = fixture_dir("large");
    let summary = summary(&events, &report, &dir);
    write(&dir, &summary, &report, &events).expect("write the report");
    let page = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    let data = timeline_data(&page);
    println!("large report: {}", dir.join("report.html").display());
    println!(
        "{OPS} ops: report.html {} bytes ({:.1} bytes/op), timeline data {} bytes ({:.1} bytes/op)",
        page.len(),
        page.len() as f64 / OPS as f64,
        data.len(),
        data.len() as f64 / OPS as f64,
    );
    assert!(page.len() < 15_000_000, "{} bytes", page.len());
    assert!(
        data.len() < 80 * OPS,
        "{} bytes of timeline data",
        data.len()
    );
    let data: Json = serde_json::from_str(data).expect("the data is JSON");
    assert_eq!(decode(&data).len(), OPS);
    assert_eq!(data["density"], Json::Null, "100,000 ops are under the cap");
}

/// The headless browser to load pages with: `$CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Loads `url` in headless Chromium: returns the DOM after the scripts ran and every
/// console message (this page logs nothing, so any message is an error), and leaves a
/// screenshot at `screenshot`.
fn load_in_browser(browser: &Path, url: &str, screenshot: &Path) -> (String, Vec<String>) {
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--window-size=1400,2400",
    ];
    let dump = std::process::Command::new(browser)
        .args(common)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&dump.stderr);
    let console = stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(String::from)
        .collect();
    let shot = std::process::Command::new(browser)
        .args(common)
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .expect("run chromium for the screenshot");
    assert!(
        screenshot.is_file(),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    (String::from_utf8_lossy(&dump.stdout).into_owned(), console)
}

/// A real browser loads a report (its timeline draws, no console errors) and `raft-lab
/// serve`'s run list; screenshots go to `target/report-fixtures/browser/` (out of git).
/// Skipped where Chromium is absent unless `RAFTLAB_REQUIRE_BROWSER` is set (CI sets it).
#[test]
fn a_browser_loads_the_report_and_the_run_list() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("RAFTLAB_REQUIRE_BROWSER").is_none(),
            "RAFTLAB_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/small-history.jsonl");
    let text = std::fs::read_to_string(&path).expect("the small history");
    let events = read_records(&text).expect("the small history reads");
    let report = check(&events);
    let root = fixture_dir("browser");
    let run = root.join("results/ci/20250101T120000Z");
    std::fs::create_dir_all(&run).expect("create the run folder");
    let summary = summary(&events, &report, &run);
    write(&run, &summary, &report, &events).expect("write the report");
    client::report::results::write_summary(&run, &summary).expect("write results.json");

    let report_url = format!("file://{}", run.join("report.html").display());
    let (dom, console) = load_in_browser(&browser, &report_url, &root.join("report.png"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("data-timeline=\"ready\""),
        "the timeline did not draw"
    );

    let server = client::report::serve::Server::bind(
        &root.join("results"),
        "127.0.0.1:0".parse().expect("an address"),
    )
    .expect("serve the results");
    let url = server.url();
    let stopper = server.stopper();
    let serving = std::thread::spawn(move || server.run());
    let (dom, console) = load_in_browser(&browser, &url, &root.join("runs.png"));
    stopper.stop();
    let _ = serving.join();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("/runs/ci/20250101T120000Z/report.html"),
        "the run list does not link the report: {dom}"
    );
    println!("screenshots: {}", root.display());
}
