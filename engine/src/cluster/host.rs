//! The node's side of a cluster (`sparring node`): a ractor_cluster `NodeServer` that authenticates games with
//! the cookie, and a host actor that opens role incarnations for them, each on its own OS thread (built from the
//! role's scenario table with this process's registry), serves their requests, holds chunked transfers, and
//! releases a game's roles when the game closes them or its session ends.

use super::wire::{self, Body, Call, HOST_GROUP, HostMsg, MAX_CHUNK, Part, Reply, RoleSpec};
use crate::actor::protocol::{Implementation, serve_part};
use crate::actor::{WorkerSpec, caught};
use crate::registry::{BuildContext, Registry};
use crate::roles::{Role, RoleError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How to run a node.
pub struct NodeOptions {
    /// Where to listen (port 0: one the system picks).
    pub listen: SocketAddr,
    pub name: String,
    /// The cluster's cookie (from the environment: never logged).
    pub cookie: String,
    /// The kinds this node can build.
    pub registry: Registry,
    /// Resolve the roles' relative paths against this directory instead of the game's scenario directory.
    pub root: Option<PathBuf>,
    /// The largest transfer accepted or sent, in bytes.
    pub max_transfer: u64,
}

/// A running node.
pub struct Node {
    /// The address it listens on.
    pub addr: SocketAddr,
    server: ActorRef<NodeServerMessage>,
    host: ActorRef<HostMsg>,
}

impl Node {
    /// Start listening and hosting.
    pub async fn start(opts: NodeOptions) -> Result<Node, String> {
        let mut addr = opts.listen;
        if addr.port() == 0 {
            // ractor_cluster does not tell which port it bound: pick a free one first.
            let probe = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            addr = probe
                .local_addr()
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        } else {
            // Fail here with the address, not inside the node server.
            drop(
                std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
            );
        }
        let (host, _) = Actor::spawn(
            None,
            Host,
            HostArgs {
                name: opts.name.clone(),
                registry: opts.registry,
                root: opts.root,
                max_transfer: opts.max_transfer,
            },
        )
        .await
        .map_err(|e| format!("starting the node's host: {e}"))?;
        ractor::pg::join(HOST_GROUP.to_string(), vec![host.get_cell()]);
        let server = NodeServer::new(
            addr.port(),
            opts.cookie,
            opts.name,
            addr.ip().to_string(),
            None,
            None,
        )
        .with_listen_addr(addr.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "sparring-host".into(),
                subscription: Box::new(PeerWatch(host.clone())),
            })
            .map_err(|e| format!("starting the node: {e}"))?;
        Ok(Node { addr, server, host })
    }

    /// Stop listening and release every role.
    pub fn stop(&self) {
        self.server.stop(None);
        self.host.stop(None);
    }
}

/// Tells the host when a game process's session ends: its roles are released.
struct PeerWatch(ActorRef<HostMsg>);

impl NodeEventSubscription for PeerWatch {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        // ractor_cluster names a peer `NAME@HOST`; a game gives its roles' origin as NAME.
        if let Some(peer) = ses.peer_name {
            let name = peer.name.split('@').next().unwrap_or_default().to_string();
            let _ = self.0.cast(HostMsg::PeerGone(name));
        }
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        tracing::info!(peer = %ses.peer_addr, "a game connected");
    }
}

struct Host;

struct HostArgs {
    name: String,
    registry: Registry,
    root: Option<PathBuf>,
    max_transfer: u64,
}

/// A role incarnation open for a game: its thread's channel.
struct Opened {
    incarnation: u64,
    origin: String,
    jobs: crossbeam_channel::Sender<Job>,
}

/// Encoded parts to serve on a role's thread, and how its answer goes back.
struct Job {
    parts: Vec<u8>,
    /// Answers over this many bytes are held as a download.
    chunk: usize,
    /// Answers over this many bytes fail (the game's limit and the node's).
    limit: u64,
    port: RpcReplyPort<Vec<u8>>,
}

/// Answers too large for one frame, held per game until fetched (or released with the game).
#[derive(Default)]
struct Downloads {
    next: AtomicU64,
    held: Mutex<HashMap<(String, u64), Vec<u8>>>,
}

