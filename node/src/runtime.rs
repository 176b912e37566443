//! The core task: the one place the Raft core lives, fed by one channel.
//!
//! ```text
//!   timer ──tick──┐
//!   transport ────┤  Input   ┌───────────┐  Persist   ┌──────────────┐
//!   (peer msgs)   ├────────► │ core task │ ─────────► │ storage      │ (thread: append,
//!   service ──────┤          │ (Replica) │ ◄───────── │ writer       │  fsync, group commit)
//!   (client reqs) ┘          └───────────┘  Persisted └──────────────┘
//!                              │      │
//!              messages after  │      │ replies after apply
//!              durability      ▼      ▼
//!                      per-peer senders   client reply channels
//! ```
//! The core never waits on I/O: it hands a Ready's durable work to the storage thread and
//! keeps taking input. The Ready's early messages (a leader's replication, which promises
//! nothing about this server's storage) go to the transport first, so that followers write
//! the entries while the leader does (thesis 10.2.1); the other messages leave only when
//! the storage thread reports the writes durable, and only then is the core told `advance`.
//! What the Ready commits (entries a previous Ready made durable) is applied and answered
//! before the writes are handed over, not after they are durable: under load every Ready
//! both commits and writes, and waiting would add one fsync to every answer. One Ready is
//! in flight at a time, so everything proposed meanwhile lands in the next fsync (group
//! commit).
//!
//! A full disk ([`StorageError::NoSpace`]) does not stop the node: the storage thread
//! retries the same writes (backing off from [`NO_SPACE_RETRY_MIN`] to
//! [`NO_SPACE_RETRY_MAX`]) until they succeed, and meanwhile the core refuses new client
//! writes and membership changes at once (`Refused`: certainly not applied) rather than
//! queueing them behind a Ready that cannot be made durable. The stalled Ready's messages
//! still wait for its writes, and no later Ready is taken, so this node also stops sending
//! heartbeats and replication: a leader with a full disk loses its leadership, and reads
//! (which need a heartbeat round) time out. Any other storage error stops the node.
//!
//! Under the `send-before-persist` catalogue bug every message leaves as soon as the Ready is
//! taken, before the storage thread has made its writes durable: a crash in between loses a
//! vote or an entry the messages already promised.

use crate::config::ClusterConfig;
use crate::protocol::{NodeStatus, PeerStatus, Request, Response};
use crate::storage::{Storage, StorageError};
use crate::transport::{ClientCall, Inbound, Transport};
use model::bugs::Bug;
use model::core::{Membership, MembershipChange, Message, NodeId, Refused, Role, Snapshot};
use model::kv::Operation;
use model::kv::{Command, Outcome};
use model::replica::{Pending, Persist, Replica, Reply, RequestId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Why the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A node that cannot make its state durable must not keep promising things.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("state-machine snapshot: {0}")]
    Snapshot(#[from] model::kv::BadSnapshot),
    #[error("the storage thread is gone: {0}")]
    StorageThread(String),
}

/// Work for the storage thread.
enum StorageJob {
    /// Boxed: a Ready is large next to a snapshot handle, and one allocation per Ready is
    /// nothing beside its fsync. The `Pending` is there when it must wait for the writes
    /// (see [`Pending::applies_before_durable`]).
    Persist(Box<(Persist, Option<Pending>)>),
    SaveSnapshot(Snapshot),
}

/// The storage thread's answer: the Ready's durable part is on disk.
struct Persisted {
    messages: Vec<Message<Command>>,
    /// Still to apply (already applied while the writes synced: `None`).
    pending: Option<Pending>,
}

/// A client request waiting for the core.
struct Waiting {
    reply: oneshot::Sender<Response>,
    deadline: Instant,
}

