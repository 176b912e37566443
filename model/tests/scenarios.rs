//! Data-driven scenario tests for the Raft core, in the style of etcd/raft's `testdata/`.
//!
//! Each file in `model/testdata/*.txt` is a script of directives, each followed by `----` and
//! the output it must produce; the output block ends at the first blank line. Lines starting
//! with `#` outside an output block are comments. Run with `REWRITE=1` to regenerate every
//! expected output from the current behaviour (then review the diff):
//!
//! ```text
//! REWRITE=1 cargo test -p model --test scenarios
//! ```
//!
//! The harness is a cluster of [`Raft<String>`] cores with one global FIFO of messages in
//! flight, which the script controls explicitly. Every Ready is processed synchronously and
//! in contract order, right after the input that produced it: the hard state, snapshot and
//! entries go to the node's in-memory [`Storage`], then its messages join the queue, its
//! committed entries are applied to a toy state machine (the list of applied commands), its
//! read states are printed, and `advance` is called. The harness asserts the persistence
//! contract on every Ready and reports (rather than panics on) Election Safety and State
//! Machine Safety violations, so that scenarios with a bug switch on can show them.
//!
//! # Directives
//!
//! | directive | effect |
//! |---|---|
//! | `cluster voters=1,2,3 [learners=4] [pre-vote=B] [check-quorum=B] [bug=NAME,..] [election=10] [heartbeat=2] [max-batch=256] [max-inflight=16]` | new cluster (pre-vote and check-quorum default to false here) |
//! | `set-log ID log=T,T,.. [term=T] [vote=ID]` | replace ID's durable state with a log of those terms (commands `x`), restart it |
//! | `campaign ID` | ID's election timer fires now (`election_timeout`) |
//! | `tick IDS\|all [n=1]` | n ticks on each listed node |
//! | `propose ID CMD..` | propose each command; prints `index=I term=T` or the refusal |
//! | `read-index ID ctx=N` | ReadIndex; the read state is printed when a Ready releases it |
//! | `transfer ID to=ID` | leadership transfer |
//! | `membership ID add-learner\|promote\|remove N` | single-server change (creates node N if new) |
//! | `compact ID index=I` | compact ID's log up to applied index I |
//! | `stabilize` | deliver messages in FIFO order until none is left |
//! | `deliver FROM->TO [n=K]` | deliver the queued messages that match (`*` matches any node) |
//! | `drop FROM->TO [n=K]` | discard matching queued messages |
//! | `duplicate FROM->TO [n=K]` | queue a copy of each matching message at the back (the network duplicated it) |
//! | `delay FROM->TO [n=K]` | move matching messages to the back of the queue (the network delayed them) |
//! | `queue` | print the messages in flight |
//! | `partition A,B \| C,..` / `heal` | cut every link between the groups (replacing any earlier partition) / restore all links |
//! | `crash ID` / `restart ID` | lose volatile state / restore from what was persisted |
//! | `status`, `log [IDS]`, `applied [IDS]`, `members`, `progress ID` | print state |
//!
//! # Output
//!
//! A delivered message prints as `FROM->TO Kind term=T ...` (`prev=(index,term)`,
//! `last=(index,term)`, `entries=[index:term:kind ..]`, `round=R` for a nonzero ReadIndex
//! round); a message that cannot be delivered gets `(dropped: why)`. Indented lines under
//! it are what the delivery changed: `  ID: Role term=T` (role or term changed),
//! `  ID: commit=I`, `  ID: read ctx=C index=I`, `  ID: installed snapshot (I,T)`, and
//! `  VIOLATION: ...`. A message sent over a cut link is lost at once; a directive that
//! lost some ends with `(N message(s) sent over cut links lost)`. A directive with nothing
//! else to say prints `ok`.

use model::bugs::{Bug, Bugs};
use model::core::{
    Body, Campaign, Config, Entry, EntryKind, HardState, Index, Membership, MembershipChange,
    Message, NodeId, Raft, Restored, Role, Snapshot, SnapshotMeta, Term,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

type Cmd = String;

// ----- the script format -----------------------------------------------------------------

/// One directive with its expected output.
struct Case {
    line: usize,
    directive: String,
    expected: Vec<String>,
}

/// A script, as lines to keep verbatim (comments, blank lines) and cases.
enum Item {
    Text(String),
    Case(Case),
}

fn parse_script(name: &str, text: &str) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            items.push(Item::Text(lines[i].to_string()));
            i += 1;
            continue;
        }
        let line = i + 1;
        let directive = trimmed.to_string();
        i += 1;
        assert!(
            i < lines.len() && lines[i].trim() == "----",
            "{name}:{line}: expected `----` after `{directive}`"
        );
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        if i < lines.len() {
            i += 1; // the blank line that ends the block
        }
        items.push(Item::Case(Case {
            line,
            directive,
            expected,
        }));
    }
    items
}

