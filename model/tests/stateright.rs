//! The stateright model of the real core (issue #6): the CI configuration must satisfy every
//! property, and each protocol bug of the catalogue must be caught, by the right property.

use model::bugs::{Bug, Bugs};
use model::check::cli::{ci_run, run, Run};
use model::check::properties::{ELECTION_SAFETY, LINEARIZABLE};
use model::check::Setup;

/// Runs a bounded BFS that stops at the first violation; returns the report.
fn hunt(setup: Setup, depth: usize) -> model::check::cli::Report {
    let report = run(&Run {
        depth: Some(depth),
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
    let report = hunt(setup, 12);
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
    let report = hunt(setup, 14);
    assert_eq!(report.violated(), vec![ELECTION_SAFETY]);
}

#[test]
fn stale_read_breaks_linearizability() {
    let setup = Setup {
        bugs: Bugs::none().with(Bug::StaleRead),
        ..Setup::default()
    };
    let report = hunt(setup, 16);
    assert_eq!(report.violated(), vec![LINEARIZABLE]);
}
