//! The game loop: runs a loaded scenario round by round through the `Game` supervisor, following the official
//! AdvGame semantics (see `payoff` for the reward math), commits each round to the replay log, and resumes a
//! killed run from its last committed round.
//!
//! Per round: draw seeds → A rewrites per seed → faithfulness verdicts (unparseable or unfaithful: attacker
//! reward = error reward, no defender rollouts) → D responses per faithful rewrite → defender rewards from pairs
//! among the D responses (judged against the rewrite), with the responses' compliance labels in the same judge
//! call → attacker rewards from pairs among the valid rewrites of a seed, each represented by the defender's best
//! response (`optimistic`) or its first response with a verdict (judged against the seed) → learner batches
//! (sides frozen by the schedule do not learn) → held-out evaluation when due → commit (states, records,
//! metrics) → metrics.
//!
//! The engine's own work stays off the critical path where the data allows: each phase's requests are built
//! (all but the texts still to come) while the phase before it computes; the defender's update starts as soon as
//! its rewards are known (while the judge compares the attacker's rewrites); the next round's attacker rollouts
//! queue behind its update; the round's records are built and serialized on the commit's blocking thread
//! (not beside the learners, whose cores they would take), and the previous round's commit is reported while
//! the next round plays. The adaptive evaluation's best-response game runs on its own game loop (a task) and
//! role threads, beside the round's other evaluations and then beside the rounds after it; the round commits
//! when that game has ended, and the rounds after it commit after it, in order.

use crate::payoff::{self, Judgment};
use crate::record::{
    CommitRec, EvalMode, EvalRec, JudgmentRec, LearnRec, Metrics, Record, ResponseRec, RewriteRec,
    Tally, metrics,
};
use crate::registry::Registry;
use crate::replay::{self, CommitJob};
use crate::rng::{KeyPrefix, RoundKeys, SplitMix64, derive, derive_suffixed};
use crate::roles::{
    FaithRequest, GenRequest, Generation, Goal, Group, LabelRequest, PairRequest, PointRequest,
    Role, Seed, Verdict,
};
use crate::scenario::{Loaded, PayoffMode, RoleFault, Side};
use crate::actor::{
    Busy, Commit, Compare, Complied, Faithful, FaultPlan, GameArgs, GameHandle, Generate, Generated, Judged,
    Learn, Learned, Load, Read, Request, Save, Score, Slot, SlotSpec, Ticket, WorkerSpec, lock,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// An error that stops a run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

fn rerr(s: impl Into<String>) -> RunError {
    RunError(s.into())
}

/// Progress of a run, reported after each committed round.
#[derive(Debug, Clone)]
pub struct Progress {
    pub round: u32,
    pub rounds: u32,
    pub metrics: Metrics,
    pub timings: Timings,
}

/// Wall times of a round's phases, in milliseconds (not deterministic; kept out of the metrics).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub round: u32,
    pub attacker_ms: f64,
    pub faithfulness_ms: f64,
    pub defender_ms: f64,
    /// The judge's calls after the defender's responses: defender rewards with the compliance labels (one
    /// call), then attacker rewards.
    pub judge_ms: f64,
    pub learn_ms: f64,
    pub eval_ms: f64,
    pub commit_ms: f64,
    pub total_ms: f64,
    /// Wall time with at least one attacker, defender or judge request in flight (model compute, judging,
    /// learning, saving states, and the hand-off to the role's thread), the requests of adaptive evaluation
    /// sub-runs included; `total_ms - roles_ms` is the engine's own work (scheduling, payoffs, records, the
    /// replay log, and the sub-runs' start-up and engine time, where no request of either game is in flight).
    #[serde(default)]
    pub roles_ms: f64,
    /// Wall time during which at least one attacker, defender or judge compute thread was working on a request
    /// (measured on the threads), those of adaptive evaluation sub-runs included (overlaps count once);
    /// `total_ms - compute_ms` is the time spent outside model compute and judging: the engine's own work and
    /// its messaging (request hand-offs).
    #[serde(default)]
    pub compute_ms: f64,
    /// Of `compute_ms`, the compute of adaptive evaluation sub-runs playing beside the round (a round's
    /// adaptive evaluation plays on while the rounds after it play, and the round commits when it ends).
    #[serde(default)]
    pub adaptive_ms: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub rounds: u32,
    /// Metrics over the whole run.
    pub metrics: Metrics,
    /// Per-round metrics.
    pub per_round: Vec<(u32, Metrics)>,
    /// Mean timings over the rounds played by this process.
    pub mean_timings: Timings,
    /// Restarts per actor during this process.
    pub restarts: BTreeMap<String, u64>,
    /// First round played by this process (> 1 after a resume).
    pub first_round: u32,
    /// The evaluation records of the last round (empty if it had no evaluation).
    pub final_eval: Vec<EvalRec>,
}

#[derive(Serialize, Deserialize)]
struct RunInfo {
    run_id: String,
    created_unix: u64,
    sparring_engine: String,
}

/// Deterministic seed order: round `r` takes the next `seeds_per_round` items of an endless sequence of
/// per-epoch shuffles of the training seeds (each seed once per epoch).
pub fn draw(train: &[Seed], seed: u64, round: u32, k: usize) -> Vec<Seed> {
    let n = train.len();
    if n == 0 {
        return Vec::new();
    }
    let mut cache: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let start = (round as u64 - 1) * k as u64;
    (0..k as u64)
        .map(|j| {
            let idx = start + j;
            let epoch = idx / n as u64;
            let perm = cache.entry(epoch).or_insert_with(|| {
                let mut p: Vec<usize> = (0..n).collect();
                SplitMix64::new(derive(seed, epoch, "epoch")).shuffle(&mut p);
                p
            });
            train[perm[(idx % n as u64) as usize]].clone()
        })
        .collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

struct Ctx<'a> {
    loaded: &'a Loaded,
    game: GameHandle,
    run: String,
    registry: &'a Registry,
    run_dir: &'a Path,
    /// The initial players (checkpoint `r0`), for the best-response attacker of the adaptive evaluation.
    initial: &'a BTreeMap<Slot, Vec<u8>>,
    /// Role time and compute intervals of the game's requests.
    meters: Arc<Meters>,
    /// Told after each chunk of an evaluation phase.
    on_eval: Option<&'a (dyn Fn(&EvalStep) + Sync)>,
    /// At most `eval.adaptive.concurrent` adaptive evaluation sub-runs play at once: a later one waits for a
    /// slot.
    sub_run_slot: Arc<tokio::sync::Semaphore>,
}

/// Progress of an evaluation phase: `done` of `total` requests answered.
#[derive(Debug, Clone)]
pub struct EvalStep {
    /// `attacker` (rewrites), `faithfulness`, `defender` (answers) or `labels`.
    pub phase: &'static str,
    pub done: usize,
    pub total: usize,
}

/// Wall time during which at least one role call (attacker, defender, judge) is in flight: concurrent calls
/// (the two learners) count once. A round's wall time minus this is the engine's own time.
#[derive(Default)]
struct RoleWaits(std::sync::Mutex<(usize, Option<Instant>, f64)>);

/// Compute intervals of the role threads (possibly overlapping: the two learners, or a sub-run's roles beside
/// the game's own).
#[derive(Default)]
struct Compute(std::sync::Mutex<Vec<Busy>>);

impl Compute {
    fn push(&self, b: Busy) {
        lock(&self.0).push(b);
    }

    /// The length of the union of the intervals within `[from, to]` (ms) — those answered and those still
    /// running (their starts in `running`); resets. An interval that crosses `from` (a request queued behind
    /// another, started in the round before) counts only from there.
    fn take_ms(&self, from: Instant, to: Instant, running: &[Instant]) -> f64 {
        let done = std::mem::take(&mut *lock(&self.0));
        let mut v: Vec<Busy> = done
            .into_iter()
            .chain(running.iter().map(|&start| Busy { start, end: to }))
            .filter_map(|b| {
                let (start, end) = (b.start.max(from), b.end.min(to));
                (start < end).then_some(Busy { start, end })
            })
            .collect();
        v.sort_by_key(|b| b.start);
        let mut total = 0.0;
        let mut cur: Option<Busy> = None;
        for b in v {
            match &mut cur {
                Some(c) if b.start <= c.end => c.end = c.end.max(b.end),
                _ => {
                    if let Some(c) = cur.take() {
                        total += (c.end - c.start).as_secs_f64() * 1000.0;
                    }
                    cur = Some(b);
                }
            }
        }
        if let Some(c) = cur {
            total += (c.end - c.start).as_secs_f64() * 1000.0;
        }
        total
    }
}

/// A game's role time and compute intervals. A sub-run's (the adaptive evaluation's game) count in its parent's
/// too, as they happen: the sub-run plays beside the parent's other evaluations, and time when either has a
/// request in flight or a thread computing counts once.
#[derive(Default)]
struct Meters {
    waits: RoleWaits,
    compute: Compute,
    /// The sub-runs' compute intervals alone.
    beside: Compute,
    parent: Option<Arc<Meters>>,
}

impl Meters {
    fn within(parent: Option<Arc<Meters>>) -> Arc<Self> {
        Arc::new(Meters {
            parent,
            ..Default::default()
        })
    }

    fn enter(&self) {
        self.waits.enter();
        if let Some(p) = &self.parent {
            p.enter();
        }
    }

    fn leave(&self) {
        self.waits.leave();
        if let Some(p) = &self.parent {
            p.leave();
        }
    }

    fn push(&self, b: Busy) {
        self.compute.push(b);
        if let Some(p) = &self.parent {
            p.push_beside(b);
        }
    }

    fn push_beside(&self, b: Busy) {
        self.beside.push(b);
        self.push(b);
    }
}

/// The game a sub-run plays in.
struct Parent {
    meters: Arc<Meters>,
    /// The parent's sub-run slot, given back when the sub-run's last round has played.
    slot: tokio::sync::OwnedSemaphorePermit,
}

impl RoleWaits {
    fn enter(&self) {
        if let Ok(mut g) = self.0.lock() {
            if g.0 == 0 {
                g.1 = Some(Instant::now());
            }
            g.0 += 1;
        }
    }

    fn leave(&self) {
        if let Ok(mut g) = self.0.lock() {
            g.0 = g.0.saturating_sub(1);
            if g.0 == 0
                && let Some(t) = g.1.take()
            {
                g.2 += ms(t);
            }
        }
    }

    /// The time counted since the last take, up to `now` (a call still in flight counts up to `now` and goes
    /// on from there); resets.
    fn take_ms(&self, now: Instant) -> f64 {
        let Ok(mut g) = self.0.lock() else {
            return 0.0;
        };
        if g.0 > 0
            && let Some(t) = g.1.replace(now)
        {
            g.2 += now.saturating_duration_since(t).as_secs_f64() * 1000.0;
        }
        std::mem::take(&mut g.2)
    }
}

/// No initial players: games outside a run (evaluation, cross-play) have no adaptive evaluation.
static NO_INITIAL: BTreeMap<Slot, Vec<u8>> = BTreeMap::new();

