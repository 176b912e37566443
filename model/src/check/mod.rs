//! The stateright model of the real Raft core: no second implementation.
//!
//! * **Servers** are actors wrapping a [`Replica`] — the very core, KV state machine and
//!   client-request bookkeeping the nodes and the simulator run, configured with the node's
//!   own protocol settings ([`Settings::default`]: pre-vote and check-quorum on). Their
//!   messages are the core's [`Message`]s. After every input the server takes the core's
//!   [`Ready`](crate::core::Ready) and handles it in the contract's order: the hard state,
//!   snapshot and entries go to the actor's durable [`Durable`] record (stateright's `Save`,
//!   which survives crashes), then messages are sent, then `advance` applies and answers.
//!   With [`Setup::staged`] the Ready is split as the node splits it: its early messages
//!   (a leader's replication) leave at once, and so do the answers of what it commits when
//!   it writes anything (the node applies while its disk syncs; otherwise they wait for
//!   the flush); its writes are made durable at once, or, when either left early, at a
//!   later *flush* step; its other messages and `advance` wait for the flush. So the core
//!   is stepped between `ready()` and `advance()`
//!   (as the node's core task is while its storage task syncs), and a crash can strike
//!   after the early sends and before the writes, or after the writes and before the
//!   other sends. A
//!   crash (stateright's `max_crashes`) throws away everything but the durable record;
//!   recovery runs `Replica::restore` from it, exactly as a node restarts.
//! * **Time** is each server's own clock, a nondeterministic timer (see [`Timer`]): a
//!   leader's tick is the core's `tick()` (heartbeats, check-quorum every
//!   [`Setup::election_ticks`] ticks, the transfer timeout); a follower that knows a leader
//!   ticks until its trust in that leader runs out (`election_ticks`), and one that knows no
//!   leader may start a campaign at once.
//! * **Clients** issue a short fixed script of register operations (write, read, cas on one
//!   key) to a server, following `NotLeader` hints and retrying at the next server when their
//!   retry timer fires; retries carry the same (client, seq), so the KV sessions deduplicate
//!   them. Invocations and returns are recorded in a [`LinearizabilityTester`].
//! * **The operator** is modelled at the leader: it may ask for leadership transfers
//!   ([`Setup::transfers`]) and walks a script of single-server membership changes
//!   ([`Setup::membership`]), one at a time, as `raft-lab cluster add/remove` would.
//! * **Network**: unordered (duplicating or not) or ordered per pair of actors, optionally
//!   lossy, optionally partitioned: [`Setup::cut`] links lose every message for the whole run
//!   (a *bridge* when one server reaches both sides).
//! * **Bounds**: terms never go past `max_term` (the election timer is inert there), each
//!   client issues `ops` operations, logs are at most `max_log` long and at most
//!   `max_in_flight` messages are in the network; leaders tick at most `max_heartbeats`
//!   times and clients take at most `max_retries` request timeouts. Within these bounds the
//!   state space is finite, and each scenario of the default portfolio ([`portfolio`]) is
//!   explored exhaustively.
//!
//! # Reductions, and why they are sound
//! * *No generator state in the core*: the election timeout is a function of (seed, server,
//!   term) rather than of a random generator's state, so otherwise identical states are not
//!   told apart by how many draws led to them.
//! * *Clocks stop where nothing more can happen*: the timer rule above never ticks a
//!   follower past the point where its trust in its leader has run out, and lets a server
//!   that knows no leader campaign without counting ticks first. Between those points a
//!   follower's ticks change only its tick counter, which the core reads for exactly two
//!   decisions: whether it still trusts its leader (`elapsed < election_ticks`) and whether
//!   its timer fires (`elapsed >= timeout`, always above `election_ticks`). Every behaviour of
//!   the ticking core is therefore a behaviour of the model up to those counter values:
//!   the reduction removes states, never outcomes.
//! * *Bounded operator and clients*: scripts, not free choices; each scenario says which.
//!
//! Some scenarios are also *narrowed*: only some servers campaign ([`Setup::campaigners`]),
//! or one given server starts each term's election ([`Setup::elections`]), or links are cut
//! ([`Setup::cut`]). A narrowing explores a subset of the behaviours — every violation it
//! finds is one a real cluster can run into (a partition is a real fault; a timer that never
//! fires is a slow one) — and the scenario's name and description say which subset it proves.
//! A bridge partition is what makes four terms of Figure 8 or a leader deposed behind a
//! partition affordable: the two sides never talk, so their messages neither interleave nor
//! fill the in-flight bound.
//!
//! There is no symmetry reduction: node ids run through the core's whole state (votes,
//! progress, message fields, leader hints), and the servers are not interchangeable anyway
//! (the clients start at server 1, the operator's script and `campaigners` single servers
//! out).
//!
//! The properties are in [`properties`]; the default portfolio in [`portfolio`];
//! [`runner`] runs the checker on one setup and [`trace`] renders its counterexamples;
//! `raft-model check` is in [`cli`]; the narrow per-bug hunts in [`hunts`].

