//! A replica: the Raft core, the KV state machine, and the client requests waiting on them.
//!
//! This is what one server runs, minus the I/O: the node runtime and the simulator both
//! drive a `Replica` and only differ in how they persist, send and time things. A write is
//! proposed and answered when its entry is applied; a read goes through ReadIndex and is
//! answered once the state machine has caught up with the confirmed index.
//!
//! The caller passes its wall clock with each request; the replica stamps the command with
//! it (never below an earlier stamp or the state machine's clock) before proposing, which is
//! the only way wall-clock time reaches the state machine: see [`crate::kv`].

use crate::bugs::Bugs;
use crate::core::{
    Body, Config, Dropped, Entry, EntryKind, HardState, Index, MembershipChange, Message, NodeId,
    Raft, ReadState, Ready, Refused, Restored, Snapshot, Term,
};
use crate::kv::{BadSnapshot, Command, Kv, KvConfig, Operation, Outcome};
use std::collections::BTreeMap;

/// Identifies one client request at this replica (chosen by the caller).
pub type RequestId = u64;

/// How a request ended at this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Applied (or read) with this outcome.
    Done(Outcome),
    /// Not the leader: nothing was proposed; try `leader`.
    NotLeader { leader: Option<NodeId> },
    /// Refused before proposing (e.g. a leadership transfer is in progress): no effect.
    Refused(Refused),
    /// The proposal was overwritten by another leader's entry: this attempt had no effect.
    Dropped,
    /// The membership change is committed at this index.
    Committed(Index),
}

/// Why [`Replica::step`] dropped a message from a peer. Nothing was changed; the caller
/// logs it, naming the sender.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    Core(#[from] Dropped),
    /// Checked before the core accepts the snapshot: it would be persisted before the state
    /// machine restores it, and then fail again at every restart.
    #[error("InstallSnapshot at index {index}: {source}")]
    Snapshot {
        index: Index,
        #[source]
        source: BadSnapshot,
    },
}

/// Durable work and messages from one Ready; see [`crate::core::Ready`] for the order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Persist {
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry<Command>>,
    /// May be sent at once, before the above is durable (a leader's replication).
    pub early_messages: Vec<Message<Command>>,
    /// Send only after the above is durable.
    pub messages: Vec<Message<Command>>,
}

impl Persist {
    /// Whether there is anything to make durable (a caller may skip the fsync otherwise).
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}

/// What [`Replica::advance`] produced: replies to send (by request id) and, when the log was
/// compacted, the snapshot the caller must persist.
#[derive(Debug, Default)]
pub struct Advanced {
    pub replies: Vec<(RequestId, Reply)>,
    pub snapshot: Option<Snapshot>,
}

/// The rest of a Ready, handed back to [`Replica::advance`] once `Persist` is done.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    snapshot: Option<Snapshot>,
    committed: Vec<Entry<Command>>,
    read_states: Vec<ReadState>,
}

/// One server's state machine replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    raft: Raft<Command>,
    kv: Kv,
    /// Proposed writes by log index: (term proposed in, request).
    proposals: BTreeMap<Index, (Term, RequestId)>,
    /// Reads waiting for ReadIndex confirmation, by ctx.
    reads: BTreeMap<u64, (RequestId, String)>,
    /// Confirmed reads waiting for the state machine to apply their index.
    confirmed_reads: Vec<(Index, RequestId, String)>,
    /// Requests to answer `Dropped` at the next `advance` (proposals overwritten before
    /// they committed).
    overwritten: Vec<RequestId>,
    next_ctx: u64,
    /// The last index the KV state machine itself has applied. The core's applied index
    /// runs ahead of it when a snapshot is installed between `ready` and `advance`; reads and
    /// compaction must go by what the state machine really holds.
    kv_applied: Index,
    /// Compact the log every this many applied entries (0: never).
    compact_every: u64,
    /// The last time stamped on a command, so that stamps never decrease even when the
    /// caller's clock steps back.
    stamped_ms: u64,
}

impl Pending {
    /// The committed entries this Ready hands to the state machine.
    pub fn committed(&self) -> &[Entry<Command>] {
        &self.committed
    }

