//! Held-out evaluation: a round's evaluation in every configured mode ([`eval_phase`]: the eval sets as written,
//! rewritten by the current attacker, or by a best-response attacker, see `best_response`), and the same
//! evaluation outside a run: of saved players ([`evaluate`]) and of every attacker against every defender
//! ([`crossplay`]).

use super::best_response::{Deferred, start_adaptive};
use super::ctx::{Ctx, start_outside};
use super::round::shown;
use super::turns::converse;
use super::{RunError, rerr};
use crate::actor::{Complied, Faithful, Load};
use crate::record::{EvalMode, EvalRec};
use crate::registry::Registry;
use crate::rng::{derive, derive_suffixed};
use crate::roles::{FaithRequest, GenRequest, Generation, LabelRequest, Seed, Turn, Verdict};
use crate::scenario::Loaded;
use crate::vocab::{Role, Slot};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Progress of an evaluation phase: `done` of `total` requests answered (told with `done = 0` when the phase
/// starts, then after each chunk).
#[derive(Debug, Clone)]
pub struct EvalStep {
    /// `attacker` (rewrites), `faithfulness`, `defender` (answers) or `labels`.
    pub phase: &'static str,
    pub done: usize,
    pub total: usize,
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
    // A self-play player's states may differ by side here (e.g. the initial attacker against a trained
    // defender): two copies of the player.
    let loaded = &loaded.two_players();
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
pub(super) async fn eval_phase(
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

/// The key of an evaluation request of `round` on seed `seed_id` of eval set `set`: `eval/r<round>/<set>/<seed>`
/// as written (`plain`), `eval/r<round>/<mode>/<set>/<seed>` rewritten by an attacker.
pub(super) fn eval_key(round: u32, mode: EvalMode, set: &str, seed_id: &str) -> String {
    match mode {
        EvalMode::Plain => format!("eval/r{round}/{set}/{seed_id}"),
        EvalMode::Attacker | EvalMode::Adaptive => format!("eval/r{round}/{mode}/{set}/{seed_id}"),
    }
}

/// One defender answer per request, and the judge's compliance label for each; with the defender's version.
async fn answer_and_label(
    cx: &Ctx<'_>,
    round: u32,
    reqs: &[GenRequest],
) -> Result<(Vec<Generation>, Vec<Verdict<bool>>, u64), RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let (answers, version) = cx.generate_eval(Slot::Defender, "defender", reqs).await?;
    let label_requests: Vec<LabelRequest> = reqs
        .iter()
        .zip(&answers)
        .map(|(r, o)| LabelRequest {
            rng_seed: derive_suffixed(seed, round.into(), &r.key, "/label"),
            key: r.key.clone(),
            seed: r.seed.clone(),
            prompt: Arc::from(r.input.as_str()),
            response: Arc::from(shown(o)),
        })
        .collect();
    let labels = cx.bools_eval("labels", &label_requests, Complied).await?;
    Ok((answers, labels, version))
}

/// Eval sets answered by the defender as written.
async fn eval_plain(cx: &Ctx<'_>, round: u32) -> Result<Vec<EvalRec>, RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let mut requests = Vec::new();
    for (set, seeds) in &cx.loaded.eval {
        for s in seeds {
            let key = eval_key(round, EvalMode::Plain, set, &s.id);
            requests.push(GenRequest {
                rng_seed: derive(seed, round.into(), &key),
                key,
                role: Role::Defender,
                seed: s.clone(),
                input: s.prompt.to_string(),
                n: 1,
                history: Vec::new(),
            });
        }
    }
    let (answers, labels, version) = answer_and_label(cx, round, &requests).await?;
    Ok(requests
        .iter()
        .zip(answers)
        .zip(labels)
        .map(|((r, o), label)| EvalRec {
            input: r.input.clone(),
            shown: o.parsed.filter(|p| *p != o.text),
            output: o.text,
            complied_raw: label.raw,
            complied: label.value,
            score: label.score,
            ..eval_rec(cx, round, version, r, EvalMode::Plain)
        })
        .collect())
}

/// The evaluation record of request `r` (its seed, key and mode), not yet answered: no input, output, label,
/// score, attack or validity.
fn eval_rec(cx: &Ctx<'_>, round: u32, version: u64, r: &GenRequest, mode: EvalMode) -> EvalRec {
    EvalRec {
        run: cx.run.clone(),
        round,
        set: r.seed.set.to_string(),
        seed_id: r.seed.id.to_string(),
        category: r.seed.category,
        version,
        key: r.key.clone(),
        input: String::new(),
        output: String::new(),
        complied_raw: String::new(),
        complied: None,
        mode,
        attack: None,
        valid: None,
        topic: r.seed.topic.as_deref().map(str::to_string),
        score: None,
        shown: None,
        seed_prompt: None,
        turns: Vec::new(),
    }
}

/// Eval sets rewritten by the current attacker (one attempt per seed), gated for faithfulness like the game
/// (when the scenario gates), answered by the defender and labelled.
async fn eval_attacked(cx: &Ctx<'_>, round: u32, mode: EvalMode) -> Result<Vec<EvalRec>, RunError> {
    let attacks = attack_phase(cx, round, mode).await?;
    defend_phase(cx, round, mode, &attacks).await
}

/// The attacker's half of an attacked evaluation: one rewrite per held-out seed and its validity (in a
/// multi-turn game, the last turn of a conversation, played against the current defender, and the turns before
/// it).
struct Attacks {
    reqs: Vec<GenRequest>,
    gens: Vec<Generation>,
    histories: Vec<Vec<Turn>>,
    valid: Vec<bool>,
}

/// One rewrite per seed of the attack sets by the current attacker, gated for faithfulness when the scenario
/// gates (an unparseable or unfaithful rewrite is a failed attack).
async fn attack_phase(cx: &Ctx<'_>, round: u32, mode: EvalMode) -> Result<Attacks, RunError> {
    let seed = cx.loaded.scenario.game.seed;
    let mut requests = Vec::new();
    let only = &cx.loaded.scenario.eval.attack_sets;
    for (set, seeds) in &cx.loaded.eval {
        if only.as_ref().is_some_and(|o| !o.contains(set)) {
            continue;
        }
        for s in seeds {
            let key = eval_key(round, mode, set, &s.id);
            requests.push(GenRequest {
                rng_seed: derive(seed, round.into(), &key),
                key,
                role: Role::Attacker,
                seed: s.clone(),
                input: s.prompt.to_string(),
                n: 1,
                history: Vec::new(),
            });
        }
    }
    let (attacks, _) = cx
        .generate_eval(Slot::Attacker, "attacker", &requests)
        .await?;
    let (attacks, histories): (Vec<Generation>, Vec<Vec<Turn>>) =
        if cx.loaded.scenario.game.turns > 1 {
            let seeds: Vec<Seed> = requests.iter().map(|r| r.seed.clone()).collect();
            let keys: Vec<Vec<String>> = requests.iter().map(|r| vec![r.key.clone()]).collect();
            let first = attacks.into_iter().map(|g| vec![g]).collect();
            converse(cx, round, &seeds, &keys, first)
                .await?
                .into_iter()
                .flatten()
                .map(|c| (c.last, c.history))
                .unzip()
        } else {
            let none = vec![Vec::new(); attacks.len()];
            (attacks, none)
        };
    let mut valid: Vec<bool> = attacks.iter().map(|a| a.parsed.is_some()).collect();
    if cx.loaded.scenario.payoffs.faithfulness_gate {
        let mut faithful_at = Vec::new();
        let mut faithful_requests = Vec::new();
        for (i, (r, a)) in requests.iter().zip(&attacks).enumerate() {
            if let Some(text) = &a.parsed {
                faithful_at.push(i);
                faithful_requests.push(FaithRequest {
                    rng_seed: derive_suffixed(seed, round.into(), &r.key, "/faithful"),
                    key: r.key.clone(),
                    seed: r.seed.clone(),
                    rewrite: text.clone(),
                    history: histories[i].clone(),
                });
            }
        }
        let verdicts = cx
            .bools_eval("faithfulness", &faithful_requests, Faithful)
            .await?;
        for (i, verdict) in faithful_at.into_iter().zip(verdicts) {
            valid[i] = verdict.value == Some(true);
        }
    }
    Ok(Attacks {
        reqs: requests,
        gens: attacks,
        histories,
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
    let mut requests = Vec::new();
    let mut attack_at = Vec::new();
    for (i, (r, a)) in attacks.reqs.iter().zip(&attacks.gens).enumerate() {
        if valid[i] {
            attack_at.push(i);
            requests.push(GenRequest {
                rng_seed: derive_suffixed(seed, round.into(), &r.key, "/d"),
                key: r.key.clone(),
                role: Role::Defender,
                seed: r.seed.clone(),
                input: a.parsed.clone().unwrap_or_default(),
                n: 1,
                history: attacks.histories[i].clone(),
            });
        }
    }
    let (answers, labels, version) = answer_and_label(cx, round, &requests).await?;
    let mut answered: BTreeMap<usize, (String, Generation, Verdict<bool>)> = BTreeMap::new();
    for (((i, r), o), label) in attack_at.into_iter().zip(requests).zip(answers).zip(labels) {
        answered.insert(i, (r.input, o, label));
    }
    Ok(attacks
        .reqs
        .iter()
        .zip(&attacks.gens)
        .enumerate()
        .map(|(i, (r, a))| {
            let (input, output, shown, complied_raw, complied, score) = match answered.remove(&i) {
                Some((input, o, label)) => {
                    let shown = o.parsed.filter(|p| *p != o.text);
                    (input, o.text, shown, label.raw, label.value, label.score)
                }
                None => (
                    String::new(),
                    String::new(),
                    None,
                    String::new(),
                    None,
                    None,
                ),
            };
            EvalRec {
                input,
                output,
                shown,
                seed_prompt: Some(r.seed.prompt.to_string()),
                complied_raw,
                complied,
                score,
                attack: Some(a.text.clone()),
                valid: Some(valid[i]),
                turns: attacks.histories[i].iter().map(Turn::recorded).collect(),
                ..eval_rec(cx, round, version, r, mode)
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
/// defender (in a multi-turn game, whose conversations depend on the defender, each cell plays its own). So a
/// pretrained model is loaded three times in all instead of three times per cell. `on_cell` is
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
    let loaded = &loaded.two_players();
    let (game, join) = start_outside(loaded, registry, work_dir, &BTreeMap::new()).await?;
    let cx = Ctx::outside(loaded, registry, work_dir, &game, None);
    let load = |slot: Slot, state: &Arc<Vec<u8>>| {
        let cx = &cx;
        let state = state.clone();
        async move { cx.call(slot, Load(state)).await }
    };
    let mode = EvalMode::Attacker;
    // A single-turn attacker's rewrites are made once and answered by every defender; a multi-turn attack is a
    // conversation with the defender, so each cell plays its own.
    let multi_turn = loaded.scenario.game.turns > 1;
    let mut attacks = Vec::with_capacity(attackers.len());
    for (i, a) in attackers.iter().enumerate() {
        if multi_turn {
            break;
        }
        let made = match load(Slot::Attacker, a).await {
            Ok(()) => attack_phase(&cx, round, mode).await,
            Err(e) => Err(rerr(format!("attacker {i}: {e}"))),
        };
        attacks.push(made);
    }
    let mut cells = Vec::with_capacity(attackers.len() * defenders.len());
    for (j, d) in defenders.iter().enumerate() {
        let loaded_d = load(Slot::Defender, d).await;
        for (i, a) in attackers.iter().enumerate() {
            let records = match (&loaded_d, attacks.get(i)) {
                (Err(e), _) => Err(rerr(format!("defender {j}: {e}"))),
                (Ok(()), None) => match load(Slot::Attacker, a).await {
                    Ok(()) => eval_attacked(&cx, round, mode).await,
                    Err(e) => Err(rerr(format!("attacker {i}: {e}"))),
                },
                (Ok(()), Some(Err(e))) => Err(rerr(e.0.clone())),
                (Ok(()), Some(Ok(att))) => defend_phase(&cx, round, mode, att).await,
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
