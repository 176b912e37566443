//! Correctness of the general linearizability search (`checker::search::check`).
//!
//! - Property tests: thousands of small random histories (valid ones from a simulated object
//!   with random linearization points, crashes and pending ops; invalid ones by mutating
//!   those) for the cas register (initial `null` and `0`) and the mutex, with every verdict
//!   compared to the brute-force oracle and every witness verified.
//! - Classic anomalies written by hand.
//! - Larger valid-by-construction histories (no oracle: validity is by construction).
//! - Budgets: timeout, memory, cancellation, and that charged memory is released.

mod support;

use checker::budget::{Budget, GiveUp, KeyOutcome};
use checker::history::{Action, Op, Value};
use checker::search::check;
use checker::spec::{CasRegister, Mutex};
use checker::Model;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::time::Instant;
use support::gen::{
    cas, concat, int, mutate, random_bytes, read, read_null, read_unknown, sequential_prefix,
    simulate, write, Choices, GenConfig, HistoryBuilder, Object,
};
use support::oracle;

/// Runs the search, compares with the oracle, verifies any witness; returns the verdict.
fn agree<M: Model>(model: &M, ops: &[Op]) -> Result<bool, String> {
    let expected = oracle::linearizable(model, ops);
    match check(model, ops, &Budget::unlimited()) {
        KeyOutcome::Linearizable(order) => {
            if !expected {
                return Err(format!(
                    "search found witness {order:?}, oracle says invalid"
                ));
            }
            if !oracle::is_witness(model, ops, &order) {
                return Err(format!("{order:?} is not a witness"));
            }
            Ok(true)
        }
        KeyOutcome::NotLinearizable if expected => {
            Err("search says invalid, oracle says linearizable".into())
        }
        KeyOutcome::NotLinearizable => Ok(false),
        KeyOutcome::Unknown(why) => Err(format!("unknown ({why:?}) with an unlimited budget")),
    }
}

/// Asserts the search agrees with the oracle and returns the verdict.
fn verdict<M: Model>(model: &M, ops: &[Op]) -> bool {
    match agree(model, ops) {
        Ok(v) => v,
        Err(e) => panic!("{e}\nhistory: {ops:#?}"),
    }
}

/// The witness the search finds (the history must be linearizable).
fn witness<M: Model>(model: &M, ops: &[Op]) -> Vec<usize> {
    assert!(verdict(model, ops), "expected linearizable: {ops:#?}");
    match check(model, ops, &Budget::unlimited()) {
        KeyOutcome::Linearizable(order) => order,
        other => panic!("expected a witness, got {other:?}"),
    }
}

fn register0() -> CasRegister {
    CasRegister::new(int(0))
}

fn register_null() -> CasRegister {
    CasRegister::new(Value::Null)
}

// ---------------------------------------------------------------------------------------
// Property tests against the oracle.

/// Cases per object configuration.
const CASES: u32 = 10_000;

/// Runner settings: deterministic by default. `SEARCH_PROPTEST_SCALE=N` runs N times the
/// cases and `SEARCH_PROPTEST_SEED=S` shifts the seeds, for a longer hunt by hand.
fn runner_config(cases: u32, seed: u64) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let scale = env("SEARCH_PROPTEST_SCALE").unwrap_or(1).max(1);
    Config {
        cases: cases.saturating_mul(scale.min(u64::from(u32::MAX)) as u32),
        rng_seed: RngSeed::Fixed(seed.wrapping_add(env("SEARCH_PROPTEST_SEED").unwrap_or(0))),
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Default)]
struct Tally {
    valid: u32,
    invalid: u32,
    with_info: u32,
    with_fail: u32,
    /// Histories by op count, and those where some two ops overlap in time.
    by_len: [u32; 16],
    concurrent: u32,
}

