//! What the nodes say about themselves: every node's status at once, and the leader a
//! majority agrees on. Used to wait for a cluster to be ready, by `cluster status`, and by
//! the nemesis to find the leader it faults.

use model::core::NodeId;
use node::protocol::{NodeStatus, Request, Response};
use node::transport::ClientConnector;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::debug;

/// Interval between two rounds of status calls while waiting for a leader.
const LEADER_POLL: Duration = Duration::from_millis(50);

/// No leader agreed on in time; `detail` says what each node answered.
#[derive(Debug, Error)]
#[error("no leader agreed by a majority within {waited:?}: {detail}")]
pub struct NoLeader {
    pub waited: Duration,
    pub detail: String,
}

/// Asks every node in `nodes` for its status concurrently, each call within `per_call`.
pub async fn status_all(
    client: &ClientConnector,
    nodes: &[(NodeId, String)],
    per_call: Duration,
) -> Vec<(NodeId, Result<NodeStatus, String>)> {
    let calls = nodes.iter().map(|(id, addr)| async move {
        let answer = match client.call(*id, addr, &Request::Status, per_call).await {
            Ok(Response::Status(status)) => Ok(status),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        (*id, answer)
    });
    join_all(calls.collect()).await
}

/// The leader a majority of `cluster_size` agrees on, if the leader itself says so.
pub fn agreed_leader(
    statuses: &[(NodeId, Result<NodeStatus, String>)],
    cluster_size: usize,
) -> Option<NodeId> {
    let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (_, status) in statuses {
        if let Ok(Some(leader)) = status.as_ref().map(|s| s.leader) {
            *votes.entry(leader).or_default() += 1;
        }
    }
    votes.into_iter().find_map(|(leader, count)| {
        let self_confirmed = statuses
            .iter()
            .any(|(id, s)| *id == leader && matches!(s, Ok(s) if s.leader == Some(leader)));
        (count > cluster_size / 2 && self_confirmed).then_some(leader)
    })
}

/// The leader as one round of answers shows it, without waiting for agreement: the node
/// that says it leads (the one with the highest term if a deposed leader has not noticed
/// yet), else the leader most nodes name.
pub fn likely_leader(statuses: &[(NodeId, Result<NodeStatus, String>)]) -> Option<NodeId> {
    let answers: Vec<&NodeStatus> = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .collect();
    let self_declared = answers
        .iter()
        .filter(|s| s.leader == Some(s.id))
        .max_by_key(|s| s.term)
        .map(|s| s.id);
    self_declared.or_else(|| {
        let mut named: BTreeMap<NodeId, usize> = BTreeMap::new();
        for leader in answers.iter().filter_map(|s| s.leader) {
            *named.entry(leader).or_default() += 1;
        }
        named.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
    })
}

/// Polls `nodes` every 50 ms until [`agreed_leader`] names one, or `timeout` passes.
pub async fn find_leader(
    client: &ClientConnector,
    nodes: &[(NodeId, String)],
    cluster_size: usize,
    timeout: Duration,
) -> Result<NodeId, NoLeader> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let per_call = left.clamp(Duration::from_millis(50), Duration::from_millis(500));
        let statuses = status_all(client, nodes, per_call).await;
        if let Some(leader) = agreed_leader(&statuses, cluster_size) {
            debug!(leader, waited = ?started.elapsed(), "leader agreed");
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            let detail = statuses
                .iter()
                .map(|(id, s)| match s {
                    Ok(s) => format!(
                        "node {id}: {} in term {}, leader {}",
                        s.role,
                        s.term,
                        s.leader.map_or("unknown".into(), |l| l.to_string())
                    ),
                    Err(e) => format!("node {id}: {e}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(NoLeader {
                waited: started.elapsed(),
                detail,
            });
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

/// Runs every future to completion concurrently; outputs in input order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: NodeId, leader: Option<NodeId>) -> (NodeId, Result<NodeStatus, String>) {
        (
            id,
            Ok(NodeStatus {
                id,
                role: if leader == Some(id) {
                    "leader"
                } else {
                    "follower"
                }
                .into(),
                term: 1,
                leader,
                commit_index: 0,
                applied_index: 0,
                last_index: 0,
                snapshot_index: 0,
                voters: vec![1, 2, 3],
                learners: Vec::new(),
                peers: Vec::new(),
                bugs: Vec::new(),
                cert_not_after: None,
            }),
        )
    }

    #[test]
    fn a_leader_needs_a_majority_and_its_own_word() {
        let down = |id| (id, Err::<NodeStatus, _>("unreachable".to_string()));
        assert_eq!(
            agreed_leader(&[status(1, Some(2)), status(2, Some(2)), down(3)], 3),
            Some(2)
        );
        // Two followers agree, but the leader itself is unreachable: not yet.
        assert_eq!(
            agreed_leader(&[status(1, Some(2)), down(2), status(3, Some(2))], 3),
            None
        );
        // The leader and one follower of five: no majority.
        assert_eq!(
            agreed_leader(&[status(1, Some(1)), status(2, Some(1)), down(3)], 5),
            None
        );
        assert_eq!(agreed_leader(&[status(1, None), status(2, None)], 3), None);
    }
}
