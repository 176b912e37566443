//! Network faults on the hosts of a remote cluster (or namespaces): one nftables table
//! `raftlab_r<lab pid>_<n>` per network (hosts may be shared with other labs, so nothing else
//! is ever touched), the same rule set on every host (a host only matches its own traffic),
//! the `latency` qdisc on `remote.iface`, all hosts concurrently, through the command
//! template. Removed on `Drop`; registered in [`cleanup`] for Ctrl-C until then.

use crate::control::cleanup::{self, Cleanup};
use crate::control::concurrently;
use crate::control::template::{quote_if_needed, CommandTemplate};
use crate::net::netem::{self, clear_command};
use crate::net::nft::{
    apply_script, create_script, delete_script, heal_script, Match, TABLE_PREFIX,
};
use crate::net::{NetError, Network};
use node::config::NodeEntry;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Longest a network command may take on a host.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(15);

/// Each command of the Ctrl-C cleanup (all hosts at once).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Numbers the tables of this process.
static NEXT_TABLE: AtomicU64 = AtomicU64::new(0);

/// Partitions (an nftables table of its own on every host) and `tc netem` (on `remote.iface`
/// of every host), applied to all hosts at once. Removed on `Drop`.
#[derive(Debug)]
pub struct RemoteNetwork {
    template: CommandTemplate,
    /// One node per distinct host (expanded template).
    hosts: Vec<NodeEntry>,
    table: String,
    iface: String,
    /// What the drop rules match.
    matching: Match,
    /// Shared with the Ctrl-C undo, which must remove the netem discipline too.
    netem_used: Arc<AtomicBool>,
    /// Removes the table on every host on Ctrl-C; `None` once torn down.
    undo: Option<Cleanup>,
}

impl RemoteNetwork {
    /// Creates the table `raftlab_r<pid>_<n>` on every host of `nodes` (checking that `nft`
    /// and `tc` work there; a missing `iface` only warns, as partitions do not need it). On
    /// failure removes what it made and names every failing host.
    pub fn create(
        template: CommandTemplate,
        nodes: &[NodeEntry],
        iface: &str,
    ) -> Result<RemoteNetwork, NetError> {
        let key = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
        let table = table_name(std::process::id(), key);
        let hosts = distinct_hosts(&template, nodes);
        let netem_used = Arc::new(AtomicBool::new(false));
        let undo = {
            let (template, hosts, table) = (template.clone(), hosts.clone(), table.clone());
            let (iface, netem_used) = (iface.to_string(), netem_used.clone());
            cleanup::register(move || {
                let command = teardown_command(&iface, netem_used.load(Ordering::SeqCst));
                let script = teardown_script(&table);
                let results = concurrently(&hosts, |host| {
                    template.run(host, &command, Some(&script), CLEANUP_TIMEOUT)
                });
                for e in results.into_iter().filter_map(Result::err) {
                    warn!(%table, "removing the network faults on Ctrl-C: {e}");
                }
            })
        };
        let mut network = RemoteNetwork {
            template,
            hosts,
            table,
            iface: iface.to_string(),
            matching: Match::UdpPorts,
            netem_used,
            undo: Some(undo),
        };
        let created = network.on_every_host(
            &format!("create nftables table inet {}", network.table),
            &setup_command(iface),
            Some(&create_script(&network.table)),
        );
        match created {
            Ok(outputs) => {
                for (host, output) in network.hosts.iter().zip(outputs) {
                    if String::from_utf8_lossy(&output.stdout).contains("no-iface") {
                        warn!(host = host.control_host(), %iface, "no such interface on the host: netem nemeses will fail there (set remote.iface)");
                    }
                }
                info!(table = %network.table, hosts = network.hosts.len(), "remote network faults ready");
                Ok(network)
            }
            Err(e) => {
                if let Err(cleanup) = network.teardown() {
                    debug!("removing a half-made network: {cleanup}");
                }
                Err(NetError::Setup(format!(
                    "partitions and netem need nft and tc (and root) on every node's host: {e}"
                )))
            }
        }
    }

