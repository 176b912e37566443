//! The stateright model of the real Raft core (issue #6): no second implementation.
//!
//! * **Servers** are actors wrapping a [`Replica`] — the very core, KV state machine and
//!   client-request bookkeeping the nodes and the simulator run. Their messages are the core's
//!   [`Message`]s. Every input (a message, a timer, a client request) is followed by draining
//!   the core's [`Ready`](crate::core::Ready)s synchronously, in the contract's order: the hard
//!   state and entries go to the actor's durable [`Durable`] record (saved with stateright's
//!   `Save`, which survives crashes), then messages are sent, then `advance` applies and
//!   answers. A crash (stateright's `max_crashes`) throws away everything else; recovery runs
//!   `Replica::restore` from the durable record, exactly as a node restarts.
//! * **Timers** are nondeterministic: a server's *election* timer fires whenever it is not the
//!   leader (the model's core is configured with `election_ticks = 1`, so one `tick()` is one
//!   election timeout); a leader's *heartbeat* timer calls `tick()`, which broadcasts a
//!   heartbeat (`heartbeat_ticks = 1`).
//! * **Clients** issue a short fixed script of register operations (write, cas, read on one key)
//!   to a server, following `NotLeader` hints and retrying at the next server when their retry
//!   timer fires; retries carry the same (client, seq), so the KV sessions deduplicate them.
//!   Invocations and returns are recorded in a [`LinearizabilityTester`] in the model's history.
//! * **Network**: unordered (duplicating or not) or ordered per pair of actors, optionally
//!   lossy.
//! * **Bounds**: terms never go past `max_term` (the election timer is inert there), each
//!   client issues `ops` operations, logs are at most `max_log` long and at most
//!   `max_in_flight` messages are in the network; leaders send at most `max_heartbeats`
//!   heartbeats and clients take at most `max_retries` request timeouts. Within these
//!   bounds the state space is finite: the CI configuration ([`Setup::default`]) is
//!   explored exhaustively.
//!
//! The properties are in [`properties`]; `raft-model check` is in [`cli`]; the per-bug hunting
//! configurations (tests, `raft-lab matrix`) are in [`hunts`].
//!
//! Not modelled: snapshots/compaction (`compact_every = 0`), membership changes, leadership
//! transfer, a crash between persisting a Ready and sending its messages (a Ready is handled
//! atomically). No symmetry reduction: node ids run through the core's whole state (votes,
//! progress, message fields, leader hints), and the servers are not interchangeable anyway
//! (the clients start at server 1; `campaigners` singles servers out).

pub mod cli;
pub mod hunts;
pub mod properties;
pub mod spec;

use crate::bugs::Bugs;
use crate::core::{
    Config, Entry, HardState, Index, Message, NodeId, Restored, Role, Snapshot, Term,
};
use crate::kv::{Command, Operation, Outcome, Value};
use crate::replica::{Replica, Reply};
use serde::Serialize;
use spec::{CasRegister, Op, Ret};
use stateright::actor::{model_timeout, Actor, ActorModel, Id, LossyNetwork, Network, Out};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The one key every client works on.
pub const KEY: &str = "x";

/// The model's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    pub servers: usize,
    pub clients: usize,
    /// Operations per client (its script is cut to this length).
    pub ops: usize,
    /// No election timeout fires at this term or above.
    pub max_term: Term,
    /// Only the first `campaigners` servers' election timers fire (all if `None`). Fewer
    /// restricts the behaviours explored — a violation found is still real — to reach
    /// deeper bug scenarios; proofs use every server.
    pub campaigners: Option<usize>,
    /// States with a longer log on any server are not explored.
    pub max_log: u64,
    /// States with more messages in flight are not explored.
    pub max_in_flight: usize,
    pub max_crashes: usize,
    /// Heartbeats each server may send as leader (its volatile budget; refilled by a restart).
    pub max_heartbeats: u8,
    /// Request timeouts (re-sends to the next server) each client may take.
    pub max_retries: u8,
    /// Most entries in one AppendEntries (1 lets a leader replicate an old-term entry
    /// without its own no-op: the Figure 8 situation).
    pub max_batch: usize,
    pub lossy: bool,
    pub duplicating: bool,
    /// Messages between two servers arrive in the order sent (as on the node's QUIC
    /// streams); otherwise any in-flight message may arrive next.
    pub ordered: bool,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub bugs: Bugs,
}

