//! `[tls] revoked` entries: certificates named by the SHA-256 of their DER or by their
//! serial number, as `raft-node certs --fingerprint` prints them. Parsed with
//! `cluster.toml`, matched by the transport at every handshake and request.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// One entry of `[tls] revoked`: a certificate by the SHA-256 of its DER
/// (`sha256:<64 hex digits>`, colons allowed, as `raft-node certs --fingerprint` prints it)
/// or by serial number (`serial:<hex>`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Revocation {
    Sha256([u8; 32]),
    Serial(Vec<u8>),
}

impl Revocation {
    /// Whether this entry names the certificate with this DER digest and serial number.
    pub fn matches(&self, sha256: &[u8; 32], serial: &[u8]) -> bool {
        match self {
            Revocation::Sha256(sum) => sum == sha256,
            Revocation::Serial(named) => named == serial,
        }
    }
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revocation::Sha256(sum) => write!(f, "sha256:{}", hex(sum)),
            Revocation::Serial(serial) => write!(f, "serial:{}", hex(serial)),
        }
    }
}

impl FromStr for Revocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("revoked entry {s:?}: {why}");
        let (kind, digits) = s
            .split_once(':')
            .ok_or_else(|| bad("expected sha256:<hex> or serial:<hex>"))?;
        let bytes = unhex(digits).ok_or_else(|| bad("not hexadecimal"))?;
        match kind {
            "sha256" => bytes
                .try_into()
                .map(Revocation::Sha256)
                .map_err(|_| bad("a SHA-256 fingerprint has 64 hex digits")),
            "serial" if !strip_zeros(&bytes).is_empty() => {
                Ok(Revocation::Serial(strip_zeros(&bytes)))
            }
            "serial" => Err(bad("empty serial number")),
            _ => Err(bad("expected sha256:<hex> or serial:<hex>")),
        }
    }
}

impl TryFrom<String> for Revocation {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Lower-case hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits, colons ignored; `None` if anything else or an odd count.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|&b| b != b':')
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    Some(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

pub fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}
