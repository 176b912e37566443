//! The runner: executes a [`Schedule`] in real time against a cluster (`dyn Db`) and its
//! network (`dyn Network`), records every action in the history, and heals everything before
//! it returns, also when its future is dropped midway.

use super::disk::{self, Corrupted, Damage};
use super::membership::{self, Change};
use super::partition::{self, Grouping};
use super::schedule::{Action, Fault, Schedule};
use super::{kill, pause, NemesisKind};
use crate::db::Db;
use crate::history::Recorder;
use crate::kv::status::{likely_leader, status_all};
use crate::net::netem;
use crate::net::Network;
use model::core::NodeId;
use node::transport::ClientConnector;
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long `isolate-leader` and the other leader faults wait for status answers before
/// taking their fallback node.
const LEADER_LOOKUP: Duration = Duration::from_millis(300);

/// A network fault without a network from [`preflight`].
const NO_NETWORK: &str =
    "no network control: network faults need `preflight` to succeed (nft, tc and root)";

/// What the nemesis did, for `results.json` ("fault coverage").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NemesisReport {
    pub requested: Vec<NemesisKind>,
    /// Faults planned per kind.
    pub scheduled: BTreeMap<NemesisKind, usize>,
    /// Faults that actually took effect, per kind (every requested kind is listed).
    pub applied: BTreeMap<NemesisKind, usize>,
    /// Requested kinds never applied.
    pub not_applied: Vec<NemesisKind>,
    /// Failed actions, one line each.
    pub errors: Vec<String>,
    /// Everything was healed at the end.
    pub healed: bool,
    /// The stop signal came before the schedule's end.
    pub stopped_early: bool,
}

impl NemesisReport {
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    fn finish(&mut self) {
        self.not_applied = self
            .requested
            .iter()
            .copied()
            .filter(|k| self.applied.get(k).copied().unwrap_or(0) == 0)
            .collect();
    }
}

/// Everything [`run_nemesis`] works with.
pub struct NemesisContext {
    control: Arc<Mutex<dyn Db>>,
    recorder: Recorder,
    client: Option<Arc<ClientConnector>>,
    network: Option<Box<dyn Network>>,
    state: watch::Sender<String>,
}

impl NemesisContext {
    pub fn new(control: Arc<Mutex<dyn Db>>, recorder: Recorder) -> Self {
        NemesisContext {
            control,
            recorder,
            client: None,
            network: None,
            state: watch::Sender::new("none".to_string()),
        }
    }

    /// The client `isolate-leader` asks for the current leader (without one it isolates a
    /// seeded random node).
    pub fn with_client(mut self, client: Arc<ClientConnector>) -> Self {
        self.client = Some(client);
        self
    }

    /// The network from [`preflight`]; torn down when the nemesis ends.
    pub fn with_network(mut self, network: Option<Box<dyn Network>>) -> Self {
        self.network = network;
        self
    }

    /// The faults in effect right now, one line (`"none"` when healthy): for a progress bar.
    pub fn state(&self) -> watch::Receiver<String> {
        self.state.subscribe()
    }
}

/// A fault in effect.
#[derive(Clone, Debug)]
enum Applied {
    Killed(NodeId),
    /// `kill-all` and `power-cut`: the nodes it killed (all, unless a kill failed).
    KilledAll(NemesisKind, Vec<NodeId>),
    /// `lose-unsynced`: killed, its unsynced writes dropped.
    LostUnsynced(NodeId),
    /// `disk-full`: the node's disk refuses writes that need space.
    DiskFull(NodeId),
    /// `corrupt`: a bit of the node's log flipped; the node refused to start (or failed to).
    Corrupted(Damage),
    Paused(NodeId),
    Partitioned(Grouping),
    /// `packet-loss` or `latency`.
    Degraded(NemesisKind),
    /// `membership`: the node is out of the cluster's membership (still running).
    Removed(NodeId),
    /// `freeze-leader`: `node` cut off by `grouping` (while `cut`) and SIGSTOPped (while
    /// `paused`). Ending it resumes the node if it is still paused, then heals the cut.
    Frozen {
        node: NodeId,
        grouping: Grouping,
        paused: bool,
        cut: bool,
    },
}

impl Applied {
    fn describe(&self) -> String {
        match self {
            Applied::Killed(n) => format!("kill n{n}"),
            Applied::KilledAll(kind, nodes) => format!("{kind} {nodes:?}"),
            Applied::LostUnsynced(n) => format!("lose-unsynced n{n}"),
            Applied::DiskFull(n) => format!("disk-full n{n}"),
            Applied::Corrupted(damage) => format!("corrupt n{}", damage.node),
            Applied::Paused(n) => format!("pause n{n}"),
            Applied::Removed(n) => format!("membership: n{n} removed"),
            Applied::Partitioned(g) => format!("{} {}", g.kind, g.describe()),
            Applied::Degraded(kind) => kind.to_string(),
            Applied::Frozen {
                node,
                grouping,
                paused,
                ..
            } => format!(
                "{} n{node} {} ({})",
                grouping.kind,
                grouping.describe(),
                if *paused { "frozen" } else { "awake, cut off" }
            ),
        }
    }

