//! The client library: one sequential client of the cluster.
//!
//! A [`KvClient`] registers a session with the cluster before its first operation (the
//! session id comes from the log, so it is unique for the cluster's whole life) and keeps a
//! sequence number. Each operation gets the next sequence number and is retried with the
//! SAME `(session, seq)` until it gets an answer or its deadline passes: the nodes' sessions
//! make a retried request take effect at most once and return the original answer. When the
//! cluster answers that the session expired, the client registers again before its next
//! operation.
//!
//! How an operation ends ([`OpResult`]), decided by the pure [`Classifier`]:
//! - `Ok`: a `Done` answer that took effect (a read's value, a write, a matching cas, an
//!   append).
//! - `Fail`: certainly no effect: a cas whose expected value did not match, an append to a
//!   number, a value above the cluster's limit, no session could be registered, or every
//!   attempt was refused before anything was proposed (not sent, not the leader, refused,
//!   session expired: an expired session's request is not applied). Reads have no effect,
//!   so a read that does not complete is `Fail`.
//! - `Info`: the outcome is unknown: some attempt may have been proposed (`Unknown` answer,
//!   or the request was sent and no answer came), and no later attempt told us the outcome
//!   before the deadline. A "stale" or "session expired" answer after such an attempt is
//!   `Info` too: that copy was not applied, but the earlier one may have been.
//!
//! Where each attempt goes and how long it may take is the pure [`policy`]: an attempt that
//! gets no connection or no answer within a short time sends the client on to the next node,
//! and a node that just failed is not asked first again for a short back-off.

pub mod admin;
pub mod etcd;
pub mod policy;
pub mod status;
pub mod system;

use model::core::NodeId;
use model::kv::{Command, Operation, Outcome, Value};
use model::sim::rng::mix;
use node::config::{ClusterConfig, NodeEntry};
use node::protocol::{NodeStatus, Request, Response};
use node::transport::{CallError, ClientConnector};
use policy::{Suspects, Timing, View, Walk};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, trace};

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// Took effect (or, for a read, was served) with this outcome.
    Ok(Outcome),
    /// Certainly had no effect: why, and the node's answer when it gave one (a cas
    /// mismatch names the current value).
    Fail {
        reason: String,
        outcome: Option<Outcome>,
    },
    /// May or may not have taken effect; why.
    Info(String),
}

/// Errors of the client library outside operations.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot set up the client: {0}")]
    Setup(String),
    #[error("node {0} is not in the cluster configuration")]
    UnknownNode(NodeId),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("node {node}: unexpected answer to status: {answer}")]
    Unexpected { node: NodeId, answer: String },
    #[error("no leader within {0:?}: {1}")]
    NoLeader(Duration, String),
}

/// One attempt's result, as the classifier sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The node answered.
    Reply(Response),
    /// Certainly not delivered.
    NotSent(String),
    /// Sent, no answer: the request may have been proposed.
    NoAnswer(String),
}

impl From<Result<Response, CallError>> for Attempt {
    fn from(r: Result<Response, CallError>) -> Self {
        match r {
            Ok(response) => Attempt::Reply(response),
            Err(e) if e.is_unknown_outcome() => Attempt::NoAnswer(e.to_string()),
            Err(e) => Attempt::NotSent(e.to_string()),
        }
    }
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Finish(OpResult),
    /// Try again with the same `(session, seq)`; the node asked is not (or no longer) the
    /// leader to go to first.
    Retry {
        /// The leader the node named, if any (its address when the node knew it).
        hint: Option<(NodeId, Option<String>)>,
        /// The node gave no usable answer (no connection, no answer, refused, outcome
        /// unknown): skip it for a while. A redirect is an answer from a live node.
        suspect: bool,
    },
}

/// Decides how an operation ends from its attempts, one at a time. Pure: no I/O, no clock.
#[derive(Clone, Debug)]
pub struct Classifier {
    read: bool,
    /// Why the outcome is uncertain, once some attempt may have been proposed.
    uncertain: Option<String>,
    last: String,
}

