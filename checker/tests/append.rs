//! The append fast path (`checker::append`: puts and appends reduced to the register
//! check) and the general search against the brute-force oracle on small append histories,
//! with and without puts, with up to eight processes at once, the fast path against the
//! general search on larger ones with up to 40, and on synthetic append and key-value
//! histories with and without a stale read.
//!
//! Every history comes from a seed; a failure prints it. `APPEND_TEST_SEED=S` shifts the seeds
//! and `APPEND_TEST_SCALE=N` runs N times as many, for a longer hunt by hand.

mod support;

use checker::history::{Action, Op, Status, Value};
use checker::spec::CasRegister;
use checker::synth::{self, Anomaly, Mix, SynthSpec};
use checker::{append, search, Budget, KeyOutcome, Want};
use support::append_gen::{mutate, simulate, Rng};
use support::oracle;
use support::register_gen::{ops, split_by_key};

use Status::{Fail, Info, Ok as Done};

fn env(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The seeds of one property: `count` of them (times the scale), shifted by the env seed.
fn seeds(base: u64, count: u64) -> impl Iterator<Item = u64> {
    let from = base.wrapping_add(env("APPEND_TEST_SEED"));
    (0..count * env("APPEND_TEST_SCALE").max(1)).map(move |i| from.wrapping_add(i))
}

fn fast(ops: &[Op], initial: &Value) -> Option<KeyOutcome> {
    append::check_with_conflict(ops, initial, &Budget::unlimited(), Want::Witness)
        .map(|(outcome, _)| outcome)
}

/// Half the histories have no puts, the others 5–25% of their ops.
fn put_percent(rng: &mut Rng) -> usize {
    if rng.chance(50) {
        0
    } else {
        5 + rng.below(21)
    }
}

fn initial_for(rng: &mut Rng) -> Value {
    if rng.chance(70) {
        Value::Null
    } else {
        Value::Str("start,".into())
    }
}

#[derive(Default, Debug)]
struct Tally {
    valid: u32,
    invalid: u32,
    not_applicable: u32,
    with_info: u32,
    /// Histories in which some op overlaps five or more others.
    crowded: u32,
    /// Histories the reference could not decide within its budget.
    skipped: u32,
    /// Histories with a put that did not fail.
    with_puts: u32,
}

impl Tally {
    fn count(&mut self, ops: &[Op], verdict: Option<bool>) {
        match verdict {
            Some(true) => self.valid += 1,
            Some(false) => self.invalid += 1,
            None => self.not_applicable += 1,
        }
        self.with_info += u32::from(ops.iter().any(|o| o.status == Info));
        self.with_puts += u32::from(
            ops.iter()
                .any(|o| o.status != Fail && matches!(o.action, Action::Write(_))),
        );
        let overlaps = |a: &Op| {
            ops.iter()
                .filter(|b| b.id != a.id && b.invoke < a.end() && a.invoke < b.end())
                .count()
        };
        self.crowded += u32::from(ops.iter().any(|a| overlaps(a) >= 5));
    }
}

/// The fast path's verdict, which must equal `expected`; any witness is verified.
fn agree(ops: &[Op], initial: &Value, expected: bool) -> Result<Option<bool>, String> {
    let model = CasRegister::new(initial.clone());
    match fast(ops, initial) {
        None => Ok(None),
        Some(KeyOutcome::Linearizable(order)) if !expected => Err(format!(
            "fast path found witness {order:?}, the reference says not linearizable"
        )),
        Some(KeyOutcome::Linearizable(order)) => {
            if oracle::is_witness(&model, ops, &order) {
                Ok(Some(true))
            } else {
                Err(format!("{order:?} is not a witness"))
            }
        }
        Some(KeyOutcome::NotLinearizable) if expected => {
            Err("fast path says not linearizable, the reference found a linearization".into())
        }
        Some(KeyOutcome::NotLinearizable) => Ok(Some(false)),
        Some(other) => Err(format!("{other:?} with an unlimited budget")),
    }
}

#[test]
fn matches_the_oracle_with_many_processes() {
    let mut t = Tally::default();
    for seed in seeds(0xa99e_0000, 6_000) {
        let mut rng = Rng::new(seed);
        let initial = initial_for(&mut rng);
        let procs = 1 + rng.below(8);
        let n_ops = 1 + rng.below(8);
        let puts = put_percent(&mut rng);
        let mut ops = simulate(&mut rng, &initial, n_ops, procs, puts);
        let mutations = rng.below(3);
        mutate(&mut rng, &mut ops, mutations);
        let model = CasRegister::new(initial.clone());
        let expected = oracle::linearizable(&model, &ops);
        // The general search cuts dead ends on these histories (a read whose value the state
        // can no longer grow into): it must agree with the oracle too.
        let searched = match search::check(&model, &ops, &Budget::unlimited()) {
            KeyOutcome::Linearizable(order) if oracle::is_witness(&model, &ops, &order) => Ok(true),
            KeyOutcome::Linearizable(order) => Err(format!("search: {order:?} is no witness")),
            KeyOutcome::NotLinearizable => Ok(false),
            other => Err(format!("search: {other:?}")),
        };
        let checked = searched.and_then(|found| {
            if found != expected {
                return Err(format!("search says {found}, the oracle {expected}"));
            }
            agree(&ops, &initial, expected)
        });
        match checked {
            Ok(v) => t.count(&ops, v),
            Err(e) => panic!("seed {seed}: {e}\ninitial {initial:?}\nhistory: {ops:#?}"),
        }
    }
    eprintln!("{t:?}");
    assert!(t.valid >= 1_500 && t.invalid >= 1_500, "{t:?}");
    assert!(t.with_info >= 1_000 && t.crowded >= 200, "{t:?}");
    assert!(t.with_puts >= 1_000, "{t:?}");
}

#[test]
fn matches_the_general_search_on_larger_histories() {
    let mut t = Tally::default();
    for seed in seeds(0xa99e_1000, 400) {
        let mut rng = Rng::new(seed);
        let initial = initial_for(&mut rng);
        let puts = put_percent(&mut rng);
        // The search is exponential in the appends nobody saw that puts hid: fewer processes
        // with puts, so that it decides most of them.
        let procs = 2 + rng.below(if puts > 0 { 12 } else { 39 });
        let n_ops = 10 + rng.below(50);
        let mut ops = simulate(&mut rng, &initial, n_ops, procs, puts);
        if !ops
            .iter()
            .any(|o| o.status != Fail && matches!(o.action, Action::Append(_)))
        {
            // No append took part: the register fast path's.
            continue;
        }
        if rng.chance(60) {
            mutate(&mut rng, &mut ops, 1);
        }
        let model = CasRegister::new(initial.clone());
        // The search still takes exponential time on a few of these (crashed appends nobody saw
        // may or may not have happened, in any order); a memory budget keeps such a seed from
        // eating the machine, and it is skipped.
        let expected = match search::check(&model, &ops, &Budget::new(None, 64 << 20)) {
            KeyOutcome::Linearizable(_) => true,
            KeyOutcome::NotLinearizable => false,
            _ => {
                t.skipped += 1;
                continue;
            }
        };
        match agree(&ops, &initial, expected) {
            Ok(v) => t.count(&ops, v),
            Err(e) => panic!("seed {seed}: {e}\ninitial {initial:?}\nhistory: {ops:#?}"),
        }
    }
    eprintln!("{t:?}");
    assert!(
        t.valid >= 100 && t.invalid >= 100 && t.crowded >= 150,
        "{t:?}"
    );
    assert!(t.skipped <= 10 && t.with_puts >= 100, "{t:?}");
    assert_eq!(t.not_applicable, 0, "{t:?}");
}

#[test]
fn synthetic_append_histories_match_their_anomaly() {
    let mut injected = 0;
    let appends = Mix {
        read: 0.5,
        write: 0.0,
        cas: 0.0,
        append: 0.5,
    };
    let kv = Mix {
        write: 0.1,
        append: 0.4,
        ..appends
    };
    for seed in seeds(1, 20) {
        for (anomaly, mix) in [None, Some(Anomaly::StaleRead)]
            .into_iter()
            .flat_map(|a| [(a, appends), (a, kv)])
        {
            let spec = SynthSpec {
                seed,
                keys: 3,
                ops_per_key: 200,
                processes_per_key: 50,
                info_rate: 0.01,
                mix,
                anomaly,
                values: None,
            };
            let s = synth::generate_detailed(&spec);
            injected += usize::from(s.anomaly_key.is_some());
            for (key, ops) in split_by_key(&s.ops) {
                let outcome = fast(&ops, &Value::Null);
                let expect_valid = s.anomaly_key.as_ref() != Some(&key);
                match outcome {
                    Some(KeyOutcome::Linearizable(order)) if expect_valid => assert!(
                        oracle::is_witness(&CasRegister::new(Value::Null), &ops, &order),
                        "seed {seed} key {key}: bad witness"
                    ),
                    Some(KeyOutcome::NotLinearizable) if !expect_valid => {}
                    other => panic!("seed {seed} {anomaly:?} {mix:?} key {key}: {other:?}"),
                }
            }
        }
    }
    // Most seeds must have had a stale read to find, or the invalid side tests nothing.
    assert!(injected >= 30, "{injected} anomalies injected");
}

fn append(s: &str) -> Action {
    Action::Append(s.into())
}

fn put(s: &str) -> Action {
    Action::Write(Value::Str(s.into()))
}

fn read_str(s: &str) -> Action {
    Action::Read(Some(Value::Str(s.into())))
}

#[test]
fn applies_only_to_unique_prefix_free_appends() {
    let null = Value::Null;
    // "1" is a prefix of "12": parses are ambiguous, so the search decides.
    let h = ops(&[
        (append("1"), Done, 0, Some(1)),
        (append("12"), Done, 2, Some(3)),
        (read_str("112"), Done, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &null), None);
    // The same string twice.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (append("a,"), Done, 2, Some(3)),
    ]);
    assert_eq!(fast(&h, &null), None);
    // A failed duplicate does not count.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (append("a,"), Fail, 2, Some(3)),
        (read_str("a,"), Done, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &null), Some(KeyOutcome::Linearizable(vec![0, 2])));
    // Cas, writes of anything but a non-empty string, empty appends and integer registers
    // are not for this path.
    for other in [
        Action::Cas(Value::Null, Value::Str("b,".into())),
        Action::Write(Value::Int(1)),
        Action::Write(Value::Null),
        Action::Write(Value::Str(String::new())),
        append(""),
    ] {
        let h = ops(&[(append("a,"), Done, 0, Some(1)), (other, Done, 2, Some(3))]);
        assert_eq!(fast(&h, &null), None);
    }
    assert_eq!(
        fast(&ops(&[(append("a,"), Done, 0, Some(1))]), &Value::Int(0)),
        None
    );
    // Puts of strings are: a read names the put it saw.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (put("b,"), Done, 2, Some(3)),
        (read_str("b,"), Done, 4, Some(5)),
    ]);
    assert_eq!(
        fast(&h, &null),
        Some(KeyOutcome::Linearizable(vec![0, 1, 2]))
    );
    // A put's string and the initial value, one the start of the other: a read of "s,x,"
    // could be either, so the search decides.
    let h = ops(&[
        (append("x,"), Done, 0, Some(1)),
        (put("s,x,"), Done, 2, Some(3)),
    ]);
    assert_eq!(fast(&h, &Value::Str("s,".into())), None);
    // Reads alone are the register fast path's.
    assert_eq!(
        fast(&ops(&[(read_str("a,"), Done, 0, Some(1))]), &null),
        None
    );
}