impl Downloads {
    /// `bytes` as `game`'s body: inline (up to `chunk` bytes), or held for fetching.
    fn body(&self, game: &str, bytes: Vec<u8>, chunk: usize) -> Body {
        if bytes.len() <= chunk {
            return Body::Inline(bytes);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let len = bytes.len() as u64;
        crate::actor::lock(&self.held).insert((game.to_string(), id), bytes);
        Body::Transfer { id, len }
    }

    /// Drop the downloads of the games `gone` says yes to.
    fn release(&self, gone: impl Fn(&str) -> bool) {
        crate::actor::lock(&self.held).retain(|(g, _), _| !gone(g));
    }
}

struct HostState {
    args: HostArgs,
    roles: HashMap<(String, Role), Opened>,
    uploads: HashMap<(String, u64), Vec<u8>>,
    downloads: Arc<Downloads>,
}

fn reply(port: RpcReplyPort<Vec<u8>>, r: Reply) {
    match wire::encode(&r) {
        Ok(b) => {
            let _ = port.send(b);
        }
        Err(e) => tracing::error!(%e, "cannot encode a reply"),
    }
}

fn failed(port: RpcReplyPort<Vec<u8>>, e: impl Into<String>) {
    reply(port, Reply::Failed(RoleError::Failed(e.into())));
}

impl HostState {
    /// The bytes of a body the game sent (an upload it finished).
    fn take_body(&mut self, game: &str, body: Body) -> Result<Vec<u8>, String> {
        match body {
            Body::Inline(b) => Ok(b),
            Body::Transfer { id, len } => match self.uploads.remove(&(game.to_string(), id)) {
                Some(b) if b.len() as u64 == len => Ok(b),
                Some(b) => Err(format!("upload {id}: {} of {len} bytes arrived", b.len())),
                None => Err(format!("no upload {id} of this game")),
            },
        }
    }

    /// Release the role incarnations `keep` says no to (their threads end when their channels drop).
    fn release(&mut self, keep: impl Fn(&str, Role, &Opened) -> bool) {
        self.roles.retain(|(game, role), o| keep(game, *role, o));
    }

    fn handle_call(&mut self, call: Call, port: RpcReplyPort<Vec<u8>>) {
        match call {
            Call::Hello { .. } => reply(
                port,
                Reply::Hello {
                    name: self.args.name.clone(),
                    protocol: wire::PROTOCOL,
                },
            ),
            Call::Ping => reply(port, Reply::Ack),
            Call::Put {
                game,
                transfer,
                offset,
                total,
                bytes,
            } => {
                if total > self.args.max_transfer {
                    return failed(
                        port,
                        format!(
                            "an upload of {total} bytes is over this node's limit of {} bytes",
                            self.args.max_transfer
                        ),
                    );
                }
                let buf = self.uploads.entry((game, transfer)).or_default();
                if buf.len() as u64 != offset || offset + bytes.len() as u64 > total {
                    return failed(
                        port,
                        format!(
                            "upload {transfer}: chunk at {offset} does not follow byte {}",
                            buf.len()
                        ),
                    );
                }
                buf.extend_from_slice(&bytes);
                reply(port, Reply::Ack);
            }
            Call::Fetch {
                game,
                transfer,
                offset,
                max,
            } => {
                let key = (game, transfer);
                let mut held = crate::actor::lock(&self.downloads.held);
                let Some(b) = held.get(&key) else {
                    drop(held);
                    return failed(port, format!("no download {transfer}"));
                };
                let start = (offset as usize).min(b.len());
                let max = usize::try_from(max)
                    .unwrap_or(MAX_CHUNK)
                    .clamp(1, MAX_CHUNK);
                let end = start.saturating_add(max).min(b.len());
                let chunk = b[start..end].to_vec();
                if end == b.len() {
                    held.remove(&key);
                }
                drop(held);
                reply(port, Reply::Chunk(chunk));
            }
            Call::Close { game, role } => {
                match role {
                    Some((role, inc)) => {
                        self.release(|g, r, o| !(g == game && r == role && o.incarnation == inc))
                    }
                    None => self.release(|g, _, _| g != game),
                }
                if role.is_none() {
                    self.downloads.release(|g| g == game);
                }
                self.uploads.retain(|(g, _), _| *g != game);
                reply(port, Reply::Ack);
            }
            Call::Open {
                game,
                incarnation,
                origin,
                spec,
                restore,
            } => {
                let restore = match self.take_body(&game, restore) {
                    Ok(r) => r,
                    Err(e) => return failed(port, e),
                };
                let (tx, rx) = crossbeam_channel::unbounded();
                let role = spec.role;
                let name = self.args.name.clone();
                let build = self.worker_spec(spec);
                let downloads = Arc::clone(&self.downloads);
                let at = (name, game.clone());
                let started = std::thread::Builder::new()
                    .name(format!("sparring-{role}"))
                    .spawn(move || role_thread(at, role, build, restore, port, rx, &downloads));
                if let Err(e) = started {
                    tracing::error!(%e, "cannot start a role thread");
                    return;
                }
                // A new incarnation replaces the old one (whose thread ends when its channel drops).
                self.roles.insert(
                    (game, role),
                    Opened {
                        incarnation,
                        origin,
                        jobs: tx,
                    },
                );
            }
            Call::Serve {
                game,
                role,
                incarnation,
                parts,
                chunk,
                limit,
            } => {
                let parts = match self.take_body(&game, parts) {
                    Ok(p) => p,
                    Err(e) => return failed(port, e),
                };
                match self.roles.get(&(game, role)) {
                    Some(o) if o.incarnation == incarnation => {
                        let chunk = usize::try_from(chunk)
                            .unwrap_or(MAX_CHUNK)
                            .clamp(1, MAX_CHUNK);
                        let limit = limit.min(self.args.max_transfer);
                        let job = Job {
                            parts,
                            chunk,
                            limit,
                            port,
                        };
                        if let Err(e) = o.jobs.send(job) {
                            failed(
                                e.into_inner().port,
                                format!(
                                    "the {role} failed on an earlier request; it must be opened again"
                                ),
                            );
                        }
                    }
                    _ => failed(
                        port,
                        format!(
                            "this node has no open {role} incarnation {incarnation} of the game"
                        ),
                    ),
                }
            }
        }
    }

