//! Online checking: the history is checked while the run goes, so that an anomaly is known
//! (and, with `--stop-on-anomaly`, the run stopped) soon after it happens instead of at the
//! end.
//!
//! **Soundness.** Every check here is of a *prefix* of the history (the events recorded so
//! far), in which an operation invoked but not yet completed is indeterminate (`info`: it may
//! take effect at any time after its invoke, or never), as [`checker::history::pairing`]
//! treats an invoke without completion. Such a prefix is linearizable whenever the whole
//! history is: take the whole history's linearization up to the last operation that
//! completed within the prefix; only operations of the prefix can be in it, since one invoked
//! after the prefix ends follows every operation completed in the prefix, and the prefix's
//! pending operations in it are those that took effect. So an anomaly found in a prefix is an
//! anomaly of the run, and the run may stop there. The converse does not hold: a prefix found
//! linearizable says nothing about the rest, so an online "valid" is never a verdict; the
//! full check at the end of the run gives it.
//!
//! **Bounded work.** Keys are independent registers (P-compositionality), so only the keys
//! with completions since their last check are checked again, one at a time, each with its
//! whole prefix: a key of an independent-keys workload is decided after its `ops_per_key`
//! operations and not looked at again until a new completion touches it (the final reads
//! do); the one key of a single-register workload is re-checked as it grows. Each key keeps
//! its events as the JSON Lines text the checker reads, written once as they arrive (not a
//! second copy of the records). A round runs at most every
//! [`INTERVAL`], on a blocking thread with a one-thread checker pool (the clients and nodes
//! keep the other cores), waits at least as long as its check took before the next one (at
//! most half of one core), and never overlaps the previous round: a round due while a check
//! runs is skipped. A key whose check gave up is not checked online again.

use crate::history::{EventType, Record, Recorder, Who};
use crate::lab::check::{check_text, history_line};
use checker::Verdict;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// Least time between two rounds of online checks.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Most time one online round may take before its keys count as given up.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// The first anomaly found online.
#[derive(Clone, Debug)]
pub struct Found {
    /// Recorder nanoseconds when the check that found it ended.
    pub at_ns: u64,
    /// The checker's report of the prefix (invalid, with the anomaly explained).
    pub report: checker::Report,
}

/// What [`OnlineChecker::finish`] hands back.
#[derive(Debug, Default)]
pub struct OnlineOutcome {
    pub found: Option<Found>,
    pub rounds: u64,
    pub key_checks: u64,
    pub check_s: f64,
}

/// The history seen so far, split by key, with the keys that have completions their last
/// check did not see.
#[derive(Debug, Default)]
pub struct Prefix {
    /// Recorder events consumed (client and nemesis).
    seen: usize,
    keys: HashMap<String, KeyRecords>,
    /// Keys whose check gave up: not checked online again.
    retired: HashSet<String>,
}

#[derive(Debug, Default)]
struct KeyRecords {
    /// The key's events so far, as JSON Lines.
    text: String,
    /// The line in `history.jsonl` of each of `text`'s lines.
    lines: Vec<usize>,
    /// Completions recorded since the key was last handed out by [`Prefix::due`].
    unchecked: usize,
}

/// One key's prefix to check: [`KeyRecords`]' text and lines, as they were.
pub struct DueKey {
    name: String,
    text: String,
    lines: Vec<usize>,
}

impl Prefix {
    /// How many recorder events have been taken in: read on from there.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Takes in the next recorder events, in order (nemesis events are counted, not kept).
    pub fn extend(&mut self, records: Vec<Record>) {
        self.seen += records.len();
        for record in records {
            if record.who == Who::Nemesis {
                continue;
            }
            let key = self.keys.entry(record.key.to_string()).or_default();
            if record.kind != EventType::Invoke {
                key.unchecked += 1;
            }
            checker::history::jsonl::write_record(&mut key.text, &record);
            key.lines.push(history_line(&record));
        }
    }

    /// The prefix of every key with unchecked completions; those keys count as checked from
    /// now on. Empty when nothing new completed.
    pub fn due(&mut self) -> Vec<DueKey> {
        let mut due = Vec::new();
        for (name, key) in &mut self.keys {
            if key.unchecked == 0 || self.retired.contains(name) {
                continue;
            }
            key.unchecked = 0;
            due.push(DueKey {
                name: name.clone(),
                text: key.text.clone(),
                lines: key.lines.clone(),
            });
        }
        due
    }

    /// Takes in a round's checks: keys whose check gave up are not worth checking again as
    /// they grow; keys the round had no time for are due again.
    fn checked(&mut self, round: &Round) {
        self.retired.extend(round.gave_up.iter().cloned());
        for name in &round.not_reached {
            if let Some(key) = self.keys.get_mut(name) {
                key.unchecked = key.unchecked.max(1);
            }
        }
    }
}

/// What one round of checks found.
#[derive(Debug, Default)]
struct Round {
    /// The report of the first key found not linearizable.
    anomaly: Option<checker::Report>,
    /// Keys whose check gave up.
    gave_up: Vec<String>,
    /// Keys not checked before the round's time ran out.
    not_reached: Vec<String>,
}

