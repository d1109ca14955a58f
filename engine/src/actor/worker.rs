//! A role's worker: a ractor actor that stands for the role in the supervision tree, and the OS thread it owns,
//! which builds the role's implementation (or opens it on the role's node) and serves the requests of the role's
//! queue, oldest first. A panic
//! (caught on the thread) or an error fails the actor, so that the supervisor restarts it; the thread, whose
//! implementation may be half-updated, ends. Also the fault injection of scenario files (`[faults]`) and the
//! busy intervals the game's meters read.

use super::protocol::Implementation;
use super::queue::{Queues, Sent};
use super::{Slot, caught};
use crate::cluster::wire::RoleSpec;
use crate::cluster::{Placement, RemoteRole};
use crate::registry::{BuildContext, Registry};
use crate::replay::ReplayLog;
use crate::roles::RoleError;
use crate::scenario::RoleFault;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::oneshot;

/// How to build a worker's implementation (on its own thread).
#[derive(Clone)]
pub enum WorkerSpec {
    Policy {
        registry: Registry,
        kind: String,
        params: toml::Table,
        ctx: BuildContext,
    },
    Judge {
        registry: Registry,
        kind: String,
        params: toml::Table,
        ctx: BuildContext,
    },
    Replay {
        run_dir: PathBuf,
        fsync: bool,
    },
}

impl WorkerSpec {
    /// How a node builds this role (`None` for the replay log, which stays with the game).
    fn remote(&self) -> Option<RoleSpec> {
        let (WorkerSpec::Policy {
            kind, params, ctx, ..
        }
        | WorkerSpec::Judge {
            kind, params, ctx, ..
        }) = self
        else {
            return None;
        };
        Some(RoleSpec {
            role: ctx.role,
            kind: kind.clone(),
            params: toml::to_string(params).ok()?,
            scenario_dir: ctx.scenario_dir.clone(),
            seed: ctx.seed,
            learns: ctx.learns,
            self_play: ctx.self_play,
            turns: ctx.turns,
        })
    }

    /// Build the implementation here, or open it on `node`, restored to `restore` (when not empty).
    fn place(&self, node: Option<&Placement>, restore: &[u8]) -> Result<Implementation, RoleError> {
        match node {
            None => self.build(restore),
            Some(p) => {
                let spec = self
                    .remote()
                    .ok_or_else(|| RoleError::failed("this role cannot run on a node"))?;
                RemoteRole::open(&p.cluster, &p.node, spec, restore).map(Implementation::Remote)
            }
        }
    }

    /// Build the implementation and restore it to `restore` (when not empty).
    pub(crate) fn build(&self, restore: &[u8]) -> Result<Implementation, RoleError> {
        Ok(match self {
            WorkerSpec::Policy {
                registry,
                kind,
                params,
                ctx,
            } => {
                let mut p = registry.build_policy(kind, params, ctx)?;
                if !restore.is_empty() {
                    p.load(restore)?;
                }
                Implementation::Policy(p)
            }
            WorkerSpec::Judge {
                registry,
                kind,
                params,
                ctx,
            } => {
                let mut j = registry.build_judge(kind, params, ctx)?;
                if !restore.is_empty() {
                    j.load(restore)?;
                }
                Implementation::Judge(j)
            }
            WorkerSpec::Replay { run_dir, fsync } => {
                Implementation::Replay(ReplayLog::open(run_dir, *fsync)?)
            }
        })
    }
}

/// When a compute thread worked on one request (measured on the thread, around the implementation's call).
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub start: Instant,
    pub end: Instant,
}

/// Fault injection shared by all incarnations of a worker: the request counter survives restarts.
#[derive(Clone, Default)]
pub struct FaultPlan {
    pub fault: RoleFault,
    pub counter: Arc<AtomicU64>,
}

/// When each role's compute thread started the request it is working on now, so that the game loop can count
/// compute that crosses a round boundary (a request queued behind another) in the round where it happens.
#[derive(Debug)]
pub struct BusyBoard {
    epoch: Instant,
    /// Per slot: nanoseconds since `epoch` + 1 at the current request's start; 0 when idle.
    since: [AtomicU64; 4],
}

