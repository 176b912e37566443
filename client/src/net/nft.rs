//! Real packet drops with nftables: a table of the run's own, one input-hook chain, one
//! `drop` rule per cut link.
//!
//! - **Naming**: `inet raftlab_<pid>_<n>`, `<pid>` the lab's process id and `<n>` a counter
//!   within the process (tests hold several at once). Valid nft identifiers.
//! - **Rules**: `ip saddr A udp sport P ip daddr B udp dport Q drop` per cut link (or, for
//!   `packet-loss`, `... numgen random mod 100 < 10 drop` on every link), where `A:P`
//!   and `B:Q` are the nodes' addresses (a node sends and receives all its QUIC traffic on
//!   its one bound socket). Matching the ports too keeps two clusters on the same IPs (two
//!   runs) apart, and leaves the lab's clients (other ports) untouched. IPv6 nodes get
//!   `ip6` rules.
//! - **Apply** replaces the rules atomically (`flush chain` + `add rule`s in one `nft -f -`
//!   transaction); **heal** flushes the chain; **teardown** deletes the table. `Drop` always
//!   tears down, and every table is registered in [`cleanup`] for Ctrl-C until deleted.
//! - **Stale tables** of crashed runs are deleted by [`Nft::new`]: every `raftlab_<pid>_<n>`
//!   table whose `<pid>` is no live process. Tables of live processes (a concurrent run) are
//!   left alone; a crashed run whose pid has since been reused keeps its table until that
//!   process exits too (then the next run deletes it). Tables not named `raftlab_<digits>_...`
//!   are never touched.
//! - Needs the `nft` binary and CAP_NET_ADMIN (root): without them [`Nft::new`] fails with a
//!   message saying so, and the lab refuses partition nemeses (kill and pause still work).
//! - **Processes told apart by group** ([`Nft::by_group`]): for nodes that do not send from
//!   their own address (etcd members on loopback dial their peers from 127.0.0.1), each node
//!   runs under a group id of its own. An output-hook chain `stamp` marks every connection a
//!   node opens with its group id as conntrack mark; a cut link from A to B drops A's packets
//!   to B's address (`meta skgid A ip daddr B`) and A's packets on connections B opened
//!   (`meta skgid A ct mark B`), in an output-hook chain `drops`.

use super::{Network, LATENCY_NEEDS_HOSTS};
use crate::control::cleanup::{self, Cleanup};
use crate::control::process;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;
use tracing::{debug, info, warn};

/// Prefix of every table the lab makes.
pub const TABLE_PREFIX: &str = "raftlab_";
/// The chain in each table.
pub const CHAIN: &str = "input";
/// The drop chain of a table that tells nodes apart by group ([`Nft::by_group`]).
pub const GROUP_CHAIN: &str = "drops";

/// Why nftables cannot be used.
#[derive(Debug, Error)]
pub enum NftError {
    #[error("the `nft` command is not available ({0}): install nftables")]
    NotInstalled(String),
    #[error("nft refused to {action}: permission denied: partitions need root (CAP_NET_ADMIN): {stderr}")]
    NotPermitted { action: String, stderr: String },
    #[error("nft failed to {action}: {stderr}")]
    Failed { action: String, stderr: String },
}

static NEXT_TABLE: AtomicU64 = AtomicU64::new(0);

/// The lab's nftables table.
#[derive(Debug)]
pub struct Nft {
    table: String,
    /// Rules currently in the chain.
    rules: usize,
    /// Deletes the table on Ctrl-C; `None` once deleted.
    undo: Option<Cleanup>,
    /// Each node's group id, by its address, when nodes are told apart by group.
    groups: Option<BTreeMap<SocketAddr, u32>>,
}

impl Network for Nft {
    fn cut(
        &mut self,
        drops: &[(SocketAddr, SocketAddr)],
        loss_percent: Option<u8>,
    ) -> Result<(), String> {
        self.apply(drops, loss_percent).map_err(|e| e.to_string())
    }

    fn heal(&mut self) -> Result<(), String> {
        Nft::heal(self).map_err(|e| e.to_string())
    }

    /// Refuses to slow loopback: that would slow every process of this machine.
    fn delay(&mut self, on: bool) -> Result<String, String> {
        if on {
            Err(LATENCY_NEEDS_HOSTS.into())
        } else {
            Ok(String::new())
        }
    }
}

impl Nft {
    /// Checks `nft` and permissions, deletes stale tables of dead runs, and creates a fresh
    /// table with an empty input chain.
    pub fn new() -> Result<Nft, NftError> {
        Nft::create(None)
    }