impl Classifier {
    pub fn new(read: bool) -> Self {
        Classifier {
            read,
            uncertain: None,
            last: "no attempt before the deadline".into(),
        }
    }

    /// Whether some attempt may have taken effect.
    pub fn is_uncertain(&self) -> bool {
        self.uncertain.is_some()
    }

    pub fn observe(&mut self, attempt: Attempt) -> Next {
        let retry = |suspect| Next::Retry {
            hint: None,
            suspect,
        };
        match attempt {
            Attempt::Reply(Response::Done(outcome)) => match outcome {
                Outcome::Value(_)
                | Outcome::Written
                | Outcome::Appended { .. }
                | Outcome::Registered { .. } => Next::Finish(OpResult::Ok(outcome)),
                // The real answer (from the session if an earlier attempt was applied):
                // certainly no effect.
                Outcome::CasMismatch { ref current } => Next::Finish(OpResult::Fail {
                    reason: format!("cas mismatch: current value is {}", show(current.as_ref())),
                    outcome: Some(outcome.clone()),
                }),
                Outcome::NotAString => Next::Finish(OpResult::Fail {
                    reason: "append to a key holding an integer".into(),
                    outcome: Some(outcome),
                }),
                Outcome::TooLarge { size, limit } => Next::Finish(OpResult::Fail {
                    reason: format!(
                        "the value would be {size} bytes, above the cluster's limit of \
                         {limit} (sessions.max_value_bytes)"
                    ),
                    outcome: Some(outcome),
                }),
                // A newer request of this client was applied: this copy was not, but an
                // earlier one may have been.
                Outcome::Stale => {
                    self.last = "stale request".into();
                    Next::Finish(self.give_up())
                }
                // The session is gone: this copy was not applied and no later one will be;
                // an earlier copy may have been (then the operation is `info`).
                Outcome::SessionExpired => {
                    self.last = "session expired".into();
                    Next::Finish(self.give_up())
                }
            },
            Attempt::Reply(Response::NotLeader { leader, addr }) => {
                self.last = match leader {
                    Some(l) => format!("not the leader (leader: node {l})"),
                    None => "not the leader (leader unknown)".into(),
                };
                Next::Retry {
                    hint: leader.map(|l| (l, addr)),
                    suspect: false,
                }
            }
            Attempt::Reply(Response::Refused(why)) => {
                self.last = format!("refused: {why}");
                retry(true)
            }
            Attempt::Reply(Response::Unknown(why)) => {
                self.last = format!("outcome unknown: {why}");
                self.uncertain = Some(self.last.clone());
                retry(true)
            }
            Attempt::Reply(
                Response::Status(_) | Response::Committed { .. } | Response::Transferring,
            ) => {
                // A confused node: whatever it did with the request is unknown.
                self.last = "protocol error: an operator's answer to an operation".into();
                self.uncertain = Some(self.last.clone());
                retry(true)
            }
            Attempt::NotSent(why) => {
                self.last = why;
                retry(true)
            }
            Attempt::NoAnswer(why) => {
                self.last = why;
                self.uncertain = Some(self.last.clone());
                retry(true)
            }
        }
    }

    /// The deadline passed: `info` if some attempt may have taken effect (never for reads),
    /// else `fail`.
    pub fn give_up(&self) -> OpResult {
        match (&self.uncertain, self.read) {
            (Some(why), false) => OpResult::Info(if *why == self.last {
                why.clone()
            } else {
                format!("{why}; then: {}", self.last)
            }),
            _ => OpResult::Fail {
                reason: self.last.clone(),
                outcome: None,
            },
        }
    }
}

/// How a sequence of attempts ends when the deadline passes after the last one.
pub fn classify(read: bool, attempts: impl IntoIterator<Item = Attempt>) -> OpResult {
    let mut c = Classifier::new(read);
    for a in attempts {
        if let Next::Finish(result) = c.observe(a) {
            return result;
        }
    }
    c.give_up()
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "null".into(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Str(s)) => format!("{s:?}"),
    }
}

