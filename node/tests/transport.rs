//! Transport: certificates, mutual TLS identity rules, peer and client traffic over real
//! QUIC on loopback, malformed input, and property tests of the frame decoder.
//!
//! No sleeps as synchronisation: tests wait for messages, for closed connections, or for the
//! transport's event counter (`Transport::events`), each under a generous timeout that only
//! turns a hang into a failure.

use model::core::{
    Body, Campaign, Entry, EntryKind, Membership, MembershipChange, Message, NodeId, Snapshot,
    SnapshotMeta,
};
use model::kv::{Command, Operation, Outcome, Value};
use node::certs::{self, CertError};
use node::config::ClusterConfig;
use node::protocol::{
    self, NodeStatus, PeerFrame, PeerStatus, Request, Response, ALPN_CLIENT, PROTOCOL_VERSION,
};
use node::transport::framing::{self, Deadline, FrameError, MAX_FRAME};
use node::transport::{
    tls, CallError, ClientConnector, Inbound, Transport, CLOSE_PROTOCOL, CLOSE_REFUSED,
    CLOSE_REPLACED, CLOSE_TIMEOUT,
};
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

// ----- helpers -------------------------------------------------------------------------

/// Safety net only: a wait that exceeds it is a failure, never a synchronisation.
const PATIENCE: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "raftlab-transport-{}-{label}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback UDP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster of `n` nodes on loopback, its `cluster.toml`, and certificates in `certs/`.
struct Lab {
    dir: TempDir,
    config: ClusterConfig,
}

impl Lab {
    fn new(label: &str, n: u64) -> Lab {
        Lab::with_settings(label, n, "")
    }

    /// A lab whose `cluster.toml` ends with `settings` (a `[transport]` section, say).
    fn with_settings(label: &str, n: u64, settings: &str) -> Lab {
        let dir = TempDir::new(label);
        let mut toml = String::new();
        for id in 1..=n {
            toml += &format!(
                "[[node]]\nid = {id}\naddr = \"127.0.0.1:{}\"\n",
                free_port()
            );
        }
        toml += settings;
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, toml).unwrap();
        let config = ClusterConfig::load(&path).unwrap();
        certs::generate(&config, &config.tls.certs_dir, false).unwrap();
        Lab { dir, config }
    }

    fn certs(&self) -> PathBuf {
        self.config.tls.certs_dir.clone()
    }

    /// Another CA, with certificates for the same node ids and client.
    fn foreign_certs(&self) -> PathBuf {
        let out = self.dir.path().join("foreign");
        if !out.join(certs::CA_CERT).exists() {
            certs::generate(&self.config, &out, false).unwrap();
        }
        out
    }

    fn addr(&self, id: NodeId) -> String {
        self.config.node(id).unwrap().addr.clone()
    }

    async fn start(&self, id: NodeId) -> (Transport, Inbound) {
        Transport::start(&self.config, id, &self.certs())
            .await
            .unwrap()
    }
}

fn heartbeat(from: NodeId, to: NodeId, term: u64) -> Message<Command> {
    Message {
        from,
        to,
        term,
        body: Body::Append {
            prev_index: 3,
            prev_term: 1,
            entries: vec![],
            commit: 3,
            read_round: 7,
        },
    }
}

fn append(from: NodeId, to: NodeId, term: u64, key: &str) -> Message<Command> {
    Message {
        from,
        to,
        term,
        body: Body::Append {
            prev_index: 3,
            prev_term: 1,
            entries: vec![Entry {
                term,
                index: 4,
                kind: EntryKind::Command(Command {
                    client: 9,
                    seq: 1,
                    op: Operation::Write {
                        key: key.into(),
                        value: Value::Int(5),
                    },
                    time_ms: 0,
                }),
            }],
            commit: 3,
            read_round: 0,
        },
    }
}

async fn recv(rx: &mut mpsc::Receiver<Message<Command>>) -> Message<Command> {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("inbound channel closed")
}

/// Waits until `cond` holds, re-checking whenever the transport reports an event.
async fn until(t: &Transport, what: &str, cond: impl Fn(&Transport) -> bool) {
    let mut events = t.events();
    let wait = async {
        loop {
            if cond(t) {
                return;
            }
            if events.changed().await.is_err() {
                panic!("transport gone while waiting for {what}");
            }
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!(
            "timed out waiting for {what}; links {:?}, stats {:?}",
            t.peer_links(),
            t.stats()
        );
    }
}

fn link(t: &Transport, peer: NodeId) -> node::transport::PeerLinkStatus {
    t.peer_links().into_iter().find(|l| l.id == peer).unwrap()
}

/// Answers client calls like a runtime would; counts them.
fn stub_runtime(mut inbound: Inbound, me: NodeId) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    tokio::spawn(async move {
        while let Some(call) = inbound.clients.recv().await {
            count.fetch_add(1, Ordering::SeqCst);
            let response = match call.request {
                Request::Status => Response::Status(status(me)),
                Request::Op(_) => Response::Done(Outcome::Written),
                Request::ChangeMembership(_) => Response::Committed { index: 1 },
                Request::TransferLeadership(_) => Response::Transferring,
            };
            let _ = call.reply.send(response);
        }
    });
    calls
}

fn status(me: NodeId) -> NodeStatus {
    NodeStatus {
        id: me,
        role: "leader".into(),
        term: 1,
        leader: Some(me),
        commit_index: 0,
        applied_index: 0,
        last_index: 0,
        snapshot_index: 0,
        voters: vec![me],
        learners: vec![],
        peers: vec![],
        bugs: vec![],
        cert_not_after: Some(1_900_000_000),
    }
}

fn write_op(client: u64, seq: u64) -> Request {
    Request::Op(Command {
        client,
        seq,
        op: Operation::Write {
            key: "k".into(),
            value: Value::Int(seq as i64),
        },
        time_ms: 0,
    })
}

/// A bare QUIC endpoint for hand-made connections.
fn raw_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

async fn raw_connect(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    t: &Transport,
    server: NodeId,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    endpoint
        .connect_with(config, t.local_addr(), &certs::node_name(server))
        .unwrap()
        .await
}

// ----- certificates ----------------------------------------------------------------------