    /// Whether this fault keeps node `id` down (leader faults pick another node then).
    fn takes_down(&self, id: NodeId) -> bool {
        match self {
            Applied::Killed(n)
            | Applied::Paused(n)
            | Applied::Removed(n)
            | Applied::LostUnsynced(n)
            | Applied::DiskFull(n)
            | Applied::Corrupted(Damage { node: n, .. })
            | Applied::Frozen { node: n, .. } => *n == id,
            Applied::KilledAll(_, nodes) => nodes.contains(&id),
            Applied::Partitioned(_) | Applied::Degraded(_) => false,
        }
    }
}

struct Runner {
    ctx: NemesisContext,
    /// The schedule's seed (with the fault's index: which bit `corrupt` flips).
    seed: u64,
    nodes: Vec<NodeId>,
    active: BTreeMap<usize, Applied>,
    report: NemesisReport,
    partitioned_ever: bool,
    healed: bool,
}

/// Runs `schedule` in real time from now, until its end or until `stop` turns true (or its
/// sender is dropped), then heals everything and returns what was applied. Dropping the
/// future midway also heals (synchronously). The context, and with it the nftables table,
/// is dropped at the end.
pub async fn run_nemesis(
    schedule: Schedule,
    ctx: NemesisContext,
    mut stop: watch::Receiver<bool>,
) -> NemesisReport {
    let mut runner = Runner::new(&schedule, ctx);
    let start = tokio::time::Instant::now();
    for step in schedule.steps() {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => {
                runner.report.stopped_early = true;
                break;
            }
            () = tokio::time::sleep_until(start + step.at) => {}
        }
        let Some(planned) = schedule.faults.get(step.fault) else {
            continue;
        };
        match step.action {
            Action::Start => runner.start(step.fault, &planned.fault).await,
            Action::Wake => runner.wake(step.fault),
            Action::Stop => runner.stop(step.fault).await,
        }
        runner.publish();
    }
    runner.heal_all().await;
    runner.report.finish();
    info!(applied = ?runner.report.applied, healed = runner.report.healed, "nemesis done");
    std::mem::take(&mut runner.report)
}

/// Resolves when `stop` holds true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

