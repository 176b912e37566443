//! The stateright model of the real core (issue #6): the CI configuration must satisfy every
//! property, and each protocol bug of the catalogue must be caught, by the right property.

use model::bugs::{Bug, Bugs};
use model::check::cli::{ci_run, run, Run};
use model::check::properties::{ELECTION_SAFETY, LEADER_COMPLETENESS, LINEARIZABLE};
use model::check::Setup;

/// Runs a BFS (bounded at `depth` if given) that stops at the first violation.
fn hunt(setup: Setup, depth: Option<usize>) -> model::check::cli::Report {
    let report = run(&Run {
        depth,
        stop_at_first_violation: true,
        ..Run::bfs(setup)
    });
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
    let setup = Setup {
        ops: 1,
        max_in_flight: 6,
        max_term: 1,
        bugs: Bugs::none().with(Bug::VoteTwice),
        ..Setup::default()
    };
    let report = hunt(setup, Some(12));
    assert_eq!(report.violated(), vec![ELECTION_SAFETY]);
}

#[test]
fn forget_vote_with_a_crash_breaks_election_safety() {
    let setup = Setup {
        ops: 0,
        max_in_flight: 6,
        max_term: 1,
        max_crashes: 1,
        bugs: Bugs::none().with(Bug::ForgetVote),
        ..Setup::default()
    };
    let report = hunt(setup, Some(14));
    assert_eq!(report.violated(), vec![ELECTION_SAFETY]);
}

/// A read served from local state: the client's retry reaches a server that has not heard
/// of its write yet.
#[test]
fn stale_read_breaks_linearizability() {
    let setup = Setup {
        max_heartbeats: 1,
        max_retries: 1,
        bugs: Bugs::none().with(Bug::StaleRead),
        ..Setup::default()
    };
    let report = hunt(setup, Some(16));
    assert_eq!(report.violated(), vec![LINEARIZABLE]);
}

/// Figure 8's model: the scenario needs four terms (two elections by each of two servers),
/// so the hunt narrows the model: only servers 1 and 2 campaign, links are ordered (like the
/// node's QUIC streams), a leader sends one entry per AppendEntries, and no client runs (the
/// old-term entry is the first leader's no-op).
fn figure_8(bugs: Bugs) -> Setup {
    Setup {
        ops: 0,
        max_term: 4,
        max_log: 2,
        max_in_flight: 5,
        max_batch: 1,
        campaigners: Some(2),
        ordered: true,
        bugs,
        ..Setup::default()
    }
}

/// Committing an entry of an earlier term by counting replicas lets a later leader lack it.
#[test]
fn commit_old_term_breaks_leader_completeness() {
    let report = hunt(figure_8(Bugs::none().with(Bug::CommitOldTerm)), None);
    assert_eq!(report.violated(), vec![LEADER_COMPLETENESS]);
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