#[test]
fn certs_have_private_keys_0600_and_name_their_identity() {
    let dir = TempDir::new("certs");
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:15001\"\n\
                [[node]]\nid = 2\naddr = \"[::1]:15002\"\n\
                [[node]]\nid = 3\naddr = \"db3.example.net:15003\"\n";
    let config = ClusterConfig::parse(&dir.path().join("cluster.toml"), text).unwrap();
    let out = dir.path().join("certs");
    certs::generate(&config, &out, false).unwrap();

    for file in [
        "ca.key",
        "node-1.key",
        "node-2.key",
        "node-3.key",
        "client.key",
    ] {
        let mode = std::fs::metadata(out.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}: {mode:o}");
    }
    for file in [
        "ca.pem",
        "node-1.pem",
        "node-2.pem",
        "node-3.pem",
        "client.pem",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }

    let names = |identity: certs::Identity| tls::dns_names(&identity.chain[0]).unwrap();
    for id in 1..=3 {
        let got = names(certs::load_node_identity(&out, id).unwrap());
        assert!(got.contains(&certs::node_name(id)), "node {id}: {got:?}");
        assert!(!got.contains(&certs::CLIENT_NAME.to_string()), "{got:?}");
    }
    // The host of a DNS address is a DNS name too; IP hosts are IP SANs (not DNS names).
    let three = names(certs::load_node_identity(&out, 3).unwrap());
    assert!(three.contains(&"db3.example.net".to_string()), "{three:?}");
    let one = certs::load_node_identity(&out, 1).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&one.chain[0]).unwrap();
    let sans = parsed.subject_alternative_name().unwrap().unwrap();
    assert!(
        sans.value.general_names.iter().any(|n| matches!(
            n,
            x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1]
        )),
        "{:?}",
        sans.value.general_names
    );
    assert_eq!(
        names(certs::load_client_identity(&out).unwrap()),
        vec![certs::CLIENT_NAME.to_string()]
    );
    assert_eq!(certs::load_roots(&out).unwrap().len(), 1);

    // An existing CA is not replaced unless asked.
    let before = std::fs::read(out.join("ca.pem")).unwrap();
    let err = certs::generate(&config, &out, false).unwrap_err();
    assert!(matches!(err, CertError::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("ca.pem") && err.to_string().contains("--force"));
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), before);
    certs::generate(&config, &out, true).unwrap();
    assert_ne!(std::fs::read(out.join("ca.pem")).unwrap(), before);
    let mode = std::fs::metadata(out.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Missing and invalid files are named.
    let err = certs::load_node_identity(&out, 9).unwrap_err().to_string();
    assert!(err.contains("node-9.pem"), "{err}");
    std::fs::write(out.join("client.key"), "not a key").unwrap();
    let err = certs::load_client_identity(&out).unwrap_err().to_string();
    assert!(err.contains("client.key"), "{err}");
    std::fs::write(out.join("ca.pem"), "").unwrap();
    let err = certs::load_roots(&out).unwrap_err().to_string();
    assert!(err.contains("ca.pem"), "{err}");
}

#[tokio::test]
async fn a_node_refuses_to_start_with_another_nodes_certificate() {
    let lab = Lab::new("wrong-identity", 2);
    let certs = lab.certs();
    std::fs::copy(certs.join("node-2.pem"), certs.join("node-1.pem")).unwrap();
    std::fs::copy(certs.join("node-2.key"), certs.join("node-1.key")).unwrap();
    let err = Transport::start(&lab.config, 1, &certs)
        .await
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        err.contains("node-1.pem") && err.contains("node-1.raftlab"),
        "{err}"
    );
    let err = Transport::start(&lab.config, 7, &certs)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("node 7"), "{err}");
}

// ----- peers -----------------------------------------------------------------------------

#[tokio::test]
async fn two_nodes_exchange_messages_both_ways() {
    init_logs();
    let lab = Lab::new("exchange", 2);
    let (t1, mut in1) = lab.start(1).await;
    let (t2, mut in2) = lab.start(2).await;
    until(&t1, "node 1 connected to 2", |t| link(t, 2).connected).await;
    until(&t2, "node 2 connected to 1", |t| link(t, 1).connected).await;

    t1.send(2, vec![heartbeat(1, 2, 5), append(1, 2, 5, "a")]);
    assert_eq!(recv(&mut in2.peers).await, heartbeat(1, 2, 5));
    assert_eq!(recv(&mut in2.peers).await, append(1, 2, 5, "a"));

    t2.send(1, vec![heartbeat(2, 1, 6)]);
    assert_eq!(recv(&mut in1.peers).await, heartbeat(2, 1, 6));

    // A burst arrives complete and in order (batched into few frames).
    let burst: Vec<_> = (0..1000).map(|i| heartbeat(1, 2, 100 + i)).collect();
    t1.send(2, burst.clone());
    for expected in burst {
        assert_eq!(recv(&mut in2.peers).await, expected);
    }

    until(&t1, "node 1 connected to 2", |t| {
        t.peer_status() == vec![(2, true, 0)]
    })
    .await;
    until(&t2, "node 2 connected to 1", |t| {
        t.peer_status() == vec![(1, true, 0)]
    })
    .await;
    assert!(link(&t1, 2).sent >= 1002);
    assert_eq!(t2.stats().delivered, 1002);
    assert_eq!(t2.stats().refused_connections, 0);
}

/// Node 2 "crashes" (its runtime vanishes: no CONNECTION_CLOSE is sent) and restarts on the
/// same address. Node 1's old connection gets a stateless reset from the new process (the
/// reset key is derived from the node's key, so it is the same across restarts) instead of
/// waiting out the idle timeout, and the link comes back.
#[tokio::test]
async fn a_crashed_and_restarted_peer_is_reached_again() {
    init_logs();
    let lab = Arc::new(Lab::new("restart", 2));
    let (t1, _in1) = lab.start(1).await;

    // Node 2 on its own runtime and thread, so that it can die abruptly.
    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let (dead_tx, dead_rx) = tokio::sync::oneshot::channel();
    let lab2 = lab.clone();
    let node2 = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (t2, mut in2) = rt.block_on(lab2.start(2));
        let got = rt.block_on(async { recv(&mut in2.peers).await });
        let _ = up_tx.send(got);
        let _ = die_rx.recv();
        // The runtime goes first: its drivers never get to send a close.
        drop(rt);
        drop(in2);
        drop(t2);
        let _ = dead_tx.send(());
    });

    t1.send(2, vec![heartbeat(1, 2, 1)]);
    let got = tokio::time::timeout(PATIENCE, up_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, heartbeat(1, 2, 1));
    until(&t1, "link up", |t| link(t, 2).connected).await;

    die_tx.send(()).unwrap();
    tokio::time::timeout(PATIENCE, dead_rx)
        .await
        .unwrap()
        .unwrap();
    node2.join().unwrap();

    let (_t2, mut in2) = lab.start(2).await;
    // The old connection ends by a reset (not by the idle timeout, which would say
    // "timed out"), then the link comes back.
    until(&t1, "the old link reset", |t| {
        link(t, 2).last_error.is_some_and(|e| e.contains("reset"))
    })
    .await;
    until(&t1, "link up again", |t| link(t, 2).connected).await;
    t1.send(2, vec![heartbeat(1, 2, 2)]);
    assert_eq!(recv(&mut in2.peers).await, heartbeat(1, 2, 2));
}

