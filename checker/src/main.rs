//! `raft-check`: checks a history for linearizability.
//!
//! Exit codes (`docs/cli.md`): 0 valid, 1 invalid, 2 unknown (gave up), 3 bad input or usage.

use anyhow::{anyhow, Context, Result};
use checker::history::{self, Format, Value};
use checker::{check, html, CheckOptions, ModelKind, Report, Verdict};
use clap::{Parser, ValueEnum};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Checks a JSON Lines or Jepsen EDN history for linearizability.
#[derive(Parser, Debug)]
#[command(name = "raft-check", version)]
struct Cli {
    /// The history file (`.jsonl` or `.edn`).
    history: PathBuf,
    /// The sequential model the history is checked against.
    #[arg(long, value_enum, default_value_t = ModelArg::CasRegister)]
    model: ModelArg,
    /// Initial value of every register, as JSON (null, an integer or a string).
    #[arg(long, default_value = "null")]
    initial: String,
    /// History format; by default taken from the file extension.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Give up after this many seconds: the verdict is then "unknown" (exit 2).
    #[arg(long)]
    timeout: Option<f64>,
    /// Memory for search state, in MiB; beyond it the verdict is "unknown" (exit 2).
    #[arg(long, default_value_t = 2048)]
    memory_limit_mib: usize,
    /// Check every key and explain every anomaly instead of stopping at the first.
    #[arg(long)]
    all_anomalies: bool,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML page showing the failing key(s).
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    CasRegister,
    Mutex,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Jsonl,
    Edn,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version are not errors.
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(3);
        }
    };
    match run(&cli) {
        Ok(verdict) => ExitCode::from(verdict.exit_code() as u8),
        Err(e) => {
            eprintln!("raft-check: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: &Cli) -> Result<Verdict> {
    let model = match cli.model {
        ModelArg::CasRegister => ModelKind::CasRegister {
            initial: parse_initial(&cli.initial)?,
        },
        ModelArg::Mutex => ModelKind::Mutex,
    };
    let timeout = match cli.timeout {
        Some(t) if !(t.is_finite() && t >= 0.0) => {
            return Err(anyhow!(
                "--timeout must be a non-negative number of seconds, got {t}"
            ))
        }
        Some(t) => Some(Duration::from_secs_f64(t)),
        None => None,
    };
    let format = cli.format.map(|f| match f {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Edn => Format::Edn,
    });
    let ops = history::read_file(&cli.history, format)
        .with_context(|| cli.history.display().to_string())?;

    let options = CheckOptions {
        model,
        timeout,
        memory_limit: cli.memory_limit_mib.saturating_mul(1 << 20),
        all_anomalies: cli.all_anomalies,
    };
    let report = check(ops, &options).with_context(|| cli.history.display().to_string())?;

    if let Some(path) = &cli.html {
        let page = html::render(&report, &cli.history.display().to_string());
        std::fs::write(path, page).with_context(|| format!("--html {}", path.display()))?;
    }
    let text = if cli.json {
        format!("{}\n", serde_json::to_string(&report)?)
    } else {
        summary(&report)
    };
    // A reader that stops early (`raft-check h.jsonl | head -1`) is not an error: the
    // verdict's exit code still stands.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("cannot write to stdout")
        }
        _ => {}
    }
    Ok(report.valid)
}

/// `--initial`: a JSON null, integer or string.
fn parse_initial(text: &str) -> Result<Value> {
    serde_json::from_str::<Value>(text)
        .map_err(|_| anyhow!("--initial must be JSON null, an integer or a string, got {text}"))
}

/// The report in words.
fn summary(report: &Report) -> String {
    let mut out = String::new();
    let verdict = match report.valid {
        Verdict::Valid => "VALID: linearizable",
        Verdict::Invalid => "INVALID: not linearizable",
        Verdict::Unknown => "UNKNOWN: the check gave up",
    };
    let _ = writeln!(out, "{verdict}");
    let _ = writeln!(
        out,
        "model {}, {} ops, {} keys, {:.3} s",
        report.model, report.ops, report.keys, report.seconds
    );
    for key in &report.worst_keys {
        let _ = writeln!(
            out,
            "  key {}: {} ops, {:?}, {:.3} s",
            key.key, key.ops, key.method, key.seconds
        );
    }
    for key in &report.unknown_keys {
        let _ = writeln!(
            out,
            "  key {} gave up: {}",
            key.key,
            key.gave_up.as_deref().unwrap_or("?")
        );
    }
    for anomaly in &report.anomalies {
        let _ = writeln!(out, "anomaly on key {}: {}", anomaly.key, anomaly.message);
        if !anomaly.prefix.is_empty() {
            let _ = writeln!(out, "  end of the longest linearizable prefix:");
            for op in &anomaly.prefix {
                let _ = writeln!(
                    out,
                    "    line {:>6}  process {:>3}  {} {}",
                    op.line, op.process, op.f, op.value
                );
            }
        }
    }
    out
}
