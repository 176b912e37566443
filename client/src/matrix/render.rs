//! The matrix as tables: text for the terminal, Markdown (with the command line and the
//! definitions) for `matrix.md` and the README.

use super::{BugRow, Matrix, TARGET};
use crate::lab::workload::DbKind;
use std::fmt::Write as _;

const DASH: &str = "—";

pub(super) fn workload_cell(r: &BugRow) -> String {
    if r.recipe == "default" {
        format!("{} (default)", r.workload)
    } else {
        r.workload.clone()
    }
}

pub(super) fn detected_cell(r: &BugRow) -> String {
    format!("{}/{}", r.detected, r.runs.len())
}

pub(super) fn median_cell(r: &BugRow) -> String {
    r.median_detection_s
        .map_or(DASH.to_string(), |s| format!("{s:.1} s"))
}

pub(super) fn found_online_cell(r: &BugRow) -> String {
    r.median_found_online_s
        .map_or(DASH.to_string(), |s| format!("{s:.1} s"))
}

pub(super) fn anomaly_cell(r: &BugRow) -> String {
    if r.anomaly_kinds.is_empty() {
        DASH.to_string()
    } else {
        r.anomaly_kinds.join(", ")
    }
}

pub(super) fn sim_cell(r: &BugRow) -> String {
    match &r.simulator {
        Some(s) if s.error.is_some() => "error".to_string(),
        Some(s) => format!("{}/{}", s.caught, s.seeds),
        None => DASH.to_string(),
    }
}

pub(super) fn model_cell(r: &BugRow, model_columns: bool) -> String {
    if !model_columns || !r.hunted {
        return DASH.to_string();
    }
    match &r.raft_model {
        Some(m) if m.error.is_some() => "error".to_string(),
        Some(m) => m
            .property
            .clone()
            .unwrap_or_else(|| "not found".to_string()),
        None => DASH.to_string(),
    }
}

pub(super) const BUG_HEADER: [&str; 9] = [
    "bug",
    "workload",
    "nemesis",
    "detected",
    "median time to detection",
    "found online",
    "anomaly",
    "simulator",
    "raft-model",
];

const KNOWN_HEADER: [&str; 7] = [
    "known behaviour",
    "workload",
    "nemesis",
    "invalid",
    "median time to detection",
    "found online",
    "anomaly",
];

/// The known behaviours' rows: the bug table's columns without the model ones.
fn known_cells(m: &Matrix) -> Vec<Vec<String>> {
    m.known
        .iter()
        .map(|r| {
            vec![
                r.bug.clone(),
                r.workload.clone(),
                r.nemesis.join(","),
                detected_cell(r),
                median_cell(r),
                found_online_cell(r),
                anomaly_cell(r),
            ]
        })
        .collect()
}

const CORRECT_HEADER: [&str; 6] = [
    "nemesis", "workload", "valid", "invalid", "unknown", "errors",
];

pub(super) fn bug_cells(m: &Matrix) -> Vec<Vec<String>> {
    m.bugs
        .iter()
        .map(|r| {
            vec![
                r.bug.clone(),
                workload_cell(r),
                r.nemesis.join(","),
                detected_cell(r),
                median_cell(r),
                found_online_cell(r),
                anomaly_cell(r),
                sim_cell(r),
                model_cell(r, m.model_columns),
            ]
        })
        .collect()
}

pub(super) fn correct_cells(m: &Matrix) -> Vec<Vec<String>> {
    m.correct
        .iter()
        .map(|r| {
            if let Some(why) = &r.skipped {
                let skipped = format!("skipped: {why}");
                return vec![
                    r.nemesis.clone(),
                    r.workload.clone(),
                    skipped,
                    String::new(),
                    String::new(),
                    String::new(),
                ];
            }
            let n = r.runs.len();
            vec![
                r.nemesis.clone(),
                r.workload.clone(),
                format!("{}/{n}", r.valid),
                if r.invalid > 0 {
                    format!("{} INVALID", r.invalid)
                } else {
                    "0".to_string()
                },
                r.unknown.to_string(),
                r.errors.to_string(),
            ]
        })
        .collect()
}

