//! The operations clients issue: Jepsen's "independent" generator over fresh keys.
//!
//! All client processes work on one key at a time; after a bounded number of operations
//! (at most [`MAX_OPS_PER_KEY`]) they move on to a fresh key, so that each key's sub-history
//! stays small and the checker's search cheap, while every key still sees concurrent
//! operations (append keys get fewer operations and more reads: see
//! [`MAX_OPS_PER_APPEND_KEY`]). A key is either a register key (read / write / cas of integers) or an append
//! key (read / append of strings). Written values are unique per key (the checker's fast path
//! for registers), and appended strings are unique, so a duplicated append shows in reads.
//! A key is also retired early once a few of its operations ended indeterminate
//! ([`MAX_INFOS_PER_KEY`]).

use super::rng::Rng;
use crate::kv::{Operation, Value};
use serde_json::{json, Value as Json};

/// The most operations invoked on one key.
pub const MAX_OPS_PER_KEY: u32 = 30;

/// The most operations invoked on one append key. Appends make the checker's search
/// expensive: the register's state is the order of the appends, so concurrent appends that
/// no read pins down multiply the states it must keep apart.
pub const MAX_OPS_PER_APPEND_KEY: u32 = 14;

/// After this many indeterminate (`info`) operations on the current key, move on to a fresh
/// key: every `info` operation may take effect at any later point, and a few of them (appends
/// especially, whose order matters) multiply the orders the checker has to consider.
pub const MAX_INFOS_PER_KEY: u32 = 2;

/// One generated operation, with what its history events carry.
#[derive(Clone, Debug)]
pub struct GenOp {
    pub key: String,
    pub op: Operation,
    /// The history event's `f`.
    pub f: &'static str,
    /// The invoke's `value` (`null` for reads).
    pub value: Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Register,
    Append,
}

/// The key currently in use and how to make its next operation.
#[derive(Clone, Debug)]
pub struct Workload {
    key: u64,
    issued: u32,
    limit: u32,
    /// Operations on this key that ended `info`.
    infos: u32,
    mode: Mode,
    /// Values written or appended so far on this key (the next one is `counter + 1`).
    counter: i64,
}

impl Workload {
    pub fn new(rng: &mut Rng) -> Self {
        let mut w = Workload {
            key: 0,
            issued: 0,
            limit: 0,
            infos: 0,
            mode: Mode::Register,
            counter: 0,
        };
        w.fresh_key(rng, 0);
        w
    }

    fn fresh_key(&mut self, rng: &mut Rng, key: u64) {
        self.key = key;
        self.issued = 0;
        self.infos = 0;
        self.mode = if rng.chance(0.5) {
            Mode::Register
        } else {
            Mode::Append
        };
        self.limit = match self.mode {
            Mode::Register => rng.range(10, u64::from(MAX_OPS_PER_KEY)),
            Mode::Append => rng.range(6, u64::from(MAX_OPS_PER_APPEND_KEY)),
        } as u32;
        self.counter = 0;
    }

    /// Number of keys used so far.
    pub fn keys(&self) -> u64 {
        self.key + 1
    }

    /// An operation on `key` ended indeterminate.
    pub fn indeterminate(&mut self, key: &str) {
        if key.strip_prefix('k').and_then(|k| k.parse::<u64>().ok()) == Some(self.key) {
            self.infos += 1;
        }
    }

    /// The next operation for any process.
    pub fn next(&mut self, rng: &mut Rng) -> GenOp {
        if self.issued >= self.limit || self.infos >= MAX_INFOS_PER_KEY {
            let next = self.key + 1;
            self.fresh_key(rng, next);
        }
        self.issued += 1;
        let key = format!("k{}", self.key);
        let roll = rng.below(100);
        let reads = match self.mode {
            Mode::Register => 40,
            Mode::Append => 50,
        };
        if roll < reads {
            return GenOp {
                op: Operation::Read { key: key.clone() },
                key,
                f: "read",
                value: Json::Null,
            };
        }
        self.counter += 1;
        let fresh = self.counter;
        match self.mode {
            Mode::Append => {
                let suffix = format!("{fresh} ");
                GenOp {
                    op: Operation::Append {
                        key: key.clone(),
                        suffix: suffix.clone(),
                    },
                    key,
                    f: "append",
                    value: json!(suffix),
                }
            }
            Mode::Register if roll < 70 => GenOp {
                op: Operation::Write {
                    key: key.clone(),
                    value: Value::Int(fresh),
                },
                key,
                f: "write",
                value: json!(fresh),
            },
            Mode::Register => {
                // Expect a value written recently (or the empty register), so that some cas
                // succeed and some fail.
                let back = rng.below(3) as i64;
                let expected = (fresh - 1 - back >= 1).then_some(fresh - 1 - back);
                GenOp {
                    op: Operation::Cas {
                        key: key.clone(),
                        expected: expected.map(Value::Int),
                        new: Value::Int(fresh),
                    },
                    key,
                    f: "cas",
                    value: json!([expected, fresh]),
                }
            }
        }
    }
}

/// A state-machine value as the history shows it.
pub fn value_json(value: &Option<Value>) -> Json {
    match value {
        None => Json::Null,
        Some(Value::Int(i)) => json!(i),
        Some(Value::Str(s)) => json!(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_values_unique() {
        let mut rng = Rng::new(9);
        let mut w = Workload::new(&mut rng);
        let mut per_key: std::collections::BTreeMap<String, Vec<Json>> = Default::default();
        for _ in 0..500 {
            let op = w.next(&mut rng);
            if op.f != "read" {
                let written = match &op.value {
                    Json::Array(pair) => pair[1].clone(),
                    v => v.clone(),
                };
                per_key.entry(op.key.clone()).or_default().push(written);
            }
        }
        assert!(w.keys() > 500 / u64::from(MAX_OPS_PER_KEY));
        for values in per_key.values() {
            assert!(values.len() <= MAX_OPS_PER_KEY as usize);
            let unique: std::collections::BTreeSet<String> =
                values.iter().map(|v| v.to_string()).collect();
            assert_eq!(unique.len(), values.len());
        }
    }
}
