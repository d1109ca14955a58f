//! Actors and supervision. A `Game` supervisor (ractor) spawns four linked worker actors: Attacker, Defender,
//! Judge and Replay. Each worker owns an OS thread that builds and runs its implementation (a `Policy`, a `Judge`
//! or the replay log): requests go in over a crossbeam channel and replies come back over a tokio oneshot, so
//! compute never blocks the async runtime. A panic (caught on the compute thread) or an error fails the worker;
//! the supervisor respawns it in `handle_supervisor_evt`, restores its last committed state and re-sends the
//! in-flight request, so the round completes as if nothing happened.

use crate::registry::{BuildContext, Registry};
use crate::replay::{CommitJob, ReplayLog};
use crate::roles::{
    FaithRequest, GenRequest, Generation, Group, Judge, LabelRequest, LearnReport, PairRequest,
    PointRequest, Policy, RoleError, Verdict,
};
use crate::scenario::RoleFault;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// The four supervised actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Attacker,
    Defender,
    Judge,
    Replay,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Attacker => "attacker",
            Slot::Defender => "defender",
            Slot::Judge => "judge",
            Slot::Replay => "replay",
        }
    }
}

/// A request to a worker. Cloned so that it can be re-sent after a restart.
#[derive(Debug, Clone)]
pub enum Work {
    Generate(Vec<GenRequest>),
    /// Learn, then save: the saved state becomes the worker's restore point.
    LearnSave(Vec<Group>),
    Faithful(Vec<FaithRequest>),
    Compare(Vec<PairRequest>),
    Score(Vec<PointRequest>),
    Complied(Vec<LabelRequest>),
    /// Replay only: write state files and the round's records with their commit marker, fsync.
    Commit(Arc<CommitJob>),
    /// Save without learning.
    Save,
    /// Replace the implementation's state with these saved bytes (`Policy::load` / `Judge::load`); on success
    /// they become the worker's restore point. One built model serves many checkpoints this way.
    Load(Arc<Vec<u8>>),
}

impl Work {
    fn name(&self) -> &'static str {
        match self {
            Work::Generate(_) => "generate",
            Work::LearnSave(_) => "learn",
            Work::Faithful(_) => "faithful",
            Work::Compare(_) => "compare",
            Work::Score(_) => "score",
            Work::Complied(_) => "complied",
            Work::Commit(_) => "commit",
            Work::Save => "save",
            Work::Load(_) => "load",
        }
    }
}

/// A worker's reply; `version` is the implementation's version after the request.
#[derive(Debug, Clone)]
pub enum Output {
    Generated {
        gens: Vec<Vec<Generation>>,
        version: u64,
    },
    Learned {
        report: LearnReport,
        version: u64,
        /// Shared, not copied: it is also the worker's new restore point.
        state: Arc<Vec<u8>>,
    },
    Saved {
        state: Arc<Vec<u8>>,
    },
    Bools {
        verdicts: Vec<Verdict<bool>>,
        version: u64,
    },
    Pairs {
        verdicts: Vec<Verdict<(f64, f64)>>,
        version: u64,
    },
    Scores {
        verdicts: Vec<Verdict<f64>>,
        version: u64,
    },
    Committed,
    Loaded,
}

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

enum Imp {
    Policy(Box<dyn Policy>),
    Judge(Box<dyn Judge>),
    Replay(ReplayLog),
}

fn build(spec: &WorkerSpec, restore: &[u8]) -> Result<Imp, RoleError> {
    Ok(match spec {
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
            Imp::Policy(p)
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
            Imp::Judge(j)
        }
        WorkerSpec::Replay { run_dir, fsync } => Imp::Replay(ReplayLog::open(run_dir, *fsync)?),
    })
}

fn wrong(imp: &Imp, w: &Work) -> RoleError {
    let what = match imp {
        Imp::Policy(_) => "a policy",
        Imp::Judge(_) => "a judge",
        Imp::Replay(_) => "the replay log",
    };
    RoleError::Unsupported(format!("`{}` sent to {what}", w.name()))
}

fn check_len<T>(what: &str, v: Vec<T>, n: usize) -> Result<Vec<T>, RoleError> {
    if v.len() == n {
        Ok(v)
    } else {
        Err(RoleError::failed(format!(
            "{what}: {} answers for {n} requests",
            v.len()
        )))
    }
}

