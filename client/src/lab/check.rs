//! Checking recorded events with the checker library: the one place the lab turns its
//! records into the checker's input, for the check at the end of a run and the checks while
//! it goes.

use anyhow::anyhow;
use std::time::Duration;

/// Checks recorded events (a whole history, or some keys of a prefix of one: an invoke
/// without completion is indeterminate) against the register model, within `timeout`.
/// Blocks; runs on the current rayon pool.
pub fn check_records(
    events: &[crate::history::Record],
    timeout: Option<Duration>,
) -> anyhow::Result<checker::Report> {
    check_text(&history_text(events), timeout)
}

/// The events as JSON Lines, each on the line it has in `history.jsonl` (the parser skips
/// blank lines), so that an anomaly found in part of the history names the lines of the
/// whole.
pub fn history_text(events: &[crate::history::Record]) -> String {
    let mut text = String::with_capacity(events.len() * 96);
    let mut line = 0;
    for event in events {
        for _ in line..event.index {
            text.push('\n');
        }
        line = line.max(event.index + 1);
        checker::history::jsonl::write_record(&mut text, event);
    }
    text
}

/// Checks [`history_text`]'s text; see [`check_records`].
pub fn check_text(text: &str, timeout: Option<Duration>) -> anyhow::Result<checker::Report> {
    let ops = checker::history::parse(text.as_bytes(), checker::history::Format::Jsonl)
        .map_err(|e| anyhow!("the recorded history does not parse (a lab bug): {e}"))?;
    let mut options = checker::CheckOptions::new(checker::ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    options.timeout = timeout;
    checker::check(ops, &options).map_err(|e| anyhow!("checking the history: {e}"))
}