#[tokio::test]
async fn a_peer_with_a_foreign_ca_is_refused() {
    init_logs();
    let lab = Lab::new("foreign-peer", 2);
    let foreign = lab.foreign_certs();
    let (t1, mut in1) = lab.start(1).await;
    let (t2, mut in2) = Transport::start(&lab.config, 2, &foreign).await.unwrap();

    t1.send(2, vec![heartbeat(1, 2, 1)]);
    t2.send(1, vec![heartbeat(2, 1, 1)]);
    until(&t1, "node 1 refuses and fails", |t| {
        t.stats().refused_connections >= 1 && link(t, 2).connect_failures >= 1
    })
    .await;
    until(&t2, "node 2 refuses and fails", |t| {
        t.stats().refused_connections >= 1 && link(t, 1).connect_failures >= 1
    })
    .await;
    assert!(!link(&t1, 2).connected && !link(&t2, 1).connected);
    let error = link(&t2, 1).last_error.unwrap();
    assert!(error.contains("handshake"), "{error}");
    assert!(in1.peers.try_recv().is_err(), "a message got through");
    assert!(in2.peers.try_recv().is_err(), "a message got through");

    // Server side alone: a client that trusts the real CA (so only node 1 judges) but
    // presents the foreign CA's certificate for node 2.
    let refused_before = t1.stats().refused_connections;
    let config = tls::peer_client_config(
        Arc::new(certs::load_roots(&lab.certs()).unwrap()),
        certs::load_node_identity(&foreign, 2).unwrap(),
    )
    .unwrap();
    let endpoint = raw_endpoint();
    if let Ok(conn) = raw_connect(&endpoint, config, &t1, 1).await {
        // TLS 1.3: the client may finish its side before the server checks its certificate.
        if let Ok(mut stream) = conn.open_uni().await {
            let _ = framing::write_frame(&mut stream, &PeerFrame::Hello { from: 2 }).await;
            let _ =
                framing::write_frame(&mut stream, &PeerFrame::Messages(vec![heartbeat(2, 1, 9)]))
                    .await;
        }
        let reason = tokio::time::timeout(PATIENCE, conn.closed()).await.unwrap();
        assert!(
            matches!(reason, quinn::ConnectionError::ConnectionClosed(_)),
            "{reason:?}"
        );
    }
    until(&t1, "the foreign certificate refused", |t| {
        t.stats().refused_connections > refused_before
    })
    .await;
    assert!(in1.peers.try_recv().is_err(), "a message got through");
    assert_eq!(t1.stats().delivered, 0);
}