/// A plain-text table with aligned columns.
pub(super) fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w - width(cell)));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A Markdown table; `right` marks right-aligned columns.
pub(super) fn markdown_table(header: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        (0..header.len())
            .map(|i| if right.contains(&i) { "---:" } else { "---" })
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

/// The summary lines under the tables.
pub(super) fn summary_lines(m: &Matrix) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(note) = &m.bugs_note {
        lines.push(format!("no catalogue bug ran: {note}"));
    }
    let not_run: Vec<&str> = m
        .bugs
        .iter()
        .filter(|r| r.runs.is_empty())
        .map(|r| r.bug.as_str())
        .collect();
    if !not_run.is_empty() {
        lines.push(format!("not run by the lab: {}", not_run.join(", ")));
    }
    if m.bugs.len() > not_run.len() {
        if m.below_target.is_empty() {
            lines.push(format!(
                "every bug run was detected by the lab in at least {}/{} of its runs",
                TARGET.0, TARGET.1
            ));
        } else {
            let weak: Vec<String> = m
                .bugs
                .iter()
                .filter(|r| m.below_target.contains(&r.bug))
                .map(|r| {
                    let model = model_cell(r, m.model_columns);
                    if model != DASH && model != "not found" && model != "error" {
                        format!("{} {} (raft-model: {model})", r.bug, detected_cell(r))
                    } else {
                        format!("{} {}", r.bug, detected_cell(r))
                    }
                })
                .collect();
            lines.push(format!(
                "detected by the lab in fewer than {}/{} runs: {}",
                TARGET.0,
                TARGET.1,
                weak.join(", ")
            ));
        }
    }
    let weak_known: Vec<String> = m
        .known
        .iter()
        .filter(|r| m.below_target.contains(&r.bug))
        .map(|r| format!("{} {}", r.bug, detected_cell(r)))
        .collect();
    if !weak_known.is_empty() {
        lines.push(format!(
            "known behaviours judged invalid in fewer than {}/{} runs: {}",
            TARGET.0,
            TARGET.1,
            weak_known.join(", ")
        ));
    }
    if !m.correct.is_empty() {
        let invalid: usize = m.correct.iter().map(|r| r.invalid).sum();
        let runs: usize = m.correct.iter().map(|r| r.runs.len()).sum();
        if invalid > 0 {
            lines.push(format!(
                "FALSE ALARMS: {invalid} of {runs} runs of {} were judged NOT linearizable: a real bug to fix (see matrix.json for their folders)",
                correct_name(m)
            ));
        } else {
            lines.push(format!("{}: no anomaly in {runs} runs", correct_name(m)));
        }
    }
    let errors: usize = m
        .bugs
        .iter()
        .chain(&m.known)
        .flat_map(|r| &r.runs)
        .chain(m.correct.iter().flat_map(|r| &r.runs))
        .filter(|r| r.verdict == "error")
        .count();
    if errors > 0 {
        lines.push(format!("{errors} runs failed to run (see matrix.json)"));
    }
    if m.interrupted {
        lines.push("interrupted: the matrix is partial".to_string());
    }
    lines
}

/// The table printed on stdout at the end.
pub fn text(m: &Matrix) -> String {
    let mut out = format!("system under test: {}\n\n", m.system);
    if !m.bugs.is_empty() {
        out.push_str(&text_table(&BUG_HEADER, &bug_cells(m)));
        out.push('\n');
    }
    if !m.known.is_empty() {
        let _ = writeln!(out, "known behaviours (expected invalid):");
        out.push_str(&text_table(&KNOWN_HEADER, &known_cells(m)));
        out.push('\n');
    }
    if !m.correct.is_empty() {
        let _ = writeln!(
            out,
            "{}, each nemesis alone{}:",
            correct_title(m),
            together(m)
        );
        out.push_str(&text_table(&CORRECT_HEADER, &correct_cells(m)));
    }
    out.push('\n');
    for line in summary_lines(m) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "matrix: {}", m.dir);
    out
}

