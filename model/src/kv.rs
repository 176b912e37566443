//! The replicated key-value state machine, with client sessions for exactly-once semantics
//! (Ongaro's dissertation, section 6.3).
//!
//! A client first registers: a [`Operation::Register`] command goes through the log, and the
//! session id it gets is derived from the registration entry's log index, so it is unique and
//! the same on every replica. Every later command carries that session id and a sequence
//! number. A client has at most one request outstanding (each lab process is sequential), so
//! the session keeps the last sequence number applied and a compact form of its result: a
//! retry of that request gets the original result back instead of being applied twice.
//!
//! Time comes from the log only: the leader stamps each command with its wall clock
//! ([`Command::time_ms`]) and the state machine's clock is the largest stamp applied so far,
//! so it never goes back and is the same on every replica. A session unused for longer than
//! [`KvConfig::expire_after_ms`] of that clock is removed while applying; a request under a
//! removed (or never registered) session is answered [`Outcome::SessionExpired`] and not
//! applied, never silently executed again.

use crate::bugs::{Bug, Bugs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Bits of a session id taken from its registration's log index; the bits above them come
/// from the registering command's `client` field (the node binds them to the client's
/// certificate), so a registration never yields an id outside its caller's namespace. Ids
/// within a namespace repeat only after 2^40 log entries, long after the first one expired.
pub const SESSION_INDEX_BITS: u32 = 40;
const INDEX_MASK: u64 = (1 << SESSION_INDEX_BITS) - 1;

/// Default of [`KvConfig::expire_after_ms`]: one hour.
pub const DEFAULT_EXPIRE_AFTER_MS: u64 = 60 * 60 * 1000;
/// Default of [`KvConfig::max_value_bytes`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1 << 20;

/// A register's value. A key that was never written has no value (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl Value {
    /// The size the value limit counts: a string's bytes; an integer counts as 8.
    pub fn size(&self) -> u64 {
        match self {
            Value::Int(_) => 8,
            Value::Str(s) => s.len() as u64,
        }
    }
}

/// The operations of a command (the `f` of a history event, and registration).
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
    /// Opens a new session; answered [`Outcome::Registered`]. The command's `client` gives
    /// the high bits of the new id (its namespace), its `seq` is ignored. Not deduplicated:
    /// a retried registration opens a second session, which is never used and expires.
    Register,
}

impl Operation {
    /// The key the operation works on (none for a registration).
    pub fn key(&self) -> Option<&str> {
        match self {
            Operation::Read { key }
            | Operation::Write { key, .. }
            | Operation::Cas { key, .. }
            | Operation::Append { key, .. } => Some(key),
            Operation::Register => None,
        }
    }

    /// The largest value the operation carries, in [`Value::size`] terms.
    fn carried_size(&self) -> u64 {
        match self {
            Operation::Read { .. } | Operation::Register => 0,
            Operation::Write { value, .. } => value.size(),
            Operation::Cas { expected, new, .. } => {
                new.size().max(expected.as_ref().map_or(0, Value::size))
            }
            Operation::Append { suffix, .. } => suffix.len() as u64,
        }
    }
}

/// A client request as it travels through the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// The session id (for a registration: the namespace of the session to open).
    pub client: u64,
    pub seq: u64,
    pub op: Operation,
    /// Wall-clock milliseconds stamped by the leader that proposed the command (what a client
    /// sends here is replaced). Replicas never read their own clock: see the module doc.
    pub time_ms: u64,
}

/// What applying an operation produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// A read's value.
    Value(Option<Value>),
    Written,
    /// An append took effect; the string's new length in bytes (the value itself is not sent
    /// back, nor kept in the session).
    Appended {
        len: u64,
    },
    /// A cas whose expected value did not match: it certainly had no effect.
    CasMismatch {
        current: Option<Value>,
    },
    /// An append to a key holding an integer: rejected, no effect.
    NotAString,
    /// A request older than the client's last one: the client already has its answer, and
    /// this copy was not applied.
    Stale,
    /// A registration took effect: the new session's id.
    Registered {
        session: u64,
    },
    /// The session is unknown (expired, or never registered): this request was not applied.
    /// The client must register again.
    SessionExpired,
    /// The value (or, for an append, the resulting string) would be `size` bytes, above the
    /// `limit`: rejected, no effect.
    TooLarge {
        size: u64,
        limit: u64,
    },
}

