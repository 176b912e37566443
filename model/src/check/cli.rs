//! Running the checker and reporting: what `raft-model check` and the tests call.
//!
//! [`run`] builds the model from a [`Setup`], runs BFS, DFS or a seeded simulation, and
//! returns a [`Report`]: unique states, states per second, the deepest depth reached, and for
//! each property whether it holds or was violated, with the path to the violation.
//! [`Report::print`] renders it, with a readable trace per violation: each step names the
//! actor and the message or timeout, then shows every server's role, term and log.

use super::properties::{self, violation};
use super::spec::Op;
use super::{ActorState, ClientReply, Msg, RaftModel, Setup, State, Timer};
use crate::core::{Body, EntryKind, Message};
use crate::kv::{Command, Operation, Value};
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
    /// The search ended by itself (not by timeout, state target or first violation).
    pub exhausted: bool,
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
                "exhausted (within bounds)"
            } else {
                "stopped early (timeout, target or first violation)"
            }
        );
        for p in &self.properties {
            let verdict = match (properties::is_safety(&p.expectation), &p.discovery) {
                (true, None) if self.exhausted => "holds",
                (true, None) => "not violated so far",
                (true, Some(_)) => "VIOLATED",
                (false, Some(_)) => "holds (example found)",
                (false, None) => "never seen",
            };
            let _ = writeln!(out, "  {:<22} {}", p.name, verdict);
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

    /// Prints [`render`](Self::render) to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
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
        || run.depth.is_some_and(|d| checker.max_depth() >= d)
        || matches!(run.strategy, Strategy::Simulation(_))
        || (run.stop_at_first_violation && any_violation);
    Report {
        setup: run.setup.clone(),
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        exhausted: !stopped,
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
                let entries: Vec<String> = (log.first_index()..=log.last_index())
                    .filter_map(|i| log.entry(i))
                    .map(|e| entry_label(e.term, &e.kind))
                    .collect();
                parts.push(format!(
                    "s{} {:?} t{} vote {:?} log [{}] commit {}",
                    index + 1,
                    raft.role(),
                    raft.term(),
                    raft.voted_for(),
                    entries.join(" "),
                    raft.commit_index()
                ));
            }
            ActorState::Client(client) => {
                let doing = match client.outstanding {
                    Some(out) => format!(
                        "waiting on #{} {} at server {}",
                        out.seq,
                        describe_op(&out.op),
                        out.target + 1
                    ),
                    None => "idle".to_string(),
                };
                parts.push(format!(
                    "c{} {doing} ({} started)",
                    index - setup.servers + 1,
                    client.started
                ));
            }
        }
    }
    parts.join(" | ")
}

/// The CI configuration: exhaustive BFS over [`Setup::default`] (3 servers, 1 client writing
/// then reading, terms up to 2, at most 4 messages in flight, logs of at most 4 entries). The
/// same as `raft-model check` with no options.
pub fn ci_run() -> Run {
    Run::bfs(Setup::default())
}
