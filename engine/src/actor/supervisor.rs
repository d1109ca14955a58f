//! The `Game` supervisor (a ractor actor) and the handle the game loop talks to. The supervisor spawns one
//! linked worker per role, restarts a failed one in `handle_supervisor_evt` from the role's restore point and
//! re-sends the role's queue to it, so a round completes as if nothing happened; a role that fails
//! `max_restarts` times on one request gives up, and its requests fail with a message that says why.
//! Supervision is data: [`SlotSpec`] (how to build a role, its restore point, its injected faults) and
//! `max_restarts`.

use super::Slot;
use super::protocol::Request;
use super::queue::{Envelope, Queues, Sent, Ticket};
use super::worker::{Busy, BusyBoard, FaultPlan, Worker, WorkerArgs, WorkerMsg, WorkerSpec};
use crate::cluster::Placement;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages to the `Game` supervisor (requests go through the roles' queues: see [`GameHandle::submit`]).
pub enum GameMsg {
    /// Number of restarts so far per slot.
    Restarts(RpcReplyPort<BTreeMap<String, u64>>),
}

impl ractor::Message for GameMsg {}

/// Everything the supervisor needs to (re)build one worker.
#[derive(Clone)]
pub struct SlotSpec {
    pub spec: WorkerSpec,
    /// The node the role runs on (`None`: this process).
    pub node: Option<Placement>,
    /// Restore point: state from the last committed round (empty = fresh).
    pub restore: Arc<Vec<u8>>,
    pub faults: FaultPlan,
}

impl SlotSpec {
    /// A worker built fresh (no restore point) with no injected faults.
    pub fn fresh(spec: WorkerSpec) -> Self {
        SlotSpec {
            spec,
            node: None,
            restore: Default::default(),
            faults: FaultPlan::default(),
        }
    }
}

/// Arguments of the supervisor.
pub struct GameArgs {
    pub slots: BTreeMap<Slot, SlotSpec>,
    pub max_restarts: u32,
}

struct SlotState {
    spec: WorkerSpec,
    node: Option<Placement>,
    faults: FaultPlan,
    actor: Option<ActorRef<WorkerMsg>>,
    restarts: u64,
}

/// State of the supervisor.
pub struct GameState {
    slots: BTreeMap<Slot, SlotState>,
    max_restarts: u32,
    /// Incarnations of compute threads started so far (all slots).
    incarnations: u64,
    queues: Arc<Queues>,
    board: Arc<BusyBoard>,
}

impl GameState {
    /// A new incarnation of `slot`'s worker: its arguments and the sending end of its thread's channel.
    fn worker_args(
        &mut self,
        slot: Slot,
    ) -> Result<(WorkerArgs, crossbeam_channel::Sender<Sent>), String> {
        let (Some(s), Some(restore)) = (
            self.slots.get(&slot),
            self.queues.get(slot).map(|q| Arc::clone(&q.restore)),
        ) else {
            return Err(format!("no {} actor", slot.as_str()));
        };
        self.incarnations += 1;
        let (tx, rx) = crossbeam_channel::unbounded();
        let args = WorkerArgs {
            slot,
            spec: s.spec.clone(),
            node: s.node.clone(),
            restore,
            faults: s.faults.clone(),
            jobs: rx,
            incarnation: self.incarnations,
            queues: Arc::clone(&self.queues),
            board: Arc::clone(&self.board),
        };
        Ok((args, tx))
    }

    /// If `slot`'s role runs on a node that is lost, move it per `cluster.on_node_loss` (another node, or this
    /// process) and say so; an error when the role cannot move.
    async fn move_off_lost_node(&mut self, slot: Slot) -> Result<bool, String> {
        let Some(p) = self.slots.get(&slot).and_then(|s| s.node.clone()) else {
            return Ok(false);
        };
        if !p.cluster.check_lost(&p.node).await {
            return Ok(false);
        }
        let to = p
            .cluster
            .replace(&p.node, &p.cluster.lost_reason(&p.node))
            .await?;
        tracing::warn!(
            slot = slot.as_str(),
            from = %p.node,
            to = to.as_deref().unwrap_or("this process"),
            "node lost; moving its role"
        );
        if let Some(s) = self.slots.get_mut(&slot) {
            s.node = to.map(|node| Placement {
                cluster: Arc::clone(&p.cluster),
                node,
            });
        }
        Ok(true)
    }

    /// `slot`'s worker started: its queue goes to the worker's thread.
    fn started(
        &mut self,
        slot: Slot,
        incarnation: u64,
        tx: crossbeam_channel::Sender<Sent>,
        actor: ActorRef<WorkerMsg>,
    ) {
        self.queues.open(slot, incarnation, tx);
        if let Some(s) = self.slots.get_mut(&slot) {
            s.actor = Some(actor);
        }
    }

    /// The slot whose worker is `cell`, if any.
    fn slot_of(&self, cell: &ractor::ActorCell) -> Option<Slot> {
        self.slots.iter().find_map(|(slot, s)| {
            s.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
                .then_some(*slot)
        })
    }
}

/// The supervisor actor.
pub struct Game;

/// Why an actor did not start: a failed start-up's own error (it names the role and its cause), else ractor's.
fn spawn_error(e: ractor::SpawnErr) -> String {
    match e {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl Actor for Game {
    type Msg = GameMsg;
    type State = GameState;
    type Arguments = (GameArgs, Arc<Queues>, Arc<BusyBoard>);

    async fn pre_start(
        &self,
        me: ActorRef<GameMsg>,
        (args, queues, board): (GameArgs, Arc<Queues>, Arc<BusyBoard>),
    ) -> Result<GameState, ActorProcessingErr> {
        let mut st = GameState {
            slots: BTreeMap::new(),
            max_restarts: args.max_restarts,
            incarnations: 0,
            queues,
            board,
        };
        for (slot, spec) in args.slots {
            let s = SlotState {
                spec: spec.spec,
                node: spec.node,
                faults: spec.faults,
                actor: None,
                restarts: 0,
            };
            st.slots.insert(slot, s);
        }
        // The workers start together: each builds its model on its own thread (two policies build in the time
        // of one on two cores), and the game starts when all are ready.
        let mut starting = tokio::task::JoinSet::new();
        let slots: Vec<Slot> = st.slots.keys().copied().collect();
        for slot in slots {
            let (args, tx) = st.worker_args(slot)?;
            let incarnation = args.incarnation;
            let cell = me.get_cell();
            starting.spawn(async move {
                let r = Actor::spawn_linked(None, Worker, args, cell).await;
                let actor = r.map(|(r, _)| r).map_err(spawn_error);
                (slot, incarnation, tx, actor)
            });
        }
        let mut failed = BTreeMap::new();
        while let Some(joined) = starting.join_next().await {
            let (slot, incarnation, tx, actor) =
                joined.map_err(|e| format!("starting a worker: {e}"))?;
            match actor {
                Ok(actor) => st.started(slot, incarnation, tx, actor),
                Err(e) => {
                    failed.insert(slot, e);
                }
            }
        }
        // A role whose node was lost while it started moves (per `cluster.on_node_loss`) and starts again; any
        // other failure fails the game (the first in slot order is the one reported, as when they started one
        // by one).
        while let Some((slot, e)) = failed.pop_first() {
            if !st.move_off_lost_node(slot).await? {
                return Err(e.into());
            }
            let (args, tx) = st.worker_args(slot)?;
            let incarnation = args.incarnation;
            match Actor::spawn_linked(None, Worker, args, me.get_cell()).await {
                Ok((actor, _)) => st.started(slot, incarnation, tx, actor),
                Err(e) => {
                    failed.insert(slot, spawn_error(e));
                }
            }
        }
        Ok(st)
    }

    async fn handle(
        &self,
        _me: ActorRef<GameMsg>,
        msg: GameMsg,
        st: &mut GameState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GameMsg::Restarts(reply) => {
                let m = st
                    .slots
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.restarts))
                    .collect();
                let _ = reply.send(m);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<GameMsg>,
        evt: SupervisionEvent,
        st: &mut GameState,
    ) -> Result<(), ActorProcessingErr> {
        let (slot, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => match st.slot_of(&cell) {
                Some(slot) => (slot, err.to_string()),
                None => return Ok(()),
            },
            // Workers only terminate when the game stops them; anything else is a failure.
            SupervisionEvent::ActorTerminated(cell, _, reason) => match st.slot_of(&cell) {
                Some(slot) if reason.as_deref() != Some("game over") => {
                    (slot, format!("terminated: {}", reason.unwrap_or_default()))
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        tracing::warn!(slot = slot.as_str(), %reason, "actor failed; restarting it from its last committed state");
        if let Some(s) = st.slots.get_mut(&slot) {
            s.restarts += 1;
            s.actor = None;
        }
        // A role whose node is lost restarts elsewhere (per `cluster.on_node_loss`); its request did not fail,
        // so the restart does not count against it.
        let lost = match st.move_off_lost_node(slot).await {
            Ok(lost) => lost,
            Err(e) => {
                st.queues.close(slot, e.clone(), &e);
                return Ok(());
            }
        };
        // The oldest outstanding request is the one that failed; the ones queued behind it are re-sent with it,
        // or fail with it when it has used up its restarts.
        let max_restarts = (!lost).then_some(st.max_restarts);
        st.queues.worker_failed(slot, &reason, max_restarts);
        let respawned = match st.worker_args(slot) {
            Ok((args, tx)) => {
                let incarnation = args.incarnation;
                Actor::spawn_linked(None, Worker, args, me.get_cell())
                    .await
                    .map(|(actor, _)| (actor, incarnation, tx))
                    .map_err(spawn_error)
            }
            Err(e) => Err(e),
        };
        match respawned {
            Ok((actor, incarnation, tx)) => st.started(slot, incarnation, tx, actor),
            Err(e) => {
                let e = format!("restarting the {} failed: {e}", slot.as_str());
                st.queues.close(slot, e.clone(), &e);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<GameMsg>,
        st: &mut GameState,
    ) -> Result<(), ActorProcessingErr> {
        for (slot, s) in &st.slots {
            if let Some(a) = &s.actor {
                a.stop(Some("game over".into()));
            }
            // Dropping the channel ends the compute thread (which drops its implementation); requests still
            // queued are answered with an error, not left hanging.
            st.queues.close(
                *slot,
                "the game is over".into(),
                &format!("the game stopped before the {} answered", slot.as_str()),
            );
        }
        Ok(())
    }
}

/// A handle to a running `Game` supervisor: where the game loop sends its requests.
#[derive(Clone)]
pub struct GameHandle {
    pub actor: ActorRef<GameMsg>,
    /// What the role threads are computing now.
    pub board: Arc<BusyBoard>,
    queues: Arc<Queues>,
    next_id: Arc<AtomicU64>,
}

impl GameHandle {
    /// Spawn the supervisor and its workers (builds every implementation; errors name the role).
    pub async fn start(
        args: GameArgs,
    ) -> Result<(GameHandle, tokio::task::JoinHandle<()>), String> {
        let board = Arc::new(BusyBoard::new());
        let restore = args
            .slots
            .iter()
            .map(|(slot, spec)| (*slot, Arc::clone(&spec.restore)));
        let queues = Arc::new(Queues::new(restore));
        let (actor, join) =
            Actor::spawn(None, Game, (args, Arc::clone(&queues), Arc::clone(&board)))
                .await
                .map_err(spawn_error)?;
        let handle = GameHandle {
            actor,
            board,
            queues,
            next_id: Arc::new(AtomicU64::new(0)),
        };
        Ok((handle, join))
    }

    /// Send `request` to `slot` now and take the answer later. A role answers its requests in the order they
    /// were sent, so a request can wait in its queue behind the one being computed. It stays in the role's
    /// queue until answered, so a restarted worker gets it again.
    pub fn submit<R: Request>(&self, slot: Slot, request: R) -> Result<Ticket<R::Answer>, String> {
        let (job, ticket) = Envelope::new(request);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.queues.push(slot, id, job)?;
        Ok(ticket)
    }

    /// Run `request` on `slot` (restarting the worker as needed).
    pub async fn call<R: Request>(&self, slot: Slot, request: R) -> Result<R::Answer, String> {
        self.call_timed(slot, request).await.map(|(out, _)| out)
    }

    /// [`Self::call`], with the interval the compute thread worked on it (its last, successful attempt).
    pub async fn call_timed<R: Request>(
        &self,
        slot: Slot,
        request: R,
    ) -> Result<(R::Answer, Busy), String> {
        self.submit(slot, request)?.answer().await
    }

    /// Restarts so far, per slot.
    pub async fn restarts(&self) -> BTreeMap<String, u64> {
        ractor::call!(self.actor, GameMsg::Restarts).unwrap_or_default()
    }

    /// Stop the supervisor and its workers.
    pub fn stop(&self) {
        self.actor.stop(Some("game over".into()));
    }
}
