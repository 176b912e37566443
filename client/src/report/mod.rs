//! `report.html`: one self-contained page (no network, no external script or font) per run,
//! in this order: the summary (the verdict in large type, what ran, counts, throughput,
//! latency, the faults requested and applied), the interactive timeline of every operation
//! ([`timeline`]), the latency and throughput plots ([`plots`], also written as
//! `plots/*.svg`), the nemesis events, and for an invalid run the checker's counterexample
//! view.

pub mod plots;
pub mod results;
pub mod serve;
pub mod spans;
pub mod stats;
pub mod timeline;

use crate::history::Record;
use crate::report::results::RunSummary;
use checker::html::escape;
use plots::Plots;
use spans::{FaultSpan, OpSpan};
use std::fmt::Write as _;
use std::path::Path;

/// Writes `dir/report.html` and `dir/plots/*.svg` for the run whose history is `events`.
pub fn write(
    dir: &Path,
    summary: &RunSummary,
    report: &checker::Report,
    events: &[Record],
) -> std::io::Result<()> {
    let ops = spans::op_spans(events);
    let faults = spans::fault_spans(events);
    let plots = plots::render(&ops, &faults);
    plots::write(dir, &plots)?;
    crate::control::files::write_atomically(
        &dir.join("report.html"),
        &page(summary, report, &ops, &faults, &plots),
    )
}

/// The page for the run whose history is `events`.
pub fn render(
    summary: &RunSummary,
    report: &checker::Report,
    events: &[Record],
    plots: &Plots,
) -> String {
    page(
        summary,
        report,
        &spans::op_spans(events),
        &spans::fault_spans(events),
        plots,
    )
}

fn page(
    summary: &RunSummary,
    report: &checker::Report,
    ops: &[OpSpan],
    faults: &[FaultSpan],
    plots: &Plots,
) -> String {
    let mut page = String::new();
    let class = crate::report::results::verdict_name(summary.valid);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raftlab: {workload} ({class})</title><style>{STYLE}{timeline_style}</style>\
         </head><body><section id=\"summary\"><h1>{workload}</h1>\
         <p class=\"verdict {class}\">{verdict}</p>",
        workload = escape(&summary.workload),
        verdict = escape(&summary.verdict),
        timeline_style = timeline::STYLE,
    );
    if let Some(description) = &summary.description {
        let _ = write!(page, "<p>{}</p>", escape(description));
    }
    if !report.anomalies.is_empty() {
        page.push_str(
            "<p class=\"broke\"><a href=\"#anomalies\">the operation that broke \
             linearizability</a></p>",
        );
    }
    page.push_str("<table class=\"facts\">");
    let facts = [
        (
            "workload",
            format!("{} ({})", summary.workload, summary.workload_file),
        ),
        ("started", summary.started_at.clone()),
        ("cluster", summary.cluster.clone()),
        ("nodes", summary.nodes.to_string()),
        ("concurrency", summary.concurrency.to_string()),
        ("seed", summary.seed.to_string()),
        (
            "duration",
            format!(
                "{:.1} s of workload, {:.1} s recovery",
                summary.workload_s, summary.recovery_time_s
            ),
        ),
        (
            "throughput",
            format!(
                "{:.0} ok ops/s ({:.0} completed/s)",
                summary.throughput.ok_per_s, summary.throughput.completed_per_s
            ),
        ),
        (
            "bug switched on",
            summary.bug.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "git revision",
            summary
                .git_revision
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "checker",
            format!(
                "{} ops, {} keys, {:.3} s",
                summary.check.ops, summary.check.keys, summary.check.seconds
            ),
        ),
        ("checked while running", online_fact(&summary.online)),
    ];
    for (name, value) in facts {
        let _ = write!(page, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table>");
    for error in &summary.errors {
        let _ = write!(page, "<p class=\"warning\">{}</p>", escape(error));
    }
    operations_table(&mut page, summary);
    coverage(&mut page, &summary.nemesis);
    page.push_str("</section>");

    page.push_str(&timeline::section(ops, faults));

    let _ = write!(
        page,
        "<section id=\"plots\"><h2>Plots</h2>\
         <h3>Latency (every operation)</h3>{}\
         <h3>Latency quantiles</h3>{}\
         <h3>Throughput</h3>{}</section>",
        plots.latency_raw, plots.latency_quantiles, plots.rate
    );

    nemesis_events(&mut page, &summary.nemesis);
    if !report.anomalies.is_empty() {
        page.push_str("<section><h2 id=\"anomalies\">Anomalies</h2>");
        page.push_str(&checker::html::anomalies_fragment(report));
        page.push_str("</section>");
    }
    page.push_str("</body></html>\n");
    page
}

/// What the check while the run went found, in one line.
fn online_fact(online: &crate::report::results::OnlineSummary) -> String {
    if !online.enabled {
        return "off (--no-online-check): checked at the end only".into();
    }
    let work = format!(
        "{} rounds, {} key checks, {:.1} s",
        online.rounds, online.key_checks, online.check_s
    );
    match (online.first_anomaly_s, online.stopped_early) {
        (Some(at), true) => format!(
            "first anomaly found {at:.1} s into the workload; the run stopped there \
             (--stop-on-anomaly) ({work})"
        ),
        (Some(at), false) => format!("first anomaly found {at:.1} s into the workload ({work})"),
        (None, _) => format!("no anomaly found while running ({work})"),
    }
}

/// Counts per `f` and outcome, with the latency quantiles of `ok` operations.
fn operations_table(page: &mut String, summary: &RunSummary) {
    page.push_str(
        "<h2>Operations</h2><table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th>\
         <th>total</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th>\
         <th>max ms</th></tr>",
    );
    for (f, counts) in &summary.counts {
        let q = summary.latency_ms.get(f).copied().unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(f),
            counts.ok,
            counts.fail,
            counts.info,
            counts.total(),
            q.p50,
            q.p90,
            q.p99,
            q.p999,
            q.max
        );
    }
    page.push_str("</table>");
}

