//! The simulator and model columns: the deterministic simulator aimed at a bug, and the
//! model checker's hunt for it, each off the async runtime's threads.

use super::{ModelColumn, SimColumn, HUNT_TIMEOUT};
use crate::report::results::round3;
use model::bugs::Bug;
use model::sim::SimConfig;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::sync::oneshot;

/// Runs `work` on its own thread (not tokio's blocking pool: an abandoned hunt must not keep
/// the runtime from shutting down after Ctrl-C).
pub(super) async fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await.map_err(|_| format!("the {name} thread panicked"))
}

/// The simulator column: `seeds` seeds of the schedule aimed at `bug`, with the bug on.
pub(super) async fn simulate(bug: Bug, seeds: u64) -> SimColumn {
    let started = Instant::now();
    let result = off_thread("simulator", move || {
        let mut caught = 0;
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for seed in 0..seeds {
            let report = model::sim::run(&SimConfig::targeting(seed, bug).with_bug(bug));
            if report.caught() {
                caught += 1;
                let how = report
                    .violation
                    .as_ref()
                    .map_or("history not linearizable", |v| v.property);
                *by.entry(how.to_string()).or_default() += 1;
            }
        }
        (caught, by)
    })
    .await;
    let seconds = round3(started.elapsed().as_secs_f64());
    match result {
        Ok((caught, by)) => SimColumn {
            caught,
            seeds,
            by,
            seconds,
            error: None,
        },
        Err(e) => SimColumn {
            caught: 0,
            seeds,
            by: BTreeMap::new(),
            seconds,
            error: Some(e),
        },
    }
}

/// The raft-model column: the bug's hunt, if the model has one.
pub(super) async fn hunt(bug: Bug) -> Option<ModelColumn> {
    let mut run = model::check::hunts::hunt(bug)?;
    run.timeout = Some(HUNT_TIMEOUT);
    let expected = model::check::hunts::expected(bug).map(str::to_string);
    let started = Instant::now();
    let result = off_thread("raft-model", move || {
        let report = model::check::runner::run(&run);
        (
            report.violated().first().map(|p| p.to_string()),
            report.unique_states,
            report.max_depth,
        )
    })
    .await;
    let seconds = round3(started.elapsed().as_secs_f64());
    Some(match result {
        Ok((property, unique_states, max_depth)) => ModelColumn {
            property,
            expected,
            unique_states,
            max_depth,
            seconds,
            error: None,
        },
        Err(e) => ModelColumn {
            property: None,
            expected,
            unique_states: 0,
            max_depth: 0,
            seconds,
            error: Some(e),
        },
    })
}
