//! `report.html`: one self-contained page (no network) per run: the verdict in large type,
//! what ran, counts, throughput, latency, the faults requested and applied, and for an
//! invalid run the checker's counterexample view.

use crate::results::RunSummary;
use checker::html::escape;
use std::fmt::Write as _;
use std::path::Path;

/// Writes `dir/report.html`.
pub fn write(dir: &Path, summary: &RunSummary, report: &checker::Report) -> std::io::Result<()> {
    crate::history::write_durably(&dir.join("report.html"), &render(summary, report))
}

/// The page.
pub fn render(summary: &RunSummary, report: &checker::Report) -> String {
    let mut page = String::new();
    let class = match summary.valid {
        checker::Verdict::Valid => "valid",
        checker::Verdict::Invalid => "invalid",
        checker::Verdict::Unknown => "unknown",
    };
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raftlab: {workload}</title><style>{STYLE}</style></head><body>\
         <h1>{workload}</h1><p class=\"verdict {class}\">{verdict}</p>",
        workload = escape(&summary.workload),
        verdict = escape(&summary.verdict),
    );
    if !report.anomalies.is_empty() {
        page.push_str("<p><a href=\"#anomalies\">the operation that broke linearizability</a></p>");
    }
    page.push_str("<table class=\"facts\">");
    let facts = [
        ("started", summary.started_at.clone()),
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
    ];
    for (name, value) in facts {
        let _ = write!(page, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table>");

    page.push_str(
        "<h2>Operations</h2><table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th>\
         <th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>",
    );
    for (f, counts) in &summary.counts {
        let q = summary.latency_ms.get(f).copied().unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(f),
            counts.ok,
            counts.fail,
            counts.info,
            q.p50,
            q.p90,
            q.p99,
            q.p999,
            q.max
        );
    }
    page.push_str("</table>");

    let nemesis = &summary.nemesis;
    page.push_str("<h2>Faults</h2>");
    let _ = write!(
        page,
        "<p>requested: {}</p>",
        escape(&if nemesis.requested.is_empty() {
            "none".to_string()
        } else {
            nemesis.requested.join(", ")
        })
    );
    for warning in &nemesis.warnings {
        let _ = write!(page, "<p class=\"warning\">{}</p>", escape(warning));
    }
    page.push_str("<table><tr><th>time s</th><th>action</th><th>details</th></tr>");
    for event in &nemesis.events {
        let _ = write!(
            page,
            "<tr><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            event.time_s,
            escape(&event.f),
            escape(&event.value.to_string())
        );
    }
    page.push_str("</table>");

    for error in &summary.errors {
        let _ = write!(page, "<p class=\"warning\">{}</p>", escape(error));
    }
    if !report.anomalies.is_empty() {
        page.push_str("<h2 id=\"anomalies\">Anomalies</h2>");
        page.push_str(&checker::html::anomalies_fragment(report));
    }
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
.verdict{font-size:2.5em;font-weight:bold;margin:.2em 0}.verdict.valid{color:#1a7f37}\
.verdict.invalid{color:#c62828}.verdict.unknown{color:#b26a00}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;text-align:left;\
border-bottom:1px solid #ddd}.facts th{color:#555;font-weight:normal}\
.warning{color:#b26a00;font-weight:bold}";
