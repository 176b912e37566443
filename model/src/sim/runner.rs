//! The event loop: one queue of timed events, processed in (time, sequence) order, with the
//! safety properties checked after each one.
//!
//! A server's life: `Tick`s drive its core; `Deliver` steps a message into it; after each
//! input the runner asks for a Ready. If the Ready has something to make durable, it is in
//! flight until its `Persisted` event (the simulated fsync): only then is it written to the
//! server's [`Storage`], its messages released to the network, its committed entries applied
//! (`advance`), and its client replies sent. A `Crash` drops the server's memory, including
//! a Ready in flight; a `Restart` rebuilds it with `Replica::restore` from its storage.
//!
//! A `Pause` freezes a server as SIGSTOP does: its ticks stop (no tick is owed for the time it
//! missed), and the messages, client requests and fsync completions that reach it wait. On
//! `Resume` it gets one tick and the waiting inputs, in the order the node's runtime would
//! take them: each input channel (peers, clients, storage) in its own order, the channels
//! interleaved at random (`tokio::select!` picks a ready branch at random).
//!
//! Under the `skip-fsync` and `periodic-fsync` bugs a Ready that only appends entries is
//! acknowledged without an fsync delay (the node writes them and does not sync); the
//! server's [`Storage`] keeps them unsynced, forever or until the log is synced once the
//! oldest unsynced append has waited [`PERIODIC_SYNC_MS`] (checked at each tick). A crash
//! loses what is unsynced — under `skip-dir-fsync`, everything (see [`Storage`]).
//!
//! A Ready's early messages (a leader's replication, see [`crate::core::Ready`]) are sent
//! when the Ready is taken, before its fsync delay, as the node sends them: a crash during
//! the delay loses the leader's writes but not those messages.
//!
//! Under the `send-before-persist` bug all of a Ready's messages are sent when it is taken,
//! before its fsync delay: a crash during the delay loses the writes (the Ready in flight) that
//! the messages already promised, e.g. a granted vote. The targeted crash after a granted vote
//! follows the vote's send, so it then strikes inside that window.

use super::clients::{ClientAction, Clients};
use super::invariants::Invariants;
use super::liveness::{Liveness, ReadProbe};
use super::nemesis::{ClusterView, Fault, Nemesis};
use super::network::Network;
use super::rng::{mix, Rng};
use super::storage::{Storage, PERIODIC_SYNC_MS};
use super::{SimConfig, SimReport, Stats, Violation};
use crate::bugs::Bug;
use crate::core::{Body, Campaign, Config, Entry, Index, Message, NodeId, Raft, Role, Term};
use crate::kv::{Command, KvConfig, Operation, Outcome};
use crate::replica::{Pending, Persist, Replica, Reply};
use checker::history::Format;
use checker::{CheckOptions, ModelKind, Verdict};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Something that happens at a point of simulated time.
#[derive(Debug)]
enum Event {
    Tick {
        node: usize,
        epoch: u64,
    },
    Deliver(Message<Command>),
    Persisted {
        node: usize,
        epoch: u64,
    },
    Request {
        node: usize,
        attempt: u64,
        command: Command,
    },
    Reply {
        attempt: u64,
        reply: Reply,
    },
    ClientWake {
        process: usize,
    },
    ClientTimeout {
        process: usize,
        attempt: u64,
    },
    Nemesis,
    Heal {
        generation: u64,
    },
    Crash {
        node: usize,
        down: u64,
        why: &'static str,
    },
    Restart {
        node: usize,
    },
    Resume {
        node: usize,
        epoch: u64,
    },
    EndFaults,
    StopClients,
}

/// A Ready handed out and not yet durable.
struct InFlight {
    persist: Persist,
    pending: Pending,
    /// The entries this Ready hands to the state machine (read from the log at `ready()`).
    applied: Vec<Entry<Command>>,
}

