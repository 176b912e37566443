//! Running the checker and reporting: what `raft-model check` and the tests call.
//!
//! [`run`] builds the model from a [`Setup`], runs BFS, DFS or a seeded simulation, and
//! returns a [`Report`]: unique states, states per second, the deepest depth reached, and for
//! each property whether it holds or was violated, with the path to the violation.
//! [`Report::render`] renders it, with a readable trace per violation: each step names the
//! actor and the message or timeout, then shows every server's role, term, vote, log and
//! commit index; [`Report::to_json`] gives the same as data. [`check_scenarios`] runs a
//! portfolio ([`super::portfolio`]) and [`catalogue`] says where each bug is caught.

use super::portfolio::{self, Scenario};
use super::properties::{self, violation};
use super::spec::Op;
use super::{hunts, ActorState, ClientReply, Msg, RaftModel, Setup, State, Timer};
use crate::bugs::{Bug, Bugs};
use crate::core::{Body, EntryKind, Message, Settings};
use crate::kv::{Command, Operation, Value};
use serde::Serialize;
use serde_json::{json, Value as Json};
use stateright::actor::{ActorModelAction, Id};
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

/// The model's action type.
pub type Action = ActorModelAction<Msg, Timer, ()>;

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

/// A readable trace: each step's actor and event, then the resulting cluster state.
pub fn trace(setup: &Setup, path: &Path<State, Action>) -> String {
    let mut out = String::new();
    let steps = path.clone().into_vec();
    if let Some((first, _)) = steps.first() {
        let _ = writeln!(out, "  initial: {}", summary(setup, first));
    }
    for (i, window) in steps.windows(2).enumerate() {
        let (_, Some(action)) = &window[0] else {
            continue;
        };
        let (next, _) = &window[1];
        let _ = writeln!(out, "{:>3}. {}", i + 1, describe_action(setup, action));
        let _ = writeln!(out, "     -> {}", summary(setup, next));
    }
    out
}

/// [`trace`] as data: the initial state, then per step the action and the state after it.
pub fn trace_data(setup: &Setup, path: &Path<State, Action>) -> Vec<Json> {
    let steps = path.clone().into_vec();
    let mut out = Vec::new();
    if let Some((first, _)) = steps.first() {
        out.push(json!({"step": 0, "action": "initial", "state": state_data(setup, first)}));
    }
    for (i, window) in steps.windows(2).enumerate() {
        let (_, Some(action)) = &window[0] else {
            continue;
        };
        out.push(json!({
            "step": i + 1,
            "action": describe_action(setup, action),
            "state": state_data(setup, &window[1].0),
        }));
    }
    out
}

/// Every server's role, term, vote, log and commit index, and every client's progress.
fn state_data(setup: &Setup, state: &State) -> Json {
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for (index, s) in state.actor_states.iter().enumerate() {
        let crashed = state.crashed.get(index).copied().unwrap_or(false);
        match &**s {
            ActorState::Server(server) => {
                let raft = server.replica.raft();
                let log = raft.log();
                let entries = log_labels(raft);
                servers.push(if crashed {
                    json!({
                        "id": index + 1,
                        "crashed": true,
                        "durable_term": server.durable.hard_state.term,
                        "durable_vote": server.durable.hard_state.voted_for,
                        "durable_entries": server.durable.entries.len(),
                    })
                } else {
                    json!({
                        "id": index + 1,
                        "role": format!("{:?}", raft.role()),
                        "term": raft.term(),
                        "vote": raft.voted_for(),
                        "snapshot": log.snapshot().meta.index,
                        "log": entries,
                        "commit": raft.commit_index(),
                    })
                });
            }
            ActorState::Client(_) => clients.push(json!(summary_client(setup, index, s))),
        }
    }
    json!({"servers": servers, "clients": clients})
}

fn actor_name(setup: &Setup, id: Id) -> String {
    let index = usize::from(id);
    if index < setup.servers {
        format!("server {}", index + 1)
    } else {
        format!("client {}", index - setup.servers + 1)
    }
}

fn describe_action(setup: &Setup, action: &Action) -> String {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => format!(
            "{} receives {} from {}",
            actor_name(setup, *dst),
            describe_msg(msg),
            actor_name(setup, *src)
        ),
        ActorModelAction::Drop(env) => format!(
            "network loses {} from {} to {}",
            describe_msg(&env.msg),
            actor_name(setup, env.src),
            actor_name(setup, env.dst)
        ),
        ActorModelAction::Timeout(id, timer) => {
            let what = match timer {
                Timer::Election => "election timeout",
                Timer::Heartbeat => "heartbeat timeout",
                Timer::Retry => "request timeout (retry at the next server)",
                Timer::Flush => "its durable Ready is sent, applied and advanced",
                Timer::Transfer => "the operator asks for a leadership transfer",
                Timer::Reconfigure => "the operator proposes the next membership change",
            };
            format!("{}: {what}", actor_name(setup, *id))
        }
        ActorModelAction::Crash(id) => format!("{} CRASHES", actor_name(setup, *id)),
        ActorModelAction::Recover(id) => {
            format!("{} restarts from its durable state", actor_name(setup, *id))
        }
        ActorModelAction::SelectRandom { actor, .. } => {
            format!("{}: random choice", actor_name(setup, *actor))
        }
    }
}

