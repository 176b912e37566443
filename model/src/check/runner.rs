//! Running the stateright checker on one configuration: [`run`] builds the model from a
//! [`Setup`], runs BFS, DFS or a seeded simulation, and returns a [`Report`]: unique states,
//! states per second, the deepest depth reached, and for each property whether it holds or
//! was violated, with the path to the violation. [`Report::render`] renders it with a readable
//! trace per violation ([`super::trace`]); [`Report::to_json`] gives the same as data.

use super::properties::{self, violation};
use super::trace::{trace, trace_data};
use super::{Action, RaftModel, Setup, State};
use serde_json::{json, Value as Json};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, UniformChooser};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Bfs,
    Dfs,
    /// Random walks from this seed (needs a timeout or a state target to end).
    Simulation(u64),
}

/// One checker run.
#[derive(Clone, Debug)]
pub struct Run {
    pub setup: Setup,
    pub strategy: Strategy,
    /// Stop exploring paths deeper than this.
    pub depth: Option<usize>,
    pub timeout: Option<Duration>,
    /// Stop after this many states.
    pub target_states: Option<usize>,
    pub threads: usize,
    /// Stop at the first violated safety property (for bug hunting).
    pub stop_at_first_violation: bool,
}

impl Run {
    /// A single-threaded BFS run of `setup`.
    pub fn bfs(setup: Setup) -> Self {
        Run {
            setup,
            strategy: Strategy::Bfs,
            depth: None,
            timeout: None,
            target_states: None,
            threads: 1,
            stop_at_first_violation: false,
        }
    }
}

/// One property's result.
pub struct PropertyResult {
    pub name: &'static str,
    pub expectation: Expectation,
    /// For an "always" property: the path to a violation; for "sometimes": an example.
    pub discovery: Option<Path<State, Action>>,
}

impl PropertyResult {
    /// Whether this is a safety property with a counterexample.
    pub fn violated(&self) -> bool {
        properties::is_safety(&self.expectation) && self.discovery.is_some()
    }
}

/// What a run found.
pub struct Report {
    pub setup: Setup,
    pub unique_states: usize,
    pub total_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// The search ended by itself (not by timeout, state target or first violation): every
    /// state within the bounds (the depth bound included) was explored.
    pub exhausted: bool,
    /// The depth bound, if the run had one.
    pub depth_bound: Option<usize>,
    pub properties: Vec<PropertyResult>,
}

impl Report {
    /// Unique states per second.
    pub fn states_per_second(&self) -> f64 {
        self.unique_states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The names of the violated safety properties.
    pub fn violated(&self) -> Vec<&'static str> {
        self.properties
            .iter()
            .filter(|p| p.violated())
            .map(|p| p.name)
            .collect()
    }

    /// A "sometimes" property never seen although the search was exhaustive.
    pub fn never_seen(&self) -> Vec<&'static str> {
        self.properties
            .iter()
            .filter(|p| !properties::is_safety(&p.expectation) && p.discovery.is_none())
            .map(|p| p.name)
            .collect()
    }

    /// The whole report, traces included.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "unique states: {}  (total {}; {:.0} unique states/s; {:.2}s)",
            self.unique_states,
            self.total_states,
            self.states_per_second(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "max depth: {}  search {}",
            self.max_depth,
            if self.exhausted {
                match self.depth_bound {
                    Some(d) => format!("exhausted (within bounds, depth <= {d})"),
                    None => "exhausted (within bounds)".to_string(),
                }
            } else {
                "stopped early (timeout, target or first violation)".to_string()
            }
        );
        for p in &self.properties {
            let _ = writeln!(out, "  {:<34} {}", p.name, self.verdict(p));
        }
        for p in self.properties.iter().filter(|p| p.violated()) {
            let Some(path) = &p.discovery else { continue };
            let _ = writeln!(out, "\n=== {} violated ===", p.name);
            if let Some(why) = violation(path.last_state(), p.name) {
                let _ = writeln!(out, "{why}");
            }
            out.push_str(&trace(&self.setup, path));
        }
        out
    }

    /// Unique states per minute.
    pub fn states_per_minute(&self) -> f64 {
        self.states_per_second() * 60.0
    }

    /// One property's verdict in words.
    fn verdict(&self, p: &PropertyResult) -> &'static str {
        match (properties::is_safety(&p.expectation), &p.discovery) {
            (true, None) if self.exhausted => "holds",
            (true, None) => "not violated so far",
            (true, Some(_)) => "VIOLATED",
            (false, Some(_)) => "holds (example found)",
            (false, None) => "never seen",
        }
    }

    /// The report as data: states, depth, time, each property's verdict, and each
    /// violation's reason and trace.
    pub fn to_json(&self) -> Json {
        let verdicts: serde_json::Map<String, Json> = self
            .properties
            .iter()
            .map(|p| {
                let v = match self.verdict(p) {
                    "VIOLATED" => "violated",
                    "holds" | "holds (example found)" => "holds",
                    "never seen" => "never seen",
                    _ => "unknown",
                };
                (p.name.to_string(), json!(v))
            })
            .collect();
        let violations: Vec<Json> = self
            .properties
            .iter()
            .filter(|p| p.violated())
            .filter_map(|p| {
                let path = p.discovery.as_ref()?;
                Some(json!({
                    "property": p.name,
                    "reason": violation(path.last_state(), p.name),
                    "trace": trace_data(&self.setup, path),
                }))
            })
            .collect();
        json!({
            "unique_states": self.unique_states,
            "total_states": self.total_states,
            "depth": self.max_depth,
            "exhausted": self.exhausted,
            "depth_bound": self.depth_bound,
            "seconds": self.elapsed.as_secs_f64(),
            "states_per_minute": self.states_per_minute().round(),
            "properties": verdicts,
            "violations": violations,
        })
    }
}

/// Runs the checker.
pub fn run(run: &Run) -> Report {
    let model = run.setup.clone().into_model();
    let mut builder = model.checker().threads(run.threads.max(1));
    if let Some(depth) = run.depth {
        builder = builder.target_max_depth(depth);
    }
    if let Some(timeout) = run.timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(target) = run.target_states {
        builder = builder.target_state_count(target);
    }
    if run.stop_at_first_violation {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let start = Instant::now();
    match run.strategy {
        Strategy::Bfs => report(run, builder.spawn_bfs().join(), start),
        Strategy::Dfs => report(run, builder.spawn_dfs().join(), start),
        Strategy::Simulation(seed) => report(
            run,
            builder.spawn_simulation(seed, UniformChooser).join(),
            start,
        ),
    }
}

fn report(run: &Run, checker: impl Checker<RaftModel>, start: Instant) -> Report {
    let elapsed = start.elapsed();
    let mut discoveries = checker.discoveries();
    let properties: Vec<PropertyResult> = checker
        .model()
        .properties()
        .into_iter()
        .map(|p| PropertyResult {
            name: p.name,
            discovery: discoveries.remove(p.name),
            expectation: p.expectation,
        })
        .collect();
    let any_violation = properties.iter().any(|p| p.violated());
    let stopped = run.timeout.is_some_and(|t| elapsed >= t)
        || run.target_states.is_some()
        || matches!(run.strategy, Strategy::Simulation(_))
        || (run.stop_at_first_violation && any_violation);
    Report {
        setup: run.setup.clone(),
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        exhausted: !stopped,
        depth_bound: run.depth,
        properties,
    }
}
