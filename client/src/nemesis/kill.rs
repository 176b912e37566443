//! The `kill` nemesis: SIGKILL a node (a crash: only what it made durable survives), and start
//! it again when the fault ends. Recorded as `kill` and `start` events with `{"node": N}`.

use super::{record, Db, DbError};
use crate::history::Recorder;
use model::core::NodeId;
use serde_json::json;

/// Kills `node`; records `kill` (with the error, if it failed).
pub fn kill(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.kill(node);
    record(recorder, "kill", json!({ "node": node }), &result);
    result
}

/// Starts `node` again; records `start`.
pub fn restart(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.start(node);
    record(recorder, "start", json!({ "node": node }), &result);
    result
}
