//! The Raft state machine of one server: elections, replication, commitment, reads,
//! leadership transfer, membership changes and snapshots.
//!
//! Driven from outside only: [`Raft::tick`] (time), [`Raft::step`] (a message),
//! [`Raft::propose`], [`Raft::read_index`], [`Raft::transfer_leadership`],
//! [`Raft::propose_membership`], [`Raft::compact`]. Work comes back through [`Raft::ready`] and
//! is acknowledged with [`Raft::advance`]. No I/O, no clock, no threads: the same inputs give
//! the same outputs.

use super::log::RaftLog;
use super::message::{Body, Campaign, Message};
use super::progress::{Progress, ReplicationState};
use super::ready::{ReadState, Ready};
use super::types::{
    Entry, EntryKind, HardState, Index, Membership, MembershipChange, NodeId, Snapshot, Term,
};
use crate::bugs::{Bug, Bugs};
use std::collections::{BTreeMap, BTreeSet};

/// Static configuration of one server's core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub id: NodeId,
    /// Base election timeout in ticks: a follower that heard from a leader within this many
    /// ticks trusts it; each election timer fires after a number of ticks drawn from
    /// `(election, 2 * election]`.
    pub election_ticks: u32,
    /// Leader heartbeat interval in ticks (must be well below `election_ticks`).
    pub heartbeat_ticks: u32,
    /// Most entries in one AppendEntries.
    pub max_batch: usize,
    /// Most AppendEntries in flight to one follower.
    pub max_inflight: usize,
    /// Probe with a pre-vote before disturbing the cluster with a new term (thesis 9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and
    /// followers that hear from a leader ignore vote requests (thesis 6.2, 4.2.3).
    pub check_quorum: bool,
    /// Seed of the election-timeout randomness (owned by the caller: same seed, same run).
    /// The draw is a function of the seed and the term, so the core carries no generator
    /// state (the model checker would otherwise count states that differ only in it).
    pub seed: u64,
    pub bugs: Bugs,
}

impl Config {
    /// The defaults the nodes run ([`Settings`](super::Settings)) for server `id`.
    pub fn new(id: NodeId) -> Self {
        Config::with_settings(id, super::Settings::default())
    }

    /// Server `id` with these protocol settings and the default timing.
    pub fn with_settings(id: NodeId, settings: super::Settings) -> Self {
        Config {
            id,
            election_ticks: super::settings::ELECTION_TICKS,
            heartbeat_ticks: super::settings::HEARTBEAT_TICKS,
            max_batch: settings.max_batch,
            max_inflight: settings.max_inflight,
            pre_vote: settings.pre_vote,
            check_quorum: settings.check_quorum,
            seed: id,
            bugs: Bugs::none(),
        }
    }

    /// The protocol settings of this configuration.
    pub fn settings(&self) -> super::Settings {
        super::Settings {
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            max_batch: self.max_batch,
            max_inflight: self.max_inflight,
        }
    }
}

/// A server's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a request to the core was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("a leadership transfer is in progress")]
    Transferring,
    #[error("a membership change is still uncommitted")]
    MembershipChangePending,
    #[error("invalid membership change: {0}")]
    InvalidMembershipChange(&'static str),
    #[error("the transfer target is not another voter")]
    InvalidTransferTarget,
}

/// Why [`Raft::step`] dropped a message: input no correct peer sends, which would otherwise
/// break what the core asserts about its own state (a buggy, damaged or hostile peer).
/// Nothing was changed; the caller should log it, naming the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("term {term} cannot be advanced past (the next election would wrap it)")]
    LastTerm { term: Term },
    #[error(
        "entries do not follow on from index {prev_index}: index {index} at position {position}"
    )]
    NotContiguous {
        prev_index: Index,
        position: usize,
        index: Index,
    },
    #[error(
        "entry {index} of term {term} conflicts with the committed entry of term {committed_term} \
         (commit {commit})"
    )]
    ConflictsWithCommitted {
        index: Index,
        term: Term,
        committed_term: Term,
        commit: Index,
    },
}

/// Durable state to restart a server from.
#[derive(Clone, Debug)]
pub struct Restored<C> {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry<C>>,
}

/// A pending ReadIndex request on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingRead {
    ctx: u64,
    /// The heartbeat round whose quorum acknowledgement confirms leadership.
    round: u64,
}

/// One server's Raft state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Raft<C> {
    config: Config,
    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog<C>,
    /// The latest membership in the log, committed or not (it takes effect when appended).
    membership: Membership,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    messages: Vec<Message<C>>,
    /// Hard state last handed out for persistence.
    persisted_hard_state: HardState,
    /// A Ready was handed out and not yet acknowledged.
    awaiting_advance: bool,
    /// Leader: new entries need broadcasting at the next `ready` (batches proposals).
    broadcast_pending: bool,
    read_round: u64,
    /// Leader: reads joined `read_round` since the last Ready; its heartbeats are due.
    read_round_due: bool,
    pending_reads: Vec<PendingRead>,
    read_states: Vec<ReadState>,
    /// Leader: the transfer target and ticks since the transfer started.
    transfer: Option<(NodeId, u32)>,
    /// Leader, `lease-read` bug only (always 0 otherwise): own ticks since a quorum was
    /// last heard from.
    lease_elapsed: u32,
    /// Leader, `lease-read` bug only (always empty otherwise): followers heard from since
    /// the lease was last renewed.
    lease_heard: BTreeSet<NodeId>,
}

impl<C: Clone + std::fmt::Debug> Raft<C> {
    /// A brand-new server of a brand-new cluster whose voters are `voters`.
    pub fn new(config: Config, voters: impl IntoIterator<Item = NodeId>) -> Self {
        let snapshot = Snapshot {
            meta: super::types::SnapshotMeta {
                membership: Membership::of_voters(voters),
                ..Default::default()
            },
            ..Default::default()
        };
        Raft::restore(
            config,
            Restored {
                hard_state: HardState::default(),
                snapshot,
                entries: Vec::new(),
            },
        )
    }

    /// A server restarting from its durable state.
    pub fn restore(config: Config, restored: Restored<C>) -> Self {
        let log = RaftLog::restore(restored.snapshot, restored.entries, 0);
        let membership = log.membership_at(log.last_index());
        let mut raft = Raft {
            config,
            term: restored.hard_state.term,
            voted_for: restored.hard_state.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            membership,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            messages: Vec::new(),
            persisted_hard_state: restored.hard_state,
            awaiting_advance: false,
            broadcast_pending: false,
            read_round: 0,
            read_round_due: false,
            pending_reads: Vec::new(),
            read_states: Vec::new(),
            transfer: None,
            lease_elapsed: 0,
            lease_heard: BTreeSet::new(),
        };
        raft.reset_election_timer();
        raft
    }

