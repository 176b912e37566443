//! What a leader knows about each follower's log, and how it paces replication to it.

use super::types::Index;
use std::collections::VecDeque;

/// How the leader is currently talking to a follower (as in etcd/raft).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicationState {
    /// The match point is unknown: one AppendEntries at a time until one is accepted.
    Probe,
    /// The follower is in step: entries are pipelined, up to `max_inflight` messages.
    Replicate,
    /// The follower needs entries the leader has compacted; a snapshot is on its way.
    Snapshot { index: Index },
}

/// The leader's view of one follower.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    pub state: ReplicationState,
    /// Last index of each AppendEntries in flight (Replicate), oldest first.
    pub inflight: VecDeque<Index>,
    /// In Probe: an AppendEntries was sent since the last response or heartbeat.
    pub probe_sent: bool,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Highest ReadIndex round the follower has acknowledged.
    pub read_round: u64,
    /// An AppendEntries was accepted since the last heartbeat (the pipeline is moving).
    pub acked_since_heartbeat: bool,
    /// In Snapshot: heartbeats since the snapshot was sent (it is retried after a timeout).
    pub snapshot_wait: u32,
    /// The snapshot index at which the follower was last probed because the entries it
    /// needed were compacted: a second need sends the snapshot itself.
    pub boundary_probe: Option<Index>,
    /// The highest commit index sent to the follower (capped at what it was sent).
    pub commit_sent: Index,
}

impl Progress {
    pub fn new(next: Index) -> Self {
        Progress {
            matched: 0,
            next,
            state: ReplicationState::Probe,
            inflight: VecDeque::new(),
            probe_sent: false,
            // Not until it answers: a leader that hears from no quorum within its first
            // election timeout steps down then, not one timeout later.
            recent_active: false,
            read_round: 0,
            acked_since_heartbeat: false,
            snapshot_wait: 0,
            boundary_probe: None,
            commit_sent: 0,
        }
    }

    /// Whether another AppendEntries may be sent now.
    pub fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.probe_sent,
            ReplicationState::Replicate => self.inflight.len() < max_inflight,
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Records an AppendEntries carrying entries up to `last`.
    pub fn sent(&mut self, last: Index, carried_entries: bool) {
        match self.state {
            ReplicationState::Replicate if carried_entries => {
                self.next = last + 1;
                self.inflight.push_back(last);
            }
            ReplicationState::Probe => self.probe_sent = true,
            _ => {}
        }
    }

    /// The follower accepted everything up to `index`. Returns whether that is news.
    pub fn accepted(&mut self, index: Index) -> bool {
        let news = index > self.matched;
        // In Probe the follower's log is known to match at `index`; only if that reaches
        // the probe point (`next - 1`) is the match point found. A heartbeat's ack of an
        // older point (say index 0 after an election) says nothing about the probe.
        let found = index + 1 >= self.next;
        if news {
            // Only an ack that moves the match point shows the pipeline is moving: a
            // heartbeat's ack (index == matched) must not hide lost AppendEntries.
            self.acked_since_heartbeat = true;
            self.matched = index;
        }
        self.next = self.next.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        match self.state {
            ReplicationState::Probe if found => {
                self.state = ReplicationState::Replicate;
                self.probe_sent = false;
            }
            ReplicationState::Snapshot { index: snap } if self.matched >= snap => {
                self.state = ReplicationState::Replicate;
            }
            _ => {}
        }
        news
    }

    /// Whether a rejection of the AppendEntries sent after `prev_index` is current: in
    /// Probe it must answer the probe (at `next - 1`); in Replicate it must be of a point
    /// past the match point (an older one cannot be rejected any more); a follower waiting
    /// for a snapshot has nothing outstanding to reject.
    pub fn rejection_is_current(&self, prev_index: Index) -> bool {
        match self.state {
            ReplicationState::Probe => prev_index + 1 == self.next,
            ReplicationState::Replicate => prev_index > self.matched,
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// The follower rejected an AppendEntries; try again from `next` (never below match+1).
    pub fn rejected(&mut self, next: Index) {
        self.next = next.max(self.matched + 1);
        self.state = ReplicationState::Probe;
        self.inflight.clear();
        self.probe_sent = false;
    }

    /// A snapshot up to `index` was sent.
    pub fn sending_snapshot(&mut self, index: Index) {
        self.state = ReplicationState::Snapshot { index };
        self.inflight.clear();
        self.snapshot_wait = 0;
    }

    /// Periodic heartbeat time (never a read's): a probe may be retried (its message may
    /// have been lost). A snapshot is retried only after `snapshot_timeout` heartbeats
    /// without its acknowledgement, by probing at its boundary first (the follower may have
    /// installed it and its answer been lost).
    pub fn heartbeat(&mut self, snapshot_timeout: u32) {
        self.probe_sent = false;
        if let ReplicationState::Snapshot { index } = self.state {
            self.snapshot_wait += 1;
            if self.snapshot_wait >= snapshot_timeout {
                self.state = ReplicationState::Probe;
                self.next = index.max(self.matched) + 1;
                self.boundary_probe = None;
            }
        }
        // A pipeline with nothing acknowledged for a whole heartbeat interval has lost
        // messages: stop waiting for them and probe from the match point again.
        if self.state == ReplicationState::Replicate
            && !self.inflight.is_empty()
            && !self.acked_since_heartbeat
        {
            self.inflight.clear();
            self.next = self.matched + 1;
            self.state = ReplicationState::Probe;
        }
        self.acked_since_heartbeat = false;
    }
}
