//! Counterexamples a person can read: each step names the actor and the message or timeout,
//! then every server's role, term, vote, log (with its snapshot) and commit index, and each
//! client's outstanding operation; [`trace_data`] gives the same as JSON.

use super::spec::Op;
use super::{Action, ActorState, ClientReply, Msg, Setup, State, Timer};
use crate::core::{Body, EntryKind, Message};
use crate::kv::{Command, Operation, Value};
use serde_json::{json, Value as Json};
use stateright::actor::{ActorModelAction, Id};
use stateright::Path;
use std::fmt::Write as _;

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
            Operation::Register => "reg".to_string(),
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