    /// Drop rules that match what they cut by address and port ([`Match::UdpPorts`], the
    /// default) or by address alone ([`Match::Addresses`]).
    pub fn matching(mut self, matching: Match) -> RemoteNetwork {
        self.matching = matching;
        self
    }

    /// The nftables table (`inet` family) on every host.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// One node per distinct host: where the commands run.
    pub fn hosts(&self) -> &[NodeEntry] {
        &self.hosts
    }

    /// Not torn down (by [`Self::teardown`] or Ctrl-C's [`cleanup::run_all`]).
    fn live(&self) -> bool {
        self.undo.as_ref().is_some_and(Cleanup::pending)
    }

    /// Deletes the table (and the netem discipline, if this network ever installed one) on
    /// every host. Idempotent; a failure leaves it registered for a retry (or `Drop`, or
    /// Ctrl-C).
    pub fn teardown(&mut self) -> Result<(), String> {
        if !self.live() {
            return Ok(());
        }
        self.on_every_host(
            &format!("delete nftables table inet {}", self.table),
            &teardown_command(&self.iface, self.netem_used.load(Ordering::SeqCst)),
            Some(&teardown_script(&self.table)),
        )?;
        self.undo = None;
        debug!(table = %self.table, "remote network faults removed");
        Ok(())
    }

    /// Runs `command` (with `stdin`) on every host at once; all failures in one message.
    fn on_every_host(
        &self,
        what: &str,
        command: &str,
        stdin: Option<&str>,
    ) -> Result<Vec<Output>, String> {
        let results = concurrently(&self.hosts, |host| {
            self.template.run(host, command, stdin, NETWORK_TIMEOUT)
        });
        let mut outputs = Vec::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(output) => outputs.push(output),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            return Ok(outputs);
        }
        let hint = if errors
            .iter()
            .any(|e| e.contains("Operation not permitted") || e.contains("Permission denied"))
        {
            " (nft and tc need root, i.e. CAP_NET_ADMIN, on the hosts)"
        } else {
            ""
        };
        Err(format!(
            "{what}: failed on {} of {} hosts: {}{hint}",
            errors.len(),
            self.hosts.len(),
            errors.join("; ")
        ))
    }

    fn set_netem_used(&mut self) {
        self.netem_used.store(true, Ordering::SeqCst);
    }
}

impl Network for RemoteNetwork {
    fn cut(
        &mut self,
        drops: &[(SocketAddr, SocketAddr)],
        loss_percent: Option<u8>,
    ) -> Result<(), String> {
        if !self.live() {
            return Err(format!(
                "table inet {} was removed already (teardown or Ctrl-C cleanup)",
                self.table
            ));
        }
        self.on_every_host(
            &format!("apply drop rules in table inet {}", self.table),
            "nft -f -",
            Some(&apply_script(
                &self.table,
                drops,
                loss_percent,
                self.matching,
            )),
        )?;
        debug!(table = %self.table, drops = drops.len(), ?loss_percent, "drop rules applied on every host");
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        if !self.live() {
            return Ok(());
        }
        self.on_every_host(
            &format!("flush chain of table inet {}", self.table),
            "nft -f -",
            Some(&heal_script(&self.table)),
        )
        .map(|_| ())
    }

    fn delay(&mut self, on: bool) -> Result<String, String> {
        let iface = quote_if_needed(&self.iface);
        if !on {
            if !self.live() {
                return Ok(String::new());
            }
            self.on_every_host(
                &format!("remove the delay from {}", self.iface),
                &clear_command(&iface),
                None,
            )?;
            return Ok(String::new());
        }
        if !self.live() {
            return Err(format!(
                "latency: the network of table inet {} was removed already",
                self.table
            ));
        }
        self.set_netem_used();
        let outputs = self.on_every_host(
            &format!("delay packets on {}", self.iface),
            &netem::install_command(&iface),
            None,
        )?;
        // Every host says what it installed (netem, or tbf where the kernel has no netem).
        let mut installed: Vec<String> = outputs
            .iter()
            .map(|o| netem::describe(&String::from_utf8_lossy(&o.stdout)))
            .collect();
        installed.sort();
        installed.dedup();
        Ok(installed.join("; "))
    }
}

