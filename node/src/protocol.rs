//! What travels on the wire: peer frames between nodes, and client requests and responses.
//!
//! These are the only definitions of the wire types; the lab's client uses them from here.
//! Every frame is postcard-encoded and framed by [`crate::transport::framing`].

use model::core::{MembershipChange, Message, NodeId};
use model::kv::{Command, Outcome};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the types below; a frame of another version is
/// refused with a logged reason.
pub const PROTOCOL_VERSION: u8 = 3;
/// TLS ALPN of node-to-node connections.
pub const ALPN_PEER: &[u8] = b"raftlab-peer/1";
/// TLS ALPN of client connections.
pub const ALPN_CLIENT: &[u8] = b"raftlab-client/1";

/// Node to node, on a long-lived unidirectional stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// First frame of a stream: the id the sender claims. The receiver checks that the
    /// sender's certificate names this id.
    Hello { from: NodeId },
    /// A batch of Raft messages, all from the sender.
    Messages(Vec<Message<Command>>),
    /// A piece of one Raft message too large for a frame (an InstallSnapshot carrying the
    /// whole state machine): the postcard encoding of the message, cut into consecutive
    /// chunks sent back to back, each announcing the total so that the receiver can refuse
    /// an oversized message at its first chunk. No other frame comes between the chunks of
    /// one message.
    Chunk { total: u64, data: Vec<u8> },
}

/// The postcard variant index of [`PeerFrame::Messages`].
const MESSAGES_VARIANT: u32 = 1;

/// How many messages a peer frame's payload announces, if it is a `Messages` frame, read
/// before anything is decoded: postcard writes the variant index, then the vector's length,
/// both as varints. Lets a receiver refuse an oversized batch before decoding it, since
/// decoded messages take many times their wire size.
pub fn announced_messages(payload: &[u8]) -> Option<u64> {
    let (variant, rest) = postcard::take_from_bytes::<u32>(payload).ok()?;
    if variant != MESSAGES_VARIANT {
        return None;
    }
    postcard::take_from_bytes::<u64>(rest).ok().map(|(n, _)| n)
}

/// Client to node, one request per bidirectional stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A KV operation; `command` carries the session id and sequence number that make a
    /// retry exactly-once (a registration carries the namespace of the session to open).
    /// The node refuses a session id outside the namespace of the caller's certificate, and
    /// a value above `[sessions] max_value_bytes` (answered `Done(TooLarge)`).
    Op(Command),
    Status,
    /// An operator's single-server membership change, sent to the leader; answered
    /// `Committed` once the change is committed.
    ChangeMembership(MembershipChange),
    /// An operator's request that the leader hand leadership to this voter; answered
    /// `Transferring` once the hand-over has started (the new leader then shows in status).
    TransferLeadership(NodeId),
}

/// Node to client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The operation took effect (or the read was served) with this outcome.
    Done(Outcome),
    /// This node is not the leader; nothing was done. The leader, if known.
    NotLeader {
        leader: Option<NodeId>,
        addr: Option<String>,
    },
    /// Refused before anything was proposed: certainly no effect.
    Refused(String),
    /// The outcome is unknown (timed out, or leadership changed after proposing): the
    /// operation may or may not take effect. The lab records `info`.
    Unknown(String),
    Status(NodeStatus),
    /// The membership change is committed at this log index.
    Committed {
        index: u64,
    },
    /// The leader has started handing leadership over.
    Transferring,
}

/// What `status` reports about a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// The membership in this node's log (the last change, committed or not).
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The other members.
    pub peers: Vec<PeerStatus>,
    /// Catalogue bugs switched on (normally empty).
    pub bugs: Vec<String>,
    /// When the node's certificate (as loaded last) expires, in seconds since the Unix
    /// epoch, so that `raft-lab cluster status` can warn ahead of time.
    pub cert_not_after: Option<i64>,
}

/// A node's view of one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: NodeId,
    /// Where this node reaches it (from the log for members that joined through it).
    pub addr: String,
    pub connected: bool,
    /// Leader only: the highest index known replicated on that peer.
    pub match_index: Option<u64>,
    /// Messages dropped because the peer's queue was full or it was unreachable.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::core::Body;

    #[test]
    fn the_announced_count_is_the_batch_length_and_only_messages_announce_one() {
        let msg = Message {
            from: 1,
            to: 2,
            term: 3,
            body: Body::TimeoutNow,
        };
        for n in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes =
                postcard::to_allocvec(&PeerFrame::Messages(vec![msg.clone(); n])).expect("encodes");
            assert_eq!(announced_messages(&bytes), Some(n as u64), "{n}");
        }
        let hello = postcard::to_allocvec(&PeerFrame::Hello { from: 300 }).expect("encodes");
        assert_eq!(announced_messages(&hello), None);
        let chunk = PeerFrame::Chunk {
            total: 5,
            data: vec![1; 5],
        };
        let chunk = postcard::to_allocvec(&chunk).expect("encodes");
        assert_eq!(announced_messages(&chunk), None);
        assert_eq!(announced_messages(&[]), None);
    }
}
