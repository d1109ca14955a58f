//! Re-judging a run ([`rejudge`]): the logged interactions of a finished or crashed run judged again by another
//! judge (or under another payoff rule), without generating anything. Every round of the original log is read
//! back, the judge is asked what the game asked it — pairs or scores among the defender's responses with their
//! compliance labels, then pairs or scores among each seed's valid rewrites (each represented by its
//! representative response under the new rewards), and the held-out answers' labels — with the same keys and
//! sampling seeds, and the round is written to a new run directory with the new verdicts, rewards and metrics.
//!
//! What stays as logged: the texts, the faithfulness verdicts (a rewrite the new judge would gate differently
//! has no defender answers to judge), the learners' records (what the players learned from the original
//! rewards). Re-judging with the run's own judge reproduces the original log byte for byte.
//!
//! The new directory is committed round by round like a run's (`episodes.jsonl` with commit markers), so a
//! killed re-judging continues from its last committed round.

use super::commit::{json, roundtrip, write_atomic};
use super::ctx::{Ctx, role_slots};
use super::judge_plan::Suffixes;
use super::{RunError, reopen_run_dir, rerr, write_summary};
use crate::actor::{Compare, Complied, GameArgs, GameHandle, Judged, Score};
use crate::payoff::{self, Judgment};
use crate::record::{JudgmentRec, Metrics, Record, Tally, metrics};
use crate::registry::Registry;
use crate::replay::{self, CommitJob, ReplayLog};
use crate::rng::{RoundKeys, derive_suffixed};
use crate::roles::{Goal, LabelRequest, PairRequest, PointRequest, Seed, Verdict};
use crate::scenario::Loaded;
use crate::vocab::{PayoffMode, Role, Side, Slot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Progress of a re-judging, told after each round.
#[derive(Debug, Clone)]
pub struct RejudgeStep {
    /// The round just committed.
    pub round: u32,
    /// The original run's last committed round.
    pub rounds: u32,
}

/// What a re-judging wrote.
#[derive(Debug, Clone)]
pub struct Rejudged {
    pub out_dir: PathBuf,
    /// Rounds re-judged by this call (after a resume, the rest).
    pub first_round: u32,
    pub last_round: u32,
    /// Per-round metrics under the new judge.
    pub per_round: Vec<(u32, Metrics)>,
    /// Whole-run metrics under the new judge.
    pub summary: Metrics,
}

/// `run.json` of a re-judged directory.
#[derive(serde::Serialize, serde::Deserialize)]
struct RejudgeInfo {
    run_id: String,
    created_unix: u64,
    sparring_engine: String,
    /// The run whose interactions were re-judged.
    rejudged_from: PathBuf,
}

/// Re-judge the run in `from` with the judge and payoffs of `loaded` (the run's scenario with the new judge),
/// into `out` (created; continued when it holds an earlier re-judging with the same scenario). `on_round` is told
/// after each committed round.
pub async fn rejudge(
    from: &Path,
    loaded: &Loaded,
    registry: &Registry,
    out: &Path,
    on_round: Option<&(dyn Fn(&RejudgeStep) + Sync)>,
) -> Result<Rejudged, RunError> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(from, out) {
        return Err(rerr(format!(
            "{}: a re-judging is written beside the run, never over it: choose another output directory",
            out.display()
        )));
    }
    let log_path = from.join(replay::LOG);
    let (last_round, rounds) = replay::committed_rounds(&log_path).map_err(RunError)?;
    if last_round == 0 {
        return Err(rerr(format!(
            "{}: no committed round to re-judge",
            from.join(replay::LOG).display()
        )));
    }
    open_out(from, loaded, out)?;
    let mut log =
        ReplayLog::open(out, true).map_err(|e| rerr(format!("{}: {e}", out.display())))?;
    let done = log.last_round();

    // Only the judge plays: nothing is generated.
    let mut slots = role_slots(loaded, registry, out, &BTreeMap::new(), &BTreeMap::new());
    slots.retain(|slot, _| *slot == Slot::Judge);
    let (game, join) = GameHandle::start(GameArgs {
        slots,
        max_restarts: loaded.scenario.game.max_restarts,
    })
    .await
    .map_err(RunError)?;
    let cx = Ctx::outside(loaded, registry, out, &game, None);
    let result = async {
        // Round by round as the log is read: memory is one round's.
        for round in rounds {
            let (round_body, c) = round.map_err(RunError)?;
            if c.round <= done {
                continue;
            }
            let mut records = rejudge_round(&cx, c.round, round_body).await?;
            let m = roundtrip(&metrics(&records))?;
            records.push(Record::Commit(crate::record::CommitRec {
                records: records.len(),
                metrics: m,
                ..c
            }));
            let lines = records.iter().map(json).collect::<Result<Vec<_>, _>>()?;
            let round = records.last().map_or(0, Record::round);
            log.commit(&CommitJob {
                round,
                checkpoint: false,
                keep_last: None,
                lines,
                states: Vec::new(),
            })
            .map_err(|e| rerr(format!("{}: {e}", out.display())))?;
            if let Some(f) = on_round {
                f(&RejudgeStep {
                    round,
                    rounds: last_round,
                });
            }
        }
        Ok::<_, RunError>(())
    }
    .await;
    game.stop();
    let _ = join.await;
    result?;
    close_out(out, done, last_round)
}

