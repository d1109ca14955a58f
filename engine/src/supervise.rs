//! Actors and supervision. A `Game` supervisor (ractor) spawns four linked worker actors: Attacker, Defender,
//! Judge and Replay. Each worker owns an OS thread that builds and runs its implementation (a `Policy`, a `Judge`
//! or the replay log), so compute never blocks the async runtime. A request goes straight from the game to the
//! thread's crossbeam channel and the answer straight back to the caller's oneshot (one hop each way, with the
//! compute interval measured on the thread), through the role's request queue, which the game, the compute
//! thread and the supervisor share. A role answers its requests in the order they were sent, so a request can
//! queue behind the one being computed (`GameHandle::submit`). A panic (caught on the compute thread) or an error
//! fails the worker actor; the supervisor respawns it in `handle_supervisor_evt`, restores its last committed
//! state and re-sends the requests still in its queue, so the round completes as if nothing happened.

use crate::registry::{BuildContext, Registry};
use crate::replay::{CommitJob, ReplayLog};
use crate::roles::{
    FaithRequest, GenRequest, Generation, Group, Judge, LabelRequest, LearnReport, PairRequest,
    PointRequest, Policy, RoleError, Verdict,
};
use crate::scenario::RoleFault;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
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
    /// Requests that read (generate, judge) run back to back as one call: one hand-off instead of several.
    /// Answered by [`Output::Batch`], in order.
    Batch(Vec<Work>),
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
            Work::Batch(_) => "batch",
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
    Batch(Vec<Output>),
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
        (imp, Work::Batch(works)) => {
            let mut outs = Vec::with_capacity(works.len());
            for w in works {
                if !matches!(
                    w,
                    Work::Generate(_)
                        | Work::Faithful(_)
                        | Work::Compare(_)
                        | Work::Score(_)
                        | Work::Complied(_)
                ) {
                    return Err(RoleError::Unsupported(format!(
                        "`{}` in a batch (batches only generate and judge)",
                        w.name()
                    )));
                }
                outs.push(execute(&mut *imp, w)?);
            }
            Ok(Output::Batch(outs))
        }
        (Imp::Replay(log), Work::Commit(job)) => {
            log.commit(job)?;
            Ok(Output::Committed)
        }
        (imp, w) => Err(wrong(imp, w)),
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// A request on its way to a compute thread (shared with the queue's copy, which a restart re-sends: not cloned).
pub struct Job {
    id: u64,
    work: Arc<Work>,
}

type Reply = RpcReplyPort<Result<(Output, Busy), String>>;

/// A request sent to a role and not yet answered.
struct InFlight {
    id: u64,
    work: Arc<Work>,
    reply: Reply,
    /// Workers that failed on it.
    attempts: u32,
}

/// A role's requests, oldest first, shared by the game (which submits), the role's compute thread (which takes
/// them in this order and answers the oldest) and the supervisor (which re-sends them after a restart).
#[derive(Default)]
struct Queue {
    /// The live compute thread's channel and its incarnation; `None` while the worker restarts (requests wait
    /// here and are sent to the new thread).
    jobs: Option<(u64, crossbeam_channel::Sender<Job>)>,
    in_flight: VecDeque<InFlight>,
    /// Restore point: the state from the last committed round or the last successful learn / save / load.
    restore: Arc<Vec<u8>>,
    /// Why the worker could not be restarted: every later request fails with it.
    dead: Option<String>,
}

/// The four roles' queues (opaque: shared by a [`GameHandle`], the supervisor and the compute threads).
pub struct Queues([Option<Mutex<Queue>>; 4]);

impl Queues {
    fn get(&self, slot: Slot) -> Option<MutexGuard<'_, Queue>> {
        // A panic never happens while a queue is locked; a poisoned lock still holds a consistent queue.
        self.0[BusyBoard::index(slot)].as_ref().map(|m| lock(m))
    }

    /// Close `slot` for good: its thread's channel is dropped (the thread ends), the requests still queued are
    /// answered with `queued` (after the queue is unlocked) and every later one fails with `dead`.
    fn close(&self, slot: Slot, dead: String, queued: &str) {
        let mut failed = Vec::new();
        if let Some(mut q) = self.get(slot) {
            q.jobs = None;
            q.dead = Some(dead);
            failed.extend(q.in_flight.drain(..).map(|f| f.reply));
        }
        for reply in failed {
            let _ = reply.send(Err(queued.to_string()));
        }
    }
}