/// `matrix.md`: the tables in Markdown with the command line, the recipes' reasons and the
/// definitions.
pub fn markdown(m: &Matrix) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Bug catalogue matrix: {}\n", m.system);
    let _ = writeln!(
        out,
        "`{}` — {}{}; {} seed(s) per row{}{}.\n",
        m.command,
        m.started_at,
        m.git_revision.as_ref().map_or(String::new(), |g| format!(
            ", git {}",
            &g[..g.len().min(12)]
        )),
        m.seeds,
        m.time_limit_s
            .map_or(String::new(), |t| format!(", {t} s per run")),
        match (m.bugs.is_empty(), m.model_columns) {
            (true, _) => String::new(),
            (false, true) => format!(", simulator {} seeds per bug", m.sim_seeds),
            (false, false) => ", model columns skipped".to_string(),
        }
    );
    if m.interrupted {
        let _ = writeln!(out, "**Interrupted: partial results.**\n");
    }
    if !m.bugs.is_empty() {
        out.push_str(&markdown_table(
            &BUG_HEADER,
            &[3, 4, 5, 7],
            &in_markdown(bug_cells(m)),
        ));
        out.push('\n');
    }
    if !m.known.is_empty() {
        let _ = writeln!(
            out,
            "Known behaviours of {} (expected invalid):\n",
            m.system
        );
        out.push_str(&markdown_table(
            &KNOWN_HEADER,
            &[3, 4, 5],
            &in_markdown(known_cells(m)),
        ));
        out.push('\n');
    }
    if !m.correct.is_empty() {
        let _ = writeln!(
            out,
            "{}, each nemesis alone{}:\n",
            correct_title(m),
            together(m)
        );
        out.push_str(&markdown_table(
            &CORRECT_HEADER,
            &[2, 3, 4, 5],
            &correct_cells(m),
        ));
        out.push('\n');
    }
    for line in summary_lines(m) {
        let _ = writeln!(out, "{line}.  ");
    }
    if !m.bugs.is_empty() || !m.known.is_empty() {
        let _ = writeln!(out, "\nWhy these faults:\n");
        for r in m.bugs.iter().chain(&m.known) {
            let _ = write!(out, "- `{}`: {}", r.bug, r.why);
            if let Some(note) = &r.note {
                let _ = write!(out, " ({note})");
            }
            if let Some(note) = &r.nemesis_note {
                let _ = write!(out, " [{note}]");
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "\nColumns:\n");
    for (name, meaning) in &m.definitions {
        let _ = writeln!(out, "- `{name}`: {meaning}");
    }
    out
}

/// What the correct column is: raftlab's correct build, or another system as it ships.
fn correct_title(m: &Matrix) -> String {
    if m.db == DbKind::Raftlab.name() {
        "The correct build (no bug)".to_string()
    } else {
        format!("{} as it ships", m.system)
    }
}

/// The correct column's name in a sentence.
fn correct_name(m: &Matrix) -> String {
    if m.db == DbKind::Raftlab.name() {
        "the correct build".to_string()
    } else {
        m.system.clone()
    }
}

/// Says what the `all` row of the correct column is, when there is one.
fn together(m: &Matrix) -> &'static str {
    if m.correct.iter().any(|r| r.nemesis == "all") {
        " (all: every one of them together)"
    } else {
        ""
    }
}

/// Rows of the bug and known-behaviour tables as Markdown shows them: the name as code, the
/// faults separated by ", ".
fn in_markdown(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut row| {
            row[0] = format!("`{}`", row[0]);
            row[2] = row[2].replace(',', ", ");
            row
        })
        .collect()
}
