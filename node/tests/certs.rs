//! The certificate lifecycle on real `raft-node` processes: named clients bound to their
//! client id namespace, renewal and revocation picked up on SIGHUP without a restart, and
//! the reload itself (what changes, what a bad file leaves alone).

mod support;

use model::kv::{Command, Operation, Outcome, Value};
use node::certs::{self, CertInfo, Subject};
use node::config::ClusterConfig;
use node::protocol::{Request, Response};
use node::transport::credentials::Credentials;
use node::transport::{tls, ClientConnector};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Cluster, PATIENCE};

const CALL: Duration = Duration::from_secs(3);

/// Runs `raft-node ARGS`; returns its stdout, failing the test if it fails.
fn raft_node(args: &[&str]) -> String {
    let out = Process::new(env!("CARGO_BIN_EXE_raft-node"))
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("raft-node runs");
    assert!(
        out.status.success(),
        "raft-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A connector presenting `subject`'s certificate from `dir`.
fn connector(dir: &Path, subject: &str) -> ClientConnector {
    let subject: Subject = subject.parse().expect("subject");
    let roots = Arc::new(certs::load_roots(dir).expect("ca.pem"));
    let identity = certs::load_subject_identity(dir, &subject).expect("client certificate");
    let config = tls::lab_client_config(roots, identity).expect("client config");
    ClientConnector::with_config(config, "0.0.0.0:0".parse().expect("addr"))
        .expect("client endpoint")
}

fn write(client: u64, seq: u64, value: i64) -> Command {
    Command {
        client,
        seq,
        op: Operation::Write {
            key: format!("k{client}"),
            value: Value::Int(value),
        },
        time_ms: 0,
    }
}

/// The certificate node `id` presents to a new connection.
async fn presented(cluster: &Cluster, id: u64) -> CertInfo {
    let roots = Arc::new(certs::load_roots(&cluster.certs()).expect("ca.pem"));
    let identity = certs::load_client_identity(&cluster.certs()).expect("client.pem");
    let config = tls::lab_client_config(roots, identity).expect("client config");
    let endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().expect("addr")).expect("endpoint");
    let addr = cluster.addr(id).parse().expect("socket address");
    let conn = endpoint
        .connect_with(config, addr, &certs::node_name(id))
        .expect("dial")
        .await
        .expect("handshake");
    let cert = tls::remote_cert(&conn).expect("node certificate");
    conn.close(0u32.into(), b"done");
    cert
}

/// Waits until node `id` reports a certificate valid until `not_after`.
async fn reports_not_after(cluster: &Cluster, id: u64, not_after: i64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reported = cluster.status(id).await.and_then(|s| s.cert_not_after);
        if reported == Some(not_after) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} reports {reported:?}, not {not_after} (logs in {})",
            cluster.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_bound_to_their_namespace_and_renewal_and_revocation_apply_on_sighup() {
    let mut cluster = Cluster::start("lifecycle", 3, 1000).await;
    cluster.leader(&[1, 2, 3]).await;
    let config = path(&cluster.config).to_string();
    let dir = cluster.certs();
    raft_node(&["certs", "--config", &config, "--client", "alice"]);
    raft_node(&["certs", "--config", &config, "--client", "bob"]);
    let alice = connector(&dir, "client-alice");
    let bob = connector(&dir, "client-bob");
    let alice_ns = certs::client_namespace("client-alice.raftlab").expect("namespace");
    let bob_ns = certs::client_namespace("client-bob.raftlab").expect("namespace");

    // Each named client registers sessions in its own namespace, and is served under them;
    // the shared one under its own.
    let mut target = 1;
    let alice_id =
        support::register_via(&alice, &cluster.addrs, &cluster.dir, alice_ns, &mut target).await;
    let bob_id =
        support::register_via(&bob, &cluster.addrs, &cluster.dir, bob_ns, &mut target).await;
    assert_eq!(certs::namespace_of_client_id(alice_id), alice_ns);
    assert_eq!(certs::namespace_of_client_id(bob_id), bob_ns);
    assert_ne!(alice_id, bob_id);
    let (outcome, _) = support::op_via(
        &alice,
        &cluster.addrs,
        &cluster.dir,
        write(alice_id, 1, 1),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);
    let (outcome, _) = support::op_via(
        &bob,
        &cluster.addrs,
        &cluster.dir,
        write(bob_id, 1, 1),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);
    cluster.write("shared", 1).await;

    // Nobody acts under another certificate's ids, whichever node is asked: refused before
    // anything is proposed; nor registers a session in another's namespace.
    let register_as = |namespace| Command {
        client: certs::client_id(namespace, 0),
        seq: 0,
        op: Operation::Register,
        time_ms: 0,
    };
    for (who, client, request) in [
        ("alice as bob", &alice, write(bob_id, 2, 2)),
        ("alice as the shared client", &alice, write(7, 2, 2)),
        (
            "the shared client as alice",
            &cluster.client,
            write(alice_id, 2, 2),
        ),
        ("alice registering as bob", &alice, register_as(bob_ns)),
        (
            "alice registering as the shared client",
            &alice,
            register_as(certs::SHARED_CLIENT_NAMESPACE),
        ),
    ] {
        for node in 1..=3 {
            let answer = client
                .call(
                    node,
                    cluster.addr(node),
                    &Request::Op(request.clone()),
                    CALL,
                )
                .await
                .expect("answered");
            match answer {
                Response::Refused(why) => assert!(why.contains("namespace"), "{who}: {why}"),
                other => panic!("{who} at node {node}: {other:?}"),
            }
        }
    }

    // Alice holds a connection to every node: the revocation must reach it too.
    for node in 1..=3 {
        let answer = alice
            .call(node, cluster.addr(node), &Request::Status, CALL)
            .await;
        assert!(matches!(answer, Ok(Response::Status(_))), "{answer:?}");
    }

    // Renew node 1 (shorter validity, so the change is visible in its status), revoke
    // alice's certificate, SIGHUP every node.
    let before = presented(&cluster, 1).await;
    let shown = raft_node(&[
        "certs", "--config", &config, "--renew", "node-1", "--days", "20",
    ]);
    assert!(shown.contains("node-1.pem"), "{shown}");
    let renewed = certs::describe(&dir.join("node-1.pem"))
        .expect("node-1.pem")
        .remove(0);
    assert_ne!(renewed.sha256, before.sha256);
    let fingerprint = raft_node(&[
        "certs",
        "--fingerprint",
        path(&dir.join("client-alice.pem")),
    ]);
    let entry = fingerprint.lines().next().expect("fingerprint line");
    assert!(entry.starts_with("sha256:"), "{fingerprint}");
    let mut toml = std::fs::read_to_string(&cluster.config).expect("cluster.toml");
    toml.push_str(&format!("[tls]\nrevoked = [\"{entry}\"]\n"));
    std::fs::write(&cluster.config, toml).expect("cluster.toml");
    // Nodes 2 and 3 get a renewed certificate too, so that their reload is observable.
    let mut expected = vec![(1, renewed.not_after)];
    for id in [2, 3] {
        let node = format!("node-{id}");
        raft_node(&[
            "certs", "--config", &config, "--renew", &node, "--days", "25",
        ]);
        let info = certs::describe(&dir.join(format!("{node}.pem")))
            .expect("renewed")
            .remove(0);
        expected.push((id, info.not_after));
    }
    for (id, not_after) in &expected {
        let pid = cluster.pid(*id).expect("node runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
        reports_not_after(&cluster, *id, *not_after).await;
    }

    // New connections get the renewed certificate; the process is the same one.
    assert_eq!(presented(&cluster, 1).await.sha256, renewed.sha256);
    // Alice's open connections refuse her next request...
    for node in 1..=3 {
        match alice
            .call(
                node,
                cluster.addr(node),
                &Request::Op(write(alice_id, 2, 2)),
                CALL,
            )
            .await
        {
            Ok(Response::Refused(why)) => assert!(why.contains("revoked"), "{why}"),
            other => panic!("revoked client at node {node}: {other:?}"),
        }
    }
    // ...and a new connection with her certificate fails its handshake.
    let fresh = connector(&dir, "client-alice");
    let err = fresh
        .call(1, cluster.addr(1), &Request::Status, CALL)
        .await
        .expect_err("revoked certificate refused at the handshake");
    assert!(!err.is_unknown_outcome(), "{err}");
    // Bob and the shared client are still served.
    let (outcome, _) = support::op_via(
        &bob,
        &cluster.addrs,
        &cluster.dir,
        write(bob_id, 2, 2),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);
    cluster.write("shared", 2).await;
    assert_eq!(cluster.read("shared").await, Some(Value::Int(2)));
}

#[test]
fn a_reload_reports_what_changed_and_a_bad_file_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("raftlab-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("cluster.toml");
    let base = "[[node]]\nid = 1\naddr = \"127.0.0.1:15001\"\n";
    std::fs::write(&file, base).expect("cluster.toml");
    let config = ClusterConfig::load(&file).expect("config");
    let certs_dir = config.tls.certs_dir.clone();
    certs::generate(&config, &certs_dir, false).expect("certs");
    let credentials = Credentials::load(&config, 1, &certs_dir).expect("credentials");
    let first = credentials.not_after();

    assert_eq!(credentials.reload().expect("reload"), Vec::<String>::new());

    // A renewal and a revocation, one line each.
    let renewed = certs::renew(&config, &certs_dir, &Subject::Node(1), true, 3).expect("renew");
    let client = certs::describe(&certs_dir.join(certs::CLIENT_CERT))
        .expect("client.pem")
        .remove(0);
    std::fs::write(
        &file,
        format!("{base}[tls]\nrevoked = [\"{}\"]\n", client.fingerprint()),
    )
    .expect("cluster.toml");
    let changes = credentials.reload().expect("reload");
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        changes[0].contains(&renewed.info.fingerprint()),
        "{changes:?}"
    );
    assert!(changes[1].contains("private key"), "{changes:?}");
    assert_eq!(changes[2], format!("revoked: {}", client.fingerprint()));
    assert_eq!(credentials.not_after(), renewed.info.not_after);
    assert_ne!(credentials.not_after(), first);

    // A key readable by others, or a broken cluster.toml: the old material stays.
    let key = certs_dir.join("node-1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    certs::renew(&config, &certs_dir, &Subject::Node(1), false, 9).expect_err("key mode");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    certs::renew(&config, &certs_dir, &Subject::Node(1), false, 9).expect("renew");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = credentials.reload().expect_err("key mode").to_string();
    assert!(err.contains("node-1.key") && err.contains("0640"), "{err}");
    assert_eq!(credentials.not_after(), renewed.info.not_after);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&file, format!("{base}[tls]\nrevoked = [\"sha256:12\"]\n")).expect("toml");
    let err = credentials.reload().expect_err("bad entry").to_string();
    assert!(err.contains("sha256:12"), "{err}");
    assert_eq!(credentials.not_after(), renewed.info.not_after);
    let _ = std::fs::remove_dir_all(&dir);
}
