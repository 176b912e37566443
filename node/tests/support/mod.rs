//! A real local cluster for integration tests: `raft-node` processes on loopback, certificates
//! from `raft-node certs`, and a client speaking the real protocol over QUIC + mutual TLS.
#![allow(dead_code)] // each test binary uses a different part

use model::kv::{Command, Operation, Outcome, Value};
use node::protocol::{NodeStatus, Request, Response};
use node::transport::ClientConnector;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// How long any wait-until-condition loop may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addrs: Vec<(u64, String)>,
    children: BTreeMap<u64, Child>,
    pub client: ClientConnector,
    /// The session the cluster's own client registered, once it did.
    session: Option<u64>,
    seq: u64,
    /// Where the next operation goes first: the node that answered the last one (asking a
    /// dead node first would cost a connection timeout per operation).
    target: u64,
}

/// Timing of every test cluster.
const TICK_MS: u64 = 20;
const REQUEST_TIMEOUT_MS: u64 = 2000;

/// Free UDP ports on loopback (bound then released; the kernel rarely reuses them at once).
fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect()
}

fn node_binary() -> &'static str {
    env!("CARGO_BIN_EXE_raft-node")
}

impl Cluster {
    /// Writes `cluster.toml` and certificates for `n` nodes in a fresh directory, and starts
    /// every node.
    pub async fn start(name: &str, n: u64, snapshot_every: u64) -> Cluster {
        let dir = std::env::temp_dir().join(format!("raftlab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ports = free_ports(n as usize);
        let mut toml = String::new();
        let mut addrs = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let addr = format!("127.0.0.1:{port}");
            toml.push_str(&format!("[[node]]\nid = {id}\naddr = \"{addr}\"\n"));
            addrs.push((id, addr));
        }
        toml.push_str(&format!(
            "[timing]\ntick_ms = {TICK_MS}\nrequest_timeout_ms = {REQUEST_TIMEOUT_MS}\n\
             [storage]\nsnapshot_every = {snapshot_every}\n"
        ));
        let config = dir.join("cluster.toml");
        std::fs::write(&config, toml).expect("write cluster.toml");
        let status = Process::new(node_binary())
            .args(["certs", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .status()
            .expect("raft-node certs runs");
        assert!(status.success(), "raft-node certs failed");
        let client = ClientConnector::new(&dir.join("certs")).expect("client connector");
        let mut cluster = Cluster {
            dir,
            config,
            addrs,
            children: BTreeMap::new(),
            client,
            session: None,
            seq: 0,
            target: 1,
        };
        for id in 1..=n {
            cluster.restart(id);
        }
        cluster
    }

    /// Starts (or restarts) node `id` with its normal certificates and data.
    pub fn restart(&mut self, id: u64) {
        self.spawn(id, &[]);
    }

    /// Starts node `id` with extra arguments (e.g. foreign `--certs`).
    pub fn spawn(&mut self, id: u64, extra: &[&str]) {
        self.kill(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))
            .expect("node log");
        let child = Process::new(node_binary())
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("raft-node starts");
        self.children.insert(id, child);
    }

    /// SIGKILL node `id` and reap it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status of node `id` if it has exited on its own (it is then forgotten).
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let status = self
            .children
            .get_mut(&id)?
            .try_wait()
            .expect("wait for node")?;
        self.children.remove(&id);
        Some(status)
    }

    /// The process id of node `id`, if it is running.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    pub fn addr(&self, id: u64) -> &str {
        self.addrs
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a.as_str())
            .expect("known node")
    }

    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        match self
            .client
            .call(id, self.addr(id), &Request::Status, Duration::from_secs(1))
            .await
        {
            Ok(Response::Status(status)) => Some(status),
            _ => None,
        }
    }

    /// Waits until every node in `ids` agrees on one leader among them; returns it.
    pub async fn leader(&self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut leaders = Vec::new();
            for &id in ids {
                leaders.push(self.status(id).await.and_then(|s| s.leader));
            }
            if let Some(Some(leader)) = leaders.first() {
                if ids.contains(leader) && leaders.iter().all(|l| *l == Some(*leader)) {
                    return *leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?}: {leaders:?} (logs in {})",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers a client session in the shared namespace, starting at node `target`
    /// (updated to the node that answered).
    pub async fn register(&self, target: &mut u64) -> u64 {
        register_via(
            &self.client,
            &self.addrs,
            &self.dir,
            node::certs::SHARED_CLIENT_NAMESPACE,
            target,
        )
        .await
    }

    /// Runs one operation to completion, following redirects and retrying the same
    /// (client, seq) until it is answered; the test fails after [`PATIENCE`].
    pub async fn op(&mut self, op: Operation) -> Outcome {
        let session = match self.session {
            Some(session) => session,
            None => {
                let mut target = self.target;
                let session = self.register(&mut target).await;
                self.target = target;
                *self.session.insert(session)
            }
        };
        self.seq += 1;
        let command = Command {
            client: session,
            seq: self.seq,
            op,
            time_ms: 0,
        };
        op_via(
            &self.client,
            &self.addrs,
            &self.dir,
            command,
            &mut self.target,
        )
        .await
        .0
    }

    pub async fn write(&mut self, key: &str, value: i64) {
        let outcome = self
            .op(Operation::Write {
                key: key.into(),
                value: Value::Int(value),
            })
            .await;
        assert_eq!(outcome, Outcome::Written);
    }

    pub async fn read(&mut self, key: &str) -> Option<Value> {
        match self.op(Operation::Read { key: key.into() }).await {
            Outcome::Value(v) => v,
            other => panic!("read answered {other:?}"),
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn applied(&self, id: u64, index: u64) -> NodeStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.status(id).await {
                if status.applied_index >= index {
                    return status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply index {index} (logs in {})",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// Runs `command` to completion through `client`, starting at node `target` and leaving
/// there the node that answered: follows redirects and retries the same (client, seq) until
/// answered (the session makes it exactly-once); panics after [`PATIENCE`], naming `dir`
/// for the logs. Returns the outcome and how many attempts failed before it.
pub async fn op_via(
    client: &ClientConnector,
    addrs: &[(u64, String)],
    dir: &Path,
    command: Command,
    target: &mut u64,
) -> (Outcome, u32) {
    let deadline = Instant::now() + PATIENCE;
    let request = Request::Op(command);
    let mut failed = 0;
    loop {
        let addr = addrs
            .iter()
            .find(|(id, _)| *id == *target)
            .map(|(_, a)| a.as_str())
            .expect("known node");
        let reply = client
            .call(*target, addr, &request, Duration::from_secs(3))
            .await;
        match reply {
            Ok(Response::Done(outcome)) => return (outcome, failed),
            Ok(Response::NotLeader {
                leader: Some(leader),
                ..
            }) => *target = leader,
            _ => {
                // No leader known, refused, or unknown outcome: try the next node with
                // the same sequence number (the session makes it exactly-once).
                let i = addrs.iter().position(|(id, _)| *id == *target).unwrap_or(0);
                *target = addrs[(i + 1) % addrs.len()].0;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        failed += 1;
        assert!(
            Instant::now() < deadline,
            "operation not answered: {request:?} (logs in {})",
            dir.display()
        );
    }
}

/// Registers a session in `namespace` (the caller's certificate's) through `op_via`; returns
/// its id.
pub async fn register_via(
    client: &ClientConnector,
    addrs: &[(u64, String)],
    dir: &Path,
    namespace: u64,
    target: &mut u64,
) -> u64 {
    let command = Command {
        client: node::certs::client_id(namespace, 0),
        seq: 0,
        op: Operation::Register,
        time_ms: 0,
    };
    match op_via(client, addrs, dir, command, target).await.0 {
        Outcome::Registered { session } => session,
        other => panic!("registration answered {other:?}"),
    }
}

/// Makes a second, foreign CA and certificates for the same cluster file in `out`.
pub fn foreign_certs(config: &Path, out: &Path) {
    let status = Process::new(node_binary())
        .args(["certs", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("raft-node certs runs");
    assert!(status.success());
}