    /// Like [`Nft::new`], for nodes told apart by the group id their process runs under
    /// (`groups`: each node's address and group id); see the module.
    pub fn by_group(groups: BTreeMap<SocketAddr, u32>) -> Result<Nft, NftError> {
        Nft::create(Some(groups))
    }

    fn create(groups: Option<BTreeMap<SocketAddr, u32>>) -> Result<Nft, NftError> {
        let table = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            NEXT_TABLE.fetch_add(1, Ordering::Relaxed)
        );
        let listing = run_nft(&["list", "tables"], None, "list tables")?;
        for stale in stale_tables(&listing, std::process::id(), process::alive) {
            let action = format!("delete stale table {stale}");
            match run_nft_script(&delete_script(&stale), &action) {
                Ok(()) => info!(table = %stale, "deleted a stale nftables table of a dead run"),
                Err(e) => warn!(table = %stale, "cannot delete a stale nftables table: {e}"),
            }
        }
        let script = match &groups {
            None => create_script(&table),
            Some(groups) => create_group_script(&table, groups),
        };
        run_nft_script(&script, &format!("create table inet {table}"))?;
        let undo = {
            let table = table.clone();
            cleanup::register(move || {
                if let Err(e) = delete_table(&table) {
                    warn!(%table, "cannot delete the nftables table: {e}");
                }
            })
        };
        debug!(%table, "nftables table created");
        Ok(Nft {
            table,
            rules: 0,
            undo: Some(undo),
            groups,
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Drop rules currently installed.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Replaces the rules with one drop rule per `(source, destination)` pair, atomically
    /// (dropping `loss_percent` of the packets at random, or all of them).
    pub fn apply(
        &mut self,
        drops: &[(SocketAddr, SocketAddr)],
        loss_percent: Option<u8>,
    ) -> Result<(), NftError> {
        let script = match &self.groups {
            None => apply_script(&self.table, drops, loss_percent, Match::UdpPorts),
            Some(groups) => apply_group_script(&self.table, groups, drops, loss_percent),
        };
        run_nft_script(
            &script,
            &format!("apply a partition in table inet {}", self.table),
        )?;
        self.rules = drops
            .iter()
            .filter(|(a, b)| a.is_ipv4() == b.is_ipv4())
            .count();
        debug!(table = %self.table, rules = self.rules, "partition applied");
        Ok(())
    }

    /// Removes every rule: all links heal. A table already deleted (by Ctrl-C's
    /// [`cleanup::run_all`]) has nothing left to heal.
    pub fn heal(&mut self) -> Result<(), NftError> {
        if !self.undo.as_ref().is_some_and(Cleanup::pending) {
            self.rules = 0;
            return Ok(());
        }
        let chain = if self.groups.is_some() {
            GROUP_CHAIN
        } else {
            CHAIN
        };
        run_nft_script(
            &format!("flush chain inet {} {chain}\n", self.table),
            &format!("flush chain of table inet {}", self.table),
        )?;
        self.rules = 0;
        Ok(())
    }

    /// The table as `nft list table` prints it.
    pub fn list(&self) -> Result<String, NftError> {
        run_nft(
            &["list", "table", "inet", &self.table],
            None,
            &format!("list table inet {}", self.table),
        )
    }

    /// Deletes the table.
    pub fn teardown(mut self) -> Result<(), NftError> {
        self.delete()
    }

    fn delete(&mut self) -> Result<(), NftError> {
        // Deleted already (by us, or by Ctrl-C's cleanup): nothing to do.
        if self.undo.as_ref().is_some_and(Cleanup::pending) {
            delete_table(&self.table)?;
        }
        self.undo = None;
        self.rules = 0;
        Ok(())
    }
}

fn delete_table(table: &str) -> Result<(), NftError> {
    run_nft_script(&delete_script(table), &format!("delete table inet {table}"))?;
    debug!(%table, "nftables table deleted");
    Ok(())
}

impl Drop for Nft {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            warn!(table = %self.table, "cannot delete the nftables table: {e}");
        }
    }
}

/// Creates (or recreates empty) `table` with the input-hook chain, in one transaction.
pub fn create_script(table: &str) -> String {
    format!(
        "add table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tchain {CHAIN} {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t}}\n\
         }}\n"
    )
}

/// What a drop rule matches of a `(source, destination)` pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Match {
    /// UDP between the two addresses and ports (raftlab's QUIC endpoints).
    #[default]
    UdpPorts,
    /// Every packet between the two addresses, whatever the ports (etcd's peers speak TCP
    /// from ephemeral ports; each node has an address of its own).
    Addresses,
}