/// Runs the node until its inputs close or storage fails.
pub async fn run(
    config: ClusterConfig,
    replica: Replica,
    storage: Storage,
    transport: Transport,
    inbound: Inbound,
) -> Result<(), RuntimeError> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<StorageJob>();
    let (done_tx, mut done_rx) = mpsc::channel::<Result<Persisted, StorageError>>(4);
    let disk_full = Arc::new(AtomicBool::new(false));
    let writer_disk_full = Arc::clone(&disk_full);
    let storage_thread = std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || storage_writer(storage, jobs_rx, done_tx, &writer_disk_full))
        .map_err(|e| RuntimeError::StorageThread(e.to_string()))?;

    let mut core = CoreTask {
        request_timeout: config.request_timeout(),
        config,
        replica,
        transport,
        jobs: jobs_tx,
        persisting: false,
        disk_full,
        membership: Membership::default(),
        waiting: BTreeMap::new(),
        next_request: 0,
    };
    let mut ticker = tokio::time::interval(core.config.tick());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Inbound {
        mut peers,
        mut clients,
    } = inbound;

    core.follow_membership();
    let result = loop {
        tokio::select! {
            _ = ticker.tick() => {
                core.replica.tick();
                core.expire_requests();
            }
            Some(msg) = peers.recv() => {
                core.step(msg);
                core.drain(&mut peers, &mut clients);
            }
            Some(call) = clients.recv() => {
                core.client_call(call);
                core.drain(&mut peers, &mut clients);
            }
            done = done_rx.recv() => match done {
                Some(Ok(persisted)) => {
                    if let Err(e) = core.persisted(persisted) {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(RuntimeError::StorageThread("it exited".into())),
            },
            else => break Ok(()),
        }
        if let Err(e) = core.drive() {
            break Err(e);
        }
        core.follow_membership();
    };
    drop(core);
    // A storage thread waiting for space sees this and stops.
    drop(done_rx);
    if storage_thread.join().is_err() {
        error!("storage thread panicked");
    }
    result
}

struct CoreTask {
    config: ClusterConfig,
    replica: Replica,
    transport: Transport,
    jobs: std::sync::mpsc::Sender<StorageJob>,
    /// A Ready's durable part is with the storage thread.
    persisting: bool,
    /// Set by the storage thread while its writes fail for want of space.
    disk_full: Arc<AtomicBool>,
    /// The membership the transport dials and admits.
    membership: Membership,
    waiting: BTreeMap<RequestId, Waiting>,
    next_request: RequestId,
    request_timeout: Duration,
}

/// Most inputs taken from each channel before the next Ready: enough to batch a burst
/// (every client of a busy node), few enough not to starve ticks and fsync completions.
const DRAIN_BATCH: usize = 256;

impl CoreTask {
    /// Takes the input already waiting on the peer and client channels, so that one Ready
    /// (one fsync, one heartbeat round for the reads) covers the whole burst instead of
    /// its first message alone.
    fn drain(
        &mut self,
        peers: &mut mpsc::Receiver<Message<Command>>,
        clients: &mut mpsc::Receiver<ClientCall>,
    ) {
        for _ in 0..DRAIN_BATCH {
            let mut took = false;
            if let Ok(msg) = peers.try_recv() {
                self.step(msg);
                took = true;
            }
            if let Ok(call) = clients.try_recv() {
                self.client_call(call);
                took = true;
            }
            if !took {
                return;
            }
        }
    }

    /// Hands a peer's message to the replica; one it drops (a broken or hostile peer) is
    /// logged, and the node keeps serving.
    fn step(&mut self, msg: Message<Command>) {
        let (from, term, kind) = (msg.from, msg.term, msg.body.name());
        if let Err(e) = self.replica.step(msg) {
            warn!(from, term, message = kind, error = %e, "dropped a message from a peer");
        }
    }

    /// Hands out the next Ready if none is in flight.
    fn drive(&mut self) -> Result<(), RuntimeError> {
        while !self.persisting {
            let Some((mut persist, pending)) = self.replica.ready() else {
                return Ok(());
            };
            // Before the storage job: these may be on the wire while the disk syncs.
            self.send(std::mem::take(&mut persist.early_messages));
            if !persist.must_persist() {
                // Nothing to make durable: the messages may leave now.
                self.persisted(Persisted {
                    messages: persist.messages,
                    pending: Some(pending),
                })?;
            } else {
                if self.replica.bugs().has(Bug::SendBeforePersist) {
                    // The bug: no waiting for the fsync (the storage thread then has no
                    // messages to hand back).
                    self.send(std::mem::take(&mut persist.messages));
                }
                // What this Ready commits is answered while its own writes sync, not one
                // fsync later: under load every Ready both commits and writes.
                let pending = if pending.applies_before_durable() {
                    self.apply(pending)?;
                    None
                } else {
                    Some(pending)
                };
                self.persisting = true;
                self.jobs
                    .send(StorageJob::Persist(Box::new((persist, pending))))
                    .map_err(|_| RuntimeError::StorageThread("it exited".into()))?;
            }
        }
        Ok(())
    }

    /// The durable part of a Ready is on disk: send, apply (unless done already), answer,
    /// advance.
    fn persisted(&mut self, persisted: Persisted) -> Result<(), RuntimeError> {
        self.persisting = false;
        self.send(persisted.messages);
        if let Some(pending) = persisted.pending {
            self.apply(pending)?;
        }
        if let Some(snapshot) = self.replica.advance_applied() {
            self.jobs
                .send(StorageJob::SaveSnapshot(snapshot))
                .map_err(|_| RuntimeError::StorageThread("it exited".into()))?;
        }
        Ok(())
    }

    /// Applies a Ready's committed entries and reads, and answers their requests.
    fn apply(&mut self, pending: Pending) -> Result<(), RuntimeError> {
        for (id, reply) in self.replica.apply(pending)? {
            self.answer(id, self.response(reply));
        }
        Ok(())
    }

    /// Where member `id` listens: the address its joining entry carried, else the one in the
    /// configuration file.
    fn member_addr(&self, id: NodeId) -> Option<String> {
        self.replica
            .raft()
            .membership()
            .addresses
            .get(&id)
            .or_else(|| self.config.node(id).map(|n| &n.addr))
            .cloned()
    }

    /// Keeps the transport on the log's membership: it dials and admits exactly the current
    /// members. A node that finds itself outside the membership says so.
    fn follow_membership(&mut self) {
        let current = self.replica.raft().membership();
        if *current == self.membership {
            return;
        }
        let me = self.replica.raft().id();
        let first = self.membership == Membership::default();
        let was_member = self.membership.members().any(|id| id == me);
        let is_member = current.members().any(|id| id == me);
        let mut peers = BTreeMap::new();
        for id in current.members().filter(|&id| id != me) {
            match self.member_addr(id) {
                Some(addr) => {
                    peers.insert(id, addr);
                }
                None => warn!(
                    member = id,
                    "no address for this member: not in the log nor in the configuration file"
                ),
            }
        }
        info!(voters = ?current.voters, learners = ?current.learners, "membership");
        if was_member && !is_member {
            warn!(
                id = me,
                "this node was removed from the cluster; its former peers no longer admit it"
            );
        } else if first && !is_member {
            info!(
                id = me,
                "not a member yet: waiting for the leader to add this node"
            );
        }
        self.membership = current.clone();
        self.transport.set_peers(peers);
    }

    /// Routes messages to the per-peer senders, each peer's in order.
    fn send(&self, messages: Vec<Message<Command>>) {
        let mut by_peer: BTreeMap<NodeId, Vec<Message<Command>>> = BTreeMap::new();
        for msg in messages {
            by_peer.entry(msg.to).or_default().push(msg);
        }
        for (peer, msgs) in by_peer {
            self.transport.send(peer, msgs);
        }
    }

    fn client_call(&mut self, call: ClientCall) {
        match call.request {
            Request::Status => {
                let _ = call.reply.send(Response::Status(self.status()));
            }
            Request::Op(command) => {
                if !matches!(command.op, Operation::Read { .. }) {
                    if let Some(why) = self.disk_full_refusal() {
                        let _ = call.reply.send(why);
                        return;
                    }
                }
                let id = self.wait_for(call.reply);
                if let Some(reply) = self.replica.request(id, command, wall_clock_ms()) {
                    self.answer(id, self.response(reply));
                }
            }
            Request::ChangeMembership(change) => {
                if let Some(why) = self.disk_full_refusal() {
                    let _ = call.reply.send(why);
                    return;
                }
                if let Err(why) = self.check_change(&change) {
                    let _ = call.reply.send(Response::Refused(why));
                    return;
                }
                let id = self.wait_for(call.reply);
                if let Err(refused) = self.replica.propose_membership(change, Some(id)) {
                    self.answer(id, self.refusal(refused));
                }
            }
            Request::TransferLeadership(to) => {
                let response = match self.replica.transfer_leadership(to) {
                    Ok(()) => Response::Transferring,
                    Err(refused) => self.refusal(refused),
                };
                let _ = call.reply.send(response);
            }
        }
    }

    /// While the disk is full, the answer to a write: refused, never proposed (it would
    /// only wait behind writes that cannot be made durable).
    fn disk_full_refusal(&self) -> Option<Response> {
        self.disk_full.load(Ordering::Relaxed).then(|| {
            Response::Refused(format!(
                "node {}: the disk is full (no space left on device): the write was not \
                 proposed; writes resume when space returns",
                self.replica.raft().id()
            ))
        })
    }

    /// Registers a request that the core answers later (or the deadline does); its id.
    fn wait_for(&mut self, reply: oneshot::Sender<Response>) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.waiting.insert(
            id,
            Waiting {
                reply,
                deadline: Instant::now() + self.request_timeout,
            },
        );
        id
    }

    /// A new member must come with an address its peers can dial.
    fn check_change(&self, change: &MembershipChange) -> Result<(), String> {
        let MembershipChange::AddLearner { id, addr } = change else {
            return Ok(());
        };
        if *id == 0 {
            return Err("node id 0 is reserved; ids start at 1".into());
        }
        if addr.is_empty() {
            return match self.config.node(*id) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "node {id} has no address: not in the request nor in the configuration file"
                )),
            };
        }
        crate::config::check_addr(addr).map_err(|why| format!("node {id}: addr {addr:?}: {why}"))
    }

    fn refusal(&self, refused: Refused) -> Response {
        match refused {
            Refused::NotLeader { leader } => self.not_leader(leader),
            other => Response::Refused(other.to_string()),
        }
    }

    fn not_leader(&self, leader: Option<NodeId>) -> Response {
        Response::NotLeader {
            leader,
            addr: leader.and_then(|id| self.member_addr(id)),
        }
    }

    fn response(&self, reply: Reply) -> Response {
        match reply {
            Reply::Done(Outcome::Stale) => {
                Response::Refused("stale request: a newer one from this client was applied".into())
            }
            Reply::Done(outcome) => Response::Done(outcome),
            Reply::NotLeader { leader } => self.not_leader(leader),
            Reply::Refused(refused) => Response::Refused(refused.to_string()),
            Reply::Dropped => {
                Response::Refused("the proposal was overwritten by another leader".into())
            }
            Reply::Committed(index) => Response::Committed { index },
        }
    }

    fn answer(&mut self, id: RequestId, response: Response) {
        if let Some(waiting) = self.waiting.remove(&id) {
            // The client may have gone away; nothing to do then.
            let _ = waiting.reply.send(response);
        }
    }

    /// Requests unanswered past their deadline get "unknown outcome": the proposal may still
    /// commit later.
    fn expire_requests(&mut self) {
        let now = Instant::now();
        let expired: Vec<RequestId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.answer(
                id,
                Response::Unknown("timed out waiting for the cluster".into()),
            );
        }
    }

    fn status(&self) -> NodeStatus {
        let raft = self.replica.raft();
        let links: BTreeMap<NodeId, (bool, u64)> = self
            .transport
            .peer_status()
            .into_iter()
            .map(|(id, connected, dropped)| (id, (connected, dropped)))
            .collect();
        let membership = raft.membership();
        let peers = membership
            .members()
            .filter(|&id| id != raft.id())
            .map(|id| {
                let (connected, dropped) = links.get(&id).copied().unwrap_or((false, 0));
                PeerStatus {
                    id,
                    addr: self.member_addr(id).unwrap_or_default(),
                    connected,
                    match_index: raft.progress(id).map(|p| p.matched),
                    dropped,
                }
            })
            .collect();
        let bugs = model::bugs::Bug::ALL
            .into_iter()
            .filter(|b| self.replica.bugs().has(*b))
            .map(|b| b.name().to_string())
            .collect();
        NodeStatus {
            id: raft.id(),
            role: match raft.role() {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            }
            .to_string(),
            term: raft.term(),
            leader: raft.leader(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            last_index: raft.last_index(),
            snapshot_index: raft.log().snapshot().meta.index,
            voters: membership.voters.iter().copied().collect(),
            learners: membership.learners.iter().copied().collect(),
            peers,
            bugs,
            cert_not_after: Some(self.transport.credentials().not_after()),
        }
    }
}

