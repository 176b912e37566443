//! Where a client sends its next attempt and how long it waits for it: the timing of attempts
//! ([`Timing`]), the memory of nodes that just failed ([`Suspects`]) and one operation's walk
//! over the nodes ([`Walk`]).
//!
//! Failover is fast when a client stops waiting on a dead or cut-off node well before the
//! cluster elects a new leader, asks the other nodes in the meantime, and goes to the new
//! leader as soon as one of them names it. Pure: no I/O, the clock is passed in, so the policy
//! is tested without sleeping.

use model::core::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a client waits on one node before it tries another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Longest wait for a new connection to a node (QUIC and TLS handshake).
    pub connect_timeout: Duration,
    /// Longest wait for the answer to an attempt. The first attempt at a node that already
    /// left one unanswered waits as long (it is the cheap check whether the node is dead or
    /// slow, made while the others elect a leader); each further one waits twice as long as
    /// the one before (up to the node's own request timeout), so that a leader that is slow,
    /// not dead, still gets to answer.
    pub attempt_timeout: Duration,
    /// How long a node that just failed (no connection, no answer, refused, outcome unknown)
    /// is not asked first. It does not grow with repeated failures: a client bound to a node
    /// that comes back (a leader woken from a freeze, a restarted process) is there again
    /// within this time, which is what lets the lab see what such a node answers.
    pub node_backoff: Duration,
}

/// The default timing is well under the default election timeout (0.55–1 s), so a client has
/// given up on a dead leader before the others elect a new one.
impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_millis(300),
            attempt_timeout: Duration::from_millis(300),
            node_backoff: Duration::from_secs(1),
        }
    }
}

impl Timing {
    /// How long to wait for an attempt at a node that has already left `unanswered` attempts of
    /// this operation unanswered; never more than `limit`.
    pub fn attempt_timeout(&self, unanswered: u32, limit: Duration) -> Duration {
        let doublings = unanswered.saturating_sub(1).min(16);
        self.attempt_timeout
            .saturating_mul(1u32 << doublings)
            .min(limit)
    }
}

/// Nodes that failed recently, each with the end of its back-off. The clients of one cluster
/// share one (so that one client's discovery spares the others the wait); each client keeps
/// another for its home node alone (see [`Walk::start`]).
#[derive(Clone, Debug, Default)]
pub struct Suspects {
    nodes: BTreeMap<NodeId, Instant>,
}

impl Suspects {
    /// `node` failed at `now`: skip it for `backoff` from now.
    pub fn fail(&mut self, node: NodeId, now: Instant, backoff: Duration) {
        self.nodes.insert(node, now + backoff);
    }

    /// `node` answered: trust it again.
    pub fn clear(&mut self, node: NodeId) {
        self.nodes.remove(&node);
    }

    /// Whether `node` is still being skipped at `now`.
    pub fn is_suspect(&self, node: NodeId, now: Instant) -> bool {
        self.nodes.get(&node).is_some_and(|until| now < *until)
    }

    /// When `node` may be asked again (`None`: it may now).
    fn until(&self, node: NodeId, now: Instant) -> Option<Instant> {
        self.nodes.get(&node).copied().filter(|until| now < *until)
    }
}

/// What a client knows when it picks a node.
pub struct View<'a> {
    /// Every node of the cluster, in configuration order.
    pub nodes: &'a [NodeId],
    pub suspects: &'a Suspects,
    pub now: Instant,
}

impl View<'_> {
    /// The first of `preferred` that is a node of the cluster and not suspect; else the next
    /// node round-robin from `rr` that is not suspect and not in `skip`; else (every node is
    /// suspect or skipped) the node whose back-off ends first, so a client never runs out
    /// of nodes to try. `None` only for a cluster without nodes.
    pub fn pick(
        &self,
        preferred: &[Option<NodeId>],
        skip: &BTreeSet<NodeId>,
        rr: &mut usize,
    ) -> Option<NodeId> {
        let fresh = |n: NodeId| self.nodes.contains(&n) && !self.suspects.is_suspect(n, self.now);
        if let Some(n) = preferred.iter().flatten().copied().find(|&n| fresh(n)) {
            return Some(n);
        }
        let len = self.nodes.len();
        for i in 0..len {
            let n = self.nodes[(*rr + i) % len];
            if fresh(n) && !skip.contains(&n) {
                *rr = (*rr + i + 1) % len;
                return Some(n);
            }
        }
        let soonest = self
            .nodes
            .iter()
            .copied()
            .filter(|n| !skip.contains(n))
            .min_by_key(|&n| self.suspects.until(n, self.now));
        soonest.or_else(|| self.nodes.get(*rr % len.max(1)).copied())
    }
}

