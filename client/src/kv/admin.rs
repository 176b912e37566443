//! Operator requests: single-server membership changes and leadership transfers, sent to
//! the leader, and the membership as the leader reports it.
//!
//! Each request goes to the node that says it leads (found by asking every node's status)
//! and is retried there while the answer says "not yet" (a change still uncommitted, a
//! transfer under way, leadership moving) until the deadline; a refusal that waiting cannot
//! cure is returned at once.

use crate::kv::status::{agreed_leader, likely_leader, status_all};
use model::core::{MembershipChange, NodeId};
use node::protocol::{NodeStatus, Request, Response};
use node::transport::ClientConnector;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// Between two rounds of status calls or two attempts.
const POLL: Duration = Duration::from_millis(100);

/// Why an operator request did not complete.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("no leader within {waited:?}: {detail}")]
    NoLeader { waited: Duration, detail: String },
    #[error("node {node} (the leader) refused: {reason}")]
    Refused { node: NodeId, reason: String },
    #[error("{what}: not done within {waited:?}: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
}

/// One member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// The highest log index known replicated there (the leader's own: its last index).
    pub match_index: Option<u64>,
    pub connected: bool,
}

/// The cluster's membership, from the leader's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    pub leader: NodeId,
    pub term: u64,
    pub commit_index: u64,
    pub members: Vec<Member>,
}

/// Sends operator requests to a cluster whose nodes (id, address) are known.
pub struct Admin<'a> {
    client: &'a ClientConnector,
    nodes: Vec<(NodeId, String)>,
    timeout: Duration,
}

