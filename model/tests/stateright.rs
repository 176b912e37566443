//! The stateright model of the real core: every scenario of the default portfolio (what
//! `raft-model check` runs with no options) must hold for the correct core, explored
//! exhaustively within its bounds and showing the features it covers; every catalogue bug
//! the model can express must be caught by its scenario, naming a property, with a trace; and
//! each narrow hunt must find its bug.

use model::bugs::{Bug, Bugs};
use model::check::hunts;
use model::check::portfolio::{catches, portfolio, Scenario};
use model::check::properties::{MEMBERSHIP_COMMITTED, SNAPSHOT_INSTALLED, TRANSFER_STARTED};
use model::check::runner::{run, Report, Run};
use model::check::Setup;

fn scenario(name: &str) -> Scenario {
    portfolio()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name} in the portfolio"))
}

fn check(scenario: &Scenario, bugs: Bugs) -> Report {
    let report = run(&Run {
        strategy: scenario.strategy,
        depth: scenario.depth,
        stop_at_first_violation: bugs.any(),
        ..Run::bfs(Setup {
            bugs,
            ..scenario.setup.clone()
        })
    });
    print!("{}", report.render());
    report
}

/// The correct core satisfies every property of `name`, exhaustively, and every "sometimes"
/// property (a leader is elected, and the scenario's own coverage) is seen.
fn holds(name: &str) {
    let s = scenario(name);
    let report = check(&s, Bugs::none());
    println!(
        "{name}: {} unique states in {:.1}s ({:.1} M/min)",
        report.unique_states,
        report.elapsed.as_secs_f64(),
        report.states_per_minute() / 1e6
    );
    assert!(report.exhausted, "{name} must be explored exhaustively");
    assert!(
        report.violated().is_empty(),
        "{name}: violated {:?}",
        report.violated()
    );
    // Scenarios without a client never commit a value.
    let never: Vec<_> = report
        .never_seen()
        .into_iter()
        .filter(|p| !(s.setup.ops == 0 && *p == "a value is committed"))
        .collect();
    assert!(never.is_empty(), "{name}: never seen {never:?}");
}

macro_rules! portfolio_scenario {
    ($test:ident, $name:literal) => {
        #[test]
        fn $test() {
            holds($name);
        }
    };
}

portfolio_scenario!(elections_with_a_crash_holds, "elections-with-a-crash");
portfolio_scenario!(elections_in_two_terms_holds, "elections-in-two-terms");
portfolio_scenario!(
    reads_across_a_leader_change_holds,
    "reads-across-a-leader-change"
);
portfolio_scenario!(client_retries_hold, "client-retries");
portfolio_scenario!(figure_8_holds, "figure-8");
portfolio_scenario!(reordered_appends_hold, "reordered-appends");
portfolio_scenario!(staged_ready_holds, "staged-ready");
portfolio_scenario!(compaction_and_snapshot_holds, "compaction-and-snapshot");
portfolio_scenario!(leadership_transfer_holds, "leadership-transfer");
portfolio_scenario!(membership_growth_holds, "membership-growth");
portfolio_scenario!(membership_shrink_holds, "membership-shrink");
portfolio_scenario!(figure_8_across_a_bridge_holds, "figure-8-across-a-bridge");
portfolio_scenario!(
    overtaking_appends_then_a_new_leader_hold,
    "overtaking-appends-then-a-new-leader"
);
portfolio_scenario!(
    reads_from_a_deposed_leader_hold,
    "reads-from-a-deposed-leader"
);

#[test]
fn every_scenario_has_a_test_and_covers_what_it_says() {
    let names: Vec<&str> = portfolio().iter().map(|s| s.name).collect();
    // This file, without whitespace (rustfmt may wrap the macro calls).
    let source: String = include_str!("stateright.rs").split_whitespace().collect();
    for name in &names {
        assert!(
            source.contains(&format!("\"{name}\")")),
            "scenario {name} has no test here"
        );
    }
    // The coverage properties are the ones the scenarios' setups ask for.
    let with = |f: fn(&Setup) -> bool| portfolio().iter().filter(|s| f(&s.setup)).count();
    assert!(with(|s| s.compact_every > 0) >= 1, "{SNAPSHOT_INSTALLED}");
    assert!(with(|s| s.transfers > 0) >= 1, "{TRANSFER_STARTED}");
    assert!(
        with(|s| !s.membership.is_empty()) >= 2,
        "{MEMBERSHIP_COMMITTED}"
    );
    assert!(with(|s| s.max_crashes > 0) >= 2, "crashes");
    assert!(with(|s| s.staged) >= 1, "staged Readies");
    assert!(
        portfolio()
            .iter()
            .all(|s| s.setup.settings == model::core::Settings::default()
                || s.setup.settings.max_batch == 1),
        "every scenario runs the nodes' protocol settings"
    );
}

