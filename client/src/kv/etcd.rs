//! The client library for an etcd v3 cluster, on the `etcd-client` crate (gRPC over mutual
//! TLS): one sequential client per process, classified as Jepsen's etcd client does.
//!
//! - read = `Range`: linearizable (etcd's default), or served from the member's own state
//!   with [`ReadConsistency::Serializable`] (etcd's `serializable` option); write = `Put`, cas = a `Txn` comparing
//!   the value (or, for an absent key, its version 0) and then putting the new one, else
//!   reading the current value.
//! - `Ok`: the answer came. `Fail`: certainly no effect: a read that does not complete (reads
//!   have no effect), a failed comparison, an operation etcd has no counterpart for (append),
//!   a client that could not be set up, or a request etcd refused as invalid or not permitted.
//!   `Info`: a write or cas sent without an answer in time, or answered unavailable, cancelled
//!   or with an unknown error: it may have taken effect.
//!
//! Values are stored as text: integers in decimal, strings as they are.

use super::OpResult;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse,
};
use model::core::NodeId;
use model::kv::{Operation, Outcome, Value};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;
use tokio::time::timeout;

/// How long a client may take to set up its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How reads are served (`read_consistency` in workload files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Every read reflects every write completed before it (etcd's default `Range`; the only
    /// reads raftlab serves).
    #[default]
    Linearizable,
    /// Served from the contacted member's local state, without asking the leader (etcd's
    /// `serializable` `Range`): a member behind the others, or cut off from them, answers
    /// with what it has.
    Serializable,
}

impl ReadConsistency {
    /// The name in workload files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Serializable => "serializable",
        }
    }
}

/// The client certificate of an etcd cluster could not be read.
#[derive(Debug, Error)]
#[error("the etcd client certificate in {dir}: {reason}")]
pub struct EtcdClientError {
    pub dir: String,
    pub reason: String,
}

/// A connection to an etcd cluster could not be set up.
#[derive(Debug, Error)]
#[error("cannot connect to etcd at {endpoints}: {reason}")]
pub struct EtcdConnectError {
    pub endpoints: String,
    pub reason: String,
}

/// An etcd cluster as its clients see it: the members' client URLs and the TLS settings.
#[derive(Clone)]
pub struct EtcdKv {
    members: Vec<(NodeId, String)>,
    tls: TlsOptions,
    reads: ReadConsistency,
}

impl EtcdKv {
    /// `members`: `(id, https://ip:port)`; `certs`: the CA (`ca.pem`) and the client
    /// certificate (`client.pem`, `client.key`) the members trust.
    pub fn new(members: Vec<(NodeId, String)>, certs: &Path) -> Result<EtcdKv, EtcdClientError> {
        let read = |file: &str| {
            std::fs::read(certs.join(file)).map_err(|e| EtcdClientError {
                dir: certs.display().to_string(),
                reason: format!("{file}: {e}"),
            })
        };
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(node::certs::CA_CERT)?))
            .identity(Identity::from_pem(
                read(node::certs::CLIENT_CERT)?,
                read(node::certs::CLIENT_KEY)?,
            ));
        Ok(EtcdKv {
            members,
            tls,
            reads: ReadConsistency::default(),
        })
    }

    /// Reads served as `reads` says (linearizable unless told otherwise).
    pub fn with_reads(mut self, reads: ReadConsistency) -> EtcdKv {
        self.reads = reads;
        self
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    /// The client URLs of member `home` only, or of every member.
    fn endpoints(&self, home: Option<NodeId>) -> Vec<String> {
        self.members
            .iter()
            .filter(|(id, _)| home.is_none_or(|h| h == *id))
            .map(|(_, url)| url.clone())
            .collect()
    }

    /// A client of member `home` only, or of every member.
    pub fn client_at(&self, home: Option<NodeId>, op_timeout: Duration) -> EtcdKvClient {
        EtcdKvClient {
            endpoints: self.endpoints(home),
            tls: self.tls.clone(),
            client: None,
            op_timeout,
            reads: self.reads,
        }
    }

    /// A gRPC connection to member `home` only, or to every member, for several clients to
    /// share ([`EtcdKv::client_on`]).
    pub async fn connect(
        &self,
        home: Option<NodeId>,
        op_timeout: Duration,
    ) -> Result<Client, EtcdConnectError> {
        let endpoints = self.endpoints(home);
        connect(endpoints.clone(), self.tls.clone(), op_timeout)
            .await
            .map_err(|reason| EtcdConnectError {
                endpoints: endpoints.join(","),
                reason,
            })
    }

    /// A client whose requests go over `connection` (from [`EtcdKv::connect`]), which other
    /// clients may share.
    pub fn client_on(&self, connection: Client, op_timeout: Duration) -> EtcdKvClient {
        EtcdKvClient {
            endpoints: Vec::new(),
            tls: self.tls.clone(),
            client: Some(connection),
            op_timeout,
            reads: self.reads,
        }
    }
}

/// Connects to `endpoints` within [`CONNECT_TIMEOUT`]; why not, when it fails.
async fn connect(
    endpoints: Vec<String>,
    tls: TlsOptions,
    op_timeout: Duration,
) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(op_timeout);
    match timeout(CONNECT_TIMEOUT, Client::connect(endpoints, Some(options))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".into()),
    }
}

/// One sequential client of an etcd cluster (connected on its first operation).
pub struct EtcdKvClient {
    endpoints: Vec<String>,
    tls: TlsOptions,
    client: Option<Client>,
    op_timeout: Duration,
    reads: ReadConsistency,
}

