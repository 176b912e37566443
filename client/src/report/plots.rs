//! Jepsen-style pictures of a run, as self-contained SVG documents: `latency-raw` (every
//! operation's latency), `latency-quantiles` (p50/p90/p99/p99.9/max per time bucket, the summary's
//! percentiles) and `rate`
//! (completions per second). Each shades the nemesis's fault intervals as translucent vertical
//! bands (one colour per kind of fault) so a reader can see what the faults did to the
//! clients.
//!
//! Drawn with `plotters`' SVG backend and no font machinery: the backend emits `<text>`
//! elements and the browser lays them out; plotters only estimates text extents for its own
//! layout, which is all an SVG needs.
//!
//! Conventions shared by the three pictures:
//! - x is seconds since the run's recorder started, from 0 to the latest time seen (operation
//!   or fault); a fault still in effect at the end extends to the right edge.
//! - Each `f` (read, write, cas, append, …) has one colour in all three pictures. Eight `f`s
//!   get their own colour (those four first, then the most common); any others share a grey
//!   "other" series, so the number of series, and so the size of the SVGs, is bounded whatever
//!   the history holds.
//! - Time buckets (quantiles and rate) are a round width (1, 2 or 5 × 10^k seconds) giving about
//!   100 buckets over the run.
//! - Operations that never completed have neither a latency nor a completion time, and appear
//!   in none of the pictures.
//! - Latency axes are logarithmic (as Jepsen's), from the decade below the fastest operation to
//!   the decade above the slowest, so they always carry labelled ticks. `latency-raw` places an
//!   operation at its invocation time (as Jepsen does): a filled circle if `ok`, a hollow square
//!   if `fail`, a triangle if `info`.
//! - The legend is a panel on the right, drawn by this module (plotters' own legend box would
//!   sit on the data).
//!
//! Bounded output: `latency-raw` draws at most about [`MAX_RAW_POINTS`] points. Beyond that it
//! thins them deterministically (`downsample`: the slowest per series and bucket, then every
//! k-th) and says so in its title and legend. The other two pictures draw a bounded number of
//! points by construction (at most 9 series × styles × ~100 buckets). Measured on 200,000
//! operations: `latency-raw` about 1.8 MB, `latency-quantiles` 0.2 MB (1.2 MB with 9 series),
//! `rate` 0.1 MB (0.2 MB with 9 series).
//!
//! Errors: rendering never panics on data and never fails. If plotters reports a drawing error,
//! that picture is replaced by an SVG that shows the picture's title and the error text.

use super::spans::{FaultKind, FaultSpan, OpSpan, Outcome};
use super::stats::{quantile, PERCENTILES};
use checker::html::escape;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::HashMap;
use std::path::Path;

/// The three pictures, each a complete `<svg>…</svg>` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plots {
    pub latency_raw: String,
    pub latency_quantiles: String,
    pub rate: String,
}

/// Past this many operations, `latency-raw` is downsampled (about 90 bytes of SVG per point,
/// whatever the marker: 20,000 points are about 1.8 MB).
pub const MAX_RAW_POINTS: usize = 20_000;
/// When thinning, `fail`/`info` points keep at least this much of [`MAX_RAW_POINTS`] (they are
/// thinned less than `ok` ones, being rarer and more interesting).
const MAX_RARE_POINTS: usize = 5_000;
/// The number of time buckets aimed at.
const BUCKETS: f64 = 100.0;
/// `f`s with their own colour; the rest are "other".
const MAX_FS: usize = 8;
/// Latencies are clamped to at least this (ms) to sit on the log axis.
const MIN_LATENCY_MS: f64 = 1e-3;

const SIZE: (u32, u32) = (900, 400);
/// The chart's width; the rest, on the right, holds the legend.
const CHART_WIDTH: u32 = 730;
const FONT: &str = "sans-serif";
/// Font sizes in plotters' units (the SVG gets `size / 1.24` px).
const LABEL_SIZE: u32 = 15;
const TITLE_SIZE: u32 = 22;

const PALETTE: [RGBColor; MAX_FS] = [
    RGBColor(31, 119, 180),  // blue
    RGBColor(255, 127, 14),  // orange
    RGBColor(44, 160, 44),   // green
    RGBColor(148, 103, 189), // purple
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(188, 189, 34),  // olive
    RGBColor(23, 190, 207),  // cyan
];
const OTHER: RGBColor = RGBColor(127, 127, 127);
const INK: RGBColor = RGBColor(60, 60, 60);

/// The order `f`s are listed in when present; others follow, most common first.
const USUAL_FS: [&str; 4] = ["read", "write", "cas", "append"];

fn fault_colour(kind: FaultKind) -> RGBAColor {
    match kind {
        FaultKind::Partition => RGBColor(214, 39, 40).mix(0.15),
        FaultKind::Kill => RGBColor(90, 90, 90).mix(0.18),
        FaultKind::Pause => RGBColor(65, 105, 225).mix(0.15),
        FaultKind::Disk => RGBColor(255, 127, 14).mix(0.15),
    }
}

/// Draws the three pictures.
pub fn render(spans: &[OpSpan], faults: &[FaultSpan]) -> Plots {
    let frame = Frame::new(spans, faults);
    Plots {
        latency_raw: or_note(LATENCY_RAW, latency_raw(&frame)),
        latency_quantiles: or_note(LATENCY_QUANTILES, latency_quantiles(&frame)),
        rate: or_note(RATE, rate(&frame)),
    }
}