/// Milliseconds since the Unix epoch, stamped on the commands this node proposes (the state
/// machine's only source of time; it never lets it go backwards). A clock before the epoch
/// reads as 0, which the stamps' floor absorbs.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// First wait before retrying a write that found the disk full.
pub const NO_SPACE_RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between retries while the disk stays full.
pub const NO_SPACE_RETRY_MAX: Duration = Duration::from_millis(500);

/// Persists one Ready, retrying while the disk is full (see the module documentation):
/// `None` if the core task went away meanwhile (no other job can arrive while it waits:
/// the core hands out nothing while a Ready is with this thread).
fn persist_retrying(
    storage: &mut Storage,
    persist: &Persist,
    done: &mpsc::Sender<Result<Persisted, StorageError>>,
    disk_full: &AtomicBool,
) -> Option<Result<(), StorageError>> {
    let mut wait = NO_SPACE_RETRY_MIN;
    loop {
        let result = storage.persist(
            persist.hard_state,
            persist.snapshot.as_ref(),
            &persist.entries,
        );
        match result {
            Err(e @ StorageError::NoSpace { .. }) => {
                if !disk_full.swap(true, Ordering::Relaxed) {
                    error!(
                        dir = %storage.dir().display(),
                        error = %e,
                        "disk full: refusing client writes and retrying until space returns"
                    );
                }
                std::thread::sleep(wait);
                if done.is_closed() {
                    return None;
                }
                wait = (wait * 2).min(NO_SPACE_RETRY_MAX);
            }
            other => {
                if other.is_ok() && disk_full.swap(false, Ordering::Relaxed) {
                    info!(dir = %storage.dir().display(), "space returned: writes resume");
                }
                return Some(other);
            }
        }
    }
}