fn property(object: Object, seed: u64) -> Tally {
    let config = runner_config(CASES, seed);
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let tally = std::cell::RefCell::new(Tally::default());
    let strategy = (
        1usize..=4,
        1usize..=8,
        0usize..4,
        proptest::collection::vec(any::<u8>(), 0..96),
    );
    let result = runner.run(&strategy, |(processes, n_ops, mutations, bytes)| {
        let cfg = GenConfig {
            object: object.clone(),
            processes,
            ops: n_ops,
            crash: 40,
        };
        let mut ch = Choices::new(&bytes);
        let mut ops = simulate(&cfg, &mut ch);
        if mutations > 0 {
            for _ in 0..mutations {
                mutate(&mut ops, &cfg, &mut ch);
            }
        } else {
            // The generator's histories are valid by construction.
            let ok = match &object {
                Object::Register { initial, .. } => {
                    oracle::linearizable(&CasRegister::new(initial.clone()), &ops)
                }
                Object::Mutex => oracle::linearizable(&Mutex, &ops),
            };
            prop_assert!(ok, "generated history is invalid: {ops:#?}");
        }
        let v = match &object {
            Object::Register { initial, .. } => agree(&CasRegister::new(initial.clone()), &ops),
            Object::Mutex => agree(&Mutex, &ops),
        }
        .map_err(|e| TestCaseError::fail(format!("{e}\nhistory: {ops:#?}")))?;
        let mut t = tally.borrow_mut();
        t.by_len[ops.len().min(15)] += 1;
        if ops.iter().any(|a| {
            ops.iter()
                .any(|b| a.id != b.id && a.invoke < b.invoke && b.invoke < a.end())
        }) {
            t.concurrent += 1;
        }
        if v {
            t.valid += 1;
        } else {
            t.invalid += 1;
        }
        if ops
            .iter()
            .any(|o| o.status == checker::history::Status::Info)
        {
            t.with_info += 1;
        }
        if ops
            .iter()
            .any(|o| o.status == checker::history::Status::Fail)
        {
            t.with_fail += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = tally.into_inner();
    eprintln!(
        "{object:?}: {} valid, {} invalid, {} with info ops, {} with fail ops, {} with \
         overlapping ops; by op count {:?}",
        t.valid, t.invalid, t.with_info, t.with_fail, t.concurrent, t.by_len
    );
    assert!(t.valid >= cases / 5, "too few valid histories: {}", t.valid);
    assert!(
        t.invalid >= cases / 10,
        "too few invalid histories: {}",
        t.invalid
    );
    assert!(t.with_info >= cases / 5, "too few histories with info ops");
    t
}

#[test]
fn matches_oracle_register_initial_null() {
    let t = property(
        Object::Register {
            initial: Value::Null,
            values: 3,
        },
        0x5eed_0001,
    );
    assert!(t.with_fail >= CASES / 10);
}

#[test]
fn matches_oracle_register_initial_zero() {
    let t = property(
        Object::Register {
            initial: int(0),
            values: 2,
        },
        0x5eed_0002,
    );
    assert!(t.with_fail >= CASES / 10);
}

#[test]
fn matches_oracle_mutex() {
    property(Object::Mutex, 0x5eed_0003);
}

/// Small random tails (mutated or not) after a long sequential prefix, against the oracle:
/// the search's memo keys only store the bitset words past the prefix, so this exercises
/// keys whose window does not start at word 0.
fn property_after_prefix(object: Object, seed: u64) -> (u32, u32) {
    let config = runner_config(PREFIX_CASES, seed);
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let tally = std::cell::Cell::new((0u32, 0u32));
    let strategy = (
        60usize..200,
        1usize..=4,
        1usize..=6,
        0usize..4,
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let result = runner.run(
        &strategy,
        |(prefix_len, processes, n_ops, mutations, bytes)| {
            let (prefix, end) = sequential_prefix(&object, prefix_len, prefix_len as u64);
            let tail_object = match &object {
                Object::Register { values, .. } => Object::Register {
                    initial: end,
                    values: *values,
                },
                Object::Mutex => Object::Mutex,
            };
            let cfg = GenConfig {
                object: tail_object,
                processes,
                ops: n_ops,
                crash: 40,
            };
            let mut ch = Choices::new(&bytes);
            let mut tail = simulate(&cfg, &mut ch);
            for _ in 0..mutations {
                mutate(&mut tail, &cfg, &mut ch);
            }
            let ops = concat(prefix, tail);
            let v = match &object {
                Object::Register { initial, .. } => agree(&CasRegister::new(initial.clone()), &ops),
                Object::Mutex => agree(&Mutex, &ops),
            }
            .map_err(|e| TestCaseError::fail(format!("{e}\nhistory: {ops:#?}")))?;
            let (valid, invalid) = tally.get();
            tally.set(if v {
                (valid + 1, invalid)
            } else {
                (valid, invalid + 1)
            });
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let (valid, invalid) = tally.get();
    eprintln!("{object:?} after a prefix: {valid} valid, {invalid} invalid");
    assert!(valid >= cases / 5 && invalid >= cases / 10);
    (valid, invalid)
}

/// Cases per object for the prefixed property.
const PREFIX_CASES: u32 = 1000;

#[test]
fn matches_oracle_after_long_prefix_register() {
    property_after_prefix(
        Object::Register {
            initial: int(0),
            values: 3,
        },
        0x5eed_0004,
    );
}

#[test]
fn matches_oracle_after_long_prefix_mutex() {
    property_after_prefix(Object::Mutex, 0x5eed_0005);
}

// ---------------------------------------------------------------------------------------
// Classic cases by hand. Process numbers are arbitrary; positions follow call order.

#[test]
fn sequential_history_is_valid() {
    let mut h = HistoryBuilder::new();
    h.ok_op(0, write(1));
    h.ok_op(1, read(1));
    h.ok_op(0, cas(1, 2));
    h.ok_op(1, read(2));
    let ops = h.build();
    assert_eq!(witness(&register0(), &ops), vec![0, 1, 2, 3]);
}

#[test]
fn empty_history_is_valid() {
    assert_eq!(witness(&register0(), &[]), Vec::<usize>::new());
    assert_eq!(witness(&Mutex, &[]), Vec::<usize>::new());
}

#[test]
fn stale_read() {
    // The read begins after the write completed, yet sees the old value.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, write(1));
    h.ok_op(1, read(0));
    assert!(!verdict(&register0(), &h.build()));

    // Concurrent with the write, the old value is fine, and so is the new one, whichever
    // completes first.
    for seen in [0, 1] {
        for write_first in [true, false] {
            let mut h = HistoryBuilder::new();
            let w = h.invoke(0, write(1));
            let r = h.invoke(1, read(seen));
            if write_first {
                h.ok(w);
                h.ok(r);
            } else {
                h.ok(r);
                h.ok(w);
            }
            assert!(verdict(&register0(), &h.build()));
        }
    }
}

#[test]
fn lost_write() {
    // Two acknowledged writes in sequence; a later read sees the first: the second was lost.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, write(1));
    h.ok_op(1, write(2));
    h.ok_op(2, read(1));
    assert!(!verdict(&register0(), &h.build()));

    // If the writes overlap, either may be last.
    let mut h = HistoryBuilder::new();
    let a = h.invoke(0, write(1));
    let b = h.invoke(1, write(2));
    h.ok(b);
    h.ok(a);
    h.ok_op(2, read(1));
    let ops = h.build();
    assert_eq!(witness(&register0(), &ops), vec![1, 0, 2]);
}

#[test]
fn cas_race() {
    // Two cas from the same old value both succeed: one of them saw a stale value.
    let mut h = HistoryBuilder::new();
    let a = h.invoke(0, cas(0, 1));
    let b = h.invoke(1, cas(0, 2));
    h.ok(a);
    h.ok(b);
    assert!(!verdict(&register0(), &h.build()));

    // One of them failing is fine, whichever.
    for loser in [0, 1] {
        let mut h = HistoryBuilder::new();
        let a = h.invoke(0, cas(0, 1));
        let b = h.invoke(1, cas(0, 2));
        if loser == 0 {
            h.fail(a);
            h.ok(b);
        } else {
            h.ok(a);
            h.fail(b);
        }
        h.ok_op(2, read(if loser == 0 { 2 } else { 1 }));
        let ops = h.build();
        let order = witness(&register0(), &ops);
        assert!(
            !order.contains(&loser),
            "a failed op took effect: {order:?}"
        );
    }
}

#[test]
fn fail_op_had_no_effect() {
    // A failed write cannot explain a later read of its value.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.fail(w);
    h.ok_op(1, read(1));
    assert!(!verdict(&register0(), &h.build()));
}

#[test]
fn info_write_must_take_effect() {
    // An info write, then a read of its value: it took effect, and the witness shows it.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.info(w);
    h.ok_op(1, read(1));
    let ops = h.build();
    assert_eq!(witness(&register0(), &ops), vec![0, 1]);
}

#[test]
fn info_write_may_never_take_effect() {
    // Reading the old value after the info write was invoked is fine: it did not happen
    // (yet, or ever), and the witness leaves it out.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.info(w);
    h.ok_op(1, read(0));
    h.ok_op(1, read(0));
    let ops = h.build();
    assert_eq!(witness(&register0(), &ops), vec![1, 2]);

    // But once a read saw the new value, a later read of the old one is a violation.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.info(w);
    h.ok_op(1, read(1));
    h.ok_op(1, read(0));
    assert!(!verdict(&register0(), &h.build()));

    // ... unless something wrote the old value back in between.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.info(w);
    h.ok_op(1, read(1));
    h.ok_op(2, write(0));
    h.ok_op(1, read(0));
    assert!(verdict(&register0(), &h.build()));
}

#[test]
fn info_write_may_take_effect_arbitrarily_late() {
    // Invoked first, it takes effect only after a long sequence of other writes and reads.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(7));
    h.info(w);
    for i in 0..50 {
        h.ok_op(1, write(i % 3));
        h.ok_op(2, read(i % 3));
    }
    h.ok_op(2, read(7));
    let ops = h.build();
    let order = witness(&register0(), &ops);
    assert_eq!(order.len(), ops.len());
    assert_eq!(
        order[order.len() - 2],
        0,
        "the info write goes just before the last read"
    );
}

#[test]
fn info_cas_twice_from_the_same_value() {
    // Two info cas 0->1 and a later sequence 1, 0, 1 is explainable only with write 0 between.
    let mut h = HistoryBuilder::new();
    let a = h.invoke(0, cas(0, 1));
    let b = h.invoke(1, cas(0, 1));
    h.info(a);
    h.info(b);
    h.ok_op(2, read(1));
    h.ok_op(3, write(0));
    h.ok_op(2, read(1));
    let ops = h.build();
    let order = witness(&register0(), &ops);
    assert_eq!(order.len(), 5, "both info cas took effect: {order:?}");
}

#[test]
fn pending_op() {
    // A cas that never completed, and reads that saw its effect.
    let mut h = HistoryBuilder::new();
    h.invoke(0, cas(0, 3));
    h.ok_op(1, read(0));
    h.ok_op(1, read(3));
    h.ok_op(1, read(3));
    let ops = h.build();
    assert_eq!(witness(&register0(), &ops), vec![1, 0, 2, 3]);

    // A pending write is not required either.
    let mut h = HistoryBuilder::new();
    h.invoke(0, write(3));
    h.ok_op(1, read(0));
    assert_eq!(witness(&register0(), &h.build()), vec![1]);
}

#[test]
fn info_reads_are_not_in_the_witness() {
    let mut h = HistoryBuilder::new();
    let r = h.invoke(0, read_unknown());
    h.info(r);
    let r2 = h.invoke(1, read(0));
    h.info(r2);
    h.ok_op(2, write(1));
    h.ok_op(2, read(1));
    assert_eq!(witness(&register0(), &h.build()), vec![2, 3]);
}

#[test]
fn initial_value() {
    let mut h = HistoryBuilder::new();
    h.ok_op(0, read(0));
    let first_read_zero = h.build();
    assert!(verdict(&register0(), &first_read_zero));
    assert!(!verdict(&register_null(), &first_read_zero));

    let mut h = HistoryBuilder::new();
    h.ok_op(0, read_null());
    h.ok_op(0, cas(0, 1));
    let null_then_cas = h.build();
    assert!(!verdict(&register_null(), &null_then_cas));
    assert!(!verdict(&register0(), &null_then_cas));

    let mut h = HistoryBuilder::new();
    h.ok_op(0, read_null());
    h.ok_op(1, write(0));
    h.ok_op(0, cas(0, 1));
    h.ok_op(0, read(1));
    assert!(verdict(&register_null(), &h.build()));

    let strings = CasRegister::new(Value::Str("a".into()));
    let mut h = HistoryBuilder::new();
    h.ok_op(0, Action::Append("b".into()));
    h.ok_op(0, Action::Read(Some(Value::Str("ab".into()))));
    assert!(verdict(&strings, &h.build()));
}

#[test]
fn mutex_double_acquire() {
    // Sequential acquires without a release.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, Action::Acquire);
    h.ok_op(1, Action::Acquire);
    assert!(!verdict(&Mutex, &h.build()));

    // Concurrent acquires both granted.
    let mut h = HistoryBuilder::new();
    let a = h.invoke(0, Action::Acquire);
    let b = h.invoke(1, Action::Acquire);
    h.ok(b);
    h.ok(a);
    assert!(!verdict(&Mutex, &h.build()));

    // With a release in between (even a concurrent, indeterminate one) it is fine.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, Action::Acquire);
    let rel = h.invoke(0, Action::Release);
    h.info(rel);
    h.ok_op(1, Action::Acquire);
    assert_eq!(witness(&Mutex, &h.build()), vec![0, 1, 2]);

    // A release of a free lock is invalid; a failed acquire had no effect.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, Action::Release);
    assert!(!verdict(&Mutex, &h.build()));
    let mut h = HistoryBuilder::new();
    h.ok_op(0, Action::Acquire);
    let a = h.invoke(1, Action::Acquire);
    h.fail(a);
    h.ok_op(0, Action::Release);
    assert_eq!(witness(&Mutex, &h.build()), vec![0, 2]);
}

#[test]
fn return_and_call_at_the_same_position_are_concurrent() {
    // Hand-built ops whose write completes at the very position the read is invoked: the
    // search (like the oracle) treats them as concurrent.
    let mut h = HistoryBuilder::new();
    let w = h.invoke(0, write(1));
    h.ok(w);
    let mut ops = h.build();
    let mut r = ops[0].clone();
    r.id = 1;
    r.action = read(0);
    r.invoke = 1;
    r.complete = Some(2);
    ops.push(r);
    assert_eq!(ops[0].complete, Some(1));
    assert!(verdict(&register0(), &ops));
}

// ---------------------------------------------------------------------------------------
// Larger histories, valid by construction.

fn large(cfg: &GenConfig, seed: u64) -> Vec<Op> {
    let bytes = random_bytes(seed, cfg.ops * 16 + 64);
    simulate(cfg, &mut Choices::new(&bytes))
}

#[test]
fn large_valid_histories_have_witnesses() {
    let mut cases = 0;
    for seed in 0..40u64 {
        for (object, crash) in [
            (
                Object::Register {
                    initial: int(0),
                    values: 3,
                },
                8,
            ),
            (Object::Mutex, 8),
        ] {
            let cfg = GenConfig {
                object: object.clone(),
                processes: 5,
                ops: 200,
                crash,
            };
            let ops = large(&cfg, seed);
            let outcome = match &object {
                Object::Register { initial, .. } => {
                    let m = CasRegister::new(initial.clone());
                    let o = check(&m, &ops, &Budget::unlimited());
                    if let KeyOutcome::Linearizable(order) = &o {
                        assert!(oracle::is_witness(&m, &ops, order));
                    }
                    o
                }
                Object::Mutex => {
                    let o = check(&Mutex, &ops, &Budget::unlimited());
                    if let KeyOutcome::Linearizable(order) = &o {
                        assert!(oracle::is_witness(&Mutex, &ops, order));
                    }
                    o
                }
            };
            assert!(
                matches!(outcome, KeyOutcome::Linearizable(_)),
                "seed {seed} {object:?}: {outcome:?}"
            );
            cases += 1;
        }
    }
    eprintln!("{cases} large valid histories checked");
}

#[test]
fn thousand_ops_five_processes() {
    let cfg = GenConfig {
        object: Object::Register {
            initial: int(0),
            values: 5,
        },
        processes: 5,
        ops: 1000,
        crash: 2,
    };
    for seed in 0..5 {
        let ops = large(&cfg, 1000 + seed);
        let start = Instant::now();
        let outcome = check(&register0(), &ops, &Budget::unlimited());
        let took = start.elapsed();
        let KeyOutcome::Linearizable(order) = outcome else {
            panic!("seed {seed}: {outcome:?}");
        };
        assert!(oracle::is_witness(&register0(), &ops, &order));
        eprintln!(
            "1000 ops, 5 processes, values 0..5, {} info: {took:?}",
            ops.iter()
                .filter(|o| o.status == checker::history::Status::Info)
                .count()
        );
    }
}

#[test]
fn long_history_needs_no_recursion() {
    // 100k ops on one key: the explicit stack holds every op at once.
    let mut h = HistoryBuilder::new();
    for i in 0..50_000 {
        h.ok_op(i % 3, write(i as i64 % 4));
        h.ok_op(i % 3 + 3, read(i as i64 % 4));
    }
    let ops = h.build();
    let start = Instant::now();
    let KeyOutcome::Linearizable(order) = check(&register0(), &ops, &Budget::unlimited()) else {
        panic!("expected linearizable");
    };
    eprintln!("100k sequential ops: {:?}", start.elapsed());
    assert_eq!(order.len(), ops.len());
    assert!(order.iter().enumerate().all(|(k, &i)| k == i));
}

// ---------------------------------------------------------------------------------------
// Budgets.

/// Many concurrent writes and reads, crashed writes of distinct values nobody reads, and
/// two cas from the one write of 5: the search must try the crashed writes in many subsets
/// and orders before it can say "invalid" (no op's needed state is out of reach early).
fn pathological() -> Vec<Op> {
    let mut h = HistoryBuilder::new();
    let mut pending = Vec::new();
    let mut crashed = Vec::new();
    for i in 0..24 {
        pending.push(h.invoke(
            i,
            if i % 2 == 0 {
                write(i as i64 % 5)
            } else {
                read(i as i64 % 5)
            },
        ));
        crashed.push(h.invoke(100 + i, write(1000 + i as i64)));
    }
    pending.push(h.invoke(200, write(5)));
    pending.push(h.invoke(201, cas(5, 6)));
    pending.push(h.invoke(202, cas(5, 7)));
    for p in pending {
        h.ok(p);
    }
    for c in crashed {
        h.info(c);
    }
    h.build()
}

#[test]
fn expired_deadline_is_unknown_timeout() {
    let budget = Budget::new(Some(Instant::now()), usize::MAX);
    assert_eq!(
        check(&register0(), &pathological(), &budget),
        KeyOutcome::Unknown(GiveUp::Timeout)
    );
}

#[test]
fn no_memory_is_unknown_memory() {
    let budget = Budget::new(None, 0);
    assert_eq!(
        check(&register0(), &pathological(), &budget),
        KeyOutcome::Unknown(GiveUp::Memory)
    );
    // Everything charged was released.
    assert_eq!(budget.exhausted(), None);
}

#[test]
fn memory_runs_out_mid_search_and_is_released() {
    let budget = Budget::new(None, 256 * 1024);
    assert_eq!(
        check(&register0(), &pathological(), &budget),
        KeyOutcome::Unknown(GiveUp::Memory)
    );
    assert_eq!(budget.exhausted(), None);

    // A small valid history fits in the same budget, and leaves it as it found it.
    let mut h = HistoryBuilder::new();
    h.ok_op(0, write(1));
    h.ok_op(0, read(1));
    assert_eq!(
        check(&register0(), &h.build(), &budget),
        KeyOutcome::Linearizable(vec![0, 1])
    );
    assert_eq!(budget.exhausted(), None);
}

#[test]
fn cancelled_budget_is_unknown_cancelled() {
    let budget = Budget::unlimited();
    budget.cancel();
    assert_eq!(
        check(&register0(), &pathological(), &budget),
        KeyOutcome::Unknown(GiveUp::Cancelled)
    );
}

/// Timings for the report (run in release):
/// `cargo test --release -p checker --test search perf_report -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_report() {
    for (ops, crash, invalid) in [
        (1000, 2, false),
        (1000, 20, false),
        (10_000, 2, false),
        (100_000, 1, false),
        (1000, 0, true),
        (1000, 2, true),
        (10_000, 0, true),
    ] {
        let cfg = GenConfig {
            object: Object::Register {
                initial: int(0),
                values: 5,
            },
            processes: 5,
            ops,
            crash,
        };
        for seed in 0..3 {
            let mut history = large(&cfg, 7000 + seed);
            if invalid {
                // A stale read at the very end: everything before must be exhausted.
                let mut h = HistoryBuilder::new();
                h.ok_op(0, write(9));
                h.ok_op(0, read(8));
                let tail = h.build();
                history = concat(history, tail);
            }
            let info = history
                .iter()
                .filter(|o| o.status == checker::history::Status::Info)
                .count();
            let start = Instant::now();
            let outcome = check(
                &register0(),
                &history,
                &Budget::new(
                    Some(Instant::now() + std::time::Duration::from_secs(60)),
                    8 << 30,
                ),
            );
            let took = start.elapsed();
            let verdict = match &outcome {
                KeyOutcome::Linearizable(_) => "valid".to_string(),
                other => format!("{other:?}"),
            };
            eprintln!(
                "{} ops ({info} info), 5 processes, values 0..5{}: {verdict} in {took:?}",
                history.len(),
                if invalid {
                    ", stale read at the end"
                } else {
                    ""
                }
            );
        }
    }
}