/// A new client id: a random start per lab process plus a counter, so ids never repeat
/// within a process and practically never across runs against the same cluster; in the
/// namespace of the shared client certificate, the one the lab presents (nodes refuse ids
/// outside the namespace of the certificate they come with, `node::certs::client_namespace`).
/// A [`KvClient`]'s id names it in logs and picks the first node it tries; the session id its
/// requests carry comes from the cluster when it registers.
pub fn fresh_client_id() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        mix(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let local = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed) + 1);
    node::certs::client_id(node::certs::SHARED_CLIENT_NAMESPACE, local)
}

/// A cluster as clients see it: one shared connector (one QUIC connection per node), the
/// nodes' addresses, the last leader anybody found, and the nodes that just failed somebody.
#[derive(Clone)]
pub struct KvCluster {
    connector: Arc<ClientConnector>,
    nodes: Arc<Vec<NodeEntry>>,
    /// The nodes' ids, in configuration order (what the policy picks from).
    ids: Arc<Vec<NodeId>>,
    leader: Arc<Mutex<Option<NodeId>>>,
    suspects: Arc<Mutex<Suspects>>,
    /// Longest single call (the node answers `Unknown` after its request timeout).
    call_timeout: Duration,
    timing: Timing,
    /// The client id namespace of the certificate presented: sessions are registered in it.
    namespace: u64,
}

impl KvCluster {
    /// Loads the client certificate from the configuration's certificate directory. Must be
    /// called inside a tokio runtime.
    pub fn connect(config: &ClusterConfig) -> Result<KvCluster, ClientError> {
        let connector = ClientConnector::new(&config.tls.certs_dir)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(KvCluster::with_connector(Arc::new(connector), config))
    }

    pub fn with_connector(connector: Arc<ClientConnector>, config: &ClusterConfig) -> KvCluster {
        KvCluster {
            connector,
            nodes: Arc::new(config.nodes.clone()),
            ids: Arc::new(config.nodes.iter().map(|n| n.id).collect()),
            leader: Arc::new(Mutex::new(None)),
            suspects: Arc::new(Mutex::new(Suspects::default())),
            call_timeout: config.request_timeout() + Duration::from_secs(1),
            timing: Timing::default(),
            namespace: node::certs::SHARED_CLIENT_NAMESPACE,
        }
    }

    /// The same cluster, reached with a certificate whose client id namespace is `namespace`
    /// (`node::certs::client_namespace` of its identity).
    pub fn with_namespace(mut self, namespace: u64) -> KvCluster {
        self.namespace = namespace;
        self
    }

    /// The same cluster (the leader found, the nodes suspected shared with this one),
    /// reached over another connector: clients made from it use that connector's
    /// connections. A node admits a bounded number of concurrent requests per connection
    /// (`transport.max_client_streams`), so a load of many clients spreads over several.
    pub fn over(&self, connector: Arc<ClientConnector>) -> KvCluster {
        KvCluster {
            connector,
            ..self.clone()
        }
    }