    fn worker_spec(&self, spec: RoleSpec) -> Result<WorkerSpec, RoleError> {
        let params: toml::Table = toml::from_str(&spec.params)
            .map_err(|e| RoleError::failed(format!("the {} table: {e}", spec.role)))?;
        let ctx = BuildContext {
            scenario_dir: self.args.root.clone().unwrap_or(spec.scenario_dir),
            seed: spec.seed,
            role: spec.role,
            run_dir: None,
            learns: spec.learns,
            node: None,
            self_play: spec.self_play,
            turns: spec.turns,
        };
        let registry = self.args.registry.clone();
        Ok(if spec.role == Role::Judge {
            WorkerSpec::Judge {
                registry,
                kind: spec.kind,
                params,
                ctx,
            }
        } else {
            WorkerSpec::Policy {
                registry,
                kind: spec.kind,
                params,
                ctx,
            }
        })
    }
}

/// A role incarnation's thread: build (answering the open), then serve its requests in order until its channel
/// closes or a request fails (the implementation may be half-updated: the game opens a new incarnation).
fn role_thread(
    (node, game): (String, String),
    role: Role,
    build: Result<WorkerSpec, RoleError>,
    restore: Vec<u8>,
    opened: RpcReplyPort<Vec<u8>>,
    jobs: crossbeam_channel::Receiver<Job>,
    downloads: &Downloads,
) {
    let on_node = |e: RoleError| RoleError::Failed(format!("on node `{node}`: {e}"));
    let built = build.and_then(|spec| caught(|| spec.build(&restore)));
    let mut imp = match built {
        Ok(imp) => {
            reply(opened, Reply::Done(Body::Inline(Vec::new())));
            imp
        }
        Err(e) => {
            tracing::warn!(%role, error = %e, "building a role failed");
            return reply(opened, Reply::Failed(on_node(e)));
        }
    };
    drop(restore);
    for Job {
        parts,
        chunk,
        limit,
        port,
    } in jobs.iter()
    {
        match serve(&parts, &mut imp) {
            // Refused here, not held for a game that would not fetch it.
            Ok(answers) if answers.len() as u64 > limit => failed(
                port,
                format!(
                    "on node `{node}`: an answer of {} bytes is over the limit of {limit} bytes \
                     (cluster.max_transfer_mb, or the node's --max-transfer-mb)",
                    answers.len()
                ),
            ),
            Ok(answers) => reply(port, Reply::Done(downloads.body(&game, answers, chunk))),
            Err(e) => {
                tracing::warn!(%role, error = %e, "a request failed; the role ends");
                return reply(port, Reply::Failed(on_node(e)));
            }
        }
    }
}

/// Serve encoded parts in order; the encoded answers.
fn serve(bytes: &[u8], imp: &mut Implementation) -> Result<Vec<u8>, RoleError> {
    let parts: Vec<Part> = wire::decode(bytes, "a request's parts").map_err(RoleError::Failed)?;
    let mut answers = Vec::with_capacity(parts.len());
    for part in &parts {
        let a = caught(|| serve_part(part, imp))?;
        answers.push(serde_bytes::ByteBuf::from(a));
    }
    wire::encode(&answers).map_err(RoleError::Failed)
}

impl Actor for Host {
    type Msg = HostMsg;
    type State = HostState;
    type Arguments = HostArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<HostMsg>,
        args: HostArgs,
    ) -> Result<HostState, ActorProcessingErr> {
        Ok(HostState {
            args,
            roles: HashMap::new(),
            uploads: HashMap::new(),
            downloads: Arc::default(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<HostMsg>,
        msg: HostMsg,
        st: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostMsg::Call(bytes, port) => match wire::decode::<Call>(&bytes, "a call") {
                Ok(call) => st.handle_call(call, port),
                // A peer that is not this build of sparring: answer, do not fail the host.
                Err(e) => failed(port, e),
            },
            HostMsg::PeerGone(origin) => {
                let prefix = format!("{origin}/");
                st.release(|_, _, o| o.origin != origin);
                st.uploads.retain(|(g, _), _| !g.starts_with(&prefix));
                st.downloads.release(|g| g.starts_with(&prefix));
                tracing::info!(%origin, "a game's session closed; its roles are released");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
