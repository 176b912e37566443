//! The report's interactive timeline: every operation as a bar on its process's row, on a
//! shared time axis (seconds since the run started), coloured by outcome, with the nemesis'
//! faults shaded behind every row and labelled in lanes above them; zoom, pan and tooltips.
//! `timeline.js` (plain script, no network) draws it on a `<canvas>`, only what lies in the
//! visible window (binary search on start times), so 100k+ operations stay fluid;
//! `timeline.css` styles the controls.
//!
//! The data is embedded as compact columnar JSON in
//! `<script type="application/json" id="timeline-data">`, every `<` written `\u003c` so no
//! value can end the element early. Times are integer microseconds. Operations are sorted by
//! start; column `i` is the history index of the invoke and `s` the start, both as deltas from
//! the previous operation; `d` the duration (`-1`: never completed); `p`, `f`, `k` index the
//! `processes`, `fs` and `keys` tables; `o` indexes `outcomes`; `q` and `r` are the request
//! and response as JSON text (`""` for `null`). Faults are objects `{kind, label, s, e}`
//! (`e = -1`: still in effect at the end). About 40 bytes per operation for KV workloads
//! (`tests/report.rs` measures a 100,000-operation history).
//!
//! **The cap.** At most [`MAX_OPS`] (200,000) operations are embedded one by one: the first
//! ones by start time. The rest are summed into a density strip (`density`: operations per
//! outcome per time bucket, at most [`DENSITY_BUCKETS`] buckets, by start time) drawn below
//! the rows, and the page says so. Request and response texts longer than
//! [`MAX_VALUE_CHARS`] characters are cut, ending in "…".

use super::spans::{FaultSpan, OpSpan, Outcome};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// Operations embedded one by one; the rest go into the density strip.
pub const MAX_OPS: usize = 200_000;
/// Time buckets of the density strip.
pub const DENSITY_BUCKETS: u64 = 1_000;
/// Longest request or response text embedded, in characters.
pub const MAX_VALUE_CHARS: usize = 120;

/// The timeline's styles, for the page's `<head>`.
pub const STYLE: &str = include_str!("timeline.css");
const SCRIPT: &str = include_str!("timeline.js");

/// Outcomes in the order of their codes in column `o`.
const OUTCOMES: [Outcome; 3] = [Outcome::Ok, Outcome::Fail, Outcome::Info];

/// The timeline section: controls, canvas, embedded data and script.
pub fn section(ops: &[OpSpan], faults: &[FaultSpan]) -> String {
    let data = Data::new(ops, faults, MAX_OPS);
    let mut html = String::from(
        "<section id=\"timeline\"><h2>Timeline</h2>\
         <p class=\"tl-help\">One row per process, time in seconds since the run started. \
         Zoom with the mouse wheel or + and &minus;, pan by dragging or with the arrows, \
         hover over an operation or a fault for its details.</p>",
    );
    if let Some(density) = &data.density {
        let _ = write!(
            html,
            "<p class=\"tl-notice\">This history has {} operations: the first {} (by start \
             time) are drawn one by one; the other {} are summed in the strip below the rows \
             (operations started per time bucket, by outcome).</p>",
            data.total,
            data.ops.p.len(),
            density.ops,
        );
    }
    html.push_str(
        "<div class=\"tl-controls\">\
         <button type=\"button\" data-act=\"in\" title=\"zoom in\">+</button>\
         <button type=\"button\" data-act=\"out\" title=\"zoom out\">&minus;</button>\
         <button type=\"button\" data-act=\"left\" title=\"pan left\">&#9664;</button>\
         <button type=\"button\" data-act=\"right\" title=\"pan right\">&#9654;</button>\
         <button type=\"button\" data-act=\"reset\" title=\"show everything\">reset</button>\
         <span id=\"timeline-range\"></span><span class=\"tl-legend\">\
         <i class=\"ok\"></i>ok<i class=\"fail\"></i>fail<i class=\"info\"></i>info or never \
         completed<i class=\"partition\"></i>partition<i class=\"kill\"></i>kill\
         <i class=\"pause\"></i>pause</span></div>\
         <div class=\"tl-wrap\"><canvas id=\"timeline-canvas\" tabindex=\"0\"></canvas>\
         <div id=\"timeline-tip\" class=\"tl-tip\" hidden></div></div>\
         <script type=\"application/json\" id=\"timeline-data\">",
    );
    let json = serde_json::to_string(&data).unwrap_or_else(|e| {
        // Cannot happen for these types; the script reports it rather than drawing nothing.
        serde_json::json!({ "error": e.to_string() }).to_string()
    });
    html.push_str(&json.replace('<', "\\u003c"));
    let _ = write!(html, "</script><script>{SCRIPT}</script></section>");
    html
}