    /// The same cluster, whose clients wait on a node as `timing` says.
    pub fn with_timing(mut self, timing: Timing) -> KvCluster {
        self.timing = timing;
        self
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    /// The shared connector (for status calls of the cluster launcher).
    pub fn connector(&self) -> &Arc<ClientConnector> {
        &self.connector
    }

    /// A client with a fresh id whose operations give up after `op_timeout`. Each operation
    /// goes first to the last leader anybody found.
    pub fn client(&self, op_timeout: Duration) -> KvClient {
        self.client_at(None, op_timeout)
    }

    /// A client bound to node `home` (Jepsen's clients: one node per process): each
    /// operation goes to `home` first and follows its redirect, so followers and deposed
    /// leaders get requests too (a node that serves what it should refuse is caught). While
    /// `home` is in its back-off after a failure, operations start at the last known leader
    /// instead.
    pub fn client_at(&self, home: Option<NodeId>, op_timeout: Duration) -> KvClient {
        let id = fresh_client_id();
        KvClient {
            cluster: self.clone(),
            id,
            session: None,
            expired_session: false,
            seq: 0,
            rr: (id as usize) % self.nodes.len().max(1),
            home: home.filter(|h| self.nodes.iter().any(|n| n.id == *h)),
            home_failed: Suspects::default(),
            op_timeout,
        }
    }

    /// The status of node `node`.
    pub async fn status(&self, node: NodeId) -> Result<NodeStatus, ClientError> {
        let entry = self
            .nodes
            .iter()
            .find(|n| n.id == node)
            .ok_or(ClientError::UnknownNode(node))?;
        let timeout = Duration::from_secs(2).min(self.call_timeout);
        match self
            .connector
            .call(node, &entry.addr, &Request::Status, timeout)
            .await?
        {
            Response::Status(s) => Ok(s),
            other => Err(ClientError::Unexpected {
                node,
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Polls every node (concurrently) until exactly one reports itself leader; returns its
    /// id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no node answered");
        loop {
            let mut polls = tokio::task::JoinSet::new();
            for n in self.nodes.iter() {
                let cluster = self.clone();
                let id = n.id;
                polls.spawn(async move { cluster.status(id).await });
            }
            let mut leaders = Vec::new();
            while let Some(joined) = polls.join_next().await {
                let Ok(answer) = joined else { continue };
                match answer {
                    Ok(s) if s.role == "leader" => leaders.push(s.id),
                    Ok(s) => last = format!("node {} is {} in term {}", s.id, s.role, s.term),
                    Err(e) => last = e.to_string(),
                }
            }
            if let [leader] = leaders.as_slice() {
                self.remember(Some(*leader));
                return Ok(*leader);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoLeader(timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.connector.close().await;
    }

    fn known_leader(&self) -> Option<NodeId> {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, leader: Option<NodeId>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = leader;
    }

    fn forget(&self, node: NodeId) {
        let mut l = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if *l == Some(node) {
            *l = None;
        }
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, Suspects> {
        self.suspects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn addr_of(&self, node: NodeId) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.addr.clone())
    }
}

/// One sequential client: at most one operation in flight.
pub struct KvClient {
    cluster: KvCluster,
    id: u64,
    /// The session registered with the cluster; none before the first operation and after
    /// the cluster said it expired.
    session: Option<u64>,
    /// Some attempt of the last call was answered "session expired".
    expired_session: bool,
    seq: u64,
    /// Where the round-robin over the nodes continues when no leader is known.
    rr: usize,
    /// The node each operation starts at, if bound to one.
    home: Option<NodeId>,
    /// This client's own memory of failures at `home` (see [`Walk::start`]).
    home_failed: Suspects,
    op_timeout: Duration,
}

impl KvClient {
    /// The client's own id (see [`fresh_client_id`]), not its session's.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn cluster(&self) -> &KvCluster {
        &self.cluster
    }

    /// The status of node `node`.
    pub async fn status(&self, node: NodeId) -> Result<NodeStatus, ClientError> {
        self.cluster.status(node).await
    }

    /// The session this client uses, once registered.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Runs `op` to completion: registers a session first if the client has none, then
    /// finds the leader, follows redirects, retries the same `(session, seq)` until an
    /// answer or the operation deadline; each attempt at a node waits only as long as the
    /// [`Timing`] allows before the next node is tried.
    pub async fn execute(&mut self, op: Operation) -> OpResult {
        let deadline = Instant::now() + self.op_timeout;
        let session = match self.session {
            Some(session) => session,
            None => match self.register(deadline).await {
                Ok(session) => session,
                // The operation itself was never sent.
                Err(reason) => {
                    return OpResult::Fail {
                        reason,
                        outcome: None,
                    }
                }
            },
        };
        self.seq += 1;
        let read = matches!(op, Operation::Read { .. });
        let command = Command {
            client: session,
            seq: self.seq,
            op,
            time_ms: 0,
        };
        let result = self.call(command, read, deadline).await;
        if self.expired_session {
            // Register again before the next operation.
            self.session = None;
        }
        result
    }

    /// Registers a new session (a log entry); a retried registration may open a second
    /// session, which is never used and expires.
    async fn register(&mut self, deadline: Instant) -> Result<u64, String> {
        let command = Command {
            client: node::certs::client_id(self.cluster.namespace, 0),
            seq: 0,
            op: Operation::Register,
            time_ms: 0,
        };
        match self.call(command, false, deadline).await {
            OpResult::Ok(Outcome::Registered { session }) => {
                self.session = Some(session);
                self.seq = 0;
                Ok(session)
            }
            OpResult::Ok(other) => Err(format!("registration answered {other:?}")),
            OpResult::Fail { reason, .. } | OpResult::Info(reason) => {
                Err(format!("could not register a session: {reason}"))
            }
        }
    }

    /// Sends `command` until an answer or `deadline`: follows redirects, retries the same
    /// command.
    async fn call(&mut self, command: Command, read: bool, deadline: Instant) -> OpResult {
        self.expired_session = false;
        let request = Request::Op(command);
        let timing = self.cluster.timing;
        let mut classifier = Classifier::new(read);
        let mut walk = Walk::default();
        let first = {
            let suspects = self.cluster.suspects();
            let view = view(&self.cluster.ids, &suspects);
            let home = self
                .home
                .filter(|&h| !self.home_failed.is_suspect(h, view.now));
            walk.start(&view, home, self.cluster.known_leader(), &mut self.rr)
        };
        let Some(mut node) = first else {
            return OpResult::Fail {
                reason: "the cluster has no nodes".into(),
                outcome: None,
            };
        };
        // The address a redirect named for `node`, which wins over the configuration's.
        let mut hinted_addr: Option<String> = None;
        let mut misses: u32 = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return classifier.give_up();
            }
            let Some(addr) = hinted_addr.take().or_else(|| self.cluster.addr_of(node)) else {
                return OpResult::Fail {
                    reason: format!("node {node} has no address"),
                    outcome: None,
                };
            };
            let limit = (deadline - now).min(self.cluster.call_timeout);
            let timeout = walk.timeout(node, &timing, limit);
            let attempt: Attempt = self
                .cluster
                .connector
                .call_with(node, &addr, &request, timing.connect_timeout, timeout)
                .await
                .into();
            trace!(client = self.id, seq = self.seq, node, ?attempt, "attempt");
            if matches!(attempt, Attempt::NoAnswer(_)) {
                walk.unanswered(node);
            }
            self.expired_session |= matches!(
                attempt,
                Attempt::Reply(Response::Done(Outcome::SessionExpired))
            );
            match classifier.observe(attempt) {
                Next::Finish(result) => {
                    self.cluster.suspects().clear(node);
                    self.home_failed.clear(node);
                    // Only a write proves leadership: a buggy follower may serve reads.
                    let proves = !read
                        && matches!(
                            result,
                            OpResult::Ok(_)
                                | OpResult::Fail {
                                    outcome: Some(_),
                                    ..
                                }
                        );
                    if proves {
                        self.cluster.remember(Some(node));
                    }
                    return result;
                }
                Next::Retry { hint, suspect } => {
                    self.cluster.forget(node);
                    misses += 1;
                    let leader = hint.as_ref().map(|(l, _)| *l);
                    let step = {
                        let mut suspects = self.cluster.suspects();
                        let now = std::time::Instant::now();
                        if suspect {
                            suspects.fail(node, now, timing.node_backoff);
                            if Some(node) == self.home {
                                self.home_failed.fail(node, now, timing.node_backoff);
                            }
                        } else {
                            suspects.clear(node);
                            self.home_failed.clear(node);
                        }
                        let view = view(&self.cluster.ids, &suspects);
                        walk.next(&view, node, !suspect, leader, &mut self.rr)
                    };
                    let Some(step) = step else {
                        return classifier.give_up();
                    };
                    if step.at_once {
                        // A fresh leader hint: follow it at once, but do not ping-pong
                        // between two nodes that name each other forever.
                        self.cluster.remember(Some(step.node));
                        hinted_addr = hint.and_then(|(l, a)| a.filter(|_| l == step.node));
                        if misses > 3 {
                            backoff(misses, deadline).await;
                        }
                    } else {
                        debug!(
                            client = self.id,
                            seq = self.seq,
                            node,
                            next = step.node,
                            "retrying elsewhere"
                        );
                        backoff(misses, deadline).await;
                    }
                    node = step.node;
                }
            }
        }
    }
}

/// What the policy sees now.
fn view<'a>(nodes: &'a [NodeId], suspects: &'a Suspects) -> View<'a> {
    View {
        nodes,
        suspects,
        now: std::time::Instant::now(),
    }
}

/// Exponential backoff from 10 ms to 100 ms, never past the deadline: short, because while a
/// new leader is being elected the next node's redirect is the fastest way to learn of it.
async fn backoff(misses: u32, deadline: Instant) {
    let ms = 10u64 << misses.min(5).saturating_sub(1);
    let until = (Instant::now() + Duration::from_millis(ms.min(100))).min(deadline);
    tokio::time::sleep_until(until).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(o: Outcome) -> Attempt {
        Attempt::Reply(Response::Done(o))
    }
    fn not_leader(l: Option<u64>) -> Attempt {
        Attempt::Reply(Response::NotLeader {
            leader: l,
            addr: l.map(|l| format!("127.0.0.{l}:1")),
        })
    }
    fn unknown() -> Attempt {
        Attempt::Reply(Response::Unknown("timed out".into()))
    }
    fn refused() -> Attempt {
        Attempt::Reply(Response::Refused("overloaded".into()))
    }
    fn not_sent() -> Attempt {
        Attempt::NotSent("no connection".into())
    }
    fn no_answer() -> Attempt {
        Attempt::NoAnswer("stream reset".into())
    }

    fn is_ok(r: &OpResult) -> bool {
        matches!(r, OpResult::Ok(_))
    }
    fn is_fail(r: &OpResult) -> bool {
        matches!(r, OpResult::Fail { .. })
    }
    fn is_info(r: &OpResult) -> bool {
        matches!(r, OpResult::Info(_))
    }

    #[test]
    fn done_is_ok_after_anything() {
        for prefix in [
            vec![],
            vec![not_sent()],
            vec![unknown(), no_answer()],
            vec![not_leader(Some(2))],
        ] {
            let mut seq = prefix.clone();
            seq.push(done(Outcome::Written));
            assert!(is_ok(&classify(false, seq)), "{prefix:?}");
        }
        assert_eq!(
            classify(true, [done(Outcome::Value(Some(Value::Int(3))))]),
            OpResult::Ok(Outcome::Value(Some(Value::Int(3))))
        );
    }

    #[test]
    fn certain_no_effect_is_fail() {
        assert!(is_fail(&classify(
            false,
            [not_sent(), not_leader(None), refused(), not_leader(Some(3))]
        )));
        assert!(is_fail(&classify(false, [])));
        assert!(is_fail(&classify(
            false,
            [done(Outcome::CasMismatch { current: None })]
        )));
        assert!(is_fail(&classify(false, [done(Outcome::NotAString)])));
        // The real answer after an uncertain attempt: the session returned the result.
        assert!(is_fail(&classify(
            false,
            [
                unknown(),
                done(Outcome::CasMismatch {
                    current: Some(Value::Int(1))
                })
            ]
        )));
    }

    #[test]
    fn any_uncertain_attempt_without_an_answer_is_info() {
        assert!(is_info(&classify(false, [unknown()])));
        assert!(is_info(&classify(false, [no_answer()])));
        assert!(is_info(&classify(
            false,
            [not_sent(), no_answer(), not_sent(), refused()]
        )));
        assert!(is_info(&classify(
            false,
            [unknown(), not_leader(None), not_leader(Some(1))]
        )));
        assert!(is_info(&classify(
            false,
            [Attempt::Reply(Response::Unknown("x".into())), not_sent()]
        )));
        assert!(is_info(&classify(false, [unknown(), done(Outcome::Stale)])));
    }

    #[test]
    fn session_expired_is_fail_unless_an_earlier_attempt_may_have_been_applied() {
        assert!(is_fail(&classify(false, [done(Outcome::SessionExpired)])));
        assert!(is_fail(&classify(
            false,
            [
                not_leader(Some(2)),
                refused(),
                done(Outcome::SessionExpired)
            ]
        )));
        // The first copy may have been applied before the session expired: never `fail`.
        assert!(is_info(&classify(
            false,
            [no_answer(), done(Outcome::SessionExpired)]
        )));
        assert!(is_fail(&classify(
            true,
            [no_answer(), done(Outcome::SessionExpired)]
        )));
    }

    #[test]
    fn appends_and_registrations_are_ok_and_too_large_is_fail_naming_the_limit() {
        assert!(is_ok(&classify(
            false,
            [done(Outcome::Appended { len: 3 })]
        )));
        assert!(is_ok(&classify(
            false,
            [unknown(), done(Outcome::Registered { session: 9 })]
        )));
        match classify(false, [done(Outcome::TooLarge { size: 5, limit: 4 })]) {
            OpResult::Fail { reason, .. } => assert!(reason.contains("limit of 4"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_never_end_info() {
        assert!(is_fail(&classify(true, [unknown()])));
        assert!(is_fail(&classify(true, [no_answer(), not_sent()])));
        assert!(is_fail(&classify(true, [done(Outcome::Stale)])));
    }

    #[test]
    fn retries_follow_hints() {
        let mut c = Classifier::new(false);
        assert_eq!(
            c.observe(not_leader(Some(4))),
            Next::Retry {
                hint: Some((4, Some("127.0.0.4:1".into()))),
                suspect: false
            }
        );
        assert!(!c.is_uncertain());
        assert!(matches!(
            c.observe(no_answer()),
            Next::Retry { hint: None, .. }
        ));
        assert!(c.is_uncertain());
    }

    #[test]
    fn only_a_redirect_leaves_the_node_trusted() {
        let suspect = |a: Attempt| match Classifier::new(false).observe(a) {
            Next::Retry { suspect, .. } => suspect,
            Next::Finish(r) => panic!("finished: {r:?}"),
        };
        assert!(!suspect(not_leader(Some(2))));
        assert!(!suspect(not_leader(None)));
        assert!(suspect(not_sent()));
        assert!(suspect(no_answer()));
        assert!(suspect(unknown()));
        assert!(suspect(refused()));
    }

    #[test]
    fn an_attempt_abandoned_for_another_node_keeps_the_outcome_open() {
        // Sent to the old leader, given up on after the attempt timeout: a possible effect.
        // The next node's answer for the same (client, seq) tells the outcome.
        assert!(is_ok(&classify(
            false,
            [no_answer(), not_leader(Some(3)), done(Outcome::Written)]
        )));
        assert!(is_fail(&classify(
            false,
            [
                no_answer(),
                not_leader(Some(3)),
                done(Outcome::CasMismatch { current: None })
            ]
        )));
        // Nobody tells it before the deadline: info, never fail.
        assert!(is_info(&classify(
            false,
            [
                no_answer(),
                not_leader(Some(1)),
                not_sent(),
                not_leader(None)
            ]
        )));
    }

    #[test]
    fn client_ids_are_unique() {
        let a = fresh_client_id();
        let b = fresh_client_id();
        assert_ne!(a, b);
    }
}