/// The state machine's settings. Every replica must have the same ones (they come from the
/// one `cluster.toml`): they decide what applying a command does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvConfig {
    /// A session unused for longer than this (by the log's clock) is removed.
    pub expire_after_ms: u64,
    /// Largest value a write or cas may store, and largest string an append may produce.
    pub max_value_bytes: u64,
    /// Session ids that exist from the start without registering and never expire. Only the
    /// model checker uses them, to keep registration out of its state space; a real cluster
    /// (and the simulator) has none.
    pub preregistered: Range<u64>,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            expire_after_ms: DEFAULT_EXPIRE_AFTER_MS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            preregistered: 0..0,
        }
    }
}

/// What a session remembers: its last request and what a retry of it needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Session {
    /// The last sequence number applied (0 right after registering).
    seq: u64,
    /// The answer to `seq` (none right after registering). Never a read's value: reads are
    /// not remembered, a retried read is simply read again.
    reply: Option<Outcome>,
    /// The log's clock when the session was last used.
    last_used_ms: u64,
}

/// The state machine: the data, the client sessions, and the log's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Kv {
    data: BTreeMap<String, Value>,
    sessions: BTreeMap<u64, Session>,
    /// The largest command time applied.
    now_ms: u64,
    /// `(last_used_ms, id)` of every session that can expire, oldest first, so that expiry
    /// looks only at sessions that are due. Derived from `sessions`; rebuilt on restore.
    #[serde(skip)]
    by_age: BTreeSet<(u64, u64)>,
    #[serde(skip)]
    config: KvConfig,
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

    /// Sets the settings (before anything is applied: they must be the same on every
    /// replica from the start).
    pub fn with_config(mut self, config: KvConfig) -> Self {
        self.config = config;
        self
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// The log's clock: the largest command time applied.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Why `op` is refused before it is proposed: a value above the limit. (Applying checks
    /// again, so that every replica agrees whatever the proposer did.)
    pub fn too_large(&self, op: &Operation) -> Option<Outcome> {
        let size = op.carried_size();
        let limit = self.config.max_value_bytes;
        (size > limit).then_some(Outcome::TooLarge { size, limit })
    }

    /// Applies the committed command at log index `index`: registers, or runs the operation
    /// exactly once per (session, seq).
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        self.advance_clock(command.time_ms);
        if let Operation::Register = command.op {
            let session = (command.client & !INDEX_MASK) | (index & INDEX_MASK);
            self.touch(session, 0, None);
            return Outcome::Registered { session };
        }
        let session = match self.sessions.get(&command.client) {
            Some(session) => session.clone(),
            None if self.config.preregistered.contains(&command.client) => Session {
                seq: 0,
                reply: None,
                last_used_ms: self.now_ms,
            },
            None => return Outcome::SessionExpired,
        };
        if !self.bugs.has(Bug::NoDedup) {
            if command.seq < session.seq {
                return Outcome::Stale;
            }
            if command.seq == session.seq {
                return match session.reply {
                    Some(reply) => {
                        self.touch(command.client, session.seq, Some(reply.clone()));
                        reply
                    }
                    // Sequence numbers start at 1: nothing was applied under 0.
                    None => Outcome::Stale,
                };
            }
        }
        let outcome = self.execute(&command.op);
        if let Operation::Read { .. } = command.op {
            // Not remembered: a read has no effect, a retry may read again.
            self.touch(command.client, session.seq, session.reply);
        } else {
            self.touch(command.client, command.seq, Some(outcome.clone()));
        }
        outcome
    }

    /// A read outside the log (after ReadIndex): no session involved.
    pub fn read(&self, key: &str) -> Option<Value> {
        self.data.get(key).cloned()
    }

    /// Whether session `id` exists (registered and not expired).
    pub fn has_session(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Moves the log's clock to `time_ms` (never back) and removes the sessions it expires.
    fn advance_clock(&mut self, time_ms: u64) {
        self.now_ms = self.now_ms.max(time_ms);
        while let Some(&(last_used, id)) = self.by_age.first() {
            if self.now_ms.saturating_sub(last_used) <= self.config.expire_after_ms {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&id);
        }
    }

    /// Records that session `id` was used now, with this last request and reply.
    fn touch(&mut self, id: u64, seq: u64, reply: Option<Outcome>) {
        let last_used_ms = self.now_ms;
        if let Some(old) = self.sessions.insert(
            id,
            Session {
                seq,
                reply,
                last_used_ms,
            },
        ) {
            self.by_age.remove(&(old.last_used_ms, id));
        }
        if !self.config.preregistered.contains(&id) {
            self.by_age.insert((last_used_ms, id));
        }
    }

    fn execute(&mut self, op: &Operation) -> Outcome {
        if let Some(too_large) = self.too_large(op) {
            return too_large;
        }
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
                let current = match self.data.get(key) {
                    None => "",
                    Some(Value::Str(s)) => s.as_str(),
                    Some(Value::Int(_)) => return Outcome::NotAString,
                };
                let size = (current.len() + suffix.len()) as u64;
                let limit = self.config.max_value_bytes;
                if size > limit {
                    return Outcome::TooLarge { size, limit };
                }
                match self.data.get_mut(key) {
                    Some(Value::Str(s)) => s.push_str(suffix),
                    _ => {
                        self.data.insert(key.clone(), Value::Str(suffix.clone()));
                    }
                }
                Outcome::Appended { len: size }
            }
            // Handled by `apply` before it gets here; a registration changes no data.
            Operation::Register => Outcome::Written,
        }
    }

    /// The whole state, sessions and clock included, as bytes for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        // Serialising plain maps of strings and integers cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Whether `bytes` is a snapshot [`restore`](Self::restore) accepts, without applying it.
    pub fn check_snapshot(bytes: &[u8]) -> Result<(), BadSnapshot> {
        postcard::from_bytes::<Kv>(bytes)?;
        Ok(())
    }

    /// Replaces the state with a snapshot's (the settings stay this replica's).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), BadSnapshot> {
        let bugs = self.bugs;
        let config = self.config.clone();
        *self = postcard::from_bytes(bytes)?;
        self.bugs = bugs;
        self.by_age = self
            .sessions
            .iter()
            .filter(|(id, _)| !config.preregistered.contains(id))
            .map(|(id, s)| (s.last_used_ms, *id))
            .collect();
        self.config = config;
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

    const MINUTE: u64 = 60_000;

    fn command(client: u64, seq: u64, time_ms: u64, op: Operation) -> Command {
        Command {
            client,
            seq,
            op,
            time_ms,
        }
    }

    fn write(client: u64, seq: u64, key: &str, v: i64) -> Command {
        command(
            client,
            seq,
            0,
            Operation::Write {
                key: key.into(),
                value: Value::Int(v),
            },
        )
    }

    fn append(client: u64, seq: u64, suffix: &str) -> Command {
        command(
            client,
            seq,
            0,
            Operation::Append {
                key: "k".into(),
                suffix: suffix.into(),
            },
        )
    }

    /// Registers at log index `index` at time `time_ms`; returns the session id.
    fn register(kv: &mut Kv, index: u64, namespace: u64, time_ms: u64) -> u64 {
        let base = namespace << SESSION_INDEX_BITS;
        match kv.apply(index, &command(base, 0, time_ms, Operation::Register)) {
            Outcome::Registered { session } => session,
            other => panic!("registration answered {other:?}"),
        }
    }

    fn kv_with(config: KvConfig) -> Kv {
        Kv::new(Bugs::none()).with_config(config)
    }

    fn registered_kv() -> (Kv, u64) {
        let mut kv = Kv::new(Bugs::none());
        let id = register(&mut kv, 1, 0, 0);
        (kv, id)
    }

    #[test]
    fn registration_gives_the_index_in_the_callers_namespace() {
        let mut kv = Kv::new(Bugs::none());
        let a = register(&mut kv, 7, 0, 0);
        let b = register(&mut kv, 8, 0x00ab_cdef, 0);
        assert_eq!(a, 7);
        assert_eq!(b, (0x00ab_cdef << SESSION_INDEX_BITS) | 8);
        // The low bits of the registering command's id do not leak into the new id.
        let c = match kv.apply(9, &command(b | 0x55, 0, 0, Operation::Register)) {
            Outcome::Registered { session } => session,
            other => panic!("{other:?}"),
        };
        assert_eq!(c, (0x00ab_cdef << SESSION_INDEX_BITS) | 9);
        assert!(kv.has_session(a) && kv.has_session(b) && kv.has_session(c));
        // The same log applied elsewhere gives the same ids.
        let mut other = Kv::new(Bugs::none());
        assert_eq!(register(&mut other, 7, 0, 0), a);
    }

    #[test]
    fn an_unregistered_session_is_refused_and_nothing_is_applied() {
        let mut kv = Kv::new(Bugs::none());
        assert_eq!(kv.apply(1, &write(42, 1, "k", 1)), Outcome::SessionExpired);
        assert_eq!(kv.read("k"), None);
    }

    #[test]
    fn retried_request_is_applied_once_and_returns_the_original_result() {
        let (mut kv, id) = registered_kv();
        let first = kv.apply(2, &append(id, 1, "ab"));
        assert_eq!(first, Outcome::Appended { len: 2 });
        assert_eq!(kv.apply(3, &append(id, 1, "ab")), first);
        assert_eq!(kv.read("k"), Some(Value::Str("ab".into())));
    }

    #[test]
    fn no_dedup_bug_applies_a_retry_twice() {
        let mut kv = Kv::new(Bugs::none().with(Bug::NoDedup));
        let id = register(&mut kv, 1, 0, 0);
        kv.apply(2, &append(id, 1, "a"));
        kv.apply(3, &append(id, 1, "a"));
        assert_eq!(kv.read("k"), Some(Value::Str("aa".into())));
    }

    #[test]
    fn older_request_is_stale_and_not_applied() {
        let (mut kv, id) = registered_kv();
        kv.apply(2, &write(id, 2, "k", 2));
        assert_eq!(kv.apply(3, &write(id, 1, "k", 1)), Outcome::Stale);
        assert_eq!(kv.read("k"), Some(Value::Int(2)));
    }

    #[test]
    fn cas_matches_or_reports_the_current_value() {
        let (mut kv, id) = registered_kv();
        kv.apply(2, &write(id, 1, "k", 1));
        let cas = |seq, expected, new| {
            command(
                id,
                seq,
                0,
                Operation::Cas {
                    key: "k".into(),
                    expected: Some(Value::Int(expected)),
                    new: Value::Int(new),
                },
            )
        };
        assert_eq!(kv.apply(3, &cas(2, 1, 5)), Outcome::Written);
        assert_eq!(
            kv.apply(4, &cas(3, 1, 6)),
            Outcome::CasMismatch {
                current: Some(Value::Int(5))
            }
        );
    }

    #[test]
    fn replies_are_compact_appends_answer_a_length_and_reads_are_not_kept() {
        let (mut kv, id) = registered_kv();
        let big = "x".repeat(1000);
        assert_eq!(
            kv.apply(2, &append(id, 1, &big)),
            Outcome::Appended { len: 1000 }
        );
        assert_eq!(
            kv.apply(3, &append(id, 2, &big)),
            Outcome::Appended { len: 2000 }
        );
        let session = &kv.sessions[&id];
        assert_eq!(session.reply, Some(Outcome::Appended { len: 2000 }));
        // A read through the log is answered but leaves the session as it was.
        let read = command(id, 3, 0, Operation::Read { key: "k".into() });
        assert_eq!(
            kv.apply(4, &read),
            Outcome::Value(Some(Value::Str(big.repeat(2))))
        );
        assert_eq!(kv.sessions[&id].seq, 2);
        assert_eq!(
            kv.sessions[&id].reply,
            Some(Outcome::Appended { len: 2000 })
        );
        // The whole state holds the string once, not once per reply.
        assert!(kv.snapshot().len() < 2000 + 200, "{}", kv.snapshot().len());
    }

    #[test]
    fn sessions_expire_by_the_logs_clock_only() {
        let mut kv = kv_with(KvConfig {
            expire_after_ms: 10 * MINUTE,
            ..KvConfig::default()
        });
        let idle = register(&mut kv, 1, 0, 0);
        let busy = register(&mut kv, 2, 0, 0);
        let at = |kv: &mut Kv, index, seq, time| {
            let mut c = write(busy, seq, "b", seq as i64);
            c.time_ms = time;
            kv.apply(index, &c)
        };
        assert_eq!(at(&mut kv, 3, 1, 6 * MINUTE), Outcome::Written);
        // Exactly the limit is not yet "unused for longer than" it.
        assert_eq!(at(&mut kv, 4, 2, 10 * MINUTE), Outcome::Written);
        assert!(kv.has_session(idle));
        assert_eq!(at(&mut kv, 5, 3, 10 * MINUTE + 1), Outcome::Written);
        assert!(!kv.has_session(idle));
        assert!(kv.has_session(busy));
        // A stamp from behind (a new leader's slower clock) does not move the clock back.
        assert_eq!(at(&mut kv, 6, 4, MINUTE), Outcome::Written);
        assert_eq!(kv.now_ms(), 10 * MINUTE + 1);
        // The idle client comes back: its request is refused, not applied.
        let mut late = write(idle, 1, "a", 1);
        late.time_ms = 11 * MINUTE;
        assert_eq!(kv.apply(7, &late), Outcome::SessionExpired);
        assert_eq!(kv.read("a"), None);
    }

    #[test]
    fn an_expired_session_is_never_re_executed() {
        // A write is applied, its client never hears the answer and comes back after the
        // session expired with the same request: it must not be applied a second time.
        let mut kv = kv_with(KvConfig {
            expire_after_ms: MINUTE,
            ..KvConfig::default()
        });
        let id = register(&mut kv, 1, 0, 0);
        assert_eq!(
            kv.apply(2, &append(id, 1, "a")),
            Outcome::Appended { len: 1 }
        );
        let other = register(&mut kv, 3, 0, 2 * MINUTE);
        assert!(kv.has_session(other));
        assert_eq!(kv.apply(4, &append(id, 1, "a")), Outcome::SessionExpired);
        assert_eq!(kv.read("k"), Some(Value::Str("a".into())));
    }

    #[test]
    fn preregistered_sessions_need_no_registration_and_never_expire() {
        let mut kv = kv_with(KvConfig {
            expire_after_ms: 1,
            preregistered: 1..3,
            ..KvConfig::default()
        });
        assert_eq!(kv.apply(1, &write(1, 1, "k", 1)), Outcome::Written);
        let mut later = write(2, 1, "k", 2);
        later.time_ms = MINUTE;
        assert_eq!(kv.apply(2, &later), Outcome::Written);
        assert!(kv.has_session(1));
        assert_eq!(kv.apply(3, &write(1, 1, "k", 1)), Outcome::Written);
        assert_eq!(kv.read("k"), Some(Value::Int(2)));
        assert_eq!(kv.apply(4, &write(3, 1, "k", 3)), Outcome::SessionExpired);
    }

    #[test]
    fn values_above_the_limit_are_refused_with_the_limit() {
        let mut kv = kv_with(KvConfig {
            max_value_bytes: 4,
            ..KvConfig::default()
        });
        let id = register(&mut kv, 1, 0, 0);
        let write_str = |seq, s: &str| {
            command(
                id,
                seq,
                0,
                Operation::Write {
                    key: "s".into(),
                    value: Value::Str(s.into()),
                },
            )
        };
        let too_big = Outcome::TooLarge { size: 5, limit: 4 };
        assert_eq!(
            kv.too_large(&write_str(1, "12345").op),
            Some(too_big.clone())
        );
        assert_eq!(kv.too_large(&write_str(1, "1234").op), None);
        assert_eq!(kv.apply(2, &write_str(1, "12345")), too_big);
        assert_eq!(kv.read("s"), None);
        // An append is refused when the string it would make is too long.
        assert_eq!(
            kv.apply(3, &append(id, 2, "abc")),
            Outcome::Appended { len: 3 }
        );
        assert_eq!(kv.apply(4, &append(id, 3, "de")), too_big);
        assert_eq!(kv.read("k"), Some(Value::Str("abc".into())));
        assert_eq!(
            kv.apply(5, &append(id, 4, "d")),
            Outcome::Appended { len: 4 }
        );
    }

    #[test]
    fn snapshot_round_trips_data_sessions_and_clock() {
        let mut kv = Kv::new(Bugs::none());
        let a = register(&mut kv, 1, 0, 5);
        let b = register(&mut kv, 2, 0, 5);
        kv.apply(3, &write(a, 1, "a", 1));
        kv.apply(4, &write(b, 7, "b", 2));
        let mut restored = Kv::new(Bugs::none());
        restored.restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.now_ms(), 5);
        assert_eq!(restored.apply(5, &write(b, 7, "b", 9)), Outcome::Written);
        assert_eq!(restored.read("b"), Some(Value::Int(2)));
    }

    #[test]
    fn sessions_restored_from_a_snapshot_expire_by_the_log_after_it() {
        let config = KvConfig {
            expire_after_ms: MINUTE,
            ..KvConfig::default()
        };
        let mut kv = kv_with(config.clone());
        let old = register(&mut kv, 1, 0, 0);
        kv.apply(2, &write(old, 1, "k", 1));
        let mut restored = kv_with(config);
        restored.restore(&kv.snapshot()).unwrap();
        assert!(restored.has_session(old));
        let fresh = register(&mut restored, 3, 0, 2 * MINUTE);
        assert!(!restored.has_session(old));
        assert_eq!(
            restored.apply(4, &write(old, 2, "k", 2)),
            Outcome::SessionExpired
        );
        assert_eq!(
            restored.apply(5, &write(fresh, 1, "k", 3)),
            Outcome::Written
        );
        assert_eq!(restored.read("k"), Some(Value::Int(3)));
    }

    #[test]
    fn garbage_snapshot_is_an_error_not_a_panic() {
        let mut kv = Kv::new(Bugs::none());
        assert!(kv.restore(&[0xff, 0xff, 0xff]).is_err());
    }
}