fn execute(imp: &mut Imp, work: &Work) -> Result<Output, RoleError> {
    match (imp, work) {
        (Imp::Policy(p), Work::Generate(reqs)) => {
            let gens = check_len("generate", p.generate(reqs)?, reqs.len())?;
            for (g, r) in gens.iter().zip(reqs) {
                if g.len() != r.n {
                    return Err(RoleError::failed(format!(
                        "generate `{}`: {} samples, {} asked",
                        r.key,
                        g.len(),
                        r.n
                    )));
                }
            }
            Ok(Output::Generated {
                gens,
                version: p.version(),
            })
        }
        (Imp::Policy(p), Work::LearnSave(groups)) => {
            let report = p.learn(groups)?;
            Ok(Output::Learned {
                report,
                version: p.version(),
                state: Arc::new(p.save()?),
            })
        }
        (Imp::Policy(p), Work::Save) => Ok(Output::Saved {
            state: Arc::new(p.save()?),
        }),
        (Imp::Judge(j), Work::Save) => Ok(Output::Saved {
            state: Arc::new(j.save()?),
        }),
        (Imp::Policy(p), Work::Load(state)) => {
            p.load(state)?;
            Ok(Output::Loaded)
        }
        (Imp::Judge(j), Work::Load(state)) => {
            j.load(state)?;
            Ok(Output::Loaded)
        }
        (Imp::Judge(j), Work::Faithful(r)) => Ok(Output::Bools {
            verdicts: check_len("faithful", j.faithful(r)?, r.len())?,
            version: j.version(),
        }),
        (Imp::Judge(j), Work::Complied(r)) => Ok(Output::Bools {
            verdicts: check_len("complied", j.complied(r)?, r.len())?,
            version: j.version(),
        }),
        (Imp::Judge(j), Work::Compare(r)) => Ok(Output::Pairs {
            verdicts: check_len("compare", j.compare(r)?, r.len())?,
            version: j.version(),
        }),
        (Imp::Judge(j), Work::Score(r)) => Ok(Output::Scores {
            verdicts: check_len("score", j.score(r)?, r.len())?,
            version: j.version(),
        }),
        (Imp::Replay(log), Work::Commit(job)) => {
            log.commit(job)?;
            Ok(Output::Committed)
        }
        (imp, w) => Err(wrong(imp, w)),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Output, RoleError>>,
}

/// Fault injection shared by all incarnations of a worker: the request counter survives restarts.
#[derive(Clone, Default)]
pub struct FaultPlan {
    pub fault: RoleFault,
    pub counter: Arc<AtomicU64>,
}

fn compute_thread(
    name: String,
    spec: WorkerSpec,
    restore: Arc<Vec<u8>>,
    faults: FaultPlan,
    ready: oneshot::Sender<Result<(), RoleError>>,
) -> Result<crossbeam_channel::Sender<Job>, RoleError> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    std::thread::Builder::new()
        .name(format!("sparring-{name}"))
        .spawn(move || {
            let built = catch_unwind(AssertUnwindSafe(|| build(&spec, &restore)))
                .unwrap_or_else(|p| Err(RoleError::Panic(panic_message(p.as_ref()))));
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
            for job in rx.iter() {
                let n = faults.counter.fetch_add(1, Ordering::SeqCst) + 1;
                let f = &faults.fault;
                if f.delay_ms > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(f.delay_ms));
                }
                let result = catch_unwind(AssertUnwindSafe(|| {
                    if f.panic_on_request.contains(&n) {
                        panic!("injected fault: {name} panics on request {n}");
                    }
                    if f.error_on_request.contains(&n) {
                        return Err(RoleError::failed(format!(
                            "injected fault: {name} fails request {n}"
                        )));
                    }
                    execute(&mut imp, &job.work)
                }))
                .unwrap_or_else(|p| Err(RoleError::Panic(panic_message(p.as_ref()))));
                let _ = job.reply.send(result);
            }
        })
        .map_err(|e| RoleError::failed(format!("cannot start the {} thread: {e}", "compute")))?;
    Ok(tx)
}

/// Message to a worker.
pub struct Run {
    id: u64,
    work: Work,
}

/// A worker actor: runs requests on its compute thread and reports results to the supervisor.
pub struct Worker;

/// Arguments of a worker.
pub struct WorkerArgs {
    slot: Slot,
    spec: WorkerSpec,
    restore: Arc<Vec<u8>>,
    faults: FaultPlan,
    supervisor: ActorRef<GameMsg>,
}