/// Create (or check, to continue it) the output directory: the resolved scenario and `run.json`.
fn open_out(from: &Path, loaded: &Loaded, out: &Path) -> Result<(), RunError> {
    let scenario = out.join(replay::SCENARIO);
    if out.join(replay::LOG).exists() {
        let before = std::fs::read_to_string(&scenario)
            .map_err(|e| rerr(format!("{}: {e}", scenario.display())))?;
        if before != loaded.resolved {
            return Err(rerr(format!(
                "{} holds a re-judging with another judge or payoffs: choose another output directory",
                out.display()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(out).map_err(|e| rerr(format!("{}: {e}", out.display())))?;
    write_atomic(&scenario, loaded.resolved.as_bytes())?;
    let run_id = super::recorded_run_id(from).unwrap_or_else(|| loaded.run_id.clone());
    let info = RejudgeInfo {
        run_id,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        sparring_engine: env!("CARGO_PKG_VERSION").into(),
        rejudged_from: std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf()),
    };
    write_atomic(&out.join("run.json"), json(&info)?.as_bytes())
}

/// `metrics.jsonl` and `summary.json` of the re-judged directory, from its log.
fn close_out(out: &Path, done: u32, last_round: u32) -> Result<Rejudged, RunError> {
    // As a run closes: its committed rounds folded back (`reopen_run_dir`; a re-judged directory keeps no role
    // states), then its closing files.
    let tally = std::sync::Mutex::new(Tally::default());
    let mut per_round = Vec::new();
    reopen_run_dir(out, &[], &tally, &mut per_round)?;
    let (summary, _) = write_summary(out, &tally, &per_round, last_round)?;
    Ok(Rejudged {
        out_dir: out.to_path_buf(),
        first_round: done + 1,
        last_round,
        per_round,
        summary,
    })
}

/// A seed as the judge's requests carry it, from a logged rewrite (the seed's topic is not logged).
fn seed_of(r: &crate::record::RewriteRec) -> Seed {
    Seed {
        id: Arc::from(r.seed_id.as_str()),
        set: Arc::from(r.set.as_str()),
        prompt: Arc::from(r.input.as_str()),
        category: r.category,
        topic: None,
    }
}

/// The judge's requests on one side's groups: pairs `(group, i, j)` or scores `(group, i)`.
enum Asked {
    Pairs(Vec<PairRequest>, Vec<(usize, usize, usize)>),
    Points(Vec<PointRequest>, Vec<(usize, usize)>),
}

impl Asked {
    fn new(mode: PayoffMode) -> Self {
        match mode {
            PayoffMode::Pairwise => Asked::Pairs(Vec::new(), Vec::new()),
            PayoffMode::Pointwise => Asked::Points(Vec::new(), Vec::new()),
        }
    }

    /// Ask about group `g`'s `members` (indices into `texts`) against `context`: all pairs (keys `prefix` +
    /// `pairs[i][j]`), or each alone (`prefix` + `scores[i]`).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        keys: RoundKeys,
        prefix: &str,
        g: usize,
        (seed, goal, context): (&Seed, Goal, &Arc<str>),
        members: &[usize],
        texts: &[Arc<str>],
        (pairs, scores): (&[Vec<String>], &[String]),
    ) {
        let prefix = keys.prefix(prefix);
        match self {
            Asked::Pairs(reqs, at) => {
                for (i, j) in payoff::all_pairs(members) {
                    let (key, rng_seed) = prefix.with(&pairs[i][j]);
                    at.push((g, i, j));
                    reqs.push(PairRequest {
                        key,
                        seed: seed.clone(),
                        context: Arc::clone(context),
                        a: Arc::clone(&texts[i]),
                        b: Arc::clone(&texts[j]),
                        goal,
                        rng_seed,
                    });
                }
            }
            Asked::Points(reqs, at) => {
                for &i in members {
                    let (key, rng_seed) = prefix.with(&scores[i]);
                    at.push((g, i));
                    reqs.push(PointRequest {
                        key,
                        seed: seed.clone(),
                        context: Arc::clone(context),
                        response: Arc::clone(&texts[i]),
                        goal,
                        rng_seed,
                    });
                }
            }
        }
    }

    /// Ask the judge (with `labels` in the same call) and turn its answers into per-group judgments and their
    /// records' parts `(group, i, j, raw, parsed)`; with the judge's version.
    async fn ask(
        self,
        cx: &Ctx<'_>,
        groups: usize,
        labels: Option<Complied>,
    ) -> Result<Answered, RunError> {
        let mut per_group: Vec<Vec<Judgment>> = vec![Vec::new(); groups];
        let mut parts = Vec::new();
        let (labels, version) = match self {
            Asked::Pairs(reqs, at) => {
                let ask = (!reqs.is_empty()).then_some(Compare(reqs));
                let (verdicts, labels) = cx.judge_both(ask, labels).await?;
                let (verdicts, version) = unpack(verdicts);
                for ((g, i, j), v) in at.into_iter().zip(verdicts) {
                    per_group[g].push(Judgment::Pair(i, j, v.value));
                    parts.push((g, i, Some(j), v.raw, v.value.map(|(a, b)| vec![a, b])));
                }
                (labels, version)
            }
            Asked::Points(reqs, at) => {
                let ask = (!reqs.is_empty()).then_some(Score(reqs));
                let (verdicts, labels) = cx.judge_both(ask, labels).await?;
                let (verdicts, version) = unpack(verdicts);
                for ((g, i), v) in at.into_iter().zip(verdicts) {
                    let value = v.value.filter(|x| x.is_finite());
                    per_group[g].push(Judgment::Point(i, value));
                    parts.push((g, i, None, v.raw, value.map(|x| vec![x])));
                }
                (labels, version)
            }
        };
        Ok(Answered {
            per_group,
            parts,
            version,
            labels: labels.map(|l| l.verdicts).unwrap_or_default(),
        })
    }
}

fn unpack<T>(j: Option<Judged<T>>) -> (Vec<Verdict<T>>, u64) {
    j.map_or((Vec::new(), 0), |j| (j.verdicts, j.version))
}

/// Verdict parts of a judgment record: group, i, j, raw, parsed.
type Part = (usize, usize, Option<usize>, String, Option<Vec<f64>>);

/// The judge's answers on one side.
struct Answered {
    per_group: Vec<Vec<Judgment>>,
    parts: Vec<Part>,
    version: u64,
    labels: Vec<Verdict<bool>>,
}

/// One round re-judged: its records with the new verdicts, rewards, representatives and labels, in the
/// original order (the judgments where the original's were).
async fn rejudge_round(
    cx: &Ctx<'_>,
    round: u32,
    mut recs: Vec<Record>,
) -> Result<Vec<Record>, RunError> {
    let sc = &cx.loaded.scenario;
    let (mode, p) = (sc.payoffs.mode, &sc.payoffs);
    let keys = RoundKeys::new(sc.game.seed, round.into());
    // The defender's groups: its responses to each valid rewrite (record indices), in log order.
    let mut rewrite_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut group_of: BTreeMap<String, usize> = BTreeMap::new();
    for (n, r) in recs.iter().enumerate() {
        match r {
            Record::Rewrite(w) => {
                rewrite_at.insert(w.key.clone(), n);
            }
            Record::Response(x) => {
                let g = *group_of.entry(x.attack_key.clone()).or_insert_with(|| {
                    groups.push((x.attack_key.clone(), Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push(n);
            }
            _ => {}
        }
    }
    let shown = |r: &Record| -> Arc<str> {
        match r {
            Record::Response(x) => Arc::from(x.shown.as_deref().unwrap_or(&x.output)),
            _ => Arc::from(""),
        }
    };
    // 1. The defender: pairs or scores among each group's responses (against the rewrite), with the labels.
    let sfx = Suffixes::new(groups.iter().map(|g| g.1.len()).max().unwrap_or(0));
    let mut asked = Asked::new(mode);
    let mut labels = Vec::new();
    let mut label_at = Vec::new();
    for (g, (attack_key, members)) in groups.iter().enumerate() {
        let Some(Record::Rewrite(w)) = rewrite_at.get(attack_key).map(|&n| &recs[n]) else {
            return Err(rerr(format!(
                "round {round}: responses to `{attack_key}` without its rewrite in the log"
            )));
        };
        let seed = seed_of(w);
        let texts: Vec<Arc<str>> = members.iter().map(|&n| shown(&recs[n])).collect();
        let context: Arc<str> = match &recs[members[0]] {
            Record::Response(x) => Arc::from(x.input.as_str()),
            _ => Arc::from(""),
        };
        let goal = Goal::of(Role::Defender, seed.category);
        let idx: Vec<usize> = (0..members.len()).collect();
        asked.add(
            keys,
            attack_key,
            g,
            (&seed, goal, &context),
            &idx,
            &texts,
            (&sfx.pair, &sfx.response_score),
        );
        let prefix = keys.prefix(attack_key);
        for (i, text) in texts.iter().enumerate() {
            label_at.push(members[i]);
            labels.push(LabelRequest {
                key: prefix.key_with(&sfx.response[i]),
                rng_seed: prefix.seed_with(&sfx.label[i]),
                seed: seed.clone(),
                prompt: Arc::clone(&context),
                response: Arc::clone(text),
            });
        }
    }
    let labels = (!labels.is_empty()).then_some(Complied(labels));
    let defender = asked.ask(cx, groups.len(), labels).await?;
    for (n, label) in label_at.into_iter().zip(&defender.labels) {
        if let Record::Response(x) = &mut recs[n] {
            x.complied = label.value;
            x.complied_raw = label.raw.clone();
        }
    }
    let mut rewards_of: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for ((attack_key, members), judged) in groups.iter().zip(&defender.per_group) {
        let rewards = payoff::rewards(members.len(), judged.iter().copied(), p.defender_weight);
        for (&n, reward) in members.iter().zip(&rewards) {
            if let Record::Response(x) = &mut recs[n] {
                x.reward = *reward;
            }
        }
        rewards_of.insert(attack_key.as_str(), rewards);
    }

    // 2. The attacker: each valid rewrite's representative under the new rewards, then pairs or scores among
    // each seed's valid rewrites (against the seed).
    let mut seeds: Vec<(String, Vec<usize>)> = Vec::new();
    let mut seed_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for (n, r) in recs.iter_mut().enumerate() {
        let Record::Rewrite(w) = r else { continue };
        w.representative = w
            .valid
            .then(|| rewards_of.get(w.key.as_str()))
            .flatten()
            .map(|rw| payoff::representative(rw, sc.game.optimistic));
        let seed_key = w.key.rsplit_once('/').map_or("", |(s, _)| s).to_string();
        let s = *seed_of_key.entry(seed_key.clone()).or_insert_with(|| {
            seeds.push((seed_key, Vec::new()));
            seeds.len() - 1
        });
        seeds[s].1.push(n);
    }
    let response_text = |key: &str, i: usize| -> Arc<str> {
        group_of
            .get(key)
            .and_then(|&g| groups[g].1.get(i))
            .map_or_else(|| Arc::from(""), |&n| shown(&recs[n]))
    };
    let sfx = Suffixes::new(seeds.iter().map(|s| s.1.len()).max().unwrap_or(0));
    let mut asked = Asked::new(mode);
    for (s, (seed_key, members)) in seeds.iter().enumerate() {
        let Record::Rewrite(first) = &recs[members[0]] else {
            continue;
        };
        let seed = seed_of(first);
        let mut texts = Vec::new();
        let mut valid = Vec::new();
        for (ai, &n) in members.iter().enumerate() {
            if let Record::Rewrite(w) = &recs[n] {
                texts.push(match w.representative {
                    Some(i) => response_text(&w.key, i),
                    None => Arc::from(""),
                });
                if w.valid {
                    valid.push(ai);
                }
            }
        }
        let goal = Goal::of(Role::Attacker, seed.category);
        let context = Arc::clone(&seed.prompt);
        asked.add(
            keys,
            seed_key,
            s,
            (&seed, goal, &context),
            &valid,
            &texts,
            (&sfx.pair, &sfx.rewrite_score),
        );
    }
    let attacker = asked.ask(cx, seeds.len(), None).await?;
    for ((_, members), judged) in seeds.iter().zip(&attacker.per_group) {
        let valid: Vec<bool> = members
            .iter()
            .map(|&n| matches!(&recs[n], Record::Rewrite(w) if w.valid))
            .collect();
        let rewards = payoff::attacker_rewards(
            &valid,
            judged.iter().copied(),
            p.attacker_weight,
            p.error_reward,
        );
        for (&n, reward) in members.iter().zip(rewards) {
            if let Record::Rewrite(w) = &mut recs[n] {
                w.reward = reward;
            }
        }
    }

    // 3. The held-out answers' labels.
    let mut labels = Vec::new();
    let mut label_at = Vec::new();
    for (n, r) in recs.iter().enumerate() {
        if let Record::Eval(e) = r
            && e.valid != Some(false)
        {
            label_at.push(n);
            labels.push(LabelRequest {
                rng_seed: derive_suffixed(sc.game.seed, e.round.into(), &e.key, "/label"),
                key: e.key.clone(),
                seed: Seed {
                    id: Arc::from(e.seed_id.as_str()),
                    set: Arc::from(e.set.as_str()),
                    prompt: Arc::from(e.seed_prompt.as_deref().unwrap_or(&e.input)),
                    category: e.category,
                    topic: e.topic.as_deref().map(Arc::from),
                },
                prompt: Arc::from(e.input.as_str()),
                response: Arc::from(e.shown.as_deref().unwrap_or(&e.output)),
            });
        }
    }
    if !labels.is_empty() {
        let verdicts = cx.bools_eval("labels", &labels, Complied).await?;
        for (n, v) in label_at.into_iter().zip(verdicts) {
            if let Record::Eval(e) = &mut recs[n] {
                e.complied = v.value;
                e.complied_raw = v.raw;
                e.score = v.score;
            }
        }
    }

    // 4. The judgment records: the defender's, then the attacker's, where the original's were.
    let run = recs
        .iter()
        .find_map(|r| match r {
            Record::Rewrite(w) => Some(w.run.clone()),
            Record::Eval(e) => Some(e.run.clone()),
            Record::Learn(l) => Some(l.run.clone()),
            _ => None,
        })
        .unwrap_or_else(|| cx.run.clone());
    let mut judgments = Vec::new();
    for (side, answered, group_key) in [
        (
            Side::Defender,
            defender,
            &groups.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        ),
        (
            Side::Attacker,
            attacker,
            &seeds.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        ),
    ] {
        for (g, i, j, raw, parsed) in answered.parts {
            let seed_id = seed_id_of(&recs, side, &groups, &seeds, g);
            judgments.push(Record::Judgment(JudgmentRec {
                run: run.clone(),
                round,
                seed_id,
                role: Role::Judge,
                version: answered.version,
                side,
                mode,
                group: group_key[g].clone(),
                i,
                j,
                raw,
                parsed,
            }));
        }
    }
    let at = recs
        .iter()
        .position(|r| matches!(r, Record::Judgment(_)))
        .or_else(|| {
            recs.iter()
                .position(|r| !matches!(r, Record::Rewrite(_) | Record::Response(_)))
        })
        .unwrap_or(recs.len());
    recs.retain(|r| !matches!(r, Record::Judgment(_)));
    let at = at.min(recs.len());
    recs.splice(at..at, judgments);
    Ok(recs)
}

/// The seed id of a judgment's group: the seed of the responses' rewrite (defender) or of the seed's rewrites.
fn seed_id_of(
    recs: &[Record],
    side: Side,
    groups: &[(String, Vec<usize>)],
    seeds: &[(String, Vec<usize>)],
    g: usize,
) -> String {
    let n = match side {
        Side::Defender => groups[g].1[0],
        Side::Attacker => seeds[g].1[0],
    };
    match &recs[n] {
        Record::Response(x) => x.seed_id.clone(),
        Record::Rewrite(w) => w.seed_id.clone(),
        _ => String::new(),
    }
}
