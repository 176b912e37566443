//! The contract's JSON Lines history format (`history.jsonl`).
// TODO(helper): implement `parse(input: &[u8]) -> Result<Vec<Event>, HistoryError>`.