    /// Whether [`Replica::apply`] may take this before the Ready's `Persist` is durable.
    /// Committed entries are durable here already (the core hands out only entries a
    /// previous Ready wrote) and committed by a quorum, and a read was confirmed by a
    /// quorum in a term durable here: nothing they answer depends on this Ready's writes,
    /// so a caller may answer them while the disk syncs (etcd applies concurrently with its
    /// WAL write the same way) instead of one fsync later. A snapshot to install is the
    /// exception: the state machine must not take state that a crash would lose.
    pub fn applies_before_durable(&self) -> bool {
        self.snapshot.is_none()
    }
}

impl Replica {
    /// A new server of a new cluster.
    pub fn new(
        config: Config,
        voters: impl IntoIterator<Item = NodeId>,
        compact_every: u64,
    ) -> Self {
        let bugs = config.bugs;
        Replica::from_raft(Raft::new(config, voters), Kv::new(bugs), compact_every)
    }

    /// A server restarting from durable state; the state machine is rebuilt from the
    /// snapshot, and the entries after it are re-applied as they are committed again.
    pub fn restore(
        config: Config,
        restored: Restored<Command>,
        compact_every: u64,
    ) -> Result<Self, BadSnapshot> {
        let mut kv = Kv::new(config.bugs);
        if restored.snapshot.meta.index > 0 {
            kv.restore(&restored.snapshot.data)?;
        }
        Ok(Replica::from_raft(
            Raft::restore(config, restored),
            kv,
            compact_every,
        ))
    }

    fn from_raft(raft: Raft<Command>, kv: Kv, compact_every: u64) -> Self {
        Replica {
            kv,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed_reads: Vec::new(),
            overwritten: Vec::new(),
            next_ctx: 0,
            kv_applied: raft.log().snapshot().meta.index,
            compact_every,
            stamped_ms: 0,
            raft,
        }
    }

    /// Sets the state machine's settings (right after `new` or `restore`: every replica of
    /// a cluster must apply with the same ones).
    pub fn with_kv_config(mut self, config: KvConfig) -> Self {
        self.kv = std::mem::take(&mut self.kv).with_config(config);
        self
    }

    pub fn raft(&self) -> &Raft<Command> {
        &self.raft
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub fn bugs(&self) -> Bugs {
        self.raft.config().bugs
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// The election timer fires now (see [`Raft::election_timeout`]).
    pub fn election_timeout(&mut self) {
        self.raft.election_timeout();
    }

    /// Handles a message from another server; drops (and returns why) one no correct peer
    /// sends: see [`Dropped`], and a snapshot whose state-machine data does not decode.
    pub fn step(&mut self, msg: Message<Command>) -> Result<(), Rejected> {
        if let Body::InstallSnapshot { snapshot, .. } = &msg.body {
            Kv::check_snapshot(&snapshot.data).map_err(|source| Rejected::Snapshot {
                index: snapshot.meta.index,
                source,
            })?;
        }
        Ok(self.raft.step(msg)?)
    }

    /// Starts a client request at wall-clock time `now_ms`. Returns a reply at once if it
    /// can be answered without the log (refusals, a value above the limit); otherwise the
    /// reply comes from a later [`advance`](Self::advance).
    pub fn request(&mut self, id: RequestId, mut command: Command, now_ms: u64) -> Option<Reply> {
        if let Some(too_large) = self.kv.too_large(&command.op) {
            return Some(Reply::Done(too_large));
        }
        if let Operation::Read { key } = &command.op {
            let ctx = self.next_ctx;
            self.next_ctx += 1;
            return match self.raft.read_index(ctx) {
                Ok(()) => {
                    self.reads.insert(ctx, (id, key.clone()));
                    None
                }
                Err(refused) => Some(refusal(refused)),
            };
        }
        // Stamping before knowing whether this node leads is harmless: a refused proposal
        // leaves no entry, and the next stamp is never lower anyway.
        self.stamped_ms = self.stamped_ms.max(now_ms).max(self.kv.now_ms());
        command.time_ms = self.stamped_ms;
        match self.raft.propose(command) {
            Ok((index, term)) => {
                // An older term's proposal at this index was cut off by another leader's
                // log (this leader's own log has a new entry there): it can no longer
                // commit, and must still be answered.
                if let Some((_, old)) = self.proposals.insert(index, (term, id)) {
                    self.overwritten.push(old);
                }
                None
            }
            Err(refused) => Some(refusal(refused)),
        }
    }

    /// Whether request `id` still waits here for an answer.
    pub fn waiting(&self, id: RequestId) -> bool {
        self.proposals.values().any(|&(_, r)| r == id)
            || self.reads.values().any(|&(r, _)| r == id)
            || self.confirmed_reads.iter().any(|&(_, r, _)| r == id)
    }

    /// Transfers leadership (operator request).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), Refused> {
        self.raft.transfer_leadership(to)
    }

    /// Proposes a single-server membership change (operator request). With `reply_to`,
    /// request `reply_to` is answered `Committed` once the change commits (or `Dropped`).
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
        reply_to: Option<RequestId>,
    ) -> Result<(), Refused> {
        let (index, term) = self.raft.propose_membership(change)?;
        if let Some(id) = reply_to {
            if let Some((_, old)) = self.proposals.insert(index, (term, id)) {
                self.overwritten.push(old);
            }
        }
        Ok(())
    }