#[tokio::test]
async fn a_hello_must_match_the_certificate_and_messages_their_sender() {
    init_logs();
    let lab = Lab::new("hello", 3);
    let (t1, mut in1) = lab.start(1).await;
    let roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    let node2 = certs::load_node_identity(&lab.certs(), 2).unwrap();
    let config = tls::peer_client_config(roots, node2).unwrap();
    let endpoint = raw_endpoint();

    // Certificate for node 2, Hello claims node 3: the connection is refused.
    let conn = raw_connect(&endpoint, config.clone(), &t1, 1)
        .await
        .unwrap();
    let mut stream = conn.open_uni().await.unwrap();
    framing::write_frame(&mut stream, &PeerFrame::Hello { from: 3 })
        .await
        .unwrap();
    let _ = framing::write_frame(&mut stream, &PeerFrame::Messages(vec![heartbeat(3, 1, 4)])).await;
    let _ = stream.finish();
    match tokio::time::timeout(PATIENCE, conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_REFUSED.into());
            let reason = String::from_utf8_lossy(&close.reason).to_string();
            assert!(
                reason.contains("node 3") && reason.contains("node-2.raftlab"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(in1.peers.try_recv().is_err(), "a message got through");
    assert_eq!(t1.stats().refused_connections, 1);

    // Honest Hello: messages from node 2 to node 1 pass; forged senders and wrong
    // recipients are dropped.
    let conn = raw_connect(&endpoint, config, &t1, 1).await.unwrap();
    let mut stream = conn.open_uni().await.unwrap();
    framing::write_frame(&mut stream, &PeerFrame::Hello { from: 2 })
        .await
        .unwrap();
    framing::write_frame(
        &mut stream,
        &PeerFrame::Messages(vec![
            heartbeat(3, 1, 4),
            heartbeat(2, 1, 4),
            heartbeat(2, 3, 4),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(recv(&mut in1.peers).await, heartbeat(2, 1, 4));
    until(&t1, "two forged messages rejected", |t| {
        t.stats().rejected == 2
    })
    .await;
    assert!(in1.peers.try_recv().is_err());
    assert_eq!(t1.stats().delivered, 1);
}

// ----- clients ---------------------------------------------------------------------------

#[tokio::test]
async fn clients_need_a_ca_signed_client_certificate() {
    init_logs();
    let lab = Lab::new("clients", 2);
    let (t1, inbound) = lab.start(1).await;
    let calls = stub_runtime(inbound, 1);
    let addr = lab.addr(1);

    let client = Arc::new(ClientConnector::new(&lab.certs()).unwrap());
    let response = client
        .call(1, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response, Response::Status(status(1)));

    // Concurrent calls share one connection, each on its own stream.
    let mut set = tokio::task::JoinSet::new();
    for seq in 0..32 {
        let client = client.clone();
        let addr = addr.clone();
        set.spawn(async move { client.call(1, &addr, &write_op(1, seq), CALL_TIMEOUT).await });
    }
    while let Some(result) = set.join_next().await {
        assert_eq!(result.unwrap().unwrap(), Response::Done(Outcome::Written));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 33);

    let real_roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    let foreign = lab.foreign_certs();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let refusing: Vec<(&str, quinn::ClientConfig)> = vec![
        (
            "no certificate",
            tls::client_config(real_roots.clone(), None, ALPN_CLIENT).unwrap(),
        ),
        (
            "a foreign CA's client certificate",
            tls::lab_client_config(
                real_roots.clone(),
                certs::load_client_identity(&foreign).unwrap(),
            )
            .unwrap(),
        ),
        (
            "a node certificate",
            tls::lab_client_config(
                real_roots.clone(),
                certs::load_node_identity(&lab.certs(), 2).unwrap(),
            )
            .unwrap(),
        ),
    ];
    for (what, config) in refusing {
        let refused_before = t1.stats().refused_connections;
        let connector = ClientConnector::with_config(config, any_port).unwrap();
        let err = connector
            .call(1, &addr, &Request::Status, CALL_TIMEOUT)
            .await
            .expect_err(what);
        assert!(matches!(err, CallError::NotSent { .. }), "{what}: {err}");
        assert!(!err.is_unknown_outcome());
        until(&t1, "the refusal counted", |t| {
            t.stats().refused_connections > refused_before
        })
        .await;
        if what == "a node certificate" {
            assert!(err.to_string().contains("client.raftlab"), "{err}");
        }
    }
    // A client of another cluster does not trust this node either.
    let stranger = ClientConnector::new(&foreign).unwrap();
    let err = stranger
        .call(1, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        33,
        "a refused client reached the runtime"
    );

    // The right certificate still works, and asking for the wrong node is caught by TLS.
    client
        .call(1, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap();
    let err = client
        .call(2, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err}");

    // Nothing listening: not sent.
    let nobody = format!("127.0.0.1:{}", free_port());
    let err = client
        .call(1, &nobody, &Request::Status, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err}");
}

#[tokio::test]
async fn an_unanswered_call_has_an_unknown_outcome() {
    init_logs();
    let lab = Lab::new("unanswered", 1);
    let (t1, mut inbound) = lab.start(1).await;
    let client = Arc::new(ClientConnector::new(&lab.certs()).unwrap());
    let addr = lab.addr(1);
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.call(1, &addr, &write_op(1, 1), CALL_TIMEOUT).await })
    };
    // The request reaches the runtime, which never answers: the node goes away instead.
    let held = tokio::time::timeout(PATIENCE, inbound.clients.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.request, write_op(1, 1));
    t1.shutdown().await;
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_unknown_outcome(), "{err}");
    drop(held);
}

// ----- malformed input -----------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_close_their_stream_and_the_node_keeps_serving() {
    init_logs();
    let lab = Lab::new("garbage", 2);
    let (t1, inbound) = lab.start(1).await;
    let calls = stub_runtime(inbound, 1);
    let addr = lab.addr(1);
    let client = ClientConnector::new(&lab.certs()).unwrap();
    let roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    let config = tls::lab_client_config(
        roots.clone(),
        certs::load_client_identity(&lab.certs()).unwrap(),
    )
    .unwrap();
    let endpoint = raw_endpoint();
    let conn = raw_connect(&endpoint, config, &t1, 1).await.unwrap();

    let valid = framing::encode(&Request::Status).unwrap();
    let mut wrong_version = valid.clone();
    wrong_version[4] = PROTOCOL_VERSION.wrapping_add(1);
    let mut trailing = valid.clone();
    trailing.push(0);
    let len = (trailing.len() - 4) as u32;
    trailing[..4].copy_from_slice(&len.to_be_bytes());
    let mut garbage = vec![0, 0, 0, 9, PROTOCOL_VERSION];
    garbage.extend([0xff; 8]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", garbage),
        (
            "oversized length",
            vec![0xff, 0xff, 0xff, 0xff, PROTOCOL_VERSION],
        ),
        ("over the request limit", {
            let mut v = ((framing::MAX_REQUEST_FRAME + 1) as u32)
                .to_be_bytes()
                .to_vec();
            v.push(PROTOCOL_VERSION);
            v
        }),
        ("wrong version", wrong_version),
        ("trailing bytes", trailing),
        (
            "truncated body",
            vec![0, 0, 0, 100, PROTOCOL_VERSION, 1, 2, 3],
        ),
        ("truncated length", vec![0, 0]),
        ("empty frame", vec![0, 0, 0, 0]),
    ];
    let n = cases.len() as u64;
    for (what, bytes) in cases {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        let _ = send.finish();
        let got = tokio::time::timeout(PATIENCE, framing::read_frame::<_, Response>(&mut recv))
            .await
            .unwrap();
        match got {
            Err(FrameError::Io(e)) => {
                let reset = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<quinn::ReadError>())
                    .cloned();
                assert_eq!(
                    reset,
                    Some(quinn::ReadError::Reset(CLOSE_PROTOCOL.into())),
                    "{what}"
                );
            }
            other => panic!("{what}: expected the stream to be reset, got {other:?}"),
        }
        // The node keeps serving, on a fresh connection and on this one.
        let ok = client.call(1, &addr, &Request::Status, CALL_TIMEOUT).await;
        assert_eq!(ok.unwrap(), Response::Status(status(1)), "after {what}");
    }
    until(&t1, "bad frames counted", |t| t.stats().bad_frames == n).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&valid).await.unwrap();
    let _ = send.finish();
    let got: Option<Response> = framing::read_frame(&mut recv).await.unwrap();
    assert_eq!(got, Some(Response::Status(status(1))));
    assert_eq!(calls.load(Ordering::SeqCst), n as usize + 1);

    // Raw UDP garbage at the port is ignored.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for size in [1, 20, 1200] {
        udp.send_to(&vec![0x5a; size], t1.local_addr()).unwrap();
    }
    client
        .call(1, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap();

    // A peer sending garbage loses its connection; the node keeps serving.
    let peer = tls::peer_client_config(roots, certs::load_node_identity(&lab.certs(), 2).unwrap())
        .unwrap();
    let conn = raw_connect(&endpoint, peer, &t1, 1).await.unwrap();
    let mut stream = conn.open_uni().await.unwrap();
    framing::write_frame(&mut stream, &PeerFrame::Hello { from: 2 })
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 0, 3, PROTOCOL_VERSION, 0xff, 0xff])
        .await
        .unwrap();
    match tokio::time::timeout(PATIENCE, conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_PROTOCOL.into())
        }
        other => panic!("expected a protocol close, got {other:?}"),
    }
    client
        .call(1, &addr, &Request::Status, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(t1.stats().bad_frames, n + 1);
}