/// Writes `dir/plots/latency-raw.svg`, `latency-quantiles.svg` and `rate.svg`.
pub fn write(dir: &Path, plots: &Plots) -> std::io::Result<()> {
    let dir = dir.join("plots");
    std::fs::create_dir_all(&dir)?;
    for (name, svg) in [
        ("latency-raw.svg", &plots.latency_raw),
        ("latency-quantiles.svg", &plots.latency_quantiles),
        ("rate.svg", &plots.rate),
    ] {
        crate::control::files::write_atomically(&dir.join(name), svg)?;
    }
    Ok(())
}

const LATENCY_RAW: &str = "Latency, every operation";
const LATENCY_QUANTILES: &str = "Latency quantiles (ok operations)";
const RATE: &str = "Throughput (completions per second)";

/// What the three pictures share: the time axis, the `f` series, the fault bands.
struct Frame<'a> {
    spans: &'a [OpSpan],
    faults: &'a [FaultSpan],
    /// The right edge, in seconds (> 0).
    end_s: f64,
    /// The bucket width, in seconds (> 0).
    bucket_s: f64,
    /// The series' names, in legend order: at most [`MAX_FS`] `f`s, then maybe "other".
    fs: Vec<String>,
    /// `f` → index into `fs`.
    series_of: HashMap<&'a str, usize>,
    /// The index of "other", if any `f` fell into it.
    other: Option<usize>,
}

