//! The storage faults: what a node finds on its disk after a power cut, a full disk, and bit
//! rot.
//!
//! - `power-cut` and `lose-unsynced` kill nodes (see [`super::kill`]), then their lazy disks
//!   drop every write and directory change not yet synced ([`lose_unsynced`]). `lose-unsynced`
//!   also tears the node's last unsynced write of each file (a seeded subset of its pages
//!   lands, in any order): a node must recover from that alone, since no acknowledged write
//!   is in it. A power cut drops whole writes: on every node at once, torn logs could leave
//!   no majority able to start, and a bug that loses acknowledged writes would then show as
//!   a dead cluster rather than as the lost writes it is. The nodes restart at the fault's
//!   end with what they had made durable.
//! - `disk-full`: a node's lazy disk refuses writes that need new space ([`fill`]) and the
//!   node is restarted on it (a crash on a full disk; a node that keeps running would write
//!   into the space its log had allocated ahead and not notice a short fault), until
//!   [`free`]. The node must refuse writes, lose nothing, and carry on by itself.
//! - `corrupt`: a node is killed, one bit of a synced record of its log flipped, and it is
//!   started: it must refuse to start, naming the file and the record's offset ([`corrupt`]).
//!   At the fault's end the bit is flipped back and the node started ([`repair`]).
//!
//! Recorded as `lose-unsynced` (`{"node", "torn", "answer"}`), `disk-full` and `disk-free`
//! (`{"node"}`), `corrupt` (`{"node", "file", "offset", "record"}`), `refused`
//! (`{"node", "code", "reason"}`) and `repair` (`{"node", "file", "offset"}`), beside the
//! `kill` and `start` events of the kills and restarts.

use super::{kill, record, Db, DbError};
use crate::db::{DiskCommand, Exit};
use crate::history::Recorder;
use model::core::NodeId;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a node whose log was damaged may take to refuse to start.
const REFUSAL_PATIENCE: Duration = Duration::from_secs(10);

/// The bit `corrupt` flips (any single bit breaks the record's checksum).
const FLIP_MASK: u8 = 0x04;

/// Drops node `node`'s unsynced writes (the node must be down), tearing the last ones if
/// `torn`; records `lose-unsynced` with the disk's answer.
pub fn lose_unsynced(
    control: &mut dyn Db,
    recorder: &Recorder,
    node: NodeId,
    torn: bool,
) -> Result<String, DbError> {
    let command = if torn {
        DiskCommand::Tear
    } else {
        DiskCommand::LoseUnsynced
    };
    let result = control.disk(node, command);
    let answer = result.as_deref().unwrap_or_default();
    record(
        recorder,
        "lose-unsynced",
        json!({ "node": node, "torn": torn, "answer": answer }),
        &result.as_ref().map(drop),
    );
    result
}

/// Fills node `node`'s disk; records `disk-full`.
pub fn fill(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.disk(node, DiskCommand::Fill).map(drop);
    record(recorder, "disk-full", json!({ "node": node }), &result);
    result
}

/// Gives node `node`'s disk its space back; records `disk-free`.
pub fn free(control: &mut dyn Db, recorder: &Recorder, node: NodeId) -> Result<(), DbError> {
    let result = control.disk(node, DiskCommand::Free).map(drop);
    record(recorder, "disk-free", json!({ "node": node }), &result);
    result
}

/// A flipped bit, to flip back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub node: NodeId,
    pub file: PathBuf,
    pub offset: u64,
}

/// What came of a `corrupt` fault.
#[derive(Debug)]
pub enum Corrupted {
    /// The node refused to start, naming the file and offset: as it must.
    Refused(Damage),
    /// Something went wrong; `damage` is there to repair if a bit was flipped.
    Failed {
        damage: Option<Damage>,
        error: String,
    },
}