#[tokio::test]
async fn a_malformed_request_is_reported_as_not_sent() {
    // The connector classifies a stream the node reset as malformed as "not sent".
    init_logs();
    let lab = Lab::new("oversized-request", 1);
    let (_t1, inbound) = lab.start(1).await;
    let calls = stub_runtime(inbound, 1);
    let client = ClientConnector::new(&lab.certs()).unwrap();
    let huge = Request::Op(Command {
        client: 1,
        seq: 1,
        op: Operation::Append {
            key: "k".into(),
            suffix: "x".repeat(framing::MAX_REQUEST_FRAME + 1),
        },
        time_ms: 0,
    });
    let err = client
        .call(1, &lab.addr(1), &huge, CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ----- resource bounds --------------------------------------------------------------------

/// The configuration of node 2's certificate, to act as node 2 by hand.
fn as_node_2(lab: &Lab) -> quinn::ClientConfig {
    let roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    tls::peer_client_config(roots, certs::load_node_identity(&lab.certs(), 2).unwrap()).unwrap()
}

fn as_client(lab: &Lab) -> quinn::ClientConfig {
    let roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    tls::lab_client_config(roots, certs::load_client_identity(&lab.certs()).unwrap()).unwrap()
}

/// How `conn` was closed by the node: its application code and reason.
async fn closed_by_node(conn: &quinn::Connection) -> (u32, String) {
    match tokio::time::timeout(PATIENCE, conn.closed())
        .await
        .expect("timed out waiting for the node to close the connection")
    {
        quinn::ConnectionError::ApplicationClosed(close) => (
            u32::try_from(u64::from(close.error_code)).unwrap(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// A peer stream to the node on `conn`, past its Hello from node 2.
async fn peer_stream(conn: &quinn::Connection) -> quinn::SendStream {
    let mut stream = conn.open_uni().await.unwrap();
    framing::write_frame(&mut stream, &PeerFrame::Hello { from: 2 })
        .await
        .unwrap();
    stream
}

/// Whether opening a stream would have to wait for the node to allow more (checked with a
/// single poll: no time passes).
async fn must_wait<T>(open: impl std::future::Future<Output = T>) -> bool {
    tokio::time::timeout(Duration::ZERO, open).await.is_err()
}

#[tokio::test]
async fn a_newer_connection_from_a_peer_replaces_the_older_one() {
    init_logs();
    let lab = Lab::new("replace", 2);
    let (t1, mut in1) = lab.start(1).await;
    let endpoint = raw_endpoint();
    let config = as_node_2(&lab);

    let mut older = raw_connect(&endpoint, config.clone(), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&older).await;
    framing::write_frame(&mut stream, &PeerFrame::Messages(vec![heartbeat(2, 1, 1)]))
        .await
        .unwrap();
    assert_eq!(recv(&mut in1.peers).await, heartbeat(2, 1, 1));
    for term in 2..=6 {
        let newer = raw_connect(&endpoint, config.clone(), &t1, 1)
            .await
            .unwrap();
        let (code, reason) = closed_by_node(&older).await;
        assert_eq!(code, CLOSE_REPLACED, "{reason}");
        let mut stream = peer_stream(&newer).await;
        framing::write_frame(
            &mut stream,
            &PeerFrame::Messages(vec![heartbeat(2, 1, term)]),
        )
        .await
        .unwrap();
        assert_eq!(recv(&mut in1.peers).await, heartbeat(2, 1, term));
        older = newer;
    }
    assert_eq!(t1.stats().replaced_connections, 5);
    assert_eq!(older.close_reason(), None, "the newest connection stays up");
}

#[tokio::test]
async fn streams_per_connection_are_bounded_and_other_clients_are_served() {
    init_logs();
    const LIMIT: u32 = 4;
    // A timeout that never fires within the test: the streams stay held.
    let lab = Lab::with_settings(
        "stream-limit",
        2,
        &format!("[transport]\nmax_client_streams = {LIMIT}\nstream_timeout_ms = 600000\n"),
    );
    let (t1, inbound) = lab.start(1).await;
    let calls = stub_runtime(inbound, 1);
    let endpoint = raw_endpoint();

    // A client holds LIMIT requests half-sent; it may not open one more.
    let conn = raw_connect(&endpoint, as_client(&lab), &t1, 1)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap();
        held.push((send, recv));
    }
    assert!(
        must_wait(conn.open_bi()).await,
        "a stream over the limit was allowed"
    );

    // Another client is served meanwhile.
    let client = ClientConnector::new(&lab.certs()).unwrap();
    let got = client
        .call(1, &lab.addr(1), &Request::Status, CALL_TIMEOUT)
        .await;
    assert_eq!(got.unwrap(), Response::Status(status(1)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A peer connection gets one stream, and no bidirectional ones.
    let peer = raw_connect(&endpoint, as_node_2(&lab), &t1, 1)
        .await
        .unwrap();
    let _stream = peer_stream(&peer).await;
    assert!(
        must_wait(peer.open_uni()).await,
        "a second peer stream was allowed"
    );
    assert!(
        must_wait(peer.open_bi()).await,
        "a peer opened a request stream"
    );
    drop(held);
}

#[tokio::test]
async fn stalled_streams_are_closed_after_the_stream_timeout() {
    init_logs();
    const LIMIT: u32 = 8;
    const STREAMS: usize = 256;
    let lab = Lab::with_settings(
        "stall",
        2,
        &format!("[transport]\nmax_client_streams = {LIMIT}\nstream_timeout_ms = 50\n"),
    );
    let (t1, inbound) = lab.start(1).await;
    let calls = stub_runtime(inbound, 1);
    let endpoint = raw_endpoint();

    // Many times the limit of requests, each stalling inside its frame (in the length, in
    // the body): each is reset by the node, which frees room for the next ones.
    let conn = raw_connect(&endpoint, as_client(&lab), &t1, 1)
        .await
        .unwrap();
    let valid = framing::encode(&Request::Status).unwrap();
    let mut stalled = tokio::task::JoinSet::new();
    for i in 0..STREAMS {
        let (mut send, mut recv) = tokio::time::timeout(PATIENCE, conn.open_bi())
            .await
            .expect("the node never freed a stalled stream")
            .unwrap();
        let cut = 1 + i % (valid.len() - 1);
        send.write_all(&valid[..cut]).await.unwrap();
        stalled.spawn(async move {
            let got = framing::read_frame::<_, Response>(&mut recv).await;
            drop(send);
            got
        });
    }
    while let Some(got) = tokio::time::timeout(PATIENCE, stalled.join_next())
        .await
        .unwrap()
    {
        match got.unwrap() {
            Err(FrameError::Io(e)) => {
                let reset = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<quinn::ReadError>())
                    .cloned();
                assert_eq!(reset, Some(quinn::ReadError::Reset(CLOSE_TIMEOUT.into())));
            }
            other => panic!("expected the stalled stream to be reset, got {other:?}"),
        }
    }
    until(&t1, "stalled streams counted", |t| {
        t.stats().timed_out_streams == STREAMS as u64
    })
    .await;
    // The connection itself still works, and nothing was handed on.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&valid).await.unwrap();
    let _ = send.finish();
    let got: Option<Response> = framing::read_frame(&mut recv).await.unwrap();
    assert_eq!(got, Some(Response::Status(status(1))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A peer that sends no Hello, or stops inside a frame, loses its connection.
    let peer = raw_connect(&endpoint, as_node_2(&lab), &t1, 1)
        .await
        .unwrap();
    let mut silent = peer.open_uni().await.unwrap();
    silent.write_all(&[0]).await.unwrap();
    assert_eq!(closed_by_node(&peer).await.0, CLOSE_TIMEOUT);
    let peer = raw_connect(&endpoint, as_node_2(&lab), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&peer).await;
    stream.write_all(&[0, 0, 1]).await.unwrap();
    assert_eq!(closed_by_node(&peer).await.0, CLOSE_TIMEOUT);
    assert_eq!(t1.stats().timed_out_streams, STREAMS as u64 + 2);
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_loses_the_stream_after_the_timeout() {
    init_logs();
    let lab = Lab::with_settings("unread", 1, "[transport]\nstream_timeout_ms = 50\n");
    let (t1, mut inbound) = lab.start(1).await;
    // An answer far bigger than the client lets the node send.
    tokio::spawn(async move {
        while let Some(call) = inbound.clients.recv().await {
            let _ = call.reply.send(Response::Refused("x".repeat(1 << 20)));
        }
    });
    let roots = Arc::new(certs::load_roots(&lab.certs()).unwrap());
    let mut config =
        tls::lab_client_config(roots, certs::load_client_identity(&lab.certs()).unwrap()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(1024u32.into());
    config.transport_config(Arc::new(transport));
    let endpoint = raw_endpoint();
    let conn = raw_connect(&endpoint, config, &t1, 1).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&framing::encode(&Request::Status).unwrap())
        .await
        .unwrap();
    let _ = send.finish();
    // The client reads nothing: the node's answer stalls on flow control until the node
    // gives the stream up.
    until(&t1, "the stalled answer given up", |t| {
        t.stats().timed_out_streams == 1
    })
    .await;
    let got = tokio::time::timeout(PATIENCE, framing::read_frame::<_, Response>(&mut recv))
        .await
        .unwrap();
    match got {
        Err(FrameError::Io(e)) => {
            let reset = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<quinn::ReadError>())
                .cloned();
            assert_eq!(reset, Some(quinn::ReadError::Reset(CLOSE_TIMEOUT.into())));
        }
        other => panic!("expected the stream to be reset, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_peer_frames_and_batches_are_refused_before_decoding() {
    init_logs();
    let lab = Lab::with_settings(
        "oversized",
        2,
        "[transport]\nmax_batch = 4\nmax_frame_bytes = 65536\n",
    );
    let (t1, mut in1) = lab.start(1).await;
    let endpoint = raw_endpoint();
    let config = as_node_2(&lab);

    // Within the bounds: delivered.
    let conn = raw_connect(&endpoint, config.clone(), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&conn).await;
    let four: Vec<_> = (1..=4).map(|term| heartbeat(2, 1, term)).collect();
    framing::write_frame(&mut stream, &PeerFrame::Messages(four.clone()))
        .await
        .unwrap();
    for expected in four {
        assert_eq!(recv(&mut in1.peers).await, expected);
    }

    // Five messages: one more than max_batch.
    let five: Vec<_> = (1..=5).map(|term| heartbeat(2, 1, term)).collect();
    framing::write_frame(&mut stream, &PeerFrame::Messages(five))
        .await
        .unwrap();
    let (code, reason) = closed_by_node(&conn).await;
    assert_eq!(code, CLOSE_PROTOCOL);
    assert!(reason.contains("announces 5 messages"), "{reason}");

    // A frame announcing a million messages in a few bytes is refused for its count, not
    // for failing to decode.
    let conn = raw_connect(&endpoint, config.clone(), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&conn).await;
    let mut body = vec![PROTOCOL_VERSION, 1];
    body.extend(postcard::to_allocvec(&1_000_000u64).unwrap());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    stream.write_all(&frame).await.unwrap();
    let (code, reason) = closed_by_node(&conn).await;
    assert_eq!(code, CLOSE_PROTOCOL);
    assert!(reason.contains("announces 1000000 messages"), "{reason}");

    // A frame over max_frame_bytes is refused from its length.
    let conn = raw_connect(&endpoint, config, &t1, 1).await.unwrap();
    let mut stream = peer_stream(&conn).await;
    let big = vec![append(2, 1, 1, &"k".repeat(70_000))];
    stream
        .write_all(&framing::encode(&PeerFrame::Messages(big)).unwrap())
        .await
        .unwrap();
    let (code, reason) = closed_by_node(&conn).await;
    assert_eq!(code, CLOSE_PROTOCOL);
    assert!(reason.contains("65536-byte limit"), "{reason}");
    assert!(
        in1.peers.try_recv().is_err(),
        "a refused message got through"
    );
    assert_eq!(t1.stats().bad_frames, 3);
}

fn install_snapshot(from: NodeId, to: NodeId, bytes: usize) -> Message<Command> {
    Message {
        from,
        to,
        term: 3,
        body: Body::InstallSnapshot {
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 40,
                    term: 2,
                    membership: Membership::default(),
                },
                data: Arc::new((0..bytes).map(|i| (i % 251) as u8).collect()),
            },
            read_round: 1,
        },
    }
}

#[tokio::test]
async fn a_snapshot_larger_than_a_frame_travels_in_chunks() {
    init_logs();
    let lab = Lab::with_settings(
        "chunks",
        2,
        "[transport]\nmax_frame_bytes = 65536\nmax_message_bytes = 1048576\n",
    );
    let (t1, _in1) = lab.start(1).await;
    let (t2, mut in2) = lab.start(2).await;
    until(&t1, "node 1 connected to 2", |t| link(t, 2).connected).await;

    // Around a big snapshot, ordinary messages keep their order.
    let snapshot = install_snapshot(1, 2, 600_000);
    t1.send(
        2,
        vec![heartbeat(1, 2, 3), snapshot.clone(), heartbeat(1, 2, 4)],
    );
    assert_eq!(recv(&mut in2.peers).await, heartbeat(1, 2, 3));
    assert_eq!(recv(&mut in2.peers).await, snapshot);
    assert_eq!(recv(&mut in2.peers).await, heartbeat(1, 2, 4));

    // One too big to put back together is not sent at all; the link carries on.
    t1.send(2, vec![install_snapshot(1, 2, 2 << 20), heartbeat(1, 2, 5)]);
    assert_eq!(recv(&mut in2.peers).await, heartbeat(1, 2, 5));
    assert_eq!(link(&t1, 2).dropped, 1);
    assert_eq!(t2.stats().bad_frames, 0);

    // By hand, as node 2 (the real one is stopped first: its reconnections would replace
    // the hand-made connections): a total over the bound, and a batch inside a chunked
    // message, are refused.
    t2.shutdown().await;
    let endpoint = raw_endpoint();
    let conn = raw_connect(&endpoint, as_node_2(&lab), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&conn).await;
    let chunk = PeerFrame::Chunk {
        total: 2 << 20,
        data: vec![0; 100],
    };
    framing::write_frame(&mut stream, &chunk).await.unwrap();
    let (code, reason) = closed_by_node(&conn).await;
    assert_eq!(code, CLOSE_PROTOCOL);
    assert!(reason.contains("1048576-byte limit"), "{reason}");
    let conn = raw_connect(&endpoint, as_node_2(&lab), &t1, 1)
        .await
        .unwrap();
    let mut stream = peer_stream(&conn).await;
    let chunk = PeerFrame::Chunk {
        total: 1000,
        data: vec![0; 100],
    };
    framing::write_frame(&mut stream, &chunk).await.unwrap();
    framing::write_frame(&mut stream, &PeerFrame::Messages(vec![heartbeat(2, 1, 9)]))
        .await
        .unwrap();
    let (code, reason) = closed_by_node(&conn).await;
    assert_eq!(code, CLOSE_PROTOCOL);
    assert!(reason.contains("inside a message in chunks"), "{reason}");
}

#[tokio::test]
async fn under_a_pile_of_handshakes_new_ones_must_validate_their_address() {
    init_logs();
    // Zero handshakes allowed without validation: every new connection gets a Retry.
    let lab = Lab::with_settings("retry", 1, "[transport]\nretry_above_handshakes = 0\n");
    let (t1, inbound) = lab.start(1).await;
    stub_runtime(inbound, 1);
    let client = ClientConnector::new(&lab.certs()).unwrap();
    let got = client
        .call(1, &lab.addr(1), &Request::Status, CALL_TIMEOUT)
        .await;
    assert_eq!(got.unwrap(), Response::Status(status(1)));
    assert!(t1.stats().retries >= 1, "{:?}", t1.stats());
    assert_eq!(t1.stats().refused_connections, 0);
}

#[tokio::test]
async fn a_connection_is_not_followed_to_another_address() {
    init_logs();
    let lab = Lab::new("migration", 1);
    let (t1, inbound) = lab.start(1).await;
    stub_runtime(inbound, 1);
    let endpoint = raw_endpoint();
    let conn = raw_connect(&endpoint, as_client(&lab), &t1, 1)
        .await
        .unwrap();
    let valid = framing::encode(&Request::Status).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&valid).await.unwrap();
    let _ = send.finish();
    let got: Option<Response> = framing::read_frame(&mut recv).await.unwrap();
    assert_eq!(got, Some(Response::Status(status(1))));

    // The client moves to another port: the node does not follow, so the request goes
    // unanswered and the connection ends (a stateless reset, or the idle timeout).
    endpoint
        .rebind(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&valid).await.unwrap();
    let _ = send.finish();
    let got = tokio::time::timeout(PATIENCE, framing::read_frame::<_, Response>(&mut recv))
        .await
        .expect("the connection neither answered nor ended");
    assert!(got.is_err(), "the node followed the connection: {got:?}");
    assert!(
        matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset)
        ),
        "{:?}",
        conn.close_reason()
    );
}

// ----- framing properties ----------------------------------------------------------------

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A runtime with a clock, for readers with a deadline.
fn block_on_timed<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        text().prop_map(Value::Str)
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        text().prop_map(|key| Operation::Read { key }),
        (text(), value()).prop_map(|(key, value)| Operation::Write { key, value }),
        (text(), proptest::option::of(value()), value())
            .prop_map(|(key, expected, new)| Operation::Cas { key, expected, new }),
        (text(), text()).prop_map(|(key, suffix)| Operation::Append { key, suffix }),
        Just(Operation::Register),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    (any::<u64>(), any::<u64>(), operation(), any::<u64>()).prop_map(
        |(client, seq, op, time_ms)| Command {
            client,
            seq,
            op,
            time_ms,
        },
    )
}

fn ids() -> impl Strategy<Value = std::collections::BTreeSet<NodeId>> {
    proptest::collection::btree_set(any::<NodeId>(), 0..4)
}

fn entry() -> impl Strategy<Value = Entry<Command>> {
    let kind = prop_oneof![
        Just(EntryKind::Noop),
        command().prop_map(EntryKind::Command),
        (any::<NodeId>(), text()).prop_map(|(id, addr)| EntryKind::Membership(
            MembershipChange::AddLearner { id, addr }
        )),
        any::<NodeId>().prop_map(|id| EntryKind::Membership(MembershipChange::Remove(id))),
    ];
    (any::<u64>(), any::<u64>(), kind).prop_map(|(term, index, kind)| Entry { term, index, kind })
}

fn campaign() -> impl Strategy<Value = Campaign> {
    prop_oneof![
        Just(Campaign::PreVote),
        Just(Campaign::Election),
        Just(Campaign::Transfer)
    ]
}

fn body() -> impl Strategy<Value = Body<Command>> {
    prop_oneof![
        (campaign(), any::<u64>(), any::<u64>()).prop_map(|(campaign, last_index, last_term)| {
            Body::Vote {
                campaign,
                last_index,
                last_term,
            }
        }),
        (campaign(), any::<bool>())
            .prop_map(|(campaign, granted)| Body::VoteResponse { campaign, granted }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(entry(), 0..4),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(prev_index, prev_term, entries, commit, read_round)| {
                Body::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    read_round,
                }
            }),
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(index, conflict_term, success, read_round, prev_index)| {
                Body::AppendResponse {
                    index,
                    conflict_term,
                    success,
                    read_round,
                    prev_index,
                }
            }),
        (
            any::<u64>(),
            any::<u64>(),
            (ids(), ids(), addresses()),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>()
        )
            .prop_map(
                |(index, term, (voters, learners, addresses), data, read_round)| {
                    Body::InstallSnapshot {
                        snapshot: Snapshot {
                            meta: SnapshotMeta {
                                index,
                                term,
                                membership: Membership {
                                    voters,
                                    learners,
                                    addresses,
                                },
                            },
                            data: Arc::new(data),
                        },
                        read_round,
                    }
                }
            ),
        Just(Body::TimeoutNow),
    ]
}

fn message() -> impl Strategy<Value = Message<Command>> {
    (any::<NodeId>(), any::<NodeId>(), any::<u64>(), body()).prop_map(|(from, to, term, body)| {
        Message {
            from,
            to,
            term,
            body,
        }
    })
}

fn peer_frame() -> impl Strategy<Value = PeerFrame> {
    prop_oneof![
        any::<NodeId>().prop_map(|from| PeerFrame::Hello { from }),
        proptest::collection::vec(message(), 0..6).prop_map(PeerFrame::Messages),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        command().prop_map(Request::Op),
        Just(Request::Status),
        (any::<NodeId>(), text()).prop_map(|(id, addr)| Request::ChangeMembership(
            MembershipChange::AddLearner { id, addr }
        )),
        any::<NodeId>().prop_map(|id| Request::ChangeMembership(MembershipChange::Remove(id))),
        any::<NodeId>().prop_map(Request::TransferLeadership),
    ]
}

fn ids_vec() -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::vec(any::<NodeId>(), 0..4)
}

fn addresses() -> impl Strategy<Value = std::collections::BTreeMap<NodeId, String>> {
    proptest::collection::btree_map(any::<NodeId>(), text(), 0..3)
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        proptest::option::of(value()).prop_map(Outcome::Value),
        Just(Outcome::Written),
        proptest::option::of(value()).prop_map(|current| Outcome::CasMismatch { current }),
        Just(Outcome::NotAString),
        Just(Outcome::Stale),
        any::<u64>().prop_map(|len| Outcome::Appended { len }),
        any::<u64>().prop_map(|session| Outcome::Registered { session }),
        Just(Outcome::SessionExpired),
        (any::<u64>(), any::<u64>()).prop_map(|(size, limit)| Outcome::TooLarge { size, limit }),
    ]
}