    // ----- observers -------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn commit_index(&self) -> Index {
        self.log.commit
    }
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    pub fn log(&self) -> &RaftLog<C> {
        &self.log
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Ticks since the election timer was last reset (a leader's: since its last
    /// check-quorum round).
    pub fn election_elapsed(&self) -> u32 {
        self.election_elapsed
    }
    /// The leader's view of a follower's replication, for status pages.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }
    /// Messages queued for the next Ready (for checkers: what an input just sent).
    pub fn outbox(&self) -> &[Message<C>] {
        &self.messages
    }

    fn is_voter(&self) -> bool {
        self.membership.voters.contains(&self.config.id)
    }

    fn bug(&self, bug: Bug) -> bool {
        self.config.bugs.has(bug)
    }

    // ----- inputs -----------------------------------------------------------------------

    /// One unit of time.
    pub fn tick(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                if self.election_elapsed >= self.randomized_timeout {
                    self.election_timeout();
                }
            }
        }
    }

    /// What happens when the election timer fires, now: a follower or candidate that votes
    /// starts a campaign (pre-vote first if configured). Tests and the model checker use it
    /// to make an election timeout a single nondeterministic event instead of many ticks.
    pub fn election_timeout(&mut self) {
        if self.role != Role::Leader && self.is_voter() {
            self.campaign(if self.config.pre_vote {
                Campaign::PreVote
            } else {
                Campaign::Election
            });
        }
    }

    fn tick_leader(&mut self) {
        if self.bug(Bug::LeaseRead) {
            self.lease_elapsed = self.lease_elapsed.saturating_add(1);
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        if let Some((target, elapsed)) = self.transfer {
            // A transfer that has not finished within an election timeout is abandoned.
            self.transfer =
                (elapsed + 1 < self.config.election_ticks).then_some((target, elapsed + 1));
        }
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum {
                let me = self.config.id;
                let active: Vec<NodeId> = self
                    .progress
                    .iter()
                    .filter(|(_, pr)| pr.recent_active)
                    .map(|(id, _)| *id)
                    .chain(std::iter::once(me))
                    .collect();
                if !self.membership.is_quorum(active.iter()) {
                    self.become_follower(self.term, None);
                    return;
                }
                for pr in self.progress.values_mut() {
                    pr.recent_active = false;
                }
            }
        }
    }

    /// Appends a command to the leader's log; returns its index and term. The command is
    /// committed once it appears in a Ready's `committed` with that index and term.
    pub fn propose(&mut self, command: C) -> Result<(Index, Term), Refused> {
        self.check_can_propose()?;
        Ok(self.append_entry(EntryKind::Command(command)))
    }

    /// Proposes a single-server membership change (one at a time).
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<(Index, Term), Refused> {
        self.check_can_propose()?;
        // Also refused until this leader has committed an entry of its own term (the
        // erratum to thesis 4.1): until then a change appended by an earlier leader, even
        // one missing from this log, may still commit, and the two changes' majorities
        // need not overlap.
        let committed_in_term = self.log.term(self.log.commit) == Some(self.term);
        // The `concurrent-membership` bug skips the "one change at a time" rule: a second
        // change appended while the first is uncommitted moves the configuration by two
        // servers, and the old and new majorities need no longer overlap.
        let pending = !self.bug(Bug::ConcurrentMembership)
            && self
                .log
                .last_membership_change()
                .is_some_and(|i| i > self.log.commit);
        if !committed_in_term || pending {
            return Err(Refused::MembershipChangePending);
        }
        if let MembershipChange::PromoteLearner(id) = change {
            // A learner votes only once it holds the committed log: promoting a lagging one
            // would make commitment wait for it (thesis 4.2.1).
            let caught_up = self
                .progress
                .get(&id)
                .is_some_and(|pr| pr.matched >= self.log.commit);
            if !caught_up {
                return Err(Refused::InvalidMembershipChange(
                    "learner has not caught up",
                ));
            }
        }
        let next = self
            .membership
            .apply(&change)
            .map_err(Refused::InvalidMembershipChange)?;
        let appended = self.append_entry(EntryKind::Membership(change));
        self.set_membership(next);
        Ok(appended)
    }

    fn check_can_propose(&self) -> Result<(), Refused> {
        if self.role != Role::Leader {
            return Err(Refused::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(Refused::Transferring);
        }
        Ok(())
    }

    fn append_entry(&mut self, kind: EntryKind<C>) -> (Index, Term) {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term,
            index,
            kind,
        });
        self.broadcast_pending = true;
        (index, self.term)
    }

    /// Asks for a linearizable read. When a Ready's `read_states` carries `ctx` with an
    /// index, the read may be served from the state machine once it has applied that index.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), Refused> {
        if self.bug(Bug::StaleRead) {
            // The bug: trust local state, on any server, without confirming leadership.
            self.read_states.push(ReadState {
                ctx,
                index: Some(self.log.commit),
            });
            return Ok(());
        }
        if self.bug(Bug::LeaseRead) && self.lease_holds() {
            // The bug: a leader that heard from a quorum less than an election timeout ago
            // "knows" no other leader can exist yet, and answers from local state without a
            // heartbeat round. That holds only if its ticks keep pace with its followers'
            // clocks: a paused leader (SIGSTOP, a stop-the-world GC, a suspended VM) misses
            // the ticks of the pause and, on waking, still trusts a lease that expired long
            // ago, while a new leader is already accepting writes. Real systems that read
            // on leases bound the lease well below the election timeout, measure it on a
            // monotonic clock from when the heartbeat was *sent*, and still depend on
            // bounded clock drift and pauses (etcd's `ReadOnlyLeaseBased` says so).
            self.read_states.push(ReadState {
                ctx,
                index: Some(self.log.commit),
            });
            return Ok(());
        }
        if self.role != Role::Leader {
            return Err(Refused::NotLeader {
                leader: self.leader,
            });
        }
        // Every read until the next Ready shares one round: its heartbeats go out when the
        // Ready is built (`confirm_reads`), so N reads between two Readies cost one round.
        if !self.read_round_due {
            self.read_round += 1;
            self.read_round_due = true;
        }
        self.pending_reads.push(PendingRead {
            ctx,
            round: self.read_round,
        });
        self.release_reads();
        Ok(())
    }

    /// Sends the heartbeat round the reads since the last Ready wait for. Only heartbeats:
    /// a read must not touch replication pacing (reset probes, take a busy pipeline for a
    /// stalled one, resend snapshots). A peer that this Ready already sends an
    /// AppendEntries or snapshot carrying the round needs no heartbeat: its answer, success
    /// or not, confirms the round just as well.
    fn confirm_reads(&mut self) {
        if !std::mem::take(&mut self.read_round_due) || self.role != Role::Leader {
            return;
        }
        let (term, round) = (self.term, self.read_round);
        let carried: BTreeSet<NodeId> = self
            .messages
            .iter()
            .filter(|m| {
                m.term == term
                    && matches!(
                        m.body,
                        Body::Append { read_round, .. } | Body::InstallSnapshot { read_round, .. }
                            if read_round == round
                    )
            })
            .map(|m| m.to)
            .collect();
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|id| !carried.contains(id))
            .collect();
        for peer in peers {
            self.send_heartbeat(peer);
        }
    }

    /// `lease-read` bug: this leader believes in its lease (it committed in its term and
    /// counted fewer than an election timeout of its own ticks since it last heard from a
    /// quorum).
    fn lease_holds(&self) -> bool {
        self.role == Role::Leader
            && self.log.term(self.log.commit) == Some(self.term)
            && self.lease_elapsed < self.config.election_ticks
    }

    /// `lease-read` bug: `from` answered this leader; once a quorum has, the lease restarts.
    fn renew_lease(&mut self, from: NodeId) {
        self.lease_heard.insert(from);
        let me = self.config.id;
        if self
            .membership
            .is_quorum(self.lease_heard.iter().chain(std::iter::once(&me)))
        {
            self.lease_elapsed = 0;
            self.lease_heard.clear();
        }
    }

    /// Hands leadership to `to` once it is up to date (thesis 3.10). Proposals are refused
    /// meanwhile; the transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), Refused> {
        if self.role != Role::Leader {
            return Err(Refused::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.config.id || !self.membership.voters.contains(&to) {
            return Err(Refused::InvalidTransferTarget);
        }
        self.transfer = Some((to, 0));
        let up_to_date = self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.matched == self.log.last_index());
        if up_to_date {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to);
        }
        Ok(())
    }

    /// The caller has applied up to `index` and gives the state machine's snapshot there;
    /// the log before it is discarded. Returns whether anything was compacted.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) -> bool {
        let membership = self.log.membership_at(index);
        self.log.compact(index, membership, data)
    }

    /// Handles a message from another server; drops (and returns why) one that no correct
    /// peer sends, before it changes anything.
    pub fn step(&mut self, msg: Message<C>) -> Result<(), Dropped> {
        if msg.to != self.config.id {
            return Ok(());
        }
        self.check_input(&msg)?;
        if msg.term > self.term {
            match msg.body {
                // A pre-vote does not change anyone's term.
                Body::Vote {
                    campaign: Campaign::PreVote,
                    ..
                } => {}
                // Granted pre-votes come back with the term we would campaign in.
                Body::VoteResponse {
                    campaign: Campaign::PreVote,
                    granted: true,
                } => {}
                Body::Vote { campaign, .. } => {
                    if campaign != Campaign::Transfer && self.in_leader_lease() {
                        // A server that hears from a leader ignores disruptive candidates.
                        return Ok(());
                    }
                    self.become_follower(msg.term, None);
                }
                Body::Append { .. } | Body::InstallSnapshot { .. } | Body::TimeoutNow => {
                    self.become_follower(msg.term, Some(msg.from));
                }
                _ => self.become_follower(msg.term, None),
            }
        } else if msg.term < self.term {
            match msg.body {
                // Tell a stale leader about the new term so it steps down.
                Body::Append { .. } | Body::InstallSnapshot { .. } => self.send(
                    msg.from,
                    Body::AppendResponse {
                        index: 0,
                        conflict_term: None,
                        success: false,
                        read_round: 0,
                        prev_index: 0,
                    },
                ),
                Body::Vote {
                    campaign: Campaign::PreVote,
                    ..
                } => self.send(
                    msg.from,
                    Body::VoteResponse {
                        campaign: Campaign::PreVote,
                        granted: false,
                    },
                ),
                _ => {}
            }
            return Ok(());
        }

        let from = msg.from;
        let term = msg.term;
        match msg.body {
            Body::Vote {
                campaign,
                last_index,
                last_term,
            } => self.handle_vote(from, term, campaign, last_index, last_term),
            Body::VoteResponse { campaign, granted } => {
                self.handle_vote_response(from, campaign, granted)
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                read_round,
            } => self.handle_append(from, prev_index, prev_term, entries, commit, read_round),
            Body::AppendResponse {
                index,
                conflict_term,
                success,
                read_round,
                prev_index,
            } => self.handle_append_response(
                from,
                index,
                conflict_term,
                success,
                read_round,
                prev_index,
            ),
            Body::InstallSnapshot {
                snapshot,
                read_round,
            } => self.handle_snapshot(from, snapshot, read_round),
            Body::TimeoutNow => {
                if self.is_voter() && self.role != Role::Leader {
                    self.campaign(Campaign::Transfer);
                }
            }
        }
        Ok(())
    }

    /// Refuses input that would break the core's own invariants (see [`Dropped`]); the
    /// assertions in [`RaftLog`] stay for the states the core itself produces.
    fn check_input(&self, msg: &Message<C>) -> Result<(), Dropped> {
        if msg.term == Term::MAX {
            return Err(Dropped::LastTerm { term: msg.term });
        }
        let Body::Append {
            prev_index,
            entries,
            ..
        } = &msg.body
        else {
            return Ok(());
        };
        for (position, entry) in entries.iter().enumerate() {
            if Some(entry.index) != prev_index.checked_add(1 + position as Index) {
                return Err(Dropped::NotContiguous {
                    prev_index: *prev_index,
                    position,
                    index: entry.index,
                });
            }
        }
        // A stale leader's entries may legitimately differ from what a later one committed;
        // it is answered with the new term, not dropped. From a leader of this term or a
        // later one (Leader Completeness) they cannot.
        if msg.term < self.term {
            return Ok(());
        }
        let committed = entries.iter().take_while(|e| e.index <= self.log.commit);
        for entry in committed {
            if let Some(committed_term) = self.log.term(entry.index) {
                if committed_term != entry.term {
                    return Err(Dropped::ConflictsWithCommitted {
                        index: entry.index,
                        term: entry.term,
                        committed_term,
                        commit: self.log.commit,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether this server heard from a leader within the minimum election timeout (with
    /// check-quorum: it then ignores vote requests, thesis 4.2.3).
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum && self.heard_from_leader()
    }

    /// Whether a pre-vote must be refused because a leader was heard from within the
    /// minimum election timeout: whenever pre-vote is on (thesis 9.6), not only with
    /// check-quorum.
    fn refuses_pre_votes(&self) -> bool {
        (self.config.pre_vote || self.config.check_quorum) && self.heard_from_leader()
    }

    fn heard_from_leader(&self) -> bool {
        self.leader.is_some() && self.election_elapsed < self.config.election_ticks
    }

    // ----- elections ----------------------------------------------------------------------

    fn campaign(&mut self, campaign: Campaign) {
        // Messages of the last term are dropped, but a restored hard state may hold it: such
        // a server cannot campaign without wrapping the term, so it stays a follower.
        let Some(next_term) = self.term.checked_add(1) else {
            return;
        };
        let campaign_term = match campaign {
            Campaign::PreVote => {
                self.role = Role::PreCandidate;
                self.leader = None;
                next_term
            }
            Campaign::Election | Campaign::Transfer => {
                self.term = next_term;
                self.voted_for = Some(self.config.id);
                self.role = Role::Candidate;
                self.leader = None;
                self.term
            }
        };
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.membership.voters.iter().copied().collect();
        for voter in voters.into_iter().filter(|&v| v != self.config.id) {
            self.messages.push(Message {
                from: self.config.id,
                to: voter,
                term: campaign_term,
                body: Body::Vote {
                    campaign,
                    last_index,
                    last_term,
                },
            });
        }
        self.tally(campaign);
    }

    fn handle_vote(
        &mut self,
        from: NodeId,
        term: Term,
        campaign: Campaign,
        last_index: Index,
        last_term: Term,
    ) {
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        let granted = match campaign {
            // etcd/raft's rule: a pre-vote for a later term, or for this very term when this
            // server knows no leader and has not voted for another candidate in it.
            Campaign::PreVote => {
                let free = term > self.term
                    || self.voted_for == Some(from)
                    || (self.voted_for.is_none() && self.leader.is_none());
                up_to_date && free && !self.refuses_pre_votes()
            }
            Campaign::Election | Campaign::Transfer => {
                let free = match self.voted_for {
                    None => true,
                    Some(v) => v == from || self.bug(Bug::VoteTwice),
                };
                free && up_to_date
            }
        };
        if granted && campaign != Campaign::PreVote {
            self.voted_for = Some(from);
            self.election_elapsed = 0;
        }
        let reply_term = if granted { term } else { self.term };
        self.messages.push(Message {
            from: self.config.id,
            to: from,
            term: reply_term,
            body: Body::VoteResponse { campaign, granted },
        });
    }

    fn handle_vote_response(&mut self, from: NodeId, campaign: Campaign, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate => campaign == Campaign::PreVote,
            Role::Candidate => campaign != Campaign::PreVote,
            _ => false,
        };
        if !expected || !self.membership.voters.contains(&from) {
            return;
        }
        self.votes.insert(from, granted);
        self.tally(campaign);
    }

    fn tally(&mut self, campaign: Campaign) {
        let granted = self.votes.iter().filter(|(_, g)| **g).map(|(id, _)| id);
        if self.membership.is_quorum(granted) {
            match campaign {
                Campaign::PreVote => self.campaign(Campaign::Election),
                _ => self.become_leader(),
            }
            return;
        }
        let rejected = self.votes.iter().filter(|(_, g)| !**g).map(|(id, _)| id);
        if self.membership.is_quorum(rejected) {
            self.become_follower(self.term, None);
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never go backwards");
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        if self.role == Role::Leader {
            self.abandon_reads();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.transfer = None;
        self.broadcast_pending = false;
        self.read_round_due = false;
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate can win an election"
        );
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        if self.bug(Bug::LeaseRead) {
            // No lease until a quorum has answered this leader.
            self.lease_elapsed = self.config.election_ticks;
            self.lease_heard.clear();
        }
        let next = self.log.last_index() + 1;
        let me = self.config.id;
        self.progress = self
            .membership
            .members()
            .filter(|&id| id != me)
            .map(|id| (id, Progress::new(next)))
            .collect();
        // A no-op of the new term lets the leader commit, and so learn the commit point of,
        // everything before it (Figure 8 forbids committing old terms by counting).
        self.append_entry(EntryKind::Noop);
        self.maybe_commit();
    }

    /// Restarts the election timer with a timeout drawn from `(election, 2 * election]`
    /// ticks. Strictly above the base, so that a follower's trust in its leader (which lasts
    /// the base timeout) always runs out before its own timer fires. The draw depends on the
    /// seed, the server and the term: servers differ, and so do successive terms.
    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_ticks.max(1);
        let draw = splitmix64(self.config.seed ^ self.config.id.rotate_left(32) ^ self.term);
        self.randomized_timeout = base + 1 + (draw % u64::from(base)) as u32;
    }

    // ----- replication: follower side ---------------------------------------------------

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry<C>>,
        commit: Index,
        read_round: u64,
    ) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;

        let reply = if prev_index < self.log.commit {
            // Everything up to our commit point already matches the leader's log; skip
            // what we have and keep the rest.
            let skip = (self.log.commit - prev_index) as usize;
            if skip < entries.len() {
                let rest = &entries[skip..];
                let last = self.merge(self.log.commit, rest);
                self.log.commit_to(commit.min(last));
                (last, None, true)
            } else {
                (self.log.commit, None, true)
            }
        } else if self.log.term(prev_index) == Some(prev_term) {
            let last = self.merge(prev_index, &entries);
            self.log.commit_to(commit.min(last));
            (last, None, true)
        } else if prev_index > self.log.last_index() {
            (self.log.last_index() + 1, None, false)
        } else {
            let conflict_term = self.log.term(prev_index);
            (
                self.log.first_index_of_term_at(prev_index),
                conflict_term,
                false,
            )
        };
        self.send(
            from,
            Body::AppendResponse {
                index: reply.0,
                conflict_term: reply.1,
                success: reply.2,
                read_round,
                prev_index,
            },
        );
    }

    /// Merges leader entries; the membership follows the log (including truncations).
    /// `prev_index` is never below the commit index (the callers skip what is committed).
    fn merge(&mut self, prev_index: Index, entries: &[Entry<C>]) -> Index {
        let mut cut = false;
        if self.bug(Bug::TruncateOnAppend) && !entries.is_empty() {
            // The bug: "the log matches at prev, so make it prev + entries" — truncating
            // whatever follows prev even when it agrees with the leader. A delayed or
            // duplicated AppendEntries (older, shorter than what this follower already
            // acknowledged) then erases acknowledged entries, which the leader has counted
            // toward commitment. Raft's rule (Figure 2, AppendEntries step 3) deletes only
            // from the first *conflicting* entry; the Students' Guide to Raft warns about
            // exactly this "unconditional truncate" as a common mistake.
            cut = self.log.truncate_after(prev_index);
        }
        let (last, truncated) = self.log.merge(prev_index, entries);
        let truncated = truncated || cut;
        let touched_membership = entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Membership(_)));
        if touched_membership || truncated {
            self.membership = self.log.membership_at(self.log.last_index());
        }
        last
    }

    fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot, read_round: u64) {
        let snapshot_index = snapshot.meta.index;
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        if self.log.install(snapshot) {
            self.membership = self.log.membership_at(self.log.last_index());
        }
        let index = self.log.commit;
        self.send(
            from,
            Body::AppendResponse {
                index,
                conflict_term: None,
                success: true,
                read_round,
                prev_index: snapshot_index,
            },
        );
    }

    // ----- replication: leader side -----------------------------------------------------

    fn handle_append_response(
        &mut self,
        from: NodeId,
        index: Index,
        conflict_term: Option<Term>,
        success: bool,
        read_round: u64,
        prev_index: Index,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        if !self.progress.contains_key(&from) {
            return;
        }
        if self.bug(Bug::LeaseRead) {
            self.renew_lease(from);
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.read_round = pr.read_round.max(read_round);
        if success {
            if pr.accepted(index.min(last_index)) {
                // A follower that now holds committed entries it was not told are committed
                // hears it at the next Ready (see `announce_commit`).
                if self.log.commit.min(pr.matched) > pr.commit_sent {
                    self.broadcast_pending = true;
                }
                self.maybe_commit();
            }
            let caught_up = self
                .progress
                .get(&from)
                .is_some_and(|pr| pr.matched == last_index);
            if caught_up && self.transfer.is_some_and(|(t, _)| t == from) {
                self.send(from, Body::TimeoutNow);
            }
        } else if pr.rejection_is_current(prev_index) {
            let next = match conflict_term.and_then(|t| self.log.last_index_of_term(t)) {
                Some(last_of_term) => last_of_term + 1,
                None => index,
            };
            if let Some(pr) = self.progress.get_mut(&from) {
                pr.rejected(next.max(1));
            }
        }
        // (A rejection that is not current, late or duplicated, changes nothing.)
        self.release_reads();
        self.send_append(from);
    }

    /// Sends `to` the next batch of entries if its pacing allows, or a snapshot if the
    /// entries it needs were compacted.
    fn send_append(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get(&to) else {
            return;
        };
        if !pr.can_send(self.config.max_inflight) {
            return;
        }
        let prev_index = pr.next - 1;
        let has_new = pr.next <= self.log.last_index();
        let probing = pr.state == ReplicationState::Probe;
        if !has_new && !probing {
            return;
        }
        let Some(prev_term) = self.log.term(prev_index) else {
            // The entries the follower needs are compacted. It may still hold the
            // snapshot's last entry (a new leader does not know its match point; an answer
            // may have been lost): probe there first, and send the snapshot only when the
            // follower's answer to that probe says it needs it.
            let boundary = self.log.snapshot().meta.index;
            if let Some(pr) = self.progress.get_mut(&to) {
                if pr.boundary_probe != Some(boundary) {
                    pr.boundary_probe = Some(boundary);
                    pr.state = ReplicationState::Probe;
                    pr.inflight.clear();
                    pr.probe_sent = false;
                    pr.next = boundary + 1;
                    // The leader holds the term at its snapshot's index: no recursion.
                    self.send_append(to);
                    return;
                }
            }
            self.send_snapshot(to);
            return;
        };
        let entries = if has_new {
            self.log.slice(pr.next, self.config.max_batch)
        } else {
            Vec::new()
        };
        let last = prev_index + entries.len() as Index;
        let carried = !entries.is_empty();
        let commit = self.log.commit;
        let read_round = self.read_round;
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent(last, carried);
            pr.commit_sent = pr.commit_sent.max(commit.min(last));
        }
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                read_round,
            },
        );
    }

    fn send_snapshot(&mut self, to: NodeId) {
        let snapshot = self.log.snapshot().clone();
        let index = snapshot.meta.index;
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sending_snapshot(index);
        }
        let read_round = self.read_round;
        self.send(
            to,
            Body::InstallSnapshot {
                snapshot,
                read_round,
            },
        );
    }

    /// The periodic heartbeat, the only place where replication pacing is reset: a probe
    /// is retried (from `next - 1`, which the leader holds: the probe is the heartbeat), a
    /// stalled pipeline falls back to probing, a snapshot unanswered for an election
    /// timeout is retried; other followers get a plain heartbeat, then any entries due.
    fn broadcast_heartbeat(&mut self) {
        let snapshot_timeout =
            (self.config.election_ticks / self.config.heartbeat_ticks.max(1)).max(1);
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            let Some(pr) = self.progress.get_mut(&peer) else {
                continue;
            };
            pr.heartbeat(snapshot_timeout);
            if pr.state == ReplicationState::Probe {
                self.send_append(peer);
            } else {
                self.send_heartbeat(peer);
                self.send_append(peer);
            }
        }
    }

    /// A plain heartbeat: no entries, the current read round, and the commit index capped
    /// at the follower's match point, which is also its `prev` (the follower holds it, so
    /// it never rejects one). If the leader compacted the term at the match point, it uses
    /// `prev` = (0, 0) instead, which every follower accepts (everything up to its commit
    /// point matches the leader), without a commit index.
    fn send_heartbeat(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        let (prev_index, prev_term) = match self.log.term(pr.matched) {
            Some(term) => (pr.matched, term),
            None => (0, 0),
        };
        let commit = self.log.commit.min(prev_index);
        pr.commit_sent = pr.commit_sent.max(commit);
        let read_round = self.read_round;
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries: Vec::new(),
                commit,
                read_round,
            },
        );
    }

    /// Tells each follower a commit index it has not been sent yet (up to its match
    /// point), with a plain heartbeat where nothing else carried it. Once per Ready.
    fn announce_commit(&mut self) {
        let commit = self.log.commit;
        let due: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, pr)| {
                commit.min(pr.matched) > pr.commit_sent && self.log.term(pr.matched).is_some()
            })
            .map(|(id, _)| *id)
            .collect();
        for peer in due {
            self.send_heartbeat(peer);
        }
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer);
        }
    }

    /// Commits the highest index a quorum of voters holds, if it is of the current term.
    fn maybe_commit(&mut self) {
        let me = self.config.id;
        let stable = self.log.stable_index();
        let mut matched: Vec<Index> = self
            .membership
            .voters
            .iter()
            .map(|id| {
                if *id == me {
                    stable
                } else {
                    self.progress.get(id).map_or(0, |pr| pr.matched)
                }
            })
            .collect();
        if matched.is_empty() {
            return;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[self.membership.voters.len() / 2];
        if quorum_index <= self.log.commit {
            return;
        }
        let current_term = self.log.term(quorum_index) == Some(self.term);
        if current_term || self.bug(Bug::CommitOldTerm) {
            let before = self.log.commit;
            self.log.commit_to(quorum_index);
            self.on_commit_advanced(before);
        }
    }

    fn on_commit_advanced(&mut self, before: Index) {
        self.broadcast_pending = true;
        self.release_reads();
        // A leader removed from the membership steps down once the removal is committed
        // (thesis 4.2.2); it managed the cluster until then.
        // (The log scan for the last change runs only when this leader is not a member.)
        let removed_self = !self.membership.members().any(|id| id == self.config.id);
        if removed_self
            && self
                .log
                .last_membership_change()
                .is_some_and(|i| i > before && i <= self.log.commit)
        {
            self.become_follower(self.term, None);
        }
    }

    fn set_membership(&mut self, membership: Membership) {
        self.membership = membership;
        if self.role == Role::Leader {
            let next = self.log.last_index() + 1;
            let me = self.config.id;
            let members: BTreeSet<NodeId> =
                self.membership.members().filter(|&id| id != me).collect();
            self.progress.retain(|id, _| members.contains(id));
            for id in members {
                self.progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next));
            }
            self.maybe_commit();
        }
    }

    // ----- reads --------------------------------------------------------------------------

    /// Releases pending reads whose round a quorum acknowledged, once the leader has
    /// committed an entry of its own term (before that it does not know the commit point).
    fn release_reads(&mut self) {
        if self.role != Role::Leader
            || self.pending_reads.is_empty()
            || self.log.term(self.log.commit) != Some(self.term)
        {
            return;
        }
        let me = self.config.id;
        let confirmed_round = {
            let mut rounds: Vec<u64> = self
                .membership
                .voters
                .iter()
                .map(|id| {
                    if *id == me {
                        u64::MAX
                    } else {
                        self.progress.get(id).map_or(0, |pr| pr.read_round)
                    }
                })
                .collect();
            rounds.sort_unstable_by(|a, b| b.cmp(a));
            rounds[self.membership.voters.len() / 2]
        };
        let commit = self.log.commit;
        let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) = self
            .pending_reads
            .drain(..)
            .partition(|read| read.round <= confirmed_round);
        self.pending_reads = waiting;
        self.read_states
            .extend(ready.into_iter().map(|read| ReadState {
                ctx: read.ctx,
                index: Some(commit),
            }));
    }

    fn abandon_reads(&mut self) {
        let abandoned = self.pending_reads.drain(..).map(|read| ReadState {
            ctx: read.ctx,
            index: None,
        });
        self.read_states.extend(abandoned);
    }

    // ----- output ---------------------------------------------------------------------------

    fn send(&mut self, to: NodeId, body: Body<C>) {
        self.messages.push(Message {
            from: self.config.id,
            to,
            term: self.term,
            body,
        });
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: if self.bug(Bug::ForgetVote) {
                None
            } else {
                self.voted_for
            },
        }
    }

    /// `apply-uncommitted` bug: a follower (any server not leading) hands its durable
    /// entries to the state machine without waiting for them to commit. What real systems
    /// got wrong: applying on append looks harmless because most appended entries do
    /// commit; but an uncommitted suffix can be truncated by the next leader, and a state
    /// machine cannot un-apply. The truncated writes stay in this server's state, the
    /// entries that replace them are never applied here (they sit at indexes it believes
    /// it has applied), and once this server leads or serves reads, clients see both.
    fn applies_uncommitted(&self) -> bool {
        self.bug(Bug::ApplyUncommitted) && self.role != Role::Leader
    }

    /// The `ack-before-commit` bug: a leader hands out what it has durable, committed or
    /// not. Only a leader: `has_ready` and `ready` must agree, or a follower's driver would
    /// spin on Readys with nothing in them (a lab run hung its followers that way).
    fn acks_before_commit(&self) -> bool {
        self.bug(Bug::AckBeforeCommit) && self.role == Role::Leader
    }

    /// Whether [`ready`](Self::ready) has work to hand out.
    pub fn has_ready(&self) -> bool {
        !self.awaiting_advance
            && (!self.messages.is_empty()
                || self.broadcast_pending
                || self.log.has_unstable()
                || self.hard_state() != self.persisted_hard_state
                || self.read_round_due
                || self.log.has_committed_to_apply()
                || (self.acks_before_commit() && self.log.stable_index() > self.log.applied)
                || (self.applies_uncommitted() && self.log.stable_index() > self.log.applied)
                || !self.read_states.is_empty())
    }

    /// The next batch of work, if any (see [`Ready`] for the order it must be done in).
    pub fn ready(&mut self) -> Option<Ready<C>> {
        if !self.has_ready() {
            return None;
        }
        if self.broadcast_pending && self.role == Role::Leader {
            self.broadcast_append();
            self.announce_commit();
        }
        self.broadcast_pending = false;
        self.confirm_reads();
        let hard_state = self.hard_state();
        let ahead = self.acks_before_commit() || self.applies_uncommitted();
        let (early_messages, messages) = self.split_outbox();
        let ready = Ready {
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            snapshot: self.log.take_pending_snapshot(),
            entries: self.log.take_unstable(),
            early_messages,
            messages,
            committed: self.log.take_committed(ahead),
            read_states: std::mem::take(&mut self.read_states),
        };
        self.persisted_hard_state = hard_state;
        self.awaiting_advance = true;
        Some(ready)
    }

    /// Splits the outbox into the messages that may leave before this Ready's writes are
    /// durable and those that must wait for them (thesis 10.2.1: a leader may write its
    /// log in parallel with replicating it). Early: what a leader sends in a term already
    /// durable here (the previous Ready's hard state was made durable before `advance`) —
    /// AppendEntries, heartbeats, snapshots, TimeoutNow. They promise nothing about this
    /// server's storage: the leader counts its own copy of an entry only once durable
    /// (`maybe_commit` takes the stable index) and applies only durable entries
    /// (`take_committed`). Everything else waits: votes and their answers promise the
    /// hard state this Ready writes, append answers promise its entries. A message of a
    /// term this Ready makes durable waits too: after a crash before the write, this
    /// server could campaign for that term again and, as its leader, send different
    /// entries under the same term.
    fn split_outbox(&mut self) -> (Vec<Message<C>>, Vec<Message<C>>) {
        let durable_term = self.persisted_hard_state.term;
        let (early, late): (Vec<Message<C>>, Vec<Message<C>>) = std::mem::take(&mut self.messages)
            .into_iter()
            .partition(|m| {
                m.term <= durable_term
                    && matches!(
                        m.body,
                        Body::Append { .. } | Body::InstallSnapshot { .. } | Body::TimeoutNow
                    )
            });
        (early, late)
    }

    /// The caller finished the last Ready: what it persisted is durable.
    pub fn advance(&mut self) {
        self.awaiting_advance = false;
        self.log.mark_stable();
        if self.role == Role::Leader {
            // The leader's own durable entries count towards the quorum only now.
            self.maybe_commit();
        }
    }
}

