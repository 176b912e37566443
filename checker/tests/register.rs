//! The register fast path against the brute-force oracle, on random and hand-written
//! histories, and on synthetic histories with and without injected anomalies.

mod support;

use checker::history::{Action, Op, Status, Value};
use checker::spec::CasRegister;
use checker::synth::{self, Anomaly, SynthSpec};
use checker::{register, search, Budget, KeyOutcome, Want};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use support::oracle;
use support::register_gen::{ops, small_history, split_by_key};

use Action::{Append, Cas, Read, Write};
use Status::{Fail, Info, Ok as Done};

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn fast(ops: &[Op], initial: &Value) -> Option<KeyOutcome> {
    register::check_with_conflict(ops, initial, &Budget::unlimited(), Want::Witness)
        .map(|(outcome, _)| outcome)
}

/// The fast path's verdict, checked against the oracle (and its witness verified).
fn agree(ops: &[Op], initial: &Value) -> Option<bool> {
    let model = CasRegister::new(initial.clone());
    let expected = oracle::linearizable(&model, ops);
    match fast(ops, initial) {
        None => None,
        Some(KeyOutcome::Linearizable(order)) => {
            assert!(
                expected,
                "fast path says linearizable, oracle disagrees: {ops:#?}"
            );
            assert!(
                oracle::is_witness(&model, ops, &order),
                "bad witness {order:?} for {ops:#?}"
            );
            Some(true)
        }
        Some(KeyOutcome::NotLinearizable) => {
            assert!(
                !expected,
                "fast path says not linearizable, oracle disagrees: {ops:#?}"
            );
            Some(false)
        }
        Some(other) => panic!("unexpected {other:?}"),
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn property_agrees_with_oracle_on_small_histories() {
    let (valid, invalid, none) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let (total_ops, max_ops) = (Cell::new(0usize), Cell::new(0usize));
    runner(20_000)
        .run(&small_history(8, 4), |(initial, ops)| {
            total_ops.set(total_ops.get() + ops.len());
            max_ops.set(max_ops.get().max(ops.len()));
            let model = CasRegister::new(initial.clone());
            let expected = oracle::linearizable(&model, &ops);
            match fast(&ops, &initial) {
                None => none.set(none.get() + 1),
                Some(KeyOutcome::Linearizable(order)) => {
                    valid.set(valid.get() + 1);
                    if !expected {
                        return Err(TestCaseError::fail("fast: valid, oracle: invalid"));
                    }
                    if !oracle::is_witness(&model, &ops, &order) {
                        return Err(TestCaseError::fail(format!("bad witness {order:?}")));
                    }
                }
                Some(KeyOutcome::NotLinearizable) => {
                    invalid.set(invalid.get() + 1);
                    if expected {
                        return Err(TestCaseError::fail("fast: invalid, oracle: valid"));
                    }
                }
                Some(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            Ok(())
        })
        .unwrap();
    let (v, i, n) = (valid.get(), invalid.get(), none.get());
    eprintln!(
        "small histories: {v} linearizable, {i} not, {n} not applicable; {} ops, max {}",
        total_ops.get(),
        max_ops.get()
    );
    assert!(v >= 1000 && i >= 1000 && n >= 100, "{v} {i} {n}");
}

/// `ops` and `initial` with every value renamed by `rename`.
fn renamed(ops: &[Op], initial: &Value, rename: impl Fn(&Value) -> Value) -> (Vec<Op>, Value) {
    let ops = ops
        .iter()
        .map(|op| {
            let mut op = op.clone();
            op.action = match &op.action {
                Read(v) => Read(v.as_ref().map(&rename)),
                Write(v) => Write(rename(v)),
                Cas(a, b) => Cas(rename(a), rename(b)),
                other => other.clone(),
            };
            op
        })
        .collect();
    (ops, rename(initial))
}

#[test]
fn property_how_values_are_spelled_does_not_matter() {
    // Small integers are looked up in a table, others (strings, integers far apart) in a
    // hash map: both give the same outcome.
    runner(5_000)
        .run(&small_history(8, 4), |(initial, ops)| {
            let expected = fast(&ops, &initial);
            let spellings: [&dyn Fn(&Value) -> Value; 3] = [
                &|v| match v {
                    Value::Int(i) => Value::Str(format!("v{i}")),
                    other => other.clone(),
                },
                &|v| match v {
                    Value::Int(i) => Value::Int(i.wrapping_mul(1_000_000_007)),
                    other => other.clone(),
                },
                &|v| match v {
                    Value::Int(i) => Value::Int(i - 40),
                    other => other.clone(),
                },
            ];
            for spell in spellings {
                let (ops, initial) = renamed(&ops, &initial, spell);
                let got = fast(&ops, &initial);
                if got != expected {
                    return Err(TestCaseError::fail(format!("{got:?} != {expected:?}")));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn property_witnesses_are_valid_on_larger_histories() {
    // Too large for the oracle's verdict, but witnesses are cheap to verify.
    let valid = Cell::new(0u32);
    runner(1500)
        .run(&small_history(40, 6), |(initial, ops)| {
            let model = CasRegister::new(initial.clone());
            if let Some(KeyOutcome::Linearizable(order)) = fast(&ops, &initial) {
                valid.set(valid.get() + 1);
                if !oracle::is_witness(&model, &ops, &order) {
                    return Err(TestCaseError::fail(format!("bad witness {order:?}")));
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(valid.get() >= 50, "{}", valid.get());
}

/// Checks every key of a synthetic history; returns the keys found not linearizable.
fn check_synth(spec: &SynthSpec) -> (Vec<Value>, Option<Value>) {
    let s = synth::generate_detailed(spec);
    let model = CasRegister::new(Value::Null);
    let mut bad = Vec::new();
    for (key, key_ops) in split_by_key(&s.ops) {
        match fast(&key_ops, &Value::Null) {
            Some(KeyOutcome::Linearizable(order)) => {
                assert!(oracle::is_witness(&model, &key_ops, &order), "{spec:?}");
            }
            Some(KeyOutcome::NotLinearizable) => bad.push(key),
            other => panic!("{spec:?}: {other:?}"),
        }
    }
    (bad, s.anomaly_key)
}

#[test]
fn property_synth_histories_match_their_anomaly() {
    let mut seen = 0;
    for seed in 0..24u64 {
        for anomaly in [None, Some(Anomaly::StaleRead), Some(Anomaly::LostUpdate)] {
            let spec = SynthSpec {
                seed,
                keys: 1 + (seed % 3) as usize,
                ops_per_key: 200,
                processes_per_key: 2 + (seed % 9) as usize,
                info_rate: [0.0, 0.02, 0.1][(seed % 3) as usize],
                anomaly,
                ..SynthSpec::default()
            };
            let (bad, injected) = check_synth(&spec);
            match anomaly {
                None => assert!(bad.is_empty(), "{spec:?}: {bad:?}"),
                Some(_) => {
                    let key = injected.unwrap_or_else(|| panic!("not injected: {spec:?}"));
                    assert_eq!(bad, vec![key], "{spec:?}");
                    seen += 1;
                }
            }
        }
    }
    assert_eq!(seen, 48);
}

/// With repeated values (no fast path), an injected stale read names a value nothing could
/// have written between the last write before it and it: the general search must refute
/// that key and only that one.
#[test]
fn synth_stale_reads_of_repeated_values_are_refuted() {
    let model = CasRegister::new(Value::Null);
    let mut injected = 0;
    for seed in 0..16u64 {
        let spec = SynthSpec {
            seed,
            keys: 2,
            ops_per_key: 300,
            processes_per_key: 2 + (seed % 5) as usize,
            info_rate: [0.0, 0.01, 0.1][(seed % 3) as usize],
            anomaly: Some(Anomaly::StaleRead),
            values: Some(5),
            ..SynthSpec::default()
        };
        let s = synth::generate_detailed(&spec);
        injected += usize::from(s.anomaly_key.is_some());
        for (key, key_ops) in split_by_key(&s.ops) {
            let outcome = search::check(&model, &key_ops, &Budget::unlimited());
            let refuted = outcome == KeyOutcome::NotLinearizable;
            assert_eq!(
                refuted,
                s.anomaly_key.as_ref() == Some(&key),
                "seed {seed} key {key}: {outcome:?}"
            );
        }
    }
    assert!(injected >= 8, "{injected} of 16 injected");
}

#[test]
fn synth_is_deterministic_and_prints_jsonl() {
    let spec = SynthSpec {
        seed: 7,
        keys: 3,
        ops_per_key: 50,
        info_rate: 0.1,
        ..SynthSpec::default()
    };
    let a = synth::generate(&spec);
    let b = synth::generate(&spec);
    assert_eq!(a, b);
    assert_ne!(a, synth::generate(&SynthSpec { seed: 8, ..spec }));
    assert_eq!(a.len(), 150);
    let text = synth::to_jsonl(&a);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    // Every op has an invoke and a completion (ok, fail or info).
    assert_eq!(lines.len(), 300);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], i);
        let (f, ty, v) = (&l["f"], &l["type"], &l["value"]);
        if f == "cas" {
            assert!(v.as_array().is_some_and(|a| a.len() == 2), "{l}");
        }
        if f == "read" && ty != "ok" {
            assert!(v.is_null(), "{l}");
        }
    }
    for op in &a {
        assert!(op.invoke < op.complete.unwrap_or(usize::MAX));
        assert_eq!(lines[op.invoke]["type"], "invoke");
    }
}

// ---- Hand-written cases (each also checked against the oracle). ----

#[test]
fn stale_read() {
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(2)), Done, 2, Some(3)),
        (Read(Some(int(1))), Done, 4, Some(5)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // Concurrent with the second write, reading 1 is fine.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(2)), Done, 2, Some(5)),
        (Read(Some(int(1))), Done, 3, Some(4)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // Reading the initial value after a completed write.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Read(Some(Value::Null)), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
}

#[test]
fn lost_update_two_cas_from_the_same_value() {
    // Sequential: the second cas consumes a value already consumed.
    let h = ops(&[
        (Cas(int(0), int(1)), Done, 0, Some(1)),
        (Cas(int(0), int(2)), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &int(0)), Some(false));
    // Concurrent: still impossible, both cannot see 0.
    let h = ops(&[
        (Cas(int(0), int(1)), Done, 0, Some(3)),
        (Cas(int(0), int(2)), Done, 1, Some(2)),
    ]);
    assert_eq!(agree(&h, &int(0)), Some(false));
    // One of them indeterminate and unobserved: it never happened.
    let h = ops(&[
        (Cas(int(0), int(1)), Done, 0, Some(3)),
        (Cas(int(0), int(2)), Info, 1, None),
    ]);
    assert_eq!(agree(&h, &int(0)), Some(true));
    // ... but observed, it did: two consumers again.
    let h = ops(&[
        (Cas(int(0), int(1)), Done, 0, Some(3)),
        (Cas(int(0), int(2)), Info, 1, None),
        (Read(Some(int(2))), Done, 4, Some(5)),
    ]);
    assert_eq!(agree(&h, &int(0)), Some(false));
}

#[test]
fn info_write_observed_or_not() {
    // Observed after its invocation: it took effect.
    let h = ops(&[
        (Write(int(1)), Info, 0, None),
        (Read(Some(int(1))), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // Observed before it was invoked: impossible.
    let h = ops(&[
        (Read(Some(int(1))), Done, 0, Some(1)),
        (Write(int(1)), Info, 2, None),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // Not observed: may never have happened, even if a later read sees the old value.
    let h = ops(&[
        (Write(int(1)), Info, 0, None),
        (Read(Some(Value::Null)), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    match fast(&h, &Value::Null) {
        Some(KeyOutcome::Linearizable(order)) => assert_eq!(order, vec![1]),
        other => panic!("{other:?}"),
    }
    // An info cas chain: observing the cas's value forces the write it consumed, too.
    let h = ops(&[
        (Write(int(1)), Info, 0, None),
        (Cas(int(1), int(2)), Info, 1, None),
        (Read(Some(Value::Null)), Done, 2, Some(3)),
        (Read(Some(int(2))), Done, 4, Some(5)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    match fast(&h, &Value::Null) {
        Some(KeyOutcome::Linearizable(order)) => assert_eq!(order, vec![2, 0, 1, 3]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn forward_zones_overlap() {
    // Value 1: written by 0..1, read by 6..7 => covers [1, 6].
    // Value 2: written by 2..3, read by 8..9 => covers [3, 8]. They overlap.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(2)), Done, 2, Some(3)),
        (Read(Some(int(1))), Done, 4, Some(6)),
        (Read(Some(int(2))), Done, 8, Some(9)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // Value 1 read earlier (ends at 2.5): zones [1, 2] and [3, 8] are disjoint...
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Read(Some(int(1))), Done, 2, Some(5)),
        (Write(int(2)), Done, 3, Some(4)),
        (Read(Some(int(2))), Done, 8, Some(9)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // The initial value's zone is a forward zone too.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Read(Some(int(1))), Done, 4, Some(5)),
        (Read(Some(Value::Null)), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
}

#[test]
fn backward_window_inside_forward_zone() {
    // Value 1 covers [1, 8]; value 2's window (3, 5) lies inside it.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(2)), Done, 2, Some(5)),
        (Read(Some(int(2))), Done, 3, Some(6)),
        (Read(Some(int(1))), Done, 8, Some(9)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // Window (3, 10) sticks out of [1, 8]: value 2 goes after the read of 1.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(2)), Done, 2, Some(10)),
        (Read(Some(int(2))), Done, 3, Some(11)),
        (Read(Some(int(1))), Done, 8, Some(9)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // Window (2, 4) between two adjacent forward zones [1, 2) .. fits in the gap.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Read(Some(int(1))), Done, 2, Some(5)),
        (Write(int(3)), Done, 3, Some(4)),
        (Write(int(2)), Done, 6, Some(7)),
        (Read(Some(int(2))), Done, 9, Some(10)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
}

#[test]
fn cas_chains_and_cycles() {
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Read(Some(int(1))), Done, 2, Some(6)),
        (Cas(int(1), int(2)), Done, 3, Some(4)),
        (Read(Some(int(2))), Done, 5, Some(8)),
        (Cas(int(2), int(3)), Done, 7, Some(9)),
        (Read(Some(int(3))), Done, 10, Some(11)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // A cas cycle never starts.
    let h = ops(&[
        (Cas(int(1), int(2)), Done, 0, Some(3)),
        (Cas(int(2), int(1)), Done, 1, Some(2)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // A cas whose expected value nobody wrote.
    let h = ops(&[(Cas(int(5), int(6)), Done, 0, Some(1))]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // ... harmless when indeterminate and unobserved.
    let h = ops(&[(Cas(int(5), int(6)), Info, 0, None)]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
    // A chain must not be split by a write: 1 -cas-> 2 forced around a write of 3.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(3)), Done, 2, Some(3)),
        (Cas(int(1), int(2)), Done, 4, Some(5)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
}

#[test]
fn reads_of_unwritten_values_and_failed_ops() {
    let h = ops(&[(Read(Some(int(9))), Done, 0, Some(1))]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // A failed write never happened, so nothing can read it.
    let h = ops(&[
        (Write(int(1)), Fail, 0, Some(1)),
        (Read(Some(int(1))), Done, 2, Some(3)),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(false));
    // Unknown results constrain nothing but still appear in the witness.
    let h = ops(&[
        (Write(int(1)), Done, 0, Some(3)),
        (Read(None), Done, 1, Some(2)),
        (Read(None), Info, 1, None),
    ]);
    assert_eq!(agree(&h, &Value::Null), Some(true));
}

#[test]
fn not_applicable_cases() {
    let dup = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(1)), Info, 2, None),
    ]);
    assert_eq!(fast(&dup, &Value::Null), None);
    let initial = ops(&[(Write(int(0)), Done, 0, Some(1))]);
    assert_eq!(fast(&initial, &int(0)), None);
    let self_cas = ops(&[(Cas(int(1), int(1)), Info, 0, None)]);
    assert_eq!(fast(&self_cas, &Value::Null), None);
    let append = ops(&[(Append("x".into()), Done, 0, Some(1))]);
    assert_eq!(fast(&append, &Value::Null), None);
    // Failed ops do not count against uniqueness.
    let failed = ops(&[
        (Write(int(1)), Done, 0, Some(1)),
        (Write(int(1)), Fail, 2, Some(3)),
        (Append("x".into()), Fail, 4, Some(5)),
    ]);
    assert_eq!(agree(&failed, &Value::Null), Some(true));
}

#[test]
fn budget_exhaustion_is_unknown() {
    let h = ops(&[(Write(int(1)), Done, 0, Some(1))]);
    let budget = Budget::unlimited();
    budget.cancel();
    assert!(matches!(
        register::check_with_conflict(&h, &Value::Null, &budget, Want::Witness),
        Some((KeyOutcome::Unknown(_), None))
    ));
}