/// The supervised roles of `loaded`, restored from `init`, for a game outside a run (no replay log).
async fn start_outside(
    loaded: &Loaded,
    registry: &Registry,
    work_dir: &Path,
    init: &BTreeMap<Slot, Vec<u8>>,
) -> Result<(GameHandle, tokio::task::JoinHandle<()>), RunError> {
    GameHandle::start(GameArgs {
        slots: role_slots(loaded, registry, work_dir, init),
        max_restarts: loaded.scenario.game.max_restarts,
    })
    .await
    .map_err(RunError)
}

impl<'a> Ctx<'a> {
    /// The context of a game outside a run.
    fn outside(
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
struct Pending<T>(Ticket<T>);

impl Ctx<'_> {
    async fn call<R: Request>(&self, slot: Slot, request: R) -> Result<R::Answer, RunError> {
        if slot == Slot::Replay {
            return self.game.call(slot, request).await.map_err(RunError);
        }
        let p = self.submit(slot, request)?;
        self.answer(p).await
    }

    /// Send a request to a role now (it queues behind the role's earlier requests); [`Self::answer`] takes the
    /// answer. Counts as in flight from now.
    fn submit<R: Request>(&self, slot: Slot, request: R) -> Result<Pending<R::Answer>, RunError> {
        // In flight from before the send: waking the role's thread is part of the hand-off.
        self.meters.enter();
        match self.game.submit(slot, request) {
            Ok(t) => Ok(Pending(t)),
            Err(e) => {
                self.meters.leave();
                Err(RunError(e))
            }
        }
    }

    async fn answer<T>(&self, p: Pending<T>) -> Result<T, RunError> {
        let out = p.0.answer().await.map_err(RunError);
        self.meters.leave();
        let (out, busy) = out?;
        self.meters.push(busy);
        Ok(out)
    }

    /// What the role threads are computing now: the starts of their current requests.
    fn running(&self) -> Vec<Instant> {
        [Slot::Attacker, Slot::Defender, Slot::Judge]
            .into_iter()
            .filter_map(|s| self.game.board.running(s))
            .collect()
    }

    async fn generate(
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
    async fn judge_both<A: Read, B: Read>(
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
    async fn generate_eval(
        &self,
        slot: Slot,
        phase: &'static str,
        reqs: &[GenRequest],
    ) -> Result<(Vec<Generation>, u64), RunError> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut version = 0;
        for c in reqs.chunks(self.chunks(reqs)) {
            let (gens, v) = self.generate(slot, c.to_vec()).await?;
            out.extend(gens.into_iter().map(|mut g| g.remove(0)));
            version = v;
            self.tell(phase, out.len(), reqs.len());
        }
        Ok((out, version))
    }

    /// Evaluation verdicts (faithfulness or compliance), chunked.
    async fn bools_eval<T: Clone, R: Request<Answer = Judged<bool>>>(
        &self,
        phase: &'static str,
        reqs: &[T],
        request: fn(Vec<T>) -> R,
    ) -> Result<Vec<Verdict<bool>>, RunError> {
        let mut out = Vec::with_capacity(reqs.len());
        for c in reqs.chunks(self.chunks(reqs)) {
            let judged = self.call(Slot::Judge, request(c.to_vec())).await?;
            out.extend(judged.verdicts);
            self.tell(phase, out.len(), reqs.len());
        }
        Ok(out)
    }
}

/// One rewrite while the round is assembled.
struct Rw {
    text: String,
    parsed: Option<String>,
    /// The attacker's behaviour log-probs ([`Generation::logprobs`]), for its learner group.
    logprobs: Vec<f32>,
    faithful_raw: Option<String>,
    faithful: Option<bool>,
    valid: bool,
    /// Index into the defender request list when valid.
    d: Option<usize>,
    representative: Option<usize>,
    reward: Option<f64>,
}

struct Resp {
    out: Generation,
    complied_raw: String,
    complied: Option<bool>,
    reward: Option<f64>,
}

fn shown(g: &Generation) -> &str {
    g.parsed.as_deref().unwrap_or(&g.text)
}

/// A judge verdict on its way to a [`JudgmentRec`]: `seed_at` indexes the defender requests (side `defender`)
/// or the round's seeds (side `attacker`).
struct PendingJudgment {
    side: Side,
    seed_at: usize,
    i: usize,
    j: Option<usize>,
    raw: String,
    parsed: Option<Vec<f64>>,
    version: u64,
}

/// What a round played, turned into its records off the game thread: on the commit's blocking thread, with
/// their serialization (building a round's ~1 000 records is milliseconds of CPU, which the game thread spent
/// beside the learners before).
struct RoundLog {
    run: String,
    round: u32,
    mode: PayoffMode,
    a_ver: u64,
    d_ver: u64,
    seeds: Vec<Seed>,
    skeys: Vec<String>,
    rws: Vec<Vec<Rw>>,
    resps: Vec<Vec<Resp>>,
    dreqs: Vec<GenRequest>,
    judgments: Vec<PendingJudgment>,
    /// Learn and evaluation records, after the play's.
    tail: Vec<Record>,
    /// An adaptive evaluation still playing, whose records go into `tail` at this index.
    deferred: Option<(usize, Deferred)>,
}

impl RoundLog {
    /// The round's records, in a fixed order: per seed, each rewrite followed by its responses; then the
    /// judgments; then the tail.
    fn records(self) -> Vec<Record> {
        let RoundLog {
            run,
            round,
            mode,
            a_ver,
            d_ver,
            seeds,
            skeys,
            rws,
            resps,
            dreqs,
            judgments,
            tail,
            deferred: _,
        } = self;
        let mut recs = Vec::new();
        for (si, s) in seeds.iter().enumerate() {
            for (ai, rw) in rws[si].iter().enumerate() {
                let akey = format!("{}/a{ai}", skeys[si]);
                recs.push(Record::Rewrite(RewriteRec {
                    run: run.clone(),
                    round,
                    seed_id: s.id.to_string(),
                    set: s.set.to_string(),
                    category: s.category,
                    role: Role::Attacker,
                    version: a_ver,
                    key: akey.clone(),
                    input: s.prompt.to_string(),
                    output: rw.text.clone(),
                    parsed: rw.parsed.clone(),
                    faithful_raw: rw.faithful_raw.clone(),
                    faithful: rw.faithful,
                    valid: rw.valid,
                    representative: rw.representative,
                    reward: rw.reward,
                }));
                if let Some(k) = rw.d {
                    for (i, r) in resps[k].iter().enumerate() {
                        recs.push(Record::Response(ResponseRec {
                            run: run.clone(),
                            round,
                            seed_id: s.id.to_string(),
                            set: s.set.to_string(),
                            category: s.category,
                            role: Role::Defender,
                            version: d_ver,
                            key: format!("{akey}/d{i}"),
                            attack_key: akey.clone(),
                            input: dreqs[k].input.clone(),
                            output: r.out.text.clone(),
                            complied_raw: r.complied_raw.clone(),
                            complied: r.complied,
                            reward: r.reward,
                        }));
                    }
                }
            }
        }
        recs.extend(judgments.into_iter().map(|pj| {
            let (seed_id, group) = match pj.side {
                Side::Defender => (
                    dreqs[pj.seed_at].seed.id.to_string(),
                    dreqs[pj.seed_at].key.clone(),
                ),
                Side::Attacker => (seeds[pj.seed_at].id.to_string(), skeys[pj.seed_at].clone()),
            };
            Record::Judgment(JudgmentRec {
                run: run.clone(),
                round,
                seed_id,
                role: Role::Judge,
                version: pj.version,
                side: pj.side,
                mode,
                group,
                i: pj.i,
                j: pj.j,
                raw: pj.raw,
                parsed: pj.parsed,
            })
        }));
        recs.extend(tail);
        recs
    }
}

/// Run `work` (the engine's own work) while `call` (role requests) is in flight: the call is polled once
/// (which puts its requests on the roles' threads), then `work` runs beside the compute.
async fn overlap<F: Future, W: Future>(call: F, work: W) -> (F::Output, W::Output) {
    use std::task::Poll;
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(out) = std::future::poll_fn(|c| Poll::Ready(call.as_mut().poll(c))).await {
        return (out, work.await);
    }
    tokio::join!(call, work)
}

/// The judge's verdicts on pairs or on single responses (as the payoff mode asks).
enum Verdicts {
    Pairs(Judged<(f64, f64)>),
    Points(Judged<f64>),
}

/// The judge's requests on the defender's responses (pairs or scores), built while the defender generates;
/// the response texts are filled in when they come.
enum DefenderJudged {
    /// `(request index k, i, j)` per pair.
    Pairs(Vec<PairRequest>, Vec<(usize, usize, usize)>),
    /// `(request index k, i)` per score.
    Points(Vec<PointRequest>, Vec<(usize, usize)>),
}

/// The judge's requests on the valid rewrites (pairs or scores), built while the defender generates; the
/// representative responses are filled in once the defender's rewards are known.
enum AttackerJudged {
    /// `(seed index, i, j)` per pair.
    Pairs(Vec<PairRequest>, Vec<(usize, usize, usize)>),
    /// `(seed index, rewrite index)` per score.
    Points(Vec<PointRequest>, Vec<(usize, usize)>),
}

/// Everything the judge will be asked about a round's defender responses and valid rewrites, but their texts.
struct JudgeSkeleton {
    defender: DefenderJudged,
    /// Compliance labels, `(request index k, i)` each.
    labels: (Vec<LabelRequest>, Vec<(usize, usize)>),
    attacker: AttackerJudged,
}

fn judge_skeleton(
    mode: PayoffMode,
    (a_n, d_n): (usize, usize),
    keys: RoundKeys,
    seeds: &[Seed],
    skeys: &[String],
    rws: &[Vec<Rw>],
    dreqs: &[GenRequest],
) -> JudgeSkeleton {
    // Keys are a request's key plus a suffix from these tables (built once; no formatting per request).
    // (Roles answer `a_n` rewrites and `d_n` responses, checked by the worker; the widest row bounds the table.)
    let n = rws.iter().map(Vec::len).fold(a_n.max(d_n), usize::max);
    let pair_sfx: Vec<Vec<String>> = (0..n)
        .map(|i| (0..n).map(|j| format!("/p{i}-{j}")).collect())
        .collect();
    let sfx = |f: fn(usize) -> String| -> Vec<String> { (0..n).map(f).collect() };
    let (d_sfx, d_label_sfx) = (sfx(|i| format!("/d{i}")), sfx(|i| format!("/d{i}/label")));
    let (d_score_sfx, a_score_sfx) = (
        sfx(|i| format!("/d{i}/score")),
        sfx(|i| format!("/a{i}/score")),
    );
    let empty: Arc<str> = Arc::from("");
    // Each rewrite once; its judge requests share it.
    let inputs: Vec<Arc<str>> = dreqs.iter().map(|r| Arc::from(r.input.as_str())).collect();
    let dkeys: Vec<KeyPrefix<'_>> = dreqs.iter().map(|r| keys.prefix(&r.key)).collect();
    let defender = match mode {
        PayoffMode::Pairwise => {
            let pairs = payoff::all_pairs(&(0..d_n).collect::<Vec<_>>());
            let mut reqs = Vec::with_capacity(dreqs.len() * pairs.len());
            let mut idx = Vec::with_capacity(reqs.capacity());
            for (k, req) in dreqs.iter().enumerate() {
                let goal = Goal::of(Role::Defender, req.seed.category);
                for &(i, j) in &pairs {
                    let (key, rng_seed) = dkeys[k].with(&pair_sfx[i][j]);
                    idx.push((k, i, j));
                    reqs.push(PairRequest {
                        rng_seed,
                        key,
                        seed: req.seed.clone(),
                        context: Arc::clone(&inputs[k]),
                        a: Arc::clone(&empty),
                        b: Arc::clone(&empty),
                        goal,
                    });
                }
            }
            DefenderJudged::Pairs(reqs, idx)
        }
        PayoffMode::Pointwise => {
            let mut reqs = Vec::with_capacity(dreqs.len() * d_n);
            let mut idx = Vec::with_capacity(reqs.capacity());
            for (k, req) in dreqs.iter().enumerate() {
                let goal = Goal::of(Role::Defender, req.seed.category);
                for (i, sfx) in d_score_sfx.iter().enumerate().take(d_n) {
                    let (key, rng_seed) = dkeys[k].with(sfx);
                    idx.push((k, i));
                    reqs.push(PointRequest {
                        rng_seed,
                        key,
                        seed: req.seed.clone(),
                        context: Arc::clone(&inputs[k]),
                        response: Arc::clone(&empty),
                        goal,
                    });
                }
            }
            DefenderJudged::Points(reqs, idx)
        }
    };
    let mut lreqs = Vec::with_capacity(dreqs.len() * d_n);
    let mut lidx = Vec::with_capacity(lreqs.capacity());
    for (k, req) in dreqs.iter().enumerate() {
        for i in 0..d_n {
            lidx.push((k, i));
            lreqs.push(LabelRequest {
                rng_seed: dkeys[k].seed_with(&d_label_sfx[i]),
                key: dkeys[k].key_with(&d_sfx[i]),
                seed: req.seed.clone(),
                prompt: Arc::clone(&inputs[k]),
                response: Arc::clone(&empty),
            });
        }
    }
    let attacker = match mode {
        PayoffMode::Pairwise => {
            let mut reqs = Vec::new();
            let mut idx = Vec::new();
            for (si, (s, skey)) in seeds.iter().zip(skeys).enumerate() {
                let prefix = keys.prefix(skey);
                let goal = Goal::of(Role::Attacker, s.category);
                let members: Vec<usize> = rws[si]
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.valid)
                    .map(|(i, _)| i)
                    .collect();
                for (i, j) in payoff::all_pairs(&members) {
                    let (key, rng_seed) = prefix.with(&pair_sfx[i][j]);
                    idx.push((si, i, j));
                    reqs.push(PairRequest {
                        rng_seed,
                        key,
                        seed: s.clone(),
                        context: Arc::clone(&s.prompt),
                        a: Arc::clone(&empty),
                        b: Arc::clone(&empty),
                        goal,
                    });
                }
            }
            AttackerJudged::Pairs(reqs, idx)
        }
        PayoffMode::Pointwise => {
            let mut reqs = Vec::new();
            let mut idx = Vec::new();
            for (si, (s, skey)) in seeds.iter().zip(skeys).enumerate() {
                let prefix = keys.prefix(skey);
                let goal = Goal::of(Role::Attacker, s.category);
                for (ai, rw) in rws[si].iter().enumerate() {
                    if rw.valid {
                        let (key, rng_seed) = prefix.with(&a_score_sfx[ai]);
                        idx.push((si, ai));
                        reqs.push(PointRequest {
                            rng_seed,
                            key,
                            seed: s.clone(),
                            context: Arc::clone(&s.prompt),
                            response: Arc::clone(&empty),
                            goal,
                        });
                    }
                }
            }
            AttackerJudged::Points(reqs, idx)
        }
    };
    JudgeSkeleton {
        defender,
        labels: (lreqs, lidx),
        attacker,
    }
}

/// What a round hands to its commit.
struct Played {
    log: RoundLog,
    timings: Timings,
    retired: Vec<Arc<Vec<u8>>>,
    /// When the round's play ended (its commit follows).
    end: Instant,
    /// The next round's attacker requests, queued behind its update.
    next: Option<Next>,
}

/// The next round's attacker requests (queued behind the attacker's update), with their seeds and keys.
struct Next {
    pending: Pending<Generated>,
    seeds: Vec<Seed>,
    skeys: Vec<String>,
}

/// The seeds of `round`, their keys, and the attacker's requests.
fn attacker_requests(cx: &Ctx<'_>, round: u32) -> (Vec<Seed>, Vec<String>, Vec<GenRequest>) {
    let g = &cx.loaded.scenario.game;
    let seeds = draw(&cx.loaded.train, g.seed, round, g.seeds_per_round);
    let skeys: Vec<String> = seeds.iter().map(|s| format!("r{round}/{}", s.id)).collect();
    let areqs = seeds
        .iter()
        .zip(&skeys)
        .map(|(s, key)| GenRequest {
            rng_seed: derive(g.seed, round.into(), key),
            key: key.clone(),
            role: Role::Attacker,
            seed: s.clone(),
            input: s.prompt.to_string(),
            n: g.attacks_per_seed,
        })
        .collect();
    (seeds, skeys, areqs)
}

/// Play one round. The engine's own work overlaps the roles' compute wherever the data allows: each phase's
/// requests are built, but for the texts still to come, while the phase before it computes.
async fn play_round(
    cx: &Ctx<'_>,
    round: u32,
    states: &mut BTreeMap<Slot, Arc<Vec<u8>>>,
    queued: Option<Next>,
) -> Result<Played, RunError> {
    let sc = &cx.loaded.scenario;
    let g = &sc.game;
    let p = &sc.payoffs;
    let seed = g.seed;
    let (a_n, d_n) = (g.attacks_per_seed, g.responses_per_attack);
    let run = cx.run.clone();
    let mut tm = Timings {
        round,
        ..Default::default()
    };
    let t_round = Instant::now();
    // Requests queued in the round before come with their seeds; otherwise they are made here.
    let (seeds, skeys, queued) = match queued {
        Some(n) => (n.seeds, n.skeys, Ok(n.pending)),
        None => {
            let (seeds, skeys, areqs) = attacker_requests(cx, round);
            (seeds, skeys, Err(areqs))
        }
    };

    // Attacker (its requests may have been queued behind its update in the round before). While it generates: a
    // faithfulness and a defender request for every rewrite (texts filled in when the rewrites come).
    let t = Instant::now();
    let agen = async {
        match queued {
            Ok(p) => cx.answer(p).await.map(|g| (g.gens, g.version)),
            Err(areqs) => cx.generate(Slot::Attacker, areqs).await,
        }
    };
    let keys = RoundKeys::new(seed, round.into());
    let (agens, slots) = overlap(agen, async {
        let a_sfx: Vec<(String, String)> = (0..a_n)
            .map(|ai| (format!("/a{ai}"), format!("/a{ai}/faithful")))
            .collect();
        let slots: Vec<Vec<(FaithRequest, GenRequest)>> = seeds
            .iter()
            .zip(&skeys)
            .map(|(s, skey)| {
                let prefix = keys.prefix(skey);
                a_sfx
                    .iter()
                    .map(|(a_sfx, f_sfx)| {
                        let (key, rng_seed) = prefix.with(a_sfx);
                        let f = FaithRequest {
                            rng_seed: prefix.seed_with(f_sfx),
                            key: key.clone(),
                            seed: s.clone(),
                            rewrite: String::new(),
                        };
                        let d = GenRequest {
                            rng_seed,
                            key,
                            role: Role::Defender,
                            seed: s.clone(),
                            input: String::new(),
                            n: d_n,
                        };
                        (f, d)
                    })
                    .collect()
            })
            .collect();
        slots
    })
    .await;
    let (agens, a_ver) = agens?;
    tm.attacker_ms = ms(t);

    // Faithfulness gate: its requests go out first; the rewrites' records are built while the judge works.
    let t = Instant::now();
    let mut freqs = Vec::new();
    let mut fidx = Vec::new();
    let mut dslots = Vec::with_capacity(seeds.len());
    for (si, (row, srow)) in agens.iter().zip(slots).enumerate() {
        let mut drow = Vec::with_capacity(a_n);
        for (ai, (o, (mut f, d))) in row.iter().zip(srow).enumerate() {
            if let Some(text) = &o.parsed {
                fidx.push((si, ai));
                f.rewrite = text.clone();
                freqs.push(f);
            }
            drow.push(d);
        }
        dslots.push(drow);
    }
    let rewrites = async {
        agens
            .into_iter()
            .map(|gs| {
                gs.into_iter()
                    .map(|o| Rw {
                        valid: false,
                        text: o.text,
                        parsed: o.parsed,
                        logprobs: o.logprobs,
                        faithful_raw: None,
                        faithful: None,
                        d: None,
                        representative: None,
                        reward: None,
                    })
                    .collect()
            })
            .collect::<Vec<Vec<Rw>>>()
    };
    let mut rws = if p.faithfulness_gate {
        let faithful = async {
            if freqs.is_empty() {
                return Ok(Vec::new());
            }
            let judged = cx.call(Slot::Judge, Faithful(freqs)).await?;
            Ok::<_, RunError>(judged.verdicts)
        };
        let (verdicts, mut rws) = overlap(faithful, rewrites).await;
        for ((si, ai), vd) in fidx.iter().zip(verdicts?) {
            let rw = &mut rws[*si][*ai];
            rw.valid = vd.value == Some(true);
            rw.faithful = vd.value;
            rw.faithful_raw = Some(vd.raw);
        }
        rws
    } else {
        let mut rws = rewrites.await;
        for (si, ai) in &fidx {
            rws[*si][*ai].valid = true;
        }
        rws
    };
    tm.faithfulness_ms = ms(t);

    // Defender rollouts for valid rewrites. While it generates: the judge's requests about its responses and
    // about the valid rewrites.
    let t = Instant::now();
    let mut dreqs = Vec::new();
    for (row, drow) in rws.iter_mut().zip(dslots) {
        for (rw, mut d) in row.iter_mut().zip(drow) {
            if rw.valid {
                rw.d = Some(dreqs.len());
                d.input = rw.parsed.clone().unwrap_or_default();
                dreqs.push(d);
            }
        }
    }
    let dgen = cx.generate(Slot::Defender, dreqs.clone());
    let (dgens, skeleton) = overlap(dgen, async {
        judge_skeleton(p.mode, (a_n, d_n), keys, &seeds, &skeys, &rws, &dreqs)
    })
    .await;
    let (dgens, d_ver) = dgens?;
    let mut resps: Vec<Vec<Resp>> = dgens
        .into_iter()
        .map(|gs| {
            gs.into_iter()
                .map(|out| Resp {
                    out,
                    complied_raw: String::new(),
                    complied: None,
                    reward: None,
                })
                .collect()
        })
        .collect();
    tm.defender_ms = ms(t);

    // Judge: defender rewards and compliance labels, in one call.
    let t = Instant::now();
    let JudgeSkeleton {
        mut defender,
        labels: (mut lreqs, lidx),
        mut attacker,
    } = skeleton;
    // Each response's text once; the requests share it.
    let shown_texts: Vec<Vec<Arc<str>>> = resps
        .iter()
        .map(|row| row.iter().map(|r| Arc::from(shown(&r.out))).collect())
        .collect();
    let text = |k: usize, i: usize| Arc::clone(&shown_texts[k][i]);
    match &mut defender {
        DefenderJudged::Pairs(reqs, idx) => {
            for (r, &(k, i, j)) in reqs.iter_mut().zip(idx.iter()) {
                r.a = text(k, i);
                r.b = text(k, j);
            }
        }
        DefenderJudged::Points(reqs, idx) => {
            for (r, &(k, i)) in reqs.iter_mut().zip(idx.iter()) {
                r.response = text(k, i);
            }
        }
    }
    for (r, &(k, i)) in lreqs.iter_mut().zip(&lidx) {
        r.response = text(k, i);
    }
    let label_ask = (!lreqs.is_empty()).then(|| Complied(lreqs));
    let judge = async {
        match &mut defender {
            DefenderJudged::Pairs(reqs, _) => {
                let ask = (!reqs.is_empty()).then(|| Compare(std::mem::take(reqs)));
                let (d, l) = cx.judge_both(ask, label_ask).await?;
                Ok::<_, RunError>((d.map(Verdicts::Pairs), l))
            }
            DefenderJudged::Points(reqs, _) => {
                let ask = (!reqs.is_empty()).then(|| Score(std::mem::take(reqs)));
                let (d, l) = cx.judge_both(ask, label_ask).await?;
                Ok((d.map(Verdicts::Points), l))
            }
        }
    };
    // While the judge works: the defender's learner batch but for its rewards (filled in below).
    let d_learns = cx.loaded.learns(Side::Defender, round);
    let (judged, mut d_groups) = overlap(judge, async {
        if !d_learns {
            return Vec::new();
        }
        dreqs
            .iter()
            .enumerate()
            .map(|(k, req)| Group {
                key: req.key.clone(),
                seed: req.seed.clone(),
                input: req.input.clone(),
                outputs: resps[k].iter().map(|r| r.out.text.clone()).collect(),
                rewards: Vec::new(),
                logprobs: resps[k].iter().map(|r| r.out.logprobs.clone()).collect(),
            })
            .collect::<Vec<Group>>()
    })
    .await;
    let (dout, labels) = judged?;
    let labels = labels.map(|l| l.verdicts).unwrap_or_default();
    // Verdicts become judgment records with the commit (`PendingJudgment`, `RoundLog`).
    let mut judgments: Vec<PendingJudgment> = Vec::new();
    let jrec = |seed_at: usize,
                side: Side,
                i: usize,
                j: Option<usize>,
                raw: String,
                parsed: Option<Vec<f64>>,
                version: u64| PendingJudgment {
        side,
        seed_at,
        i,
        j,
        raw,
        parsed,
        version,
    };
    // The rewards first: the defender's update waits on them; its judgment records are made after it is sent.
    let mut d_pairs = None;
    let mut d_points = None;
    match (defender, dout) {
        (DefenderJudged::Pairs(_, idx), Some(Verdicts::Pairs(out))) => {
            let (verdicts, v) = (out.verdicts, out.version);
            // `judge_skeleton` lists the pairs request by request: each request's pairs are one stretch.
            let mut at = 0;
            for (k, row) in resps.iter_mut().enumerate() {
                let len = idx[at..].iter().take_while(|e| e.0 == k).count();
                let judged = idx[at..at + len]
                    .iter()
                    .zip(verdicts.get(at..).unwrap_or_default())
                    .map(|(&(_, i, j), vd)| Judgment::Pair(i, j, vd.value));
                for (r, rw) in payoff::rewards(row.len(), judged, p.defender_weight)
                    .into_iter()
                    .zip(row.iter_mut())
                {
                    rw.reward = r;
                }
                at += len;
            }
            d_pairs = Some((idx, verdicts, v));
        }
        (DefenderJudged::Points(_, idx), Some(Verdicts::Points(out))) => {
            let (mut verdicts, v) = (out.verdicts, out.version);
            let mut per: Vec<Vec<Judgment>> = vec![Vec::new(); resps.len()];
            for (&(k, i), vd) in idx.iter().zip(&mut verdicts) {
                vd.value = vd.value.filter(|x| x.is_finite());
                per[k].push(Judgment::Point(i, vd.value));
            }
            for (row, judged) in resps.iter_mut().zip(per) {
                for (r, rw) in payoff::rewards(row.len(), judged, p.defender_weight)
                    .into_iter()
                    .zip(row.iter_mut())
                {
                    rw.reward = r;
                }
            }
            d_points = Some((idx, verdicts, v));
        }
        _ => {}
    }

    // The defender's update needs only its rewards: it starts now, while the judge compares the attacker's
    // rewrites.
    let d_learn = if d_learns {
        for (k, group) in d_groups.iter_mut().enumerate() {
            group.rewards = resps[k].iter().map(|r| r.reward).collect();
        }
        Some(cx.submit(Slot::Defender, Learn(d_groups))?)
    } else {
        None
    };
    if let Some((idx, verdicts, v)) = d_pairs {
        for ((k, i, j), vd) in idx.into_iter().zip(verdicts) {
            let parsed = vd.value.map(|(a, b)| vec![a, b]);
            judgments.push(jrec(k, Side::Defender, i, Some(j), vd.raw, parsed, v));
        }
    }
    if let Some((idx, verdicts, v)) = d_points {
        for ((k, i), vd) in idx.into_iter().zip(verdicts) {
            let parsed = vd.value.map(|x| vec![x]);
            judgments.push(jrec(k, Side::Defender, i, None, vd.raw, parsed, v));
        }
    }

    // Representatives.
    for row in rws.iter_mut() {
        for rw in row.iter_mut() {
            if let Some(k) = rw.d {
                let rewards: Vec<Option<f64>> = resps[k].iter().map(|r| r.reward).collect();
                rw.representative = Some(payoff::representative(&rewards, g.optimistic));
            }
        }
    }
    let empty: Arc<str> = Arc::from("");
    let rep_text = |rw: &Rw| -> Arc<str> {
        match (rw.d, rw.representative) {
            (Some(k), Some(i)) => shown_texts
                .get(k)
                .and_then(|row| row.get(i))
                .map_or_else(|| Arc::clone(&empty), Arc::clone),
            _ => Arc::clone(&empty),
        }
    };

    // Judge: attacker rewards. While it judges: the labels go to the responses and the attacker's learner batch
    // is built (its rewards filled in after).
    let aask = match &mut attacker {
        AttackerJudged::Pairs(reqs, idx) => {
            for (r, &(si, i, j)) in reqs.iter_mut().zip(idx.iter()) {
                r.a = rep_text(&rws[si][i]);
                r.b = rep_text(&rws[si][j]);
            }
            (!reqs.is_empty()).then(|| Compare(std::mem::take(reqs)))
        }
        .map(Ok),
        AttackerJudged::Points(reqs, idx) => {
            for (r, &(si, ai)) in reqs.iter_mut().zip(idx.iter()) {
                r.response = rep_text(&rws[si][ai]);
            }
            (!reqs.is_empty()).then(|| Score(std::mem::take(reqs)))
        }
        .map(Err),
    };
    let (aout, mut a_groups) = overlap(
        async {
            Ok::<_, RunError>(match aask {
                Some(Ok(pairs)) => Some(Verdicts::Pairs(cx.call(Slot::Judge, pairs).await?)),
                Some(Err(points)) => Some(Verdicts::Points(cx.call(Slot::Judge, points).await?)),
                None => None,
            })
        },
        async {
            for ((k, i), vd) in lidx.into_iter().zip(labels) {
                resps[k][i].complied = vd.value;
                resps[k][i].complied_raw = vd.raw;
            }
            // The attacker's batch but for its rewards (filled in below).
            seeds
                .iter()
                .enumerate()
                .map(|(si, s)| Group {
                    key: skeys[si].clone(),
                    seed: s.clone(),
                    input: s.prompt.to_string(),
                    outputs: rws[si].iter().map(|r| r.text.clone()).collect(),
                    rewards: Vec::new(),
                    logprobs: rws[si].iter().map(|r| r.logprobs.clone()).collect(),
                })
                .collect::<Vec<Group>>()
        },
    )
    .await;
    let aout = aout?;
    // The attacker's verdicts per seed; its rewards follow (the invalid rewrites get the error reward).
    let mut per: Vec<Vec<Judgment>> = vec![Vec::new(); seeds.len()];
    match attacker {
        AttackerJudged::Pairs(_, idx) => {
            let (verdicts, v) = match aout {
                Some(Verdicts::Pairs(out)) => (out.verdicts, out.version),
                _ => (Vec::new(), 0),
            };
            for ((si, i, j), vd) in idx.into_iter().zip(verdicts) {
                per[si].push(Judgment::Pair(i, j, vd.value));
                let parsed = vd.value.map(|(a, b)| vec![a, b]);
                judgments.push(jrec(si, Side::Attacker, i, Some(j), vd.raw, parsed, v));
            }
        }
        AttackerJudged::Points(_, idx) => {
            let (verdicts, v) = match aout {
                Some(Verdicts::Points(out)) => (out.verdicts, out.version),
                _ => (Vec::new(), 0),
            };
            for ((si, ai), vd) in idx.into_iter().zip(verdicts) {
                let val = vd.value.filter(|x| x.is_finite());
                per[si].push(Judgment::Point(ai, val));
                let parsed = val.map(|x| vec![x]);
                judgments.push(jrec(si, Side::Attacker, ai, None, vd.raw, parsed, v));
            }
        }
    }
    for (row, judged) in rws.iter_mut().zip(per) {
        let valid: Vec<bool> = row.iter().map(|rw| rw.valid).collect();
        let rewards = payoff::attacker_rewards(&valid, judged, p.attacker_weight, p.error_reward);
        for (rw, r) in row.iter_mut().zip(rewards) {
            rw.reward = r;
        }
    }
    tm.judge_ms = ms(t);

    // Learners.
    let t = Instant::now();
    let mut learn_recs = Vec::new();
    let mut retired = Vec::new();
    for (group, row) in a_groups.iter_mut().zip(&rws) {
        group.rewards = row.iter().map(|r| r.reward).collect();
    }
    let a_learns = cx.loaded.learns(Side::Attacker, round);
    let learners = async {
        tokio::join!(
            async {
                if a_learns {
                    Some(cx.call(Slot::Attacker, Learn(a_groups)).await).transpose()
                } else {
                    Ok(None)
                }
            },
            async {
                match d_learn {
                    Some(p) => cx.answer(p).await.map(Some),
                    None => Ok(None),
                }
            }
        )
    };
    // The next round's attacker requests queue behind its update (its thread goes on to them at once), unless an
    // evaluation (which reads the updated players) comes between.
    let every = sc.eval.every;
    let eval_due = (round == g.rounds || (every > 0 && round.is_multiple_of(every)))
        && !cx.loaded.eval.is_empty();
    // (`overlap` sends the learners' requests first: the attacker's update comes before these in its queue.)
    let ((a_res, d_res), next) = overlap(learners, async {
        if round >= g.rounds || eval_due {
            return None;
        }
        let (seeds, skeys, areqs) = attacker_requests(cx, round + 1);
        if areqs.is_empty() {
            return None;
        }
        // A failed submit leaves the request to the next round (which reports the error).
        let pending = cx.submit(Slot::Attacker, Generate(areqs)).ok()?;
        Some(Next {
            pending,
            seeds,
            skeys,
        })
    })
    .await;
    for (slot, role, res) in [
        (Slot::Attacker, Role::Attacker, a_res?),
        (Slot::Defender, Role::Defender, d_res?),
    ] {
        if let Some(Learned {
            report,
            version,
            state,
        }) = res
        {
            retired.extend(states.insert(slot, state));
            learn_recs.push(Record::Learn(LearnRec {
                run: run.clone(),
                round,
                role,
                version,
                report,
            }));
        }
    }
    tm.learn_ms = ms(t);

    // Held-out evaluation.
    let t = Instant::now();
    let (eval_recs, deferred) = if eval_due {
        eval_phase(cx, round, states).await?
    } else {
        (Vec::new(), None)
    };
    tm.eval_ms = ms(t);

    let mut tail = learn_recs;
    let deferred = deferred.map(|(at, d)| (tail.len() + at, d));
    tail.extend(eval_recs.into_iter().map(Record::Eval));
    tm.total_ms = ms(t_round);
    Ok(Played {
        log: RoundLog {
            run,
            round,
            mode: p.mode,
            a_ver,
            d_ver,
            seeds,
            skeys,
            rws,
            resps,
            dreqs,
            judgments,
            tail,
            deferred,
        },
        timings: tm,
        retired,
        end: Instant::now(),
        next,
    })
}

/// The attacker, defender and judge workers of `loaded`, restored from `restore` where given.
fn role_slots(
    loaded: &Loaded,
    registry: &Registry,
    run_dir: &Path,
    restore: &BTreeMap<Slot, Vec<u8>>,
) -> BTreeMap<Slot, SlotSpec> {
    let sc = &loaded.scenario;
    let mut slots = BTreeMap::new();
    for (slot, role, fault) in [
        (Slot::Attacker, Role::Attacker, &sc.faults.attacker),
        (Slot::Defender, Role::Defender, &sc.faults.defender),
        (Slot::Judge, Role::Judge, &sc.faults.judge),
    ] {
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
                restore: Arc::new(restore.get(&slot).cloned().unwrap_or_default()),
                faults: fault_plan(fault),
            },
        );
    }
    slots
}