/// A mutex's guard, also after a panic in another holder: what the engine guards with a mutex (queues, the game
/// loop's slot, a run's tally) stays valid between its operations.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// Where a compute thread sends its results: successes to the caller of the oldest request in its queue,
/// failures to its own worker actor (which then fails, so the supervisor restarts it).
struct Outbox {
    slot: Slot,
    /// This thread's incarnation: an answer from a replaced thread is dropped.
    incarnation: u64,
    queues: Arc<Queues>,
    worker: ActorRef<WorkerMsg>,
    board: Arc<BusyBoard>,
}

impl Outbox {
    /// Answer request `id` (the oldest in the queue) and make a returned state the restore point. The reply is
    /// sent after the queue is unlocked: the caller may submit its next request at once.
    fn answer(&self, id: u64, out: Output, busy: Busy, work: &Work) {
        let Some(mut q) = self.queues.get(self.slot) else {
            return;
        };
        let current = q.jobs.as_ref().is_some_and(|(i, _)| *i == self.incarnation);
        if !current || q.in_flight.front().is_none_or(|f| f.id != id) {
            return;
        }
        let Some(f) = q.in_flight.pop_front() else {
            return;
        };
        match (&out, work) {
            (Output::Learned { state, .. } | Output::Saved { state }, _) => {
                q.restore = Arc::clone(state)
            }
            (Output::Loaded, Work::Load(state)) => q.restore = Arc::clone(state),
            _ => {}
        }
        drop(q);
        let _ = f.reply.send(Ok((out, busy)));
        // `f.work` is freed here, after the answer: off the caller's critical path.
    }
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
    fn new() -> Self {
        BusyBoard {
            epoch: Instant::now(),
            since: Default::default(),
        }
    }

    fn index(slot: Slot) -> usize {
        match slot {
            Slot::Attacker => 0,
            Slot::Defender => 1,
            Slot::Judge => 2,
            Slot::Replay => 3,
        }
    }

    fn start(&self, slot: Slot, at: Instant) {
        let ns = at.saturating_duration_since(self.epoch).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX - 1);
        self.since[Self::index(slot)].store(ns + 1, Ordering::Release);
    }

    fn stop(&self, slot: Slot) {
        self.since[Self::index(slot)].store(0, Ordering::Release);
    }

    /// The start of the request `slot`'s thread is computing now, if any.
    pub fn running(&self, slot: Slot) -> Option<Instant> {
        match self.since[Self::index(slot)].load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + std::time::Duration::from_nanos(ns - 1)),
        }
    }
}

/// Put the calling thread, and every thread it starts from now on (role compute threads, the async runtime's
/// and its blocking pool's), under Linux's `SCHED_BATCH` policy; a no-op elsewhere. Call it first thing in a
/// program that plays games, as `sparring` does. A game is a throughput workload: under the default policy a
/// woken thread may preempt the one running on its CPU, so the runtime thread that takes a deferred game-loop
/// poll, or a commit's blocking thread, cut into a model's compute at each round's boundary (where the kernel
/// places the woken thread on the CPU of the compute thread that woke it). Batch threads finish their time
/// slice instead (figures in `benches/README.md`). No privileges are needed; the nice value is unchanged.
pub fn batch_scheduling() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid, initialized parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            return Err(format!("SCHED_BATCH: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn compute_thread(
    spec: WorkerSpec,
    restore: Arc<Vec<u8>>,
    faults: FaultPlan,
    jobs: crossbeam_channel::Receiver<Job>,
    ready: oneshot::Sender<Result<(), RoleError>>,
    out: Outbox,
) -> Result<(), RoleError> {
    let name = out.slot.as_str();
    std::thread::Builder::new()
        .name(format!("sparring-{name}"))
        .spawn(move || {
            let built = catch_unwind(AssertUnwindSafe(|| build(&spec, &restore)))
                .unwrap_or_else(|p| Err(RoleError::Panic(panic_text(p.as_ref()))));
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
            // Ends when the supervisor drops its sender (the worker was replaced or the game is over).
            for Job { id, work } in jobs.iter() {
                let n = faults.counter.fetch_add(1, Ordering::SeqCst) + 1;
                let f = &faults.fault;
                if f.delay_ms > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(f.delay_ms));
                }
                let start = Instant::now();
                out.board.start(out.slot, start);
                let result = catch_unwind(AssertUnwindSafe(|| {
                    if f.panic_on_request.contains(&n) {
                        panic!("injected fault: {name} panics on request {n}");
                    }
                    if f.error_on_request.contains(&n) {
                        return Err(RoleError::failed(format!(
                            "injected fault: {name} fails request {n}"
                        )));
                    }
                    execute(&mut imp, &work)
                }))
                .unwrap_or_else(|p| Err(RoleError::Panic(panic_text(p.as_ref()))));
                let busy = Busy {
                    start,
                    end: Instant::now(),
                };
                out.board.stop(out.slot);
                match result {
                    Ok(res) => {
                        // With more requests queued, the game loop that this answer wakes runs elsewhere
                        // (`inline`): the next request starts at once.
                        crate::inline::defer_wakes(!jobs.is_empty());
                        out.answer(id, res, busy, &work);
                    }
                    Err(e) => {
                        // The implementation may be left half-updated (a panic): this thread is done; the
                        // restarted worker rebuilds it from the last committed state.
                        let _ = out
                            .worker
                            .cast(WorkerMsg::Fail(format!("{name} failed: {e}")));
                        return;
                    }
                }
            }
        })
        .map_err(|e| RoleError::failed(format!("cannot start the {name} compute thread: {e}")))?;
    Ok(())
}

