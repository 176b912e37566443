//! Simulated client processes: sequential, leader-seeking, retrying, and honest about what
//! they know when they record an outcome.
//!
//! Each process has at most one operation outstanding. It sends the request to the server it
//! believes is leader, follows `NotLeader` hints, and when an attempt times out sends the SAME
//! request (same client id and sequence number, so the server's session can deduplicate it)
//! to another server. What it records follows Jepsen's semantics:
//!
//! * `ok` when a `Done` reply arrives (from any attempt of the operation); a cas whose
//!   expected value did not match and an append to an integer are `fail`s (no effect);
//! * `fail` only when the operation certainly had no effect: every attempt was answered with
//!   `NotLeader`, `Refused` or `Dropped` (none of them can still commit), or it is a read;
//! * `info` when it gives up while some attempt might still take effect. The process then
//!   continues as a new process with a new client id, as in Jepsen.
//!
//! A process registers a session (a log entry, not recorded in the history) before its first
//! operation and after every new identity. An operation answered "session expired" was not
//! applied: it is a `fail` unless an earlier attempt may still have been (then `info`), and
//! the process registers again.

use super::history::History;
use super::rng::Rng;
use super::workload::{value_json, GenOp, Workload};
use crate::core::NodeId;
use crate::kv::{Command, Operation, Outcome};
use crate::replica::Reply;
use checker::history::EventType;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Client timing (milliseconds) and patience.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTiming {
    /// How long an attempt waits for a reply before retrying elsewhere.
    pub attempt_timeout: u64,
    /// Most attempts of one operation (hint-following included).
    pub max_attempts: u32,
    /// Pause between operations, uniform in `0..=think`.
    pub think: u64,
}

impl Default for ClientTiming {
    fn default() -> Self {
        ClientTiming {
            attempt_timeout: 120,
            max_attempts: 5,
            think: 10,
        }
    }
}

/// Something the clients ask the simulator to do.
#[derive(Clone, Debug)]
pub enum ClientAction {
    /// Send a request to a server.
    Send {
        node: NodeId,
        attempt: u64,
        command: Command,
    },
    /// Call [`Clients::wake`] for this process at this time.
    Wake { process: usize, at: u64 },
    /// Call [`Clients::timeout`] for this attempt at this time.
    Timeout {
        process: usize,
        attempt: u64,
        at: u64,
    },
}

#[derive(Clone, Debug)]
struct Attempt {
    node: NodeId,
    /// Might still take effect (no reply yet that rules it out).
    live: bool,
}

#[derive(Clone, Debug)]
struct Current {
    /// The operation; none for a session registration.
    gen: Option<GenOp>,
    seq: u64,
    attempts: BTreeMap<u64, Attempt>,
    /// The newest attempt (only its timeout matters).
    newest: u64,
    /// A retry is scheduled (after a refusal).
    retry_scheduled: bool,
}

#[derive(Clone, Debug)]
struct Process {
    /// The history's process id.
    process: u64,
    /// The session id the servers gave it, once registered.
    session: Option<u64>,
    seq: u64,
    leader: NodeId,
    current: Option<Current>,
}

/// Every client process, the workload they share, and the history they record.
#[derive(Debug)]
pub struct Clients {
    procs: Vec<Process>,
    nodes: Vec<NodeId>,
    timing: ClientTiming,
    workload: Workload,
    rng: Rng,
    next_process: u64,
    next_attempt: u64,
    /// Attempt id -> process slot, for attempts whose replies still matter.
    owners: BTreeMap<u64, usize>,
    stopped: bool,
    pub history: History,
    /// Ops that completed `ok` after this time count as "after heal".
    pub healed_at: Option<u64>,
    pub ok_after_heal: u64,
}

impl Clients {
    pub fn new(count: usize, nodes: Vec<NodeId>, timing: ClientTiming, mut rng: Rng) -> Self {
        let workload = Workload::new(&mut rng);
        let mut clients = Clients {
            procs: Vec::new(),
            nodes,
            timing,
            workload,
            rng,
            next_process: 0,
            next_attempt: 1,
            owners: BTreeMap::new(),
            stopped: false,
            history: History::default(),
            healed_at: None,
            ok_after_heal: 0,
        };
        for _ in 0..count {
            let leader = clients.random_node(None);
            let process = clients.fresh_identity();
            clients.procs.push(Process {
                process,
                session: None,
                seq: 0,
                leader,
                current: None,
            });
        }
        clients
    }

    /// Wake-ups that start every process.
    pub fn start(&mut self, now: u64) -> Vec<ClientAction> {
        (0..self.procs.len())
            .map(|process| ClientAction::Wake {
                process,
                at: now + self.rng.range(0, self.timing.think),
            })
            .collect()
    }

    /// No new operations from now on (outstanding ones still complete).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether no process has an operation outstanding.
    pub fn idle(&self) -> bool {
        self.procs.iter().all(|p| p.current.is_none())
    }

    pub fn keys(&self) -> u64 {
        self.workload.keys()
    }