/// Evaluate saved players against each other without training: the roles of `loaded` start from `init`
/// (role states, e.g. checkpoints of runs; a role without one is built fresh), and the eval sets of `mode`'s
/// kind are played once through the attacker (`mode` = `attacker`) or as written (`plain`). `round` numbers
/// the records and keys the sampling seeds: with the checkpoints of round `r` of a run and `round = r`, the
/// records equal the run's own evaluation of that round. `work_dir` is the run directory the roles see
/// (nothing is written there by the engine).
pub async fn evaluate(
    loaded: &Loaded,
    registry: &Registry,
    work_dir: &Path,
    init: BTreeMap<Slot, Vec<u8>>,
    mode: EvalMode,
    round: u32,
) -> Result<Vec<EvalRec>, RunError> {
    evaluate_watched(loaded, registry, work_dir, init, mode, round, None).await
}

/// [`evaluate`], telling `on_step` after each chunk (`eval.chunk`) of each phase.
pub async fn evaluate_watched(
    loaded: &Loaded,
    registry: &Registry,
    work_dir: &Path,
    init: BTreeMap<Slot, Vec<u8>>,
    mode: EvalMode,
    round: u32,
    on_step: Option<&(dyn Fn(&EvalStep) + Sync)>,
) -> Result<Vec<EvalRec>, RunError> {
    let (game, join) = start_outside(loaded, registry, work_dir, &init).await?;
    let cx = Ctx::outside(loaded, registry, work_dir, &game, on_step);
    let out = match mode {
        EvalMode::Plain => eval_plain(&cx, round).await,
        EvalMode::Attacker => eval_attacked(&cx, round, EvalMode::Attacker).await,
        EvalMode::Adaptive => Err(rerr("evaluate: use `best_response` for the adaptive mode")),
    };
    game.stop();
    let _ = join.await;
    out
}

