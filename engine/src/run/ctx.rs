//! The game loop's handle on the roles: [`Ctx`] sends a game's requests to its supervised roles (call, or
//! submit now and answer later), counts them in the game's meters, and chunks the evaluation's requests; with
//! the role slots a game starts from.

use super::RunError;
use super::eval::EvalStep;
use super::meters::Meters;
use crate::actor::{
    FaultPlan, GameArgs, GameHandle, Generate, Judged, Read, Request, SlotSpec, Ticket, WorkerSpec,
};
use crate::cluster::Placement;
use crate::registry::Registry;
use crate::roles::{GenRequest, Generation, Verdict};
use crate::scenario::{Loaded, RoleFault};
use crate::vocab::{Role, Slot};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A game's context: its scenario, its roles, its run directory and meters.
pub(super) struct Ctx<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) game: GameHandle,
    pub(super) run: String,
    pub(super) registry: &'a Registry,
    pub(super) run_dir: &'a Path,
    /// The initial players (checkpoint `r0`), for the best-response attacker of the adaptive evaluation.
    pub(super) initial: &'a BTreeMap<Slot, Vec<u8>>,
    /// Role time and compute intervals of the game's requests.
    pub(super) meters: Arc<Meters>,
    /// Told when an evaluation phase starts and after each of its chunks.
    pub(super) on_eval: Option<&'a (dyn Fn(&EvalStep) + Sync)>,
    /// At most `eval.adaptive.concurrent` adaptive evaluation sub-runs play at once: a later one waits for a
    /// slot.
    pub(super) sub_run_slot: Arc<tokio::sync::Semaphore>,
}

/// No initial players: games outside a run (evaluation, cross-play) have no adaptive evaluation.
static NO_INITIAL: BTreeMap<Slot, Vec<u8>> = BTreeMap::new();

/// The supervised roles of `loaded`, restored from `init`, for a game outside a run (no replay log).
pub(super) async fn start_outside(
    loaded: &Loaded,
    registry: &Registry,
    work_dir: &Path,
    init: &BTreeMap<Slot, Vec<u8>>,
) -> Result<(GameHandle, tokio::task::JoinHandle<()>), RunError> {
    GameHandle::start(GameArgs {
        slots: role_slots(loaded, registry, work_dir, init, &BTreeMap::new()),
        max_restarts: loaded.scenario.game.max_restarts,
    })
    .await
    .map_err(RunError)
}

