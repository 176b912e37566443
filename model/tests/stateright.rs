//! The stateright model of the real core (issue #6): the CI configuration must satisfy every
//! property, and each protocol bug of the catalogue must be caught, by the right property.
//! The hunting configurations live in `model::check::hunts` (shared with `raft-lab matrix`).

use model::bugs::{Bug, Bugs};
use model::check::cli::{ci_run, run, Run};
use model::check::hunts::{self, figure_8};
use model::check::properties::{
    ELECTION_SAFETY, LEADER_COMPLETENESS, LINEARIZABLE, STATE_MACHINE_SAFETY,
};

/// Runs the hunt for `bug` (it stops at the first violation) and returns what it found.
fn hunt(bug: Bug) -> model::check::cli::Report {
    let run_config =
        hunts::hunt(bug).unwrap_or_else(|| panic!("no hunt for {bug} in model::check::hunts"));
    let report = run(&run_config);
    print!("{}", report.render());
    report
}

#[test]
fn ci_configuration_satisfies_every_property() {
    let report = run(&ci_run());
    print!("{}", report.render());
    println!(
        "CI configuration: {} unique states in {:.1}s",
        report.unique_states,
        report.elapsed.as_secs_f64()
    );
    assert!(
        report.exhausted,
        "the CI configuration must be explored exhaustively"
    );
    assert!(
        report.violated().is_empty(),
        "violated: {:?}",
        report.violated()
    );
    assert!(
        report.never_seen().is_empty(),
        "sometimes-properties never seen: {:?}",
        report.never_seen()
    );
    assert!(
        report.unique_states > 10_000,
        "the search explored too little"
    );
}

#[test]
fn vote_twice_breaks_election_safety() {
    assert_eq!(hunt(Bug::VoteTwice).violated(), vec![ELECTION_SAFETY]);
}

#[test]
fn forget_vote_with_a_crash_breaks_election_safety() {
    assert_eq!(hunt(Bug::ForgetVote).violated(), vec![ELECTION_SAFETY]);
}

/// A read served from local state: the client's retry reaches a server that has not heard
/// of its write yet.
#[test]
fn stale_read_breaks_linearizability() {
    assert_eq!(hunt(Bug::StaleRead).violated(), vec![LINEARIZABLE]);
}

/// Committing an entry of an earlier term by counting replicas lets a later leader lack it.
#[test]
fn commit_old_term_breaks_leader_completeness() {
    assert_eq!(
        hunt(Bug::CommitOldTerm).violated(),
        vec![LEADER_COMPLETENESS]
    );
}

/// A retried cas applied twice answers "mismatch" although its first attempt took effect.
#[test]
fn no_dedup_breaks_linearizability() {
    assert_eq!(hunt(Bug::NoDedup).violated(), vec![LINEARIZABLE]);
}

/// A deposed leader that counted no tick since its last quorum serves a read from its lease
/// after the new leader took a write.
#[test]
fn lease_read_breaks_linearizability() {
    assert_eq!(hunt(Bug::LeaseRead).violated(), vec![LINEARIZABLE]);
}

/// A stale, shorter AppendEntries overtaken by the heartbeat's resend makes a follower cut
/// a write it acknowledged; elected next, it leads without a committed entry.
#[test]
fn truncate_on_append_breaks_leader_completeness() {
    assert_eq!(
        hunt(Bug::TruncateOnAppend).violated(),
        vec![LEADER_COMPLETENESS]
    );
}

/// A leader that applies before a majority has the entry: the next leader, elected
/// without it, commits another entry at the same index.
#[test]
fn ack_before_commit_breaks_state_machine_safety() {
    assert_eq!(
        hunt(Bug::AckBeforeCommit).violated(),
        vec![STATE_MACHINE_SAFETY]
    );
}

/// A follower that applies before commit: the entry it applied is replaced.
#[test]
fn apply_uncommitted_breaks_state_machine_safety() {
    assert_eq!(
        hunt(Bug::ApplyUncommitted).violated(),
        vec![STATE_MACHINE_SAFETY]
    );
}

/// The correct core in the same narrowed model: nothing is violated.
#[test]
fn the_figure_8_model_holds_for_the_correct_core() {
    let report = run(&Run::bfs(figure_8(Bugs::none())));
    print!("{}", report.render());
    assert!(report.exhausted);
    assert!(
        report.violated().is_empty(),
        "violated: {:?}",
        report.violated()
    );
}
