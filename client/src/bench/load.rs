//! The closed-loop load generator, the same for every system: C sequential clients (one
//! operation in flight each, a [`SystemClient`]: the lab's own client of that system), each
//! on its own key, or all on one key for `cas-shared`.
//!
//! A cell runs in two phases. Set-up: every client writes its key once (which also registers
//! a raftlab client's session), so the measured operations find the key and no session
//! registration falls in the window. Then every client loops until the window's end: the
//! operations that complete inside `[start, end]` are counted and their latencies kept; those
//! before `start` are the warm-up.
//!
//! - `write` writes the next integer; `read` reads (linearizably) the value written at
//!   set-up; `cas` moves the key from the value the client last wrote to the next, so every
//!   cas matches.
//! - `cas-shared`: every client compares against the value it last saw on the one shared key
//!   and sets the next; a failed comparison is an answer too (counted apart) and tells the
//!   client the current value for its next try.
//! - Any other end (a refusal, a timeout, an unknown outcome) is an error: counted, its first
//!   reason kept, its latency left out.

use super::BenchOp;
use crate::kv::system::SystemClient;
use crate::kv::OpResult;
use model::kv::{Operation, Outcome, Value};
use std::time::Instant;
use tokio::task::JoinSet;

/// What the clients of one cell saw inside the window.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latencies (µs) of the operations completed inside the window: ok and failed
    /// comparisons.
    pub micros: Vec<u32>,
    pub ok: u64,
    /// `cas` answers whose comparison failed (only `cas-shared` expects them).
    pub failed_compare: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.micros.extend(other.micros);
        self.ok += other.ok;
        self.failed_compare += other.failed_compare;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Operations answered inside the window (ok and failed comparisons).
    pub fn answered(&self) -> u64 {
        self.ok + self.failed_compare
    }
}

/// One client and what it knows of its key.
pub struct Worker {
    client: SystemClient,
    op: BenchOp,
    key: String,
    /// The value the client last wrote or saw on its key.
    value: i64,
}

/// Sets `clients` up for cell `cell` of operation `op`: each writes 0 to its key
/// (`b<cell>-<client>`, or `b<cell>-shared` for every client of `cas-shared`).
pub async fn set_up(
    clients: Vec<SystemClient>,
    op: BenchOp,
    cell: usize,
) -> Result<Vec<Worker>, String> {
    let mut tasks = JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        let key = match op {
            BenchOp::CasShared => format!("b{cell}-shared"),
            _ => format!("b{cell}-{i}"),
        };
        tasks.spawn(async move {
            let mut worker = Worker {
                client,
                op,
                key,
                value: 0,
            };
            let write = Operation::Write {
                key: worker.key.clone(),
                value: Value::Int(0),
            };
            match worker.client.execute(write).await {
                OpResult::Ok(_) => Ok(worker),
                other => Err(format!("setting key {} up: {other:?}", worker.key)),
            }
        });
    }
    let mut workers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        workers.push(joined.map_err(|e| format!("a client task failed: {e}"))??);
    }
    Ok(workers)
}

/// Runs every worker until `end`; tallies what completed in `[start, end]`.
pub async fn run(workers: Vec<Worker>, start: Instant, end: Instant) -> Result<Tally, String> {
    let mut tasks = JoinSet::new();
    for worker in workers {
        tasks.spawn(worker.run(start, end));
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.merge(joined.map_err(|e| format!("a client task failed: {e}"))?);
    }
    Ok(tally)
}

/// How one answer counts.
#[derive(Debug, PartialEq)]
enum Counted {
    Ok,
    FailedCompare,
    Error(String),
}

impl Worker {
    fn next_op(&self) -> Operation {
        let key = self.key.clone();
        match self.op {
            BenchOp::Write => Operation::Write {
                key,
                value: Value::Int(self.value + 1),
            },
            BenchOp::Read => Operation::Read { key },
            BenchOp::Cas | BenchOp::CasShared => Operation::Cas {
                key,
                expected: Some(Value::Int(self.value)),
                new: Value::Int(self.value + 1),
            },
        }
    }

    async fn run(mut self, start: Instant, end: Instant) -> Tally {
        let mut tally = Tally::default();
        loop {
            let op = self.next_op();
            let began = Instant::now();
            let result = self.client.execute(op).await;
            let done = Instant::now();
            let counted = count(self.op, &mut self.value, result);
            if done >= start && done <= end {
                let micros = u32::try_from((done - began).as_micros()).unwrap_or(u32::MAX);
                match counted {
                    Counted::Ok => {
                        tally.ok += 1;
                        tally.micros.push(micros);
                    }
                    Counted::FailedCompare => {
                        tally.failed_compare += 1;
                        tally.micros.push(micros);
                    }
                    Counted::Error(why) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(why);
                    }
                }
            }
            if done >= end {
                return tally;
            }
        }
    }
}

/// How `result` of an `op` counts; updates `value`, what the client knows its key holds.
fn count(op: BenchOp, value: &mut i64, result: OpResult) -> Counted {
    match (op, result) {
        (BenchOp::Write | BenchOp::Cas | BenchOp::CasShared, OpResult::Ok(Outcome::Written)) => {
            *value += 1;
            Counted::Ok
        }
        (BenchOp::Read, OpResult::Ok(Outcome::Value(_))) => Counted::Ok,
        (
            BenchOp::Cas | BenchOp::CasShared,
            OpResult::Fail {
                outcome: Some(Outcome::CasMismatch { current }),
                ..
            },
        ) => {
            if let Some(Value::Int(now)) = current {
                *value = now;
            }
            if op == BenchOp::CasShared {
                Counted::FailedCompare
            } else {
                Counted::Error(format!("a cas on the client's own key found {current:?}"))
            }
        }
        (_, other) => Counted::Error(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(current: i64) -> OpResult {
        OpResult::Fail {
            reason: "cas mismatch".into(),
            outcome: Some(Outcome::CasMismatch {
                current: Some(Value::Int(current)),
            }),
        }
    }

    #[test]
    fn a_shared_cas_learns_the_current_value_from_a_failed_comparison() {
        let mut value = 0;
        assert_eq!(
            count(BenchOp::CasShared, &mut value, mismatch(7)),
            Counted::FailedCompare
        );
        assert_eq!(value, 7);
        let written = OpResult::Ok(Outcome::Written);
        assert_eq!(count(BenchOp::CasShared, &mut value, written), Counted::Ok);
        assert_eq!(value, 8);
    }

    #[test]
    fn a_failed_comparison_on_an_own_key_and_any_other_end_are_errors() {
        let mut value = 3;
        assert!(matches!(
            count(BenchOp::Cas, &mut value, mismatch(5)),
            Counted::Error(_)
        ));
        assert!(matches!(
            count(
                BenchOp::Write,
                &mut value,
                OpResult::Info("timed out".into())
            ),
            Counted::Error(_)
        ));
        let read = OpResult::Ok(Outcome::Value(Some(Value::Int(0))));
        assert_eq!(count(BenchOp::Read, &mut value, read), Counted::Ok);
    }
}
