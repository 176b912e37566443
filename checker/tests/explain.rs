//! Explanations against a plain scan: the op an anomaly names completes the first prefix of
//! the history that is not linearizable, and what it lists before is a linearization of the
//! prefix just before, wherever the search for it starts (it starts from where the register
//! check saw its conflict, a hint that is often a few completions late).

mod support;

use checker::history::{Action, Op, Status, Value};
use checker::spec::{CasRegister, ModelKind};
use checker::synth::{self, Anomaly, SynthSpec};
use checker::{check, register, search, Budget, CheckOptions, KeyOutcome, Want};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use support::oracle;
use support::register_gen::small_history;

/// The key's history as observed just after event position `cut`: ops invoked by then, those
/// not completed by then pending (an `info` op whose read result is unknown).
fn observed_up_to(ops: &[Op], cut: usize) -> Vec<Op> {
    ops.iter()
        .filter(|op| op.invoke <= cut)
        .map(|op| {
            let mut op = op.clone();
            if op.complete.is_none_or(|done| done > cut) {
                op.status = Status::Info;
                op.complete = None;
                if let Action::Read(_) = op.action {
                    op.action = Action::Read(None);
                }
            }
            op
        })
        .collect()
}

/// The `index` of the op whose completion makes the first non-linearizable prefix, scanning
/// every completion in order; `linearizable` decides one prefix.
fn first_failing(ops: &[Op], linearizable: impl Fn(&[Op]) -> bool) -> Option<u64> {
    let mut done: Vec<&Op> = ops
        .iter()
        .filter(|op| op.status != Status::Info && op.complete.is_some())
        .collect();
    done.sort_by_key(|op| op.complete);
    done.into_iter()
        .find(|op| !linearizable(&observed_up_to(ops, op.complete.unwrap_or(0))))
        .map(|op| op.index)
}

/// Checks `ops` (one key) with `raft-check`'s defaults; the failing op's `index` and the
/// number of ops the anomaly says were linearized, if it found one.
fn explained(ops: Vec<Op>, initial: &Value) -> Option<(Option<u64>, usize)> {
    let options = CheckOptions::new(ModelKind::CasRegister {
        initial: initial.clone(),
    });
    let report = check(ops, &options).ok()?;
    let anomaly = report.anomalies.first()?;
    Some((anomaly.op.as_ref().map(|op| op.index), anomaly.prefix_ops))
}

#[test]
fn property_the_failing_op_is_the_first_whose_completion_breaks_the_history() {
    let (refuted, agreed) = (Cell::new(0u32), Cell::new(0u32));
    TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    })
    .run(&small_history(8, 4), |(initial, ops)| {
        let model = CasRegister::new(initial.clone());
        if oracle::linearizable(&model, &ops) {
            return Ok(());
        }
        refuted.set(refuted.get() + 1);
        let expected = first_failing(&ops, |prefix| oracle::linearizable(&model, prefix));
        let got = explained(ops.clone(), &initial).map(|(op, _)| op);
        if got != Some(expected) {
            return Err(TestCaseError::fail(format!(
                "explained {got:?}, the scan finds {expected:?}: {ops:#?}"
            )));
        }
        agreed.set(agreed.get() + 1);
        Ok(())
    })
    .unwrap();
    eprintln!(
        "{} refuted histories explained as the scan does",
        agreed.get()
    );
    assert!(refuted.get() >= 500, "{}", refuted.get());
}

/// Decides a prefix of a synthetic history: the register fast path, or the search where it
/// does not apply.
fn linearizable_register(prefix: &[Op]) -> bool {
    let budget = Budget::unlimited();
    match register::check_with_conflict(prefix, &Value::Null, &budget, Want::Verdict) {
        Some((outcome, _)) => matches!(outcome, KeyOutcome::Linearizable(_)),
        None => matches!(
            search::check(&CasRegister::new(Value::Null), prefix, &budget),
            KeyOutcome::Linearizable(_)
        ),
    }
}

#[test]
fn synthetic_anomalies_are_explained_as_a_scan_finds_them() {
    let seed0: u64 = std::env::var("EXPLAIN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut explained_count = 0;
    for seed in seed0..seed0 + 40 {
        let spec = SynthSpec {
            seed,
            ops_per_key: 150,
            processes_per_key: 2 + (seed % 12) as usize,
            info_rate: [0.0, 0.05, 0.15][(seed % 3) as usize],
            anomaly: Some([Anomaly::StaleRead, Anomaly::LostUpdate][(seed % 2) as usize]),
            ..SynthSpec::default()
        };
        let s = synth::generate_detailed(&spec);
        if s.anomaly_op.is_none() {
            continue;
        }
        let expected = first_failing(&s.ops, linearizable_register);
        let got = explained(s.ops.clone(), &Value::Null);
        assert_eq!(
            got.map(|(op, _)| op),
            Some(expected),
            "seed {seed} (EXPLAIN_TEST_SEED={seed} replays it): {spec:?}"
        );
        explained_count += 1;
    }
    assert!(explained_count >= 30, "{explained_count}");
}
