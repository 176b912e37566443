//! The model's properties, named after the Raft paper (Figure 3), plus linearizability.
//!
//! The four safety properties reuse the simulator's checker ([`Invariants`]) on each state:
//! a fresh [`Invariants`] is fed every running server's core, which checks
//!
//! * **Election Safety**: no two servers lead the same term *in this state*; and, over the
//!   whole run, the history records which server sent AppendEntries in each term (only a
//!   leader does), so two leaders of one term are caught even if they never coexist;
//! * **Log Matching**: an (index, term) pair names the same entry, after the same term, in
//!   every log;
//! * **Leader Completeness**: every leader holds every entry some server knows committed in
//!   an earlier term;
//! * **State Machine Safety**: no two servers hold different committed entries at one index;
//!   and, over the whole run, a ghost record of the terms each server *applied* (kept with its
//!   durable state, so it survives crashes) never disagrees between servers or with itself.
//!
//! **Linearizable**: the clients' invocations and returns, recorded in stateright's
//! [`LinearizabilityTester`](stateright::semantics::LinearizabilityTester) against the
//! [`CasRegister`](super::spec::CasRegister) spec, have a linearization.
//!
//! **Durability**: a restarted server's core accepts the durable state it saved (and every
//! snapshot it receives applies) — a refusal would be a data-loss bug, reported rather than
//! panicking the checker.
//!
//! Two invariants of the protocol's own rules, which hold in every state of a correct run
//! and break at once when the rule is broken (long before the rarer end-to-end failure):
//!
//! * **Votes Are Durable** (the persistence contract): every granted vote in the network is
//!   recorded in its voter's durable state — the same term and candidate, or a later term.
//!   A vote that can be forgotten by a crash is a vote that can be given twice.
//! * **One Membership Change at a Time** (thesis 4.1): no leader's log holds two membership
//!   changes above its commit index. A second change appended while the first is
//!   uncommitted moves the configuration by two servers, and the majorities of the old and
//!   the newest configuration need no longer overlap.
//!
//! Liveness-flavoured sanity checks ("sometimes"): **a leader is elected**, **a value is
//! committed** (some server's log has a client command at or below its commit index).

use super::{server_actor, ActorState, Msg, RaftModel, Setup, State};
use crate::core::{Body, Campaign, EntryKind, Raft, Role};
use crate::kv::Command;
use crate::sim::invariants::{Breach, Invariants};
use stateright::actor::Network;
use stateright::semantics::ConsistencyTester;
use stateright::{Expectation, Property};

pub use crate::sim::invariants::{
    ELECTION_SAFETY, LEADER_COMPLETENESS, LOG_MATCHING, STATE_MACHINE_SAFETY,
};

pub const LINEARIZABLE: &str = "Linearizable";
pub const VOTES_DURABLE: &str = "Votes Are Durable";
pub const ONE_CHANGE_AT_A_TIME: &str = "One Membership Change at a Time";
/// Every restart restores the server's durable state, and every snapshot it is given applies.
pub const DURABILITY: &str = "Durability";
pub const LEADER_ELECTED: &str = "a leader is elected";
pub const SNAPSHOT_INSTALLED: &str = "a snapshot is installed";
pub const TRANSFER_STARTED: &str = "a transfer election starts";
pub const MEMBERSHIP_COMMITTED: &str = "the membership script completes";
pub const VALUE_COMMITTED: &str = "a value is committed";