/// A directive's words: the command, positional arguments and `key=value` options.
struct Args {
    cmd: String,
    pos: Vec<String>,
    opts: BTreeMap<String, String>,
}

impl Args {
    fn parse(directive: &str) -> Args {
        let mut words = directive.split_whitespace();
        let cmd = words.next().unwrap_or_default().to_string();
        let mut pos = Vec::new();
        let mut opts = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((k, v)) if cmd != "propose" => {
                    opts.insert(k.to_string(), v.to_string());
                }
                _ => pos.push(word.to_string()),
            }
        }
        Args { cmd, pos, opts }
    }

    /// Fails on options the directive does not know (catches typos in scripts).
    fn allow(&self, keys: &[&str]) -> Result<(), String> {
        match self.opts.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown option `{k}` for `{}`", self.cmd)),
            None => Ok(()),
        }
    }

    fn opt<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.opts.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad value for {key}: {v}")),
        }
    }

    fn node(&self, i: usize) -> Result<NodeId, String> {
        let word = self
            .pos
            .get(i)
            .ok_or_else(|| format!("`{}` needs a node id", self.cmd))?;
        word.parse().map_err(|_| format!("bad node id `{word}`"))
    }
}

fn parse_ids(s: &str) -> Result<Vec<NodeId>, String> {
    s.split(',')
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().map_err(|_| format!("bad node id `{w}`")))
        .collect()
}

fn parse_bool(s: &str) -> Result<bool, String> {
    s.parse().map_err(|_| format!("bad boolean `{s}`"))
}

/// `1->2`, `*->2`, `1->*`: a (from, to) pattern.
fn parse_link(s: &str) -> Result<(Option<NodeId>, Option<NodeId>), String> {
    let (from, to) = s
        .split_once("->")
        .ok_or_else(|| format!("expected FROM->TO, got `{s}`"))?;
    let side = |w: &str| -> Result<Option<NodeId>, String> {
        if w == "*" {
            Ok(None)
        } else {
            w.parse()
                .map(Some)
                .map_err(|_| format!("bad node id `{w}`"))
        }
    };
    Ok((side(from)?, side(to)?))
}

// ----- formatting ------------------------------------------------------------------------

fn fmt_entry(e: &Entry<Cmd>) -> String {
    let kind = match &e.kind {
        EntryKind::Noop => "noop".to_string(),
        EntryKind::Command(c) => c.clone(),
        EntryKind::Membership(MembershipChange::AddLearner { id, .. }) => {
            format!("add-learner({id})")
        }
        EntryKind::Membership(MembershipChange::PromoteLearner(id)) => format!("promote({id})"),
        EntryKind::Membership(MembershipChange::Remove(id)) => format!("remove({id})"),
    };
    format!("{}:{}:{}", e.index, e.term, kind)
}

fn fmt_entries(entries: &[Entry<Cmd>]) -> String {
    entries.iter().map(fmt_entry).collect::<Vec<_>>().join(" ")
}

fn fmt_ids(ids: &BTreeSet<NodeId>) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn fmt_membership(m: &Membership) -> String {
    format!(
        "voters=[{}] learners=[{}]",
        fmt_ids(&m.voters),
        fmt_ids(&m.learners)
    )
}

fn fmt_msg(m: &Message<Cmd>) -> String {
    let round = |r: u64| {
        if r == 0 {
            String::new()
        } else {
            format!(" round={r}")
        }
    };
    let body = match &m.body {
        Body::Vote {
            campaign,
            last_index,
            last_term,
        } => {
            let (kind, note) = match campaign {
                Campaign::PreVote => ("MsgPreVote", ""),
                Campaign::Election => ("MsgVote", ""),
                Campaign::Transfer => ("MsgVote", " transfer"),
            };
            format!(
                "{kind} term={} last=({last_index},{last_term}){note}",
                m.term
            )
        }
        Body::VoteResponse { campaign, granted } => {
            let kind = if *campaign == Campaign::PreVote {
                "MsgPreVoteResp"
            } else {
                "MsgVoteResp"
            };
            let verdict = if *granted { "granted" } else { "rejected" };
            format!("{kind} term={} {verdict}", m.term)
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
            read_round,
        } => {
            let (kind, listed) = if entries.is_empty() {
                ("MsgHeartbeat", String::new())
            } else {
                ("MsgApp", format!(" entries=[{}]", fmt_entries(entries)))
            };
            format!(
                "{kind} term={} prev=({prev_index},{prev_term}){listed} commit={commit}{}",
                m.term,
                round(*read_round)
            )
        }
        Body::AppendResponse {
            index,
            conflict_term,
            success,
            read_round,
            prev_index,
        } => {
            if *success {
                format!(
                    "MsgAppResp term={} ok index={index}{}",
                    m.term,
                    round(*read_round)
                )
            } else {
                let conflict =
                    conflict_term.map_or(String::new(), |t| format!(" conflict_term={t}"));
                format!(
                    "MsgAppResp term={} reject prev={prev_index} hint={index}{conflict}{}",
                    m.term,
                    round(*read_round)
                )
            }
        }
        Body::InstallSnapshot {
            snapshot,
            read_round,
        } => format!(
            "MsgSnap term={} snap=({},{}) {}{}",
            m.term,
            snapshot.meta.index,
            snapshot.meta.term,
            fmt_membership(&snapshot.meta.membership),
            round(*read_round)
        ),
        Body::TimeoutNow => format!("MsgTimeoutNow term={}", m.term),
    };
    format!("{}->{} {body}", m.from, m.to)
}