impl Runner {
    fn new(schedule: &Schedule, ctx: NemesisContext) -> Runner {
        Runner {
            ctx,
            seed: schedule.seed,
            nodes: schedule.nodes.clone(),
            active: BTreeMap::new(),
            report: NemesisReport {
                requested: schedule.kinds.clone(),
                scheduled: schedule.counts(),
                applied: schedule.kinds.iter().map(|k| (*k, 0)).collect(),
                ..NemesisReport::default()
            },
            partitioned_ever: false,
            healed: false,
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, dyn Db + 'static> {
        // A poisoned lock means a panic elsewhere; signals and restarts still make sense.
        self.ctx.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn applied(&mut self, index: usize, kind: NemesisKind, applied: Applied) {
        *self.report.applied.entry(kind).or_default() += 1;
        info!(fault = index, "nemesis: {}", applied.describe());
        self.active.insert(index, applied);
    }

    fn failed(&mut self, what: String) {
        warn!("nemesis: {what}");
        self.report.errors.push(what);
    }

    async fn start(&mut self, index: usize, fault: &Fault) {
        let kind = fault.kind();
        match fault {
            Fault::Kill { node, leader } => {
                let node = self.target(*node, *leader).await;
                let result = kill::kill(&mut *self.control(), &self.ctx.recorder, node);
                match result {
                    Ok(()) => self.applied(index, kind, Applied::Killed(node)),
                    Err(e) => self.failed(e.to_string()),
                }
            }
            Fault::Pause { node, leader } => {
                let node = self.target(*node, *leader).await;
                let result = pause::pause(&mut *self.control(), &self.ctx.recorder, node);
                match result {
                    Ok(()) => self.applied(index, kind, Applied::Paused(node)),
                    Err(e) => self.failed(e.to_string()),
                }
            }
            Fault::KillAll | Fault::PowerCut => {
                let mut killed = Vec::new();
                for node in self.nodes.clone() {
                    let result = kill::kill(&mut *self.control(), &self.ctx.recorder, node);
                    match result {
                        Ok(()) => killed.push(node),
                        Err(e) => self.failed(e.to_string()),
                    }
                }
                // Every node is down before any disk loses what it had not synced.
                if kind == NemesisKind::PowerCut {
                    for &node in &killed {
                        let lost = disk::lose_unsynced(
                            &mut *self.control(),
                            &self.ctx.recorder,
                            node,
                            false,
                        );
                        if let Err(e) = lost {
                            self.failed(e.to_string());
                        }
                    }
                }
                if !killed.is_empty() {
                    self.applied(index, kind, Applied::KilledAll(kind, killed));
                }
            }
            Fault::LoseUnsynced { node } => {
                let node = *node;
                let killed = kill::kill(&mut *self.control(), &self.ctx.recorder, node);
                if let Err(e) = killed {
                    self.failed(e.to_string());
                    return;
                }
                let lost =
                    disk::lose_unsynced(&mut *self.control(), &self.ctx.recorder, node, true);
                match lost {
                    Ok(_) => self.applied(index, kind, Applied::LostUnsynced(node)),
                    Err(e) => {
                        // Killed all the same: restarted at the end, not counted.
                        self.failed(e.to_string());
                        self.active.insert(index, Applied::Killed(node));
                    }
                }
            }
            Fault::DiskFull { node } => {
                let node = *node;
                let filled = disk::fill(&mut *self.control(), &self.ctx.recorder, node);
                if let Err(e) = filled {
                    self.failed(e.to_string());
                    return;
                }
                // Restarted on the full disk: its log's headroom (space written ahead of
                // the tail) would otherwise carry it through a short fault untouched.
                let restarted = {
                    // One guard for both: a second `control()` in one expression deadlocks.
                    let mut control = self.control();
                    kill::kill(&mut *control, &self.ctx.recorder, node)
                        .and_then(|()| kill::restart(&mut *control, &self.ctx.recorder, node))
                };
                if let Err(e) = restarted {
                    self.failed(e.to_string());
                }
                self.applied(index, kind, Applied::DiskFull(node));
            }
            Fault::Corrupt { node } => {
                let seed = self.seed ^ (index as u64).wrapping_mul(0x9e37_79b9);
                match disk::corrupt(&self.ctx.control, &self.ctx.recorder, *node, seed).await {
                    Corrupted::Refused(damage) => {
                        self.applied(index, kind, Applied::Corrupted(damage));
                    }
                    Corrupted::Failed { damage, error } => {
                        self.failed(error);
                        if let Some(damage) = damage {
                            self.active.insert(index, Applied::Corrupted(damage));
                        }
                    }
                }
            }
            Fault::Partition(grouping) => self.partition(index, grouping.clone(), None),
            Fault::IsolateLeader { fallback } => {
                let leader = self.current_leader().await;
                let alone = leader.unwrap_or(*fallback);
                let grouping = partition::isolate(kind, alone, &self.nodes);
                self.partition(index, grouping, Some(leader));
            }
            Fault::FreezeLeader { fallback } => self.freeze(index, *fallback).await,
            Fault::PacketLoss | Fault::Latency => self.degrade(index, kind),
            Fault::RemoveMember { node } => {
                let result = membership::change(
                    &self.ctx.control,
                    self.ctx.client.clone(),
                    &self.ctx.recorder,
                    *node,
                    Change::Remove,
                )
                .await;
                match result {
                    Ok(()) => self.applied(index, kind, Applied::Removed(*node)),
                    Err(e) => self.failed(format!("{kind}: removing node {node}: {e}")),
                }
            }
            Fault::Transfer { to } => {
                let down: Vec<NodeId> = self
                    .nodes
                    .iter()
                    .copied()
                    .filter(|&id| self.active.values().any(|a| a.takes_down(id)))
                    .collect();
                let result = membership::transfer(
                    &self.ctx.control,
                    self.ctx.client.clone(),
                    &self.ctx.recorder,
                    *to,
                    down,
                )
                .await;
                match result {
                    Ok((from, to)) => {
                        // Nothing to undo: counted, never active.
                        *self.report.applied.entry(kind).or_default() += 1;
                        info!(fault = index, "nemesis: transfer n{from} -> n{to}");
                    }
                    Err(e) => self.failed(format!("{kind}: {e}")),
                }
            }
        }
    }

    /// Adds a removed node back.
    async fn add_back(&mut self, node: NodeId) -> Result<(), String> {
        membership::change(
            &self.ctx.control,
            self.ctx.client.clone(),
            &self.ctx.recorder,
            node,
            Change::AddBack,
        )
        .await
    }

    /// Starts `freeze-leader`: cuts the leader (`fallback` without one, or when the leader
    /// is already down) off from the other nodes, recording `start-partition` with
    /// `"leader"`, then SIGSTOPs it, recording `pause`. A failed cut stops there (nothing was
    /// applied); a failed pause leaves the cut in place until the fault's end (healed then),
    /// not counted as applied.
    async fn freeze(&mut self, index: usize, fallback: NodeId) {
        let kind = NemesisKind::FreezeLeader;
        let leader = self
            .current_leader()
            .await
            .filter(|&id| !self.active.values().any(|a| a.takes_down(id)));
        let node = leader.unwrap_or(fallback);
        let grouping = partition::isolate(kind, node, &self.nodes);
        if !self.cut(&grouping, Some(leader)) {
            return;
        }
        let paused = pause::pause(&mut *self.control(), &self.ctx.recorder, node);
        let applied = Applied::Frozen {
            node,
            grouping,
            paused: paused.is_ok(),
            cut: true,
        };
        match paused {
            Ok(()) => self.applied(index, kind, applied),
            Err(e) => {
                self.failed(format!("{kind}: {e}"));
                self.active.insert(index, applied);
            }
        }
    }

    /// Wakes a `freeze-leader` node up (SIGCONT, recording `resume`), its links still cut.
    /// Nothing to do for other faults, or one not in effect; a failed resume is retried when
    /// the fault ends.
    fn wake(&mut self, index: usize) {
        let Some(Applied::Frozen { node, paused, .. }) = self.active.get(&index) else {
            return;
        };
        if !*paused {
            return;
        }
        let node = *node;
        let result = pause::resume(&mut *self.control(), &self.ctx.recorder, node);
        match result {
            Ok(()) => {
                if let Some(Applied::Frozen { paused, .. }) = self.active.get_mut(&index) {
                    *paused = false;
                }
                info!(
                    fault = index,
                    "nemesis: freeze-leader n{node} woken, still cut off"
                );
            }
            Err(e) => self.failed(format!("waking freeze-leader: {e}")),
        }
    }

    /// Starts `packet-loss` (random drops on every link) or `latency` (a delay on every
    /// node); records `start-partition` with what was installed.
    fn degrade(&mut self, index: usize, kind: NemesisKind) {
        let endpoints = self.endpoints();
        let result = match self.ctx.network.as_mut() {
            None => Err(NO_NETWORK.to_string()),
            Some(network) if kind == NemesisKind::Latency => network.delay(true),
            Some(network) => {
                let drops = partition::all_links(&endpoints);
                network
                    .cut(&drops, Some(netem::LOSS_PERCENT))
                    .map(|()| format!("{}% of packets lost on every link", netem::LOSS_PERCENT))
            }
        };
        self.partitioned_ever = true;
        let mut value = json!({ "nemesis": kind.name() });
        if let Some(map) = value.as_object_mut() {
            match &result {
                Ok(description) => map.insert("description".into(), json!(description)),
                Err(e) => map.insert("error".into(), json!(e)),
            };
        }
        self.ctx.recorder.nemesis("start-partition", value);
        match result {
            Ok(_) => self.applied(index, kind, Applied::Degraded(kind)),
            Err(e) => self.failed(format!("{kind}: {e}")),
        }
    }

    /// The nodes' resolved addresses (nodes that do not resolve are left out).
    fn endpoints(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.control()
            .nodes()
            .into_iter()
            .filter_map(|n| Some((n.id, n.socket?)))
            .collect()
    }

    /// The node a process fault takes down: the current leader for a leader fault (unless
    /// it is already down: then, as without a leader, the planned `node`).
    async fn target(&self, node: NodeId, leader: bool) -> NodeId {
        if !leader {
            return node;
        }
        let down = |id: NodeId| self.active.values().any(|a| a.takes_down(id));
        match self.current_leader().await {
            Some(id) if !down(id) => id,
            _ => node,
        }
    }

    /// The current leader, from one round of status calls: the node that says it leads (the
    /// one with the highest term if a deposed leader has not noticed yet), else the leader
    /// most nodes name. One round keeps the schedule on time.
    async fn current_leader(&self) -> Option<NodeId> {
        let probe = self.control().leader_probe(LEADER_LOOKUP);
        if let Some(probe) = probe {
            return probe.await;
        }
        let client = self.ctx.client.clone()?;
        let nodes: Vec<(NodeId, String)> = self
            .control()
            .nodes()
            .into_iter()
            .map(|n| (n.id, n.addr))
            .collect();
        likely_leader(&status_all(&client, &nodes, LEADER_LOOKUP).await)
    }

    /// Cuts `grouping`'s links; records `start-partition`. `leader`: for `isolate-leader`,
    /// the leader found (`Some(None)`: none found, the fallback was isolated).
    fn partition(&mut self, index: usize, grouping: Grouping, leader: Option<Option<NodeId>>) {
        if self.cut(&grouping, leader) {
            self.applied(index, grouping.kind, Applied::Partitioned(grouping));
        }
    }

    /// Installs `grouping`'s drops and records `start-partition` (with `"leader"` when
    /// given, with `"error"` when it failed); whether the cut is in place.
    fn cut(&mut self, grouping: &Grouping, leader: Option<Option<NodeId>>) -> bool {
        let mut value = grouping.to_json();
        if let (Some(leader), Some(map)) = (leader, value.as_object_mut()) {
            map.insert("leader".into(), json!(leader));
        }
        let endpoints = self.endpoints();
        let result = match self.ctx.network.as_mut() {
            None => Err(NO_NETWORK.to_string()),
            Some(network) => network.cut(&grouping.drops(&endpoints), None),
        };
        self.partitioned_ever = true;
        match result {
            Ok(()) => {
                self.ctx.recorder.nemesis("start-partition", value);
                true
            }
            Err(e) => {
                if let Some(map) = value.as_object_mut() {
                    map.insert("error".into(), json!(e));
                }
                self.ctx.recorder.nemesis("start-partition", value);
                self.failed(format!("{}: {e}", grouping.kind));
                false
            }
        }
    }

    /// Heals the cut of `grouping` (every drop rule: one network fault at a time) and
    /// records `stop-partition`.
    fn heal_cut(&mut self, grouping: &Grouping) -> Result<(), String> {
        let result = match self.ctx.network.as_mut() {
            Some(network) => network.heal(),
            None => Ok(()),
        };
        let mut value = json!({
            "nemesis": grouping.kind.name(),
            "description": grouping.describe(),
        });
        if let (Err(e), Some(map)) = (&result, value.as_object_mut()) {
            map.insert("error".into(), json!(e));
        }
        self.ctx.recorder.nemesis("stop-partition", value);
        result
    }

    /// Ends fault `index` if it is in effect; a failed heal stays active for [`Self::heal_all`].
    async fn stop(&mut self, index: usize) {
        if let Some(Applied::Removed(node)) = self.active.get(&index) {
            let node = *node;
            match self.add_back(node).await {
                Ok(()) => {
                    self.active.remove(&index);
                }
                Err(e) => self.failed(format!("membership: adding node {node} back: {e}")),
            }
            return;
        }
        self.stop_now(index);
    }

    /// [`Self::stop`] without waiting on the cluster: everything but adding a removed member
    /// back (which needs the cluster's answers; it then stays to do).
    fn stop_now(&mut self, index: usize) {
        let Some(mut applied) = self.active.remove(&index) else {
            return;
        };
        let result = match &mut applied {
            Applied::Killed(node) | Applied::LostUnsynced(node) => {
                kill::restart(&mut *self.control(), &self.ctx.recorder, *node)
                    .map_err(|e| e.to_string())
            }
            Applied::DiskFull(node) => disk::free(&mut *self.control(), &self.ctx.recorder, *node)
                .map_err(|e| e.to_string()),
            Applied::Corrupted(damage) => {
                disk::repair(&mut *self.control(), &self.ctx.recorder, damage)
                    .map_err(|e| e.to_string())
            }
            Applied::KilledAll(_, nodes) => {
                // Restart every node even if one fails; report the failures together.
                let failures: Vec<String> = nodes
                    .iter()
                    .filter_map(|&node| {
                        kill::restart(&mut *self.control(), &self.ctx.recorder, node).err()
                    })
                    .map(|e| e.to_string())
                    .collect();
                if failures.is_empty() {
                    Ok(())
                } else {
                    Err(failures.join("; "))
                }
            }
            Applied::Paused(node) => pause::resume(&mut *self.control(), &self.ctx.recorder, *node)
                .map_err(|e| e.to_string()),
            Applied::Removed(node) => Err(format!(
                "node {node} stays out of the membership: the nemesis was cancelled"
            )),
            Applied::Degraded(kind) => {
                let result = match self.ctx.network.as_mut() {
                    Some(network) if *kind == NemesisKind::Latency => {
                        network.delay(false).map(|_| ())
                    }
                    Some(network) => network.heal(),
                    None => Ok(()),
                };
                let mut value = json!({
                    "nemesis": kind.name(),
                    "description": format!("{kind} healed"),
                });
                if let (Err(e), Some(map)) = (&result, value.as_object_mut()) {
                    map.insert("error".into(), json!(e));
                }
                self.ctx.recorder.nemesis("stop-partition", value);
                result
            }
            Applied::Partitioned(grouping) => self.heal_cut(grouping),
            Applied::Frozen {
                node,
                grouping,
                paused,
                cut,
            } => {
                // Resume first if the wake-up never came (stopped early), then heal; what
                // failed stays to do for the retry.
                let mut failures = Vec::new();
                if *paused {
                    match pause::resume(&mut *self.control(), &self.ctx.recorder, *node) {
                        Ok(()) => *paused = false,
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                if *cut {
                    match self.heal_cut(grouping) {
                        Ok(()) => *cut = false,
                        Err(e) => failures.push(e),
                    }
                }
                if failures.is_empty() {
                    Ok(())
                } else {
                    Err(failures.join("; "))
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if crate::control::cleanup::ran() => {
                // Interrupted: the cleanup stopped the nodes and removed the rules already.
                debug!(
                    "not healing {} after the emergency cleanup: {e}",
                    applied.describe()
                );
            }
            Err(e) => {
                self.failed(format!("healing {}: {e}", applied.describe()));
                self.active.insert(index, applied);
            }
        }
    }

    /// Ends every fault in effect (retrying failed heals once: the killed started, the
    /// paused and frozen resumed, removed members added back, the cuts healed) and flushes
    /// the partition rules.
    async fn heal_all(&mut self) {
        if self.healed {
            return;
        }
        for _attempt in 0..2 {
            let indices: Vec<usize> = self.active.keys().copied().collect();
            for index in indices {
                self.stop(index).await;
            }
        }
        self.finish_healing();
    }

    /// [`Self::heal_all`] without waiting on the cluster, for a runner dropped midway.
    fn heal_now(&mut self) {
        if self.healed {
            return;
        }
        for _attempt in 0..2 {
            let indices: Vec<usize> = self.active.keys().copied().collect();
            for index in indices {
                self.stop_now(index);
            }
        }
        self.finish_healing();
    }

    /// Flushes the partition rules and settles the report.
    fn finish_healing(&mut self) {
        let mut flushed = true;
        if self.partitioned_ever {
            if let Some(network) = self.ctx.network.as_mut() {
                if let Err(e) = network.heal() {
                    flushed = false;
                    self.failed(format!("flushing the partition rules: {e}"));
                }
            }
        }
        self.report.healed = self.active.is_empty() && flushed;
        self.healed = true;
        self.publish();
    }

    fn publish(&self) {
        let state = if self.active.is_empty() {
            "none".to_string()
        } else {
            self.active
                .values()
                .map(Applied::describe)
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.ctx.state.send_replace(state);
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Cancelled midway (the future was dropped): heal before the table goes away.
        self.heal_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DbError, DbNode, Needs};
    use crate::nemesis::{preflight, PlannedFault, ScheduleOptions};
    use crate::net::NetError;
    use model::core::NodeId;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A fake cluster: records calls, fails on request.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        down: Vec<NodeId>,
        fail_kill: bool,
    }

    impl Db for Fake {
        fn nodes(&self) -> Vec<DbNode> {
            (1..=3)
                .map(|id| DbNode {
                    id,
                    addr: format!("127.0.0.{}:1500{id}", 10 + id),
                    socket: format!("127.0.0.{}:1500{id}", 10 + id).parse().ok(),
                })
                .collect()
        }
        fn kill(&mut self, id: NodeId) -> Result<(), DbError> {
            self.calls.push(format!("kill {id}"));
            if self.fail_kill {
                return Err(DbError {
                    action: "kill",
                    node: Some(id),
                    reason: "no such process".into(),
                });
            }
            self.down.push(id);
            Ok(())
        }
        fn start(&mut self, id: NodeId) -> Result<(), DbError> {
            self.calls.push(format!("start {id}"));
            self.down.retain(|&n| n != id);
            Ok(())
        }
        fn pause(&mut self, id: NodeId) -> Result<(), DbError> {
            self.calls.push(format!("pause {id}"));
            self.down.push(id);
            Ok(())
        }
        fn resume(&mut self, id: NodeId) -> Result<(), DbError> {
            self.calls.push(format!("resume {id}"));
            self.down.retain(|&n| n != id);
            Ok(())
        }
        fn supports(&self, needs: Needs) -> Result<(), String> {
            if needs.network {
                Err("partitions are not allowed here".into())
            } else {
                Ok(())
            }
        }
        fn network(&self) -> Result<Box<dyn Network>, NetError> {
            Err(NetError::Setup("no network here".into()))
        }
        fn teardown(&mut self, _owned: bool, _logs_dir: &std::path::Path) -> Result<(), DbError> {
            Ok(())
        }
    }

    fn schedule(kinds: &[NemesisKind], ms: u64, total: u64) -> Schedule {
        Schedule::with_options(
            11,
            kinds,
            &[1, 2, 3],
            ScheduleOptions {
                interval: Duration::from_millis(ms),
                duration: Duration::from_millis(total),
                fault_min: Duration::from_millis(ms / 2),
                fault_max: Duration::from_millis(ms),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn runs_the_schedule_records_start_and_end_and_heals() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let recorder = Recorder::new();
        let s = schedule(&[NemesisKind::Kill, NemesisKind::Pause], 100, 2000);
        let planned = s.faults.len();
        let (_tx, rx) = watch::channel(false);
        let ctx = NemesisContext::new(fake.clone(), recorder.clone());
        let state = ctx.state();
        let report = run_nemesis(s, ctx, rx).await;
        assert!(report.healed && !report.stopped_early, "{report:?}");
        assert_eq!(report.applied.values().sum::<usize>(), planned);
        assert!(report.not_applied.is_empty());
        assert_eq!(*state.borrow(), "none");
        let fake = fake.lock().unwrap();
        assert!(fake.down.is_empty(), "{:?}", fake.calls);
        let events = recorder.events();
        assert_eq!(events.len(), 2 * planned);
        let fs: Vec<&str> = events.iter().map(|e| e.f.as_str()).collect();
        assert_eq!(
            fs.iter().filter(|f| **f == "kill").count(),
            fs.iter().filter(|f| **f == "start").count()
        );
        assert_eq!(
            fs.iter().filter(|f| **f == "pause").count(),
            fs.iter().filter(|f| **f == "resume").count()
        );
        assert!(events.iter().all(|e| e.who == crate::history::Who::Nemesis));
    }

    #[tokio::test]
    async fn stop_signal_heals_at_once_and_failures_are_reported() {
        let fake = Arc::new(Mutex::new(Fake {
            fail_kill: true,
            ..Fake::default()
        }));
        let recorder = Recorder::new();
        let s = schedule(&[NemesisKind::Kill, NemesisKind::Pause], 100, 60_000);
        let (tx, rx) = watch::channel(false);
        let ctx = NemesisContext::new(fake.clone(), recorder.clone());
        let task = tokio::spawn(run_nemesis(s, ctx, rx));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tx.send_replace(true);
        let report = task.await.unwrap();
        assert!(report.stopped_early && report.healed);
        assert_eq!(report.applied[&NemesisKind::Kill], 0);
        assert_eq!(report.not_applied, vec![NemesisKind::Kill]);
        assert!(report.errors.iter().any(|e| e.contains("no such process")));
        assert!(fake.lock().unwrap().down.is_empty());
        let json = report.to_json();
        assert_eq!(json["requested"], json!(["kill", "pause"]));
        assert_eq!(json["applied"]["kill"], json!(0));
        // A failed kill is recorded with its error.
        assert!(recorder
            .events()
            .iter()
            .any(|e| e.f == "kill" && e.value["error"].is_string()));
    }

    #[tokio::test]
    async fn partitions_without_nft_are_recorded_as_failed_not_applied() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let recorder = Recorder::new();
        let s = schedule(&[NemesisKind::PartitionHalves], 100, 1000);
        let (_tx, rx) = watch::channel(false);
        let report = run_nemesis(s, NemesisContext::new(fake, recorder.clone()), rx).await;
        assert_eq!(report.applied[&NemesisKind::PartitionHalves], 0);
        assert_eq!(report.not_applied, vec![NemesisKind::PartitionHalves]);
        let first = &recorder.events()[0];
        assert_eq!(first.f, "start-partition");
        assert!(first.value["error"].as_str().unwrap().contains("nft"));
    }

    /// A fake network: records `cut N` (N drop pairs) and `heal`.
    #[derive(Debug, Default)]
    struct FakeNetwork {
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Network for FakeNetwork {
        fn cut(
            &mut self,
            drops: &[(SocketAddr, SocketAddr)],
            loss_percent: Option<u8>,
        ) -> Result<(), String> {
            assert!(loss_percent.is_none());
            self.calls
                .lock()
                .unwrap()
                .push(format!("cut {}", drops.len()));
            Ok(())
        }
        fn heal(&mut self) -> Result<(), String> {
            self.calls.lock().unwrap().push("heal".into());
            Ok(())
        }
        fn delay(&mut self, _on: bool) -> Result<String, String> {
            Ok(String::new())
        }
    }

    /// A schedule, its context, the fake cluster, the fake network's calls, the recorder.
    type FrozenSetup = (
        Schedule,
        NemesisContext,
        Arc<Mutex<Fake>>,
        Arc<Mutex<Vec<String>>>,
        Recorder,
    );

    /// One `freeze-leader` fault (fallback node 2, no client to find a leader with) from
    /// `start` to `end` ms, on the fake cluster with a fake network.
    fn frozen_setup(start: u64, end: u64) -> FrozenSetup {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let net = FakeNetwork::default();
        let net_calls = net.calls.clone();
        let recorder = Recorder::new();
        let schedule = Schedule {
            seed: 0,
            kinds: vec![NemesisKind::FreezeLeader],
            nodes: vec![1, 2, 3],
            options: ScheduleOptions::new(Duration::from_millis(100), Duration::from_secs(60)),
            faults: vec![PlannedFault {
                start: Duration::from_millis(start),
                end: Duration::from_millis(end),
                fault: Fault::FreezeLeader { fallback: 2 },
            }],
        };
        let ctx =
            NemesisContext::new(fake.clone(), recorder.clone()).with_network(Some(Box::new(net)));
        (schedule, ctx, fake, net_calls, recorder)
    }

    fn nemesis_fs(recorder: &Recorder) -> Vec<String> {
        recorder.events().iter().map(|e| e.f.clone()).collect()
    }

    #[tokio::test]
    async fn freeze_leader_cuts_and_pauses_wakes_cut_off_then_heals() {
        let (schedule, ctx, fake, net, recorder) = frozen_setup(100, 500);
        let state = ctx.state();
        let mut runner = Runner::new(&schedule, ctx);
        let fault = schedule.faults[0].fault.clone();

        runner.start(0, &fault).await;
        runner.publish();
        assert_eq!(fake.lock().unwrap().calls, ["pause 2"]);
        assert_eq!(fake.lock().unwrap().down, [2]);
        // Node 2 cut off from 1 and 3, both directions.
        assert_eq!(*net.lock().unwrap(), ["cut 4"]);
        assert_eq!(nemesis_fs(&recorder), ["start-partition", "pause"]);
        let events = recorder.events();
        let cut = &events[0].value;
        assert_eq!(cut["nemesis"], "freeze-leader");
        assert_eq!(cut["groups"], json!([[2], [1, 3]]));
        assert_eq!(cut["views"]["2"], json!([2]));
        assert_eq!(cut["description"], "[2] | [1 3]");
        assert!(cut["leader"].is_null(), "no leader found: {cut}");
        assert_eq!(events[1].value, json!({"node": 2}));
        assert_eq!(runner.report.applied[&NemesisKind::FreezeLeader], 1);
        assert!(state.borrow().contains("frozen"), "{}", *state.borrow());

        // The wake-up: resumed, still cut off.
        runner.wake(0);
        runner.publish();
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert!(fake.lock().unwrap().down.is_empty());
        assert_eq!(*net.lock().unwrap(), ["cut 4"]);
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume"]
        );
        assert_eq!(recorder.events()[2].value, json!({"node": 2}));
        assert!(state.borrow().contains("cut off"), "{}", *state.borrow());
        // A second wake-up does nothing.
        runner.wake(0);
        assert_eq!(fake.lock().unwrap().calls.len(), 2);

        // The end: healed, not resumed again.
        runner.stop(0).await;
        runner.publish();
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert_eq!(*net.lock().unwrap(), ["cut 4", "heal"]);
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume", "stop-partition"]
        );
        let healed = &recorder.events()[3].value;
        assert_eq!(healed["nemesis"], "freeze-leader");
        assert!(healed.get("error").is_none());
        assert!(runner.active.is_empty());
        assert_eq!(*state.borrow(), "none");
        runner.heal_all().await;
        assert!(runner.report.healed);
    }

    #[tokio::test]
    async fn freeze_leader_ended_before_its_wake_up_resumes_and_heals() {
        // Stopped by the schedule's end step without a wake-up (stop at once).
        let (schedule, ctx, fake, net, recorder) = frozen_setup(100, 500);
        let mut runner = Runner::new(&schedule, ctx);
        runner.start(0, &schedule.faults[0].fault).await;
        runner.stop(0).await;
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert!(fake.lock().unwrap().down.is_empty());
        assert_eq!(*net.lock().unwrap(), ["cut 4", "heal"]);
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume", "stop-partition"]
        );
        // A wake-up after the end does nothing.
        runner.wake(0);
        assert_eq!(fake.lock().unwrap().calls.len(), 2);

        // Through heal_now, as when the runner is dropped midway.
        let (schedule, ctx, fake, net, recorder) = frozen_setup(100, 500);
        let mut runner = Runner::new(&schedule, ctx);
        runner.start(0, &schedule.faults[0].fault).await;
        drop(runner);
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert_eq!(net.lock().unwrap()[..2], ["cut 4", "heal"]);
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume", "stop-partition"]
        );
    }

    #[tokio::test]
    async fn freeze_leader_runs_its_three_steps_and_the_stop_signal_heals_it() {
        // The whole schedule: cut+pause at 50 ms, wake at 200 ms, heal at 250 ms.
        let (schedule, ctx, fake, net, recorder) = frozen_setup(50, 250);
        assert_eq!(
            schedule.faults[0].wake_at(),
            Some(Duration::from_millis(200))
        );
        let (_tx, rx) = watch::channel(false);
        let started = std::time::Instant::now();
        let report = run_nemesis(schedule, ctx, rx).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(report.healed && report.errors.is_empty(), "{report:?}");
        assert_eq!(report.applied[&NemesisKind::FreezeLeader], 1);
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert_eq!(net.lock().unwrap()[..2], ["cut 4", "heal"]);
        let events = recorder.events();
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume", "stop-partition"]
        );
        // The wake-up comes three quarters in, well after the pause and before the heal.
        let at = |i: usize| events[i].time;
        assert!(at(2) - at(1) >= 100_000_000, "{events:?}");
        assert!(at(3) > at(2));

        // The stop signal during the freeze: resumed and healed at once.
        let (schedule, ctx, fake, net, recorder) = frozen_setup(50, 60_000);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_nemesis(schedule, ctx, rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send_replace(true);
        let report = task.await.unwrap();
        assert!(report.stopped_early && report.healed, "{report:?}");
        assert_eq!(fake.lock().unwrap().calls, ["pause 2", "resume 2"]);
        assert!(fake.lock().unwrap().down.is_empty());
        assert_eq!(net.lock().unwrap()[..2], ["cut 4", "heal"]);
        assert_eq!(
            nemesis_fs(&recorder),
            ["start-partition", "pause", "resume", "stop-partition"]
        );
    }

    #[test]
    fn preflight_names_the_refused_kind() {
        let fake = Fake::default();
        let err = preflight(&[NemesisKind::Kill, NemesisKind::PartitionBridge], &fake)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("partition-bridge") && err.contains("not allowed"),
            "{err}"
        );
        assert!(preflight(&[NemesisKind::Kill], &fake).unwrap().is_none());
    }
}