/// Flushes `table`'s chain and adds one drop rule per pair, in one transaction: dropping
/// every packet (`loss_percent` `None`: a cut) or a random share of them (`numgen random`).
pub fn apply_script(
    table: &str,
    drops: &[(SocketAddr, SocketAddr)],
    loss_percent: Option<u8>,
    matching: Match,
) -> String {
    let mut script = format!("flush chain inet {table} {CHAIN}\n");
    let verdict = match loss_percent {
        None => "drop".to_string(),
        Some(p) => format!("numgen random mod 100 < {p} drop"),
    };
    for (from, to) in drops {
        let family = match (from, to) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => "ip",
            (SocketAddr::V6(_), SocketAddr::V6(_)) => "ip6",
            // Different families never talk to each other directly.
            _ => continue,
        };
        let (from_ip, to_ip) = (from.ip(), to.ip());
        let _ = match matching {
            Match::UdpPorts => writeln!(
                script,
                "add rule inet {table} {CHAIN} {family} saddr {from_ip} udp sport {} {family} daddr {to_ip} udp dport {} {verdict}",
                from.port(),
                to.port()
            ),
            Match::Addresses => writeln!(
                script,
                "add rule inet {table} {CHAIN} {family} saddr {from_ip} {family} daddr {to_ip} {verdict}"
            ),
        };
    }
    script
}

/// Creates (or recreates empty) `table` for nodes told apart by group: the `mark` chain that
/// stamps each node's new connections with its group id, and the empty drop chain.
pub fn create_group_script(table: &str, groups: &BTreeMap<SocketAddr, u32>) -> String {
    let mut script = format!(
        "add table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tchain stamp {{\n\
         \t\ttype filter hook output priority -1; policy accept;\n"
    );
    for gid in groups.values() {
        let _ = writeln!(
            script,
            "\t\tct state new meta skgid {gid} ct mark set {gid}"
        );
    }
    let _ = write!(
        script,
        "\t}}\n\
         \tchain {GROUP_CHAIN} {{\n\
         \t\ttype filter hook output priority 0; policy accept;\n\
         \t}}\n\
         }}\n"
    );
    script
}

/// Flushes the drop chain and adds, per cut pair `(A, B)`, the drops of A's packets to B's
/// address and on connections B opened, in one transaction. Pairs naming a node without a
/// group are left out.
pub fn apply_group_script(
    table: &str,
    groups: &BTreeMap<SocketAddr, u32>,
    drops: &[(SocketAddr, SocketAddr)],
    loss_percent: Option<u8>,
) -> String {
    let mut script = format!("flush chain inet {table} {GROUP_CHAIN}\n");
    let verdict = match loss_percent {
        None => "drop".to_string(),
        Some(p) => format!("numgen random mod 100 < {p} drop"),
    };
    for (from, to) in drops {
        let (Some(a), Some(b)) = (groups.get(from), groups.get(to)) else {
            continue;
        };
        let family = if to.is_ipv4() { "ip" } else { "ip6" };
        let rule = format!("add rule inet {table} {GROUP_CHAIN} meta skgid {a}");
        let _ = writeln!(script, "{rule} {family} daddr {} {verdict}", to.ip());
        let _ = writeln!(script, "{rule} ct mark {b} {verdict}");
    }
    script
}

pub fn heal_script(table: &str) -> String {
    format!("flush chain inet {table} {CHAIN}\n")
}

pub fn delete_script(table: &str) -> String {
    format!("delete table inet {table}\n")
}

/// The lab's tables in `nft list tables` output whose owner is gone: named
/// `raftlab_<pid>_...` with `<pid>` not `own_pid` and not `alive`.
pub fn stale_tables(listing: &str, own_pid: u32, alive: impl Fn(u32) -> bool) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("table"), Some("inet"), Some(name)) => Some(name),
                _ => None,
            }
        })
        .filter(|name| {
            let Some(rest) = name.strip_prefix(TABLE_PREFIX) else {
                return false;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Ok(pid) = digits.parse::<u32>() else {
                return false;
            };
            rest[digits.len()..].starts_with('_') && pid != own_pid && !alive(pid)
        })
        .map(str::to_string)
        .collect()
}

fn run_nft_script(script: &str, action: &str) -> Result<(), NftError> {
    run_nft(&["-f", "-"], Some(script), action).map(|_| ())
}