/// The held-out evaluation of `round`, in every configured mode.
async fn eval_phase(
    cx: &Ctx<'_>,
    round: u32,
    states: &BTreeMap<Slot, Arc<Vec<u8>>>,
) -> Result<(Vec<EvalRec>, Option<(usize, Deferred)>), RunError> {
    let modes = &cx.loaded.scenario.eval.modes;
    // The adaptive evaluation plays a game of its own, on role threads of its own: it starts beside the other
    // evaluations (whose compute covers its start-up) and plays on beside the game (`eval.adaptive.beside`; the
    // round's commit takes its records, at their index among the others) or the round waits for it here.
    // Records keep the order of `modes`; of two failures, the first mode's is reported.
    let adaptive = async {
        match modes.contains(&EvalMode::Adaptive) {
            true => start_adaptive(cx, round, states).await.map(Some),
            false => Ok(None),
        }
    };
    let others = async {
        let mut done = Vec::new();
        for mode in modes {
            let recs = match mode {
                EvalMode::Plain => eval_plain(cx, round).await,
                EvalMode::Attacker => eval_attacked(cx, round, EvalMode::Attacker).await,
                EvalMode::Adaptive => continue,
            };
            let failed = recs.is_err();
            done.push(recs);
            if failed {
                break;
            }
        }
        done
    };
    // The others first: their first requests go out before the sub-run's start-up.
    let (others, mut adaptive) = tokio::join!(others, adaptive);
    let mut others = others.into_iter();
    let mut out = Vec::new();
    let mut deferred = None;
    for mode in modes {
        match mode {
            EvalMode::Adaptive => match std::mem::replace(&mut adaptive, Ok(None))? {
                Some(d) if cx.loaded.scenario.eval.adaptive.beside => {
                    deferred = Some((out.len(), d))
                }
                Some(d) => out.extend(d.records().await?),
                None => {}
            },
            _ => match others.next() {
                Some(recs) => out.extend(recs?),
                None => break,
            },
        }
    }
    Ok((out, deferred))
}