/// Every property for `setup`, in report order: the safety properties, then the sanity
/// checks, then one for each feature the setup exercises (its coverage).
pub fn all(setup: &Setup) -> Vec<Property<RaftModel>> {
    let mut properties = safety_and_sanity();
    if setup.compact_every > 0 {
        properties.push(Property::sometimes(SNAPSHOT_INSTALLED, |_, s: &State| {
            s.actor_storages
                .iter()
                .any(|d| d.as_ref().is_some_and(|d| d.installed_snapshot))
        }));
    }
    if setup.transfers > 0 {
        properties.push(Property::sometimes(TRANSFER_STARTED, |_, s: &State| {
            s.history.transfer_started
        }));
    }
    if !setup.membership.is_empty() {
        // Some server holds the script's last configuration, committed.
        properties.push(Property::sometimes(
            MEMBERSHIP_COMMITTED,
            |m: &RaftModel, s: &State| {
                let last = m.cfg.final_membership();
                running(s).any(|r| {
                    *r.membership() == last
                        && r.log()
                            .last_membership_change()
                            .is_none_or(|i| i <= r.commit_index())
                })
            },
        ));
    }
    properties
}

fn safety_and_sanity() -> Vec<Property<RaftModel>> {
    vec![
        Property::always(ELECTION_SAFETY, |_, s| {
            violation(s, ELECTION_SAFETY).is_none()
        }),
        Property::always(LOG_MATCHING, |_, s| violation(s, LOG_MATCHING).is_none()),
        Property::always(LEADER_COMPLETENESS, |_, s| {
            violation(s, LEADER_COMPLETENESS).is_none()
        }),
        Property::always(STATE_MACHINE_SAFETY, |_, s| {
            violation(s, STATE_MACHINE_SAFETY).is_none()
        }),
        Property::always(LINEARIZABLE, |_, s| violation(s, LINEARIZABLE).is_none()),
        Property::always(DURABILITY, |_, s| violation(s, DURABILITY).is_none()),
        Property::always(VOTES_DURABLE, |_, s| violation(s, VOTES_DURABLE).is_none()),
        Property::always(ONE_CHANGE_AT_A_TIME, |_, s| {
            violation(s, ONE_CHANGE_AT_A_TIME).is_none()
        }),
        Property::sometimes(LEADER_ELECTED, |_, s| {
            running(s).any(|r| r.role() == Role::Leader)
        }),
        // Applied to some state machine (the entry itself may be compacted away already).
        Property::sometimes(VALUE_COMMITTED, |_, s: &State| {
            s.actor_states.iter().any(|a| match &**a {
                ActorState::Server(server) => server.replica.kv().read(super::KEY).is_some(),
                ActorState::Client(_) => false,
            })
        }),
    ]
}

/// Whether `name`'s expectation is "always" (a discovery is then a violation).
pub fn is_safety(expectation: &Expectation) -> bool {
    matches!(expectation, Expectation::Always)
}

/// The cores of the servers that are running (not crashed) in `state`.
pub fn running(state: &State) -> impl Iterator<Item = &Raft<Command>> {
    state
        .actor_states
        .iter()
        .zip(&state.crashed)
        .filter(|(_, crashed)| !**crashed)
        .filter_map(|(s, _)| match &**s {
            ActorState::Server(server) => Some(server.replica.raft()),
            ActorState::Client(_) => None,
        })
}

/// Why property `name` fails in `state`, if it does.
pub fn violation(state: &State, name: &str) -> Option<String> {
    match name {
        LINEARIZABLE => {
            let tester = &state.history.linearizability;
            (!tester.is_consistent()).then(|| format!("no linearization of {tester:?}"))
        }
        DURABILITY => state
            .actor_states
            .iter()
            .enumerate()
            .find_map(|(index, s)| {
                let ActorState::Server(server) = &**s else {
                    return None;
                };
                let fault = server.fault.as_ref()?;
                Some(format!("server {} {fault}", super::node_of(index)))
            }),
        ELECTION_SAFETY => {
            if let Some((term, a, b)) = state.history.two_leaders {
                return Some(format!("servers {a} and {b} both led term {term}"));
            }
            core_breach(state, name)
        }
        VOTES_DURABLE => forgettable_vote(state),
        ONE_CHANGE_AT_A_TIME => state.actor_states.iter().find_map(|a| match &**a {
            ActorState::Server(server) => server.two_changes.clone(),
            ActorState::Client(_) => None,
        }),
        STATE_MACHINE_SAFETY => {
            if let Some(reason) = applied_breach(state) {
                return Some(reason);
            }
            core_breach(state, name)
        }
        _ => core_breach(state, name),
    }
}