fn node_status() -> impl Strategy<Value = NodeStatus> {
    let peer = (
        any::<NodeId>(),
        text(),
        any::<bool>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
    )
        .prop_map(|(id, addr, connected, match_index, dropped)| PeerStatus {
            id,
            addr,
            connected,
            match_index,
            dropped,
        });
    (
        (
            any::<NodeId>(),
            text(),
            any::<u64>(),
            proptest::option::of(any::<NodeId>()),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (ids_vec(), ids_vec(), proptest::collection::vec(peer, 0..4)),
        proptest::collection::vec(text(), 0..3),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(
                (id, role, term, leader),
                (commit_index, applied_index, last_index, snapshot_index),
                (voters, learners, peers),
                bugs,
                cert_not_after,
            )| {
                NodeStatus {
                    id,
                    role,
                    term,
                    leader,
                    commit_index,
                    applied_index,
                    last_index,
                    snapshot_index,
                    voters,
                    learners,
                    peers,
                    bugs,
                    cert_not_after,
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        outcome().prop_map(Response::Done),
        (
            proptest::option::of(any::<NodeId>()),
            proptest::option::of(text())
        )
            .prop_map(|(leader, addr)| Response::NotLeader { leader, addr }),
        text().prop_map(Response::Refused),
        text().prop_map(Response::Unknown),
        node_status().prop_map(Response::Status),
        any::<u64>().prop_map(|index| Response::Committed { index }),
        Just(Response::Transferring),
    ]
}

/// Encodes, decodes from a buffer and from a stream, and checks every proper prefix of the
/// frame is reported truncated by the stream reader.
fn round_trip<T>(value: T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = framing::encode(&value).unwrap();
    let (decoded, used) = framing::decode_frame::<T>(&bytes, MAX_FRAME).unwrap();
    prop_assert_eq!(&decoded, &value);
    prop_assert_eq!(used, bytes.len());
    block_on(async {
        let mut input = &bytes[..];
        let first: Option<T> = framing::read_frame(&mut input).await.unwrap();
        prop_assert_eq!(first.as_ref(), Some(&value));
        let end: Option<T> = framing::read_frame(&mut input).await.unwrap();
        prop_assert!(end.is_none());
        for cut in 1..bytes.len() {
            let mut input = &bytes[..cut];
            let got = framing::read_frame::<_, T>(&mut input).await;
            prop_assert!(
                matches!(got, Err(FrameError::Truncated)),
                "cut {}: {:?}",
                cut,
                got
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = framing::decode_frame::<PeerFrame>(&bytes, MAX_FRAME);
        let _ = framing::decode_frame::<Request>(&bytes, MAX_FRAME);
        let _ = framing::decode_frame::<Response>(&bytes, MAX_FRAME);
        let _ = framing::decode_body::<PeerFrame>(&bytes);
        let _ = framing::decode_body::<Response>(&bytes);
        block_on(async {
            let mut input = &bytes[..];
            // Read frames until the stream ends or an error: never a panic or a hang.
            for _ in 0..bytes.len() + 1 {
                match framing::read_frame::<_, PeerFrame>(&mut input).await {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        });
    }

    #[test]
    fn arbitrary_bytes_on_a_peer_stream_give_frames_or_one_clear_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // The node's path for a peer stream: the frame under its limit and deadline, the
        // announced count, then the decode.
        let errors = block_on_timed(async {
            let mut input = &bytes[..];
            let mut errors = Vec::new();
            for _ in 0..bytes.len() + 1 {
                let read = framing::read_body_within(&mut input, 256, PATIENCE, Deadline::FirstByte).await;
                let body = match read {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => {
                        errors.push(e.to_string());
                        break;
                    }
                };
                let decoded = framing::payload(&body).and_then(|payload| {
                    let _ = protocol::announced_messages(payload);
                    framing::decode_exact::<PeerFrame>(payload)
                });
                if let Err(e) = decoded {
                    errors.push(e.to_string());
                }
            }
            errors
        });
        for error in errors {
            prop_assert!(!error.is_empty() && !error.contains('\n'), "{:?}", error);
        }
    }

    #[test]
    fn decoding_valid_frames_with_a_corrupted_byte_never_panics(
        frame in peer_frame(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = framing::encode(&frame).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok((decoded, _)) = framing::decode_frame::<PeerFrame>(&bytes, MAX_FRAME) {
            // Whatever decodes re-encodes to a frame that decodes to the same value.
            let again = framing::encode(&decoded).unwrap();
            prop_assert_eq!(framing::decode_frame::<PeerFrame>(&again, MAX_FRAME).unwrap().0, decoded);
        }
    }

    #[test]
    fn peer_frames_round_trip(frame in peer_frame()) {
        round_trip(frame)?;
    }

    #[test]
    fn requests_round_trip(request in request()) {
        round_trip(request)?;
    }

    #[test]
    fn responses_round_trip(response in response()) {
        round_trip(response)?;
    }
}