impl<'a> Frame<'a> {
    fn new(spans: &'a [OpSpan], faults: &'a [FaultSpan]) -> Self {
        let latest_ns = spans
            .iter()
            .flat_map(|s| [Some(s.start_ns), s.end_ns])
            .chain(faults.iter().flat_map(|f| [Some(f.start_ns), f.end_ns]))
            .flatten()
            .max()
            .unwrap_or(0);
        let end_s = match seconds(latest_ns) {
            s if s > 0.0 => s,
            _ => 1.0,
        };
        let bucket_s = nice_width(end_s / BUCKETS);

        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in spans {
            *counts.entry(s.f.as_str()).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| {
            let usual = |f: &str| USUAL_FS.iter().position(|u| *u == f);
            match (usual(a.0), usual(b.0)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)),
            }
        });
        let mut fs = Vec::new();
        let mut series_of = HashMap::new();
        let mut other = None;
        for (i, (f, _)) in ranked.iter().enumerate() {
            if i < MAX_FS {
                series_of.insert(*f, fs.len());
                fs.push(shorten(f));
            } else {
                let at = *other.get_or_insert_with(|| {
                    fs.push("other".to_string());
                    fs.len() - 1
                });
                series_of.insert(*f, at);
            }
        }
        Frame {
            spans,
            faults,
            end_s,
            bucket_s,
            fs,
            series_of,
            other,
        }
    }

    fn series(&self, span: &OpSpan) -> usize {
        self.series_of.get(span.f.as_str()).copied().unwrap_or(0)
    }

    fn colour(&self, series: usize) -> RGBColor {
        if Some(series) == self.other {
            OTHER
        } else {
            PALETTE[series % MAX_FS]
        }
    }

    fn bucket(&self, s: f64) -> usize {
        (s / self.bucket_s).floor().max(0.0) as usize
    }

    fn buckets(&self) -> usize {
        self.bucket(self.end_s) + 1
    }

    fn bucket_mid(&self, bucket: usize) -> f64 {
        (bucket as f64 + 0.5) * self.bucket_s
    }

    /// The fault kinds present, in a fixed order.
    fn fault_kinds(&self) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> = self.faults.iter().map(|f| f.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Legend rows for the `f`s.
    fn legend_fs(&self) -> Vec<LegendRow> {
        let mut rows = vec![LegendRow::Heading("operation".into())];
        rows.extend(
            self.fs
                .iter()
                .enumerate()
                .map(|(i, f)| LegendRow::Swatch(self.colour(i), f.clone())),
        );
        rows
    }

    /// Legend rows for the kinds of fault present.
    fn legend_faults(&self) -> Vec<LegendRow> {
        let kinds = self.fault_kinds();
        if kinds.is_empty() {
            return Vec::new();
        }
        let mut rows = vec![LegendRow::Heading("fault".into())];
        rows.extend(
            kinds
                .into_iter()
                .map(|k| LegendRow::Band(fault_colour(k), k.name().to_string())),
        );
        rows
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn millis(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The smallest 1, 2 or 5 × 10^k at least `raw` (raw > 0 and finite, else 1).
fn nice_width(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let decade = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|w| *w >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * decade)
}

/// `f`s are arbitrary strings: keep legend rows short, keeping both ends (names that differ
/// stay told apart more often).
fn shorten(f: &str) -> String {
    const MAX: usize = 18;
    let chars: Vec<char> = f.chars().collect();
    if chars.len() <= MAX {
        return f.to_string();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 9..].iter().collect();
    format!("{head}…{tail}")
}

/// A number of seconds as a bucket width is written in a title.
fn duration_text(s: f64) -> String {
    if s >= 1.0 {
        format!("{s} s")
    } else if s >= 1e-3 {
        format!("{} ms", round_sig(s * 1e3))
    } else {
        format!("{} µs", round_sig(s * 1e6))
    }
}

fn round_sig(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// An axis label: no more decimals than it needs ("10", "2.5", "0.001").
fn number_label(v: &f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    // Enough decimals for the first significant digit of a small number, at least 3.
    let decimals = if *v != 0.0 && v.abs() < 1.0 {
        ((-v.abs().log10()).ceil() as usize + 1).clamp(3, 9)
    } else {
        3
    };
    let text = format!("{v:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The decades around `[lo, hi]` (positive): a log axis from 10^a to 10^b, b > a, so it always
/// has labelled ticks.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(MIN_LATENCY_MS);
    let hi = hi.max(lo);
    let a = lo.log10().floor();
    let mut b = hi.log10().ceil();
    if b <= a {
        b = a + 1.0;
    }
    (10f64.powf(a), 10f64.powf(b))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// A latency chart (log-scale milliseconds over seconds) with its mesh and fault bands.
fn latency_chart<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    frame: &Frame,
    lo: f64,
    hi: f64,
) -> Result<Chart<'a, 'b, LogCoord<f64>>, String> {
    let (text, font) = caption(title);
    let mut chart = ChartBuilder::on(area)
        .caption(text, font)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..frame.end_s, (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    draw_mesh(&mut chart, "latency (ms)")?;
    draw_bands(&mut chart, frame, lo, hi)?;
    Ok(chart)
}

/// Runs `draw` on a fresh 900×400 SVG and returns the document.
fn svg(draw: impl FnOnce(&Area) -> Result<(), String>) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The picture, or one saying why there is none.
fn or_note(title: &str, picture: Result<String, String>) -> String {
    picture.unwrap_or_else(|error| note(title, &format!("could not draw: {error}")))
}

/// A picture of a title and a sentence, for "no operations" and drawing errors.
fn note(title: &str, text: &str) -> String {
    svg(|root| {
        let (w, h) = (SIZE.0 as i32, SIZE.1 as i32);
        let centred = |size: f64| {
            TextStyle::from((FONT, size).into_font())
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Center))
        };
        root.draw(&Text::new(
            title.to_string(),
            (w / 2, 30),
            centred(f64::from(TITLE_SIZE)),
        ))
        .map_err(|e| e.to_string())?;
        root.draw(&Text::new(
            text.to_string(),
            (w / 2, h / 2),
            centred(f64::from(LABEL_SIZE + 3)),
        ))
        .map_err(|e| e.to_string())
    })
    // Drawing a sentence failed too: write the SVG by hand.
    .unwrap_or_else(|_| {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\"><text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" \
             font-family=\"{FONT}\" font-size=\"16\">{title}: {text}</text></svg>",
            w = SIZE.0,
            h = SIZE.1,
            x = SIZE.0 / 2,
            y = SIZE.1 / 2,
            title = escape(title),
            text = escape(text),
        )
    })
}

/// One row of the legend panel on the right.
enum LegendRow {
    Heading(String),
    /// A series colour.
    Swatch(RGBColor, String),
    /// A fault band.
    Band(RGBAColor, String),
    /// A point marker, drawn in grey.
    Marker(Outcome, String),
    /// A line style, drawn in grey.
    Line(LineKind, String),
    /// Small grey text.
    Note(String),
}

/// How a line series is stroked, to tell quantiles or outcomes apart within one colour.
#[derive(Clone, Copy)]
enum LineKind {
    Thick,
    Thin,
    Dashed,
    LongDashed,
    Dotted,
}

/// Draws a polyline in chart coordinates with a stroke of the given kind.
fn draw_line<Y>(
    chart: &mut Chart<'_, '_, Y>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    kind: LineKind,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    if points.is_empty() {
        return Ok(());
    }
    let result = match kind {
        LineKind::Thick => chart.draw_series(LineSeries::new(points, colour.stroke_width(2))),
        LineKind::Thin => chart.draw_series(LineSeries::new(points, colour.stroke_width(1))),
        LineKind::Dashed => {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, colour.stroke_width(1)))
        }
        LineKind::LongDashed => {
            chart.draw_series(DashedLineSeries::new(points, 12, 4, colour.stroke_width(1)))
        }
        LineKind::Dotted => {
            chart.draw_series(DashedLineSeries::new(points, 2, 3, colour.stroke_width(1)))
        }
    };
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// A point marker: `ok` a translucent filled circle, `fail` a hollow square, `info` a
/// triangle. One SVG element each (about 100 bytes).
fn draw_points<Y>(
    chart: &mut Chart<'_, '_, Y>,
    points: &[(f64, f64)],
    colour: RGBColor,
    outcome: Outcome,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let result = match outcome {
        Outcome::Ok => chart.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 2, colour.mix(0.6).filled())),
        ),
        Outcome::Fail => chart.draw_series(points.iter().map(|&p| {
            EmptyElement::at(p) + Rectangle::new([(-3, -3), (3, 3)], colour.stroke_width(1))
        })),
        Outcome::Info => chart.draw_series(
            points
                .iter()
                .map(|&p| TriangleMarker::new(p, 4, colour.stroke_width(1))),
        ),
    };
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// The legend panel: one row per entry, top to bottom, spaced to fit (at most 23 rows: 4
/// headings, 9 series, 4 styles, 3 fault kinds, 3 notes).
fn draw_legend(area: &Area, rows: &[LegendRow]) -> Result<(), String> {
    let left = Pos::new(HPos::Left, VPos::Center);
    let text = TextStyle::from((FONT, LABEL_SIZE).into_font())
        .color(&INK)
        .pos(left);
    let heading = TextStyle::from((FONT, LABEL_SIZE).into_font().style(FontStyle::Bold))
        .color(&INK)
        .pos(left);
    let note = TextStyle::from((FONT, LABEL_SIZE - 2).into_font())
        .color(&OTHER)
        .pos(left);
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    // Rows 17 px apart, closer if there are many (a heading takes a third more).
    let headings = rows
        .iter()
        .filter(|r| matches!(r, LegendRow::Heading(_)))
        .count();
    let room = f64::from(SIZE.1 - 50);
    let step = (room / (rows.len() as f64 + headings as f64 / 3.0)).clamp(12.0, 17.0);
    let mut at = 40.0;
    for (i, row) in rows.iter().enumerate() {
        if matches!(row, LegendRow::Heading(_)) && i > 0 {
            at += step / 3.0;
        }
        let (x0, x1, y) = (8, 30, at.round() as i32);
        match row {
            LegendRow::Heading(label) => {
                area.draw(&Text::new(label.clone(), (x0, y), heading.clone()))
                    .map_err(err)?;
            }
            LegendRow::Note(label) => {
                area.draw(&Text::new(label.clone(), (x0, y), note.clone()))
                    .map_err(err)?;
            }
            LegendRow::Swatch(colour, _) => {
                area.draw(&Rectangle::new([(x0, y - 5), (x1, y + 5)], colour.filled()))
                    .map_err(err)?;
            }
            LegendRow::Band(colour, _) => {
                area.draw(&Rectangle::new([(x0, y - 6), (x1, y + 6)], colour.filled()))
                    .map_err(err)?;
            }
            LegendRow::Marker(outcome, _) => {
                let c = (x0 + 11, y);
                let grey = OTHER;
                match outcome {
                    Outcome::Ok => area.draw(&Circle::new(c, 3, grey.filled())),
                    Outcome::Fail => area.draw(&Rectangle::new(
                        [(c.0 - 3, c.1 - 3), (c.0 + 3, c.1 + 3)],
                        grey.stroke_width(1),
                    )),
                    Outcome::Info => area.draw(&TriangleMarker::new(c, 4, grey.stroke_width(1))),
                }
                .map_err(err)?;
            }
            LegendRow::Line(kind, _) => {
                let ends = vec![(x0, y), (x1, y)];
                match kind {
                    LineKind::Thick => area.draw(&PathElement::new(ends, OTHER.stroke_width(2))),
                    LineKind::Thin => area.draw(&PathElement::new(ends, OTHER.stroke_width(1))),
                    LineKind::Dashed => {
                        area.draw(&DashedPathElement::new(ends, 6, 4, OTHER.stroke_width(1)))
                    }
                    LineKind::LongDashed => {
                        area.draw(&DashedPathElement::new(ends, 12, 4, OTHER.stroke_width(1)))
                    }
                    LineKind::Dotted => {
                        area.draw(&DashedPathElement::new(ends, 2, 3, OTHER.stroke_width(1)))
                    }
                }
                .map_err(err)?;
            }
        }
        if let LegendRow::Swatch(_, label)
        | LegendRow::Band(_, label)
        | LegendRow::Marker(_, label)
        | LegendRow::Line(_, label) = row
        {
            area.draw(&Text::new(label.clone(), (x1 + 8, y), text.clone()))
                .map_err(err)?;
        }
        at += step;
    }
    Ok(())
}

