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
//!
//! The module's parts:
//! - `mod.rs` (here): the public API, and a run's set-up, round loop and wrap-up (`run`);
//! - `round`: one round's steps (`play_round`);
//! - `turns`: the turns before the last of a multi-turn game's conversations;
//! - `judge_plan`: the judge's requests for a round, built while the defender generates, and what the verdicts
//!   on the defender's responses become;
//! - `records`: how a played round becomes its log records;
//! - `commit`: the commit pipeline and the run directory's writes;
//! - `eval`: held-out evaluation, of a run's round or of saved players, and cross-play;
//! - `rejudge`: a finished run's interactions judged again by another judge (`sparring rejudge`);
//! - `best_response`: best-response games (the adaptive evaluation);
//! - `ctx`: the game loop's handle on the roles;
//! - `meters`: role time and compute intervals.

mod best_response;
mod commit;
mod ctx;
mod eval;
mod judge_plan;
mod meters;
mod records;
mod rejudge;
mod round;
mod turns;

pub use best_response::{best_response, best_response_scenario};
pub use commit::roundtrip;
pub use eval::{CrossCell, EvalStep, crossplay, evaluate, evaluate_watched};
pub use rejudge::{RejudgeStep, Rejudged, rejudge};

use crate::actor::{GameArgs, GameHandle, Save, SlotSpec, WorkerSpec, lock};
use crate::cluster::{Cluster, Placement};
use crate::record::{EvalRec, Metrics, Record, Tally};
use crate::registry::Registry;
use crate::replay;
use crate::rng::{SplitMix64, derive};
use crate::roles::Seed;
use crate::scenario::Loaded;
use crate::vocab::Slot;
use commit::{CommitPipeline, Commits, json, metrics_line, write_atomic};
use ctx::{Ctx, fault_plan, game_slots, role_slots};
use meters::{Meters, Parent};
use round::{Next, Played, play_round};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// `run.json`: the run's id, when it was created and by which engine.
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

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
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

/// A run: open (or reopen) its directory, start its roles, play its rounds, and wrap up. With `parent`, a
/// sub-run (the adaptive evaluation's game) whose role time and compute count in its parent's meters too.
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
    // The run's summary is folded record by record (a run keeps none of its records): on resume from the
    // committed log, then by each round's commit pipeline, which folds only once the round before it is
    // committed, so records fold in log order.
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut per_round: Vec<(u32, Metrics)> = Vec::new();
    let _lock = lock_run_dir(run_dir)?;
    let slots = game_slots(loaded);
    // The states the roles start from: the resumed round's, or on a fresh run `opts.init`.
    let (run, last_round, restore) = if resume {
        reopen_run_dir(run_dir, &slots, &tally, &mut per_round)?
    } else {
        (open_run_dir(loaded, run_dir)?, 0, opts.init.clone())
    };
    let first_round = last_round + 1;
    let (game, join) = start_game(loaded, registry, run_dir, &restore).await?;
    let result = async {
        let mut states = starting_states(&game, &slots, &restore, last_round).await?;
        mirror_player(loaded, &mut states);
        let initial = initial_players(run_dir, last_round, &states)?;
        let cx = Ctx {
            loaded,
            game: game.clone(),
            run: run.clone(),
            registry,
            run_dir,
            initial: &initial,
            meters: Meters::within(parent),
            on_eval: None,
            sub_run_slot: Arc::new(tokio::sync::Semaphore::new(
                sc.eval.adaptive.concurrent.max(1) as usize,
            )),
        };
        let mut commits = Commits::new(run_dir, sc.game.rounds, &mut per_round, progress);
        play_rounds(&cx, first_round, states, &tally, &mut commits, &mut slot).await?;
        Ok::<_, RunError>(commits.timings)
    }
    .await;
    let restarts = game.restarts().await;
    game.stop();
    let _ = join.await;
    let timings = result?;
    let (metrics, final_eval) = write_summary(run_dir, &tally, &per_round, sc.game.rounds)?;
    Ok(RunSummary {
        final_eval,
        run_id: run,
        run_dir: run_dir.to_path_buf(),
        rounds: sc.game.rounds,
        metrics,
        per_round,
        mean_timings: mean_timings(&timings),
        restarts,
        first_round,
    })
}

/// The run directory's lock file: another process that opens the directory for a run fails fast.
pub const LOCK: &str = "run.lock";

/// Held while a run writes its directory: an advisory lock on `<run>/run.lock` (which holds the owner's pid), taken
/// without waiting and released by the OS when the process ends, however it ends. The file stays.
struct RunLock {
    _file: std::fs::File,
}

