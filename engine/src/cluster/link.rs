//! The game's side of a cluster: one client node per process (ractor_cluster's `NodeServer`, on loopback), a
//! link to each node it connected to (shared by the process's games, watched by a heartbeat), and
//! [`RemoteRole`], which a role's thread holds in place of an implementation when the role runs on a node.

use super::wire::{self, Body, Call, HOST_GROUP, HostMsg, MAX_CHUNK, Part, Reply, RoleSpec};
use crate::actor::Request;
use crate::roles::{Role, RoleError};
use crate::scenario::{ClusterCfg, NodeCfg, NodeLoss};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// What the client node's sessions tell: (event, node id, peer address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Opened,
    Ready,
    Closed,
}

struct Events(broadcast::Sender<(Event, u64, String)>);

impl Events {
    fn send(&self, e: Event, ses: &NodeServerSessionInformation) {
        let _ = self.0.send((e, ses.node_id, ses.peer_addr.clone()));
    }
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        self.send(Event::Opened, &ses);
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.send(Event::Closed, &ses);
    }
    fn node_session_authenticated(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.send(Event::Ready, &ses);
    }
}

/// This process's client node: one per process (ractor's registries are process-wide), so one cookie.
struct Client {
    server: ActorRef<NodeServerMessage>,
    name: String,
    cookie: String,
    events: broadcast::Sender<(Event, u64, String)>,
    /// Live links by address, shared by the process's games.
    links: tokio::sync::Mutex<BTreeMap<String, Arc<NodeLink>>>,
}

static CLIENT: tokio::sync::OnceCell<Client> = tokio::sync::OnceCell::const_new();

/// The process's cluster thread: a current-thread runtime that the client node, its sessions and the links'
/// heartbeats run on. One thread for all of a round trip's hops on this side (the session's reader, writer and
/// actors) instead of a multi-thread runtime's hand-offs between workers: 15–20 % off the loopback round trip
/// (benches/README, "Session 15").
fn cluster_rt() -> Result<&'static tokio::runtime::Handle, String> {
    static RT: std::sync::OnceLock<Result<tokio::runtime::Handle, String>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sparring-cluster".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("starting the cluster thread's runtime: {e}")));
                    }
                }
            })
            .map_err(|e| format!("starting the cluster thread: {e}"))?;
        rx.recv()
            .map_err(|_| "the cluster thread stopped as it started".to_string())?
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Run `fut` on the cluster thread (where what it spawns lives on) and wait for it.
async fn on_cluster_rt<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, ConnectError>> + Send + 'static,
) -> Result<T, ConnectError> {
    cluster_rt()?
        .spawn(fut)
        .await
        .map_err(|e| ConnectError::from(format!("the cluster thread: {e}")))?
}

async fn client(cookie: &str) -> Result<&'static Client, String> {
    let c = CLIENT
        .get_or_try_init(|| async {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!("sparring-game-{}-{nanos:08x}", std::process::id());
            // A client still runs a listener: on loopback, on a port the system picks.
            let server = NodeServer::new(
                0,
                cookie.to_string(),
                name.clone(),
                "localhost".into(),
                None,
                None,
            )
            .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
            let (server, _) = ractor::Actor::spawn(None, server, ())
                .await
                .map_err(|e| format!("starting this process's cluster client: {e}"))?;
            let (events, _) = broadcast::channel(256);
            server
                .cast(NodeServerMessage::SubscribeToEvents {
                    id: "sparring".into(),
                    subscription: Box::new(Events(events.clone())),
                })
                .map_err(|e| format!("starting this process's cluster client: {e}"))?;
            Ok::<_, String>(Client {
                server,
                name,
                cookie: cookie.to_string(),
                events,
                links: Default::default(),
            })
        })
        .await?;
    if c.cookie != cookie {
        return Err(
            "this process already joined a cluster with another cookie (one cookie per process)"
                .into(),
        );
    }
    Ok(c)
}