/// Splits the picture into the chart (left) and the legend (right), draws the legend.
fn layout<'a>(root: &Area<'a>, legend: &[LegendRow]) -> Result<Area<'a>, String> {
    let (chart, side) = root.split_horizontally(CHART_WIDTH);
    draw_legend(&side, legend)?;
    Ok(chart)
}

/// Shades each fault from its start to its end (or the right edge) between `lo` and `hi`.
fn draw_bands<Y>(
    chart: &mut Chart<'_, '_, Y>,
    frame: &Frame,
    lo: f64,
    hi: f64,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let bands = frame.faults.iter().map(|f| {
        let start = seconds(f.start_ns).min(frame.end_s);
        let end = f
            .end_ns
            .map_or(frame.end_s, seconds)
            .clamp(start, frame.end_s);
        Rectangle::new([(start, lo), (end, hi)], fault_colour(f.kind).filled())
    });
    chart
        .draw_series(bands)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn draw_mesh<Y>(chart: &mut Chart<'_, '_, Y>, y_desc: &str) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("time since start (s)")
        .y_desc(y_desc)
        .x_labels(10)
        .x_label_formatter(&number_label)
        .y_label_formatter(&number_label)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, LABEL_SIZE + 1))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215));
    mesh.draw().map_err(|e| e.to_string())
}

fn caption(title: &str) -> (String, FontDesc<'static>) {
    (title.to_string(), (FONT, TITLE_SIZE).into_font())
}