#[test]
fn hand_written_anomalies() {
    let null = Value::Null;
    let invalid = Some(KeyOutcome::NotLinearizable);
    // Two reads that are not prefixes of one another.
    let h = ops(&[
        (append("a,"), Done, 0, Some(9)),
        (append("b,"), Done, 1, Some(9)),
        (read_str("a,b,"), Done, 2, Some(9)),
        (read_str("b,a,"), Done, 3, Some(9)),
    ]);
    assert_eq!(fast(&h, &null), invalid);
    // A read that misses an append completed before it began.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (append("b,"), Done, 2, Some(3)),
        (read_str("a,"), Done, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &null), invalid);
    // An append nobody saw that completed before a read of fewer appends began.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (read_str("a,"), Done, 2, Some(8)),
        (append("b,"), Done, 3, Some(4)),
        (read_str("a,"), Done, 5, Some(6)),
    ]);
    assert_eq!(fast(&h, &null), invalid);
    // The same, but the second read overlaps the append: it may come first.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (append("b,"), Done, 3, Some(6)),
        (read_str("a,"), Done, 4, Some(5)),
    ]);
    assert!(matches!(fast(&h, &null), Some(KeyOutcome::Linearizable(_))));
    // A crashed append seen by a read took effect; one nobody saw did not.
    let h = ops(&[
        (append("a,"), Info, 0, None),
        (append("b,"), Info, 1, None),
        (read_str("a,"), Done, 2, Some(3)),
        (Action::Read(Some(Value::Null)), Fail, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &null), Some(KeyOutcome::Linearizable(vec![0, 2])));
    // A string state is never empty when the register starts empty, and never null once it
    // starts as a string.
    let h = ops(&[
        (append("a,"), Info, 0, None),
        (read_str(""), Done, 1, Some(2)),
    ]);
    assert_eq!(fast(&h, &null), invalid);
    let h = ops(&[
        (append("a,"), Info, 0, None),
        (Action::Read(Some(Value::Null)), Done, 1, Some(2)),
    ]);
    assert_eq!(fast(&h, &Value::Str("x".into())), invalid);
    // A read that parses into appended strings but ends inside one.
    let h = ops(&[
        (append("ab,"), Done, 0, Some(1)),
        (read_str("ab"), Done, 2, Some(3)),
    ]);
    assert_eq!(fast(&h, &null), invalid);
}

