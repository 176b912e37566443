//! The `pause` nemesis: SIGSTOP a node (a long GC pause or a frozen VM: it keeps its memory and
//! its sockets, and wakes up believing whatever it believed), and SIGCONT it when the fault
//! ends. Recorded as `pause` and `resume` events with `{"node": N}`.

use super::{record, Db, DbError};
use crate::history::Recorder;
use model::core::NodeId;
use serde_json::json;

/// Pauses `node`; records `pause` (with the error, if it failed).
pub fn pause(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.pause(node);
    record(recorder, "pause", json!({ "node": node }), &result);
    result
}

/// Resumes `node`; records `resume`.
pub fn resume(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.resume(node);
    record(recorder, "resume", json!({ "node": node }), &result);
    result
}