impl<'a> Ctx<'a> {
    /// The context of a game outside a run.
    pub(super) fn outside(
        loaded: &'a Loaded,
        registry: &'a Registry,
        work_dir: &'a Path,
        game: &GameHandle,
        on_eval: Option<&'a (dyn Fn(&EvalStep) + Sync)>,
    ) -> Self {
        Ctx {
            loaded,
            game: game.clone(),
            run: loaded.run_id.clone(),
            registry,
            run_dir: work_dir,
            initial: &NO_INITIAL,
            meters: Meters::within(None),
            on_eval,
            sub_run_slot: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

/// A role request sent and not yet answered ([`Ctx::submit`]).
pub(super) struct Pending<T>(Ticket<T>);

impl Ctx<'_> {
    pub(super) async fn call<R: Request>(
        &self,
        slot: Slot,
        request: R,
    ) -> Result<R::Answer, RunError> {
        if slot == Slot::Replay {
            return self.game.call(slot, request).await.map_err(RunError);
        }
        let p = self.submit(slot, request)?;
        self.answer(p).await
    }

    /// Send a request to a role now (it queues behind the role's earlier requests); [`Self::answer`] takes the
    /// answer. Counts as in flight from now.
    pub(super) fn submit<R: Request>(
        &self,
        slot: Slot,
        request: R,
    ) -> Result<Pending<R::Answer>, RunError> {
        // In flight from before the send: waking the role's thread is part of the hand-off.
        self.meters.enter();
        let slot = self.route(slot);
        match self.game.submit(slot, request) {
            Ok(t) => Ok(Pending(t)),
            Err(e) => {
                self.meters.leave();
                Err(RunError(e))
            }
        }
    }

    pub(super) async fn answer<T>(&self, p: Pending<T>) -> Result<T, RunError> {
        let out = p.0.answer().await.map_err(RunError);
        self.meters.leave();
        let (out, busy) = out?;
        self.meters.push(busy);
        Ok(out)
    }

    /// The slot that serves `slot`'s requests: under self-play the attacker's player also defends.
    fn route(&self, slot: Slot) -> Slot {
        if slot == Slot::Defender && self.loaded.self_play() {
            Slot::Attacker
        } else {
            slot
        }
    }

    /// What the role threads are computing now: the starts of their current requests.
    pub(super) fn running(&self) -> Vec<Instant> {
        [Slot::Attacker, Slot::Defender, Slot::Judge]
            .into_iter()
            .filter_map(|s| self.game.board.running(s))
            .collect()
    }

    pub(super) async fn generate(
        &self,
        slot: Slot,
        reqs: Vec<GenRequest>,
    ) -> Result<(Vec<Vec<Generation>>, u64), RunError> {
        if reqs.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let out = self.call(slot, Generate(reqs)).await?;
        Ok((out.gens, out.version))
    }

    /// Two judge requests in one call (one hand-off to its thread), answered in order; no call when both are
    /// absent.
    pub(super) async fn judge_both<A: Read, B: Read>(
        &self,
        a: Option<A>,
        b: Option<B>,
    ) -> Result<(Option<A::Answer>, Option<B::Answer>), RunError> {
        if a.is_none() && b.is_none() {
            return Ok((None, None));
        }
        self.call(Slot::Judge, (a, b)).await
    }

    /// `eval.chunk` requests per call (all at once when 0), reporting progress after each chunk.
    fn chunks<T>(&self, v: &[T]) -> usize {
        match self.loaded.scenario.eval.chunk {
            0 => v.len().max(1),
            c => c,
        }
    }

    fn tell(&self, phase: &'static str, done: usize, total: usize) {
        if let Some(f) = self.on_eval {
            f(&EvalStep { phase, done, total });
        }
    }

    /// Evaluation generation (one sample per request), chunked.
    pub(super) async fn generate_eval(
        &self,
        slot: Slot,
        phase: &'static str,
        reqs: &[GenRequest],
    ) -> Result<(Vec<Generation>, u64), RunError> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut version = 0;
        // The phase starts (an empty one ends here): progress shows it before its first chunk is answered.
        self.tell(phase, 0, reqs.len());
        for c in reqs.chunks(self.chunks(reqs)) {
            let (gens, v) = self.generate(slot, c.to_vec()).await?;
            out.extend(gens.into_iter().map(|mut g| g.remove(0)));
            version = v;
            self.tell(phase, out.len(), reqs.len());
        }
        Ok((out, version))
    }

    /// Evaluation verdicts (faithfulness or compliance), chunked.
    pub(super) async fn bools_eval<T: Clone, R: Request<Answer = Judged<bool>>>(
        &self,
        phase: &'static str,
        reqs: &[T],
        request: fn(Vec<T>) -> R,
    ) -> Result<Vec<Verdict<bool>>, RunError> {
        let mut out = Vec::with_capacity(reqs.len());
        self.tell(phase, 0, reqs.len());
        for c in reqs.chunks(self.chunks(reqs)) {
            let judged = self.call(Slot::Judge, request(c.to_vec())).await?;
            out.extend(judged.verdicts);
            self.tell(phase, out.len(), reqs.len());
        }
        Ok(out)
    }
}

/// The attacker, defender and judge workers of `loaded` ([`game_slots`]), restored from `restore` where given; a
/// role `placed` on a node runs there (else in this process).
pub(super) fn role_slots(
    loaded: &Loaded,
    registry: &Registry,
    run_dir: &Path,
    restore: &BTreeMap<Slot, Vec<u8>>,
    placed: &BTreeMap<Role, Placement>,
) -> BTreeMap<Slot, SlotSpec> {
    let sc = &loaded.scenario;
    let mut slots = BTreeMap::new();
    for slot in game_slots(loaded) {
        let (role, fault) = match slot {
            Slot::Attacker => (Role::Attacker, &sc.faults.attacker),
            Slot::Defender => (Role::Defender, &sc.faults.defender),
            _ => (Role::Judge, &sc.faults.judge),
        };
        let cfg = loaded.role(role);
        let ctx = loaded.context(role, Some(run_dir.to_path_buf()));
        let spec = if role == Role::Judge {
            WorkerSpec::Judge {
                registry: registry.clone(),
                kind: cfg.kind.clone(),
                params: cfg.params.clone(),
                ctx,
            }
        } else {
            WorkerSpec::Policy {
                registry: registry.clone(),
                kind: cfg.kind.clone(),
                params: cfg.params.clone(),
                ctx,
            }
        };
        slots.insert(
            slot,
            SlotSpec {
                spec,
                node: placed.get(&role).cloned(),
                restore: Arc::new(restore.get(&slot).cloned().unwrap_or_default()),
                faults: fault_plan(fault),
            },
        );
    }
    slots
}

/// The role slots of `loaded`'s game: attacker, defender and judge, or under self-play the attacker (the one
/// player) and the judge.
pub(super) fn game_slots(loaded: &Loaded) -> Vec<Slot> {
    if loaded.self_play() {
        vec![Slot::Attacker, Slot::Judge]
    } else {
        vec![Slot::Attacker, Slot::Defender, Slot::Judge]
    }
}

/// A role's fault plan (no fault when the scenario injects none), with a fresh counter.
pub(super) fn fault_plan(f: &Option<RoleFault>) -> FaultPlan {
    FaultPlan {
        fault: f.clone().unwrap_or_default(),
        counter: Default::default(),
    }
}