fn fmt_role(role: Role) -> &'static str {
    match role {
        Role::Follower => "Follower",
        Role::PreCandidate => "PreCandidate",
        Role::Candidate => "Candidate",
        Role::Leader => "Leader",
    }
}

fn fmt_vote(v: Option<NodeId>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

// ----- the cluster harness ---------------------------------------------------------------

/// What a node has made durable.
#[derive(Clone, Debug, Default)]
struct Storage {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry<Cmd>>,
}

impl Storage {
    fn last_index(&self) -> Index {
        self.entries
            .last()
            .map_or(self.snapshot.meta.index, |e| e.index)
    }

    fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.meta.index {
            return Some(self.snapshot.meta.term);
        }
        self.entries
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.term)
    }

    /// Ready step 1 for entries: they overwrite everything from their first index on.
    fn append(&mut self, entries: &[Entry<Cmd>]) {
        let first = entries[0].index;
        assert!(
            first > self.snapshot.meta.index && first <= self.last_index() + 1,
            "contract: Ready entries from {first} leave a gap after stored {}",
            self.last_index()
        );
        self.entries.retain(|e| e.index < first);
        self.entries.extend_from_slice(entries);
    }

    /// Ready step 1 for a snapshot: it replaces the stored snapshot and the entries it
    /// covers; later entries survive only if they continue the snapshot's log.
    fn install(&mut self, snapshot: &Snapshot) {
        let meta = &snapshot.meta;
        if self.term(meta.index) == Some(meta.term) {
            self.entries.retain(|e| e.index > meta.index);
        } else {
            self.entries.clear();
        }
        self.snapshot = snapshot.clone();
    }
}