/// One message, briefly.
pub fn describe_msg(msg: &Msg) -> String {
    match msg {
        Msg::Raft(m) => describe_raft(m),
        Msg::Request { seq, op, retry } => format!(
            "request #{seq} {}{}",
            describe_op(op),
            if *retry { " (retry)" } else { "" }
        ),
        Msg::Reply { seq, reply } => match reply {
            ClientReply::Done(ret) => format!("reply #{seq} {ret:?}"),
            ClientReply::Retry(leader) => format!("reply #{seq} retry (leader {leader:?})"),
        },
    }
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::Write(v) => format!("write({v})"),
        Op::Cas { expected, new } => format!("cas({expected:?} -> {new})"),
        Op::Read => "read".to_string(),
    }
}

fn describe_raft(m: &Message<Command>) -> String {
    let name = m.body.name();
    let detail = match &m.body {
        Body::Vote {
            last_index,
            last_term,
            ..
        } => format!("last {last_index}@t{last_term}"),
        Body::VoteResponse { granted, .. } => {
            if *granted {
                "granted".to_string()
            } else {
                "refused".to_string()
            }
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
            ..
        } => format!(
            "prev {prev_index}@t{prev_term} [{}] commit {commit}",
            entries
                .iter()
                .map(|e| format!("{}:{}", e.index, entry_label(e.term, &e.kind)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Body::AppendResponse { index, success, .. } => {
            format!("{} index {index}", if *success { "ok" } else { "reject" })
        }
        Body::InstallSnapshot { snapshot, .. } => {
            format!("up to {}@t{}", snapshot.meta.index, snapshot.meta.term)
        }
        Body::TimeoutNow => String::new(),
    };
    format!("{name}(t{} {detail})", m.term)
}

fn entry_label(term: u64, kind: &EntryKind<Command>) -> String {
    let what = match kind {
        EntryKind::Noop => "noop".to_string(),
        EntryKind::Membership(c) => format!("{c:?}"),
        EntryKind::Command(c) => match &c.op {
            Operation::Write { value, .. } => format!("w{}", value_label(value)),
            Operation::Cas { expected, new, .. } => format!(
                "cas{}>{}",
                expected.as_ref().map_or("-".to_string(), value_label),
                value_label(new)
            ),
            Operation::Read { .. } => "r".to_string(),
            Operation::Append { suffix, .. } => format!("a{suffix}"),
        },
    };
    format!("t{term}/{what}")
}

fn value_label(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Str(s) => format!("{s:?}"),
    }
}

/// Each entry of a server's log (after its snapshot), as a short label.
fn log_labels(raft: &crate::core::Raft<Command>) -> Vec<String> {
    let log = raft.log();
    (log.first_index()..=log.last_index())
        .filter_map(|i| log.entry(i))
        .map(|e| entry_label(e.term, &e.kind))
        .collect()
}

/// Every server's role, term, vote, log and commit index; every client's progress.
pub fn summary(setup: &Setup, state: &State) -> String {
    let mut parts = Vec::new();
    for (index, s) in state.actor_states.iter().enumerate() {
        let crashed = state.crashed.get(index).copied().unwrap_or(false);
        match &**s {
            ActorState::Server(server) => {
                let raft = server.replica.raft();
                if crashed {
                    parts.push(format!(
                        "s{} CRASHED (durable t{} vote {:?}, {} entries)",
                        index + 1,
                        server.durable.hard_state.term,
                        server.durable.hard_state.voted_for,
                        server.durable.entries.len()
                    ));
                    continue;
                }
                let log = raft.log();
                let entries = log_labels(raft);
                let base = log.snapshot().meta.index;
                parts.push(format!(
                    "s{} {:?} t{} vote {} log [{}{}] commit {}",
                    index + 1,
                    raft.role(),
                    raft.term(),
                    raft.voted_for().map_or("-".to_string(), |v| v.to_string()),
                    if base > 0 {
                        format!("snapshot@{base} ")
                    } else {
                        String::new()
                    },
                    entries.join(" "),
                    raft.commit_index()
                ));
            }
            ActorState::Client(_) => parts.push(summary_client(setup, index, s)),
        }
    }
    parts.join(" | ")
}

fn summary_client(setup: &Setup, index: usize, state: &ActorState) -> String {
    let ActorState::Client(client) = state else {
        return String::new();
    };
    let doing = match client.outstanding {
        Some(out) => format!(
            "waiting on #{} {} at server {}",
            out.seq,
            describe_op(&out.op),
            out.target + 1
        ),
        None => "idle".to_string(),
    };
    format!(
        "c{} {doing} ({} started)",
        index - setup.servers + 1,
        client.started
    )
}

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

    /// The contract's exit code: 1 if a property was violated; 2 if `gave_up_is_unknown`
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