/// A connection to one node: its host actor, and whether it is lost (why, once it is).
pub struct NodeLink {
    name: String,
    addr: String,
    host: ActorRef<HostMsg>,
    lost: watch::Sender<Option<String>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for NodeLink {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl NodeLink {
    fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    fn lose(&self, why: String) {
        self.lost.send_if_modified(|l| {
            if l.is_none() {
                tracing::warn!(node = %self.name, addr = %self.addr, %why, "node lost");
                *l = Some(why);
                true
            } else {
                false
            }
        });
    }
}

fn timeout_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Why a connection failed: the node is not there (`unreachable`: a lost node), or it is there and refused
/// (a wrong cookie or name: an error in the setup, whatever `on_node_loss` says).
#[derive(Debug)]
struct ConnectError {
    unreachable: bool,
    message: String,
}

impl From<String> for ConnectError {
    fn from(message: String) -> Self {
        ConnectError {
            unreachable: false,
            message,
        }
    }
}

fn unreachable(message: String) -> ConnectError {
    ConnectError {
        unreachable: true,
        message,
    }
}

/// Connect to `node` (or reuse this process's live link to it): the session authenticates with the cookie, the
/// node's host answers `Hello` with the name the scenario gives it, and a heartbeat starts.
async fn connect(
    cfg: &ClusterCfg,
    cookie: &str,
    node: &NodeCfg,
) -> Result<Arc<NodeLink>, ConnectError> {
    let client = client(cookie).await?;
    let mut links = client.links.lock().await;
    if let Some(l) = links.get(&node.addr)
        && l.lost().is_none()
    {
        return Ok(Arc::clone(l));
    }
    let at = format!("node `{}` at {}", node.name, node.addr);
    let addrs: Vec<String> = tokio::net::lookup_host(&node.addr)
        .await
        .map_err(|e| unreachable(format!("{at}: cannot resolve the address: {e}")))?
        .map(|a| a.to_string())
        .collect();
    let mut events = client.events.subscribe();
    // The deadline covers the TCP connect too: a host that drops packets is lost after the timeout, not after the
    // system's (minutes).
    let deadline = tokio::time::Instant::now() + timeout_ms(cfg.connect_timeout_ms);
    match tokio::time::timeout_at(
        deadline,
        ractor_cluster::client_connect(&client.server, node.addr.as_str()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unreachable(format!("{at}: cannot connect: {e}"))),
        Err(_) => {
            return Err(unreachable(format!(
                "{at}: no TCP connection within cluster.connect_timeout_ms = {} ms",
                cfg.connect_timeout_ms
            )));
        }
    }
    let mut node_id = None;
    let ready = loop {
        let ev = tokio::time::timeout_at(deadline, events.recv()).await;
        let (e, id, peer) = match ev {
            Err(_) => break false,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => break false,
            Ok(Ok(ev)) => ev,
        };
        match e {
            Event::Opened if addrs.contains(&peer) => node_id = Some(id),
            Event::Ready if Some(id) == node_id => break true,
            Event::Closed if Some(id) == node_id => {
                return Err(ConnectError::from(format!(
                    "{at} closed the connection before it was ready: is `{}` the node's cookie, and is it a \
                     `sparring node`?",
                    cfg.cookie_env
                )));
            }
            _ => {}
        }
    };
    let Some(node_id) = node_id.filter(|_| ready) else {
        return Err(unreachable(format!(
            "{at}: no authenticated session within cluster.connect_timeout_ms = {} ms",
            cfg.connect_timeout_ms
        )));
    };
    // The node's host joins the hosts' group; its membership arrives with the session's state.
    let host = loop {
        let found = ractor::pg::get_members(&HOST_GROUP.to_string())
            .into_iter()
            .find(|c| !c.get_id().is_local() && c.get_id().node() == node_id);
        if let Some(c) = found {
            break ActorRef::<HostMsg>::from(c);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("{at}: the session opened, but no sparring host answers there").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    match rpc(
        &host,
        &Call::Hello {
            protocol: wire::PROTOCOL,
        },
        Some(cfg.connect_timeout_ms),
    )
    .await
    {
        Ok(Reply::Hello { name, protocol }) => {
            if protocol != wire::PROTOCOL {
                return Err(format!(
                    "{at} speaks cluster protocol {protocol}, this build {}: run the same sparring on both",
                    wire::PROTOCOL
                )
                .into());
            }
            if name != node.name {
                return Err(format!(
                    "{at} calls itself `{name}`: fix `cluster.nodes` or the node's --name"
                )
                .into());
            }
        }
        Ok(other) => return Err(format!("{at}: unexpected answer to hello: {other:?}").into()),
        Err(e) => return Err(unreachable(format!("{at}: {e}"))),
    }
    let (lost, _) = watch::channel(None);
    let link = Arc::new_cyclic(|me: &std::sync::Weak<NodeLink>| {
        let me = me.clone();
        let beat = host.clone();
        let (every, timeout) = (cfg.heartbeat_ms, cfg.heartbeat_timeout_ms);
        let mut events = client.events.subscribe();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(timeout_ms(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let why = tokio::select! {
                    _ = tick.tick() => match rpc(&beat, &Call::Ping, Some(timeout)).await {
                        Ok(_) => continue,
                        Err(e) => format!("no heartbeat answer within {timeout} ms ({e})"),
                    },
                    ev = events.recv() => match ev {
                        Ok((Event::Closed, id, _)) if id == node_id => "its session closed".to_string(),
                        Err(broadcast::error::RecvError::Closed) => "the cluster client stopped".into(),
                        _ => continue,
                    },
                };
                if let Some(l) = me.upgrade() {
                    l.lose(why);
                }
                return;
            }
        });
        NodeLink {
            name: node.name.clone(),
            addr: node.addr.clone(),
            host,
            lost,
            heartbeat,
        }
    });
    links.insert(node.addr.clone(), Arc::clone(&link));
    Ok(link)
}

/// One call to a host and its decoded reply (a `Failed` reply is the error). `timeout` in milliseconds.
async fn rpc(
    host: &ActorRef<HostMsg>,
    call: &Call,
    timeout: Option<u64>,
) -> Result<Reply, RoleError> {
    let bytes = wire::encode(call).map_err(RoleError::Failed)?;
    let r = host
        .call(|port| HostMsg::Call(bytes, port), timeout.map(timeout_ms))
        .await
        .map_err(|e| RoleError::failed(format!("sending to the node: {e}")))?;
    match r {
        CallResult::Success(b) => {
            match wire::decode::<Reply>(&b, "a node's reply").map_err(RoleError::Failed)? {
                Reply::Failed(e) => Err(e),
                r => Ok(r),
            }
        }
        CallResult::Timeout => Err(RoleError::failed("the node did not answer in time")),
        CallResult::SenderError => Err(RoleError::failed("the node dropped the call")),
    }
}

/// A game's cluster: the scenario's nodes, the links it uses, and what to do when one is lost.
pub struct Cluster {
    cfg: ClusterCfg,
    cookie: String,
    /// This game's id on the nodes (`<process's node name>/<n>`).
    game: String,
    origin: String,
    rt: tokio::runtime::Handle,
    links: Mutex<BTreeMap<String, Arc<NodeLink>>>,
    next_transfer: AtomicU64,
    incarnations: AtomicU64,
}

static GAMES: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// A game's cluster, authenticating with the cookie from `cfg.cookie_env`; it connects to a node when a role
    /// is first placed there ([`Self::place`]).
    pub async fn open(cfg: &ClusterCfg) -> Result<Arc<Cluster>, String> {
        let cookie = std::env::var(&cfg.cookie_env)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!(
                    "cluster.cookie_env: the environment variable `{}` is not set",
                    cfg.cookie_env
                )
            })?;
        let c = cookie.clone();
        let origin = on_cluster_rt(async move { Ok(client(&c).await?.name.clone()) })
            .await
            .map_err(|e| e.message)?;
        Ok(Arc::new(Cluster {
            cfg: cfg.clone(),
            cookie,
            game: format!("{origin}/{}", GAMES.fetch_add(1, Ordering::Relaxed)),
            origin,
            rt: tokio::runtime::Handle::current(),
            links: Default::default(),
            next_transfer: AtomicU64::new(1),
            incarnations: AtomicU64::new(1),
        }))
    }

