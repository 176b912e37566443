//! The `latency` and `packet-loss` nemeses: `tc netem` on every node's network interface.
//!
//! They need nodes with network interfaces of their own (`raft-lab run --hosts netns`, or a
//! remote cluster): on a local loopback cluster a qdisc on `lo` would slow every process of
//! the machine, so [`crate::cluster::LocalCluster`] refuses them. Egress only: a node's
//! replies to clients are delayed too, as on a slow network.
//!
//! - `latency`: 50 ms ± 40 ms per packet (uniform jitter): packets overtake each other, so
//!   this also reorders datagrams (QUIC still delivers each stream in order).
//! - `packet-loss`: 10 % of packets dropped, independently.

use super::NemesisKind;
use std::fmt::Write as _;
use std::time::Duration;

/// A `tc netem` discipline.
#[derive(Clone, Debug, PartialEq)]
pub struct Netem {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss_percent: f64,
}

impl Netem {
    /// The discipline of a netem nemesis kind; `None` for the others.
    pub fn of(kind: NemesisKind) -> Option<Netem> {
        match kind {
            NemesisKind::Latency => Some(Netem {
                delay: Duration::from_millis(50),
                jitter: Duration::from_millis(40),
                loss_percent: 0.0,
            }),
            NemesisKind::PacketLoss => Some(Netem {
                delay: Duration::ZERO,
                jitter: Duration::ZERO,
                loss_percent: 10.0,
            }),
            _ => None,
        }
    }

    /// The netem arguments, e.g. `delay 50ms 40ms` or `loss 10%`.
    pub fn args(&self) -> String {
        let mut args = String::new();
        if !self.delay.is_zero() {
            let _ = write!(args, "delay {}ms", self.delay.as_millis());
            if !self.jitter.is_zero() {
                let _ = write!(args, " {}ms", self.jitter.as_millis());
            }
        }
        if self.loss_percent > 0.0 {
            if !args.is_empty() {
                args.push(' ');
            }
            let _ = write!(args, "loss {}%", self.loss_percent);
        }
        args
    }

    /// The shell command installing this discipline on `iface` (replacing any other).
    pub fn install_command(&self, iface: &str) -> String {
        format!("tc qdisc replace dev {iface} root netem {}", self.args())
    }
}

/// The shell command removing the netem discipline from `iface` (succeeds when none is there).
pub fn clear_command(iface: &str) -> String {
    format!("tc qdisc del dev {iface} root 2>/dev/null || true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let latency = Netem::of(NemesisKind::Latency).unwrap();
        assert_eq!(
            latency.install_command("eth0"),
            "tc qdisc replace dev eth0 root netem delay 50ms 40ms"
        );
        let loss = Netem::of(NemesisKind::PacketLoss).unwrap();
        assert_eq!(loss.args(), "loss 10%");
        assert_eq!(Netem::of(NemesisKind::Kill), None);
        assert!(clear_command("eth0").starts_with("tc qdisc del dev eth0 root"));
    }
}