/// One defender answer per request, and the judge's compliance label for each; with the defender's version.
async fn answer_and_label(
    cx: &Ctx<'_>,
    round: u32,
    reqs: &[GenRequest],
) -> Result<(Vec<Generation>, Vec<Verdict<bool>>, u64), RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let (outs, version) = cx.generate_eval(Slot::Defender, "defender", reqs).await?;
    let lreqs: Vec<LabelRequest> = reqs
        .iter()
        .zip(&outs)
        .map(|(r, o)| LabelRequest {
            rng_seed: derive_suffixed(seed, round.into(), &r.key, "/label"),
            key: r.key.clone(),
            seed: r.seed.clone(),
            prompt: Arc::from(r.input.as_str()),
            response: Arc::from(shown(o)),
        })
        .collect();
    let labels = cx.bools_eval("labels", &lreqs, Complied).await?;
    Ok((outs, labels, version))
}

/// Eval sets answered by the defender as written.
async fn eval_plain(cx: &Ctx<'_>, round: u32) -> Result<Vec<EvalRec>, RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let mut ereqs = Vec::new();
    for (set, seeds) in &cx.loaded.eval {
        for s in seeds {
            let key = format!("eval/r{round}/{set}/{}", s.id);
            ereqs.push(GenRequest {
                rng_seed: derive(seed, round.into(), &key),
                key,
                role: Role::Defender,
                seed: s.clone(),
                input: s.prompt.to_string(),
                n: 1,
            });
        }
    }
    let (outs, labels, ev) = answer_and_label(cx, round, &ereqs).await?;
    Ok(ereqs
        .iter()
        .zip(outs)
        .zip(labels)
        .map(|((r, o), vd)| EvalRec {
            run: cx.run.clone(),
            round,
            set: r.seed.set.to_string(),
            seed_id: r.seed.id.to_string(),
            category: r.seed.category,
            version: ev,
            key: r.key.clone(),
            input: r.input.clone(),
            output: o.text,
            complied_raw: vd.raw,
            complied: vd.value,
            mode: EvalMode::Plain,
            attack: None,
            valid: None,
        })
        .collect())
}

/// Eval sets rewritten by the current attacker (one attempt per seed), gated for faithfulness like the game
/// (when the scenario gates), answered by the defender and labelled.
async fn eval_attacked(cx: &Ctx<'_>, round: u32, mode: EvalMode) -> Result<Vec<EvalRec>, RunError> {
    let attacks = attack_phase(cx, round, mode).await?;
    defend_phase(cx, round, mode, &attacks).await
}

/// The attacker's half of an attacked evaluation: one rewrite per held-out seed and its validity.
struct Attacks {
    reqs: Vec<GenRequest>,
    gens: Vec<Generation>,
    valid: Vec<bool>,
}

/// One rewrite per seed of the attack sets by the current attacker, gated for faithfulness when the scenario
/// gates (an unparseable or unfaithful rewrite is a failed attack).
async fn attack_phase(cx: &Ctx<'_>, round: u32, mode: EvalMode) -> Result<Attacks, RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let mut areqs = Vec::new();
    let only = &cx.loaded.scenario.eval.attack_sets;
    for (set, seeds) in &cx.loaded.eval {
        if only.as_ref().is_some_and(|o| !o.contains(set)) {
            continue;
        }
        for s in seeds {
            let key = format!("eval/r{round}/{mode}/{set}/{}", s.id);
            areqs.push(GenRequest {
                rng_seed: derive(seed, round.into(), &key),
                key,
                role: Role::Attacker,
                seed: s.clone(),
                input: s.prompt.to_string(),
                n: 1,
            });
        }
    }
    let (attacks, _) = cx.generate_eval(Slot::Attacker, "attacker", &areqs).await?;
    let mut valid: Vec<bool> = attacks.iter().map(|a| a.parsed.is_some()).collect();
    if cx.loaded.scenario.payoffs.faithfulness_gate {
        let mut idx = Vec::new();
        let mut freqs = Vec::new();
        for (i, (r, a)) in areqs.iter().zip(&attacks).enumerate() {
            if let Some(text) = &a.parsed {
                idx.push(i);
                freqs.push(FaithRequest {
                    rng_seed: derive_suffixed(seed, round.into(), &r.key, "/faithful"),
                    key: r.key.clone(),
                    seed: r.seed.clone(),
                    rewrite: text.clone(),
                });
            }
        }
        let verdicts = cx
            .bools_eval("faithfulness", &freqs, Faithful)
            .await?;
        for (i, vd) in idx.into_iter().zip(verdicts) {
            valid[i] = vd.value == Some(true);
        }
    }
    Ok(Attacks {
        reqs: areqs,
        gens: attacks,
        valid,
    })
}