/// Runs `nft ARGS` with `stdin`; returns stdout.
fn run_nft(args: &[&str], stdin: Option<&str>, action: &str) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NftError::NotInstalled(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failed write shows up as nft's own error below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| NftError::Failed {
        action: action.to_string(),
        stderr: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ");
    let action = action.to_string();
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        Err(NftError::NotPermitted { action, stderr })
    } else {
        Err(NftError::Failed { action, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loss_drops_a_random_share() {
        let drops = [(addr("10.0.0.1:15001"), addr("10.0.0.2:15001"))];
        assert!(
            apply_script("raftlab_42_0", &drops, Some(10), Match::UdpPorts)
                .ends_with("udp dport 15001 numgen random mod 100 < 10 drop\n")
        );
        assert_eq!(
            apply_script("t", &drops, None, Match::Addresses),
            "flush chain inet t input\n\
             add rule inet t input ip saddr 10.0.0.1 ip daddr 10.0.0.2 drop\n"
        );
    }

    #[test]
    fn apply_script_drops_each_pair_in_one_transaction() {
        let drops = [
            (addr("127.0.0.11:15001"), addr("127.0.0.13:15003")),
            (addr("127.0.0.13:15003"), addr("127.0.0.11:15001")),
            (addr("[::1]:15004"), addr("[::1]:15005")),
            (addr("127.0.0.11:15001"), addr("[::1]:15005")),
        ];
        assert_eq!(
            apply_script("raftlab_42_0", &drops, None, Match::UdpPorts),
            "flush chain inet raftlab_42_0 input\n\
             add rule inet raftlab_42_0 input ip saddr 127.0.0.11 udp sport 15001 ip daddr 127.0.0.13 udp dport 15003 drop\n\
             add rule inet raftlab_42_0 input ip saddr 127.0.0.13 udp sport 15003 ip daddr 127.0.0.11 udp dport 15001 drop\n\
             add rule inet raftlab_42_0 input ip6 saddr ::1 udp sport 15004 ip6 daddr ::1 udp dport 15005 drop\n"
        );
        assert_eq!(
            apply_script("raftlab_42_0", &[], None, Match::UdpPorts),
            "flush chain inet raftlab_42_0 input\n"
        );
    }

    #[test]
    fn group_scripts_mark_connections_and_cut_both_ways_of_a_link() {
        let groups: BTreeMap<SocketAddr, u32> = [
            (addr("127.0.0.11:2379"), 101),
            (addr("127.0.0.12:2379"), 102),
        ]
        .into();
        let create = create_group_script("raftlab_1_0", &groups);
        assert!(create.contains("type filter hook output priority -1"));
        assert!(create.contains("ct state new meta skgid 102 ct mark set 102"));
        let apply = apply_group_script(
            "raftlab_1_0",
            &groups,
            &[
                (addr("127.0.0.11:2379"), addr("127.0.0.12:2379")),
                (addr("127.0.0.11:2379"), addr("127.0.0.99:1")),
            ],
            None,
        );
        assert_eq!(
            apply,
            "flush chain inet raftlab_1_0 drops\n\
             add rule inet raftlab_1_0 drops meta skgid 101 ip daddr 127.0.0.12 drop\n\
             add rule inet raftlab_1_0 drops meta skgid 101 ct mark 102 drop\n"
        );
    }

    #[test]
    fn create_heal_and_delete_scripts() {
        let create = create_script("raftlab_7_1");
        assert!(create.starts_with("add table inet raftlab_7_1\ndelete table inet raftlab_7_1\n"));
        assert!(create.contains("type filter hook input priority 0; policy accept;"));
        assert_eq!(
            heal_script("raftlab_7_1"),
            "flush chain inet raftlab_7_1 input\n"
        );
        assert_eq!(
            delete_script("raftlab_7_1"),
            "delete table inet raftlab_7_1\n"
        );
    }

    #[test]
    fn only_tables_of_dead_lab_processes_are_stale() {
        let listing = "table inet filter\n\
                       table inet raftlab_100_0\n\
                       table inet raftlab_200_3\n\
                       table inet raftlab_300_0\n\
                       table ip raftlab_400_0\n\
                       table inet raftlab_x_0\n\
                       table inet raftlab_500\n";
        // 200 is alive, 300 is us.
        let stale = stale_tables(listing, 300, |pid| pid == 200);
        assert_eq!(stale, vec!["raftlab_100_0".to_string()]);
    }

    #[test]
    fn table_names_are_unique_and_valid_identifiers() {
        let a = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            NEXT_TABLE.fetch_add(1, Ordering::Relaxed)
        );
        let b = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            NEXT_TABLE.fetch_add(1, Ordering::Relaxed)
        );
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.chars().next().unwrap().is_ascii_alphabetic());
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
    }
}
