//! What `raft-model` prints: [`check_scenarios`] runs a portfolio ([`super::portfolio`]) and
//! reports each scenario as it finishes (or one JSON object at the end); [`catalogue`] says
//! where each catalogue bug is caught.

use super::hunts;
use super::portfolio::{self, Scenario};
use super::runner::{run, Report, Run};
use crate::bugs::{Bug, Bugs};
use crate::core::Settings;
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::fmt::Write as _;

/// What a portfolio run found: each scenario run, with its report.
pub struct Outcome {
    pub runs: Vec<(Scenario, Report)>,
}

impl Outcome {
    /// The violated properties, by scenario.
    pub fn violations(&self) -> Vec<(&'static str, &'static str)> {
        self.runs
            .iter()
            .flat_map(|(s, r)| r.violated().into_iter().map(move |p| (s.name, p)))
            .collect()
    }

    /// The exit code: 1 if a property was violated; 2 if `gave_up_is_unknown`
    /// and a search was cut short; 0 otherwise.
    pub fn exit_code(&self, gave_up_is_unknown: bool) -> u8 {
        if !self.violations().is_empty() {
            1
        } else if gave_up_is_unknown && self.runs.iter().any(|(_, r)| !r.exhausted) {
            2
        } else {
            0
        }
    }
}

/// Runs each scenario with `bugs` switched on and `template`'s limits (timeout, threads,
/// stop at the first violation: then the portfolio stops too), printing each report as it
/// finishes, or, with `json`, one object at the end.
pub fn check_scenarios(
    scenarios: &[Scenario],
    bugs: Bugs,
    template: &Run,
    json_out: bool,
) -> Outcome {
    let settings = Settings::default();
    if !json_out {
        println!("raft-model check: the core as the nodes run it by default");
        println!("  {}", settings.describe());
        if bugs.any() {
            println!(
                "  bugs switched on: {}",
                bugs.iter().map(Bug::name).collect::<Vec<_>>().join(", ")
            );
        }
        println!(
            "  {} scenario(s), {} thread(s)",
            scenarios.len(),
            template.threads
        );
    }
    let mut runs = Vec::new();
    for scenario in scenarios {
        let mut scenario = scenario.clone();
        scenario.setup.bugs = bugs;
        if !json_out {
            println!("\n== {}: {}", scenario.name, scenario.covers);
            for line in scenario.setup.describe() {
                println!("   {line}");
            }
        }
        let report = run(&Run {
            setup: scenario.setup.clone(),
            strategy: scenario.strategy,
            depth: scenario.depth,
            ..template.clone()
        });
        if !json_out {
            print!("{}", report.render());
            println!(
                "   {:.1} M unique states/min",
                report.states_per_minute() / 1e6
            );
        }
        let stop = template.stop_at_first_violation && !report.violated().is_empty();
        runs.push((scenario, report));
        if stop {
            break;
        }
    }
    let outcome = Outcome { runs };
    if json_out {
        let scenarios: Vec<Json> = outcome
            .runs
            .iter()
            .map(|(s, r)| {
                let mut v = r.to_json();
                v["name"] = json!(s.name);
                v["covers"] = json!(s.covers);
                v["configuration"] = json!(s.setup.describe());
                v
            })
            .collect();
        let valid = if !outcome.violations().is_empty() {
            json!(false)
        } else if outcome.runs.iter().all(|(_, r)| r.exhausted) {
            json!(true)
        } else {
            json!("unknown")
        };
        let object = json!({
            "valid": valid,
            "configuration": {
                "pre_vote": settings.pre_vote,
                "check_quorum": settings.check_quorum,
                "max_batch": settings.max_batch,
                "max_inflight": settings.max_inflight,
                "words": settings.describe(),
            },
            "bugs": bugs.iter().map(Bug::name).collect::<Vec<_>>(),
            "scenarios": scenarios,
        });
        println!("{object:#}");
    } else {
        let total: f64 = outcome
            .runs
            .iter()
            .map(|(_, r)| r.elapsed.as_secs_f64())
            .sum();
        let states: usize = outcome.runs.iter().map(|(_, r)| r.unique_states).sum();
        println!(
            "\n{} scenario(s): {} unique states in {:.1}s; {}",
            outcome.runs.len(),
            states,
            total,
            match outcome.violations().as_slice() {
                [] => "no property violated".to_string(),
                v => format!(
                    "VIOLATED: {}",
                    v.iter()
                        .map(|(s, p)| format!("{p} in {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
    }
    outcome
}

/// One row of `raft-model bugs`.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogueRow {
    pub name: &'static str,
    pub what: &'static str,
    /// The default check's scenario that catches it, or why the model cannot express it.
    pub default_check: String,
    /// Whether `raft-model hunt NAME` exists, and the property it finds violated.
    pub hunt: Option<&'static str>,
    /// Where the lab catches it.
    pub lab: &'static str,
    /// Whether the simulator's seeded fault schedules catch it.
    pub simulator: &'static str,
}

/// The catalogue, with where each bug is caught.
pub fn catalogue() -> Vec<CatalogueRow> {
    Bug::ALL
        .into_iter()
        .map(|bug| CatalogueRow {
            name: bug.name(),
            what: bug.what(),
            default_check: match (portfolio::catches(bug), bug.below_the_model()) {
                (Some(scenario), _) => format!("caught, scenario {scenario}"),
                (None, Some(why)) => format!("not expressible: {why}"),
                (None, None) => {
                    "not caught within the portfolio's bounds: see its hunt".to_string()
                }
            },
            hunt: hunts::expected(bug),
            lab: bug.lab(),
            simulator: match bug {
                Bug::ConcurrentMembership => {
                    "not exercised: the simulator does not change membership"
                }
                _ => "caught (model/tests/simulator.rs, seeded fault schedules)",
            },
        })
        .collect()
}

/// `raft-model bugs` as text.
pub fn render_catalogue(rows: &[CatalogueRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let _ = writeln!(out, "{}: {}", r.name, r.what);
        let _ = writeln!(out, "    default check: {}", r.default_check);
        if let Some(p) = r.hunt {
            let _ = writeln!(out, "    hunt:          raft-model hunt {} ({p})", r.name);
        }
        let _ = writeln!(out, "    lab:           {}", r.lab);
        let _ = writeln!(out, "    simulator:     {}", r.simulator);
    }
    out
}