struct Server {
    id: NodeId,
    /// `None` while crashed.
    replica: Option<Replica>,
    storage: Storage,
    inflight: Option<InFlight>,
    /// Bumped on every crash and restart: events of an earlier life are ignored.
    epoch: u64,
    incarnation: u64,
    /// Milliseconds per tick (servers' clocks run at slightly different rates).
    tick: u64,
    /// The last term this server was seen leading, and its commit index then (for the
    /// targeted leader crashes).
    led: Option<(Term, Index)>,
    /// The commit index when it was last elected.
    led_from: Index,
    /// Crash when the next Ready is durable, before any of its messages leave: for how
    /// long, and why.
    doomed: Option<(u64, &'static str)>,
    /// Paused (SIGSTOP): inputs wait in `held`.
    paused: bool,
    /// Inputs that reached the server while it was paused, in arrival order.
    held: Vec<Event>,
    /// A tick came due while it was paused (it gets one tick on resuming, not all it missed).
    tick_held: bool,
    /// `periodic-fsync`: when the oldest log append not yet synced was written.
    unsynced_since: Option<u64>,
}

struct World {
    config: SimConfig,
    now: u64,
    step: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    servers: Vec<Server>,
    ids: Vec<NodeId>,
    net: Network,
    net_rng: Rng,
    fault_rng: Rng,
    persist_rng: Rng,
    nemesis: Nemesis,
    clients: Clients,
    invariants: Invariants,
    liveness: Liveness,
    /// When the liveness properties are next checked (every few simulated milliseconds).
    next_liveness_check: u64,
    stats: Stats,
    violation: Option<Violation>,
    trace: VecDeque<String>,
    faults_over: bool,
    stopping: bool,
    partition_generation: u64,
}

/// Runs one simulation (see [`super::run`]).
pub fn run(config: &SimConfig) -> SimReport {
    let mut world = World::new(config.clone());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run_loop()));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".to_string());
        world.fail("Core Assertion", format!("the core panicked: {message}"));
    }
    world.report()
}

impl World {
    fn new(config: SimConfig) -> Self {
        let mut root = Rng::new(config.seed);
        let mut setup = root.fork(1);
        let net_rng = root.fork(2);
        let fault_rng = root.fork(3);
        let nemesis_rng = root.fork(4);
        let client_rng = root.fork(5);
        let persist_rng = root.fork(6);
        let n = config.nodes.max(1);
        let ids: Vec<NodeId> = (1..=n as NodeId).collect();
        let servers = ids
            .iter()
            .map(|&id| Server {
                id,
                replica: None,
                storage: Storage::new(ids.iter().copied()).with_bugs(config.bugs),
                inflight: None,
                epoch: 0,
                incarnation: 0,
                led: None,
                led_from: 0,
                doomed: None,
                paused: false,
                held: Vec::new(),
                tick_held: false,
                unsynced_since: None,
                tick: config.tick.max(2) + setup.range(0, 2) - 1,
            })
            .collect();
        World {
            net: Network::new(config.network.clone()),
            nemesis: Nemesis::new(config.nemesis.clone(), nemesis_rng),
            clients: Clients::new(
                config.clients,
                ids.clone(),
                config.timing.clone(),
                client_rng,
            ),
            config,
            now: 0,
            step: 0,
            seq: 0,
            queue: BTreeMap::new(),
            servers,
            ids,
            net_rng,
            fault_rng,
            persist_rng,
            invariants: Invariants::new(),
            liveness: Liveness::new(),
            next_liveness_check: 0,
            stats: Stats::default(),
            violation: None,
            trace: VecDeque::new(),
            faults_over: false,
            stopping: false,
            partition_generation: 0,
        }
    }