impl<'a> Admin<'a> {
    /// Requests to `nodes` (every node that may answer, learners and new nodes included),
    /// each given up after `timeout`.
    pub fn new(
        client: &'a ClientConnector,
        nodes: Vec<(NodeId, String)>,
        timeout: Duration,
    ) -> Admin<'a> {
        Admin {
            client,
            nodes,
            timeout,
        }
    }

    /// The membership as the leader reports it.
    pub async fn members(&self) -> Result<Members, AdminError> {
        let leader = self.leader_status(Instant::now() + self.timeout).await?;
        let mut members: Vec<Member> = leader
            .peers
            .iter()
            .map(|p| Member {
                id: p.id,
                addr: p.addr.clone(),
                voter: leader.voters.contains(&p.id),
                match_index: p.match_index,
                connected: p.connected,
            })
            .collect();
        members.push(Member {
            id: leader.id,
            addr: self.addr(leader.id).unwrap_or_default(),
            voter: leader.voters.contains(&leader.id),
            match_index: Some(leader.last_index),
            connected: true,
        });
        members.sort_by_key(|m| m.id);
        Ok(Members {
            leader: leader.id,
            term: leader.term,
            commit_index: leader.commit_index,
            members,
        })
    }

    /// Proposes `change` at the leader and waits until it is committed; returns its index.
    pub async fn change(&self, change: MembershipChange) -> Result<u64, AdminError> {
        let what = describe(&change);
        let request = Request::ChangeMembership(change);
        self.until_done(
            &what,
            |leader, answer| match answer {
                Response::Committed { index } => Step::Done(index),
                Response::Refused(reason) if is_transient(&reason) => Step::Again(reason),
                Response::Refused(reason) => Step::Fail(AdminError::Refused {
                    node: leader,
                    reason,
                }),
                other => Step::Again(format!("{other:?}")),
            },
            &request,
        )
        .await
    }

    /// Asks the leader to hand leadership to voter `to`, without waiting for the election;
    /// returns the node asked.
    pub async fn request_transfer(&self, to: NodeId) -> Result<NodeId, AdminError> {
        self.until_done(
            &format!("ask for leadership to move to node {to}"),
            |leader, answer| match answer {
                Response::Transferring => Step::Done(leader),
                Response::Refused(reason) if is_transient(&reason) => Step::Again(reason),
                Response::Refused(reason) => Step::Fail(AdminError::Refused {
                    node: leader,
                    reason,
                }),
                other => Step::Again(format!("{other:?}")),
            },
            &Request::TransferLeadership(to),
        )
        .await
    }

    /// Hands leadership to voter `to` and waits until a majority follows it.
    pub async fn transfer(&self, to: NodeId) -> Result<(), AdminError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let what = format!("move leadership to node {to}");
        let mut last;
        loop {
            let statuses = status_all(self.client, &self.nodes, POLL * 5).await;
            let voters = statuses
                .iter()
                .find_map(|(_, s)| s.as_ref().ok().map(|s| s.voters.len()))
                .unwrap_or(self.nodes.len());
            match agreed_leader(&statuses, voters) {
                Some(leader) if leader == to => return Ok(()),
                Some(leader) => match self.call(leader, &Request::TransferLeadership(to)).await {
                    Ok(Response::Transferring) => last = format!("node {leader} is handing over"),
                    Ok(Response::Refused(reason)) if is_transient(&reason) => last = reason,
                    Ok(Response::Refused(reason)) => {
                        return Err(AdminError::Refused {
                            node: leader,
                            reason,
                        })
                    }
                    Ok(other) => last = format!("node {leader}: {other:?}"),
                    Err(e) => last = format!("node {leader}: {e}"),
                },
                None => last = "no leader agreed yet".into(),
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout {
                    what,
                    waited: started.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Node `id` at `addr` (running, empty or with its old data) becomes a voter: added as a
    /// learner, caught up with the committed log, promoted. Picks up where an earlier,
    /// interrupted call stopped (a learner already). `progress` hears each step done.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: &str,
        mut progress: impl FnMut(String),
    ) -> Result<(), AdminError> {
        let members = self.members().await?;
        match members.members.iter().find(|m| m.id == id) {
            Some(m) if m.voter => return Ok(()),
            Some(_) => {}
            None => {
                let index = self
                    .change(MembershipChange::AddLearner {
                        id,
                        addr: addr.to_string(),
                    })
                    .await?;
                progress(format!("node {id} added as a learner (log index {index})"));
            }
        }
        self.caught_up(id).await?;
        progress(format!("node {id} holds the committed log"));
        let index = self.change(MembershipChange::PromoteLearner(id)).await?;
        progress(format!("node {id} is a voter (log index {index})"));
        Ok(())
    }

    /// Node `id` leaves the membership; if it leads, leadership moves first to the most
    /// caught-up other voter. `progress` hears each step done.
    pub async fn remove_member(
        &self,
        id: NodeId,
        mut progress: impl FnMut(String),
    ) -> Result<(), AdminError> {
        let members = self.members().await?;
        if members.leader == id {
            let to = successor(&members, id).ok_or_else(|| AdminError::Refused {
                node: id,
                reason: format!("node {id} is the only voter: it cannot be removed"),
            })?;
            self.transfer(to).await?;
            progress(format!("leadership moved from node {id} to node {to}"));
        }
        let index = self.change(MembershipChange::Remove(id)).await?;
        progress(format!("node {id} removed (log index {index})"));
        Ok(())
    }

    /// Waits until the leader has replicated its whole committed log to node `id`.
    pub async fn caught_up(&self, id: NodeId) -> Result<(), AdminError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        loop {
            let leader = self.leader_status(deadline).await?;
            let matched = leader
                .peers
                .iter()
                .find(|p| p.id == id)
                .and_then(|p| p.match_index);
            if matched.is_some_and(|m| m >= leader.commit_index) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout {
                    what: format!("node {id} catching up"),
                    waited: started.elapsed(),
                    last: format!(
                        "it holds up to index {} of the leader's {}",
                        matched.map_or("none".into(), |m| m.to_string()),
                        leader.commit_index
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `request` to the leader until `judge` says it is done or failed.
    async fn until_done<T>(
        &self,
        what: &str,
        judge: impl Fn(NodeId, Response) -> Step<T>,
        request: &Request,
    ) -> Result<T, AdminError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut last;
        loop {
            let leader = self.leader_status(deadline).await?.id;
            match self.call(leader, request).await {
                Ok(Response::NotLeader { .. }) => last = format!("node {leader} no longer leads"),
                Ok(answer) => match judge(leader, answer) {
                    Step::Done(value) => return Ok(value),
                    Step::Fail(e) => return Err(e),
                    Step::Again(why) => last = why,
                },
                Err(e) => last = format!("node {leader}: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout {
                    what: what.to_string(),
                    waited: started.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The status of the node that says it leads (the highest term's), polled until one does.
    async fn leader_status(&self, deadline: Instant) -> Result<NodeStatus, AdminError> {
        let started = Instant::now();
        loop {
            let statuses = status_all(self.client, &self.nodes, POLL * 5).await;
            let leading = likely_leader(&statuses).and_then(|leader| {
                statuses
                    .iter()
                    .find(|(id, _)| *id == leader)
                    .and_then(|(_, s)| s.as_ref().ok())
                    .filter(|s| s.leader == Some(s.id))
                    .cloned()
            });
            if let Some(status) = leading {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let detail = statuses
                    .iter()
                    .map(|(id, s)| match s {
                        Ok(s) => format!("node {id}: {} in term {}", s.role, s.term),
                        Err(e) => format!("node {id}: {e}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(AdminError::NoLeader {
                    waited: started.elapsed(),
                    detail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn call(&self, id: NodeId, request: &Request) -> Result<Response, String> {
        let addr = self
            .addr(id)
            .ok_or_else(|| format!("no address known for node {id}"))?;
        self.client
            .call(id, &addr, request, self.timeout.min(Duration::from_secs(5)))
            .await
            .map_err(|e| e.to_string())
    }

    fn addr(&self, id: NodeId) -> Option<String> {
        self.nodes
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, a)| a.clone())
    }
}

/// The voter that takes over from `leaving`: the most caught-up other voter.
fn successor(members: &Members, leaving: NodeId) -> Option<NodeId> {
    members
        .members
        .iter()
        .filter(|m| m.voter && m.id != leaving)
        .max_by_key(|m| (m.match_index, std::cmp::Reverse(m.id)))
        .map(|m| m.id)
}

/// What one answer means for [`Admin::until_done`].
enum Step<T> {
    Done(T),
    Again(String),
    Fail(AdminError),
}

/// Refusals that waiting cures: the previous change or transfer still finishing, a learner
/// that fell behind again as the log moved on.
fn is_transient(reason: &str) -> bool {
    [
        "still uncommitted",
        "transfer is in progress",
        "has not caught up",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// A membership change in words, for errors.
pub fn describe(change: &MembershipChange) -> String {
    match change {
        MembershipChange::AddLearner { id, addr } => {
            format!("add node {id} at {addr} as a learner")
        }
        MembershipChange::PromoteLearner(id) => format!("promote node {id} to voter"),
        MembershipChange::Remove(id) => format!("remove node {id}"),
    }
}