impl BusyBoard {
    pub(crate) fn new() -> Self {
        BusyBoard {
            epoch: Instant::now(),
            since: Default::default(),
        }
    }

    fn start(&self, slot: Slot, at: Instant) {
        let ns = at.saturating_duration_since(self.epoch).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX - 1);
        self.since[slot.index()].store(ns + 1, Ordering::Release);
    }

    fn stop(&self, slot: Slot) {
        self.since[slot.index()].store(0, Ordering::Release);
    }

    /// The start of the request `slot`'s thread is computing now, if any.
    pub fn running(&self, slot: Slot) -> Option<Instant> {
        match self.since[slot.index()].load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + std::time::Duration::from_nanos(ns - 1)),
        }
    }
}

/// Message to a worker actor: its compute thread failed (the actor fails with it, and is restarted).
pub enum WorkerMsg {
    Fail(String),
}

impl ractor::Message for WorkerMsg {}

/// A worker actor: owns a compute thread (which takes requests from its role's queue and answers the callers
/// directly) and stands for it in the supervision tree.
pub struct Worker;

/// Arguments of a worker.
pub struct WorkerArgs {
    pub(crate) slot: Slot,
    pub(crate) spec: WorkerSpec,
    /// The node the role runs on (`None`: this process).
    pub(crate) node: Option<Placement>,
    pub(crate) restore: Arc<Vec<u8>>,
    pub(crate) faults: FaultPlan,
    pub(crate) jobs: crossbeam_channel::Receiver<Sent>,
    pub(crate) incarnation: u64,
    pub(crate) queues: Arc<Queues>,
    pub(crate) board: Arc<BusyBoard>,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Slot;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        me: ActorRef<WorkerMsg>,
        a: WorkerArgs,
    ) -> Result<Slot, ActorProcessingErr> {
        let slot = a.slot;
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("sparring-{}", slot.as_str()))
            .spawn(move || compute_thread(a, me, ready_tx))
            .map_err(|e| format!("cannot start the {} compute thread: {e}", slot.as_str()))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(slot),
            Ok(Err(e)) => Err(format!("building the {}: {e}", slot.as_str()).into()),
            Err(_) => Err(format!("the {} thread died while building", slot.as_str()).into()),
        }
    }

    async fn handle(
        &self,
        _me: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _slot: &mut Slot,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Fail(e) => Err(e.into()),
        }
    }
}

/// The body of a role's thread: build, then serve the queue until the supervisor drops its channel (the worker
/// was replaced or the game is over), or until a request fails.
fn compute_thread(
    a: WorkerArgs,
    worker: ActorRef<WorkerMsg>,
    ready: oneshot::Sender<Result<(), RoleError>>,
) {
    let name = a.slot.as_str();
    let built = caught(|| a.spec.place(a.node.as_ref(), &a.restore));
    let mut imp = match built {
        Ok(imp) => {
            let _ = ready.send(Ok(()));
            imp
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    for Sent { id, job } in a.jobs.iter() {
        let n = a.faults.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let f = &a.faults.fault;
        if f.delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(f.delay_ms));
        }
        let start = Instant::now();
        a.board.start(a.slot, start);
        let result = caught(|| {
            if f.panic_on_request.contains(&n) {
                panic!("injected fault: {name} panics on request {n}");
            }
            if f.error_on_request.contains(&n) {
                return Err(RoleError::failed(format!(
                    "injected fault: {name} fails request {n}"
                )));
            }
            job.serve(&mut imp)
        });
        let busy = Busy {
            start,
            end: Instant::now(),
        };
        a.board.stop(a.slot);
        match result {
            Ok(served) => a.queues.answer(a.slot, a.incarnation, id, served, busy),
            Err(e) => {
                // The implementation may be left half-updated (a panic): this thread is done; the restarted
                // worker rebuilds it from the last committed state.
                let _ = worker.cast(WorkerMsg::Fail(format!("{name} failed: {e}")));
                return;
            }
        }
    }
}