    fn fresh_identity(&mut self) -> u64 {
        self.next_process += 1;
        self.next_process - 1
    }

    fn random_node(&mut self, except: Option<NodeId>) -> NodeId {
        let candidates: Vec<NodeId> = self
            .nodes
            .iter()
            .copied()
            .filter(|&n| Some(n) != except || self.nodes.len() == 1)
            .collect();
        self.rng.pick(&candidates).copied().unwrap_or(1)
    }

    /// A process's scheduled wake-up: start its next operation, or send a scheduled retry.
    pub fn wake(&mut self, slot: usize, now: u64) -> Vec<ClientAction> {
        let mut out = Vec::new();
        let Some(proc_) = self.procs.get(slot) else {
            return out;
        };
        match &proc_.current {
            None => {
                if self.stopped {
                    return out;
                }
                if proc_.session.is_none() {
                    if let Some(p) = self.procs.get_mut(slot) {
                        p.current = Some(Current {
                            gen: None,
                            seq: 0,
                            attempts: BTreeMap::new(),
                            newest: 0,
                            retry_scheduled: false,
                        });
                    }
                    self.send_attempt(slot, now, &mut out);
                    return out;
                }
                let gen = self.workload.next(&mut self.rng);
                let Some(p) = self.procs.get_mut(slot) else {
                    return out;
                };
                p.seq += 1;
                let seq = p.seq;
                let process = p.process;
                self.history.client(
                    now,
                    process,
                    EventType::Invoke,
                    gen.f,
                    &gen.key,
                    gen.value.clone(),
                );
                if let Some(p) = self.procs.get_mut(slot) {
                    p.current = Some(Current {
                        gen: Some(gen),
                        seq,
                        attempts: BTreeMap::new(),
                        newest: 0,
                        retry_scheduled: false,
                    });
                }
                self.send_attempt(slot, now, &mut out);
            }
            Some(current) if current.retry_scheduled => {
                if let Some(c) = self.procs.get_mut(slot).and_then(|p| p.current.as_mut()) {
                    c.retry_scheduled = false;
                }
                self.send_attempt(slot, now, &mut out);
            }
            Some(_) => {}
        }
        out
    }