/// The toy state machine's snapshot format: `index:command` lines.
fn encode_sm(sm: &[(Index, Cmd)]) -> Vec<u8> {
    sm.iter()
        .map(|(i, c)| format!("{i}:{c}"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn decode_sm(data: &[u8]) -> Vec<(Index, Cmd)> {
    let text = String::from_utf8(data.to_vec()).expect("snapshot data is utf-8");
    text.lines()
        .map(|line| {
            let (i, c) = line.split_once(':').expect("index:command");
            (i.parse().expect("index"), c.to_string())
        })
        .collect()
}

struct Node {
    config: Config,
    /// `None` while crashed.
    raft: Option<Raft<Cmd>>,
    storage: Storage,
    /// The state machine: commands applied, with their indexes (volatile).
    sm: Vec<(Index, Cmd)>,
    applied: Index,
}

/// What `observe` compares to print changes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    role: Role,
    term: Term,
    commit: Index,
}

#[derive(Default)]
struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    bootstrap: Membership,
    template: Option<Config>,
    queue: VecDeque<Message<Cmd>>,
    cut: BTreeSet<(NodeId, NodeId)>,
    seen: BTreeMap<NodeId, Seen>,
    /// State Machine Safety: the first entry applied at each index, and by whom.
    applied_at: BTreeMap<Index, (NodeId, Entry<Cmd>)>,
    /// Election Safety: the leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    violations: BTreeSet<String>,
    /// Messages sent over a cut link during the current directive (lost at once).
    lost: usize,
    out: Vec<String>,
}

impl Cluster {
    fn say(&mut self, line: impl Into<String>) {
        self.out.push(line.into());
    }

    fn config(&self, id: NodeId) -> Result<Config, String> {
        let mut config = self
            .template
            .clone()
            .ok_or("no cluster yet: start with `cluster`")?;
        config.id = id;
        config.seed = id;
        Ok(config)
    }

    fn node(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes.get(&id).ok_or_else(|| format!("no node {id}"))
    }

    fn raft(&mut self, id: NodeId) -> Result<&mut Raft<Cmd>, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))?
            .raft
            .as_mut()
            .ok_or_else(|| format!("node {id} is crashed"))
    }

    fn ids(&self, word: Option<&String>) -> Result<Vec<NodeId>, String> {
        match word.map(String::as_str) {
            None | Some("all") => Ok(self.nodes.keys().copied().collect()),
            Some(list) => parse_ids(list),
        }
    }

    /// A fresh node of the bootstrap configuration, with nothing durable yet.
    fn add_node(&mut self, id: NodeId) -> Result<(), String> {
        let config = self.config(id)?;
        let storage = Storage {
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: self.bootstrap.clone(),
                },
                data: Arc::new(Vec::new()),
            },
            ..Default::default()
        };
        self.nodes.insert(
            id,
            Node {
                config,
                raft: None,
                storage,
                sm: Vec::new(),
                applied: 0,
            },
        );
        self.start(id);
        Ok(())
    }

    /// (Re)starts a node from its storage.
    fn start(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let restored = Restored {
            hard_state: node.storage.hard_state,
            snapshot: node.storage.snapshot.clone(),
            entries: node.storage.entries.clone(),
        };
        node.sm = decode_sm(&node.storage.snapshot.data);
        node.applied = node.storage.snapshot.meta.index;
        node.raft = Some(Raft::restore(node.config.clone(), restored));
        self.seen.remove(&id);
    }

    /// Does the work of every Ready `id` has, in contract order.
    fn process(&mut self, id: NodeId) {
        loop {
            // State changes print before the Ready they caused.
            self.observe();
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(raft) = node.raft.as_mut() else {
                return;
            };
            let Some(ready) = raft.ready() else {
                return;
            };
            // 0. the early messages leave before the writes: they promise only what was
            // durable already.
            if !node.config.bugs.has(Bug::ForgetVote) {
                for m in &ready.early_messages {
                    check_durable(&node.storage, m);
                }
            }
            for m in &ready.early_messages {
                if self.cut.contains(&(m.from, m.to)) {
                    self.lost += 1;
                } else {
                    self.queue.push_back(m.clone());
                }
            }
            // 1. persist.
            if let Some(hs) = ready.hard_state {
                node.storage.hard_state = hs;
            }
            if let Some(snapshot) = &ready.snapshot {
                node.storage.install(snapshot);
                node.sm = decode_sm(&snapshot.data);
                node.applied = snapshot.meta.index;
                let line = format!(
                    "  {id}: installed snapshot ({},{})",
                    snapshot.meta.index, snapshot.meta.term
                );
                self.out.push(line);
            }
            if !ready.entries.is_empty() {
                node.storage.append(&ready.entries);
            }
            // 2. the messages may now leave: check they promise only what is durable.
            if !node.config.bugs.has(Bug::ForgetVote) {
                for m in &ready.messages {
                    check_durable(&node.storage, m);
                }
            }
            for m in ready.messages {
                if self.cut.contains(&(m.from, m.to)) {
                    self.lost += 1;
                } else {
                    self.queue.push_back(m);
                }
            }
            // 3. apply.
            for entry in &ready.committed {
                assert_eq!(
                    entry.index,
                    node.applied + 1,
                    "contract: committed entries come in order"
                );
                assert!(
                    entry.index <= node.storage.last_index(),
                    "contract: committed entries are durable"
                );
                node.applied = entry.index;
                if let EntryKind::Command(c) = &entry.kind {
                    node.sm.push((entry.index, c.clone()));
                }
            }
            // 4. reads.
            for rs in &ready.read_states {
                let line = match rs.index {
                    Some(index) => format!("  {id}: read ctx={} index={index}", rs.ctx),
                    None => format!("  {id}: read ctx={} abandoned", rs.ctx),
                };
                self.out.push(line);
            }
            raft.advance();
            for entry in ready.committed {
                self.check_applied(id, entry);
            }
        }
    }

    fn check_applied(&mut self, id: NodeId, entry: Entry<Cmd>) {
        match self.applied_at.get(&entry.index) {
            None => {
                self.applied_at.insert(entry.index, (id, entry));
            }
            Some((first, e)) if *e != entry => {
                let v = format!(
                    "VIOLATION: State Machine Safety: {id} applied {} at index {} where {first} applied {}",
                    fmt_entry(&entry),
                    entry.index,
                    fmt_entry(e)
                );
                self.violation(v);
            }
            Some(_) => {}
        }
    }

    fn violation(&mut self, v: String) {
        if self.violations.insert(v.clone()) {
            self.say(format!("  {v}"));
        }
    }

    fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    /// Prints what changed on each live node since the last look.
    fn observe(&mut self) {
        let mut lines = Vec::new();
        let mut new_leaders = Vec::new();
        for (&id, node) in &self.nodes {
            let Some(raft) = &node.raft else {
                continue;
            };
            let now = Seen {
                role: raft.role(),
                term: raft.term(),
                commit: raft.commit_index(),
            };
            let before = self.seen.insert(id, now);
            if before.is_none_or(|b| (b.role, b.term) != (now.role, now.term)) {
                lines.push(format!("  {id}: {} term={}", fmt_role(now.role), now.term));
                if now.role == Role::Leader {
                    new_leaders.push((now.term, id));
                }
            }
            if before.is_some_and(|b| b.commit != now.commit) {
                lines.push(format!("  {id}: commit={}", now.commit));
            }
        }
        self.out.extend(lines);
        for (term, id) in new_leaders {
            match self.leaders.get(&term) {
                Some(&other) if other != id => self.violation(format!(
                    "VIOLATION: Election Safety: {id} and {other} are both leaders of term {term}"
                )),
                _ => {
                    self.leaders.insert(term, id);
                }
            }
        }
    }

    /// Observes quietly (after setup directives that print their own summary).
    fn resync(&mut self) {
        let saved = std::mem::take(&mut self.out);
        self.observe();
        self.out = saved;
    }

    fn deliver(&mut self, msg: Message<Cmd>) {
        let line = fmt_msg(&msg);
        let why = if self.cut.contains(&(msg.from, msg.to)) {
            Some("partitioned")
        } else {
            match self.nodes.get(&msg.to) {
                None => Some("no such node"),
                Some(node) if node.raft.is_none() => Some("crashed"),
                Some(_) => None,
            }
        };
        if let Some(why) = why {
            self.say(format!("{line} (dropped: {why})"));
            return;
        }
        self.say(line);
        let to = msg.to;
        if let Ok(raft) = self.raft(to) {
            if let Err(e) = raft.step(msg) {
                self.say(format!("  (dropped by the receiver: {e})"));
            }
        }
        self.process(to);
        self.observe();
    }

    fn take_matching(
        &mut self,
        (from, to): (Option<NodeId>, Option<NodeId>),
        n: usize,
    ) -> Vec<Message<Cmd>> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::new();
        for m in self.queue.drain(..) {
            let hit = from.is_none_or(|f| f == m.from) && to.is_none_or(|t| t == m.to);
            if hit && taken.len() < n {
                taken.push(m);
            } else {
                kept.push_back(m);
            }
        }
        self.queue = kept;
        taken
    }

    fn status_line(&self, id: NodeId) -> String {
        let node = &self.nodes[&id];
        match &node.raft {
            None => format!(
                "{id}: crashed; persisted term={} vote={} last={}",
                node.storage.hard_state.term,
                fmt_vote(node.storage.hard_state.voted_for),
                node.storage.last_index()
            ),
            Some(r) => {
                let lead = match (r.role(), r.leader()) {
                    (Role::Leader, _) | (_, None) => String::new(),
                    (_, Some(l)) => format!(" lead={l}"),
                };
                let learner = if r.membership().learners.contains(&id) {
                    " (learner)"
                } else if !r.membership().voters.contains(&id) {
                    " (not a member)"
                } else {
                    ""
                };
                format!(
                    "{id}: {} term={} vote={}{lead} commit={} applied={} last={}{learner}",
                    fmt_role(r.role()),
                    r.term(),
                    fmt_vote(r.voted_for()),
                    r.commit_index(),
                    r.applied_index(),
                    r.last_index()
                )
            }
        }
    }

    fn log_line(&self, id: NodeId) -> Result<String, String> {
        let node = self.node(id)?;
        let (snap, entries): (&SnapshotMeta, Vec<Entry<Cmd>>) = match &node.raft {
            Some(r) => {
                let log = r.log();
                let entries = (log.first_index()..=log.last_index())
                    .filter_map(|i| log.entry(i).cloned())
                    .collect();
                (&log.snapshot().meta, entries)
            }
            None => (&node.storage.snapshot.meta, node.storage.entries.clone()),
        };
        let mut line = format!("{id}:");
        if snap.index > 0 {
            line.push_str(&format!(" snap=({},{})", snap.index, snap.term));
        }
        if entries.is_empty() {
            line.push_str(" (empty)");
        } else {
            line.push(' ');
            line.push_str(&fmt_entries(&entries));
        }
        Ok(line)
    }

    // ----- directives --------------------------------------------------------------------

    fn run(&mut self, directive: &str) -> Result<Vec<String>, String> {
        self.out.clear();
        let args = Args::parse(directive);
        match args.cmd.as_str() {
            "cluster" => self.cmd_cluster(&args)?,
            "set-log" => self.cmd_set_log(&args)?,
            "campaign" => {
                args.allow(&[])?;
                let id = args.node(0)?;
                self.raft(id)?.election_timeout();
            }
            "tick" => {
                args.allow(&["n"])?;
                let n: u32 = args.opt("n", 1)?;
                for id in self.ids(args.pos.first())? {
                    let everyone = args.pos.first().is_none_or(|w| w == "all");
                    if everyone && self.node(id)?.raft.is_none() {
                        continue; // `tick all` skips crashed nodes
                    }
                    for _ in 0..n {
                        self.raft(id)?.tick();
                        self.process(id);
                        self.observe();
                    }
                }
            }
            "propose" => {
                let id = args.node(0)?;
                if args.pos.len() < 2 {
                    return Err("propose needs at least one command".into());
                }
                for cmd in &args.pos[1..] {
                    let line = match self.raft(id)?.propose(cmd.clone()) {
                        Ok((index, term)) => format!("{cmd}: index={index} term={term}"),
                        Err(e) => format!("{cmd}: refused: {e}"),
                    };
                    self.say(line);
                }
            }
            "read-index" => {
                args.allow(&["ctx"])?;
                let id = args.node(0)?;
                let ctx: u64 = args.opt("ctx", 0)?;
                let line = match self.raft(id)?.read_index(ctx) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                self.say(line);
            }
            "transfer" => {
                args.allow(&["to"])?;
                let id = args.node(0)?;
                let to: NodeId = args.opt("to", 0)?;
                let line = match self.raft(id)?.transfer_leadership(to) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                self.say(line);
            }
            "membership" => self.cmd_membership(&args)?,
            "compact" => {
                args.allow(&["index"])?;
                let id = args.node(0)?;
                let index: Index = args.opt("index", 0)?;
                let node = self.node(id)?;
                let data = encode_sm(
                    &node
                        .sm
                        .iter()
                        .filter(|(i, _)| *i <= index)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                if self.raft(id)?.compact(index, data) {
                    let node = self.nodes.get_mut(&id).expect("node exists");
                    let snapshot = node.raft.as_ref().expect("alive").log().snapshot().clone();
                    node.storage.entries.retain(|e| e.index > index);
                    node.storage.snapshot = snapshot;
                    let line = format!(
                        "compacted {id} to ({},{})",
                        index, node.storage.snapshot.meta.term
                    );
                    self.say(line);
                } else {
                    self.say("nothing compacted");
                }
            }
            "stabilize" => {
                args.allow(&[])?;
                let mut budget = 10_000;
                while let Some(m) = self.queue.pop_front() {
                    budget -= 1;
                    if budget == 0 {
                        return Err("stabilize: still busy after 10000 messages".into());
                    }
                    self.deliver(m);
                }
            }
            "deliver" | "drop" => {
                args.allow(&["n"])?;
                let link = parse_link(args.pos.first().ok_or("needs FROM->TO")?)?;
                let n: usize = args.opt("n", usize::MAX)?;
                let taken = self.take_matching(link, n);
                for m in taken {
                    if args.cmd == "drop" {
                        self.say(format!("{} (dropped)", fmt_msg(&m)));
                    } else {
                        self.deliver(m);
                    }
                }
            }
            "duplicate" | "delay" => {
                args.allow(&["n"])?;
                let link = parse_link(args.pos.first().ok_or("needs FROM->TO")?)?;
                let n: usize = args.opt("n", usize::MAX)?;
                let moved = if args.cmd == "duplicate" {
                    // The originals keep their places; the copies arrive after the rest.
                    let (from, to) = link;
                    self.queue
                        .iter()
                        .filter(|m| {
                            from.is_none_or(|f| f == m.from) && to.is_none_or(|t| t == m.to)
                        })
                        .take(n)
                        .cloned()
                        .collect()
                } else {
                    self.take_matching(link, n)
                };
                for m in moved {
                    let how = if args.cmd == "duplicate" {
                        "duplicated"
                    } else {
                        "delayed"
                    };
                    self.say(format!("{} ({how})", fmt_msg(&m)));
                    self.queue.push_back(m);
                }
            }
            "queue" => {
                args.allow(&[])?;
                let lines: Vec<String> = self.queue.iter().map(fmt_msg).collect();
                self.out.extend(lines);
            }
            "partition" => {
                args.allow(&[])?;
                let groups: Vec<Vec<NodeId>> = args
                    .pos
                    .split(|w| w == "|")
                    .map(|ws| parse_ids(&ws.join(",")))
                    .collect::<Result<_, _>>()?;
                self.cut.clear();
                for (gi, a) in groups.iter().enumerate() {
                    for (gj, b) in groups.iter().enumerate() {
                        if gi != gj {
                            for &x in a {
                                for &y in b {
                                    self.cut.insert((x, y));
                                }
                            }
                        }
                    }
                }
            }
            "heal" => {
                args.allow(&[])?;
                self.cut.clear();
            }
            "crash" => {
                args.allow(&[])?;
                let id = args.node(0)?;
                self.raft(id)?;
                let node = self.nodes.get_mut(&id).expect("node exists");
                node.raft = None;
                node.sm.clear();
                self.seen.remove(&id);
            }
            "restart" => {
                args.allow(&[])?;
                let id = args.node(0)?;
                if self.node(id)?.raft.is_some() {
                    return Err(format!("node {id} is running"));
                }
                self.start(id);
                self.resync();
                let line = self.status_line(id);
                self.say(line);
            }
            "status" => {
                args.allow(&[])?;
                let lines: Vec<String> =
                    self.nodes.keys().map(|&id| self.status_line(id)).collect();
                self.out.extend(lines);
            }
            "log" => {
                args.allow(&[])?;
                for id in self.ids(args.pos.first())? {
                    let line = self.log_line(id)?;
                    self.say(line);
                }
            }
            "applied" => {
                args.allow(&[])?;
                for id in self.ids(args.pos.first())? {
                    let node = self.node(id)?;
                    let line = if node.raft.is_none() {
                        format!("{id}: crashed")
                    } else {
                        let sm: Vec<String> =
                            node.sm.iter().map(|(i, c)| format!("{i}:{c}")).collect();
                        format!("{id}: applied={} [{}]", node.applied, sm.join(" "))
                    };
                    self.say(line);
                }
            }
            "members" => {
                args.allow(&[])?;
                let lines: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|(id, n)| {
                        n.raft
                            .as_ref()
                            .map(|r| format!("{id}: {}", fmt_membership(r.membership())))
                    })
                    .collect();
                self.out.extend(lines);
            }
            "progress" => {
                args.allow(&[])?;
                let id = args.node(0)?;
                let raft = self.raft(id)?;
                let mut lines = Vec::new();
                let peers: Vec<NodeId> = raft.membership().members().collect();
                for peer in peers {
                    if let Some(pr) = raft.progress(peer) {
                        lines.push(format!(
                            "{peer}: match={} next={} state={:?} inflight={}",
                            pr.matched,
                            pr.next,
                            pr.state,
                            pr.inflight.len()
                        ));
                    }
                }
                if lines.is_empty() {
                    lines.push(format!("{id} is not the leader"));
                }
                self.out.extend(lines);
            }
            other => return Err(format!("unknown directive `{other}`")),
        }
        self.process_all();
        self.observe();
        if self.lost > 0 {
            let lost = std::mem::take(&mut self.lost);
            self.say(format!("({lost} message(s) sent over cut links lost)"));
        }
        if self.out.is_empty() {
            self.out.push("ok".to_string());
        }
        Ok(std::mem::take(&mut self.out))
    }

    fn cmd_cluster(&mut self, args: &Args) -> Result<(), String> {
        args.allow(&[
            "voters",
            "learners",
            "pre-vote",
            "check-quorum",
            "bug",
            "election",
            "heartbeat",
            "max-batch",
            "max-inflight",
        ])?;
        *self = Cluster::default();
        let voters = parse_ids(args.opts.get("voters").ok_or("cluster needs voters=")?)?;
        let learners = parse_ids(args.opts.get("learners").map_or("", String::as_str))?;
        let mut config = Config::new(0);
        config.pre_vote = parse_bool(args.opts.get("pre-vote").map_or("false", String::as_str))?;
        config.check_quorum = parse_bool(
            args.opts
                .get("check-quorum")
                .map_or("false", String::as_str),
        )?;
        config.election_ticks = args.opt("election", config.election_ticks)?;
        config.heartbeat_ticks = args.opt("heartbeat", config.heartbeat_ticks)?;
        config.max_batch = args.opt("max-batch", config.max_batch)?;
        config.max_inflight = args.opt("max-inflight", config.max_inflight)?;
        let mut bugs = Bugs::none();
        if let Some(names) = args.opts.get("bug") {
            for name in names.split(',') {
                bugs = bugs.with(name.parse::<Bug>().map_err(|e| e.to_string())?);
            }
        }
        config.bugs = bugs;
        self.template = Some(config);
        self.bootstrap = Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addresses: Default::default(),
        };
        for id in voters.into_iter().chain(learners) {
            self.add_node(id)?;
        }
        self.resync();
        let lines: Vec<String> = self.nodes.keys().map(|&id| self.status_line(id)).collect();
        self.out.extend(lines);
        Ok(())
    }

    fn cmd_set_log(&mut self, args: &Args) -> Result<(), String> {
        args.allow(&["log", "term", "vote"])?;
        let id = args.node(0)?;
        let terms: Vec<Term> = args
            .opts
            .get("log")
            .map_or("", String::as_str)
            .split(',')
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().map_err(|_| format!("bad term `{w}`")))
            .collect::<Result<_, String>>()?;
        let last_term = terms.last().copied().unwrap_or(0);
        let term: Term = args.opt("term", last_term)?;
        let vote = match args.opts.get("vote") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| format!("bad vote `{v}`"))?),
        };
        let node = self.nodes.get_mut(&id).ok_or(format!("no node {id}"))?;
        node.storage.hard_state = HardState {
            term,
            voted_for: vote,
        };
        node.storage.entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                term: t,
                index: i as Index + 1,
                kind: EntryKind::Command("x".to_string()),
            })
            .collect();
        self.start(id);
        self.resync();
        let line = self.log_line(id)?;
        self.say(line);
        Ok(())
    }

    fn cmd_membership(&mut self, args: &Args) -> Result<(), String> {
        args.allow(&[])?;
        let id = args.node(0)?;
        let what = args
            .pos
            .get(1)
            .ok_or("membership ID add-learner|promote|remove N")?;
        let target = args.node(2)?;
        let change = match what.as_str() {
            "add-learner" => MembershipChange::AddLearner {
                id: target,
                addr: String::new(),
            },
            "promote" => MembershipChange::PromoteLearner(target),
            "remove" => MembershipChange::Remove(target),
            other => return Err(format!("unknown membership change `{other}`")),
        };
        let adds = matches!(change, MembershipChange::AddLearner { .. });
        let line = match self.raft(id)?.propose_membership(change) {
            Ok((index, term)) => format!("index={index} term={term}"),
            Err(e) => format!("refused: {e}"),
        };
        self.say(line);
        if adds && !self.nodes.contains_key(&target) {
            self.add_node(target)?;
            self.say(format!("created node {target}"));
        }
        Ok(())
    }
}