pub mod cli;
pub mod hunts;
pub mod portfolio;
pub mod properties;
pub mod runner;
pub mod spec;
pub mod trace;

use crate::bugs::{Bug, Bugs};
use crate::core::{
    Config, Entry, HardState, Index, Membership, MembershipChange, Message, NodeId, Restored, Role,
    Settings, Snapshot, Term,
};
use crate::kv::{Command, KvConfig, Operation, Outcome, Value};
use crate::replica::{Pending, Persist, Replica, Reply};
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
    /// Servers `1..=voters` start as the cluster's voters; the others are not members until
    /// the membership script adds them.
    pub voters: usize,
    pub clients: usize,
    /// Operations per client (its script is cut to this length).
    pub ops: usize,
    /// Every client's script, instead of the default one ([`script`]).
    pub script: Option<Vec<Op>>,
    /// No election timeout fires at this term or above.
    pub max_term: Term,
    /// Only the first `campaigners` servers' election timers fire (all if `None`). Fewer
    /// restricts the behaviours explored — a violation found is still real — to reach
    /// deeper scenarios.
    pub campaigners: Option<usize>,
    /// If not empty: the server that may start the election of each term, in order (term 1
    /// first), and no other. Like `campaigners`, a narrowing to one order of candidates.
    pub elections: Vec<NodeId>,
    /// States with a longer log on any server are not explored.
    pub max_log: u64,
    /// States with more messages in flight are not explored.
    pub max_in_flight: usize,
    pub max_crashes: usize,
    /// Ticks each server may take as leader (its volatile budget; refilled by a restart).
    pub max_heartbeats: u8,
    /// Request timeouts (re-sends to the next server) each client may take.
    pub max_retries: u8,
    /// The core's protocol settings: the node's own by default.
    pub settings: Settings,
    /// The base election timeout in ticks (a leader ticks once per heartbeat).
    pub election_ticks: u32,
    /// Compact the log every this many applied entries (0: never).
    pub compact_every: u64,
    /// Split each Ready into "durable now" and "sent, applied and advanced at a later step".
    pub staged: bool,
    /// Leadership transfers each server may be asked for as leader (to the next voter).
    pub transfers: u8,
    /// The operator's membership changes, proposed in order at the leader.
    pub membership: Vec<MembershipChange>,
    pub lossy: bool,
    pub duplicating: bool,
    /// Messages between two servers arrive in the order sent (as on the node's QUIC
    /// streams); otherwise any in-flight message may arrive next.
    pub ordered: bool,
    /// Links between two servers that lose every message, both ways, for the whole run: a
    /// partition (`[(1, 2)]` is a bridge: servers 1 and 2 cannot reach each other and
    /// server 3 reaches both).
    pub cut: Vec<(NodeId, NodeId)>,
    pub bugs: Bugs,
}

