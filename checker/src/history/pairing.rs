//! Pairs invocations with completions.
// TODO(helper): implement `pair(events: &[Event]) -> Result<Vec<Op>, HistoryError>`.