/// Deterministic thinning of `latency-raw`'s points: which of `points` (series, outcome, bucket,
/// latency) to draw.
///
/// At most [`MAX_RAW_POINTS`] points are drawn as they are. Past that:
/// - the slowest point of each series (f × outcome) in each time bucket is kept, so the
///   outliers — what a latency picture is for — all survive;
/// - of the other `fail`/`info` points, every k-th of each series, k chosen so that at most
///   [`MAX_RARE_POINTS`] remain (all of them, if that few), or more if there are so few `ok`
///   points that the total stays within [`MAX_RAW_POINTS`] anyway;
/// - of the other `ok` points, every k-th of each series, k chosen so that the total stays
///   within [`MAX_RAW_POINTS`] (plus at most one point per series from rounding).
///
/// Returns whether each point is kept, and the strides used for `ok` and `fail`/`info` (1: all).
fn downsample(points: &[RawPoint]) -> (Vec<bool>, usize, usize) {
    if points.len() <= MAX_RAW_POINTS {
        return (vec![true; points.len()], 1, 1);
    }
    let mut keep = vec![false; points.len()];
    let mut slowest: HashMap<(usize, u8, usize), usize> = HashMap::new();
    for (i, p) in points.iter().enumerate() {
        let at = slowest
            .entry((p.series, p.outcome as u8, p.bucket))
            .or_insert(i);
        if p.latency_ms > points[*at].latency_ms {
            *at = i;
        }
    }
    for &i in slowest.values() {
        keep[i] = true;
    }
    let kept = slowest.len();
    let rare = |p: &RawPoint| p.outcome != Outcome::Ok;
    let rest_rare = points
        .iter()
        .zip(&keep)
        .filter(|(p, k)| rare(p) && !**k)
        .count();
    let rest_ok = points.len() - kept - rest_rare;
    // Few ok points leave more room for the others.
    let rare_budget = MAX_RARE_POINTS
        .max(MAX_RAW_POINTS.saturating_sub(kept + rest_ok))
        .min(MAX_RAW_POINTS.saturating_sub(kept))
        .max(1);
    let rare_stride = rest_rare.div_ceil(rare_budget).max(1);
    let rare_kept = rest_rare.div_ceil(rare_stride);
    let budget = MAX_RAW_POINTS.saturating_sub(kept + rare_kept).max(1);
    let ok_stride = rest_ok.div_ceil(budget).max(1);
    let mut seen: HashMap<(usize, u8), usize> = HashMap::new();
    for (i, p) in points.iter().enumerate() {
        if keep[i] {
            continue;
        }
        let n = seen.entry((p.series, p.outcome as u8)).or_default();
        let stride = if rare(p) { rare_stride } else { ok_stride };
        keep[i] = *n % stride == 0;
        *n += 1;
    }
    (keep, ok_stride, rare_stride)
}

struct RawPoint {
    series: usize,
    outcome: Outcome,
    bucket: usize,
    start_s: f64,
    latency_ms: f64,
}

/// Every completed operation at (invocation time, latency), as Jepsen draws it.
fn latency_raw(frame: &Frame) -> Result<String, String> {
    let points: Vec<RawPoint> = frame
        .spans
        .iter()
        .filter_map(|s| {
            let latency = s.latency_ns()?;
            let start_s = seconds(s.start_ns);
            Some(RawPoint {
                series: frame.series(s),
                outcome: s.outcome,
                bucket: frame.bucket(start_s),
                start_s,
                latency_ms: millis(latency).max(MIN_LATENCY_MS),
            })
        })
        .collect();
    if points.is_empty() {
        return Ok(note(LATENCY_RAW, empty_text(frame)));
    }
    let (keep, ok_stride, rare_stride) = downsample(&points);
    let shown = keep.iter().filter(|k| **k).count();
    let title = if shown == points.len() {
        LATENCY_RAW.to_string()
    } else {
        format!("{LATENCY_RAW} ({shown} of {} shown)", points.len())
    };
    let (lo, hi) = points.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.latency_ms), hi.max(p.latency_ms))
    });
    let (lo, hi) = decades(lo, hi);

    let mut legend = frame.legend_fs();
    legend.push(LegendRow::Heading("outcome".into()));
    for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
        if points.iter().any(|p| p.outcome == outcome) {
            legend.push(LegendRow::Marker(outcome, outcome.name().into()));
        }
    }
    legend.extend(frame.legend_faults());
    if shown < points.len() {
        legend.push(LegendRow::Heading("thinned".into()));
        legend.push(LegendRow::Note(format!("1 in {ok_stride} ok points,")));
        legend.push(LegendRow::Note(format!(
            "1 in {rare_stride} fail/info points,"
        )));
        legend.push(LegendRow::Note("+ slowest per bucket".into()));
    }

    svg(|root| {
        let area = layout(root, &legend)?;
        let mut chart = latency_chart(&area, &title, frame, lo, hi)?;
        // ok first, so that the rarer fail/info marks are drawn on top.
        for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
            for series in 0..frame.fs.len() {
                let xy: Vec<(f64, f64)> = points
                    .iter()
                    .zip(&keep)
                    .filter(|(p, k)| **k && p.series == series && p.outcome == outcome)
                    .map(|(p, _)| (p.start_s, p.latency_ms.clamp(lo, hi)))
                    .collect();
                draw_points(&mut chart, &xy, frame.colour(series), outcome)?;
            }
        }
        Ok(())
    })
}

fn empty_text(frame: &Frame) -> &'static str {
    if frame.spans.is_empty() {
        "no operations"
    } else {
        "no completed operations"
    }
}

/// How each of the [`PERCENTILES`] is drawn, in their order.
const QUANTILE_LINES: [LineKind; PERCENTILES.len()] = [
    LineKind::Thick,
    LineKind::Thin,
    LineKind::Dashed,
    LineKind::LongDashed,
    LineKind::Dotted,
];