/// The default check finds `bug` in the scenario that claims it: a safety property is
/// violated and its trace is printed.
fn caught_by_default_check(bug: Bug) {
    let name = catches(bug).unwrap_or_else(|| panic!("the portfolio claims no scenario for {bug}"));
    let report = check(&scenario(name), Bugs::none().with(bug));
    let violated = report.violated();
    assert!(
        !violated.is_empty(),
        "{bug}: the default check's scenario {name} found nothing"
    );
    let rendered = report.render();
    assert!(
        rendered.contains(&format!("=== {} violated ===", violated[0]))
            && rendered.contains("  1. "),
        "{bug}: no trace printed:\n{rendered}"
    );
    println!("{bug}: caught by {name} ({})", violated.join(", "));
}

macro_rules! default_check_catches {
    ($test:ident, $bug:expr) => {
        #[test]
        fn $test() {
            caught_by_default_check($bug);
        }
    };
}

default_check_catches!(default_check_catches_vote_twice, Bug::VoteTwice);
default_check_catches!(default_check_catches_forget_vote, Bug::ForgetVote);
default_check_catches!(
    default_check_catches_ack_before_commit,
    Bug::AckBeforeCommit
);
default_check_catches!(
    default_check_catches_apply_uncommitted,
    Bug::ApplyUncommitted
);
default_check_catches!(default_check_catches_stale_read, Bug::StaleRead);
default_check_catches!(default_check_catches_no_dedup, Bug::NoDedup);
default_check_catches!(
    default_check_catches_send_before_persist,
    Bug::SendBeforePersist
);
default_check_catches!(
    default_check_catches_concurrent_membership,
    Bug::ConcurrentMembership
);
default_check_catches!(default_check_catches_commit_old_term, Bug::CommitOldTerm);
default_check_catches!(default_check_catches_lease_read, Bug::LeaseRead);
default_check_catches!(
    default_check_catches_truncate_on_append,
    Bug::TruncateOnAppend
);

/// Every catalogue bug is accounted for: caught by the default check (and tested above), or
/// below the model.
#[test]
fn every_bug_is_caught_by_the_default_check_or_lives_below_the_model() {
    // This file, without whitespace (rustfmt may wrap the macro calls).
    let source: String = include_str!("stateright.rs").split_whitespace().collect();
    for bug in Bug::ALL {
        let variant = format!("{bug:?}");
        match catches(bug) {
            Some(_) => assert!(
                source.contains(&format!(
                    "default_check_catches!(default_check_catches_{},Bug::{variant})",
                    bug.name().replace('-', "_")
                )),
                "{bug} is claimed by the portfolio but not tested"
            ),
            None => assert!(
                bug.below_the_model().is_some(),
                "{bug} is expressible in the model but the default check does not catch it"
            ),
        }
    }
}

/// Each narrow hunt (`raft-model hunt NAME`, the lab matrix's model column) finds the
/// property it expects.
#[test]
fn every_hunt_finds_its_bug() {
    for bug in hunts::hunted() {
        let run_config = hunts::hunt(bug).unwrap_or_else(|| panic!("no hunt for {bug}"));
        let report = run(&run_config);
        let expected = hunts::expected(bug).unwrap_or_else(|| panic!("no expectation for {bug}"));
        assert_eq!(
            report.violated(),
            vec![expected],
            "{bug}:\n{}",
            report.render()
        );
        println!(
            "{bug}: its hunt finds {expected} in {:.1}s",
            report.elapsed.as_secs_f64()
        );
    }
}
