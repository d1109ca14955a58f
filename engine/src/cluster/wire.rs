//! What crosses between a game and a node: one ractor message ([`HostMsg`]: an encoded [`Call`] and a reply
//! port), the calls a node's host serves and their [`Reply`], and the MessagePack encoding of the role protocol's
//! requests and answers ([`Part`]). Payloads larger than a chunk (`cluster.chunk_kb`) travel as transfers of bounded chunks
//! ([`Body::Transfer`]), each acknowledged, up to a size limit.

use crate::roles::{Role, RoleError};
use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of this protocol: a game and a node must agree on it.
pub const PROTOCOL: u32 = 1;

/// The largest chunk a node sends in one frame (ractor_cluster refuses frames over 16 MiB).
pub const MAX_CHUNK: usize = 8 << 20;

/// The process group every node's host joins: a game finds a node's host among its members.
pub const HOST_GROUP: &str = "sparring.node";

/// MessagePack with field names (self-describing: optional and defaulted fields round-trip).
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| format!("encoding a message: {e}"))
}

/// The inverse of [`encode`]; `what` names the message in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("decoding {what}: {e}"))
}

/// Serde for a saved state (`Arc<Vec<u8>>`) as a binary string: one copy in MessagePack, an array of numbers in
/// JSON as before.
pub mod shared_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Vec<u8>>, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Arc::new(b.into_vec()))
    }
}

/// One request of the role protocol on the wire: its name (`generate`, `learn`, …) and its encoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Part {
    pub fn of<T: Serialize>(name: &str, request: &T) -> Result<Self, String> {
        Ok(Part {
            name: name.to_string(),
            body: encode(request)?,
        })
    }
}

/// A payload: inline, or a transfer the receiver already holds in full (pushed in chunks with [`Call::Put`]) or
/// fetches in chunks ([`Call::Fetch`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body {
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    Transfer { id: u64, len: u64 },
}

/// How a node builds a role: what the game's scenario says, and where its relative paths point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleSpec {
    pub role: Role,
    pub kind: String,
    /// The role's table (without `kind` and `node`), as TOML text.
    pub params: String,
    /// The game's scenario directory: relative paths of the table resolve against it on the node (unless the
    /// node was started with `--root`).
    pub scenario_dir: PathBuf,
    pub seed: u64,
    pub learns: bool,
    /// [`crate::registry::BuildContext::self_play`].
    #[serde(default)]
    pub self_play: bool,
    /// [`crate::registry::BuildContext::turns`].
    #[serde(default = "one")]
    pub turns: u32,
}

fn one() -> u32 {
    1
}

/// A call to a node's host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Call {
    /// Who are you? (answered [`Reply::Hello`])
    Hello { protocol: u32 },
    /// Build `spec` for `game` (replacing any incarnation it had there), restored to `restore` when it is not
    /// empty. Answered when built.
    Open {
        game: String,
        /// Which incarnation of the role this is (a later one replaces it; a stale close leaves it).
        incarnation: u64,
        /// The game process's node name: its roles are released when its session closes.
        origin: String,
        spec: RoleSpec,
        restore: Body,
    },
    /// Serve these parts (an encoded `Vec<Part>`) on `game`'s `role`, in order; answered with the encoded
    /// answers (`Vec<serde_bytes::ByteBuf>`).
    Serve {
        game: String,
        role: Role,
        incarnation: u64,
        parts: Body,
        /// Answers larger than this many bytes come back as a download.
        chunk: u64,
        /// The largest answer the game accepts (larger ones fail the request on the node).
        limit: u64,
    },
    /// One chunk of `game`'s upload `transfer` of `total` bytes.
    Put {
        game: String,
        transfer: u64,
        offset: u64,
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// At most `max` bytes of `game`'s download `transfer` from `offset` (the download is released after its
    /// last chunk, or with the game).
    Fetch {
        game: String,
        transfer: u64,
        offset: u64,
        max: u64,
    },
    /// Release incarnation `incarnation` of `game`'s `role`, or (`None`) all of the game's roles.
    Close {
        game: String,
        role: Option<(Role, u64)>,
    },
    /// A heartbeat.
    Ping,
}

/// A host's answer to a [`Call`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Hello {
        name: String,
        protocol: u32,
    },
    Done(Body),
    Ack,
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The call failed; a role error keeps its kind (a configuration error stays one).
    Failed(RoleError),
}

/// The message a node's host actor receives: an encoded [`Call`] with its reply port, or (locally) news that a
/// game process's session closed.
pub enum HostMsg {
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    PeerGone(String),
}

impl ractor::Message for HostMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            HostMsg::Call(args, reply) => Ok(SerializedMessage::Call {
                variant: "call".into(),
                args,
                reply,
                metadata: None,
            }),
            // Local only (the node's own session watcher).
            HostMsg::PeerGone(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(m: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match m {
            SerializedMessage::Call { args, reply, .. } => Ok(HostMsg::Call(args, reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}
