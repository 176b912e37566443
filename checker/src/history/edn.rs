//! Jepsen/Knossos EDN histories (`history.edn`).
// TODO(helper): implement `parse(input: &[u8]) -> Result<Vec<Event>, HistoryError>`.