/// Per `f` and bucket of invocation time: the [`PERCENTILES`] of the `ok` operations' latency.
fn latency_quantiles(frame: &Frame) -> Result<String, String> {
    let mut latencies: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    for s in frame.spans.iter().filter(|s| s.outcome == Outcome::Ok) {
        if let Some(latency) = s.latency_ns() {
            let bucket = frame.bucket(seconds(s.start_ns));
            latencies
                .entry((frame.series(s), bucket))
                .or_default()
                .push(millis(latency).max(MIN_LATENCY_MS));
        }
    }
    if latencies.is_empty() {
        let text = if frame.spans.is_empty() {
            "no operations"
        } else {
            "no ok operations"
        };
        return Ok(note(LATENCY_QUANTILES, text));
    }
    // (series, quantile) → bucket → value.
    let mut lines: Vec<Vec<Option<f64>>> =
        vec![vec![None; frame.buckets()]; frame.fs.len() * PERCENTILES.len()];
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for ((series, bucket), mut v) in latencies {
        v.sort_by(f64::total_cmp);
        for (q, (quant, _)) in PERCENTILES.iter().enumerate() {
            let Some(value) = quantile(&v, *quant) else {
                continue;
            };
            lo = lo.min(value);
            hi = hi.max(value);
            if let Some(slot) = lines
                .get_mut(series * PERCENTILES.len() + q)
                .and_then(|l| l.get_mut(bucket))
            {
                *slot = Some(value);
            }
        }
    }
    let (lo, hi) = decades(lo, hi);
    let title = format!(
        "{LATENCY_QUANTILES}, {} buckets",
        duration_text(frame.bucket_s)
    );

    let mut legend = frame.legend_fs();
    legend.push(LegendRow::Heading("quantile".into()));
    legend.extend(
        PERCENTILES
            .iter()
            .zip(QUANTILE_LINES)
            .map(|((_, name), kind)| LegendRow::Line(kind, name.to_string())),
    );
    legend.extend(frame.legend_faults());

    svg(|root| {
        let area = layout(root, &legend)?;
        let mut chart = latency_chart(&area, &title, frame, lo, hi)?;
        for (i, line) in lines.iter().enumerate() {
            let series = i / PERCENTILES.len();
            let kind = QUANTILE_LINES[i % PERCENTILES.len()];
            // A bucket without ok operations breaks the line rather than bridging the gap.
            for run in runs(line) {
                let xy = run
                    .into_iter()
                    .map(|(b, v)| (frame.bucket_mid(b), v.clamp(lo, hi)))
                    .collect();
                draw_line(&mut chart, xy, frame.colour(series), kind)?;
            }
        }
        Ok(())
    })
}

/// The maximal runs of consecutive `Some`s, with their indices. A lone point becomes a
/// zero-length run of two, so it still shows as a dot.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current: Vec<(usize, f64)> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => current.push((i, *v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    for run in &mut out {
        if run.len() == 1 {
            run.push(run[0]);
        }
    }
    out
}

const OUTCOME_LINES: [(Outcome, LineKind); 3] = [
    (Outcome::Ok, LineKind::Thick),
    (Outcome::Fail, LineKind::Dashed),
    (Outcome::Info, LineKind::Dotted),
];