/// Faults requested against faults applied.
fn coverage(page: &mut String, nemesis: &crate::report::results::NemesisCoverage) {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let applied = nemesis
        .applied
        .iter()
        .map(|(kind, n)| format!("{kind} \u{d7}{n}"))
        .collect();
    let _ = write!(
        page,
        "<h2>Fault coverage</h2><table class=\"facts\">\
         <tr><th>requested</th><td>{}</td></tr>\
         <tr><th>applied</th><td>{}</td></tr>\
         <tr><th>never applied</th><td{}>{}</td></tr></table>",
        escape(&list(nemesis.requested.clone())),
        escape(&list(applied)),
        if nemesis.never_applied.is_empty() {
            ""
        } else {
            " class=\"warning\""
        },
        escape(&list(nemesis.never_applied.clone())),
    );
    for warning in &nemesis.warnings {
        let _ = write!(page, "<p class=\"warning\">{}</p>", escape(warning));
    }
}

/// Every nemesis event, in order.
fn nemesis_events(page: &mut String, nemesis: &crate::report::results::NemesisCoverage) {
    page.push_str(
        "<section id=\"faults\"><h2>Faults</h2>\
         <table><tr><th>time s</th><th>action</th><th>details</th></tr>",
    );
    for event in &nemesis.events {
        let _ = write!(
            page,
            "<tr><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            event.time_s,
            escape(&event.f),
            escape(&event.value.to_string())
        );
    }
    if nemesis.events.is_empty() {
        page.push_str("<tr><td colspan=\"3\">no fault was applied</td></tr>");
    }
    page.push_str("</table></section>");
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
.verdict{font-size:2.5em;font-weight:bold;margin:.2em 0}.verdict.valid{color:#1a7f37}\
.verdict.invalid{color:#c62828}.verdict.unknown{color:#b26a00}\
.broke a{color:#c62828;font-weight:bold}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;text-align:left;\
border-bottom:1px solid #ddd}.facts th{color:#555;font-weight:normal}\
.warning{color:#b26a00;font-weight:bold}section{margin-bottom:2em}";