/// The embedded JSON.
#[derive(Serialize)]
struct Data<'a> {
    /// End of the time axis.
    end: u64,
    /// Operations in the history, embedded or not.
    total: usize,
    outcomes: [&'static str; 3],
    processes: Vec<u64>,
    fs: Vec<&'a str>,
    /// Keys as JSON text.
    keys: Vec<String>,
    ops: Columns,
    faults: Vec<Fault<'a>>,
    density: Option<Density>,
}

/// One column per field of the embedded operations (see the module documentation).
#[derive(Default, Serialize)]
struct Columns {
    i: Vec<i64>,
    s: Vec<u64>,
    d: Vec<i64>,
    p: Vec<u32>,
    o: Vec<u8>,
    f: Vec<u32>,
    k: Vec<u32>,
    q: Vec<String>,
    r: Vec<String>,
}

#[derive(Serialize)]
struct Fault<'a> {
    kind: &'static str,
    label: &'a str,
    s: u64,
    e: i64,
}

/// Operations beyond the cap, counted per time bucket (by start) and outcome.
#[derive(Serialize)]
struct Density {
    ops: usize,
    /// Start of bucket 0 and width of a bucket.
    from: u64,
    bucket: u64,
    /// Per outcome (in `outcomes` order), per bucket.
    counts: [Vec<u32>; 3],
}

impl<'a> Data<'a> {
    /// The data for `ops` (any order) and `faults`, embedding at most `cap` operations.
    fn new(ops: &'a [OpSpan], faults: &'a [FaultSpan], cap: usize) -> Self {
        let mut sorted: Vec<&OpSpan> = ops.iter().collect();
        sorted.sort_by_key(|op| (op.start_ns, op.index));
        let (embedded, rest) = sorted.split_at(cap.min(sorted.len()));

        let ends = ops
            .iter()
            .map(|op| op.end_ns.unwrap_or(op.start_ns))
            .chain(faults.iter().map(|f| f.end_ns.unwrap_or(f.start_ns)));
        let end = micros(ends.max().unwrap_or(0)).max(1);

        let processes: Vec<u64> = embedded
            .iter()
            .map(|op| op.process)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let rows: HashMap<u64, u32> = processes.iter().zip(0..).map(|(&p, r)| (p, r)).collect();
        let mut fs = Interner::default();
        let mut keys = Interner::default();
        let mut columns = Columns::default();
        let (mut last_index, mut last_start) = (0i64, 0u64);
        for op in embedded {
            let start = micros(op.start_ns);
            columns.i.push(op.index as i64 - last_index);
            columns.s.push(start - last_start);
            columns.d.push(
                op.end_ns
                    .map_or(-1, |e| micros(e).saturating_sub(start) as i64),
            );
            columns.p.push(rows.get(&op.process).copied().unwrap_or(0));
            columns.o.push(outcome_code(op.outcome));
            columns.f.push(fs.intern(op.f.as_str()));
            columns.k.push(keys.intern(op.key.to_string()));
            columns.q.push(value_text(&op.request));
            columns.r.push(value_text(&op.response));
            (last_index, last_start) = (op.index as i64, start);
        }

        Data {
            end,
            total: ops.len(),
            outcomes: OUTCOMES.map(Outcome::name),
            processes,
            fs: fs.values,
            keys: keys.values,
            ops: columns,
            faults: faults
                .iter()
                .map(|f| Fault {
                    kind: f.kind.name(),
                    label: &f.label,
                    s: micros(f.start_ns),
                    e: f.end_ns.map_or(-1, |e| micros(e) as i64),
                })
                .collect(),
            density: Density::new(rest),
        }
    }
}

impl Density {
    /// The strip for `rest` (sorted by start); `None` when empty.
    fn new(rest: &[&OpSpan]) -> Option<Density> {
        let from = micros(rest.first()?.start_ns);
        let last = micros(rest.last()?.start_ns);
        let bucket = (last - from) / DENSITY_BUCKETS + 1;
        let buckets = ((last - from) / bucket + 1) as usize;
        let mut counts = [vec![0; buckets], vec![0; buckets], vec![0; buckets]];
        for op in rest {
            let b = ((micros(op.start_ns) - from) / bucket) as usize;
            if let Some(n) = counts[usize::from(outcome_code(op.outcome))].get_mut(b) {
                *n += 1;
            }
        }
        Some(Density {
            ops: rest.len(),
            from,
            bucket,
            counts,
        })
    }
}

