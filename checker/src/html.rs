//! A self-contained HTML page (inline SVG, no network, no script) showing each anomaly.
//!
//! For every failing key it draws the ops around the failing one as bars per process on the
//! real-time axis (event order), numbers the ops of the longest linearizable prefix in their
//! linearization order, and marks the op that cannot be placed. Only the anomaly's bounded
//! window is drawn, so the page stays small whatever the history's size.

use crate::check::{Report, Verdict};
use crate::explain::Anomaly;
use crate::history::{Op, Status};
use std::collections::BTreeMap;
use std::fmt::Write;

const ROW_HEIGHT: usize = 34;
const LEFT_MARGIN: usize = 110;
const WIDTH: usize = 1100;

/// The page for `report`; `title` names the history file.
pub fn render(report: &Report, title: &str) -> String {
    let mut page = String::new();
    let verdict = match report.valid {
        Verdict::Valid => ("valid", "linearizable"),
        Verdict::Invalid => ("invalid", "NOT linearizable"),
        Verdict::Unknown => ("unknown", "unknown (the check gave up)"),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raft-check: {title}</title></head><body>\
         <h1>{title}</h1><p class=\"verdict {}\">{}</p>\
         <p>model {} &middot; {} ops &middot; {} keys &middot; {:.3} s</p>",
        verdict.0,
        verdict.1,
        report.model,
        report.ops,
        report.keys,
        report.seconds,
        title = escape(title),
    );
    for key in &report.unknown_keys {
        let _ = write!(
            page,
            "<p>key {} gave up: {}</p>",
            escape(&key.key.to_string()),
            escape(key.gave_up.as_deref().unwrap_or("?"))
        );
    }
    page.push_str(&anomalies_fragment(report));
    page.push_str("</body></html>\n");
    page
}

/// The anomaly sections alone (with their styles), for embedding in another page such as a
/// lab run's report.
pub fn anomalies_fragment(report: &Report) -> String {
    let mut fragment = format!("<style>{STYLE}</style>");
    for anomaly in &report.anomalies {
        render_anomaly(&mut fragment, anomaly);
    }
    fragment
}

fn render_anomaly(page: &mut String, anomaly: &Anomaly) {
    let _ = write!(
        page,
        "<section><h2>key {}</h2><p>{}</p>",
        escape(&anomaly.key.to_string()),
        escape(&anomaly.message)
    );
    if anomaly.window.is_empty() {
        page.push_str("</section>");
        return;
    }
    page.push_str(
        "<p class=\"legend\"><span class=\"ok\">ok</span> <span class=\"fail\">fail</span> \
         <span class=\"info\">info / pending</span> <span class=\"bad\">cannot be placed</span> \
         &middot; numbers: the longest linearizable prefix, in linearization order \
         (only its ops inside this window)</p>",
    );
    render_timeline(page, anomaly);
    page.push_str("</section>");
}

/// The window's ops as bars, one row per process, x = rank of the event position.
fn render_timeline(page: &mut String, anomaly: &Anomaly) {
    let ops = &anomaly.window;
    let mut positions: Vec<usize> = ops
        .iter()
        .flat_map(|op| std::iter::once(op.invoke).chain(op.complete))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let slots = positions.len() + 1;
    let x = |position: usize| {
        let rank = positions.partition_point(|&p| p < position);
        LEFT_MARGIN + rank * (WIDTH - LEFT_MARGIN) / slots
    };
    let rows: BTreeMap<u64, usize> = ops
        .iter()
        .map(|op| op.process)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(row, process)| (process, row))
        .collect();
    let height = rows.len() * ROW_HEIGHT + 20;
    let _ = write!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\">"
    );
    for (process, row) in &rows {
        let _ = write!(
            page,
            "<text x=\"4\" y=\"{}\">process {process}</text>",
            row * ROW_HEIGHT + 22
        );
    }
    let rank_in_order: BTreeMap<usize, usize> = anomaly
        .window_order
        .iter()
        .enumerate()
        .map(|(rank, &i)| (i, rank + 1))
        .collect();
    for (i, op) in ops.iter().enumerate() {
        let row = rows.get(&op.process).copied().unwrap_or(0);
        let x0 = x(op.invoke);
        let x1 = op.complete.map(x).unwrap_or(WIDTH - 4).max(x0 + 6);
        let y = row * ROW_HEIGHT + 8;
        let class = if anomaly.window_failing == Some(i) {
            "bad"
        } else {
            match op.status {
                Status::Ok => "ok",
                Status::Fail => "fail",
                Status::Info => "info",
            }
        };
        let _ = write!(
            page,
            "<g class=\"{class}\"><title>{}</title><rect x=\"{x0}\" y=\"{y}\" width=\"{}\" \
             height=\"20\" rx=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>",
            escape(&tooltip(op)),
            x1 - x0,
            x0 + 3,
            y + 14,
            escape(&op.action.to_string()),
        );
        if let Some(rank) = rank_in_order.get(&i) {
            let _ = write!(
                page,
                "<text class=\"rank\" x=\"{}\" y=\"{}\">{rank}</text>",
                x1.saturating_sub(14),
                y - 1
            );
        }
        page.push_str("</g>");
    }
    page.push_str("</svg>");
}

fn tooltip(op: &Op) -> String {
    let status = match op.status {
        Status::Ok => "ok",
        Status::Fail => "fail",
        Status::Info => "info",
    };
    format!(
        "{} ({status}) by process {}, index {}, lines {}-{}",
        op.action,
        op.process,
        op.index,
        op.invoke_line,
        op.complete_line
            .map(|l| l.to_string())
            .unwrap_or_else(|| "never completed".into()),
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
.verdict{font-size:2em;font-weight:bold}.verdict.valid{color:#1a7f37}\
.verdict.invalid{color:#c62828}.verdict.unknown{color:#b26a00}\
svg text{font-size:11px;font-family:monospace}\
g.ok rect{fill:#a5d6a7;stroke:#2e7d32}g.fail rect{fill:#e0e0e0;stroke:#757575}\
g.info rect{fill:#ffe0b2;stroke:#ef6c00;stroke-dasharray:4 2}\
g.bad rect{fill:#ef9a9a;stroke:#b71c1c;stroke-width:3}\
text.rank{fill:#1565c0;font-weight:bold}\
.legend span{padding:0 .4em;border-radius:3px}.legend .ok{background:#a5d6a7}\
.legend .fail{background:#e0e0e0}.legend .info{background:#ffe0b2}.legend .bad{background:#ef9a9a}";
