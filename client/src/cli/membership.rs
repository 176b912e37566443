//! `raft-lab cluster add|remove|transfer|members`: membership and leadership from the
//! command line, for local, namespace and remote clusters alike.
//!
//! The log is the truth about membership; `cluster.toml` follows it. `add` writes the new
//! node into the file, starts it (empty: it learns the cluster from the leader), adds it as
//! a learner, waits until it holds the committed log and promotes it. `remove` moves
//! leadership away first when the node leads, removes it, stops it and retires its id in
//! the file. Each step waits for the cluster to confirm it, and a failure says which step.

use crate::db::local::LocalCluster;
use crate::db::remote::RemoteCluster;
use crate::db::{cluster_file, Db};
use crate::kv::admin::{Admin, Members};
use anyhow::{anyhow, bail, Context, Result};
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::path::Path;
use std::time::Duration;
use tracing::info;

/// How long each step (an election, a catch-up, a commit) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `cluster add`: node `id` at `addr` joins as a learner, catches up, becomes a voter.
/// Prints each step. The node's certificate is issued by the cluster's CA unless it is in
/// the certificates directory already.
pub async fn add(config: &Path, id: NodeId, addr: &str, host: Option<&str>) -> Result<()> {
    let before = ClusterConfig::load(config)?;
    let original = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let certs = before.tls.certs_dir.clone();
    let has_cert = certs.join(node::certs::node_cert_file(id)).is_file()
        && certs.join(node::certs::node_key_file(id)).is_file();
    if !has_cert && !certs.join(node::certs::CA_KEY).is_file() {
        bail!(
            "{}: no certificate for node {id}, and no CA key to issue one: run `raft-node certs \
             --config {} --renew node-{id} --new-key` where the CA key is, and copy the node's \
             files here",
            certs.display(),
            config.display()
        );
    }
    let after = cluster_file::add_node(config, id, addr, host)?;
    println!("cluster.toml: node {id} at {addr} written");
    if !has_cert {
        let subject = node::certs::Subject::Node(id);
        if let Err(e) =
            node::certs::renew(&after, &certs, &subject, true, node::certs::DEFAULT_DAYS)
        {
            let _ = crate::control::files::write_atomically(config, &original);
            return Err(anyhow!(e).context(format!(
                "issuing node {id}'s certificate (cluster.toml restored)"
            )));
        }
        println!("certificate for node {id} issued by the cluster's CA");
    }
    let client = connector(&after)?;
    let admin = Admin::new(&client, nodes(&after), STEP_TIMEOUT);
    let mut learner = false;
    let result = match start(&after, id).await {
        Ok(()) => {
            println!("node {id} started");
            admin
                .add_member(id, addr, |step| {
                    learner = true;
                    println!("{step}");
                })
                .await
                .map_err(anyhow::Error::from)
        }
        Err(e) => Err(e),
    };
    client.close().await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if learner => Err(e.context(format!(
            "node {id} stays a learner: remove it with `raft-lab cluster remove --id {id}`"
        ))),
        Err(e) => {
            // Not a member: the file goes back to what it was, and the node stops.
            let _ = crate::control::files::write_atomically(config, &original);
            let _ = stop(&after, id).await;
            Err(e.context(format!("adding node {id} (cluster.toml restored)")))
        }
    }
}

/// `cluster remove`: node `id` leaves the cluster (leadership moves first if it leads),
/// is stopped, and its id is retired in the file.
pub async fn remove(config: &Path, id: NodeId) -> Result<()> {
    let loaded = ClusterConfig::load(config)?;
    if loaded.node(id).is_none() {
        bail!("{}: node {id} is not in the cluster", config.display());
    }
    let client = connector(&loaded)?;
    let admin = Admin::new(&client, nodes(&loaded), STEP_TIMEOUT);
    let result = admin.remove_member(id, |step| println!("{step}")).await;
    client.close().await;
    result?;
    // A dead machine cannot be stopped; the change is committed all the same.
    match stop(&loaded, id).await {
        Ok(()) => println!("node {id} stopped"),
        Err(e) => println!("node {id} not stopped: {e:#}"),
    }
    cluster_file::remove_node(config, id)?;
    println!("cluster.toml: node {id} removed, its id retired");
    Ok(())
}

/// `cluster transfer`: leadership moves to voter `to`.
pub async fn transfer(config: &Path, to: NodeId) -> Result<()> {
    let loaded = ClusterConfig::load(config)?;
    if loaded.node(to).is_none() {
        bail!("{}: node {to} is not in the cluster", config.display());
    }
    let client = connector(&loaded)?;
    let result = Admin::new(&client, nodes(&loaded), STEP_TIMEOUT)
        .transfer(to)
        .await;
    client.close().await;
    result?;
    println!("node {to} leads");
    Ok(())
}

/// `cluster members`: the membership as the leader reports it.
pub async fn members(config: &Path) -> Result<Members> {
    let loaded = ClusterConfig::load(config)?;
    let client = connector(&loaded)?;
    let result = Admin::new(&client, nodes(&loaded), STEP_TIMEOUT)
        .members()
        .await;
    client.close().await;
    Ok(result?)
}

/// [`members`] as `raft-lab cluster members` prints it.
pub fn format_members(m: &Members) -> String {
    let mut out = format!(
        "leader node {} in term {}, commit index {}\n",
        m.leader, m.term, m.commit_index
    );
    for member in &m.members {
        out.push_str(&format!(
            "node {:<3} {:<22} {:<8} match {:<8} {}\n",
            member.id,
            member.addr,
            if member.voter { "voter" } else { "learner" },
            member.match_index.map_or("-".into(), |i| i.to_string()),
            if member.id == m.leader {
                "leader"
            } else if member.connected {
                "connected"
            } else {
                "not connected"
            }
        ));
    }
    out
}

fn nodes(config: &ClusterConfig) -> Vec<(NodeId, String)> {
    config
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone()))
        .collect()
}

fn connector(config: &ClusterConfig) -> Result<ClientConnector> {
    ClientConnector::new(&config.tls.certs_dir)
        .with_context(|| format!("certificates in {}", config.tls.certs_dir.display()))
}

/// The cluster's processes: on their hosts with `[remote]`, on this machine otherwise.
fn open_db(config: &ClusterConfig) -> Result<Box<dyn Db>> {
    Ok(if config.remote.is_some() {
        Box::new(RemoteCluster::open(config.clone())?)
    } else {
        Box::new(LocalCluster::open(&config.path)?)
    })
}

async fn start(config: &ClusterConfig, id: NodeId) -> Result<()> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let mut db = open_db(&config)?;
        info!(id, "starting the new node");
        db.start(id).map_err(anyhow::Error::from)
    })
    .await?
}

async fn stop(config: &ClusterConfig, id: NodeId) -> Result<()> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let mut db = open_db(&config)?;
        db.kill(id).map_err(anyhow::Error::from)
    })
    .await?
}