/// One operation's way through the nodes, from attempt to attempt.
///
/// A leader hint naming a node that is not suspect is followed at once. A hint naming a
/// suspect (a leader that just died or was cut off, which the others name until they elect
/// a new one) sends the next attempt to a node not asked yet in this round instead; once
/// every node that is not suspect has been asked and all named the same suspect, the suspect
/// is asked again: it may be a slow leader rather than a dead one.
#[derive(Clone, Debug, Default)]
pub struct Walk {
    /// Nodes asked in this round.
    asked: BTreeSet<NodeId>,
    /// The suspect every node asked in this round named as the leader, if they all did.
    named: Option<NodeId>,
    /// Whether some node of this round answered without naming `named`.
    dissent: bool,
    /// Unanswered attempts of this operation, per node.
    unanswered: BTreeMap<NodeId, u32>,
}

/// Where the next attempt goes, and whether to go at once (a fresh leader hint) or after the
/// retry back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub node: NodeId,
    pub at_once: bool,
}

impl Walk {
    /// The node an operation starts at: `home`, else the known leader, else the next node
    /// round-robin; suspects last. Whether the home node is in its back-off is the client's
    /// own memory, not the shared one (the caller passes `None` then): processes bound to one
    /// node then come back to it each at its own time rather than all together, so that one
    /// of them is likely there when the node wakes up.
    pub fn start(
        &mut self,
        view: &View<'_>,
        home: Option<NodeId>,
        leader: Option<NodeId>,
        rr: &mut usize,
    ) -> Option<NodeId> {
        let node = match home.filter(|h| view.nodes.contains(h)) {
            Some(h) => h,
            None => view.pick(&[leader], &BTreeSet::new(), rr)?,
        };
        self.asked.insert(node);
        Some(node)
    }

    /// How long to wait for the answer of the attempt at `node`.
    pub fn timeout(&self, node: NodeId, timing: &Timing, limit: Duration) -> Duration {
        let unanswered = self.unanswered.get(&node).copied().unwrap_or(0);
        timing.attempt_timeout(unanswered, limit)
    }

    /// The attempt at `node` left the outcome open without an answer (no answer in time).
    pub fn unanswered(&mut self, node: NodeId) {
        *self.unanswered.entry(node).or_default() += 1;
    }

    /// The next node after an attempt at `node` that did not end the operation: `answered`
    /// whether `node` answered at all, `hint` the leader it named, if any.
    pub fn next(
        &mut self,
        view: &View<'_>,
        node: NodeId,
        answered: bool,
        hint: Option<NodeId>,
        rr: &mut usize,
    ) -> Option<Step> {
        if let Some(h) = hint.filter(|&h| h != node && view.nodes.contains(&h)) {
            if !view.suspects.is_suspect(h, view.now) {
                return Some(self.go(h, true));
            }
            match self.named {
                None if !self.dissent => self.named = Some(h),
                Some(n) if n == h => {}
                _ => self.dissent = true,
            }
        } else if answered {
            // A node that answers without naming the suspect (an election is under way, or it
            // leads itself) breaks the unanimity; one that does not answer says nothing.
            self.dissent = true;
        }
        if let Some(n) = view.pick(&[], &self.asked, rr) {
            if !self.asked.contains(&n) && !view.suspects.is_suspect(n, view.now) {
                return Some(self.go(n, false));
            }
        }
        // A whole round: every node that is not suspect has been asked.
        let unanimous = if self.dissent { None } else { self.named };
        self.asked.clear();
        self.named = None;
        self.dissent = false;
        let n = match unanimous {
            Some(suspect) => suspect,
            None => view.pick(&[], &BTreeSet::new(), rr)?,
        };
        Some(self.go(n, false))
    }