/// Message to a worker actor: its compute thread failed (the actor fails with it, and is restarted).
pub enum WorkerMsg {
    Fail(String),
}

/// A worker actor: owns a compute thread (which takes requests from its role's queue and answers the callers
/// directly) and stands for it in the supervision tree.
pub struct Worker;

/// Arguments of a worker.
pub struct WorkerArgs {
    slot: Slot,
    spec: WorkerSpec,
    restore: Arc<Vec<u8>>,
    faults: FaultPlan,
    jobs: crossbeam_channel::Receiver<Job>,
    incarnation: u64,
    queues: Arc<Queues>,
    board: Arc<BusyBoard>,
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
        let (ready_tx, ready_rx) = oneshot::channel();
        compute_thread(
            a.spec,
            a.restore,
            a.faults,
            a.jobs,
            ready_tx,
            Outbox {
                slot: a.slot,
                incarnation: a.incarnation,
                queues: a.queues,
                worker: me,
                board: a.board,
            },
        )?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(a.slot),
            Ok(Err(e)) => Err(format!("building the {}: {e}", a.slot.as_str()).into()),
            Err(_) => Err(format!("the {} thread died while building", a.slot.as_str()).into()),
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

/// Messages to the `Game` supervisor (requests and answers bypass it: see [`GameHandle::submit`]).
pub enum GameMsg {
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

impl SlotSpec {
    /// A worker built fresh (no restore point) with no injected faults.
    pub fn fresh(spec: WorkerSpec) -> Self {
        SlotSpec {
            spec,
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

/// The supervisor actor.
pub struct Game;

/// Why an actor did not start: a failed start-up's own error (it names the role and its cause), else ractor's.
fn spawn_error(e: ractor::SpawnErr) -> String {
    match e {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Spawn `slot`'s worker from its restore point and hand it the requests waiting in its queue.
async fn spawn_worker(
    me: &ActorRef<GameMsg>,
    slot: Slot,
    st: &mut GameState,
) -> Result<ActorRef<WorkerMsg>, String> {
    let (args, tx) = worker_args(slot, st)?;
    let incarnation = args.incarnation;
    let actor = Actor::spawn_linked(None, Worker, args, me.get_cell())
        .await
        .map(|(r, _)| r)
        .map_err(spawn_error)?;
    open_queue(slot, st, incarnation, tx);
    Ok(actor)
}

/// A new incarnation of `slot`'s worker: its arguments and the sending end of its thread's channel.
fn worker_args(
    slot: Slot,
    st: &mut GameState,
) -> Result<(WorkerArgs, crossbeam_channel::Sender<Job>), String> {
    let (Some(s), Some(restore)) = (
        st.slots.get(&slot),
        st.queues.get(slot).map(|q| Arc::clone(&q.restore)),
    ) else {
        return Err(format!("no {} actor", slot.as_str()));
    };
    st.incarnations += 1;
    let (tx, rx) = crossbeam_channel::unbounded();
    let args = WorkerArgs {
        slot,
        spec: s.spec.clone(),
        restore,
        faults: s.faults.clone(),
        jobs: rx,
        incarnation: st.incarnations,
        queues: Arc::clone(&st.queues),
        board: Arc::clone(&st.board),
    };
    Ok((args, tx))
}

/// Hand `slot`'s queue to its started worker: the requests still in flight go to its thread first.
fn open_queue(slot: Slot, st: &GameState, incarnation: u64, tx: crossbeam_channel::Sender<Job>) {
    if let Some(mut q) = st.queues.get(slot) {
        for f in &q.in_flight {
            let _ = tx.send(Job {
                id: f.id,
                work: Arc::clone(&f.work),
            });
        }
        q.jobs = Some((incarnation, tx));
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
            st.slots.insert(
                slot,
                SlotState {
                    spec: spec.spec,
                    faults: spec.faults,
                    actor: None,
                    restarts: 0,
                },
            );
        }
        // The workers start together: each builds its model on its own thread (two policies build in the time
        // of one on two cores), and the game starts when all are ready.
        let mut starting = tokio::task::JoinSet::new();
        let slots: Vec<Slot> = st.slots.keys().copied().collect();
        for slot in slots {
            let (args, tx) = worker_args(slot, &mut st)?;
            let incarnation = args.incarnation;
            let cell = me.get_cell();
            starting.spawn(async move {
                let r = Actor::spawn_linked(None, Worker, args, cell).await;
                (
                    slot,
                    incarnation,
                    tx,
                    r.map(|(r, _)| r).map_err(spawn_error),
                )
            });
        }
        let mut failed = None;
        while let Some(joined) = starting.join_next().await {
            let (slot, incarnation, tx, actor) =
                joined.map_err(|e| format!("starting a worker: {e}"))?;
            match actor {
                Ok(actor) => {
                    open_queue(slot, &st, incarnation, tx);
                    if let Some(s) = st.slots.get_mut(&slot) {
                        s.actor = Some(actor);
                    }
                }
                // The first failure in slot order is the one reported, as when they started one by one.
                Err(e) => {
                    if failed.as_ref().is_none_or(|(s, _)| slot < *s) {
                        failed = Some((slot, e));
                    }
                }
            }
        }
        if let Some((_, e)) = failed {
            return Err(e.into());
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
        // The oldest outstanding request is the one that failed; the ones queued behind it are re-sent with it,
        // or fail with it when it has used up its restarts. (Answers go out with the queue unlocked.)
        let mut failed = Vec::new();
        if let Some(mut q) = st.queues.get(slot) {
            q.jobs = None;
            if let Some(f) = q.in_flight.front_mut() {
                f.attempts += 1;
                if f.attempts > max {
                    let (what, attempts) = (f.work.name(), f.attempts);
                    for (i, f) in q.in_flight.drain(..).enumerate() {
                        failed.push((
                            f.reply,
                            if i == 0 {
                                format!(
                                    "the {} failed {attempts} times on the same `{what}` request (game.max_restarts = {max}); last error: {reason}",
                                    slot.as_str(),
                                )
                            } else {
                                format!(
                                    "the {} gave up on an earlier `{what}` request queued before this one",
                                    slot.as_str()
                                )
                            },
                        ));
                    }
                }
            }
        }
        for (reply, e) in failed {
            let _ = reply.send(Err(e));
        }
        match spawn_worker(&me, slot, st).await {
            Ok(actor) => {
                if let Some(s) = st.slots.get_mut(&slot) {
                    s.actor = Some(actor);
                }
            }
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

/// A handle to a running `Game` supervisor.
#[derive(Clone)]
pub struct GameHandle {
    pub actor: ActorRef<GameMsg>,
    /// What the role threads are computing now.
    pub board: Arc<BusyBoard>,
    queues: Arc<Queues>,
    next_id: Arc<AtomicU64>,
}

/// A request sent to a role and not yet answered ([`GameHandle::submit`]).
pub struct Ticket(ractor::concurrency::OneshotReceiver<Result<(Output, Busy), String>>);

impl Ticket {
    /// The answer (after restarts if needed), with the interval the compute thread worked on it.
    pub async fn answer(self) -> Result<(Output, Busy), String> {
        self.0
            .await
            .map_err(|_| "the game supervisor dropped a request".to_string())?
    }
}

impl GameHandle {
    /// Spawn the supervisor and its four workers (builds every implementation; errors name the role).
    pub async fn start(
        args: GameArgs,
    ) -> Result<(GameHandle, tokio::task::JoinHandle<()>), String> {
        let board = Arc::new(BusyBoard::new());
        let mut queues: [Option<Mutex<Queue>>; 4] = Default::default();
        for (slot, spec) in &args.slots {
            queues[BusyBoard::index(*slot)] = Some(Mutex::new(Queue {
                restore: Arc::clone(&spec.restore),
                ..Default::default()
            }));
        }
        let queues = Arc::new(Queues(queues));
        let (actor, join) =
            Actor::spawn(None, Game, (args, Arc::clone(&queues), Arc::clone(&board)))
                .await
                .map_err(spawn_error)?;
        Ok((
            GameHandle {
                actor,
                board,
                queues,
                next_id: Arc::new(AtomicU64::new(0)),
            },
            join,
        ))
    }

    /// Run `work` on `slot` (restarting the worker as needed).
    pub async fn call(&self, slot: Slot, work: Work) -> Result<Output, String> {
        self.call_timed(slot, work).await.map(|(out, _)| out)
    }

    /// [`Self::call`], with the interval the compute thread worked on it (its last, successful attempt).
    pub async fn call_timed(&self, slot: Slot, work: Work) -> Result<(Output, Busy), String> {
        self.submit(slot, work)?.answer().await
    }

    /// Send `work` to `slot` now and take the answer later: a role answers its requests in the order they were
    /// sent, so a request can wait in its queue behind the one being computed. The request goes straight onto
    /// the role thread's channel (no actor hop); it stays in the role's queue until answered, so a restarted
    /// worker gets it again.
    pub fn submit(&self, slot: Slot, work: Work) -> Result<Ticket, String> {
        self.submit_shared(slot, Arc::new(work))
    }

    /// [`Self::submit`] of a request the caller keeps reading (no copy is made to send it).
    pub fn submit_shared(&self, slot: Slot, work: Arc<Work>) -> Result<Ticket, String> {
        let (tx, rx) = ractor::concurrency::oneshot();
        let reply: Reply = tx.into();
        let Some(mut q) = self.queues.get(slot) else {
            return Err(format!("no {} actor", slot.as_str()));
        };
        if let Some(e) = &q.dead {
            let e = e.clone();
            drop(q);
            let _ = reply.send(Err(e));
            return Ok(Ticket(rx));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((_, jobs)) = &q.jobs
            && jobs
                .send(Job {
                    id,
                    work: Arc::clone(&work),
                })
                .is_err()
        {
            // The thread is gone: its failure restarts the worker, which gets the whole queue.
            tracing::warn!(
                slot = slot.as_str(),
                "compute thread gone; waiting for the worker's restart"
            );
        }
        q.in_flight.push_back(InFlight {
            id,
            work,
            reply,
            attempts: 0,
        });
        Ok(Ticket(rx))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BuildContext, KindInfo};
    use crate::roles::Role;
    use std::sync::atomic::AtomicBool;

    /// The calling thread and the threads it starts afterwards run under SCHED_BATCH; others keep theirs.
    #[cfg(target_os = "linux")]
    #[test]
    fn batch_scheduling_is_inherited_by_later_threads() {
        // SAFETY: sched_getscheduler(2) on the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let (mine, child) = std::thread::spawn(move || {
            batch_scheduling().unwrap();
            (policy(), std::thread::spawn(policy).join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((mine, child), (libc::SCHED_BATCH, libc::SCHED_BATCH));
        assert_eq!(policy(), before, "the test thread's own policy changed");
    }

    struct Flagged(Arc<AtomicBool>);
    impl Judge for Flagged {}
    impl Drop for Flagged {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The queues are shared with the compute threads, so the supervisor must close them when the game stops:
    /// otherwise a thread (and its model) outlives its game.
    #[tokio::test(flavor = "current_thread")]
    async fn stopping_the_game_ends_the_compute_threads() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::new();
        let flag = Arc::clone(&dropped);
        registry.add_judge(
            KindInfo {
                kind: "flagged".into(),
                about: String::new(),
                roles: vec![Role::Judge],
                params: Vec::new(),
                check: Arc::new(|_: &toml::Table, _: &BuildContext| Ok(())),
            },
            Arc::new(move |_: &toml::Table, _: &BuildContext| {
                Ok(Box::new(Flagged(Arc::clone(&flag))) as Box<dyn Judge>)
            }),
        );
        let spec = WorkerSpec::Judge {
            registry,
            kind: "flagged".into(),
            params: toml::Table::new(),
            ctx: BuildContext::detached(Role::Judge),
        };
        let mut slots = BTreeMap::new();
        slots.insert(Slot::Judge, SlotSpec::fresh(spec));
        let (game, join) = GameHandle::start(GameArgs {
            slots,
            max_restarts: 0,
        })
        .await
        .expect("starts");
        assert!(matches!(
            game.call(Slot::Judge, Work::Save).await,
            Ok(Output::Saved { .. })
        ));
        game.stop();
        join.await.expect("supervisor stops");
        for _ in 0..200 {
            if dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "the judge's thread is still running"
        );
        // A request after the game is an error, not a hang.
        let late = game.submit(Slot::Judge, Work::Save).expect("a ticket");
        assert!(late.answer().await.is_err());
    }
}
