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
//! Liveness-flavoured sanity checks ("sometimes"): **a leader is elected**, **a value is
//! committed** (some server's log has a client command at or below its commit index).

use super::{ActorState, RaftModel, State};
use crate::core::{EntryKind, Raft, Role};
use crate::kv::Command;
use crate::sim::invariants::{Breach, Invariants};
use stateright::semantics::ConsistencyTester;
use stateright::{Expectation, Property};

pub use crate::sim::invariants::{
    ELECTION_SAFETY, LEADER_COMPLETENESS, LOG_MATCHING, STATE_MACHINE_SAFETY,
};

pub const LINEARIZABLE: &str = "Linearizable";
/// Every restart restores the server's durable state, and every snapshot it is given applies.
pub const DURABILITY: &str = "Durability";
pub const LEADER_ELECTED: &str = "a leader is elected";
pub const VALUE_COMMITTED: &str = "a value is committed";

/// Every property, in report order.
pub fn all() -> Vec<Property<RaftModel>> {
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
        Property::sometimes(LEADER_ELECTED, |_, s| {
            running(s).any(|r| r.role() == Role::Leader)
        }),
        Property::sometimes(VALUE_COMMITTED, |_, s| {
            running(s).any(|r| {
                let log = r.log();
                (1..=r.commit_index())
                    .any(|i| matches!(log.entry(i).map(|e| &e.kind), Some(EntryKind::Command(_))))
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
                .position(|(x, y)| x != y)
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