/// The defender's half: the valid rewrites answered by the current defender and labelled by the judge.
async fn defend_phase(
    cx: &Ctx<'_>,
    round: u32,
    mode: EvalMode,
    attacks: &Attacks,
) -> Result<Vec<EvalRec>, RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let valid = &attacks.valid;
    let mut dreqs = Vec::new();
    let mut didx = Vec::new();
    for (i, (r, a)) in attacks.reqs.iter().zip(&attacks.gens).enumerate() {
        if valid[i] {
            didx.push(i);
            dreqs.push(GenRequest {
                rng_seed: derive_suffixed(seed, round.into(), &r.key, "/d"),
                key: r.key.clone(),
                role: Role::Defender,
                seed: r.seed.clone(),
                input: a.parsed.clone().unwrap_or_default(),
                n: 1,
            });
        }
    }
    let (answers, labels, dv) = answer_and_label(cx, round, &dreqs).await?;
    let mut answered: BTreeMap<usize, (String, Generation, Verdict<bool>)> = BTreeMap::new();
    for (((i, r), o), vd) in didx.into_iter().zip(dreqs).zip(answers).zip(labels) {
        answered.insert(i, (r.input, o, vd));
    }
    Ok(attacks
        .reqs
        .iter()
        .zip(&attacks.gens)
        .enumerate()
        .map(|(i, (r, a))| {
            let (input, output, complied_raw, complied) = match answered.remove(&i) {
                Some((input, o, vd)) => (input, o.text, vd.raw, vd.value),
                None => (String::new(), String::new(), String::new(), None),
            };
            EvalRec {
                run: cx.run.clone(),
                round,
                set: r.seed.set.to_string(),
                seed_id: r.seed.id.to_string(),
                category: r.seed.category,
                version: dv,
                key: r.key.clone(),
                input,
                output,
                complied_raw,
                complied,
                mode,
                attack: Some(a.text.clone()),
                valid: Some(valid[i]),
            }
        })
        .collect())
}

/// One cell of a cross-play matrix (attacker `a` against defender `d`, indices into the given states).
#[derive(Debug)]
pub struct CrossCell {
    pub attacker: usize,
    pub defender: usize,
    /// The cell's evaluation records (mode `attacker`), or why it could not be played.
    pub records: Result<Vec<EvalRec>, RunError>,
}

/// Cross-play: every attacker state against every defender state (states as the roles save them, e.g. the
/// checkpoints of runs), each cell the `attacker`-mode evaluation of `round` — record for record what
/// [`evaluate`] gives for that pair — but with one game: each role is built once and the states are swapped in
/// (a [`Load`] request), each attacker's rewrites and faithfulness verdicts are made once and answered by every
/// defender. So a pretrained model is loaded three times in all instead of three times per cell. `on_cell` is
/// called after each cell (for progress). An attacker or defender state that does not load fails only its cells.
pub async fn crossplay(
    loaded: &Loaded,
    registry: &Registry,
    work_dir: &Path,
    attackers: &[Arc<Vec<u8>>],
    defenders: &[Arc<Vec<u8>>],
    round: u32,
    on_cell: &mut (dyn FnMut(&CrossCell) + Send),
) -> Result<Vec<CrossCell>, RunError> {
    let (game, join) = start_outside(loaded, registry, work_dir, &BTreeMap::new()).await?;
    let cx = Ctx::outside(loaded, registry, work_dir, &game, None);
    let load = |slot: Slot, state: &Arc<Vec<u8>>| {
        let cx = &cx;
        let state = state.clone();
        async move {
            cx.call(slot, Load(state)).await
        }
    };
    let mode = EvalMode::Attacker;
    let mut attacks = Vec::with_capacity(attackers.len());
    for (i, a) in attackers.iter().enumerate() {
        let made = match load(Slot::Attacker, a).await {
            Ok(()) => attack_phase(&cx, round, mode).await,
            Err(e) => Err(rerr(format!("attacker {i}: {e}"))),
        };
        attacks.push(made);
    }
    let mut cells = Vec::with_capacity(attackers.len() * defenders.len());
    for (j, d) in defenders.iter().enumerate() {
        let loaded_d = load(Slot::Defender, d).await;
        for (i, att) in attacks.iter().enumerate() {
            let records = match (&loaded_d, att) {
                (Err(e), _) => Err(rerr(format!("defender {j}: {e}"))),
                (_, Err(e)) => Err(rerr(e.0.clone())),
                (Ok(()), Ok(att)) => defend_phase(&cx, round, mode, att).await,
            };
            let cell = CrossCell {
                attacker: i,
                defender: j,
                records,
            };
            on_cell(&cell);
            cells.push(cell);
        }
    }
    game.stop();
    let _ = join.await;
    Ok(cells)
}

/// A scenario for a best-response attacker against a frozen defender: the same game, players and judge, with
/// the defender frozen, `rounds` rounds, and the `attacker` evaluation after the last round only.
pub fn best_response_scenario(loaded: &Loaded, rounds: u32, tag: &str) -> Loaded {
    let mut sub = loaded.clone();
    let sc = &mut sub.scenario;
    sc.game.schedule = crate::scenario::Schedule::FrozenDefender;
    sc.game.rounds = rounds;
    if let Some(k) = sc.eval.adaptive.seeds_per_round {
        sc.game.seeds_per_round = k;
    }
    sc.eval.every = 0;
    sc.eval.modes = vec![EvalMode::Attacker];
    sc.checkpoints = Default::default();
    sc.replay.fsync = false;
    sc.faults = Default::default();
    sub.run_id = format!("{}/{tag}", loaded.run_id);
    sub.resolved = toml::to_string(&sub.scenario).unwrap_or_default();
    sub
}

/// Train a best-response attacker from `attacker` against the frozen `defender` (states as the roles save them)
/// for `rounds` rounds in `dir` (a run directory of its own, replaced if present), and return its final
/// evaluation through that attacker (records of mode `attacker`, rounds numbered within the sub-run).
pub async fn best_response(
    loaded: &Loaded,
    registry: &Registry,
    dir: &Path,
    rounds: u32,
    init: BTreeMap<Slot, Vec<u8>>,
) -> Result<Vec<EvalRec>, RunError> {
    SubRun::start(loaded, registry, dir, rounds, init, None)?
        .finish()
        .await
}

/// A best-response sub-run ([`best_response`]) playing on a game loop of its own.
struct SubRun {
    rounds: u32,
    done: tokio::task::JoinHandle<Result<RunSummary, RunError>>,
}

impl SubRun {
    /// Start the sub-run in `dir`; with `parent`, its role time and compute count in the parent game's meters
    /// too, and it holds the parent's sub-run slot until its last round has played.
    fn start(
        loaded: &Loaded,
        registry: &Registry,
        dir: &Path,
        rounds: u32,
        init: BTreeMap<Slot, Vec<u8>>,
        parent: Option<Parent>,
    ) -> Result<SubRun, RunError> {
        let tag = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "best-response".into());
        let sub = best_response_scenario(loaded, rounds, &tag);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| rerr(format!("{}: {e}", dir.display())))?;
        }
        let (registry, dir) = (registry.clone(), dir.to_path_buf());
        let done = tokio::spawn(async move {
            run_with(
                &sub,
                &registry,
                &dir,
                false,
                RunOptions { init },
                parent,
                &mut |_: &Progress| {},
            )
            .await
        });
        Ok(SubRun { rounds, done })
    }

    /// Wait for the sub-run to end; its last round's evaluation through its attacker (records of mode
    /// `attacker`, rounds numbered within the sub-run).
    async fn finish(self) -> Result<Vec<EvalRec>, RunError> {
        let summary = match self.done.await {
            Ok(r) => r?,
            Err(panic) => return Err(rerr(format!("best-response run: {panic}"))),
        };
        Ok(summary
            .final_eval
            .into_iter()
            .filter(|e| e.round == self.rounds && e.mode == EvalMode::Attacker)
            .collect())
    }
}

/// The adaptive evaluation of `round`: a best-response attacker from checkpoint `r0` against the current
/// defender, its sub-run kept in `<run dir>/adaptive/r<round>/`. Started here (once one of the
/// `eval.adaptive.concurrent` sub-run slots is free), it plays beside the game.
async fn start_adaptive(
    cx: &Ctx<'_>,
    round: u32,
    states: &BTreeMap<Slot, Arc<Vec<u8>>>,
) -> Result<Deferred, RunError> {
    let attacker = cx.initial.get(&Slot::Attacker).cloned().ok_or_else(|| {
        rerr(format!(
            "adaptive evaluation: no initial attacker state (checkpoints/r0/attacker.bin) in {}",
            cx.run_dir.display()
        ))
    })?;
    let mut init = BTreeMap::new();
    init.insert(Slot::Attacker, attacker);
    for slot in [Slot::Defender, Slot::Judge] {
        if let Some(s) = states.get(&slot) {
            init.insert(slot, s.to_vec());
        }
    }
    let permit = Arc::clone(&cx.sub_run_slot)
        .acquire_owned()
        .await
        .map_err(|e| rerr(format!("internal: adaptive evaluation: {e}")))?;
    let dir = cx.run_dir.join("adaptive").join(format!("r{round}"));
    let sub = SubRun::start(
        cx.loaded,
        cx.registry,
        &dir,
        cx.loaded.scenario.eval.adaptive.rounds,
        init,
        Some(Parent {
            meters: Arc::clone(&cx.meters),
            slot: permit,
        }),
    )?;
    Ok(Deferred {
        sub,
        run: cx.run.clone(),
        round,
    })
}

/// An adaptive evaluation still playing.
struct Deferred {
    sub: SubRun,
    run: String,
    round: u32,
}

impl Deferred {
    /// The adaptive evaluation's records, once the sub-run is complete on disk.
    async fn records(self) -> Result<Vec<EvalRec>, RunError> {
        let rounds = self.sub.rounds;
        let recs = self.sub.finish().await?;
        let round = self.round;
        let (from, to) = (
            format!("eval/r{rounds}/attacker/"),
            format!("eval/r{round}/adaptive/"),
        );
        Ok(recs
            .into_iter()
            .map(|mut e| {
                e.key = e.key.replacen(&from, &to, 1);
                e.run = self.run.clone();
                e.round = round;
                e.mode = EvalMode::Adaptive;
                e
            })
            .collect())
    }
}

/// Rounds played but not yet committed hold the states they write until their commit.
struct Behind;

impl Behind {
    /// At most this many rounds wait for their commit…
    const ROUNDS: usize = 32;
    /// …and, beyond the newest, they hold at most this many bytes of states.
    const BYTES: usize = 256 << 20;

    /// With `waiting` rounds (the newest included) not yet committed, the older ones holding `bytes` of
    /// states, must the game wait for the oldest?
    fn over(waiting: usize, bytes: usize) -> bool {
        waiting > Self::ROUNDS || (waiting > 1 && bytes > Self::BYTES)
    }
}