impl Default for Setup {
    /// The CI configuration: 3 servers, 1 client doing a write then a read, two elections,
    /// at most 4 messages in flight; leaders send no heartbeats beyond their appends and
    /// the client follows leader hints but never times out. Its state space is finite and
    /// explored exhaustively (see [`cli::ci_run`]).
    fn default() -> Self {
        Setup {
            servers: 3,
            clients: 1,
            ops: 2,
            max_term: 2,
            campaigners: None,
            max_log: 4,
            max_in_flight: 4,
            max_crashes: 0,
            max_heartbeats: 0,
            max_retries: 0,
            max_batch: Config::new(1).max_batch,
            lossy: false,
            duplicating: false,
            ordered: false,
            pre_vote: false,
            check_quorum: false,
            bugs: Bugs::none(),
        }
    }
}

/// The model type `raft-model` checks.
pub type RaftModel = ActorModel<RaftActor, Setup, History>;
/// One global state of [`RaftModel`].
pub type State = stateright::actor::ActorModelState<RaftActor, History>;

/// What travels on the model's network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Msg {
    /// Server to server: the core's own message.
    Raft(Message<Command>),
    /// Client to server. `retry`: the same operation was sent before.
    Request { seq: u64, op: Op, retry: bool },
    /// Server to client.
    Reply { seq: u64, reply: ClientReply },
}

/// What a server tells a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ClientReply {
    Done(Ret),
    /// Not done here (not the leader, dropped, refused): try again, at `leader` if known.
    Retry(Option<NodeId>),
}

impl Msg {
    fn key(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

// stateright wants ordered messages (to order its actions deterministically); the core's
// messages only have equality, so order by their encoding, which is injective.
impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Msg {
    fn cmp(&self, other: &Self) -> Ordering {
        if self == other {
            Ordering::Equal
        } else {
            self.key().cmp(&other.key())
        }
    }
}

/// The actors' timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Timer {
    /// A follower's or candidate's election timeout.
    Election,
    /// A leader's heartbeat interval.
    Heartbeat,
    /// A client's request timeout.
    Retry,
}

/// What a server keeps on disk: exactly what the persistence contract makes durable, plus
/// ghost variables for the checker (never read by the server).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry<Command>>,
    /// Ghost: the term of every entry this server ever applied, by index - 1.
    pub applied: Vec<Term>,
    /// Ghost: an index this server applied twice with different entries (after a restart).
    pub reapplied_differently: Option<Index>,
}

/// A server actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerState {
    pub replica: Replica,
    /// Mirror of what was saved to stable storage (the actor cannot read its storage back
    /// except on recovery).
    pub durable: Durable,
    /// Heartbeats sent so far (bounded by [`Setup::max_heartbeats`]).
    pub heartbeats: u8,
    /// The replica refused its own durable state or a snapshot: the server stops taking
    /// input and the "Durability" property reports it.
    pub fault: Option<String>,
}

/// An operation a client has sent and not had answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outstanding {
    pub seq: u64,
    pub op: Op,
    /// Server index it was last sent to.
    pub target: usize,
}

/// A client actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientState {
    /// Operations of the script already started.
    pub started: usize,
    pub outstanding: Option<Outstanding>,
    /// Request timeouts taken so far (bounded by [`Setup::max_retries`]).
    pub retries: u8,
}

/// An actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ActorState {
    Server(Box<ServerState>),
    Client(ClientState),
}

/// The actors: servers around the real core, and scripted clients.
#[derive(Clone, Debug)]
pub enum RaftActor {
    Server {
        config: Config,
        voters: Vec<NodeId>,
        max_term: Term,
        /// Whether this server's election timer may fire at all.
        campaigns: bool,
        max_heartbeats: u8,
    },
    Client {
        /// The client id in commands (the session key).
        client: u64,
        servers: usize,
        script: Vec<Op>,
        max_retries: u8,
    },
}

