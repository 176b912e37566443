//! The `latency` nemesis: delay on every node's network interface with `tc`.
//!
//! It needs nodes with network interfaces of their own (`raft-lab run --hosts netns`, or a
//! remote cluster): on a local loopback cluster a qdisc on `lo` would slow every process of
//! the machine, so [`crate::db::local::LocalCluster`] refuses it. Egress only: a node's replies
//! to clients are delayed too, as on a slow network.
//!
//! The discipline is `netem delay 50ms 40ms` (uniform jitter: datagrams overtake each other,
//! though QUIC still delivers each stream in order). Kernels built without netem
//! (`CONFIG_NET_SCH_NETEM` unset: this lab's CI machine is one) get a token bucket instead,
//! `tbf rate 1mbit burst 16kb latency 200ms`: a slow link whose queue delays packets by up to
//! 200 ms under load and drops what overflows. The install command prints which one it
//! installed, and the history records it.
//!
//! (`packet-loss` needs no qdisc: it is nftables rules dropping a random share of the packets
//! between nodes, see [`super::nft`].)

/// Share of packets the `packet-loss` nemesis drops on every link between nodes, in percent.
pub const LOSS_PERCENT: u8 = 10;

/// What `latency` asks netem for.
pub const NETEM_ARGS: &str = "delay 50ms 40ms";
/// The token bucket used where the kernel has no netem.
pub const TBF_ARGS: &str = "rate 1mbit burst 16kb latency 200ms";

/// The shell command installing the delay on `iface` (replacing any root qdisc): netem, else
/// the token bucket. Prints `netem` or `tbf`.
pub fn install_command(iface: &str) -> String {
    format!(
        "if tc qdisc replace dev {iface} root netem {NETEM_ARGS} 2>/dev/null; then echo netem; \
         else tc qdisc replace dev {iface} root tbf {TBF_ARGS} && echo tbf; fi"
    )
}

/// What [`install_command`]'s output says was installed, for the history.
pub fn describe(output: &str) -> String {
    match output.trim() {
        "netem" => format!("netem {NETEM_ARGS} on every node"),
        "tbf" => format!("tbf {TBF_ARGS} on every node (the kernel has no netem)"),
        other => format!("unknown discipline: {other:?}"),
    }
}

/// The shell command removing the root qdisc from `iface` (succeeds when none is there).
pub fn clear_command(iface: &str) -> String {
    format!("tc qdisc del dev {iface} root 2>/dev/null || true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_descriptions() {
        let install = install_command("eth0");
        assert!(install.contains("tc qdisc replace dev eth0 root netem delay 50ms 40ms"));
        assert!(install.contains("tc qdisc replace dev eth0 root tbf rate 1mbit"));
        assert!(describe("netem\n").starts_with("netem delay 50ms 40ms"));
        assert!(describe("tbf").contains("no netem"));
        assert!(clear_command("eth0").starts_with("tc qdisc del dev eth0 root"));
    }
}
