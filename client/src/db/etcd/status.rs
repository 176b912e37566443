//! etcd's status API as the lab reads it: `POST /v3/maintenance/status` on a member's client
//! URL (the JSON gateway etcd serves beside gRPC), over HTTPS with the lab's client
//! certificate. Enough to learn a member's id and whom it believes to be the leader, without
//! a gRPC stack.

use super::error::EtcdError;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// TLS settings for the status calls: the cluster CA and the lab's client certificate.
#[derive(Clone, Debug)]
pub struct StatusClient {
    config: Arc<rustls::ClientConfig>,
}

/// One member's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's own id (etcd's, not the lab's).
    pub member_id: u64,
    /// The leader's member id; 0 when the member knows no leader.
    pub leader: u64,
    /// The member's Raft term.
    pub term: u64,
}

impl StatusClient {
    /// Trusts `certs/ca.pem` and presents `certs/client.pem`.
    pub fn new(certs: &Path) -> Result<StatusClient, EtcdError> {
        let tls_err = |reason: String| EtcdError::ClientTls {
            dir: certs.to_path_buf(),
            reason,
        };
        let roots = node::certs::load_roots(certs).map_err(|e| tls_err(e.to_string()))?;
        let identity =
            node::certs::load_client_identity(certs).map_err(|e| tls_err(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|e| tls_err(e.to_string()))?;
        Ok(StatusClient {
            config: Arc::new(config),
        })
    }

    /// Asks the member at `addr` for its status (blocking, at most about `timeout`).
    pub fn status(&self, addr: SocketAddr, timeout: Duration) -> Result<MemberStatus, String> {
        let body = self.post(addr, "/v3/maintenance/status", "{}", timeout)?;
        parse_status(&body)
    }

    /// One HTTP/1.1 POST with `Connection: close`; returns the body of a 200 answer.
    pub(super) fn post(
        &self,
        addr: SocketAddr,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let server = ServerName::IpAddress(addr.ip().into());
        let tls = rustls::ClientConnection::new(self.config.clone(), server)
            .map_err(|e| format!("TLS: {e}"))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(timeout))
            .and_then(|()| tcp.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            // Servers may close without a TLS close_notify: what came is the answer.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(e.to_string()),
        }
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "an HTTP answer without a body".to_string())?;
        let status_line = head.lines().next().unwrap_or_default();
        if !status_line.contains(" 200 ") {
            return Err(format!("{status_line}: {}", body.trim()));
        }
        if head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"))
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    }
}

/// The body of a chunked HTTP answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// etcd's JSON gateway writes 64-bit integers as strings.
pub(super) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A status answer: `header.member_id` and `leader` (absent when zero).
fn parse_status(body: &str) -> Result<MemberStatus, String> {
    let json: Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {}", body.trim()))?;
    let member_id = json
        .get("header")
        .and_then(|h| h.get("member_id"))
        .and_then(as_u64)
        .ok_or_else(|| format!("no header.member_id in {}", body.trim()))?;
    let leader = json.get("leader").and_then(as_u64).unwrap_or(0);
    let term = json.get("raftTerm").and_then(as_u64).unwrap_or(0);
    Ok(MemberStatus {
        member_id,
        leader,
        term,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_answer_of_the_json_gateway() {
        let body = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"10276657743932975437","raftIndex":"8","raftTerm":"2"}"#;
        assert_eq!(
            parse_status(body),
            Ok(MemberStatus {
                member_id: 10276657743932975437,
                leader: 10276657743932975437,
                term: 2
            })
        );
        let no_leader = r#"{"header":{"member_id":"7"}}"#;
        assert_eq!(
            parse_status(no_leader),
            Ok(MemberStatus {
                member_id: 7,
                leader: 0,
                term: 0
            })
        );
        assert!(parse_status("<html>").is_err());
    }

    #[test]
    fn a_chunked_body() {
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