/// State of a worker.
pub struct WorkerState {
    slot: Slot,
    tx: crossbeam_channel::Sender<Job>,
    supervisor: ActorRef<GameMsg>,
}

impl Actor for Worker {
    type Msg = Run;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<Run>,
        a: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let tx = compute_thread(
            a.slot.as_str().to_string(),
            a.spec,
            a.restore,
            a.faults,
            ready_tx,
        )?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(WorkerState {
                slot: a.slot,
                tx,
                supervisor: a.supervisor,
            }),
            Ok(Err(e)) => Err(format!("building the {}: {e}", a.slot.as_str()).into()),
            Err(_) => Err(format!("the {} thread died while building", a.slot.as_str()).into()),
        }
    }

    async fn handle(
        &self,
        _me: ActorRef<Run>,
        msg: Run,
        st: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        let (reply, rx) = oneshot::channel();
        st.tx
            .send(Job {
                work: msg.work,
                reply,
            })
            .map_err(|_| "compute thread is gone")?;
        match rx.await {
            Ok(Ok(out)) => {
                st.supervisor.cast(GameMsg::Done {
                    slot: st.slot,
                    id: msg.id,
                    out,
                })?;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("{} failed: {e}", st.slot.as_str()).into()),
            Err(_) => Err(format!("{} compute thread ended", st.slot.as_str()).into()),
        }
    }
}

/// Messages to the `Game` supervisor.
pub enum GameMsg {
    /// Run `work` on `slot`'s worker; the reply comes when it succeeds (after restarts if needed) or gives up.
    Call {
        slot: Slot,
        work: Work,
        reply: RpcReplyPort<Result<Output, String>>,
    },
    /// A worker finished request `id`.
    Done { slot: Slot, id: u64, out: Output },
    /// Number of restarts so far per slot.
    Restarts(RpcReplyPort<BTreeMap<String, u64>>),
}

/// Everything the supervisor needs to (re)build one worker.
#[derive(Clone)]
pub struct SlotSpec {
    pub spec: WorkerSpec,
    /// Restore point: state from the last committed round (empty = fresh).
    pub restore: Arc<Vec<u8>>,
    pub faults: FaultPlan,
}

/// Arguments of the supervisor.
pub struct GameArgs {
    pub slots: BTreeMap<Slot, SlotSpec>,
    pub max_restarts: u32,
}

struct InFlight {
    id: u64,
    work: Work,
    reply: RpcReplyPort<Result<Output, String>>,
    attempts: u32,
}

struct SlotState {
    spec: SlotSpec,
    actor: Option<ActorRef<Run>>,
    in_flight: Option<InFlight>,
    restarts: u64,
}

/// State of the supervisor.
pub struct GameState {
    slots: BTreeMap<Slot, SlotState>,
    max_restarts: u32,
    next_id: u64,
}

/// The supervisor actor.
pub struct Game;

async fn spawn_worker(
    me: &ActorRef<GameMsg>,
    slot: Slot,
    spec: &SlotSpec,
) -> Result<ActorRef<Run>, String> {
    let args = WorkerArgs {
        slot,
        spec: spec.spec.clone(),
        restore: spec.restore.clone(),
        faults: spec.faults.clone(),
        supervisor: me.clone(),
    };
    Actor::spawn_linked(None, Worker, args, me.get_cell())
        .await
        .map(|(r, _)| r)
        .map_err(|e| match e {
            ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
            other => other.to_string(),
        })
}

impl Actor for Game {
    type Msg = GameMsg;
    type State = GameState;
    type Arguments = GameArgs;