    /// The next batch of durable work, split into what to persist-then-send and what to hand
    /// back to [`advance`](Self::advance) afterwards.
    pub fn ready(&mut self) -> Option<(Persist, Pending)> {
        let Ready {
            hard_state,
            snapshot,
            entries,
            early_messages,
            messages,
            committed,
            read_states,
        } = self.raft.ready()?;
        let persist = Persist {
            hard_state,
            snapshot: snapshot.clone(),
            entries,
            early_messages,
            messages,
        };
        Some((
            persist,
            Pending {
                snapshot,
                committed,
                read_states,
            },
        ))
    }

    /// Everything in the `Persist` of the same Ready is durable and its messages were sent:
    /// apply, answer, and let the core continue ([`apply`](Self::apply), then
    /// [`advance_applied`](Self::advance_applied)).
    pub fn advance(&mut self, pending: Pending) -> Result<Advanced, BadSnapshot> {
        let replies = self.apply(pending)?;
        Ok(Advanced {
            replies,
            snapshot: self.advance_applied(),
        })
    }

    /// Steps 4 and 5 of a Ready: applies its committed entries (and snapshot) to the state
    /// machine and serves its reads; the answers, by request id. Once its `Persist` is
    /// durable, or before when [`Pending::applies_before_durable`]; either way
    /// [`advance_applied`](Self::advance_applied) follows once the `Persist` is durable.
    pub fn apply(&mut self, pending: Pending) -> Result<Vec<(RequestId, Reply)>, BadSnapshot> {
        let mut replies: Vec<(RequestId, Reply)> = self
            .overwritten
            .drain(..)
            .map(|id| (id, Reply::Dropped))
            .collect();
        if let Some(snapshot) = pending.snapshot {
            self.kv.restore(&snapshot.data)?;
            self.kv_applied = snapshot.meta.index;
            // Proposals inside the snapshot: their fate is unknown here; the client's
            // timeout and retry (deduplicated by its session) settle it.
            let covered: Vec<Index> = self
                .proposals
                .range(..=snapshot.meta.index)
                .map(|(i, _)| *i)
                .collect();
            for index in covered {
                self.proposals.remove(&index);
            }
        }
        for entry in &pending.committed {
            self.kv_applied = entry.index;
            let outcome = match &entry.kind {
                EntryKind::Command(command) => {
                    Some(Reply::Done(self.kv.apply(entry.index, command)))
                }
                EntryKind::Membership(_) => Some(Reply::Committed(entry.index)),
                EntryKind::Noop => None,
            };
            if let Some((term, id)) = self.proposals.remove(&entry.index) {
                let reply = match outcome {
                    Some(reply) if term == entry.term => reply,
                    _ => Reply::Dropped,
                };
                replies.push((id, reply));
            }
        }
        for read in pending.read_states {
            let Some((id, key)) = self.reads.remove(&read.ctx) else {
                continue;
            };
            match read.index {
                Some(index) => self.confirmed_reads.push((index, id, key)),
                None => replies.push((
                    id,
                    Reply::NotLeader {
                        leader: self.raft.leader(),
                    },
                )),
            }
        }
        let applied = self.kv_applied;
        let kv = &self.kv;
        self.confirmed_reads.retain(|(index, id, key)| {
            let ready = *index <= applied;
            if ready {
                replies.push((*id, Reply::Done(Outcome::Value(kv.read(key)))));
            }
            !ready
        });
        Ok(replies)
    }

    /// Step 6 of a Ready, once its `Persist` is durable and its `Pending` applied: lets the
    /// core go on; the snapshot to persist when this compacted the log.
    pub fn advance_applied(&mut self) -> Option<Snapshot> {
        self.raft.advance();
        self.compact_if_due()
    }