    fn core_config(&self, node: usize) -> Config {
        let server = &self.servers[node];
        let mut c = Config::new(server.id);
        c.seed = mix(self.config.seed ^ mix(server.id) ^ mix(server.incarnation << 32));
        c.bugs = self.config.bugs;
        c.max_batch = self.config.max_batch.max(1);
        c.max_inflight = self.config.max_inflight.max(1);
        c.pre_vote = self.config.pre_vote;
        c.check_quorum = self.config.check_quorum;
        c
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn fail(&mut self, property: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                property,
                seed: self.config.seed,
                step: self.step,
                time: self.now,
                detail,
            });
        }
    }

    fn run_loop(&mut self) {
        for node in 0..self.servers.len() {
            let replica = Replica::new(
                self.core_config(node),
                self.ids.iter().copied(),
                self.config.compact_every,
            )
            .with_kv_config(kv_config(&self.config));
            self.servers[node].replica = Some(replica);
            self.invariants.restarted(self.servers[node].id);
            let phase = self.fault_rng.range(0, self.servers[node].tick);
            self.schedule(phase, Event::Tick { node, epoch: 0 });
        }
        let starts = self.clients.start(0);
        self.client_actions(starts);
        if self.nemesis.enabled() {
            let first = self.nemesis.next_interval();
            self.schedule(first, Event::Nemesis);
        }
        let duration = self.config.duration;
        let stop = duration + self.config.quiet;
        // The workload may run up to three quiet periods when nothing succeeds at first.
        let end = duration + 3 * self.config.quiet.max(1) + self.config.drain;
        self.schedule(duration, Event::EndFaults);
        self.schedule(stop, Event::StopClients);

        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > end || self.step >= self.config.max_events {
                break;
            }
            self.now = at;
            self.step += 1;
            if self.config.trace > 0 {
                self.record_trace(&event);
            }
            self.handle(event);
            if self.violation.is_none() {
                self.check_invariants();
            }
            if self.violation.is_none()
                && self.liveness_on()
                && self.faults_over
                && self.now >= self.next_liveness_check
            {
                self.next_liveness_check = self.now + 5;
                self.check_liveness();
            }

            if self.violation.is_some() || (self.stopping && self.clients.idle()) {
                break;
            }
        }
    }

    fn record_trace(&mut self, event: &Event) {
        let line = match event {
            Event::Deliver(m) => format!(
                "{:>6}ms #{} deliver {} {}->{} term {}: {:?}",
                self.now,
                self.step,
                m.body.name(),
                m.from,
                m.to,
                m.term,
                m.body
            ),
            other => format!("{:>6}ms #{} {:?}", self.now, self.step, other),
        };
        if self.trace.len() >= self.config.trace {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn check_invariants(&mut self) {
        let rafts: Vec<&Raft<Command>> = self
            .servers
            .iter()
            .filter_map(|s| s.replica.as_ref().map(|r| r.raft()))
            .collect();
        if let Err((property, detail)) = self.invariants.check(&rafts) {
            self.fail(property, detail);
        }
    }

    /// The liveness properties are the correct core's: a run with a bug switched on is
    /// about whether the safety properties catch it.
    fn liveness_on(&self) -> bool {
        self.config.bugs == crate::bugs::Bugs::none()
    }

    fn check_liveness(&mut self) {
        let leader = self.leader().is_some();
        let servers = &self.servers;
        let waiting = |node: usize, id: u64| {
            servers[node]
                .replica
                .as_ref()
                .is_some_and(|r| r.waiting(id))
        };
        if let Err((property, detail)) = self.liveness.check_progress(self.now, leader, waiting) {
            self.fail(property, detail);
        }
    }

    /// The server an input event is for, if it is one (ticks, messages, requests, fsyncs).
    fn input_for(&self, event: &Event) -> Option<usize> {
        match event {
            Event::Tick { node, .. }
            | Event::Persisted { node, .. }
            | Event::Request { node, .. } => Some(*node),
            Event::Deliver(msg) => Some((msg.to as usize).wrapping_sub(1)),
            _ => None,
        }
    }

    fn handle(&mut self, event: Event) {
        if let Some(node) = self.input_for(&event) {
            if let Some(server) = self.servers.get_mut(node).filter(|s| s.paused) {
                match event {
                    Event::Tick { epoch, .. } if epoch == server.epoch => server.tick_held = true,
                    Event::Tick { .. } => {}
                    other => server.held.push(other),
                }
                return;
            }
        }
        match event {
            Event::Tick { node, epoch } => {
                let server = &mut self.servers[node];
                if server.epoch != epoch {
                    return;
                }
                let Some(replica) = server.replica.as_mut() else {
                    return;
                };
                replica.tick();
                if server
                    .unsynced_since
                    .is_some_and(|since| self.now >= since + PERIODIC_SYNC_MS)
                {
                    self.sync_log(node);
                }
                let server = &mut self.servers[node];
                let next = self.now + server.tick;
                self.schedule(next, Event::Tick { node, epoch });
                self.drive(node);
            }
            Event::Deliver(msg) => {
                let node = (msg.to as usize).wrapping_sub(1);
                if !self.net.connected(msg.from, msg.to) {
                    self.stats.dropped += 1;
                    return;
                }
                let Some(replica) = self.servers.get_mut(node).and_then(|s| s.replica.as_mut())
                else {
                    return;
                };
                self.liveness.delivering(&msg, self.now);
                // A correct core never sends what `step` drops; a peer with a catalogue bug
                // may, and is then ignored, as a node ignores it (after logging).
                let _ = replica.step(msg);
                self.drive(node);
            }
            Event::Persisted { node, epoch } => {
                let server = &mut self.servers[node];
                if server.epoch != epoch {
                    return;
                }
                if let Some(inflight) = server.inflight.take() {
                    self.complete(node, inflight);
                }
                self.drive(node);
            }
            Event::Request {
                node,
                attempt,
                command,
            } => {
                let Some(replica) = self.servers.get_mut(node).and_then(|s| s.replica.as_mut())
                else {
                    return;
                };
                let read = matches!(command.op, Operation::Read { .. });
                let probe = (read && self.config.bugs == crate::bugs::Bugs::none())
                    .then(|| ReadProbe::before(replica.raft()))
                    .flatten();
                let reply = replica.request(attempt, command, self.now);
                let paced = probe.map_or(Ok(()), |p| p.after(replica.raft()));
                match reply {
                    Some(reply) => self.reply_to_client(attempt, reply),
                    None => self.liveness.took(attempt, node, self.now),
                }
                if let Err((property, detail)) = paced {
                    self.fail(property, detail);
                }
                self.drive(node);
            }
            Event::Reply { attempt, reply } => {
                let actions = self.clients.reply(attempt, reply, self.now);
                self.client_actions(actions);
            }
            Event::ClientWake { process } => {
                let actions = self.clients.wake(process, self.now);
                self.client_actions(actions);
            }
            Event::ClientTimeout { process, attempt } => {
                let actions = self.clients.timeout(process, attempt, self.now);
                self.client_actions(actions);
            }
            Event::Nemesis => self.nemesis_turn(),
            Event::Heal { generation } => {
                if generation == self.partition_generation && self.net.partitioned() {
                    self.net.heal();
                    self.clients
                        .history
                        .nemesis(self.now, "stop-partition", "healed");
                }
            }
            Event::Crash { node, down, why } => {
                if self.faults_over || self.servers[node].replica.is_none() {
                    return;
                }
                self.crash(node, why);
                self.schedule(self.now + down, Event::Restart { node });
            }
            Event::Restart { node } => self.restart(node),
            Event::Resume { node, epoch } => {
                if self.servers[node].epoch == epoch {
                    self.resume(node);
                }
            }
            Event::EndFaults => {
                self.faults_over = true;
                for server in &mut self.servers {
                    server.doomed = None;
                }
                for node in 0..self.servers.len() {
                    self.resume(node);
                }
                if self.net.partitioned() {
                    self.net.heal();
                    self.clients
                        .history
                        .nemesis(self.now, "stop-partition", "healed");
                }
                for node in 0..self.servers.len() {
                    self.restart(node);
                }
                self.clients.healed_at = Some(self.now);
                self.liveness.healed(self.now);
            }
            Event::StopClients => {
                // Liveness needs a little patience: an unlucky schedule can take a few
                // election rounds to settle after the faults stop (e.g. a server with a stale
                // log that keeps calling elections when pre-vote is off).
                let limit = self.config.duration + 3 * self.config.quiet.max(1);
                if self.clients.ok_after_heal == 0 && self.now < limit {
                    self.schedule(self.now + self.config.quiet.max(2) / 2, Event::StopClients);
                    return;
                }
                self.stopping = true;
                self.clients.stop();
            }
        }
    }

    /// Asks a server for Readies until it has none or one is in flight.
    fn drive(&mut self, node: usize) {
        // A core hands out a bounded amount of work per input; this only guards against a
        // core that never stops producing Readies.
        for _ in 0..64 {
            if self.violation.is_some() {
                return;
            }
            let server = &mut self.servers[node];
            if server.inflight.is_some() {
                return;
            }
            let Some(replica) = server.replica.as_mut() else {
                return;
            };
            let before = replica.raft().applied_index();
            let Some((persist, pending)) = replica.ready() else {
                return;
            };
            let after = replica.raft().applied_index();
            let log = replica.raft().log();
            let applied: Vec<Entry<Command>> = (before + 1..=after)
                .filter_map(|index| log.entry(index).cloned())
                .collect();
            self.watch_leader(node);
            let must_persist = persist.must_persist();
            let mut inflight = InFlight {
                persist,
                pending,
                applied,
            };
            let early = std::mem::take(&mut inflight.persist.early_messages);
            self.send_all(early);
            if self.config.bugs.has(Bug::SendBeforePersist) {
                // The messages leave before the writes they promise are durable.
                let messages = std::mem::take(&mut inflight.persist.messages);
                if self.send_all(messages) && !self.faults_over {
                    let down = self.down_count();
                    if let Some(down) = self.nemesis.crash_after_vote(down) {
                        self.crash_soon(node, down, "after granting a vote");
                    }
                }
            }
            let server = &mut self.servers[node];
            let bugs = self.config.bugs;
            let unsynced_log = bugs.has(Bug::SkipFsync) || bugs.has(Bug::PeriodicFsync);
            let only_appends =
                inflight.persist.hard_state.is_none() && inflight.persist.snapshot.is_none();
            let delay = if must_persist && !(unsynced_log && only_appends) {
                self.persist_rng.range(0, self.config.persist_delay)
            } else {
                // (`skip-fsync`, `periodic-fsync`: appends are written, not synced.)
                0
            };
            if delay > 0 {
                let epoch = server.epoch;
                server.inflight = Some(inflight);
                self.schedule(self.now + delay, Event::Persisted { node, epoch });
                return;
            }
            self.complete(node, inflight);
        }
    }

    /// The Ready's fsync completed: store, send, apply, reply.
    fn complete(&mut self, node: usize, inflight: InFlight) {
        let InFlight {
            persist,
            pending,
            applied,
        } = inflight;
        let id = self.servers[node].id;
        let server = &mut self.servers[node];
        let stored = server.storage.persist(&persist);
        if server.storage.log_unsynced() {
            server.unsynced_since.get_or_insert(self.now);
        }
        if let Err(detail) = stored {
            self.fail("Durability", format!("server {id}: {detail}"));
            return;
        }
        if let Some((down, why)) = self.servers[node].doomed.take() {
            self.crash(node, why);
            self.schedule(self.now + down, Event::Restart { node });
            return;
        }
        if let Some(snapshot) = &persist.snapshot {
            self.stats.snapshots_installed += 1;
            if let Err((property, detail)) = self.invariants.installed(id, &snapshot.meta) {
                self.fail(property, detail);
                return;
            }
        }
        // (Empty under `send-before-persist`: they were sent when the Ready was taken.)
        let voted = self.send_all(persist.messages);
        if let Err((property, detail)) = self.invariants.applied(id, &applied) {
            self.fail(property, detail);
            return;
        }
        let Some(replica) = self.servers[node].replica.as_mut() else {
            return;
        };
        let advanced = match replica.advance(pending) {
            Ok(advanced) => advanced,
            Err(err) => {
                self.fail("Durability", format!("server {id}: {err}"));
                return;
            }
        };
        let leader = replica.raft().role() == Role::Leader;
        if let Some(snapshot) = &advanced.snapshot {
            self.stats.compactions += 1;
            self.servers[node].storage.compact(snapshot);
        }
        let mut acked = false;
        for (attempt, reply) in advanced.replies {
            acked |= matches!(
                reply,
                Reply::Done(Outcome::Written | Outcome::Value(_) | Outcome::Appended { .. })
            );
            self.reply_to_client(attempt, reply);
        }
        if self.faults_over {
            return;
        }
        let down = self.down_count();
        let crash = if voted {
            self.nemesis
                .crash_after_vote(down)
                .map(|d| (d, "after granting a vote"))
        } else if acked && leader {
            self.nemesis
                .crash_after_ack(down)
                .map(|d| (d, "after acknowledging a client"))
        } else {
            None
        };
        if let Some((down, why)) = crash {
            self.crash_soon(node, down, why);
        }
    }

    /// A targeted crash, within two milliseconds.
    fn crash_soon(&mut self, node: usize, down: u64, why: &'static str) {
        let at = self.now + self.fault_rng.range(0, 2);
        self.schedule(at, Event::Crash { node, down, why });
    }

    /// Sends a Ready's messages; returns whether one grants a vote (for the targeted crash
    /// after a vote).
    fn send_all(&mut self, messages: Vec<Message<Command>>) -> bool {
        let mut voted = false;
        for msg in messages {
            voted |= matches!(
                msg.body,
                Body::VoteResponse {
                    campaign: Campaign::Election | Campaign::Transfer,
                    granted: true
                }
            );
            self.send(msg);
        }
        voted
    }

    /// Figure 8's churn: maybe doom a leader that was just elected, or whose commit index
    /// just advanced, to crash when the Ready just handed out is durable and before it sends
    /// anything (so its fresh entries are on its disk only, or its new commit index is known
    /// to it alone).
    fn watch_leader(&mut self, node: usize) {
        let Some(raft) = self.servers[node].replica.as_ref().map(|r| r.raft()) else {
            return;
        };
        if raft.role() != Role::Leader {
            return;
        }
        let (term, commit) = (raft.term(), raft.commit_index());
        let previous = self.servers[node].led.replace((term, commit));
        let elected = previous.is_none_or(|(t, _)| t != term);
        if elected {
            self.servers[node].led_from = commit;
        }
        if self.faults_over || self.servers[node].doomed.is_some() {
            return;
        }
        let down = self.down_count();
        let first_commit =
            previous.is_some_and(|(_, c)| c < commit && c == self.servers[node].led_from);
        self.servers[node].doomed = if elected {
            self.nemesis
                .crash_new_leader(down)
                .map(|d| (d, "right after its election"))
        } else if first_commit {
            // Only the first advance of its term: the one that, in Figure 8, commits entries
            // of earlier terms along with (or instead of) the leader's no-op.
            self.nemesis
                .crash_after_commit(down)
                .map(|d| (d, "right after its first commit"))
        } else {
            None
        };
    }

    /// `periodic-fsync`: the storage thread's sync of the server's log.
    fn sync_log(&mut self, node: usize) {
        let server = &mut self.servers[node];
        server.unsynced_since = None;
        server.storage.sync_log();
    }

    /// SIGCONT: one tick, then the inputs that waited, each channel in order, the channels
    /// interleaved at random.
    fn resume(&mut self, node: usize) {
        let server = &mut self.servers[node];
        if !server.paused {
            return;
        }
        server.paused = false;
        let epoch = server.epoch;
        let id = server.id;
        let mut channels: [VecDeque<Event>; 3] = Default::default();
        if std::mem::take(&mut server.tick_held) {
            channels[2].push_back(Event::Tick { node, epoch });
        }
        for event in std::mem::take(&mut server.held) {
            let channel = match event {
                Event::Deliver(_) => 0,
                Event::Request { .. } => 1,
                _ => 2,
            };
            channels[channel].push_back(event);
        }
        self.clients
            .history
            .nemesis(self.now, "resume", &format!("n{id}"));
        loop {
            let ready: Vec<usize> = (0..3).filter(|&c| !channels[c].is_empty()).collect();
            let Some(&channel) = self.fault_rng.pick(&ready) else {
                break;
            };
            if let Some(event) = channels[channel].pop_front() {
                self.schedule(self.now, event);
            }
        }
    }

    fn down_count(&self) -> usize {
        self.servers.iter().filter(|s| s.replica.is_none()).count()
    }

    fn send(&mut self, msg: Message<Command>) {
        self.stats.messages += 1;
        if msg.to == 0 || msg.to as usize > self.servers.len() {
            return;
        }
        let follower = self.servers[msg.to as usize - 1]
            .replica
            .as_ref()
            .map(|r| r.raft());
        if self.config.bugs == crate::bugs::Bugs::none() {
            if let Err((property, detail)) = self.liveness.sending(&msg, follower, self.now) {
                self.fail(property, detail);
            }
        }
        if !self.net.connected(msg.from, msg.to) {
            self.stats.dropped += 1;
            return;
        }
        let mut delays = self.net.delays(&mut self.net_rng);
        match delays.len() {
            0 => self.stats.dropped += 1,
            1 => {}
            _ => self.stats.duplicated += 1,
        }
        let last = delays.pop();
        for delay in delays {
            self.schedule(self.now + delay, Event::Deliver(msg.clone()));
        }
        if let Some(delay) = last {
            self.schedule(self.now + delay, Event::Deliver(msg));
        }
    }

    fn reply_to_client(&mut self, attempt: u64, reply: Reply) {
        self.liveness.answered(attempt);
        if reply == Reply::Done(Outcome::SessionExpired) {
            self.stats.sessions_expired += 1;
        }
        for delay in self.net.delays(&mut self.net_rng) {
            self.schedule(
                self.now + delay,
                Event::Reply {
                    attempt,
                    reply: reply.clone(),
                },
            );
        }
    }

    fn client_actions(&mut self, actions: Vec<ClientAction>) {
        for action in actions {
            match action {
                ClientAction::Send {
                    node,
                    attempt,
                    command,
                } => {
                    let node = (node as usize).wrapping_sub(1);
                    if let Some(delay) = self.net.request_delay(&mut self.net_rng) {
                        self.schedule(
                            self.now + delay,
                            Event::Request {
                                node,
                                attempt,
                                command,
                            },
                        );
                    }
                }
                ClientAction::Wake { process, at } => {
                    self.schedule(at, Event::ClientWake { process })
                }
                ClientAction::Timeout {
                    process,
                    attempt,
                    at,
                } => self.schedule(at, Event::ClientTimeout { process, attempt }),
            }
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.servers
            .iter()
            .filter_map(|s| s.replica.as_ref().map(|r| r.raft()))
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    fn nemesis_turn(&mut self) {
        if self.faults_over {
            return;
        }
        let view = ClusterView {
            up: self
                .servers
                .iter()
                .filter(|s| s.replica.is_some())
                .map(|s| s.id)
                .collect(),
            down: self.down_count(),
            leader: self.leader(),
            partitioned: self.net.partitioned(),
            paused: self.servers.iter().any(|s| s.paused),
        };
        match self.nemesis.choose(&view) {
            Some(Fault::Partition { shape, heal_after }) => {
                let detail = self
                    .net
                    .partition(shape, &self.ids, view.leader, &mut self.fault_rng);
                self.partition_generation += 1;
                self.stats.partitions += 1;
                self.stats.faults += 1;
                self.clients
                    .history
                    .nemesis(self.now, "start-partition", &detail);
                let generation = self.partition_generation;
                self.schedule(self.now + heal_after, Event::Heal { generation });
            }
            Some(Fault::Crash { node, down }) => {
                let node = (node as usize).wrapping_sub(1);
                if node < self.servers.len() {
                    self.schedule(
                        self.now,
                        Event::Crash {
                            node,
                            down,
                            why: "scheduled",
                        },
                    );
                }
            }
            Some(Fault::Pause { node, resume_after }) => {
                let node = (node as usize).wrapping_sub(1);
                if let Some(server) = self.servers.get_mut(node).filter(|s| s.replica.is_some()) {
                    server.paused = true;
                    let (id, epoch) = (server.id, server.epoch);
                    self.stats.pauses += 1;
                    self.stats.faults += 1;
                    self.clients
                        .history
                        .nemesis(self.now, "pause", &format!("n{id}"));
                    self.schedule(self.now + resume_after, Event::Resume { node, epoch });
                }
            }
            Some(Fault::Transfer { leader, to }) => {
                let node = (leader as usize).wrapping_sub(1);
                if let Some(replica) = self.servers.get_mut(node).and_then(|s| s.replica.as_mut()) {
                    let detail = match replica.transfer_leadership(to) {
                        Ok(()) => format!("n{leader} -> n{to}"),
                        Err(why) => format!("n{leader} -> n{to} (refused: {why})"),
                    };
                    self.stats.transfers += 1;
                    self.stats.faults += 1;
                    self.clients
                        .history
                        .nemesis(self.now, "transfer-leadership", &detail);
                    self.drive(node);
                }
            }
            None => {}
        }
        let next = self.now + self.nemesis.next_interval();
        self.schedule(next, Event::Nemesis);
    }

    fn crash(&mut self, node: usize, why: &'static str) {
        // What the server knew counts (e.g. a commit index nobody else learned yet).
        if self.violation.is_none() {
            self.check_invariants();
        }
        let server = &mut self.servers[node];
        server.replica = None;
        server.inflight = None;
        server.led = None;
        server.doomed = None;
        server.paused = false;
        server.held.clear();
        server.tick_held = false;
        server.unsynced_since = None;
        server.epoch += 1;
        self.liveness.crashed(node);
        // A power cut: what was written but not synced is gone (see `Storage`).
        let lost = server.storage.crash();
        let id = server.id;
        self.stats.crashes += 1;
        self.stats.faults += 1;
        self.stats.unsynced_lost += lost as u64;
        let detail = if lost > 0 {
            format!("n{id} ({why}; {lost} unsynced records lost)")
        } else {
            format!("n{id} ({why})")
        };
        self.clients.history.nemesis(self.now, "kill", &detail);
    }

    fn restart(&mut self, node: usize) {
        if self.servers[node].replica.is_some() {
            return;
        }
        self.servers[node].incarnation += 1;
        let config = self.core_config(node);
        let server = &mut self.servers[node];
        let restored = server.storage.restored();
        let id = server.id;
        match Replica::restore(config, restored, self.config.compact_every) {
            Ok(replica) => {
                server.replica = Some(replica.with_kv_config(kv_config(&self.config)));
            }
            Err(err) => {
                self.fail("Durability", format!("server {id} cannot restart: {err}"));
                return;
            }
        }
        server.epoch += 1;
        server.inflight = None;
        let epoch = server.epoch;
        let tick = server.tick;
        self.invariants.restarted(id);
        self.clients
            .history
            .nemesis(self.now, "start", &format!("n{id}"));
        self.schedule(self.now + tick, Event::Tick { node, epoch });
        self.drive(node);
    }

    fn report(mut self) -> SimReport {
        let history = self.clients.history.text().to_string();
        let mut stats = std::mem::take(&mut self.stats);
        stats.events = self.step;
        stats.end_time = self.now;
        stats.invoked = self.clients.history.invokes;
        stats.ok = self.clients.history.oks;
        stats.fail = self.clients.history.fails;
        stats.info = self.clients.history.infos;
        stats.ok_after_heal = self.clients.ok_after_heal;
        stats.keys = self.clients.keys();
        stats.elections = self.invariants.elections;
        stats.entries = self.invariants.entries_seen() as u64;
        let (verdict, anomaly) = if self.violation.is_none() && self.config.check_history {
            check_history(&history)
        } else {
            (None, None)
        };
        SimReport {
            seed: self.config.seed,
            nodes: self.config.nodes,
            violation: self.violation,
            verdict,
            anomaly,
            stats,
            history,
            trace: self.trace.into_iter().collect(),
        }
    }
}

/// Checks a history as `raft-check --model cas-register` would.
fn check_history(history: &str) -> (Option<Verdict>, Option<String>) {
    let ops = match checker::history::parse(history.as_bytes(), Format::Jsonl) {
        Ok(ops) => ops,
        Err(err) => {
            return (
                Some(Verdict::Unknown),
                Some(format!("unreadable history: {err}")),
            )
        }
    };
    let mut options = CheckOptions::new(ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    options.timeout = Some(Duration::from_secs(60));
    options.memory_limit = 512 << 20;
    match checker::check(ops, &options) {
        Ok(report) => {
            let anomaly = report
                .anomalies
                .first()
                .map(|a| format!("key {}: {}", a.key, a.message))
                .or_else(|| {
                    report
                        .unknown_keys
                        .first()
                        .map(|k| format!("key {}: {:?}", k.key, k.gave_up))
                });
            (Some(report.valid), anomaly)
        }
        Err(err) => (
            Some(Verdict::Unknown),
            Some(format!("history rejected: {err}")),
        ),
    }
}

/// The simulated servers' state machine settings: the clients register, and their sessions
/// expire after the configured simulated time.
fn kv_config(config: &SimConfig) -> KvConfig {
    KvConfig {
        expire_after_ms: config.session_expiry,
        ..KvConfig::default()
    }
}