/// Distinct values in first-seen order, and each value's position.
#[derive(Default)]
struct Interner<T> {
    values: Vec<T>,
    positions: HashMap<T, u32>,
}

impl<T: Clone + Eq + std::hash::Hash> Interner<T> {
    fn intern(&mut self, value: T) -> u32 {
        if let Some(&at) = self.positions.get(&value) {
            return at;
        }
        let at = self.values.len() as u32;
        self.values.push(value.clone());
        self.positions.insert(value, at);
        at
    }
}

fn micros(ns: u64) -> u64 {
    ns / 1_000
}

fn outcome_code(outcome: Outcome) -> u8 {
    OUTCOMES.iter().position(|&o| o == outcome).unwrap_or(2) as u8
}

/// A value as JSON text for a tooltip: `""` for `null`, cut at [`MAX_VALUE_CHARS`].
fn value_text(value: &Json) -> String {
    if value.is_null() {
        return String::new();
    }
    let text = value.to_string();
    match text.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::spans::FaultKind;
    use serde_json::json;

    fn op(
        index: u64,
        process: u64,
        start_ms: u64,
        end_ms: Option<u64>,
        outcome: Outcome,
    ) -> OpSpan {
        OpSpan {
            index,
            process,
            f: "write".into(),
            key: json!("k1"),
            request: json!(index),
            response: json!(index),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms.map(|e| e * 1_000_000),
            outcome,
        }
    }

    fn embedded(html: &str) -> Json {
        let start = html.find("id=\"timeline-data\">").expect("data block") + 19;
        let len = html[start..]
            .find("</script>")
            .expect("end of the data block");
        serde_json::from_str(&html[start..start + len]).expect("the data is JSON")
    }

    #[test]
    fn columns_are_sorted_by_start_and_delta_encoded() {
        let ops = vec![
            op(4, 7, 30, Some(35), Outcome::Fail),
            op(0, 3, 10, Some(20), Outcome::Ok),
            op(2, 3, 25, None, Outcome::Info),
        ];
        let faults = vec![FaultSpan {
            kind: FaultKind::Kill,
            label: "kill node 2".into(),
            start_ns: 5_000_000,
            end_ns: None,
        }];
        let data = embedded(&section(&ops, &faults));
        assert_eq!(data["end"], json!(35_000));
        assert_eq!(data["processes"], json!([3, 7]));
        assert_eq!(data["ops"]["i"], json!([0, 2, 2]));
        assert_eq!(data["ops"]["s"], json!([10_000, 15_000, 5_000]));
        assert_eq!(data["ops"]["d"], json!([10_000, -1, 5_000]));
        assert_eq!(data["ops"]["p"], json!([0, 0, 1]));
        assert_eq!(data["ops"]["o"], json!([0, 2, 1]));
        assert_eq!(data["keys"], json!(["\"k1\""]));
        assert_eq!(data["faults"][0]["e"], json!(-1));
        assert_eq!(data["density"], Json::Null);
    }

    #[test]
    fn beyond_the_cap_operations_are_counted_in_the_density_strip() {
        let ops: Vec<OpSpan> = (0..10)
            .map(|i| op(i, i % 2, i, Some(i + 1), OUTCOMES[(i % 3) as usize]))
            .collect();
        let data = Data::new(&ops, &[], 4);
        assert_eq!((data.total, data.ops.p.len()), (10, 4));
        let density = data.density.expect("a density strip");
        assert_eq!(density.ops, 6);
        let counted: u32 = density.counts.iter().flatten().sum();
        assert_eq!(counted, 6);
        assert!(density.counts[0].len() as u64 <= DENSITY_BUCKETS);
    }

    #[test]
    fn values_cannot_end_the_script_element() {
        let mut evil = op(0, 1, 1, Some(2), Outcome::Ok);
        evil.request = json!("</script><script>alert(1)</script><!--");
        evil.response = json!("x".repeat(500));
        let html = section(&[evil], &[]);
        assert_eq!(
            html.matches("</script>").count(),
            2,
            "data and code blocks only"
        );
        let data = embedded(&html);
        assert_eq!(
            data["ops"]["q"][0],
            json!("\"</script><script>alert(1)</script><!--\"")
        );
        let response = data["ops"]["r"][0].as_str().expect("text");
        assert_eq!(response.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(response.ends_with('…'));
    }
}
