//! Checking recorded events with the checker library: the one place the lab turns its
//! records into the checker's input, for the check at the end of a run and the checks while
//! it goes.

use anyhow::anyhow;
use std::time::Duration;

/// The line an event has in `history.jsonl`.
pub fn history_line(event: &crate::history::Record) -> usize {
    usize::try_from(event.index.saturating_add(1)).unwrap_or(usize::MAX)
}

/// The events as JSON Lines, one per line, in order.
pub fn history_text(events: &[crate::history::Record]) -> String {
    let mut text = String::with_capacity(events.len() * 96);
    for event in events {
        checker::history::jsonl::write_record(&mut text, event);
    }
    text
}

/// Checks JSON Lines text of recorded events (a whole history, or one key of a prefix of
/// one: an invoke without completion is indeterminate) against the register model, within
/// `timeout`; blocks, on the current rayon pool. `lines`, when the text is part of the
/// history, gives each of its lines' line in the whole history, so that an anomaly names the
/// lines of `history.jsonl`.
pub fn check_text(
    text: &str,
    lines: Option<&[usize]>,
    timeout: Option<Duration>,
) -> anyhow::Result<checker::Report> {
    let mut ops = checker::history::parse(text.as_bytes(), checker::history::Format::Jsonl)
        .map_err(|e| anyhow!("the recorded history does not parse (a lab bug): {e}"))?;
    if let Some(lines) = lines {
        let line = |l: usize| lines.get(l.wrapping_sub(1)).copied().unwrap_or(l);
        for op in &mut ops {
            op.invoke_line = line(op.invoke_line);
            op.complete_line = op.complete_line.map(line);
        }
    }
    let mut options = checker::CheckOptions::new(checker::ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    options.timeout = timeout;
    checker::check(ops, &options).map_err(|e| anyhow!("checking the history: {e}"))
}