/// The persistence contract: a message may promise only what is already durable.
fn check_durable(storage: &Storage, m: &Message<Cmd>) {
    let hs = storage.hard_state;
    let pre_vote = matches!(
        m.body,
        Body::Vote {
            campaign: Campaign::PreVote,
            ..
        } | Body::VoteResponse {
            campaign: Campaign::PreVote,
            ..
        }
    );
    if pre_vote {
        return;
    }
    assert!(
        m.term <= hs.term,
        "contract: message of term {} sent with durable term {}",
        m.term,
        hs.term
    );
    match &m.body {
        Body::VoteResponse { granted: true, .. } => {
            assert!(
                hs.term == m.term && hs.voted_for == Some(m.to),
                "contract: vote for {} in term {} sent before it was durable ({hs:?})",
                m.to,
                m.term
            );
        }
        Body::AppendResponse {
            success: true,
            index,
            ..
        } => {
            assert!(
                *index <= storage.last_index(),
                "contract: ack of index {index} sent with only {} durable",
                storage.last_index()
            );
        }
        _ => {}
    }
}

// ----- the runner ------------------------------------------------------------------------

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn run_file(name: &str) {
    let path = testdata().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let items = parse_script(name, &text);
    let mut cluster = Cluster::default();
    let mut failures = Vec::new();
    let mut rewritten = String::new();
    for item in &items {
        match item {
            Item::Text(line) => {
                rewritten.push_str(line);
                rewritten.push('\n');
            }
            Item::Case(case) => {
                let actual = cluster
                    .run(&case.directive)
                    .unwrap_or_else(|e| panic!("{name}.txt:{}: {e}", case.line));
                if actual != case.expected {
                    failures.push(format!(
                        "{name}.txt:{}: {}\n--- expected\n{}\n--- actual\n{}\n",
                        case.line,
                        case.directive,
                        case.expected.join("\n"),
                        actual.join("\n")
                    ));
                }
                rewritten.push_str(&case.directive);
                rewritten.push_str("\n----\n");
                for line in &actual {
                    rewritten.push_str(line);
                    rewritten.push('\n');
                }
                rewritten.push('\n');
            }
        }
    }
    while rewritten.ends_with("\n\n") {
        rewritten.pop();
    }
    if std::env::var_os("REWRITE").is_some() {
        if rewritten != text {
            std::fs::write(&path, rewritten).expect("rewrite testdata");
        }
        return;
    }
    assert!(
        failures.is_empty(),
        "{} directive(s) differ (REWRITE=1 regenerates):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_file(stringify!($name));
            }
        )*

        /// Every scenario file is run by a test above.
        #[test]
        fn every_testdata_file_has_a_test() {
            let known = [$(stringify!($name)),*];
            for entry in std::fs::read_dir(testdata()).expect("testdata dir") {
                let path = entry.expect("dir entry").path();
                if path.extension().is_some_and(|e| e == "txt") {
                    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                    assert!(known.contains(&stem.as_str()), "no test runs testdata/{stem}.txt");
                }
            }
        }
    };
}

scenarios!(
    basic,
    figure7,
    figure8,
    partition,
    stale_leader,
    prevote,
    read_index,
    transfer,
    snapshot,
    membership,
    crash_restart,
    lost_pipeline,
    membership_new_leader,
    lease_read,
    apply_uncommitted,
    truncate_on_append,
    read_pacing,
    snapshot_new_leader,
    learner_catch_up,
    stale_rejection,
    check_quorum_new_leader,
    prevote_lease,
    prevote_equal_term,
    commit_promptly,
);