    fn compact_if_due(&mut self) -> Option<Snapshot> {
        let applied = self.kv_applied;
        let base = self.raft.log().snapshot().meta.index;
        if self.compact_every == 0 || applied < base + self.compact_every {
            return None;
        }
        // Never compact entries that are not committed (only a state machine that runs ahead
        // of commitment, under `ack-before-commit` or `apply-uncommitted`, has any applied):
        // they may still be truncated, and a snapshot cannot be.
        if applied > self.raft.commit_index() {
            return None;
        }
        self.raft
            .compact(applied, self.kv.snapshot())
            .then(|| self.raft.log().snapshot().clone())
    }
}

fn refusal(refused: Refused) -> Reply {
    match refused {
        Refused::NotLeader { leader } => Reply::NotLeader { leader },
        other => Reply::Refused(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Body, Message, Role};
    use crate::kv::Value;

    fn write(seq: u64) -> Command {
        Command {
            client: 1,
            seq,
            op: Operation::Write {
                key: "k".to_string(),
                value: Value::Int(seq as i64),
            },
            time_ms: 0,
        }
    }

    fn command(client: u64, seq: u64, op: Operation) -> Command {
        Command {
            client,
            seq,
            op,
            time_ms: 0,
        }
    }

    /// Hands out and completes every Ready, collecting the replies.
    fn drive(replica: &mut Replica, replies: &mut Vec<(RequestId, Reply)>) {
        while let Some((_persist, pending)) = replica.ready() {
            let advanced = replica.advance(pending).expect("no snapshot here");
            replies.extend(advanced.replies);
        }
    }

    fn elect(replica: &mut Replica, replies: &mut Vec<(RequestId, Reply)>) {
        for _ in 0..100 {
            if replica.raft().role() == Role::Leader {
                break;
            }
            replica.tick();
            drive(replica, replies);
        }
        assert_eq!(replica.raft().role(), Role::Leader);
    }

    /// A leader's proposals are cut off by a later leader's log, and when this server
    /// leads again its new proposal lands at the index of one of its old ones. The old
    /// proposal can no longer commit there; the defect was that the new one silently took
    /// its place, and the old request was never answered. Every request gets an answer.
    #[test]
    fn an_overwritten_proposal_is_answered() {
        let mut config = Config::new(1);
        config.pre_vote = false;
        let mut replica = Replica::new(config, [1], 0).with_kv_config(KvConfig {
            preregistered: 1..2,
            ..KvConfig::default()
        });
        let mut replies = Vec::new();
        elect(&mut replica, &mut replies); // term 1, no-op at 1
        for (id, seq) in [(10, 1), (11, 2), (12, 3)] {
            assert_eq!(replica.request(id, write(seq), 0), None); // at 2, 3, 4
        }
        // A leader of term 2 replaces everything after index 1 (before any of it was
        // persisted here, so none of it committed).
        let term = replica.raft().term() + 1;
        replica
            .step(Message {
                from: 2,
                to: 1,
                term,
                body: Body::Append {
                    prev_index: 1,
                    prev_term: 1,
                    entries: vec![Entry {
                        term,
                        index: 2,
                        kind: EntryKind::Noop,
                    }],
                    commit: 1,
                    read_round: 0,
                },
            })
            .unwrap();
        drive(&mut replica, &mut replies);
        elect(&mut replica, &mut replies); // term 3, no-op at 3
        assert_eq!(replica.request(13, write(4), 0), None); // at 4, where 12 was
        drive(&mut replica, &mut replies);
        replies.sort_by_key(|(id, _)| *id);
        assert_eq!(
            replies,
            vec![
                (10, Reply::Dropped),
                (11, Reply::Dropped),
                (12, Reply::Dropped),
                (13, Reply::Done(Outcome::Written)),
            ]
        );
    }

    /// Runs one request to its reply on a single-server cluster at time `now_ms`.
    fn call(replica: &mut Replica, id: RequestId, command: Command, now_ms: u64) -> Reply {
        let mut replies = Vec::new();
        if let Some(reply) = replica.request(id, command, now_ms) {
            return reply;
        }
        drive(replica, &mut replies);
        let mut answers = replies.into_iter().filter(|(r, _)| *r == id);
        match (answers.next(), answers.next()) {
            (Some((_, reply)), None) => reply,
            other => panic!("request {id}: {other:?}"),
        }
    }

    fn register(replica: &mut Replica, id: RequestId, now_ms: u64) -> u64 {
        match call(replica, id, command(0, 0, Operation::Register), now_ms) {
            Reply::Done(Outcome::Registered { session }) => session,
            other => panic!("registration: {other:?}"),
        }
    }

    /// A client applies an append, loses the answer, and restarts long after with its old id
    /// and sequence number 1: its session expired by the log's clock, so the request is
    /// answered "session expired" and not executed again; registering again works.
    #[test]
    fn a_client_restarting_with_an_expired_id_is_told_so_and_nothing_is_re_executed() {
        const MINUTE: u64 = 60_000;
        let mut replica = Replica::new(Config::new(1), [1], 0).with_kv_config(KvConfig {
            expire_after_ms: MINUTE,
            ..KvConfig::default()
        });
        elect(&mut replica, &mut Vec::new());
        let append = |client| {
            command(
                client,
                1,
                Operation::Append {
                    key: "k".into(),
                    suffix: "a".into(),
                },
            )
        };
        let old = register(&mut replica, 1, 1_000);
        assert_eq!(
            call(&mut replica, 2, append(old), 2_000),
            Reply::Done(Outcome::Appended { len: 1 })
        );
        // Within the expiry time, the retry gets the remembered answer.
        assert_eq!(
            call(&mut replica, 3, append(old), 30_000),
            Reply::Done(Outcome::Appended { len: 1 })
        );
        // Another client's command moves the log's clock past the old session's expiry.
        let other = register(&mut replica, 4, 30_000 + MINUTE + 1);
        assert_ne!(other, old);
        assert_eq!(
            call(&mut replica, 5, append(old), 30_000 + MINUTE + 2),
            Reply::Done(Outcome::SessionExpired)
        );
        assert_eq!(replica.kv().read("k"), Some(Value::Str("a".into())));
        let new = register(&mut replica, 6, 30_000 + MINUTE + 3);
        assert_eq!(
            call(&mut replica, 7, append(new), 30_000 + MINUTE + 4),
            Reply::Done(Outcome::Appended { len: 2 })
        );
    }

    /// The replica stamps commands with the caller's clock, never backwards, and refuses a
    /// value above the limit before proposing anything.
    #[test]
    fn stamps_never_decrease_and_oversized_values_are_refused_before_proposing() {
        let mut replica = Replica::new(Config::new(1), [1], 0).with_kv_config(KvConfig {
            max_value_bytes: 3,
            ..KvConfig::default()
        });
        elect(&mut replica, &mut Vec::new());
        let client = register(&mut replica, 1, 5_000);
        // A clock that stepped back: the log's clock stays where it was.
        let written = call(&mut replica, 2, write_to(client, 1, "abc"), 4_000);
        assert_eq!(written, Reply::Done(Outcome::Written));
        assert_eq!(replica.kv().now_ms(), 5_000);
        let last = replica.raft().last_index();
        assert_eq!(
            replica.request(3, write_to(client, 2, "abcd"), 6_000),
            Some(Reply::Done(Outcome::TooLarge { size: 4, limit: 3 }))
        );
        assert_eq!(replica.raft().last_index(), last);
    }

    fn write_to(client: u64, seq: u64, s: &str) -> Command {
        command(
            client,
            seq,
            Operation::Write {
                key: "s".into(),
                value: Value::Str(s.into()),
            },
        )
    }
    /// An InstallSnapshot whose state-machine data does not decode is dropped before the
    /// core accepts it: it is never handed out for persistence (it would fail every restart
    /// after), and the replica keeps its state.
    #[test]
    fn an_undecodable_snapshot_is_dropped_before_it_is_persisted() {
        let mut replica = Replica::new(Config::new(2), [1, 2], 0);
        let snapshot = Snapshot {
            meta: crate::core::SnapshotMeta {
                index: 5,
                term: 1,
                membership: crate::core::Membership::of_voters([1, 2]),
            },
            data: std::sync::Arc::new(b"not a state machine".to_vec()),
        };
        let result = replica.step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::InstallSnapshot {
                snapshot,
                read_round: 0,
            },
        });
        assert!(
            matches!(result, Err(Rejected::Snapshot { index: 5, .. })),
            "{result:?}"
        );
        while let Some((persist, pending)) = replica.ready() {
            assert_eq!(
                persist.snapshot, None,
                "a bad snapshot handed out to persist"
            );
            replica.advance(pending).expect("nothing to restore");
        }
        assert_eq!(replica.raft().log().snapshot().meta.index, 0);
        assert_eq!(replica.raft().commit_index(), 0);
    }
}