/// The auxiliary history the properties look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct History {
    pub linearizability: LinearizabilityTester<Id, CasRegister>,
    /// Per client: the last seq whose return was recorded.
    pub returned: BTreeMap<Id, u64>,
    /// Term -> the server seen sending AppendEntries in it (only a leader does).
    pub leaders: BTreeMap<Term, NodeId>,
    /// Two servers seen leading the same term: (term, one, other).
    pub two_leaders: Option<(Term, NodeId, NodeId)>,
}

impl Default for History {
    fn default() -> Self {
        History {
            linearizability: LinearizabilityTester::new(CasRegister::default()),
            returned: BTreeMap::new(),
            leaders: BTreeMap::new(),
            two_leaders: None,
        }
    }
}

/// The actor id of server `node` (node ids start at 1).
pub fn server_actor(node: NodeId) -> Id {
    Id::from((node - 1) as usize)
}

/// The node id of the server with actor index `index`.
pub fn node_of(index: usize) -> NodeId {
    index as u64 + 1
}

/// The client scripts: client `c` writes `c + 1`, then reads, then compares-and-sets
/// `c + 1 -> 10 + c`, then reads again; each client uses the first `ops` of its script.
pub fn script(client: usize, ops: usize) -> Vec<Op> {
    let v = client as i64 + 1;
    [
        Op::Write(v),
        Op::Read,
        Op::Cas {
            expected: Some(v),
            new: 10 + v,
        },
        Op::Read,
    ]
    .into_iter()
    .cycle()
    .take(ops)
    .collect()
}

/// The core's configuration in the model.
pub fn model_config(id: NodeId, setup: &Setup) -> Config {
    Config {
        election_ticks: 1,
        heartbeat_ticks: 1,
        pre_vote: setup.pre_vote,
        check_quorum: setup.check_quorum,
        seed: id,
        max_batch: setup.max_batch,
        bugs: setup.bugs,
        ..Config::new(id)
    }
}

impl Setup {
    /// Builds the model: actors, network, crashes and properties.
    pub fn into_model(self) -> RaftModel {
        let voters: Vec<NodeId> = (0..self.servers).map(node_of).collect();
        let mut actors = Vec::new();
        for index in 0..self.servers {
            let id = node_of(index);
            actors.push(RaftActor::Server {
                config: model_config(id, &self),
                voters: voters.clone(),
                max_term: self.max_term,
                campaigns: self.campaigners.is_none_or(|n| index < n),
                max_heartbeats: self.max_heartbeats,
            });
        }
        for c in 0..self.clients {
            actors.push(RaftActor::Client {
                client: c as u64 + 1,
                servers: self.servers,
                script: script(c, self.ops),
                max_retries: self.max_retries,
            });
        }
        let network = if self.ordered {
            Network::new_ordered([])
        } else if self.duplicating {
            Network::new_unordered_duplicating([])
        } else {
            Network::new_unordered_nonduplicating([])
        };
        let lossy = if self.lossy {
            LossyNetwork::Yes
        } else {
            LossyNetwork::No
        };
        let crashes = self.max_crashes;
        let mut model = ActorModel::new(self, History::default())
            .actors(actors)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(crashes)
            .record_msg_out(record_out)
            .record_msg_in(record_in)
            .within_boundary(within_boundary);
        for property in properties::all() {
            model.properties.push(property);
        }
        model
    }
}

fn record_out(
    _: &Setup,
    history: &History,
    env: stateright::actor::Envelope<&Msg>,
) -> Option<History> {
    match env.msg {
        Msg::Request {
            op, retry: false, ..
        } => {
            let mut next = history.clone();
            // An invalid history (double invoke) makes the tester report non-linearizable.
            let _ = next.linearizability.on_invoke(env.src, *op);
            Some(next)
        }
        Msg::Raft(m) if matches!(m.body, crate::core::Body::Append { .. }) => {
            match history.leaders.get(&m.term) {
                Some(&leader) if leader == m.from => None,
                Some(&leader) => {
                    if history.two_leaders.is_some() {
                        return None;
                    }
                    let mut next = history.clone();
                    next.two_leaders = Some((m.term, leader, m.from));
                    Some(next)
                }
                None => {
                    let mut next = history.clone();
                    next.leaders.insert(m.term, m.from);
                    Some(next)
                }
            }
        }
        _ => None,
    }
}