/// The simulator's per-state check, if it reports property `name`.
fn core_breach(state: &State, name: &str) -> Option<String> {
    let servers: Vec<&Raft<Command>> = running(state).collect();
    let breach: Result<(), Breach> = Invariants::new().check(&servers);
    match breach {
        Err((property, reason)) if property == name => Some(reason),
        _ => None,
    }
}

/// State Machine Safety over the run: the ghost applied records agree.
fn applied_breach(state: &State) -> Option<String> {
    let mut records = Vec::new();
    for (index, s) in state.actor_states.iter().enumerate() {
        if let ActorState::Server(server) = &**s {
            let durable = &server.durable;
            let id = super::node_of(index);
            if let Some(at) = durable.reapplied_differently {
                return Some(format!(
                    "server {id} applied two different entries at index {at} (before and after a restart)"
                ));
            }
            records.push((id, &durable.applied));
        }
    }
    for (i, (a, applied_a)) in records.iter().enumerate() {
        for (b, applied_b) in &records[i + 1..] {
            if let Some(at) = applied_a
                .iter()
                .zip(applied_b.iter())
                .position(|(x, y)| *x != 0 && *y != 0 && x != y)
            {
                return Some(format!(
                    "servers {a} and {b} applied different entries at index {}: terms {} and {}",
                    at + 1,
                    applied_a[at],
                    applied_b[at]
                ));
            }
        }
    }
    None
}

/// The first message in flight for which `f` says something, without collecting them
/// (this runs on every state). stateright 0.31's `iter_all` never ends on an ordered network
/// holding two messages on one link, so the ordered case walks the queues itself.
fn find_in_flight<T>(state: &State, f: impl FnMut(&Msg) -> Option<T>) -> Option<T> {
    match &state.network {
        Network::Ordered(links) => links.values().flatten().find_map(f),
        network => network.iter_all().map(|env| env.msg).find_map(f),
    }
}

/// A granted vote in flight that its voter's durable state does not record.
fn forgettable_vote(state: &State) -> Option<String> {
    find_in_flight(state, |msg| {
        let Msg::Raft(m) = msg else {
            return None;
        };
        let Body::VoteResponse {
            campaign,
            granted: true,
        } = m.body
        else {
            return None;
        };
        if campaign == Campaign::PreVote {
            return None;
        }
        let durable = state
            .actor_storages
            .get(usize::from(server_actor(m.from)))
            .and_then(Option::as_ref)
            .map(|d| d.hard_state)
            .unwrap_or_default();
        let recorded =
            durable.term > m.term || (durable.term == m.term && durable.voted_for == Some(m.to));
        (!recorded).then(|| {
            format!(
                "server {} granted server {} its vote in term {}, but its durable state says term {} vote {:?}",
                m.from, m.to, m.term, durable.term, durable.voted_for
            )
        })
    })
}

/// "One Membership Change at a Time", checked on a leader right after each input, before
/// its Ready is handled (a leader that is its configuration's only voter commits at once,
/// so the two pending changes are visible only then).
pub fn two_uncommitted_changes(r: &Raft<Command>) -> Option<String> {
    if r.role() != Role::Leader {
        return None;
    }
    let log = r.log();
    let pending: Vec<u64> = (r.commit_index() + 1..=r.last_index())
        .filter(|&i| {
            matches!(
                log.entry(i).map(|e| &e.kind),
                Some(EntryKind::Membership(_))
            )
        })
        .collect();
    (pending.len() > 1).then(|| {
        format!(
            "leader {} (term {}) holds uncommitted membership changes at indexes {pending:?} (commit {})",
            r.id(),
            r.term(),
            r.commit_index()
        )
    })
}