/// Locks `run_dir` for a run (creating it), or says which process holds it.
fn lock_run_dir(run_dir: &Path) -> Result<RunLock, RunError> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(run_dir).map_err(|e| rerr(format!("{}: {e}", run_dir.display())))?;
    let path = run_dir.join(LOCK);
    let io = |e: std::io::Error| rerr(format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            Ok(RunLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            file.read_to_string(&mut pid).ok();
            let owner = match pid.trim() {
                "" => "another process".to_string(),
                p => format!("process {p}"),
            };
            Err(rerr(format!(
                "{} is in use by {owner} (a run writing it holds {}): two runs cannot write one directory",
                run_dir.display(),
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Reopen a run directory to resume its run: the run's id, the round it resumes after and the `slots`' states of
/// that round (checked against their sums), its committed rounds folded into the run's summary (`tally`) and
/// per-round metrics.
///
/// That round is the log's last committed one, unless the roles' states of that round are gone: a log cut or
/// damaged after later rounds retired them. The run then resumes after the newest round at or before it whose
/// states are kept (`state/`, or a checkpoint; round 0: the roles as built), the log is cut back to that round's
/// commit, and the rounds after it are played again, to the same records.
fn reopen_run_dir(
    run_dir: &Path,
    slots: &[Slot],
    tally: &std::sync::Mutex<Tally>,
    per_round: &mut Vec<(u32, Metrics)>,
) -> Result<(String, u32, BTreeMap<Slot, Vec<u8>>), RunError> {
    let info_path = run_dir.join("run.json");
    let info: RunInfo = std::fs::read_to_string(&info_path)
        .map_err(|e| rerr(format!("{}: {e}", info_path.display())))
        .and_then(|t| {
            serde_json::from_str(&t).map_err(|e| rerr(format!("{}: {e}", info_path.display())))
        })?;
    let log = run_dir.join(replay::LOG);
    let mut committed = replay::fold_committed(&log, |_| {}).map_err(RunError)?;
    let mut states = intact_states(run_dir, slots, committed.last_round);
    if let Err(why) = &states {
        let (round, len, kept) = committed
            .commits
            .iter()
            .rev()
            .find_map(|&(r, len)| Some((r, len, intact_states(run_dir, slots, r).ok()?)))
            .unwrap_or((0, 0, BTreeMap::new()));
        tracing::warn!(
            "{}: its last commit is round {}, whose role states are gone or damaged ({}): resuming after round \
             {round}, the newest with its states kept, and playing the rounds after it again",
            log.display(),
            committed.last_round,
            why.join("; ")
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .map_err(|e| rerr(format!("{}: {e}", log.display())))?;
        file.set_len(len).map_err(|e| {
            rerr(format!(
                "{}: cutting back to round {round}: {e}",
                log.display()
            ))
        })?;
        committed.last_round = round;
        states = Ok(kept);
    }
    replay::fold_committed(&log, |r| match r {
        Record::Commit(c) => per_round.push((c.round, c.metrics)),
        other => lock(tally).add(&other),
    })
    .map_err(RunError)?;
    Ok((
        info.run_id,
        committed.last_round,
        states.unwrap_or_default(),
    ))
}

/// The `slots`' states of `round`, each read once and checked ([`intact_state`]); none for round 0 (the roles as
/// built). The errors say why a state is not usable.
fn intact_states(
    run_dir: &Path,
    slots: &[Slot],
    round: u32,
) -> Result<BTreeMap<Slot, Vec<u8>>, Vec<String>> {
    if round == 0 {
        return Ok(BTreeMap::new());
    }
    let (mut states, mut why) = (BTreeMap::new(), Vec::new());
    for &slot in slots {
        match intact_state(run_dir, slot, round) {
            Ok(b) => {
                states.insert(slot, b);
            }
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() { Ok(states) } else { Err(why) }
}

/// A role's state of `round`, checked against the sums its commit wrote: from `state/`, else from the round's
/// checkpoint. The error says why neither is usable (missing, or damaged: naming the file).
fn intact_state(run_dir: &Path, slot: Slot, round: u32) -> Result<Vec<u8>, String> {
    let role = slot.as_str();
    let kept = checkpoint_path(run_dir, role, round);
    let sums = kept.with_file_name("sums.json");
    replay::read_state(
        &replay::state_path(run_dir, role, round),
        &replay::sums_path(&run_dir.join(replay::STATE_DIR), Some(round)),
        role,
    )
    .or_else(|e| match replay::read_state(&kept, &sums, role) {
        Ok(b) => Ok(b),
        Err(_) if !kept.exists() => Err(e),
        Err(k) => Err(format!("{e}; {k}")),
    })
}

/// The run id a run directory's `run.json` records (`None` when it is missing or unreadable).
pub fn recorded_run_id(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("run.json")).ok()?;
    serde_json::from_str::<RunInfo>(&text)
        .ok()
        .map(|i| i.run_id)
}

/// Open a fresh run directory (not one that holds a run) with the resolved scenario and the run's id; the id.
fn open_run_dir(loaded: &Loaded, run_dir: &Path) -> Result<String, RunError> {
    if run_dir.join(replay::LOG).exists() {
        return Err(rerr(format!(
            "{} already holds a run; continue it with `sparring run --resume {}` or choose another --out",
            run_dir.display(),
            run_dir.display()
        )));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| rerr(format!("{}: {e}", run_dir.display())))?;
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
    Ok(run)
}

/// The run's supervised roles, restored from `restore`, and its replay log.
async fn start_game(
    loaded: &Loaded,
    registry: &Registry,
    run_dir: &Path,
    restore: &BTreeMap<Slot, Vec<u8>>,
) -> Result<(GameHandle, tokio::task::JoinHandle<()>), RunError> {
    let sc = &loaded.scenario;
    let mut placed = BTreeMap::new();
    if let Some(c) = &sc.cluster {
        let cluster = Cluster::open(c).await.map_err(RunError)?;
        for role in game_slots(loaded).into_iter().filter_map(Slot::role) {
            if let Some(node) = &loaded.role(role).node
                && let Some(node) = cluster.place(node).await.map_err(RunError)?
            {
                let cluster = Arc::clone(&cluster);
                placed.insert(role, Placement { cluster, node });
            }
        }
    }
    let mut slots = role_slots(loaded, registry, run_dir, restore, &placed);
    slots.insert(
        Slot::Replay,
        SlotSpec {
            node: None,
            spec: WorkerSpec::Replay {
                run_dir: run_dir.to_path_buf(),
                fsync: sc.replay.fsync,
            },
            restore: Arc::default(),
            faults: fault_plan(&sc.faults.replay),
        },
    );
    GameHandle::start(GameArgs {
        slots,
        max_restarts: sc.game.max_restarts,
    })
    .await
    .map_err(RunError)
}

/// The roles' states as this process's first round starts: those restored from the last committed round, else
/// as the roles save them (fresh, or started from the run's initial states).
async fn starting_states(
    game: &GameHandle,
    slots: &[Slot],
    restore: &BTreeMap<Slot, Vec<u8>>,
    last_round: u32,
) -> Result<BTreeMap<Slot, Arc<Vec<u8>>>, RunError> {
    let mut states: BTreeMap<Slot, Arc<Vec<u8>>> = BTreeMap::new();
    // States to carry forward for sides that do not learn in a round (the roles save theirs together).
    let mut saving = Vec::new();
    for &slot in slots {
        match restore.get(&slot) {
            Some(b) if last_round > 0 => {
                states.insert(slot, Arc::new(b.clone()));
            }
            _ => saving.push((slot, game.submit(slot, Save).map_err(RunError)?)),
        }
    }
    for (slot, ticket) in saving {
        let (saved, _) = ticket.answer().await.map_err(RunError)?;
        states.insert(slot, saved.state);
    }
    Ok(states)
}

/// Under self-play the defender's state is the one player's (the attacker's), the same bytes: a run directory
/// then holds a defender state and checkpoint beside the attacker's, as every other run's does, so the tools
/// that read a run's defender (evaluation, reports, export, serve) read the player.
fn mirror_player(loaded: &Loaded, states: &mut BTreeMap<Slot, Arc<Vec<u8>>>) {
    if loaded.self_play()
        && let Some(player) = states.get(&Slot::Attacker).cloned()
    {
        states.insert(Slot::Defender, player);
    }
}

/// The initial players (checkpoint `r0`), for the best-response attacker of the adaptive evaluation: on a fresh
/// run the starting `states`, saved here as checkpoint `r0`; on resume read back from it.
fn initial_players(
    run_dir: &Path,
    last_round: u32,
    states: &BTreeMap<Slot, Arc<Vec<u8>>>,
) -> Result<BTreeMap<Slot, Vec<u8>>, RunError> {
    let mut initial: BTreeMap<Slot, Vec<u8>> = BTreeMap::new();
    let dir = run_dir.join(replay::CHECKPOINT_DIR).join("r0");
    let sums = replay::sums_path(&dir, None);
    if last_round > 0 {
        for slot in [Slot::Attacker, Slot::Defender, Slot::Judge] {
            let path = checkpoint_path(run_dir, slot.as_str(), 0);
            if path.exists() {
                let b = replay::read_state(&path, &sums, slot.as_str()).map_err(RunError)?;
                initial.insert(slot, b);
            }
        }
        return Ok(initial);
    }
    std::fs::create_dir_all(&dir).map_err(|e| rerr(format!("{}: {e}", dir.display())))?;
    for (slot, b) in states {
        write_atomic(&checkpoint_path(run_dir, slot.as_str(), 0), b.as_slice())?;
    }
    let table = states
        .iter()
        .map(|(slot, b)| (slot.as_str().to_string(), replay::StateSum::of(b)))
        .collect();
    replay::write_sums(&sums, &table).map_err(RunError)?;
    Ok(states.iter().map(|(k, v)| (*k, v.to_vec())).collect())
}

/// Play rounds `first_round..=rounds`. Commits are pipelined: round r's records are serialized, its metrics
/// computed and its commit written (states, records, marker, fsync) in the background while the next rounds
/// play; each round's commit waits for the one before, so the log stays in order and a crash loses at most
/// uncommitted rounds. A round with an adaptive evaluation commits when its sub-run ends, while later rounds
/// play; the states those rounds hold are bounded (`Behind`). Progress, metrics.jsonl and timings.jsonl follow
/// each commit, in order, while the next round plays (or after the last round).
async fn play_rounds(
    cx: &Ctx<'_>,
    first_round: u32,
    mut states: BTreeMap<Slot, Arc<Vec<u8>>>,
    tally: &Arc<std::sync::Mutex<Tally>>,
    commits: &mut Commits<'_>,
    slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<(), RunError> {
    let sc = &cx.loaded.scenario;
    let mut queued: Option<Next> = None;
    for round in first_round..=sc.game.rounds {
        // The round's window: role time and compute are counted within it (a request queued in the round
        // before counts from here).
        let window = Instant::now();
        cx.meters.restart(window);
        // Earlier rounds' commits are reported as they complete, while this round plays.
        let played = commits
            .beside(play_round(cx, round, &mut states, queued.take()))
            .await?;
        let Played {
            log,
            timings: mut tm,
            retired,
            end,
            next,
        } = match played {
            Ok(p) => p,
            Err(e) => {
                // The rounds played before this one are still committed: a failed round loses only itself.
                let _ = commits.finish(&cx.meters).await;
                return Err(e);
            }
        };
        queued = next;
        let bytes = retired.iter().map(|s| s.len()).sum::<usize>();
        let (committed, after) = commits.chain();
        let job = CommitPipeline {
            run: cx.run.clone(),
            round,
            checkpoint: sc.checkpoints.keeps(round, sc.game.rounds),
            keep_last: sc.checkpoints.keep_last,
            log,
            retired,
            tally: Arc::clone(tally),
            after,
            committed,
            states: states
                .iter()
                .map(|(s, b)| (s.as_str().to_string(), Arc::clone(b)))
                .collect(),
        };
        let handle = tokio::spawn(job.run(cx.game.clone()));
        // Rounds behind their commit hold states: past the bound, wait for the oldest.
        commits.wait_behind().await?;
        // From the end of play: includes any wait for earlier commits.
        tm.commit_ms = ms(end);
        let now = Instant::now();
        tm.total_ms = now.saturating_duration_since(window).as_secs_f64() * 1000.0;
        tm.roles_ms = cx.meters.waits.take_ms(now);
        tm.compute_ms = cx.meters.compute.take_ms(window, now, &cx.running());
        tm.adaptive_ms = cx.meters.beside.take_ms(window, now, &[]);
        commits.push(handle, tm, bytes);
        if sc.faults.round_delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(sc.faults.round_delay_ms)).await;
        }
    }
    // A sub-run's last round has played: the next sub-run of its parent may start.
    drop(slot.take());
    commits.finish(&cx.meters).await
}

/// The run's closing files: `metrics.jsonl` from the per-round metrics of the commit markers (rewritten whole:
/// consistent after a resume) and `summary.json`. Returns the run's metrics and the evaluation records of round
/// `last` (empty if it had no evaluation).
fn write_summary(
    run_dir: &Path,
    tally: &std::sync::Mutex<Tally>,
    per_round: &[(u32, Metrics)],
    last: u32,
) -> Result<(Metrics, Vec<EvalRec>), RunError> {
    let tally = std::mem::take(&mut *lock(tally));
    let mut text = String::new();
    for (round, m) in per_round {
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
    Ok((summary, tally.eval_of(last).to_vec()))
}

/// Mean timings over the rounds played by this process.
fn mean_timings(timings: &[Timings]) -> Timings {
    let n = timings.len().max(1) as f64;
    let mut mean = Timings::default();
    for t in timings {
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
    mean
}