/// A round's records on their way to the log.
struct CommitPipeline {
    run: String,
    round: u32,
    checkpoint: bool,
    log: RoundLog,
    /// States the round replaced: freed on the blocking thread (freeing a model's state returns its pages to
    /// the system, which takes a while).
    retired: Vec<Arc<Vec<u8>>>,
    states: Vec<(String, Arc<Vec<u8>>)>,
    /// Told when the round before is committed (none for the first round of this process): a round's records
    /// are folded and committed only after those of the round before.
    after: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Tells the round after.
    committed: tokio::sync::oneshot::Sender<()>,
    /// The run's summary so far: the round's records are folded in, then freed on the blocking thread.
    tally: Arc<std::sync::Mutex<Tally>>,
}

/// A committed round.
struct Committed {
    round: u32,
    metrics: Metrics,
}

impl CommitPipeline {
    /// Serialize the round's records (on a blocking thread) while the rounds before it commit and its adaptive
    /// evaluation plays; once that evaluation has ended (its sub-run complete on disk) and the round before is
    /// committed, add the evaluation's records, compute the metrics, fold the records into the run's summary
    /// (in log order), and commit through the replay actor.
    async fn run(self, game: GameHandle) -> Result<Committed, RunError> {
        let CommitPipeline {
            run,
            round,
            checkpoint,
            mut log,
            retired,
            states,
            tally,
            after,
            committed,
        } = self;
        // The round's records as they will be read back from the log, while the rounds before it commit and
        // its adaptive evaluation plays.
        let deferred = log.deferred.take();
        let tail = log.tail.len();
        let (mut lines, mut recs) = tokio::task::spawn_blocking(move || {
            drop(retired);
            serialized(round, log.records())
        })
        .await
        .map_err(|e| rerr(format!("internal: serializing round {round}: {e}")))??;
        // The adaptive evaluation's records go among the round's evaluation records (the end of the round's
        // records is its tail).
        let adaptive = match deferred {
            Some((at, d)) => Some((lines.len() - tail + at.min(tail), d.records().await?)),
            None => None,
        };
        if let Some(after) = after
            && after.await.is_err()
        {
            return Err(rerr(format!(
                "round {round} not committed: the round before it was not"
            )));
        }
        // The round's metrics, and its records folded into the run's summary, in log order.
        let (lines, metrics) = tokio::task::spawn_blocking(move || {
            if let Some((at, evals)) = adaptive {
                let (l, r) = serialized(round, evals.into_iter().map(Record::Eval).collect())?;
                lines.splice(at..at, l);
                recs.splice(at..at, r);
            }
            let m = roundtrip(&metrics(&recs))?;
            let commit = Record::Commit(CommitRec {
                run,
                round,
                records: recs.len(),
                metrics: m.clone(),
            });
            lines.push(json(&commit)?);
            let mut t = lock(&tally);
            for r in &recs {
                t.add(r);
            }
            Ok::<_, RunError>((lines, m))
        })
        .await
        .map_err(|e| rerr(format!("internal: folding round {round}: {e}")))??;
        let job = CommitJob {
            round,
            checkpoint,
            lines,
            states,
        };
        game.call(Slot::Replay, Commit(job)).await.map_err(RunError)?;
        let _ = committed.send(());
        Ok(Committed { round, metrics })
    }
}

/// A round's records as log lines, and as they will be read back from the log: metrics are computed from
/// those, so that `sparring replay` reproduces them exactly (JSON float parsing is deterministic but not
/// always exact). Non-finite numbers are logged as missing.
fn serialized(
    round: u32,
    mut records: Vec<Record>,
) -> Result<(Vec<String>, Vec<Record>), RunError> {
    let changed = records
        .iter_mut()
        .map(Record::keep_finite)
        .filter(|c| *c)
        .count();
    if changed > 0 {
        tracing::warn!(
            round,
            records = changed,
            "non-finite numbers (NaN or infinity) in the round's records are logged as missing"
        );
    }
    let mut lines = Vec::with_capacity(records.len() + 1);
    for r in &records {
        lines.push(json(r)?);
    }
    let mut recs = Vec::with_capacity(lines.len());
    for l in &lines {
        recs.push(
            serde_json::from_str::<Record>(l)
                .map_err(|e| rerr(format!("internal: record round trip: {e}")))?,
        );
    }
    Ok((lines, recs))
}

fn joined<T>(r: Result<Result<T, RunError>, tokio::task::JoinError>) -> Result<T, RunError> {
    r.map_err(|e| rerr(format!("internal: commit task: {e}")))?
}

fn fault_plan(f: &Option<RoleFault>) -> FaultPlan {
    FaultPlan {
        fault: f.clone().unwrap_or_default(),
        counter: Default::default(),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| rerr(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| rerr(format!("{}: {e}", path.display())))
}

/// A round's line of `metrics.jsonl`.
fn metrics_line(round: u32, m: &Metrics) -> Result<String, RunError> {
    json(&serde_json::json!({"round": round, "metrics": m}))
}

/// A line-per-round file of the run directory (`metrics.jsonl`, `timings.jsonl`), opened once for appending: a
/// round's line is one `write` (opening the file and writing the line and its newline apart was six system
/// calls a round per file, tens of µs under nested virtualization).
struct Appender {
    path: PathBuf,
    file: Option<std::fs::File>,
    line: String,
}

impl Appender {
    fn new(path: PathBuf) -> Self {
        Appender {
            path,
            file: None,
            line: String::new(),
        }
    }

    fn append(&mut self, line: &str) -> Result<(), RunError> {
        let err = |e: std::io::Error| rerr(format!("{}: {e}", self.path.display()));
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?,
            ),
        };
        self.line.clear();
        self.line.push_str(line);
        self.line.push('\n');
        file.write_all(self.line.as_bytes()).map_err(err)
    }
}