impl Drop for RemoteNetwork {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            warn!(table = %self.table, "cannot remove the network faults: {e}");
        }
    }
}

/// `raftlab_r<pid>_<n>`: never matched by the local stale-table sweep (`raftlab_<digits>_`),
/// a valid nft identifier.
pub fn table_name(pid: u32, n: u64) -> String {
    format!("{TABLE_PREFIX}r{pid}_{n}")
}

/// The first node of each distinct expanded template, in node order.
pub fn distinct_hosts(template: &CommandTemplate, nodes: &[NodeEntry]) -> Vec<NodeEntry> {
    let mut seen = std::collections::BTreeSet::new();
    nodes
        .iter()
        .filter(|n| seen.insert(template.expand(n)))
        .cloned()
        .collect()
}

/// Checks `nft` and `tc` on a host (printing `no-iface` when `iface` is missing), then runs
/// `nft -f -` on its input.
pub fn setup_command(iface: &str) -> String {
    format!(
        "command -v nft >/dev/null 2>&1 || {{ echo 'nft (nftables) is not installed on this host (or not on PATH)' >&2; exit 127; }}; \
         command -v tc >/dev/null 2>&1 || {{ echo 'tc (iproute2) is not installed on this host (or not on PATH)' >&2; exit 127; }}; \
         tc -V >/dev/null || exit 1; [ -e /sys/class/net/{iface} ] || echo no-iface; nft -f -",
        iface = quote_if_needed(iface)
    )
}

/// Removes the netem discipline (if `netem_used`), then runs `nft -f -` on its input
/// ([`teardown_script`]).
pub fn teardown_command(iface: &str, netem_used: bool) -> String {
    if netem_used {
        format!("{}; nft -f -", clear_command(&quote_if_needed(iface)))
    } else {
        "nft -f -".into()
    }
}

/// Deletes `table`, also when it is not there (so several runs on one host are harmless).
pub fn teardown_script(table: &str) -> String {
    format!("add table inet {table}\n{}", delete_script(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_commands_text() {
        assert_eq!(table_name(1234, 5), "raftlab_r1234_5");
        assert!(table_name(u32::MAX, u64::MAX)
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        // The local stale-table sweep never takes a remote table for one of its own.
        let listing = format!("table inet {}\n", table_name(999_999, 0));
        assert!(crate::net::nft::stale_tables(&listing, 1, |_| false).is_empty());
        assert_eq!(
            teardown_script("raftlab_r1_0"),
            "add table inet raftlab_r1_0\ndelete table inet raftlab_r1_0\n"
        );
        assert_eq!(teardown_command("eth0", false), "nft -f -");
        assert_eq!(
            teardown_command("eth0", true),
            "tc qdisc del dev eth0 root 2>/dev/null || true; nft -f -"
        );
        let setup = setup_command("eth0");
        assert!(setup.contains("command -v nft") && setup.contains("tc -V"));
        assert!(setup.contains("[ -e /sys/class/net/eth0 ] || echo no-iface"));
        assert!(setup.ends_with("; nft -f -"));
        assert!(netem::install_command(&quote_if_needed("eth0"))
            .starts_with("if tc qdisc replace dev eth0 root netem delay 50ms 40ms"));
    }

    #[test]
    fn hosts_are_deduplicated_by_expanded_template() {
        let nodes: Vec<NodeEntry> = (1..=3)
            .map(|id| NodeEntry {
                id,
                addr: format!("10.0.0.{}:1500{id}", if id == 3 { 1 } else { id }),
                host: None,
            })
            .collect();
        let ssh = CommandTemplate::parse("ssh {host}").unwrap();
        let ids: Vec<u64> = distinct_hosts(&ssh, &nodes).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 2]);
        let per_id = CommandTemplate::parse("docker exec n{id} sh -c").unwrap();
        assert_eq!(distinct_hosts(&per_id, &nodes).len(), 3);
    }
}