fn record_in(
    _: &Setup,
    history: &History,
    env: stateright::actor::Envelope<&Msg>,
) -> Option<History> {
    let Msg::Reply {
        seq,
        reply: ClientReply::Done(ret),
    } = env.msg
    else {
        return None;
    };
    if history.returned.get(&env.dst).is_some_and(|&s| s >= *seq) {
        return None;
    }
    let mut next = history.clone();
    next.returned.insert(env.dst, *seq);
    let _ = next.linearizability.on_return(env.dst, *ret);
    Some(next)
}

fn within_boundary(setup: &Setup, state: &State) -> bool {
    state.network.len() <= setup.max_in_flight
        && state.actor_states.iter().all(|s| match &**s {
            ActorState::Server(server) => server.replica.raft().last_index() <= setup.max_log,
            ActorState::Client(_) => true,
        })
}

impl Actor for RaftActor {
    type Msg = Msg;
    type Timer = Timer;
    type State = ActorState;
    type Storage = Durable;
    type Random = ();

    fn on_start(&self, _id: Id, storage: &Option<Durable>, o: &mut Out<Self>) -> ActorState {
        match self {
            RaftActor::Server { config, voters, .. } => {
                let fresh = || Replica::new(config.clone(), voters.iter().copied(), 0);
                let (replica, durable, fault) = match storage {
                    None => (fresh(), Durable::default(), None),
                    Some(durable) => {
                        let restored = Restored {
                            hard_state: durable.hard_state,
                            snapshot: durable.snapshot.clone(),
                            entries: durable.entries.clone(),
                        };
                        match Replica::restore(config.clone(), restored, 0) {
                            Ok(replica) => (replica, durable.clone(), None),
                            Err(e) => (
                                fresh(),
                                durable.clone(),
                                Some(format!("cannot restore its durable state: {e}")),
                            ),
                        }
                    }
                };
                let mut state = ServerState {
                    replica,
                    durable,
                    heartbeats: 0,
                    fault,
                };
                if state.fault.is_none() {
                    // A brand-new server has no durable state yet: nothing to save.
                    drive(&mut state, o);
                    set_role_timer(state.replica.raft().role(), o);
                }
                ActorState::Server(Box::new(state))
            }
            RaftActor::Client {
                servers, script, ..
            } => {
                if storage.is_some() {
                    // A client that crashed stops for good: its operation in flight stays
                    // pending (it may or may not take effect), and it never invokes another
                    // under the same identity, which would be two calls at once.
                    return ActorState::Client(ClientState {
                        started: script.len(),
                        outstanding: None,
                        retries: 0,
                    });
                }
                // The mark that tells a restart from the first start.
                o.save(Durable::default());
                let mut state = ClientState {
                    started: 0,
                    outstanding: None,
                    retries: 0,
                };
                start_next(&mut state, script, *servers, 0, o);
                ActorState::Client(state)
            }
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<ActorState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match (self, msg) {
            (RaftActor::Server { .. }, Msg::Raft(m)) => {
                server_input(state, o, |r| r.step(m));
            }
            (RaftActor::Server { .. }, Msg::Request { seq, op, .. }) => {
                let client = usize::from(src) as u64;
                let request = (client << 32) | seq;
                let command = Command {
                    client,
                    seq,
                    op: operation(op),
                };
                let mut refusal = None;
                server_input(state, o, |r| refusal = r.request(request, command));
                if let Some(reply) = refusal {
                    o.send(
                        src,
                        Msg::Reply {
                            seq,
                            reply: client_reply(&reply),
                        },
                    );
                }
            }
            (
                RaftActor::Client {
                    servers, script, ..
                },
                Msg::Reply { seq, reply },
            ) => {
                let ActorState::Client(client) = &**state else {
                    return;
                };
                let Some(out) = client.outstanding else {
                    return;
                };
                if out.seq != seq {
                    return;
                }
                match reply {
                    ClientReply::Done(_) => {
                        let ActorState::Client(client) = state.to_mut() else {
                            return;
                        };
                        client.outstanding = None;
                        start_next(client, script, *servers, out.target, o);
                        if client.outstanding.is_none() {
                            o.cancel_timer(Timer::Retry);
                        }
                    }
                    ClientReply::Retry(Some(leader)) => {
                        let target = usize::from(server_actor(leader));
                        if target != out.target {
                            let ActorState::Client(client) = state.to_mut() else {
                                return;
                            };
                            send_to(client, target, o);
                        }
                    }
                    // No hint: wait for the retry timer.
                    ClientReply::Retry(None) => {}
                }
            }
            _ => {}
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<ActorState>, timer: &Timer, o: &mut Out<Self>) {
        match (self, timer) {
            (
                RaftActor::Server {
                    max_term,
                    campaigns,
                    ..
                },
                Timer::Election,
            ) => {
                let ActorState::Server(server) = &**state else {
                    return;
                };
                let raft = server.replica.raft();
                if !campaigns || raft.role() == Role::Leader || raft.term() >= *max_term {
                    o.set_timer(Timer::Election, model_timeout());
                    return;
                }
                server_input(state, o, |r| r.tick());
                o.set_timer(Timer::Election, model_timeout());
            }
            (RaftActor::Server { max_heartbeats, .. }, Timer::Heartbeat) => {
                let ActorState::Server(server) = &**state else {
                    return;
                };
                if server.replica.raft().role() != Role::Leader
                    || server.heartbeats >= *max_heartbeats
                {
                    return;
                }
                if let ActorState::Server(server) = state.to_mut() {
                    server.heartbeats += 1;
                }
                server_input(state, o, |r| r.tick());
                if let ActorState::Server(server) = &**state {
                    if server.replica.raft().role() == Role::Leader {
                        o.set_timer(Timer::Heartbeat, model_timeout());
                    }
                }
            }
            (
                RaftActor::Client {
                    servers,
                    max_retries,
                    ..
                },
                Timer::Retry,
            ) => {
                let ActorState::Client(client) = &**state else {
                    return;
                };
                let Some(out) = client.outstanding else {
                    return;
                };
                if client.retries >= *max_retries {
                    return;
                }
                let ActorState::Client(client) = state.to_mut() else {
                    return;
                };
                client.retries += 1;
                send_to(client, (out.target + 1) % servers, o);
                o.set_timer(Timer::Retry, model_timeout());
            }
            _ => {}
        }
    }
}

/// Feeds one input to a server's replica, then drains its Readys; fixes the timers if the
/// role changed.
fn server_input(
    state: &mut Cow<ActorState>,
    o: &mut Out<RaftActor>,
    input: impl FnOnce(&mut Replica),
) {
    if matches!(&**state, ActorState::Server(server) if server.fault.is_some()) {
        return;
    }
    let ActorState::Server(server) = state.to_mut() else {
        return;
    };
    let before = server.replica.raft().role();
    input(&mut server.replica);
    drive(server, o);
    let after = server.replica.raft().role();
    if before != after {
        set_role_timer(after, o);
    }
}

/// A leader has a heartbeat timer; anyone else an election timer.
fn set_role_timer(role: Role, o: &mut Out<RaftActor>) {
    if role == Role::Leader {
        o.cancel_timer(Timer::Election);
        o.set_timer(Timer::Heartbeat, model_timeout());
    } else {
        o.cancel_timer(Timer::Heartbeat);
        o.set_timer(Timer::Election, model_timeout());
    }
}

/// Handles every pending Ready in the contract's order: persist, send, apply, advance.
fn drive(server: &mut ServerState, o: &mut Out<RaftActor>) {
    loop {
        // Read before `ready()`: it marks the entries it hands out as applied.
        let applied_before = server.replica.raft().applied_index();
        let Some((persist, pending)) = server.replica.ready() else {
            break;
        };
        let durable = &mut server.durable;
        let mut save = false;
        // 1. Make the hard state, snapshot and entries durable.
        if let Some(hs) = persist.hard_state {
            durable.hard_state = hs;
            save = true;
        }
        if let Some(snapshot) = persist.snapshot {
            let index = snapshot.meta.index;
            let keep_suffix = durable
                .entries
                .iter()
                .any(|e| e.index == index && e.term == snapshot.meta.term);
            durable.entries.retain(|e| e.index > index && keep_suffix);
            durable.snapshot = snapshot;
            save = true;
        }
        if let Some(first) = persist.entries.first() {
            let first = first.index;
            durable.entries.retain(|e| e.index < first);
            durable.entries.extend(persist.entries);
            save = true;
        }
        // 2. Only then send.
        for m in persist.messages {
            o.send(server_actor(m.to), Msg::Raft(m));
        }
        // 3-5. Apply, answer, advance.
        let advanced = match server.replica.advance(pending) {
            Ok(advanced) => advanced,
            Err(e) => {
                server.fault = Some(format!("cannot apply a snapshot: {e}"));
                o.save(durable.clone());
                return;
            }
        };
        let applied_after = server.replica.raft().applied_index();
        let log = server.replica.raft().log();
        for index in applied_before + 1..=applied_after {
            let Some(term) = log.term(index) else {
                continue;
            };
            let slot = (index - 1) as usize;
            match durable.applied.get(slot) {
                Some(&t) if t != term => {
                    durable.reapplied_differently.get_or_insert(index);
                }
                Some(_) => {}
                None => durable.applied.push(term),
            }
            save = true;
        }
        if save {
            o.save(durable.clone());
        }
        for (request, reply) in advanced.replies {
            let client = Id::from((request >> 32) as usize);
            let seq = request & 0xFFFF_FFFF;
            o.send(
                client,
                Msg::Reply {
                    seq,
                    reply: client_reply(&reply),
                },
            );
        }
    }
}

fn client_reply(reply: &Reply) -> ClientReply {
    match reply {
        Reply::Done(outcome) => ClientReply::Done(match outcome {
            Outcome::Written => Ret::Ok,
            Outcome::CasMismatch { .. } => Ret::CasFailed,
            Outcome::Value(v) => Ret::Value(v.as_ref().map(int)),
            // Cannot happen with this client (one op at a time, integers only); a failed
            // cas is the closest "no effect" answer.
            Outcome::NotAString | Outcome::Stale => Ret::CasFailed,
        }),
        Reply::NotLeader { leader } => ClientReply::Retry(*leader),
        Reply::Refused(_) | Reply::Dropped => ClientReply::Retry(None),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Str(_) => i64::MIN,
    }
}

fn operation(op: Op) -> Operation {
    let key = KEY.to_string();
    match op {
        Op::Write(v) => Operation::Write {
            key,
            value: Value::Int(v),
        },
        Op::Cas { expected, new } => Operation::Cas {
            key,
            expected: expected.map(Value::Int),
            new: Value::Int(new),
        },
        Op::Read => Operation::Read { key },
    }
}

/// Starts the next operation of the script, if any, at the server the last one ended at.
fn start_next(
    client: &mut ClientState,
    script: &[Op],
    servers: usize,
    target: usize,
    o: &mut Out<RaftActor>,
) {
    let Some(&op) = script.get(client.started) else {
        return;
    };
    client.started += 1;
    let target = target % servers;
    let seq = client.started as u64;
    client.outstanding = Some(Outstanding { seq, op, target });
    o.send(
        Id::from(target),
        Msg::Request {
            seq,
            op,
            retry: false,
        },
    );
    o.set_timer(Timer::Retry, model_timeout());
}

/// Re-sends the outstanding operation to server `target`.
fn send_to(client: &mut ClientState, target: usize, o: &mut Out<RaftActor>) {
    let Some(out) = client.outstanding.as_mut() else {
        return;
    };
    out.target = target;
    o.send(
        Id::from(target),
        Msg::Request {
            seq: out.seq,
            op: out.op,
            retry: true,
        },
    );
}