/// SplitMix64's output function: small, and the same on every platform.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: NodeId) -> Config {
        let mut config = Config::new(id);
        config.pre_vote = false;
        config
    }

    fn heartbeats(messages: &[Message<u64>]) -> usize {
        messages
            .iter()
            .filter(|m| matches!(&m.body, Body::Append { entries, .. } if entries.is_empty()))
            .count()
    }

    fn answer(raft: &mut Raft<u64>, append: &Message<u64>) {
        let Body::Append {
            prev_index,
            ref entries,
            read_round,
            ..
        } = append.body
        else {
            panic!("not an AppendEntries: {append:?}");
        };
        raft.step(Message {
            from: append.to,
            to: append.from,
            term: append.term,
            body: Body::AppendResponse {
                index: prev_index + entries.len() as Index,
                conflict_term: None,
                success: true,
                read_round,
                prev_index,
            },
        })
        .unwrap();
    }

    /// Server 2's vote for server 1 in term 1.
    fn vote_granted_by_2() -> Message<u64> {
        Message {
            from: 2,
            to: 1,
            term: 1,
            body: Body::VoteResponse {
                campaign: Campaign::Election,
                granted: true,
            },
        }
    }

    /// Server 1 of {1, 2, 3}, leader of term 1 with its no-op committed, no Ready pending.
    fn leader() -> Raft<u64> {
        let mut raft = Raft::new(config(1), [1, 2, 3]);
        raft.election_timeout();
        let campaign = raft.ready().expect("campaign Ready");
        raft.advance();
        raft.step(vote_granted_by_2()).unwrap();
        assert_eq!(raft.role(), Role::Leader);
        assert_eq!(campaign.messages.len(), 2);
        let ready = raft.ready().expect("the no-op's Ready");
        raft.advance();
        for append in &ready.early_messages {
            answer(&mut raft, append);
        }
        while raft.ready().is_some() {
            raft.advance();
        }
        assert_eq!(raft.commit_index(), 1);
        raft
    }

    /// Reads between two Readies share one heartbeat round: one heartbeat per follower,
    /// and one quorum answer releases them all.
    #[test]
    fn reads_between_readies_share_one_heartbeat_round() {
        let mut raft = leader();
        for ctx in 0..5 {
            raft.read_index(ctx).expect("leader");
        }
        assert!(raft.outbox().is_empty(), "no heartbeat per read");
        let ready = raft.ready().expect("the round's Ready");
        assert_eq!(
            heartbeats(&ready.early_messages),
            2,
            "one round: 2 followers"
        );
        assert!(ready.messages.is_empty());
        raft.advance();
        assert!(raft.ready().is_none());
        answer(&mut raft, &ready.early_messages[0]);
        let released = raft.ready().expect("the released reads");
        let ctxs: Vec<u64> = released.read_states.iter().map(|r| r.ctx).collect();
        assert_eq!(ctxs, vec![0, 1, 2, 3, 4]);
        assert!(released.read_states.iter().all(|r| r.index == Some(1)));
        raft.advance();
    }

    /// Reads that arrive while a Ready is out wait for the next one, and share its round;
    /// the earlier round's answer does not release them.
    #[test]
    fn reads_during_a_ready_join_the_next_round() {
        let mut raft = leader();
        raft.read_index(0).expect("leader");
        let first = raft.ready().expect("first round");
        assert_eq!(heartbeats(&first.early_messages), 2);
        raft.read_index(1).expect("leader");
        raft.read_index(2).expect("leader");
        answer(&mut raft, &first.early_messages[0]);
        raft.advance();
        let second = raft.ready().expect("second round");
        assert_eq!(heartbeats(&second.early_messages), 2);
        let ctxs: Vec<u64> = second.read_states.iter().map(|r| r.ctx).collect();
        assert_eq!(ctxs, vec![0], "only the read of the answered round");
        raft.advance();
        answer(&mut raft, &second.early_messages[1]);
        let third = raft.ready().expect("released");
        let ctxs: Vec<u64> = third.read_states.iter().map(|r| r.ctx).collect();
        assert_eq!(ctxs, vec![1, 2]);
        raft.advance();
    }

    /// A follower that gets an AppendEntries carrying the round in the same Ready gets no
    /// extra heartbeat.
    #[test]
    fn an_append_carrying_the_round_replaces_its_heartbeat() {
        let mut raft = leader();
        raft.read_index(0).expect("leader");
        raft.propose(7).expect("leader");
        let ready = raft.ready().expect("Ready");
        assert_eq!(heartbeats(&ready.early_messages), 0);
        assert_eq!(
            ready.early_messages.len(),
            2,
            "one AppendEntries per follower"
        );
        raft.advance();
        answer(&mut raft, &ready.early_messages[0]);
        let released = raft.ready().expect("released");
        assert_eq!(released.read_states.len(), 1);
        raft.advance();
    }

    /// A leader's replication leaves before its writes; what it promises about its own
    /// storage (votes, acknowledgements) waits, and so does anything of a term not yet
    /// durable here.
    #[test]
    fn only_a_leaders_replication_in_a_durable_term_leaves_early() {
        // A candidate's vote requests wait for its vote for itself.
        let mut raft: Raft<u64> = Raft::new(config(1), [1, 2, 3]);
        raft.election_timeout();
        let campaign = raft.ready().expect("campaign");
        assert!(campaign.early_messages.is_empty());
        assert_eq!(campaign.messages.len(), 2);
        // Elected before that Ready's term is durable: its first AppendEntries wait too (a
        // crash could let it lead term 1 again with another log).
        raft.step(vote_granted_by_2()).unwrap();
        raft.advance();
        let mut fresh: Raft<u64> = Raft::new(config(1), [1, 2, 3]);
        fresh.election_timeout();
        fresh.step(vote_granted_by_2()).unwrap();
        let ready = fresh.ready().expect("Ready");
        assert!(ready.hard_state.is_some());
        assert!(ready.early_messages.is_empty());
        assert!(ready
            .messages
            .iter()
            .any(|m| m.body.name() == "AppendEntries"));
        // With term 1 durable, the leader's AppendEntries leave before its no-op is.
        let ready = raft.ready().expect("the no-op");
        assert_eq!(ready.entries.len(), 1);
        assert_eq!(ready.early_messages.len(), 2);
        assert!(ready.messages.is_empty());
        // The follower's acknowledgement waits for its write.
        let mut follower: Raft<u64> = Raft::new(config(2), [1, 2, 3]);
        follower.step(ready.early_messages[0].clone()).unwrap();
        let acked = follower.ready().expect("follower Ready");
        assert!(acked.early_messages.is_empty());
        assert_eq!(acked.messages.len(), 1);
        assert_eq!(acked.messages[0].body.name(), "AppendResponse");
        // The followers commit the no-op before the leader's copy is durable: the leader
        // neither counts nor applies its own copy yet.
        for append in &ready.early_messages {
            answer(&mut raft, append);
        }
        assert_eq!(raft.commit_index(), 1, "a quorum of followers holds it");
        raft.advance();
        let applied = raft.ready().expect("apply");
        assert_eq!(applied.committed.len(), 1, "durable now, applied now");
        raft.advance();
    }

    /// Server 2 of {1, 2, 3}: a follower of term 1 holding entries 1..=3 of term 1,
    /// committed through 2, no Ready pending.
    fn follower() -> Raft<u64> {
        let mut raft = Raft::new(config(2), [1, 2, 3]);
        raft.step(append(1, 1, 0, 0, &[(1, 1), (2, 1), (3, 1)], 2))
            .unwrap();
        while raft.ready().is_some() {
            raft.advance();
        }
        assert_eq!(
            (raft.term(), raft.commit_index(), raft.last_index()),
            (1, 2, 3)
        );
        raft
    }

    /// An AppendEntries from `from` in `term` carrying `entries` as (index, term).
    fn append(
        from: NodeId,
        term: Term,
        prev_index: Index,
        prev_term: Term,
        entries: &[(Index, Term)],
        commit: Index,
    ) -> Message<u64> {
        Message {
            from,
            to: 2,
            term,
            body: Body::Append {
                prev_index,
                prev_term,
                entries: entries
                    .iter()
                    .map(|&(index, term)| Entry {
                        term,
                        index,
                        kind: EntryKind::Command(index),
                    })
                    .collect(),
                commit,
                read_round: 0,
            },
        }
    }

    /// Terms in the follower's log, in order.
    fn terms(raft: &Raft<u64>) -> Vec<Term> {
        (1..=raft.last_index())
            .filter_map(|i| raft.log().term(i))
            .collect()
    }

    /// A term that cannot be advanced past is refused: adopting it would wrap the term at
    /// the next election.
    #[test]
    fn a_message_of_the_last_term_is_dropped() {
        let mut raft = follower();
        let result = raft.step(append(1, Term::MAX, 3, 1, &[], 3));
        assert_eq!(result, Err(Dropped::LastTerm { term: Term::MAX }));
        assert_eq!(
            (raft.term(), raft.commit_index()),
            (1, 2),
            "nothing changed"
        );
        raft.election_timeout();
        assert_eq!(raft.term(), 2);
    }

    /// A server restored at the last term (a damaged or hostile hard state) does not wrap
    /// it: it stays a follower.
    #[test]
    fn a_server_at_the_last_term_does_not_campaign() {
        let mut raft: Raft<u64> = Raft::restore(
            config(1),
            Restored {
                hard_state: HardState {
                    term: Term::MAX,
                    voted_for: None,
                },
                snapshot: Snapshot {
                    meta: crate::core::SnapshotMeta {
                        index: 0,
                        term: 0,
                        membership: Membership::of_voters([1, 2, 3]),
                    },
                    data: Default::default(),
                },
                entries: Vec::new(),
            },
        );
        raft.election_timeout();
        assert_eq!((raft.term(), raft.role()), (Term::MAX, Role::Follower));
        assert!(raft.outbox().is_empty());
    }

    /// Entries that do not follow on from `prev_index` one by one are refused whole.
    #[test]
    fn non_contiguous_entries_are_dropped() {
        let mut raft = follower();
        let result = raft.step(append(1, 1, 2, 1, &[(1, 2)], 2));
        assert_eq!(
            result,
            Err(Dropped::NotContiguous {
                prev_index: 2,
                position: 0,
                index: 1
            })
        );
        let result = raft.step(append(1, 1, 3, 1, &[(4, 1), (6, 1)], 3));
        assert!(
            matches!(
                result,
                Err(Dropped::NotContiguous {
                    position: 1,
                    index: 6,
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(terms(&raft), vec![1, 1, 1], "log unchanged");
        assert_eq!(raft.commit_index(), 2);
    }

    /// An entry that conflicts with a committed one comes from a broken peer: refused
    /// whole, before its term is adopted.
    #[test]
    fn a_conflict_at_a_committed_index_is_dropped() {
        let mut raft = follower();
        let result = raft.step(append(3, 2, 0, 0, &[(1, 2), (2, 2), (3, 2), (4, 2)], 4));
        assert_eq!(
            result,
            Err(Dropped::ConflictsWithCommitted {
                index: 1,
                term: 2,
                committed_term: 1,
                commit: 2
            })
        );
        assert_eq!(terms(&raft), vec![1, 1, 1], "log unchanged");
        assert_eq!(
            (raft.term(), raft.commit_index()),
            (1, 2),
            "nothing changed"
        );
    }
}