/// Completions per second per `f` and outcome, by bucket of completion time. A series is drawn
/// over the whole run (zero where nothing completed), so stalls show as drops to zero. The last
/// bucket usually ends early, at the right edge: its count is divided by the time it covers,
/// and it is left out if that is less than half a bucket (too short a sample).
fn rate(frame: &Frame) -> Result<String, String> {
    let buckets = frame.buckets();
    let mut counts: Vec<Vec<u64>> = vec![vec![0; buckets]; frame.fs.len() * OUTCOME_LINES.len()];
    let mut any = false;
    for s in frame.spans {
        let Some(end) = s.end_ns else { continue };
        let o = OUTCOME_LINES
            .iter()
            .position(|(o, _)| *o == s.outcome)
            .unwrap_or(0);
        let bucket = frame.bucket(seconds(end)).min(buckets - 1);
        if let Some(c) = counts
            .get_mut(frame.series(s) * OUTCOME_LINES.len() + o)
            .and_then(|c| c.get_mut(bucket))
        {
            *c += 1;
            any = true;
        }
    }
    if !any {
        return Ok(note(RATE, empty_text(frame)));
    }
    // Each bucket's (middle, width covered), for those covering at least half a bucket.
    let spans: Vec<Option<(f64, f64)>> = (0..buckets)
        .map(|b| {
            let start = b as f64 * frame.bucket_s;
            let width = (frame.end_s - start).min(frame.bucket_s);
            (width >= frame.bucket_s / 2.0).then_some((start + width / 2.0, width))
        })
        .collect();
    let lines: Vec<Vec<(f64, f64)>> = counts
        .iter()
        .map(|line| {
            if line.iter().all(|c| *c == 0) {
                return Vec::new();
            }
            line.iter()
                .zip(&spans)
                .filter_map(|(c, span)| span.map(|(mid, width)| (mid, *c as f64 / width)))
                .collect()
        })
        .collect();
    let top = lines.iter().flatten().map(|(_, r)| *r).fold(0.0, f64::max);
    let hi = if top > 0.0 { top * 1.1 } else { 1.0 };
    let title = format!("{RATE}, {} buckets", duration_text(frame.bucket_s));

    let mut legend = frame.legend_fs();
    legend.push(LegendRow::Heading("outcome".into()));
    for (i, (outcome, kind)) in OUTCOME_LINES.iter().enumerate() {
        let present =
            (0..frame.fs.len()).any(|s| counts[s * OUTCOME_LINES.len() + i].iter().any(|c| *c > 0));
        if present {
            legend.push(LegendRow::Line(*kind, outcome.name().into()));
        }
    }
    legend.extend(frame.legend_faults());

    svg(|root| {
        let area = layout(root, &legend)?;
        let mut chart = ChartBuilder::on(&area)
            .caption(caption(&title).0, caption(&title).1)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..frame.end_s, 0f64..hi)
            .map_err(|e| e.to_string())?;
        draw_mesh(&mut chart, "throughput (ops/s)")?;
        draw_bands(&mut chart, frame, 0.0, hi)?;
        for (i, line) in lines.into_iter().enumerate() {
            let series = i / OUTCOME_LINES.len();
            let kind = OUTCOME_LINES[i % OUTCOME_LINES.len()].1;
            draw_line(&mut chart, line, frame.colour(series), kind)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn op(i: u64, f: &str, start_ns: u64, end_ns: Option<u64>, outcome: Outcome) -> OpSpan {
        OpSpan {
            index: i,
            process: i % 5,
            f: f.into(),
            key: Json::from(1),
            request: Json::Null,
            response: Json::Null,
            start_ns,
            end_ns,
            outcome,
        }
    }

    fn fault(kind: FaultKind, start_ns: u64, end_ns: Option<u64>) -> FaultSpan {
        FaultSpan {
            kind,
            label: kind.name().into(),
            start_ns,
            end_ns,
        }
    }

    fn is_svg(s: &str) -> bool {
        s.trim_start().starts_with("<svg") && s.trim_end().ends_with("</svg>")
    }

    /// Whether `svg` has a `<text>` element saying exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.split('<')
            .filter_map(|e| e.strip_prefix("text "))
            .any(|e| e.split_once('>').map(|(_, t)| t.trim()) == Some(text))
    }

    fn all(plots: &Plots) -> [&String; 3] {
        [&plots.latency_raw, &plots.latency_quantiles, &plots.rate]
    }

    /// A deterministic pseudo-random sequence (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// `n` operations over `seconds`, latencies 0.2–~50 ms with rare slow ones, 3% fail and
    /// 1% info, across read/write/cas.
    fn synthetic(n: u64, seconds: u64) -> Vec<OpSpan> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let fs = ["read", "write", "cas"];
        (0..n)
            .map(|i| {
                let start = i * seconds * 1_000_000_000 / n;
                let r = rng.next();
                let latency = 200_000 + r % 5_000_000 + if r % 97 == 0 { 50_000_000 } else { 0 };
                let outcome = match r % 100 {
                    0..=2 => Outcome::Fail,
                    3 => Outcome::Info,
                    _ => Outcome::Ok,
                };
                let f = fs[(rng.next() % 3) as usize];
                op(i, f, start, Some(start + latency), outcome)
            })
            .collect()
    }

    #[test]
    fn empty_history_says_no_operations() {
        let plots = render(&[], &[]);
        for svg in all(&plots) {
            assert!(is_svg(svg), "{svg}");
            assert!(has_text(svg, "no operations"), "{svg}");
        }
        // Faults but no operations.
        let plots = render(&[], &[fault(FaultKind::Kill, 5, None)]);
        for svg in all(&plots) {
            assert!(has_text(svg, "no operations"), "{svg}");
        }
    }

    #[test]
    fn a_small_history_has_bands_and_legends() {
        let spans = vec![
            op(0, "read", 0, Some(2_000_000), Outcome::Ok),
            op(1, "write", 1_000_000_000, Some(1_010_000_000), Outcome::Ok),
            op(2, "cas", 2_000_000_000, Some(2_500_000_000), Outcome::Fail),
            op(
                3,
                "write",
                3_000_000_000,
                Some(4_000_000_000),
                Outcome::Info,
            ),
            op(4, "read", 4_000_000_000, None, Outcome::Info),
            op(
                5,
                "read<&>",
                4_500_000_000,
                Some(4_600_000_000),
                Outcome::Ok,
            ),
        ];
        let faults = vec![
            fault(FaultKind::Partition, 1_500_000_000, Some(3_000_000_000)),
            fault(FaultKind::Pause, 3_500_000_000, None),
        ];
        let plots = render(&spans, &faults);
        for svg in all(&plots) {
            assert!(is_svg(svg), "{svg}");
            for text in [
                "partition",
                "pause",
                "read",
                "write",
                "cas",
                "read&lt;&amp;&gt;",
            ] {
                assert!(has_text(svg, text), "{text} missing from {svg}");
            }
            assert!(!has_text(svg, "kill"), "no kill happened: {svg}");
            assert!(has_text(svg, "time since start (s)"), "{svg}");
            assert!(!svg.contains("could not draw"), "{svg}");
        }
        assert!(has_text(&plots.latency_raw, "latency (ms)"));
        assert!(has_text(&plots.latency_raw, "fail") && has_text(&plots.latency_raw, "info"));
        assert!(has_text(&plots.latency_quantiles, "p99"));
        assert!(has_text(&plots.rate, "throughput (ops/s)"));
        assert!(has_text(&plots.rate, "fail") && has_text(&plots.rate, "info"));
    }

    #[test]
    fn a_drawing_error_becomes_a_picture_of_it() {
        let svg = or_note("Title", Err("<boom>".into()));
        assert!(is_svg(&svg), "{svg}");
        assert!(has_text(&svg, "could not draw: &lt;boom&gt;"), "{svg}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let max = u64::MAX;
        let cases: Vec<(Vec<OpSpan>, Vec<FaultSpan>)> = vec![
            // Everything at time zero, zero latency.
            (vec![op(0, "read", 0, Some(0), Outcome::Ok)], vec![]),
            // Completion before invocation; times near u64::MAX.
            (
                vec![
                    op(0, "read", 10, Some(5), Outcome::Ok),
                    op(1, "write", max - 1, Some(max), Outcome::Fail),
                ],
                vec![fault(FaultKind::Kill, max, Some(0))],
            ),
            // Only operations that never completed.
            (vec![op(0, "", 7, None, Outcome::Info)], vec![]),
            // Many distinct fs: folded into "other".
            (
                (0..50)
                    .map(|i| op(i, &format!("f{i}"), i, Some(i * 3 + 1), Outcome::Ok))
                    .collect(),
                vec![fault(FaultKind::Partition, 3, None)],
            ),
        ];
        for (spans, faults) in cases {
            let plots = render(&spans, &faults);
            for svg in all(&plots) {
                assert!(is_svg(svg), "{svg}");
                assert!(!svg.contains("could not draw"), "{svg}");
            }
        }
    }

    #[test]
    fn a_huge_history_stays_small() {
        let spans = synthetic(200_000, 600);
        let faults = vec![
            fault(FaultKind::Partition, 60_000_000_000, Some(90_000_000_000)),
            fault(FaultKind::Kill, 200_000_000_000, Some(230_000_000_000)),
            fault(FaultKind::Pause, 400_000_000_000, None),
        ];
        let plots = render(&spans, &faults);
        for (name, svg) in [
            ("latency-raw", &plots.latency_raw),
            ("latency-quantiles", &plots.latency_quantiles),
            ("rate", &plots.rate),
        ] {
            println!("{name}: {} bytes", svg.len());
            assert!(is_svg(svg));
            assert!(svg.len() < 3_000_000, "{name}: {} bytes", svg.len());
        }
        assert!(plots.latency_raw.contains(" shown)"));
        assert!(has_text(&plots.latency_raw, "+ slowest per bucket"));
        // Rendering is deterministic.
        assert_eq!(plots, render(&spans, &faults));
    }

    #[test]
    fn worst_case_markers_stay_small() {
        // Every outcome alike, many fs (folded into 9 series), with and without thinning.
        for (n, outcome, fs) in [
            (MAX_RAW_POINTS as u64, Outcome::Fail, 50),
            (200_000, Outcome::Fail, 50),
            (200_000, Outcome::Info, 50),
            (200_000, Outcome::Ok, 50),
        ] {
            let spans: Vec<OpSpan> = synthetic(n, 600)
                .into_iter()
                .enumerate()
                .map(|(i, s)| OpSpan {
                    f: format!("f{}", i % fs),
                    outcome,
                    ..s
                })
                .collect();
            let svg = render(&spans, &[]).latency_raw;
            println!(
                "{n} {} ops, {fs} fs: latency-raw {} bytes",
                outcome.name(),
                svg.len()
            );
            assert!(svg.len() < 3_000_000, "{}", svg.len());
        }
    }

    #[test]
    fn downsampling_keeps_the_slowest_and_stays_within_budget() {
        let spans = synthetic(100_000, 100);
        let frame = Frame::new(&spans, &[]);
        let points: Vec<RawPoint> = spans
            .iter()
            .map(|s| RawPoint {
                series: frame.series(s),
                outcome: s.outcome,
                bucket: frame.bucket(seconds(s.start_ns)),
                start_s: seconds(s.start_ns),
                latency_ms: millis(s.latency_ns().unwrap_or(0)),
            })
            .collect();
        let (keep, ok_stride, rare_stride) = downsample(&points);
        let kept = keep.iter().filter(|k| **k).count();
        assert!(kept <= MAX_RAW_POINTS + 2 * frame.fs.len() * 3, "{kept}");
        assert!(
            ok_stride > 1 && rare_stride == 1,
            "{ok_stride} {rare_stride}"
        );
        let slowest = points
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.latency_ms.total_cmp(&b.1.latency_ms))
            .map(|(i, _)| i);
        assert_eq!(slowest.map(|i| keep[i]), Some(true));
        assert!(points
            .iter()
            .zip(&keep)
            .all(|(p, k)| p.outcome == Outcome::Ok || *k));
    }

    #[test]
    fn write_puts_three_files_in_plots() {
        let dir = std::env::temp_dir().join(format!("raftlab-plots-{}", std::process::id()));
        let plots = render(&synthetic(100, 1), &[]);
        write(&dir, &plots).unwrap();
        for name in ["latency-raw.svg", "latency-quantiles.svg", "rate.svg"] {
            let text = std::fs::read_to_string(dir.join("plots").join(name)).unwrap();
            assert!(is_svg(&text));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn helpers_round_and_shorten() {
        assert_eq!(nice_width(0.3), 0.5);
        assert_eq!(nice_width(6.0), 10.0);
        assert_eq!(nice_width(1.0), 1.0);
        assert_eq!(nice_width(0.0), 1.0);
        assert_eq!(decades(2.0, 8.0), (1.0, 10.0));
        assert_eq!(decades(0.0, 0.0), (1e-3, 1e-2));
        assert_eq!(shorten("read"), "read");
        assert_eq!(
            shorten("function-with-a-long-name-12"),
            "function…g-name-12"
        );
        assert_eq!(number_label(&10.0), "10");
        assert_eq!(number_label(&2.5), "2.5");
        assert_eq!(number_label(&0.001), "0.001");
        assert_eq!(number_label(&0.0001), "0.0001");
        assert_eq!(number_label(&0.30000000000000004), "0.3");
    }
}
