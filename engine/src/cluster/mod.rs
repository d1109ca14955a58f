//! Roles on other nodes, over ractor_cluster. A node (`sparring node`) hosts role incarnations for the games
//! that connect to it ([`host`]); a game places a role on a node with its table's `node` key, and the role's
//! thread in the game forwards each request there ([`link::RemoteRole`]): the same typed requests, encoded
//! ([`wire`]). The game's supervisor restarts a role whose node is lost per `cluster.on_node_loss`, from the
//! role's restore point, and re-sends its queue, so a run over nodes records what a run in one process does.
//!
//! - [`wire`]: the messages and their encoding, chunked transfers.
//! - [`host`]: the node's side.
//! - [`link`]: the game's side: connections, heartbeats, where a role restarts.

pub mod host;
pub mod link;
pub mod wire;

pub use host::{Node, NodeOptions};
pub use link::{Cluster, RemoteRole};

use std::sync::Arc;

/// Where a role runs when it is not in the game's process: the game's cluster and the node's name.
#[derive(Clone)]
pub struct Placement {
    pub cluster: Arc<Cluster>,
    pub node: String,
}
