//! etcd's member API as the lab calls it: `POST /v3/cluster/member/{list,add,remove,promote}`
//! and `POST /v3/maintenance/transfer-leadership` (MoveLeader) on a member's client URL,
//! through the same JSON gateway and client certificate as the status calls
//! ([`StatusClient`]).

use super::status::{as_u64, StatusClient};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// A member as etcd lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    /// etcd's member id (not the lab's).
    pub id: u64,
    /// Empty until an added member has started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub learner: bool,
}

impl StatusClient {
    /// The members, as the member at `addr` knows them.
    pub fn member_list(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Vec<EtcdMember>, String> {
        let body = self.post(addr, "/v3/cluster/member/list", "{}", timeout)?;
        parse_members(&json_of(&body)?)
    }

    /// Adds a member (a learner if `learner`) that will listen to its peers on `peer_url`;
    /// returns its etcd id and the membership with it.
    pub fn member_add(
        &self,
        addr: SocketAddr,
        peer_url: &str,
        learner: bool,
        timeout: Duration,
    ) -> Result<(u64, Vec<EtcdMember>), String> {
        let request = json!({ "peerURLs": [peer_url], "isLearner": learner }).to_string();
        let body = self.post(addr, "/v3/cluster/member/add", &request, timeout)?;
        let json = json_of(&body)?;
        let id = json
            .get("member")
            .and_then(|m| m.get("ID"))
            .and_then(as_u64)
            .ok_or_else(|| format!("no member.ID in {}", body.trim()))?;
        Ok((id, parse_members(&json)?))
    }

    /// Removes member `id` (etcd's id).
    pub fn member_remove(
        &self,
        addr: SocketAddr,
        id: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        self.on_member(addr, "remove", id, timeout)
    }

    /// Makes learner `id` a voter (refused until it has caught up with the leader).
    pub fn member_promote(
        &self,
        addr: SocketAddr,
        id: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        self.on_member(addr, "promote", id, timeout)
    }

    /// Asks the leader at `addr` to hand its leadership to member `target` (etcd's id);
    /// etcd answers once `target` has taken over.
    pub fn move_leader(
        &self,
        addr: SocketAddr,
        target: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let request = json!({ "targetID": target.to_string() }).to_string();
        self.post(
            addr,
            "/v3/maintenance/transfer-leadership",
            &request,
            timeout,
        )
        .map(drop)
    }

    /// `POST /v3/cluster/member/{action}` of member `id`.
    fn on_member(
        &self,
        addr: SocketAddr,
        action: &str,
        id: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let request = json!({ "ID": id.to_string() }).to_string();
        let path = format!("/v3/cluster/member/{action}");
        self.post(addr, &path, &request, timeout).map(drop)
    }
}

fn json_of(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {}", body.trim()))
}

/// The `members` of a list, add or remove answer.
fn parse_members(json: &Value) -> Result<Vec<EtcdMember>, String> {
    let Some(members) = json.get("members").and_then(Value::as_array) else {
        return Err(format!("no members in {json}"));
    };
    members
        .iter()
        .map(|m| {
            let id = m
                .get("ID")
                .and_then(as_u64)
                .ok_or_else(|| format!("a member without an ID: {m}"))?;
            let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_string);
            let peer_urls = m
                .get("peerURLs")
                .and_then(Value::as_array)
                .map(|urls| {
                    urls.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Ok(EtcdMember {
                id,
                name: text("name").unwrap_or_default(),
                peer_urls,
                learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_list_of_the_json_gateway() {
        let body = r#"{"header":{"member_id":"1"},"members":[{"ID":"5270357254458914843","name":"node-1","peerURLs":["https://127.0.0.11:2380"],"clientURLs":["https://127.0.0.11:2379"]},{"ID":"42","peerURLs":["https://127.0.0.12:2380"],"isLearner":true}]}"#;
        let members = parse_members(&json_of(body).unwrap()).unwrap();
        assert_eq!(
            members,
            vec![
                EtcdMember {
                    id: 5270357254458914843,
                    name: "node-1".into(),
                    peer_urls: vec!["https://127.0.0.11:2380".into()],
                    learner: false,
                },
                EtcdMember {
                    id: 42,
                    name: String::new(),
                    peer_urls: vec!["https://127.0.0.12:2380".into()],
                    learner: true,
                },
            ]
        );
        assert!(parse_members(&json!({"header": {}})).is_err());
        assert!(parse_members(&json!({"members": [{"name": "x"}]})).is_err());
    }
}