    async fn pre_start(
        &self,
        me: ActorRef<GameMsg>,
        args: GameArgs,
    ) -> Result<GameState, ActorProcessingErr> {
        let mut slots = BTreeMap::new();
        for (slot, spec) in args.slots {
            let actor = spawn_worker(&me, slot, &spec).await?;
            slots.insert(
                slot,
                SlotState {
                    spec,
                    actor: Some(actor),
                    in_flight: None,
                    restarts: 0,
                },
            );
        }
        Ok(GameState {
            slots,
            max_restarts: args.max_restarts,
            next_id: 0,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<GameMsg>,
        msg: GameMsg,
        st: &mut GameState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GameMsg::Call { slot, work, reply } => {
                st.next_id += 1;
                let id = st.next_id;
                let Some(s) = st.slots.get_mut(&slot) else {
                    let _ = reply.send(Err(format!("no {} actor", slot.as_str())));
                    return Ok(());
                };
                if s.in_flight.is_some() {
                    let _ = reply.send(Err(format!("{} is busy", slot.as_str())));
                    return Ok(());
                }
                let Some(actor) = &s.actor else {
                    let _ = reply.send(Err(format!(
                        "the {} actor could not be restarted",
                        slot.as_str()
                    )));
                    return Ok(());
                };
                if actor
                    .send_message(Run {
                        id,
                        work: work.clone(),
                    })
                    .is_err()
                {
                    tracing::warn!(
                        slot = slot.as_str(),
                        "worker mailbox closed; waiting for its restart"
                    );
                }
                s.in_flight = Some(InFlight {
                    id,
                    work,
                    reply,
                    attempts: 0,
                });
            }
            GameMsg::Done { slot, id, out } => {
                if let Some(s) = st.slots.get_mut(&slot)
                    && s.in_flight.as_ref().is_some_and(|f| f.id == id)
                {
                    if let Output::Learned { state, .. } | Output::Saved { state } = &out {
                        s.spec.restore = Arc::clone(state);
                    }
                    if let (Output::Loaded, Some(f)) = (&out, &s.in_flight)
                        && let Work::Load(state) = &f.work
                    {
                        s.spec.restore = Arc::clone(state);
                    }
                    if let Some(f) = s.in_flight.take() {
                        let _ = f.reply.send(Ok(out));
                    }
                }
            }
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
        let (cell, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // Workers only terminate when the game stops them; treat anything else as a failure.
                let known = st.slots.values().any(|s| {
                    s.actor
                        .as_ref()
                        .is_some_and(|a| a.get_id() == cell.get_id())
                });
                if !known || reason.as_deref() == Some("game over") {
                    return Ok(());
                }
                (cell, format!("terminated: {}", reason.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        let max = st.max_restarts;
        let Some((slot, s)) = st.slots.iter_mut().find(|(_, s)| {
            s.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
        }) else {
            return Ok(());
        };
        let slot = *slot;
        tracing::warn!(slot = slot.as_str(), %reason, "actor failed; restarting it from its last committed state");
        s.restarts += 1;
        s.actor = None;
        let mut in_flight = s.in_flight.take();
        if let Some(f) = &mut in_flight {
            f.attempts += 1;
            if f.attempts > max
                && let Some(f) = in_flight.take()
            {
                let _ = f.reply.send(Err(format!(
                        "the {} failed {} times on the same `{}` request (game.max_restarts = {max}); last error: {reason}",
                        slot.as_str(),
                        f.attempts,
                        f.work.name()
                    )));
            }
        }
        match spawn_worker(&me, slot, &s.spec).await {
            Ok(actor) => {
                if let Some(f) = &in_flight {
                    let _ = actor.send_message(Run {
                        id: f.id,
                        work: f.work.clone(),
                    });
                }
                s.actor = Some(actor);
                s.in_flight = in_flight;
            }
            Err(e) => {
                if let Some(f) = in_flight {
                    let _ = f
                        .reply
                        .send(Err(format!("restarting the {} failed: {e}", slot.as_str())));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<GameMsg>,
        st: &mut GameState,
    ) -> Result<(), ActorProcessingErr> {
        for s in st.slots.values() {
            if let Some(a) = &s.actor {
                a.stop(Some("game over".into()));
            }
        }
        Ok(())
    }
}

/// A handle to a running `Game` supervisor.
#[derive(Clone)]
pub struct GameHandle {
    pub actor: ActorRef<GameMsg>,
}

impl GameHandle {
    /// Spawn the supervisor and its four workers (builds every implementation; errors name the role).
    pub async fn start(
        args: GameArgs,
    ) -> Result<(GameHandle, tokio::task::JoinHandle<()>), String> {
        let (actor, join) = Actor::spawn(None, Game, args).await.map_err(|e| match e {
            ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
            other => other.to_string(),
        })?;
        Ok((GameHandle { actor }, join))
    }

    /// Run `work` on `slot` (restarting the worker as needed).
    pub async fn call(&self, slot: Slot, work: Work) -> Result<Output, String> {
        match ractor::call!(self.actor, |reply| GameMsg::Call { slot, work, reply }) {
            Ok(r) => r,
            Err(e) => Err(format!("the game supervisor is gone: {e}")),
        }
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