/// How a request ended, before classification.
#[derive(Debug)]
enum Failure {
    /// Nothing was sent.
    NotSent(String),
    /// No answer within the operation's timeout.
    Timeout,
    /// etcd (or gRPC) answered with an error.
    Status { definite: bool, message: String },
}

impl EtcdKvClient {
    async fn connected(&mut self) -> Result<Client, Failure> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = connect(self.endpoints.clone(), self.tls.clone(), self.op_timeout)
            .await
            .map_err(Failure::NotSent)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Runs `op` once and classifies it.
    pub async fn execute(&mut self, op: Operation) -> OpResult {
        let read = matches!(op, Operation::Read { .. });
        match self.attempt(&op).await {
            Ok(result) => result,
            Err(failure) => classify(read, failure),
        }
    }

    async fn attempt(&mut self, op: &Operation) -> Result<OpResult, Failure> {
        let mut client = self.connected().await?;
        let limit = self.op_timeout;
        match op {
            Operation::Read { key } => {
                let options = match self.reads {
                    ReadConsistency::Linearizable => None,
                    ReadConsistency::Serializable => Some(GetOptions::new().with_serializable()),
                };
                let answer = within(limit, client.get(key.as_str(), options)).await?;
                let value = answer.kvs().first().map(|kv| decode(kv.value()));
                Ok(OpResult::Ok(Outcome::Value(value)))
            }
            Operation::Write { key, value } => {
                within(limit, client.put(key.as_str(), encode(value), None)).await?;
                Ok(OpResult::Ok(Outcome::Written))
            }
            Operation::Cas { key, expected, new } => {
                let compare = match expected {
                    Some(v) => Compare::value(key.as_str(), CompareOp::Equal, encode(v)),
                    None => Compare::version(key.as_str(), CompareOp::Equal, 0),
                };
                let txn = Txn::new()
                    .when([compare])
                    .and_then([TxnOp::put(key.as_str(), encode(new), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                let answer = within(limit, client.txn(txn)).await?;
                if answer.succeeded() {
                    return Ok(OpResult::Ok(Outcome::Written));
                }
                let current = answer.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| decode(kv.value()))),
                    _ => None,
                });
                Ok(OpResult::Fail {
                    reason: "the comparison failed".into(),
                    outcome: Some(Outcome::CasMismatch {
                        current: current.flatten(),
                    }),
                })
            }
            Operation::Append { .. } | Operation::Register => Ok(OpResult::Fail {
                reason: "etcd has no counterpart of this operation".into(),
                outcome: None,
            }),
        }
    }
}

/// Awaits an etcd call for at most `limit`.
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Failure> {
    match timeout(limit, call).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(failure_of(e)),
    }
}

/// Whether an etcd error certainly means the request had no effect.
fn failure_of(e: etcd_client::Error) -> Failure {
    use etcd_client::Error;
    match e {
        Error::GRpcStatus(status) => Failure::Status {
            definite: definite_code(status.code()),
            message: status.message().to_string(),
        },
        Error::InvalidArgs(message) => Failure::NotSent(message),
        other => Failure::Status {
            definite: false,
            message: other.to_string(),
        },
    }
}

/// gRPC codes that refuse a request without applying it.
fn definite_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::AlreadyExists
            | Code::NotFound
    )
}

/// The outcome of a request that got no usable answer.
fn classify(read: bool, failure: Failure) -> OpResult {
    let fail = |reason: String| OpResult::Fail {
        reason,
        outcome: None,
    };
    match failure {
        Failure::NotSent(reason) => fail(reason),
        Failure::Status {
            definite: true,
            message,
        } => fail(message),
        // Reads have no effect: a read without an answer certainly changed nothing.
        Failure::Timeout if read => fail("timed out".into()),
        Failure::Status { message, .. } if read => fail(message),
        Failure::Timeout => OpResult::Info("timed out".into()),
        Failure::Status { message, .. } => OpResult::Info(message),
    }
}

fn encode(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.clone(),
    }
}

fn decode(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    text.parse()
        .map(Value::Int)
        .unwrap_or_else(|_| Value::Str(text.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_text() {
        for v in [Value::Int(-3), Value::Int(17), Value::Str("abc".into())] {
            assert_eq!(decode(encode(&v).as_bytes()), v);
        }
    }

    #[test]
    fn outcomes_as_jepsen_classifies_them() {
        let unavailable = || Failure::Status {
            definite: false,
            message: "unavailable".into(),
        };
        assert!(matches!(
            classify(false, Failure::Timeout),
            OpResult::Info(_)
        ));
        assert!(matches!(classify(false, unavailable()), OpResult::Info(_)));
        assert!(matches!(
            classify(true, Failure::Timeout),
            OpResult::Fail { .. }
        ));
        assert!(matches!(
            classify(true, unavailable()),
            OpResult::Fail { .. }
        ));
        assert!(matches!(
            classify(false, Failure::NotSent("refused".into())),
            OpResult::Fail { .. }
        ));
        let invalid = Failure::Status {
            definite: definite_code(tonic::Code::InvalidArgument),
            message: "bad".into(),
        };
        assert!(matches!(classify(false, invalid), OpResult::Fail { .. }));
        assert!(!definite_code(tonic::Code::Unavailable));
        assert!(!definite_code(tonic::Code::DeadlineExceeded));
    }
}