/// Kills `node`, flips a bit of a synced record of its log (chosen by `seed`), starts it and
/// waits for it to refuse. A node that starts anyway, or refuses without naming the file and
/// the record's offset, is a failure (a finding: it trusts a damaged log).
pub async fn corrupt(
    control: &Arc<Mutex<dyn Db>>,
    recorder: &Recorder,
    node: NodeId,
    seed: u64,
) -> Corrupted {
    let (control, recorder) = (control.clone(), recorder.clone());
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means a panic elsewhere; the cluster is still there.
        let mut db = control.lock().unwrap_or_else(|p| p.into_inner());
        corrupt_now(&mut *db, &recorder, node, seed)
    })
    .await
    .unwrap_or_else(|e| Corrupted::Failed {
        damage: None,
        error: format!("corrupt: {e}"),
    })
}

fn corrupt_now(db: &mut dyn Db, recorder: &Recorder, node: NodeId, seed: u64) -> Corrupted {
    let failed = |damage: Option<Damage>, error: String| Corrupted::Failed { damage, error };
    let Some(data_dir) = db.data_dir(node) else {
        return failed(
            None,
            format!("corrupt: node {node}'s data directory is not on this machine"),
        );
    };
    if let Err(e) = kill::kill(db, recorder, node) {
        return failed(None, e.to_string());
    }
    let target = match node::storage::damage::target(&data_dir, seed) {
        Ok(Some(target)) => target,
        Ok(None) => {
            let _ = kill::restart(db, recorder, node);
            return failed(
                None,
                format!("corrupt: node {node}'s log holds no synced record yet"),
            );
        }
        Err(e) => {
            let _ = kill::restart(db, recorder, node);
            return failed(None, format!("corrupt: node {node}: {e}"));
        }
    };
    let flipped = node::storage::damage::flip(&target.file, target.offset, FLIP_MASK);
    record(
        recorder,
        "corrupt",
        json!({
            "node": node,
            "file": target.file.display().to_string(),
            "offset": target.offset,
            "record": target.record,
        }),
        &flipped,
    );
    if let Err(e) = flipped {
        let _ = kill::restart(db, recorder, node);
        return failed(None, format!("corrupt: node {node}: {e}"));
    }
    let damage = Damage {
        node,
        file: target.file.clone(),
        offset: target.offset,
    };
    if let Err(e) = kill::restart(db, recorder, node) {
        return failed(Some(damage), e.to_string());
    }
    match db.wait_exit(node, REFUSAL_PATIENCE) {
        Ok(Some(Exit { code, log_tail })) => {
            let reason = refusal_line(&log_tail, &target.file.display().to_string());
            let names_it = reason
                .as_deref()
                .is_some_and(|line| line.contains(&format!("byte offset {}", target.record)));
            let result = if names_it {
                Ok(())
            } else {
                Err(format!(
                    "node {node} exited (code {code:?}) without naming {} at byte offset {}",
                    target.file.display(),
                    target.record
                ))
            };
            record(
                recorder,
                "refused",
                json!({ "node": node, "code": code, "reason": reason }),
                &result,
            );
            match result {
                Ok(()) => Corrupted::Refused(damage),
                Err(error) => failed(Some(damage), error),
            }
        }
        Ok(None) => failed(
            Some(damage),
            format!(
                "node {node} started on a log damaged at {} byte {} (record at {}): it must refuse",
                target.file.display(),
                target.offset,
                target.record
            ),
        ),
        Err(e) => failed(Some(damage), e.to_string()),
    }
}

/// The last line of `log` naming `file`.
fn refusal_line(log: &str, file: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|line| line.contains(file))
        .map(|line| line.trim().to_string())
}

/// Flips the damaged bit back (the node must be down: it refused to start, or is killed
/// now) and starts the node; records `repair` and `start`.
pub fn repair(control: &mut dyn Db, recorder: &Recorder, damage: &Damage) -> Result<(), DbError> {
    let node = damage.node;
    // A node that started on the damaged log is still running: stop it first.
    if control.kill(node).is_ok() {
        record(
            recorder,
            "kill",
            json!({ "node": node }),
            &Ok::<(), DbError>(()),
        );
    }
    let result = node::storage::damage::flip(&damage.file, damage.offset, FLIP_MASK)
        .map_err(DbError::of("repair the log of", node));
    record(
        recorder,
        "repair",
        json!({
            "node": node,
            "file": damage.file.display().to_string(),
            "offset": damage.offset,
        }),
        &result,
    );
    result?;
    kill::restart(control, recorder, node)
}