/// The storage thread: one persist (one fsync) per Ready, in order. Under the
/// `periodic-fsync` bug, persists leave log appends unsynced, and this thread also syncs the
/// log once the oldest unsynced append has waited [`PERIODIC_FSYNC_INTERVAL`], and when the
/// node shuts down cleanly (only a power cut loses them).
///
/// [`PERIODIC_FSYNC_INTERVAL`]: crate::storage::PERIODIC_FSYNC_INTERVAL
fn storage_writer(
    mut storage: Storage,
    jobs: std::sync::mpsc::Receiver<StorageJob>,
    done: mpsc::Sender<Result<Persisted, StorageError>>,
    disk_full: &AtomicBool,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let job = match storage.sync_deadline() {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(std::time::Instant::now());
                match jobs.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = storage.sync_log() {
                            // Acknowledged writes may not be on disk: stop the node.
                            let _ = done.blocking_send(Err(e));
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match job {
            StorageJob::Persist(job) => {
                let (persist, pending) = *job;
                let Some(result) = persist_retrying(&mut storage, &persist, &done, disk_full)
                else {
                    // Shutting down with the disk still full: the Ready never became
                    // durable, and its messages are not sent.
                    return;
                };
                let result = result.map(|()| Persisted {
                    messages: persist.messages,
                    pending,
                });
                let failed = result.is_err();
                if done.blocking_send(result).is_err() || failed {
                    return;
                }
            }
            StorageJob::SaveSnapshot(snapshot) => {
                if let Err(e) = storage.save_snapshot(&snapshot) {
                    // The log still holds everything the snapshot covers: not fatal.
                    warn!(error = %e, index = snapshot.meta.index, "could not save snapshot");
                } else {
                    info!(index = snapshot.meta.index, "snapshot saved, log compacted");
                }
            }
        }
    }
    if let Err(e) = storage.sync_log() {
        warn!(error = %e, "could not sync the log at shutdown");
    }
}