    /// Where a role the scenario puts on `name` starts: there, when it answers; else where
    /// `cluster.on_node_loss` says (another node: `Some`, this process: `None`), as for a node lost later.
    pub async fn place(&self, name: &str) -> Result<Option<String>, String> {
        match self.link(name).await {
            Ok(_) => Ok(Some(name.to_string())),
            Err(e) if e.unreachable => {
                tracing::warn!(node = name, error = %e.message, "node unreachable as the game starts");
                self.replace(name, &e.message).await
            }
            Err(e) => Err(e.message),
        }
    }

    fn node(&self, name: &str) -> Result<&NodeCfg, String> {
        self.cfg
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| format!("no node `{name}` in cluster.nodes"))
    }

    /// The live link to `name`, connecting (again) if needed.
    async fn link(&self, name: &str) -> Result<Arc<NodeLink>, ConnectError> {
        if let Some(l) = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            && l.lost().is_none()
        {
            return Ok(Arc::clone(l));
        }
        let (cfg, cookie, node) = (
            self.cfg.clone(),
            self.cookie.clone(),
            self.node(name)?.clone(),
        );
        let l = on_cluster_rt(async move { connect(&cfg, &cookie, &node).await }).await?;
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::clone(&l));
        Ok(l)
    }

    /// Is `name` lost? A role on it just failed: a node that does not answer a heartbeat now (within
    /// `heartbeat_timeout_ms`) is lost, whether or not its link had noticed yet.
    pub async fn check_lost(&self, name: &str) -> bool {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let Some(link) = link else { return true };
        if link.lost().is_some() {
            return true;
        }
        match rpc(&link.host, &Call::Ping, Some(self.cfg.heartbeat_timeout_ms)).await {
            Ok(_) => link.lost().is_some(),
            Err(e) => {
                link.lose(format!(
                    "no answer to a heartbeat after a role failed there ({e})"
                ));
                true
            }
        }
    }

    /// One heartbeat to `name` and back, connecting first if needed: the cluster's own round trip to the node's
    /// host (ractor_cluster's session both ways, no role, queue or role thread). The cluster bench's floor.
    pub async fn ping(&self, name: &str) -> Result<(), String> {
        let link = self.link(name).await.map_err(|e| e.message)?;
        rpc(&link.host, &Call::Ping, Some(self.cfg.heartbeat_timeout_ms))
            .await
            .map(drop)
            .map_err(|e| format!("node `{name}`: {e}"))
    }

    /// Why `name` is lost, as its link says.
    pub fn lost_reason(&self, name: &str) -> String {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(|l| l.lost())
            .unwrap_or_else(|| "not connected".into())
    }

    /// Where a role of lost node `name` restarts, per `cluster.on_node_loss`: another node (`Some`), this
    /// process (`None`), or nowhere (the error).
    pub async fn replace(&self, name: &str, why: &str) -> Result<Option<String>, String> {
        match self.cfg.on_node_loss {
            NodeLoss::Local => Ok(None),
            NodeLoss::Fail => Err(format!(
                "node `{name}` was lost ({why}; cluster.on_node_loss = \"fail\")"
            )),
            NodeLoss::Other => {
                let nodes = &self.cfg.nodes;
                let at = nodes.iter().position(|n| n.name == name).unwrap_or(0);
                let mut tried = Vec::new();
                for i in 1..=nodes.len() {
                    let n = &nodes[(at + i) % nodes.len()];
                    match self.link(&n.name).await {
                        Ok(_) => return Ok(Some(n.name.clone())),
                        Err(e) => tried.push(e.message),
                    }
                }
                Err(format!(
                    "node `{name}` was lost ({why}) and no other listed node answers (cluster.on_node_loss = \"other\"): {}",
                    tried.join("; ")
                ))
            }
        }
    }

    /// Send `bytes` to `link`: inline when small, else as an upload in acknowledged chunks.
    async fn send_body(&self, link: &NodeLink, bytes: Vec<u8>) -> Result<Body, RoleError> {
        self.within_limit(bytes.len() as u64)?;
        let chunk = self.chunk();
        if bytes.len() <= chunk {
            return Ok(Body::Inline(bytes));
        }
        let id = self.next_transfer.fetch_add(1, Ordering::Relaxed);
        let total = bytes.len() as u64;
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            let put = Call::Put {
                game: self.game.clone(),
                transfer: id,
                offset: (i * chunk) as u64,
                total,
                bytes: piece.to_vec(),
            };
            self.call(link, &put).await?;
        }
        Ok(Body::Transfer { id, len: total })
    }

    /// The bytes of a body `link` answered with (fetching a download chunk by chunk).
    async fn recv_body(&self, link: &NodeLink, body: Body) -> Result<Vec<u8>, RoleError> {
        match body {
            Body::Inline(b) => Ok(b),
            Body::Transfer { id, len } => {
                self.within_limit(len)?;
                let mut out = Vec::with_capacity(len as usize);
                while (out.len() as u64) < len {
                    let fetch = Call::Fetch {
                        game: self.game.clone(),
                        transfer: id,
                        offset: out.len() as u64,
                        max: self.chunk() as u64,
                    };
                    match self.call(link, &fetch).await? {
                        Reply::Chunk(c) if !c.is_empty() => out.extend_from_slice(&c),
                        other => {
                            return Err(RoleError::failed(format!(
                                "download {id}: unexpected answer at byte {}: {other:?}",
                                out.len()
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The chunk size, in bytes (`cluster.chunk_kb`).
    fn chunk(&self) -> usize {
        usize::try_from(self.cfg.chunk_kb.saturating_mul(1024))
            .unwrap_or(MAX_CHUNK)
            .clamp(1, MAX_CHUNK)
    }

    fn within_limit(&self, len: u64) -> Result<(), RoleError> {
        let limit = self.cfg.max_transfer_mb.saturating_mul(1 << 20);
        if len > limit {
            return Err(RoleError::failed(format!(
                "a payload of {len} bytes is over cluster.max_transfer_mb = {} MiB",
                self.cfg.max_transfer_mb
            )));
        }
        Ok(())
    }

    /// One call on `link`, which fails as soon as the node is lost (a learn may take minutes: no timeout).
    async fn call(&self, link: &NodeLink, call: &Call) -> Result<Reply, RoleError> {
        let mut lost = link.lost.subscribe();
        let at =
            |why: &str| RoleError::failed(format!("node `{}` ({}): {why}", link.name, link.addr));
        if let Some(why) = lost.borrow().clone() {
            return Err(at(&format!("lost: {why}")));
        }
        tokio::select! {
            r = rpc(&link.host, call, None) => r.map_err(|e| match e {
                RoleError::Failed(m) => at(&m),
                e => e,
            }),
            _ = lost.wait_for(Option::is_some) => {
                Err(at(&format!("lost: {}", link.lost().unwrap_or_default())))
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for l in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            if let Ok(b) = wire::encode(&Call::Close {
                game: self.game.clone(),
                role: None,
            }) {
                // A cast: the host answers into a port nobody reads.
                let (tx, _rx) = tokio::sync::oneshot::channel();
                let _ = l.host.cast(HostMsg::Call(b, tx.into()));
            }
        }
    }
}

/// A role running on a node: what its thread in the game holds in place of the implementation. Each request
/// goes over as its parts; the node serves them in order on the role's own thread there.
pub struct RemoteRole {
    cluster: Arc<Cluster>,
    link: Arc<NodeLink>,
    role: Role,
    incarnation: u64,
}

impl RemoteRole {
    /// Build `spec` on node `node`, restored to `restore` (when not empty). Blocks the calling (role) thread.
    pub fn open(
        cluster: &Arc<Cluster>,
        node: &str,
        spec: RoleSpec,
        restore: &[u8],
    ) -> Result<RemoteRole, RoleError> {
        let c = Arc::clone(cluster);
        let role = spec.role;
        let incarnation = cluster.incarnations.fetch_add(1, Ordering::Relaxed);
        cluster.rt.block_on(async move {
            let link = c
                .link(node)
                .await
                .map_err(|e| RoleError::Failed(e.message))?;
            let restore = c.send_body(&link, restore.to_vec()).await?;
            let open = Call::Open {
                game: c.game.clone(),
                incarnation,
                origin: c.origin.clone(),
                spec,
                restore,
            };
            c.call(&link, &open).await?;
            Ok(RemoteRole {
                cluster: Arc::clone(&c),
                link,
                role,
                incarnation,
            })
        })
    }

    /// Run `request` on the node. Blocks the calling (role) thread.
    pub fn call<R: Request>(&mut self, request: &R) -> Result<R::Answer, RoleError> {
        let mut parts: Vec<Part> = Vec::new();
        request.encode(&mut parts).map_err(RoleError::Failed)?;
        let c = &self.cluster;
        let link = &self.link;
        let answers = c.rt.block_on(async {
            let bytes = wire::encode(&parts).map_err(RoleError::Failed)?;
            let body = c.send_body(link, bytes).await?;
            let serve = Call::Serve {
                game: c.game.clone(),
                role: self.role,
                incarnation: self.incarnation,
                parts: body,
                chunk: c.chunk() as u64,
                limit: c.cfg.max_transfer_mb.saturating_mul(1 << 20),
            };
            match c.call(link, &serve).await? {
                Reply::Done(body) => c.recv_body(link, body).await,
                other => Err(RoleError::failed(format!(
                    "unexpected answer to `{}`: {other:?}",
                    R::NAME
                ))),
            }
        })?;
        let answers: Vec<serde_bytes::ByteBuf> =
            wire::decode(&answers, &format!("the answers to `{}`", R::NAME))
                .map_err(RoleError::Failed)?;
        let mut it = answers.into_iter().map(serde_bytes::ByteBuf::into_vec);
        request.decode(&mut it).map_err(RoleError::Failed)
    }

    /// The node this role runs on.
    pub fn node(&self) -> &str {
        &self.link.name
    }
}

impl Drop for RemoteRole {
    fn drop(&mut self) {
        // The node releases this incarnation (a restarted one opens anew).
        if let Ok(b) = wire::encode(&Call::Close {
            game: self.cluster.game.clone(),
            role: Some((self.role, self.incarnation)),
        }) {
            let (tx, _rx) = tokio::sync::oneshot::channel();
            let _ = self.link.host.cast(HostMsg::Call(b, tx.into()));
        }
    }
}