/// Checks the due keys one after another until one is not linearizable or `deadline` passes.
fn check_keys(due: &[DueKey], deadline: Instant) -> anyhow::Result<Round> {
    let mut round = Round::default();
    for (n, key) in due.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            round.not_reached = due[n..].iter().map(|key| key.name.clone()).collect();
            break;
        }
        let report = check_text(&key.text, Some(&key.lines), Some(left))?;
        match report.valid {
            Verdict::Invalid => {
                round.anomaly = Some(report);
                break;
            }
            Verdict::Unknown => round.gave_up.push(key.name.clone()),
            Verdict::Valid => {}
        }
    }
    Ok(round)
}

/// The running online check: a task that reads the recorder and checks what is due.
pub struct OnlineChecker {
    task: tokio::task::JoinHandle<OnlineOutcome>,
    /// Dropped or set to stop the task.
    done: watch::Sender<bool>,
}

impl OnlineChecker {
    /// Starts checking what `recorder` records. With `halt`, the first anomaly found sets it
    /// (the run's stop signal: `--stop-on-anomaly`).
    pub fn start(recorder: Recorder, halt: Option<Arc<watch::Sender<bool>>>) -> Self {
        let (done, done_rx) = watch::channel(false);
        let task = tokio::spawn(watch_history(recorder, halt, done_rx));
        OnlineChecker { task, done }
    }

    /// Stops checking (a check under way is let finish, so its anomaly is not lost) and says
    /// what was found.
    pub async fn finish(self) -> OnlineOutcome {
        let _ = self.done.send(true);
        match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!("the online check ended abnormally: {e}");
                OnlineOutcome::default()
            }
        }
    }
}