    /// Sends a new attempt of the process's current operation to the server it believes is
    /// leader, or gives up if it has tried enough.
    fn send_attempt(&mut self, slot: usize, now: u64, out: &mut Vec<ClientAction>) {
        let max = self.timing.max_attempts as usize;
        let Some(p) = self.procs.get_mut(slot) else {
            return;
        };
        let Some(current) = p.current.as_mut() else {
            return;
        };
        if current.attempts.len() >= max {
            self.give_up(slot, now, out);
            return;
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let node = p.leader;
        current
            .attempts
            .insert(attempt, Attempt { node, live: true });
        current.newest = attempt;
        let (client, op) = match &current.gen {
            Some(gen) => (p.session.unwrap_or(0), gen.op.clone()),
            // The simulated clients are all in namespace 0.
            None => (0, Operation::Register),
        };
        let command = Command {
            client,
            seq: current.seq,
            op,
            // The server stamps its own time.
            time_ms: 0,
        };
        self.owners.insert(attempt, slot);
        out.push(ClientAction::Send {
            node,
            attempt,
            command,
        });
        out.push(ClientAction::Timeout {
            process: slot,
            attempt,
            at: now + self.timing.attempt_timeout,
        });
    }

    /// An attempt's timer fired.
    pub fn timeout(&mut self, slot: usize, attempt: u64, now: u64) -> Vec<ClientAction> {
        let mut out = Vec::new();
        let Some(p) = self.procs.get(slot) else {
            return out;
        };
        let Some(current) = &p.current else {
            return out;
        };
        if current.newest != attempt || current.retry_scheduled {
            return out;
        }
        let failed_node = current.attempts.get(&attempt).map(|a| a.node);
        let next = self.random_node(failed_node);
        if let Some(p) = self.procs.get_mut(slot) {
            p.leader = next;
        }
        self.send_attempt(slot, now, &mut out);
        out
    }

    /// A server's reply to an attempt arrived.
    pub fn reply(&mut self, attempt: u64, reply: Reply, now: u64) -> Vec<ClientAction> {
        let mut out = Vec::new();
        let Some(&slot) = self.owners.get(&attempt) else {
            return out;
        };
        let Some(current) = self.procs.get(slot).and_then(|p| p.current.as_ref()) else {
            return out;
        };
        let Some(sent) = current.attempts.get(&attempt) else {
            return out;
        };
        let node = sent.node;
        let is_newest = current.newest == attempt;
        // Answered: this attempt can no longer take effect later.
        if let Some(a) = self
            .procs
            .get_mut(slot)
            .and_then(|p| p.current.as_mut())
            .and_then(|c| c.attempts.get_mut(&attempt))
        {
            a.live = false;
        }
        let hint = match reply {
            Reply::Done(outcome) => {
                self.complete(slot, outcome, now);
                self.schedule_next(slot, now, &mut out);
                return out;
            }
            Reply::NotLeader { leader } => leader,
            // `Committed` answers only an operator's membership change, never a client.
            Reply::Refused(_) | Reply::Dropped | Reply::Committed(_) => None,
        };
        // This attempt certainly had no effect.
        if !is_newest {
            return out;
        }
        let next = match hint {
            Some(leader) if leader != node => leader,
            _ => self.random_node(Some(node)),
        };
        // Back off longer when nobody knows the leader (an election is on).
        let backoff = if hint.is_some() {
            self.rng.range(1, 5)
        } else {
            self.rng.range(10, 40)
        };
        if let Some(p) = self.procs.get_mut(slot) {
            p.leader = next;
            if let Some(c) = p.current.as_mut() {
                c.retry_scheduled = true;
            }
        }
        out.push(ClientAction::Wake {
            process: slot,
            at: now + backoff,
        });
        out
    }

    /// Records the operation's completion from a server's outcome (the answered attempt is
    /// already marked as no longer live).
    fn complete(&mut self, slot: usize, outcome: Outcome, now: u64) {
        let Some(p) = self.procs.get_mut(slot) else {
            return;
        };
        let Some(current) = p.current.take() else {
            return;
        };
        for attempt in current.attempts.keys() {
            self.owners.remove(attempt);
        }
        let Some(gen) = current.gen else {
            // A registration: not an operation of the history.
            if let Outcome::Registered { session } = outcome {
                p.session = Some(session);
                p.seq = 0;
            }
            return;
        };
        let expired = outcome == Outcome::SessionExpired;
        // Another attempt of this operation might still be applied.
        let other_live = current.attempts.values().any(|a| a.live);
        let (kind, value) = match (&gen.op, outcome) {
            (Operation::Read { .. }, Outcome::Value(v)) => (EventType::Ok, value_json(&v)),
            // A read has no effect: whatever else it got, it is a `fail`.
            (Operation::Read { .. }, _) => (EventType::Fail, Json::Null),
            (Operation::Write { .. }, Outcome::Written) => (EventType::Ok, gen.value.clone()),
            (Operation::Cas { .. }, Outcome::Written) => (EventType::Ok, gen.value.clone()),
            (Operation::Cas { .. }, Outcome::CasMismatch { .. }) => {
                (EventType::Fail, gen.value.clone())
            }
            (Operation::Append { .. }, Outcome::Appended { .. }) => {
                (EventType::Ok, gen.value.clone())
            }
            (Operation::Append { .. }, Outcome::NotAString) => (EventType::Fail, gen.value.clone()),
            (_, Outcome::TooLarge { .. }) => (EventType::Fail, gen.value.clone()),
            // Not applied, and no later copy will be: certain unless an earlier attempt
            // may still be.
            (_, Outcome::SessionExpired) if !other_live => (EventType::Fail, gen.value.clone()),
            // Anything else (e.g. `Stale`) says nothing certain about this operation.
            _ => (EventType::Info, gen.value.clone()),
        };
        let process = p.process;
        if expired {
            p.session = None;
        }
        if kind == EventType::Info {
            self.workload.indeterminate(&gen.key);
            self.new_identity(slot);
        }
        if kind == EventType::Ok && self.healed_at.is_some_and(|t| now >= t) {
            self.ok_after_heal += 1;
        }
        self.history
            .client(now, process, kind, gen.f, &gen.key, value);
    }

    /// After an `info`: a new process id, and a new session to register (the old one may
    /// still have the operation in flight).
    fn new_identity(&mut self, slot: usize) {
        let process = self.fresh_identity();
        if let Some(p) = self.procs.get_mut(slot) {
            p.process = process;
            p.session = None;
            p.seq = 0;
        }
    }

    /// Gives up on the current operation: `fail` if it certainly had no effect, else `info`.
    /// A registration that gives up is tried again (one that took effect after all leaves a
    /// session nobody uses, which expires).
    fn give_up(&mut self, slot: usize, now: u64, out: &mut Vec<ClientAction>) {
        let Some(p) = self.procs.get_mut(slot) else {
            return;
        };
        let Some(current) = p.current.take() else {
            return;
        };
        for attempt in current.attempts.keys() {
            self.owners.remove(attempt);
        }
        let Some(gen) = current.gen else {
            self.schedule_next(slot, now, out);
            return;
        };
        let read = matches!(gen.op, Operation::Read { .. });
        let certain = read || current.attempts.values().all(|a| !a.live);
        let process = p.process;
        if certain {
            let value = if read { Json::Null } else { gen.value };
            self.history
                .client(now, process, EventType::Fail, gen.f, &gen.key, value);
        } else {
            self.workload.indeterminate(&gen.key);
            self.history
                .client(now, process, EventType::Info, gen.f, &gen.key, gen.value);
            self.new_identity(slot);
        }
        self.schedule_next(slot, now, out);
    }

    fn schedule_next(&mut self, slot: usize, now: u64, out: &mut Vec<ClientAction>) {
        if !self.stopped {
            out.push(ClientAction::Wake {
                process: slot,
                at: now + self.rng.range(0, self.timing.think),
            });
        }
    }
}
