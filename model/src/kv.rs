//! The replicated key-value state machine, with client sessions for exactly-once semantics.
//!
//! Every command carries its client's id and a sequence number. A client has at most one
//! request outstanding (each lab process is sequential), so the session keeps the last
//! sequence number applied and its result: a retry of that request gets the original result
//! back instead of being applied twice (thesis 6.3).

use crate::bugs::{Bug, Bugs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A register's value. A key that was never written has no value (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Str(String),
}

/// The operations on one key (the `f` of a history event).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Linearizable reads normally go through ReadIndex and never enter the log; a read
    /// command exists so that reads can also be ordered through the log.
    Read {
        key: String,
    },
    Write {
        key: String,
        value: Value,
    },
    Cas {
        key: String,
        expected: Option<Value>,
        new: Value,
    },
    /// Appends a string to the key's string value (absent counts as empty).
    Append {
        key: String,
        suffix: String,
    },
}

impl Operation {
    pub fn key(&self) -> &str {
        match self {
            Operation::Read { key }
            | Operation::Write { key, .. }
            | Operation::Cas { key, .. }
            | Operation::Append { key, .. } => key,
        }
    }
}

/// A client request as it travels through the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: u64,
    pub seq: u64,
    pub op: Operation,
}

/// What applying an operation produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// A read's value (or a write's/append's new value).
    Value(Option<Value>),
    Written,
    /// A cas whose expected value did not match: it certainly had no effect.
    CasMismatch {
        current: Option<Value>,
    },
    /// An append to a key holding an integer: rejected, no effect.
    NotAString,
    /// A request older than the client's last one: the client already has its answer, and
    /// this copy was not applied.
    Stale,
}

/// The last request a client had applied, and its result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Session {
    seq: u64,
    outcome: Outcome,
}

/// The state machine: the data and the client sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Kv {
    data: BTreeMap<String, Value>,
    sessions: BTreeMap<u64, Session>,
    #[serde(skip)]
    bugs: Bugs,
}

/// A snapshot that does not decode (corrupt or from another version).
#[derive(Debug, thiserror::Error)]
#[error("undecodable state-machine snapshot: {0}")]
pub struct BadSnapshot(#[from] postcard::Error);

impl Kv {
    pub fn new(bugs: Bugs) -> Self {
        Kv {
            bugs,
            ..Kv::default()
        }
    }

    /// Applies a committed command exactly once per (client, seq).
    pub fn apply(&mut self, command: &Command) -> Outcome {
        if !self.bugs.has(Bug::NoDedup) {
            if let Some(session) = self.sessions.get(&command.client) {
                if command.seq == session.seq {
                    return session.outcome.clone();
                }
                if command.seq < session.seq {
                    return Outcome::Stale;
                }
            }
        }
        let outcome = self.execute(&command.op);
        self.sessions.insert(
            command.client,
            Session {
                seq: command.seq,
                outcome: outcome.clone(),
            },
        );
        outcome
    }

    /// A read outside the log (after ReadIndex): no session involved.
    pub fn read(&self, key: &str) -> Option<Value> {
        self.data.get(key).cloned()
    }

    fn execute(&mut self, op: &Operation) -> Outcome {
        match op {
            Operation::Read { key } => Outcome::Value(self.read(key)),
            Operation::Write { key, value } => {
                self.data.insert(key.clone(), value.clone());
                Outcome::Written
            }
            Operation::Cas { key, expected, new } => {
                let current = self.read(key);
                if current == *expected {
                    self.data.insert(key.clone(), new.clone());
                    Outcome::Written
                } else {
                    Outcome::CasMismatch { current }
                }
            }
            Operation::Append { key, suffix } => {
                let appended = match self.data.get(key) {
                    None => suffix.clone(),
                    Some(Value::Str(s)) => format!("{s}{suffix}"),
                    Some(Value::Int(_)) => return Outcome::NotAString,
                };
                self.data.insert(key.clone(), Value::Str(appended.clone()));
                Outcome::Value(Some(Value::Str(appended)))
            }
        }
    }

    /// The whole state, sessions included, as bytes for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        // Serialising plain maps of strings and integers cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Replaces the state with a snapshot's.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), BadSnapshot> {
        let bugs = self.bugs;
        *self = postcard::from_bytes(bytes)?;
        self.bugs = bugs;
        Ok(())
    }

    /// Number of keys holding a value.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client: u64, seq: u64, key: &str, v: i64) -> Command {
        Command {
            client,
            seq,
            op: Operation::Write {
                key: key.into(),
                value: Value::Int(v),
            },
        }
    }

    #[test]
    fn retried_request_is_applied_once_and_returns_the_original_result() {
        let mut kv = Kv::new(Bugs::none());
        let append = Command {
            client: 1,
            seq: 1,
            op: Operation::Append {
                key: "k".into(),
                suffix: "a".into(),
            },
        };
        let first = kv.apply(&append);
        assert_eq!(kv.apply(&append), first);
        assert_eq!(kv.read("k"), Some(Value::Str("a".into())));
    }

    #[test]
    fn no_dedup_bug_applies_a_retry_twice() {
        let mut kv = Kv::new(Bugs::none().with(Bug::NoDedup));
        let append = Command {
            client: 1,
            seq: 1,
            op: Operation::Append {
                key: "k".into(),
                suffix: "a".into(),
            },
        };
        kv.apply(&append);
        kv.apply(&append);
        assert_eq!(kv.read("k"), Some(Value::Str("aa".into())));
    }

    #[test]
    fn older_request_is_stale_and_not_applied() {
        let mut kv = Kv::new(Bugs::none());
        kv.apply(&write(1, 2, "k", 2));
        assert_eq!(kv.apply(&write(1, 1, "k", 1)), Outcome::Stale);
        assert_eq!(kv.read("k"), Some(Value::Int(2)));
    }

    #[test]
    fn cas_matches_or_reports_the_current_value() {
        let mut kv = Kv::new(Bugs::none());
        kv.apply(&write(1, 1, "k", 1));
        let cas = |seq, expected, new| Command {
            client: 2,
            seq,
            op: Operation::Cas {
                key: "k".into(),
                expected: Some(Value::Int(expected)),
                new: Value::Int(new),
            },
        };
        assert_eq!(kv.apply(&cas(1, 1, 5)), Outcome::Written);
        assert_eq!(
            kv.apply(&cas(2, 1, 6)),
            Outcome::CasMismatch {
                current: Some(Value::Int(5))
            }
        );
    }

    #[test]
    fn snapshot_round_trips_data_and_sessions() {
        let mut kv = Kv::new(Bugs::none());
        kv.apply(&write(1, 1, "a", 1));
        kv.apply(&write(2, 7, "b", 2));
        let mut restored = Kv::new(Bugs::none());
        restored.restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.apply(&write(2, 7, "b", 9)), Outcome::Written);
        assert_eq!(restored.read("b"), Some(Value::Int(2)));
    }

    #[test]
    fn garbage_snapshot_is_an_error_not_a_panic() {
        let mut kv = Kv::new(Bugs::none());
        assert!(kv.restore(&[0xff, 0xff, 0xff]).is_err());
    }
}