#[test]
fn hand_written_anomalies_with_puts() {
    let empty = Value::Str(String::new());
    let invalid = Some(KeyOutcome::NotLinearizable);
    // An append seen after two different puts: it took effect once.
    let h = ops(&[
        (put("p,"), Done, 0, Some(1)),
        (append("a,"), Done, 2, Some(9)),
        (read_str("p,a,"), Done, 3, Some(4)),
        (put("q,"), Done, 5, Some(6)),
        (read_str("q,a,"), Done, 7, Some(8)),
    ]);
    assert_eq!(fast(&h, &empty), invalid);
    // A put completed before a read began, and the read still sees the value before it.
    let h = ops(&[
        (append("a,"), Done, 0, Some(1)),
        (put("p,"), Done, 2, Some(3)),
        (read_str("a,"), Done, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &empty), invalid);
    // An append nobody saw, completed before a read of the put it would have followed.
    let h = ops(&[
        (put("p,"), Done, 0, Some(1)),
        (append("a,"), Done, 2, Some(3)),
        (read_str("p,"), Done, 4, Some(5)),
    ]);
    assert_eq!(fast(&h, &empty), invalid);
    // The same append nobody saw, with a later put to hide behind: linearizable.
    let h = ops(&[
        (put("p,"), Done, 0, Some(1)),
        (append("a,"), Done, 2, Some(3)),
        (put("q,"), Done, 2, Some(7)),
        (read_str("q,"), Done, 8, Some(9)),
    ]);
    assert_eq!(
        fast(&h, &empty),
        Some(KeyOutcome::Linearizable(vec![0, 1, 2, 3]))
    );
    // Porcupine's kv start: the empty string, read as such before anything happened.
    let h = ops(&[
        (read_str(""), Done, 0, Some(1)),
        (append("x 0 0 y"), Done, 2, Some(3)),
        (read_str("x 0 0 y"), Done, 4, Some(5)),
    ]);
    assert_eq!(
        fast(&h, &empty),
        Some(KeyOutcome::Linearizable(vec![0, 1, 2]))
    );
}