/// Metrics as they read back from JSON.
pub fn roundtrip(m: &Metrics) -> Result<Metrics, RunError> {
    serde_json::from_str(&json(m)?).map_err(|e| rerr(format!("internal: metrics round trip: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<String, RunError> {
    serde_json::to_string(v).map_err(|e| rerr(format!("serialize: {e}")))
}

/// Options of a run beyond its scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// States the roles of a fresh run start from (as the roles save them; e.g. checkpoints of another run).
    /// Ignored on resume, which restores the last committed round.
    pub init: BTreeMap<Slot, Vec<u8>>,
}

/// Run (or, with `resume`, continue) `loaded` in `run_dir`. `progress` is called after each committed round.
pub async fn run(
    loaded: &Loaded,
    registry: &Registry,
    run_dir: &Path,
    resume: bool,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<RunSummary, RunError> {
    run_with(
        loaded,
        registry,
        run_dir,
        resume,
        RunOptions::default(),
        None,
        progress,
    )
    .await
}

/// Start a fresh run of `loaded` in `run_dir` with `opts` (e.g. roles starting from given states), boxed.
pub fn run_boxed<'a>(
    loaded: &'a Loaded,
    registry: &'a Registry,
    run_dir: &'a Path,
    opts: RunOptions,
    progress: &'a mut (dyn FnMut(&Progress) + Send),
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RunSummary, RunError>> + Send + 'a>>
{
    Box::pin(run_with(
        loaded, registry, run_dir, false, opts, None, progress,
    ))
}

/// Path of a kept checkpoint of a role.
pub fn checkpoint_path(run_dir: &Path, role: &str, round: u32) -> PathBuf {
    run_dir
        .join(replay::CHECKPOINT_DIR)
        .join(format!("r{round}"))
        .join(format!("{role}.bin"))
}

async fn run_with(
    loaded: &Loaded,
    registry: &Registry,
    run_dir: &Path,
    resume: bool,
    opts: RunOptions,
    parent: Option<Parent>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<RunSummary, RunError> {
    let (parent, mut slot) = parent.map(|p| (p.meters, p.slot)).unzip();
    let sc = &loaded.scenario;
    let log_path = run_dir.join(replay::LOG);
    // The run's summary is folded record by record (a run keeps none of its records): on resume from the
    // committed log, then by each round's commit pipeline, which folds only once the round before it is
    // committed, so records fold in log order.
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut per_round: Vec<(u32, Metrics)> = Vec::new();
    let (run, committed) = if resume {
        let info: RunInfo = std::fs::read_to_string(run_dir.join("run.json"))
            .map_err(|e| rerr(format!("{}: {e}", run_dir.join("run.json").display())))
            .and_then(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| rerr(format!("{}: {e}", run_dir.join("run.json").display())))
            })?;
        let committed = replay::fold_committed(&log_path, |r| match r {
            Record::Commit(c) => per_round.push((c.round, c.metrics)),
            other => lock(&tally).add(&other),
        })
        .map_err(RunError)?;
        (info.run_id, committed)
    } else {
        if log_path.exists() {
            return Err(rerr(format!(
                "{} already holds a run; continue it with `sparring run --resume {}` or choose another --out",
                run_dir.display(),
                run_dir.display()
            )));
        }
        std::fs::create_dir_all(run_dir)
            .map_err(|e| rerr(format!("{}: {e}", run_dir.display())))?;
        let run = loaded.run_id.clone();
        write_atomic(&run_dir.join(replay::SCENARIO), loaded.resolved.as_bytes())?;
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let info = RunInfo {
            run_id: run.clone(),
            created_unix,
            sparring_engine: env!("CARGO_PKG_VERSION").into(),
        };
        write_atomic(&run_dir.join("run.json"), json(&info)?.as_bytes())?;
        (run, replay::Committed::default())
    };
    let start_round = committed.last_round + 1;

    // Restore points from the last committed round.
    let mut restore: BTreeMap<Slot, Vec<u8>> = BTreeMap::new();
    if committed.last_round > 0 {
        for slot in [Slot::Attacker, Slot::Defender, Slot::Judge] {
            let path = replay::state_path(run_dir, slot.as_str(), committed.last_round);
            match std::fs::read(&path) {
                Ok(b) => {
                    restore.insert(slot, b);
                }
                Err(e) => return Err(rerr(format!("cannot resume: {}: {e}", path.display()))),
            }
        }
    } else if !resume {
        restore = opts.init.clone();
    }

    let mut slots = role_slots(loaded, registry, run_dir, &restore);
    slots.insert(
        Slot::Replay,
        SlotSpec {
            spec: WorkerSpec::Replay {
                run_dir: run_dir.to_path_buf(),
                fsync: sc.replay.fsync,
            },
            restore: Arc::default(),
            faults: fault_plan(&sc.faults.replay),
        },
    );
    let (game, join) = GameHandle::start(GameArgs {
        slots,
        max_restarts: sc.game.max_restarts,
    })
    .await
    .map_err(RunError)?;
    // The initial players (checkpoint r0): read back on resume, saved below on a fresh run.
    let mut initial: BTreeMap<Slot, Vec<u8>> = BTreeMap::new();
    if committed.last_round > 0 {
        for slot in [Slot::Attacker, Slot::Defender, Slot::Judge] {
            if let Ok(b) = std::fs::read(checkpoint_path(run_dir, slot.as_str(), 0)) {
                initial.insert(slot, b);
            }
        }
    }
    let initial_ref = &mut initial;

    let result = async {
        let mut states: BTreeMap<Slot, Arc<Vec<u8>>> = BTreeMap::new();
        // States to carry forward for sides that do not learn in a round (the roles save theirs together).
        let mut saving = Vec::new();
        for slot in [Slot::Attacker, Slot::Defender, Slot::Judge] {
            match restore.get(&slot) {
                Some(b) if committed.last_round > 0 => {
                    states.insert(slot, Arc::new(b.clone()));
                }
                _ => saving.push((slot, game.submit(slot, Save).map_err(RunError)?)),
            }
        }
        for (slot, ticket) in saving {
            let (saved, _) = ticket.answer().await.map_err(RunError)?;
            states.insert(slot, saved.state);
        }
        if committed.last_round == 0 {
            for (slot, b) in &states {
                let path = checkpoint_path(run_dir, slot.as_str(), 0);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| rerr(format!("{}: {e}", parent.display())))?;
                }
                write_atomic(&path, b.as_slice())?;
            }
            *initial_ref = states.iter().map(|(k, v)| (*k, v.to_vec())).collect();
        }
        let cx = Ctx {
            loaded,
            game: game.clone(),
            run: run.clone(),
            registry,
            run_dir,
            initial: &*initial_ref,
            meters: Meters::within(parent),
            on_eval: None,
            sub_run_slot: Arc::new(tokio::sync::Semaphore::new(
                sc.eval.adaptive.concurrent.max(1) as usize,
            )),
        };
        let mut timings = Vec::new();
        // Commits are pipelined: round r's records are serialized, its metrics computed and its commit
        // written (states, records, marker, fsync) in the background while the next rounds play; each round's
        // commit waits for the one before, so the log stays in order and a crash loses at most uncommitted
        // rounds. A round with an adaptive evaluation commits when its sub-run ends, while later rounds play;
        // the states those rounds hold are bounded (`Behind`). Progress, metrics.jsonl and timings.jsonl
        // follow each commit, in order, while the next round plays (or after the last round).
        let mut pending: std::collections::VecDeque<(
            tokio::task::JoinHandle<Result<Committed, RunError>>,
            Timings,
            usize,
        )> = Default::default();
        let mut last_commit: Option<tokio::sync::oneshot::Receiver<()>> = None;
        let mut metrics_file = Appender::new(run_dir.join("metrics.jsonl"));
        let mut timings_file = Appender::new(run_dir.join("timings.jsonl"));
        let mut finish = |c: Committed, tm: Timings| -> Result<(), RunError> {
            metrics_file.append(&metrics_line(c.round, &c.metrics)?)?;
            timings_file.append(&json(&tm)?)?;
            per_round.push((c.round, c.metrics.clone()));
            progress(&Progress {
                round: c.round,
                rounds: sc.game.rounds,
                metrics: c.metrics,
                timings: tm.clone(),
            });
            timings.push(tm);
            Ok(())
        };
        let mut queued: Option<Next> = None;
        for round in start_round..=sc.game.rounds {
            // The round's window: role time and compute are counted within it (a request queued in the round
            // before counts from here).
            let window = Instant::now();
            cx.meters.waits.take_ms(window);
            cx.meters.compute.take_ms(window, window, &[]);
            cx.meters.beside.take_ms(window, window, &[]);
            // Earlier rounds' commits are reported as they complete, while this round plays.
            let played = {
                let play = play_round(&cx, round, &mut states, queued.take());
                tokio::pin!(play);
                loop {
                    tokio::select! {
                        biased;
                        played = &mut play => break played,
                        c = async {
                            match pending.front_mut() {
                                Some((h, _, _)) => h.await,
                                None => std::future::pending().await,
                            }
                        }, if !pending.is_empty() => {
                            if let Some((_, tm, _)) = pending.pop_front() {
                                finish(joined(c)?, tm)?;
                            }
                        }
                    }
                }
            };
            let Played {
                log,
                timings: mut tm,
                retired,
                end,
                next,
            } = played?;
            queued = next;
            let bytes = retired.iter().map(|s| s.len()).sum::<usize>();
            let (committed, next_after) = tokio::sync::oneshot::channel();
            let job = CommitPipeline {
                run: run.clone(),
                round,
                checkpoint: sc.checkpoints.keeps(round, sc.game.rounds),
                log,
                retired,
                tally: Arc::clone(&tally),
                after: last_commit.replace(next_after),
                committed,
                states: states
                    .iter()
                    .map(|(s, b)| (s.as_str().to_string(), Arc::clone(b)))
                    .collect(),
            };
            let handle = tokio::spawn(job.run(game.clone()));
            // Rounds behind their commit hold states: past the bound, wait for the oldest.
            while Behind::over(pending.len() + 1, pending.iter().map(|p| p.2).sum()) {
                let Some((h, tm, _)) = pending.pop_front() else {
                    break;
                };
                finish(joined(h.await)?, tm)?;
            }
            // From the end of play: includes any wait for earlier commits.
            tm.commit_ms = ms(end);
            let now = Instant::now();
            tm.total_ms = now.saturating_duration_since(window).as_secs_f64() * 1000.0;
            tm.roles_ms = cx.meters.waits.take_ms(now);
            tm.compute_ms = cx.meters.compute.take_ms(window, now, &cx.running());
            tm.adaptive_ms = cx.meters.beside.take_ms(window, now, &[]);
            pending.push_back((handle, tm, bytes));
            if sc.faults.round_delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(sc.faults.round_delay_ms))
                    .await;
            }
        }
        // A sub-run's last round has played: the next sub-run of its parent may start.
        drop(slot.take());
        // The run ends when its last round is committed: the wait counts in that round's window (with the
        // compute of an adaptive evaluation still playing).
        let t = Instant::now();
        while let Some((h, mut tm, _)) = pending.pop_front() {
            let c = joined(h.await)?;
            if pending.is_empty() {
                let now = Instant::now();
                tm.commit_ms += ms(t);
                tm.total_ms += ms(t);
                tm.roles_ms += cx.meters.waits.take_ms(now);
                tm.compute_ms += cx.meters.compute.take_ms(t, now, &[]);
                tm.adaptive_ms += cx.meters.beside.take_ms(t, now, &[]);
            }
            finish(c, tm)?;
        }
        Ok::<_, RunError>(timings)
    }
    .await;
    let restarts = game.restarts().await;
    game.stop();
    let _ = join.await;
    let timings = result?;
    let tally = std::mem::take(&mut *lock(&tally));

    // Per-round metrics from the commit markers (rewritten whole: consistent after a resume).
    let mut text = String::new();
    for (round, m) in &per_round {
        text.push_str(&metrics_line(*round, m)?);
        text.push('\n');
    }
    write_atomic(&run_dir.join("metrics.jsonl"), text.as_bytes())?;
    let summary = roundtrip(&tally.metrics())?;
    write_atomic(
        &run_dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .map_err(|e| rerr(e.to_string()))?
            .as_bytes(),
    )?;
    let n = timings.len().max(1) as f64;
    let mut mean = Timings::default();
    for t in &timings {
        mean.attacker_ms += t.attacker_ms / n;
        mean.faithfulness_ms += t.faithfulness_ms / n;
        mean.defender_ms += t.defender_ms / n;
        mean.judge_ms += t.judge_ms / n;
        mean.learn_ms += t.learn_ms / n;
        mean.eval_ms += t.eval_ms / n;
        mean.commit_ms += t.commit_ms / n;
        mean.total_ms += t.total_ms / n;
        mean.roles_ms += t.roles_ms / n;
        mean.compute_ms += t.compute_ms / n;
        mean.adaptive_ms += t.adaptive_ms / n;
    }
    Ok(RunSummary {
        final_eval: tally.eval_of(sc.game.rounds).to_vec(),
        run_id: run,
        run_dir: run_dir.to_path_buf(),
        rounds: sc.game.rounds,
        metrics: summary,
        per_round,
        mean_timings: mean,
        restarts,
        first_round: start_round,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Compute intervals count only inside a round's window: one answered that started in the round before
    /// (queued behind another request) counts from the window's start; one still running counts up to its end.
    #[test]
    fn compute_is_clipped_to_the_round_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let c = Compute::default();
        c.push(Busy {
            start: at(0),
            end: at(10),
        });
        c.push(Busy {
            start: at(8),
            end: at(12),
        });
        let got = c.take_ms(at(5), at(20), &[at(15)]);
        // [5, 12] ∪ [15, 20] = 12 ms.
        assert!((got - 12.0).abs() < 1e-6, "{got}");
        assert_eq!(c.take_ms(at(20), at(30), &[]), 0.0, "not reset");

        // Role time still in flight at the end of a round counts up to there, and from there in the next.
        let w = RoleWaits::default();
        w.enter();
        let first = w.take_ms(Instant::now());
        std::thread::sleep(Duration::from_millis(3));
        w.leave();
        let second = w.take_ms(Instant::now());
        assert!(first < 3.0 && second >= 3.0, "{first} {second}");
    }

    /// A sub-run's requests and compute count in its parent's meters as they happen, overlaps with the
    /// parent's own once, and apart as compute beside the parent; the sub-run's meters see only its own.
    #[test]
    fn a_sub_runs_time_counts_once_in_its_parents_meters() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let parent = Meters::within(None);
        let sub = Meters::within(Some(Arc::clone(&parent)));
        let subsub = Meters::within(Some(Arc::clone(&sub)));
        parent.push(Busy {
            start: at(0),
            end: at(10),
        });
        sub.push(Busy {
            start: at(5),
            end: at(15),
        });
        sub.push(Busy {
            start: at(20),
            end: at(25),
        });
        // A sub-run's own sub-run counts in both.
        subsub.push(Busy {
            start: at(40),
            end: at(45),
        });
        // Parent: [0, 15] ∪ [20, 25] ∪ [40, 45], of which beside it [5, 15] ∪ [20, 25] ∪ [40, 45]; sub-run:
        // [5, 15] ∪ [20, 25] ∪ [40, 45], of which beside it [40, 45].
        let took = |c: &Compute| c.take_ms(at(0), at(50), &[]);
        for (got, want) in [
            (took(&parent.compute), 25.0),
            (took(&parent.beside), 20.0),
            (took(&sub.compute), 20.0),
            (took(&sub.beside), 5.0),
            (took(&subsub.beside), 0.0),
        ] {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }

        // A request of either in flight counts as role time, up to the last one's end.
        parent.waits.take_ms(Instant::now());
        parent.enter();
        sub.enter();
        std::thread::sleep(Duration::from_millis(2));
        parent.leave();
        std::thread::sleep(Duration::from_millis(2));
        sub.leave();
        std::thread::sleep(Duration::from_millis(40));
        let both = parent.waits.take_ms(Instant::now());
        assert!((4.0..40.0).contains(&both), "{both}");
        assert_eq!(parent.waits.0.lock().unwrap().0, 0, "all left");
    }

    /// Rounds wait for their commit up to a count, and beyond the newest up to a size of held states.
    #[test]
    fn rounds_behind_their_commit_are_bounded() {
        assert!(!Behind::over(1, 0));
        assert!(!Behind::over(Behind::ROUNDS, 0));
        assert!(Behind::over(Behind::ROUNDS + 1, 0), "too many rounds");
        assert!(
            !Behind::over(1, Behind::BYTES + 1),
            "the newest round alone never waits"
        );
        assert!(Behind::over(2, Behind::BYTES + 1), "too many bytes");
        assert!(!Behind::over(2, 0));
    }
}