    fn go(&mut self, node: NodeId, at_once: bool) -> Step {
        self.asked.insert(node);
        Step { node, at_once }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [NodeId; 5] = [1, 2, 3, 4, 5];
    const SECOND: Duration = Duration::from_secs(1);

    fn view<'a>(suspects: &'a Suspects, now: Instant) -> View<'a> {
        View {
            nodes: &NODES,
            suspects,
            now,
        }
    }

    #[test]
    fn attempt_timeouts_double_per_unanswered_attempt_up_to_the_limit() {
        let t = Timing::default();
        let limit = Duration::from_secs(4);
        assert_eq!(t.attempt_timeout(0, limit), Duration::from_millis(300));
        assert_eq!(t.attempt_timeout(1, limit), Duration::from_millis(300));
        assert_eq!(t.attempt_timeout(2, limit), Duration::from_millis(600));
        assert_eq!(t.attempt_timeout(3, limit), Duration::from_millis(1200));
        assert_eq!(t.attempt_timeout(6, limit), limit);
        assert_eq!(t.attempt_timeout(u32::MAX, limit), limit);
        assert_eq!(
            t.attempt_timeout(0, Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn defaults_give_up_on_a_node_before_an_election_can_end() {
        let t = Timing::default();
        // The default election timeout is 11..=20 ticks of 50 ms.
        let shortest_election = Duration::from_millis(550);
        assert!(t.attempt_timeout < shortest_election);
        assert!(t.connect_timeout < shortest_election);
    }

    #[test]
    fn a_failed_node_is_skipped_for_the_back_off_only() {
        let t0 = Instant::now();
        let mut s = Suspects::default();
        s.fail(3, t0, SECOND);
        assert!(s.is_suspect(3, t0));
        assert!(s.is_suspect(3, t0 + SECOND - Duration::from_millis(1)));
        assert!(!s.is_suspect(3, t0 + SECOND));
        assert!(!s.is_suspect(2, t0));
        // Failing again and again never makes it longer: the node is never given up on.
        let mut t = t0;
        for _ in 0..10 {
            s.fail(3, t, SECOND);
            t += SECOND;
            assert!(!s.is_suspect(3, t), "never skipped for good");
        }
        // An answer clears it at once.
        s.fail(3, t, SECOND);
        s.clear(3);
        assert!(!s.is_suspect(3, t));
    }

    #[test]
    fn an_operation_starts_at_home_then_the_leader_then_round_robin_skipping_suspects() {
        let now = Instant::now();
        let mut shared = Suspects::default();
        let mut own = Suspects::default();
        let mut rr = 0;
        let start = |shared: &Suspects, own: &Suspects, now, rr: &mut usize| {
            let home = Some(2).filter(|&h| !own.is_suspect(h, now));
            Walk::default().start(&view(shared, now), home, Some(4), rr)
        };
        assert_eq!(start(&shared, &own, now, &mut rr), Some(2));
        // Another client's failure at node 2 does not keep this one from its home...
        shared.fail(2, now, SECOND);
        assert_eq!(start(&shared, &own, now, &mut rr), Some(2));
        // ...its own does.
        own.fail(2, now, SECOND);
        assert_eq!(start(&shared, &own, now, &mut rr), Some(4));
        shared.fail(4, now, SECOND);
        assert_eq!(start(&shared, &own, now, &mut rr), Some(1));
        assert_eq!(start(&shared, &own, now, &mut rr), Some(3));
        assert_eq!(start(&shared, &own, now, &mut rr), Some(5));
        assert_eq!(start(&shared, &own, now, &mut rr), Some(1));
        // Once the back-off is over, home comes first again.
        let later = now + SECOND;
        assert_eq!(start(&shared, &own, later, &mut rr), Some(2));
    }

    #[test]
    fn when_every_node_is_suspect_the_one_back_soonest_is_asked() {
        let now = Instant::now();
        let mut s = Suspects::default();
        for (i, n) in NODES.iter().enumerate() {
            s.fail(*n, now + Duration::from_millis(10 * (5 - i as u64)), SECOND);
        }
        let mut rr = 0;
        assert_eq!(
            Walk::default().start(&view(&s, now), None, Some(1), &mut rr),
            Some(5)
        );
    }

    #[test]
    fn a_hint_to_a_live_node_is_followed_at_once() {
        let now = Instant::now();
        let s = Suspects::default();
        let mut rr = 0;
        let mut w = Walk::default();
        assert_eq!(w.start(&view(&s, now), Some(2), None, &mut rr), Some(2));
        assert_eq!(
            w.next(&view(&s, now), 2, true, Some(4), &mut rr),
            Some(Step {
                node: 4,
                at_once: true
            })
        );
    }

    #[test]
    fn a_hint_to_a_suspect_leader_sends_the_client_round_the_others_then_back_to_it() {
        let now = Instant::now();
        let mut s = Suspects::default();
        let mut rr = 0;
        let mut w = Walk::default();
        // The leader (1) did not answer in time.
        assert_eq!(w.start(&view(&s, now), Some(1), Some(1), &mut rr), Some(1));
        w.unanswered(1);
        s.fail(1, now, SECOND);
        let mut step = w
            .next(&view(&s, now), 1, false, None, &mut rr)
            .map(|s| s.node);
        let mut seen = Vec::new();
        // The others all still name node 1 (no election yet): each is asked once.
        while let Some(n) = step.filter(|&n| n != 1) {
            seen.push(n);
            let next = w.next(&view(&s, now), n, true, Some(1), &mut rr);
            assert!(!next.is_some_and(|s| s.at_once));
            step = next.map(|s| s.node);
        }
        seen.sort();
        assert_eq!(seen, vec![2, 3, 4, 5]);
        // Unanimous: node 1 may be slow rather than dead; it is asked again, and longer each
        // time it leaves the operation unanswered.
        assert_eq!(step, Some(1));
        let t = Timing::default();
        assert_eq!(w.timeout(1, &t, 4 * SECOND), Duration::from_millis(300));
        w.unanswered(1);
        assert_eq!(w.timeout(1, &t, 4 * SECOND), Duration::from_millis(600));
        assert_eq!(w.timeout(2, &t, 4 * SECOND), Duration::from_millis(300));
    }

    #[test]
    fn a_new_leader_named_during_the_round_is_followed() {
        let now = Instant::now();
        let mut s = Suspects::default();
        let mut rr = 0;
        let mut w = Walk::default();
        w.start(&view(&s, now), None, Some(1), &mut rr);
        s.fail(1, now, SECOND);
        let n = w
            .next(&view(&s, now), 1, false, None, &mut rr)
            .map(|s| s.node);
        assert_eq!(n, Some(2));
        let n = w
            .next(&view(&s, now), 2, true, Some(1), &mut rr)
            .map(|s| s.node);
        assert_eq!(n, Some(3));
        assert_eq!(
            w.next(&view(&s, now), 3, true, Some(4), &mut rr),
            Some(Step {
                node: 4,
                at_once: true
            })
        );
    }

    #[test]
    fn without_a_unanimous_suspect_a_new_round_begins_elsewhere() {
        let now = Instant::now();
        let mut s = Suspects::default();
        let mut rr = 0;
        let mut w = Walk::default();
        w.start(&view(&s, now), None, Some(1), &mut rr);
        s.fail(1, now, SECOND);
        let mut node = 1;
        let mut steps = Vec::new();
        for _ in 0..8 {
            // An election is under way: nobody knows the leader.
            let next = w.next(&view(&s, now), node, true, None, &mut rr);
            node = next.map(|s| s.node).unwrap_or(0);
            steps.push(node);
        }
        assert!(!steps.contains(&1), "{steps:?}");
        assert_eq!(&steps[..4], &[2, 3, 4, 5]);
    }
}