/// The online check's loop (see the module documentation).
async fn watch_history(
    recorder: Recorder,
    halt: Option<Arc<watch::Sender<bool>>>,
    mut done: watch::Receiver<bool>,
) -> OnlineOutcome {
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => Arc::new(pool),
        Err(e) => {
            warn!("no thread for the online check, which is off for this run: {e}");
            return OnlineOutcome::default();
        }
    };
    let mut prefix = Prefix::default();
    let mut outcome = OnlineOutcome::default();
    let mut pause = INTERVAL;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = done.wait_for(|d| *d) => break,
        }
        prefix.extend(recorder.events_from(prefix.seen()));
        let due = prefix.due();
        pause = INTERVAL;
        if due.is_empty() {
            continue;
        }
        let keys = due.len();
        let pool = pool.clone();
        // Awaited even when `done` fires meanwhile: an anomaly it finds is the run's.
        let checked = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let reports = pool.install(|| check_keys(&due, started + ROUND_TIMEOUT));
            (reports, started.elapsed())
        })
        .await;
        let (reports, took) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                warn!("an online check failed: {e}");
                break;
            }
        };
        outcome.rounds += 1;
        outcome.key_checks += keys as u64;
        outcome.check_s += took.as_secs_f64();
        pause = pause.max(took);
        let round = match reports {
            Ok(round) => round,
            Err(e) => {
                // The final check reads the same records and reports the problem.
                warn!("the online check stopped: {e:#}");
                break;
            }
        };
        prefix.checked(&round);
        if let Some(report) = round.anomaly {
            info!(
                anomaly = report.anomalies.first().map(|a| a.message.as_str()),
                "the online check found an anomaly"
            );
            outcome.found = Some(Found {
                at_ns: recorder.now(),
                report,
            });
            if let Some(halt) = &halt {
                let _ = halt.send(true);
            }
            break;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn op(r: &Recorder, p: u64, kind: EventType, f: &str, key: &str, value: Json) {
        r.record(Who::Process(p), kind, f, json!(key), value);
    }

    /// The due keys' checks: how many keys were due, and the first anomaly.
    fn check_due(prefix: &mut Prefix, r: &Recorder) -> Option<(usize, Option<checker::Report>)> {
        prefix.extend(r.events_from(prefix.seen()));
        let due = prefix.due();
        let deadline = Instant::now() + Duration::from_secs(3600);
        (!due.is_empty()).then(|| (due.len(), check_keys(&due, deadline).unwrap().anomaly))
    }

    /// A write still in flight may yet take effect: a read of its value is not an anomaly of
    /// the prefix, and the write's later completion keeps the history valid.
    #[test]
    fn a_pending_write_explains_a_read_of_its_value() {
        let r = Recorder::new();
        let mut prefix = Prefix::default();
        op(&r, 0, EventType::Invoke, "write", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "read", "k0", Json::Null);
        op(&r, 1, EventType::Ok, "read", "k0", json!(1));
        let (keys, anomaly) = check_due(&mut prefix, &r).unwrap();
        assert_eq!(keys, 1);
        assert!(anomaly.is_none(), "{anomaly:?}");
        op(&r, 0, EventType::Ok, "write", "k0", json!(1));
        let (_, anomaly) = check_due(&mut prefix, &r).unwrap();
        assert!(anomaly.is_none(), "{anomaly:?}");
    }

    /// The same read after the write certainly failed is an anomaly, found in the prefix and
    /// named by its line in the whole history, though only its key was checked.
    #[test]
    fn a_read_of_a_failed_write_is_an_anomaly_of_the_prefix() {
        let r = Recorder::new();
        let mut prefix = Prefix::default();
        op(&r, 2, EventType::Invoke, "write", "k1", json!(7));
        op(&r, 2, EventType::Ok, "write", "k1", json!(7));
        assert!(check_due(&mut prefix, &r).is_some());
        r.nemesis("kill", json!({"node": 1}));
        op(&r, 0, EventType::Invoke, "write", "k0", json!(1));
        op(&r, 0, EventType::Fail, "write", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "read", "k0", Json::Null);
        op(&r, 1, EventType::Ok, "read", "k0", json!(1));
        op(&r, 0, EventType::Invoke, "write", "k0", json!(2));
        let (keys, report) = check_due(&mut prefix, &r).unwrap();
        let report = report.unwrap();
        assert_eq!((keys, report.valid, report.keys), (1, Verdict::Invalid, 1));
        let anomaly = &report.anomalies[0];
        assert_eq!(anomaly.key, checker::history::Value::Str("k0".into()));
        // The read's invoke is event 5: line 6 of history.jsonl.
        assert_eq!(
            anomaly.op.as_ref().map(|op| op.line),
            Some(6),
            "{anomaly:?}"
        );
    }

    /// Only keys with new completions are checked again; nemesis events and invokes alone
    /// make nothing due; a process moving between keys is checked on each key alone.
    #[test]
    fn only_keys_with_new_completions_are_due() {
        let r = Recorder::new();
        let mut prefix = Prefix::default();
        op(&r, 0, EventType::Invoke, "write", "k0", json!(1));
        op(&r, 0, EventType::Ok, "write", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "write", "k1", json!(5));
        op(&r, 1, EventType::Ok, "write", "k1", json!(5));
        let (keys, anomaly) = check_due(&mut prefix, &r).unwrap();
        assert_eq!((keys, anomaly.is_none()), (2, true));
        assert!(check_due(&mut prefix, &r).is_none(), "nothing new");
        r.nemesis("kill", json!({"node": 1}));
        op(&r, 0, EventType::Invoke, "read", "k1", Json::Null);
        assert!(check_due(&mut prefix, &r).is_none(), "an invoke alone");
        op(&r, 0, EventType::Ok, "read", "k1", json!(5));
        let (keys, anomaly) = check_due(&mut prefix, &r).unwrap();
        assert_eq!((keys, anomaly.is_none()), (1, true));
        assert_eq!(prefix.seen(), r.events().len());
    }

    /// Keys a round had no time for are due again; a key whose check gave up is not.
    #[test]
    fn keys_not_reached_are_due_again_and_given_up_ones_are_not() {
        let r = Recorder::new();
        let mut prefix = Prefix::default();
        op(&r, 0, EventType::Invoke, "write", "k0", json!(1));
        op(&r, 0, EventType::Ok, "write", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "write", "k1", json!(2));
        op(&r, 1, EventType::Ok, "write", "k1", json!(2));
        prefix.extend(r.events_from(prefix.seen()));
        let due = prefix.due();
        let round = check_keys(&due, Instant::now()).unwrap();
        assert_eq!(
            (round.not_reached.len(), round.anomaly.is_none()),
            (2, true)
        );
        prefix.checked(&round);
        assert_eq!(prefix.due().len(), 2, "due again");
        prefix.checked(&Round {
            gave_up: vec![due[0].name.clone()],
            ..Round::default()
        });
        op(&r, 0, EventType::Invoke, "read", "k0", Json::Null);
        op(&r, 0, EventType::Ok, "read", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "read", "k1", Json::Null);
        op(&r, 1, EventType::Ok, "read", "k1", json!(2));
        prefix.extend(r.events_from(prefix.seen()));
        let names: Vec<String> = prefix.due().into_iter().map(|key| key.name).collect();
        assert_eq!(names, vec![due[1].name.clone()]);
    }

    /// The loop finds an anomaly recorded while it runs and raises the halt signal.
    #[tokio::test]
    async fn the_checker_halts_the_run_at_an_anomaly() {
        let r = Recorder::new();
        let (halt, mut halted) = watch::channel(false);
        let online = OnlineChecker::start(r.clone(), Some(Arc::new(halt)));
        op(&r, 0, EventType::Invoke, "write", "k0", json!(1));
        op(&r, 0, EventType::Ok, "write", "k0", json!(1));
        op(&r, 1, EventType::Invoke, "read", "k0", Json::Null);
        op(&r, 1, EventType::Ok, "read", "k0", Json::Null);
        // A guard against a hang, not a synchronisation: the first round is due in 0.5 s.
        tokio::time::timeout(Duration::from_secs(60), halted.wait_for(|h| *h))
            .await
            .expect("the anomaly halts the run")
            .unwrap();
        let outcome = online.finish().await;
        let found = outcome.found.unwrap();
        assert_eq!(found.report.valid, Verdict::Invalid);
        assert!(outcome.rounds >= 1);
    }
}