impl Default for Setup {
    /// The core as the nodes run it ([`Settings::default`]), 3 servers, 1 client writing
    /// then reading, terms up to 2, at most 4 messages in flight, logs of at most 4 entries,
    /// leaders that tick twice; no crash, compaction, transfer or membership change (the
    /// portfolio's scenarios add those).
    fn default() -> Self {
        Setup {
            servers: 3,
            voters: 3,
            clients: 1,
            ops: 2,
            script: None,
            max_term: 2,
            campaigners: None,
            elections: Vec::new(),
            max_log: 4,
            max_in_flight: 4,
            max_crashes: 0,
            max_heartbeats: 2,
            max_retries: 0,
            settings: Settings::default(),
            election_ticks: 2,
            compact_every: 0,
            staged: false,
            transfers: 0,
            membership: Vec::new(),
            lossy: false,
            duplicating: false,
            ordered: false,
            cut: Vec::new(),
            bugs: Bugs::none(),
        }
    }
}

impl Setup {
    /// The configuration in words.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("core: {}", self.settings.describe()),
            format!(
                "time: election timeout {} ticks (trust in a leader lasts that long; timers fire after more), a leader heartbeats every tick and may tick {} times",
                self.election_ticks, self.max_heartbeats
            ),
            format!(
                "servers: {} ({} voters at the start){}{}",
                self.servers,
                self.voters,
                match self.campaigners {
                    Some(n) => format!(", only servers 1..={n} start elections"),
                    None => String::new(),
                },
                if self.elections.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", elections started by {}",
                        (1..)
                            .zip(&self.elections)
                            .map(|(term, id)| format!("server {id} for term {term}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
            format!(
                "clients: {} doing {} each, {} retry(ies) after a timeout",
                self.clients,
                match &self.script {
                    Some(ops) => format!("{:?}", &ops[..self.ops.min(ops.len())]),
                    None => format!("{} operation(s) (write, read, cas, read)", self.ops),
                },
                self.max_retries
            ),
            format!(
                "bounds: terms <= {}, logs <= {} entries, <= {} messages in flight, {} crash(es) at once",
                self.max_term, self.max_log, self.max_in_flight, self.max_crashes
            ),
            format!(
                "network: {}{}{}{}",
                if self.ordered { "ordered per link" } else { "unordered" },
                if self.duplicating { ", duplicating" } else { "" },
                if self.lossy { ", lossy" } else { "" },
                self.cut
                    .iter()
                    .map(|(a, b)| format!(", servers {a} and {b} cannot reach each other"))
                    .collect::<String>()
            ),
            format!(
                "Ready handling: {}",
                if self.staged {
                    "staged (early sends and a writing Ready's commits applied, then durable; the rest sent and advanced at a later step; input in between)"
                } else {
                    "atomic (persist, send, apply, advance in one step)"
                }
            ),
        ];
        if self.compact_every > 0 {
            lines.push(format!(
                "snapshots: compaction every {} applied entries, InstallSnapshot to lagging followers",
                self.compact_every
            ));
        }
        if self.transfers > 0 {
            lines.push(format!(
                "operator: up to {} leadership transfer(s) per leader",
                self.transfers
            ));
        }
        if !self.membership.is_empty() {
            lines.push(format!(
                "operator: membership changes {}",
                self.membership
                    .iter()
                    .map(describe_change)
                    .collect::<Vec<_>>()
                    .join(", then ")
            ));
        }
        if self.bugs.any() {
            lines.push(format!(
                "bugs: {}",
                self.bugs
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines
    }
}

/// A membership change in words.
pub fn describe_change(change: &MembershipChange) -> String {
    match change {
        MembershipChange::AddLearner { id, addr } if addr.is_empty() => {
            format!("add server {id} as a learner")
        }
        MembershipChange::AddLearner { id, addr } => {
            format!("add server {id} at {addr} as a learner")
        }
        MembershipChange::PromoteLearner(id) => format!("promote server {id}"),
        MembershipChange::Remove(id) => format!("remove server {id}"),
    }
}

/// The model type `raft-model` checks.
pub type RaftModel = ActorModel<RaftActor, Setup, History>;
/// One global state of [`RaftModel`].
pub type State = stateright::actor::ActorModelState<RaftActor, History>;
/// One step of [`RaftModel`]: a delivery, a drop, a timeout or a crash.
pub type Action = stateright::actor::ActorModelAction<Msg, Timer, ()>;

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
    /// A non-leader's clock: a tick while it trusts a leader, else its election timeout.
    Election,
    /// A leader's clock: one tick (heartbeat, check-quorum, transfer timeout).
    Heartbeat,
    /// A client's request timeout.
    Retry,
    /// Staged Ready handling: send the durable Ready's messages, apply it, advance.
    Flush,
    /// The operator asks the leader to hand leadership to the next voter.
    Transfer,
    /// The operator proposes the next membership change of its script at the leader.
    Reconfigure,
}

/// What a server keeps on disk: exactly what the persistence contract makes durable, plus
/// ghost variables for the checker (never read by the server).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry<Command>>,
    /// Ghost: the term of every entry this server ever applied, by index - 1 (0: applied
    /// through a snapshot, term not seen).
    pub applied: Vec<Term>,
    /// Ghost: an index this server applied twice with different entries (after a restart).
    pub reapplied_differently: Option<Index>,
    /// Ghost: this server has installed a snapshot sent by a leader.
    pub installed_snapshot: bool,
}

/// A Ready between its taking and its flush step ([`Setup::staged`]): its messages and
/// `advance` wait for the flush. Its writes are durable already, unless it had early
/// messages (a leader's replication, sent when the Ready was taken) or its commits were
/// applied and answered when it was taken: then the writes wait for the flush too, as the
/// node's storage thread syncs meanwhile, and a crash in between loses them. Under
/// `send-before-persist` every message is out and the writes wait.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Staged {
    pub messages: Vec<Message<Command>>,
    /// The writes not yet durable (early messages were sent, or `send-before-persist`).
    pub writes: Option<Persist>,
    /// What the Ready commits, unless applied when it was taken (as the node applies it
    /// while its writes sync: [`Pending::applies_before_durable`]).
    pub pending: Option<Pending>,
}

/// A server actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerState {
    pub replica: Replica,
    /// Mirror of what was saved to stable storage (the actor cannot read its storage back
    /// except on recovery).
    pub durable: Durable,
    /// Ticks taken as leader so far (bounded by [`Setup::max_heartbeats`]).
    pub heartbeats: u8,
    /// Transfers asked for so far (bounded by [`Setup::transfers`]).
    pub transfers: u8,
    /// The Ready between its writes and its flush, in staged mode.
    pub staged: Option<Staged>,
    /// The replica refused its own durable state or a snapshot: the server stops taking
    /// input and the "Durability" property reports it.
    pub fault: Option<String>,
    /// Ghost: this server, as leader, once held two uncommitted membership changes (see
    /// [`properties::two_uncommitted_changes`]).
    pub two_changes: Option<String>,
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

/// What a server actor needs to know besides its state.
#[derive(Clone, Debug)]
pub struct ServerSetup {
    config: Config,
    voters: Vec<NodeId>,
    max_term: Term,
    /// Whether this server's election timer may fire at all.
    campaigns: bool,
    /// If not empty, the only terms this server may start an election for.
    election_terms: Vec<Term>,
    max_heartbeats: u8,
    compact_every: u64,
    staged: bool,
    transfers: u8,
    /// The operator's script as the memberships it walks through: `steps[i]` is the
    /// membership before change `i`.
    membership: Vec<(Membership, MembershipChange)>,
    /// Servers this one's messages never reach ([`Setup::cut`]).
    unreachable: Vec<NodeId>,
    /// The clients' session ids (their actor ids), registered from the start: registration
    /// through the log would multiply the state space for nothing the scripts look at.
    sessions: std::ops::Range<u64>,
}

/// The actors: servers around the real core, and scripted clients.
#[derive(Clone, Debug)]
pub enum RaftActor {
    Server(Box<ServerSetup>),
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
    /// A server started an election on a leader's TimeoutNow (coverage).
    pub transfer_started: bool,
}

impl Default for History {
    fn default() -> Self {
        History {
            linearizability: LinearizabilityTester::new(CasRegister::default()),
            returned: BTreeMap::new(),
            leaders: BTreeMap::new(),
            two_leaders: None,
            transfer_started: false,
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

/// The core's configuration in the model: the setup's protocol settings, its election
/// timeout, and a heartbeat every tick.
pub fn model_config(id: NodeId, setup: &Setup) -> Config {
    Config {
        election_ticks: setup.election_ticks.max(1),
        heartbeat_ticks: 1,
        bugs: setup.bugs,
        ..Config::with_settings(id, setup.settings)
    }
}

impl Setup {
    /// The operator's script as the memberships it walks through: each step is the
    /// membership before a change, and the change; then the membership at the end.
    fn membership_steps(&self) -> (Vec<(Membership, MembershipChange)>, Membership) {
        let voters = (0..self.voters.min(self.servers)).map(node_of);
        let mut membership = Membership::of_voters(voters);
        let mut steps = Vec::new();
        for change in &self.membership {
            if let Ok(next) = membership.apply(change) {
                steps.push((membership, change.clone()));
                membership = next;
            }
        }
        (steps, membership)
    }

    /// The membership once the operator's script is done.
    pub fn final_membership(&self) -> Membership {
        self.membership_steps().1
    }

    /// Builds the model: actors, network, crashes and properties.
    pub fn into_model(self) -> RaftModel {
        let voters: Vec<NodeId> = (0..self.voters.min(self.servers)).map(node_of).collect();
        let (steps, _) = self.membership_steps();
        let mut actors = Vec::new();
        for index in 0..self.servers {
            let id = node_of(index);
            actors.push(RaftActor::Server(Box::new(ServerSetup {
                config: model_config(id, &self),
                voters: voters.clone(),
                max_term: self.max_term,
                campaigns: self.campaigners.is_none_or(|n| index < n)
                    && (self.elections.is_empty() || self.elections.contains(&id)),
                election_terms: (1..)
                    .zip(&self.elections)
                    .filter(|&(_, &server)| server == id)
                    .map(|(term, _)| term)
                    .collect(),
                max_heartbeats: self.max_heartbeats,
                compact_every: self.compact_every,
                staged: self.staged,
                transfers: self.transfers,
                membership: steps.clone(),
                unreachable: self
                    .cut
                    .iter()
                    .filter_map(|&(a, b)| {
                        if id == a {
                            Some(b)
                        } else if id == b {
                            Some(a)
                        } else {
                            None
                        }
                    })
                    .collect(),
                sessions: self.servers as u64..(self.servers + self.clients) as u64,
            })));
        }
        for c in 0..self.clients {
            actors.push(RaftActor::Client {
                client: c as u64 + 1,
                servers: self.servers,
                script: match &self.script {
                    Some(ops) => ops.iter().copied().take(self.ops).collect(),
                    None => script(c, self.ops),
                },
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
        let properties = properties::all(&self);
        let mut model = ActorModel::new(self, History::default())
            .actors(actors)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(crashes)
            .record_msg_out(record_out)
            .record_msg_in(record_in)
            .within_boundary(within_boundary);
        for property in properties {
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
        Msg::Raft(m)
            if !history.transfer_started
                && matches!(
                    m.body,
                    crate::core::Body::Vote {
                        campaign: crate::core::Campaign::Transfer,
                        ..
                    }
                ) =>
        {
            let mut next = history.clone();
            next.transfer_started = true;
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
            RaftActor::Server(setup) => {
                let config = &setup.config;
                let kv_config = || KvConfig {
                    preregistered: setup.sessions.clone(),
                    ..KvConfig::default()
                };
                let fresh = || {
                    Replica::new(
                        config.clone(),
                        setup.voters.iter().copied(),
                        setup.compact_every,
                    )
                    .with_kv_config(kv_config())
                };
                let (replica, durable, fault) = match storage {
                    None => (fresh(), Durable::default(), None),
                    Some(durable) => {
                        let restored = Restored {
                            hard_state: durable.hard_state,
                            snapshot: durable.snapshot.clone(),
                            entries: durable.entries.clone(),
                        };
                        match Replica::restore(config.clone(), restored, setup.compact_every) {
                            Ok(replica) => {
                                (replica.with_kv_config(kv_config()), durable.clone(), None)
                            }
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
                    transfers: 0,
                    staged: None,
                    fault,
                    two_changes: None,
                };
                if state.fault.is_none() {
                    drive(&mut state, setup, o);
                    set_role_timer(setup, &state, o);
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
            (RaftActor::Server(setup), Msg::Raft(m)) => {
                // A correct core never sends what `step` drops; a peer with a catalogue bug
                // may, and is then ignored, as a node ignores it (after logging).
                server_input(setup, state, o, |r| {
                    let _ = r.step(m);
                });
            }
            (RaftActor::Server(setup), Msg::Request { seq, op, .. }) => {
                let client = usize::from(src) as u64;
                let request = (client << 32) | seq;
                let command = Command {
                    client,
                    seq,
                    op: operation(op),
                    time_ms: 0,
                };
                let mut refusal = None;
                // Time stands still here: no session expires (the simulator and the unit
                // tests cover expiry).
                server_input(setup, state, o, |r| {
                    refusal = r.request(request, command, 0)
                });
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
                        if target != out.target && target < *servers {
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
            (RaftActor::Server(setup), timer) => server_timer(setup, state, *timer, o),
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

/// A server's timers: its clock (as leader or not), the staged Ready's flush, and the
/// operator's requests at the leader.
fn server_timer(
    setup: &ServerSetup,
    state: &mut Cow<ActorState>,
    timer: Timer,
    o: &mut Out<RaftActor>,
) {
    let ActorState::Server(server) = &**state else {
        return;
    };
    if server.fault.is_some() {
        return;
    }
    let raft = server.replica.raft();
    let leading = raft.role() == Role::Leader;
    match timer {
        Timer::Election => {
            o.set_timer(Timer::Election, model_timeout());
            if leading {
                return;
            }
            // Trust in a leader is read only by pre-vote and check-quorum (the lease).
            let config = raft.config();
            let trusts_leader = (config.pre_vote || config.check_quorum)
                && raft.leader().is_some()
                && raft.election_elapsed() < config.election_ticks;
            if trusts_leader {
                // Time passes; the timer itself cannot fire before the trust runs out.
                server_input(setup, state, o, |r| r.tick());
            } else if setup.campaigns
                && (setup.election_terms.is_empty()
                    || setup.election_terms.contains(&(raft.term() + 1)))
                && raft.membership().voters.contains(&raft.id())
                && raft.term() < setup.max_term
            {
                server_input(setup, state, o, |r| r.election_timeout());
            }
        }
        Timer::Heartbeat => {
            if !leading || server.heartbeats >= setup.max_heartbeats {
                return;
            }
            if let ActorState::Server(server) = state.to_mut() {
                server.heartbeats += 1;
            }
            server_input(setup, state, o, |r| r.tick());
            if matches!(&**state, ActorState::Server(s) if s.replica.raft().role() == Role::Leader)
            {
                o.set_timer(Timer::Heartbeat, model_timeout());
            }
        }
        Timer::Flush => {
            let ActorState::Server(server) = state.to_mut() else {
                return;
            };
            let before = server.replica.raft().role();
            if let Some(staged) = server.staged.take() {
                if let Some(writes) = &staged.writes {
                    save(server, writes, o);
                }
                finish(server, setup, staged.messages, staged.pending, o);
            }
            drive(server, setup, o);
            if server.replica.raft().role() != before {
                set_role_timer(setup, server, o);
            }
        }
        Timer::Transfer => {
            if !leading || server.transfers >= setup.transfers {
                return;
            }
            let me = raft.id();
            let voters = &raft.membership().voters;
            let Some(&to) = voters
                .range(me + 1..)
                .next()
                .or_else(|| voters.iter().find(|&&v| v != me))
            else {
                return;
            };
            if let ActorState::Server(server) = state.to_mut() {
                server.transfers += 1;
            }
            server_input(setup, state, o, |r| {
                let _ = r.transfer_leadership(to);
            });
        }
        Timer::Reconfigure => {
            if !leading {
                return;
            }
            let current = raft.membership();
            let Some((_, change)) = setup.membership.iter().rev().find(|(m, _)| m == current)
            else {
                return;
            };
            let change = change.clone();
            // The operator keeps asking (a refused change is retried) until the script is done.
            o.set_timer(Timer::Reconfigure, model_timeout());
            server_input(setup, state, o, |r| {
                let _ = r.propose_membership(change, None);
            });
        }
        Timer::Retry => {}
    }
}

/// Feeds one input to a server's replica, then handles its Readys; fixes the timers if the
/// role changed.
fn server_input(
    setup: &ServerSetup,
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
    if server.two_changes.is_none() {
        server.two_changes = properties::two_uncommitted_changes(server.replica.raft());
    }
    drive(server, setup, o);
    if server.replica.raft().role() != before {
        set_role_timer(setup, server, o);
    }
}

/// A leader has a clock of its own and the operator's timers; anyone else an election
/// timer.
fn set_role_timer(setup: &ServerSetup, server: &ServerState, o: &mut Out<RaftActor>) {
    if server.replica.raft().role() == Role::Leader {
        o.cancel_timer(Timer::Election);
        o.set_timer(Timer::Heartbeat, model_timeout());
        if server.transfers < setup.transfers {
            o.set_timer(Timer::Transfer, model_timeout());
        }
        if !setup.membership.is_empty() {
            o.set_timer(Timer::Reconfigure, model_timeout());
        }
    } else {
        o.cancel_timer(Timer::Heartbeat);
        o.cancel_timer(Timer::Transfer);
        o.cancel_timer(Timer::Reconfigure);
        o.set_timer(Timer::Election, model_timeout());
    }
}

/// Handles the core's Readys. Atomic: each in the contract's order (persist, send, apply,
/// advance) until none is left. Staged: the next Ready is made durable now and waits for
/// the flush step, unless one is already waiting.
fn drive(server: &mut ServerState, setup: &ServerSetup, o: &mut Out<RaftActor>) {
    if server.staged.is_some() {
        return;
    }
    let staged = setup.staged;
    let send_first = staged && server.replica.bugs().has(Bug::SendBeforePersist);
    while let Some((mut persist, pending)) = server.replica.ready() {
        let early = std::mem::take(&mut persist.early_messages);
        let mut messages = std::mem::take(&mut persist.messages);
        let early_sent = !early.is_empty();
        send(setup, early, o);
        if send_first {
            // The bug: the messages leave now, the writes become durable at the flush.
            send(setup, std::mem::take(&mut messages), o);
        }
        // The node applies what a writing Ready commits while the writes sync.
        let pending = if staged && persist.must_persist() && pending.applies_before_durable() {
            if !apply(server, pending, o) {
                return;
            }
            None
        } else {
            Some(pending)
        };
        let applied_early = pending.is_none();
        if send_first || (staged && (early_sent || applied_early) && persist.must_persist()) {
            // The early messages travel, and the answers of what it commits, while the
            // writes are being made durable (under the bug, every message does).
            server.staged = Some(Staged {
                messages,
                writes: Some(persist),
                pending,
            });
            o.set_timer(Timer::Flush, model_timeout());
            return;
        }
        save(server, &persist, o);
        if staged {
            server.staged = Some(Staged {
                messages,
                writes: None,
                pending,
            });
            o.set_timer(Timer::Flush, model_timeout());
            return;
        }
        if !finish(server, setup, messages, pending, o) {
            return;
        }
    }
}

/// Makes a Ready's writes durable, saving only when there are any: a server that never
/// saved and one that saved nothing new are the same state.
fn save(server: &mut ServerState, persist: &Persist, o: &mut Out<RaftActor>) {
    if persist.hard_state.is_some() || persist.snapshot.is_some() || !persist.entries.is_empty() {
        make_durable(&mut server.durable, persist);
        o.save(server.durable.clone());
    }
}

/// Sends a server's messages; those to a server it cannot reach are lost.
fn send(setup: &ServerSetup, messages: Vec<Message<Command>>, o: &mut Out<RaftActor>) {
    for m in messages {
        if setup.unreachable.contains(&m.to) {
            continue;
        }
        o.send(server_actor(m.to), Msg::Raft(m));
    }
}

/// Step 1 of a Ready: its hard state, snapshot and entries become durable (its messages
/// may leave only now).
fn make_durable(durable: &mut Durable, persist: &Persist) {
    if let Some(hs) = persist.hard_state {
        durable.hard_state = hs;
    }
    if let Some(snapshot) = &persist.snapshot {
        keep_after_snapshot(durable, snapshot.clone());
        durable.installed_snapshot = true;
    }
    if let Some(first) = persist.entries.first() {
        let first = first.index;
        durable.entries.retain(|e| e.index < first);
        durable.entries.extend(persist.entries.iter().cloned());
    }
}

/// A snapshot replaces the stored one and the entries it covers; a stored suffix that
/// follows on from it (same term at its index) is kept.
fn keep_after_snapshot(durable: &mut Durable, snapshot: Snapshot) {
    let index = snapshot.meta.index;
    let keep_suffix = durable
        .entries
        .iter()
        .any(|e| e.index == index && e.term == snapshot.meta.term);
    durable.entries.retain(|e| e.index > index && keep_suffix);
    durable.snapshot = snapshot;
}

/// Steps 2-5 of a Ready whose writes are durable: send, apply (unless done when it was
/// taken), answer, advance; then make a compaction durable. Returns false if the server
/// failed (a snapshot that does not apply).
fn finish(
    server: &mut ServerState,
    setup: &ServerSetup,
    messages: Vec<Message<Command>>,
    pending: Option<Pending>,
    o: &mut Out<RaftActor>,
) -> bool {
    send(setup, messages, o);
    if let Some(pending) = pending {
        if !apply(server, pending, o) {
            return false;
        }
    }
    if let Some(snapshot) = server.replica.advance_applied() {
        keep_after_snapshot(&mut server.durable, snapshot);
        o.save(server.durable.clone());
    }
    true
}

/// Steps 4-5 of a Ready: apply, answer, and note what was applied in the durable record's
/// ghost. Returns false if the server failed (a snapshot that does not apply).
fn apply(server: &mut ServerState, pending: Pending, o: &mut Out<RaftActor>) -> bool {
    let durable = &mut server.durable;
    let mut save = false;
    for entry in pending.committed() {
        let slot = (entry.index - 1) as usize;
        if durable.applied.len() <= slot {
            durable.applied.resize(slot + 1, 0);
        }
        match durable.applied[slot] {
            0 => durable.applied[slot] = entry.term,
            t if t != entry.term => {
                durable.reapplied_differently.get_or_insert(entry.index);
            }
            _ => {}
        }
        save = true;
    }
    let replies = match server.replica.apply(pending) {
        Ok(replies) => replies,
        Err(e) => {
            server.fault = Some(format!("cannot apply a snapshot: {e}"));
            o.save(server.durable.clone());
            return false;
        }
    };
    if save {
        o.save(server.durable.clone());
    }
    for (request, reply) in replies {
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
    true
}

fn client_reply(reply: &Reply) -> ClientReply {
    match reply {
        Reply::Done(outcome) => ClientReply::Done(match outcome {
            Outcome::Written => Ret::Ok,
            Outcome::CasMismatch { .. } => Ret::CasFailed,
            Outcome::Value(v) => Ret::Value(v.as_ref().map(int)),
            // Cannot happen with this client (one op at a time, integers only, preregistered
            // sessions that never expire, no appends or registrations); a failed cas is the
            // closest "no effect" answer.
            Outcome::NotAString
            | Outcome::Stale
            | Outcome::SessionExpired
            | Outcome::TooLarge { .. }
            | Outcome::Appended { .. }
            | Outcome::Registered { .. } => Ret::CasFailed,
        }),
        Reply::NotLeader { leader } => ClientReply::Retry(*leader),
        // `Committed` answers only an operator's membership change, never a client.
        Reply::Refused(_) | Reply::Dropped | Reply::Committed(_) => ClientReply::Retry(None),
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
