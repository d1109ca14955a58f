//! One round of the game ([`play_round`]), in its steps:
//!
//! 1. attack ([`Round::attack`]): the attacker rewrites each of the round's seeds `attacks_per_seed` times (in a
//!    multi-turn game each rewrite opens a conversation, played to its last turn by `turns::converse`: the last
//!    turn is the rewrite the steps below gate, answer and judge);
//! 2. faithfulness gate ([`Round::faithfulness_gate`]): the judge's verdicts on the parseable rewrites (an
//!    unparseable or unfaithful rewrite is invalid: its attacker reward is the error reward, and the defender
//!    does not answer it);
//! 3. defend ([`Round::defend`]): `responses_per_attack` defender responses per valid rewrite;
//! 4. judge the defender ([`Round::judge_defender`]): defender rewards from pairs (or scores) among the
//!    responses to each rewrite, judged against the rewrite, with the responses' compliance labels in the same
//!    judge call; the defender's update starts as soon as its rewards are known;
//! 5. representatives ([`Round::representatives`]): each valid rewrite is represented by the defender's best
//!    response (`optimistic`) or its first response with a verdict;
//! 6. judge the attacker ([`Round::judge_attacker`]): attacker rewards from pairs (or scores) among the valid
//!    rewrites of a seed, each represented by its representative response, judged against the seed;
//! 7. learn ([`Round::learn`]): the learners' updates (sides frozen by the schedule do not learn), with the next
//!    round's attacker requests queued behind the attacker's;
//! 8. evaluate ([`Round::evaluate`]): the held-out evaluation, when due.
//!
//! The engine's own work overlaps the roles' compute wherever the data allows ([`overlap`]): each step's
//! requests are built, but for the texts still to come, while the step before it computes.

use super::best_response::Deferred;
use super::ctx::{Ctx, Pending};
use super::eval::eval_phase;
use super::judge_plan::{JudgeSkeleton, Planned, Verdicts, defender_rewards, judge_skeleton};
use super::records::{PendingJudgment, RoundLog};
use super::turns::{Chain, converse};
use super::{RunError, Timings, draw, ms};
use crate::actor::{Compare, Complied, Faithful, Generate, Generated, Learn, Learned, Score};
use crate::payoff::{self, Judgment};
use crate::record::{EvalRec, LearnRec, Record};
use crate::rng::{RoundKeys, derive};
use crate::roles::{
    FaithRequest, GenRequest, Generation, Group, LabelRequest, Seed, Turn, Verdict,
};
use crate::vocab::{Role, Side, Slot};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// One rewrite while the round is assembled.
pub(super) struct Rw {
    pub(super) text: String,
    pub(super) parsed: Option<String>,
    /// The attacker's behaviour log-probs ([`Generation::logprobs`]), for its learner group.
    pub(super) logprobs: Vec<f32>,
    pub(super) faithful_raw: Option<String>,
    pub(super) faithful: Option<bool>,
    pub(super) valid: bool,
    /// Index into the defender request list when valid.
    pub(super) defender_request: Option<usize>,
    pub(super) representative: Option<usize>,
    pub(super) reward: Option<f64>,
    /// A multi-turn game: the conversation before this, the last turn (empty with one turn).
    pub(super) history: Vec<Turn>,
}

impl Rw {
    /// A conversation's last attacker turn, not yet gated.
    fn new(chain: Chain) -> Self {
        let g = chain.last;
        Rw {
            history: chain.history,
            valid: false,
            text: g.text,
            parsed: g.parsed,
            logprobs: g.logprobs,
            faithful_raw: None,
            faithful: None,
            defender_request: None,
            representative: None,
            reward: None,
        }
    }
}

/// One defender response while the round is assembled.
pub(super) struct Resp {
    pub(super) out: Generation,
    pub(super) complied_raw: String,
    pub(super) complied: Option<bool>,
    pub(super) reward: Option<f64>,
}

impl Resp {
    /// A defender's generation, not yet judged.
    fn new(out: Generation) -> Self {
        Resp {
            out,
            complied_raw: String::new(),
            complied: None,
            reward: None,
        }
    }
}

/// A generation as the judge sees it: its parsed text, else its raw text.
pub(super) fn shown(g: &Generation) -> &str {
    g.parsed.as_deref().unwrap_or(&g.text)
}

/// Run `work` (the engine's own work) while `call` (role requests) is in flight: the call is polled once
/// (which puts its requests on the roles' threads), then `work` runs beside the compute.
pub(super) async fn overlap<F: Future, W: Future>(call: F, work: W) -> (F::Output, W::Output) {
    use std::task::Poll;
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(out) = std::future::poll_fn(|c| Poll::Ready(call.as_mut().poll(c))).await {
        return (out, work.await);
    }
    tokio::join!(call, work)
}

/// The defender's update, once its rewards are known.
enum DefenderUpdate {
    /// The schedule freezes the defender this round.
    Frozen,
    /// Sent to the defender: it computes while the judge compares the attacker's rewrites.
    Sent(Pending<Learned>),
    /// Self-play: the defender's batch, learned with the attacker's in the one player's update.
    Held(Vec<Group>),
}

/// What a round hands to its commit.
pub(super) struct Played {
    pub(super) log: RoundLog,
    pub(super) timings: Timings,
    pub(super) retired: Vec<Arc<Vec<u8>>>,
    /// When the round's play ended (its commit follows).
    pub(super) end: Instant,
    /// The next round's attacker requests, queued behind its update.
    pub(super) next: Option<Next>,
}

/// The next round's attacker requests (queued behind the attacker's update), with their seeds and keys.
pub(super) struct Next {
    pub(super) pending: Pending<Generated>,
    pub(super) seeds: Vec<Seed>,
    pub(super) seed_keys: Vec<String>,
}

/// The seeds of `round`, their keys, and the attacker's requests.
fn attacker_requests(cx: &Ctx<'_>, round: u32) -> (Vec<Seed>, Vec<String>, Vec<GenRequest>) {
    let g = &cx.loaded.scenario.game;
    let seeds = draw(&cx.loaded.train, g.seed, round, g.seeds_per_round);
    let seed_keys: Vec<String> = seeds.iter().map(|s| format!("r{round}/{}", s.id)).collect();
    let requests = seeds
        .iter()
        .zip(&seed_keys)
        .map(|(s, key)| GenRequest {
            rng_seed: derive(g.seed, round.into(), key),
            key: key.clone(),
            role: Role::Attacker,
            seed: s.clone(),
            input: s.prompt.to_string(),
            n: g.attacks_per_seed,
            history: Vec::new(),
        })
        .collect();
    (seeds, seed_keys, requests)
}

/// The next round's attacker requests, sent now: they queue behind the attacker's update (its thread goes on
/// to them at once). None after the last round, or when an evaluation (which reads the updated players) comes
/// between.
fn queue_next_round(cx: &Ctx<'_>, round: u32, eval_due: bool) -> Option<Next> {
    if round >= cx.loaded.scenario.game.rounds || eval_due {
        return None;
    }
    let (seeds, seed_keys, requests) = attacker_requests(cx, round + 1);
    if requests.is_empty() {
        return None;
    }
    // A failed submit leaves the request to the next round (which reports the error).
    let pending = cx.submit(Slot::Attacker, Generate(requests)).ok()?;
    Some(Next {
        pending,
        seeds,
        seed_keys,
    })
}

/// The attacker's requests of a round: queued in the round before (behind its update), or still to send.
enum AttackerCall {
    Queued(Pending<Generated>),
    ToSend(Vec<GenRequest>),
}

/// Per seed, a faithfulness request and a defender request for each rewrite, but for the rewrite's text.
type RewriteRequests = Vec<Vec<(FaithRequest, GenRequest)>>;

/// The judge's compliance labels of the defender's responses.
struct Labels {
    /// `(request index k, i)` per label.
    at: Vec<(usize, usize)>,
    verdicts: Vec<Verdict<bool>>,
}

/// Play one round: its steps (see the module's doc), each timed in the round's [`Timings`].
pub(super) async fn play_round(
    cx: &Ctx<'_>,
    round: u32,
    states: &mut BTreeMap<Slot, Arc<Vec<u8>>>,
    queued: Option<Next>,
) -> Result<Played, RunError> {
    let started = Instant::now();
    // Requests queued in the round before come with their seeds; otherwise they are made here.
    let (seeds, seed_keys, attacker_call) = match queued {
        Some(next) => (
            next.seeds,
            next.seed_keys,
            AttackerCall::Queued(next.pending),
        ),
        None => {
            let (seeds, seed_keys, requests) = attacker_requests(cx, round);
            (seeds, seed_keys, AttackerCall::ToSend(requests))
        }
    };
    let mut r = Round::new(cx, round, seeds, seed_keys);
    let (generations, rewrite_requests) = r.attack(attacker_call).await?;
    let defender_requests = r.faithfulness_gate(generations, rewrite_requests).await?;
    let JudgeSkeleton {
        defender,
        labels,
        attacker,
    } = r.defend(defender_requests).await?;
    let judging = Instant::now();
    let (labels, defender_update) = r.judge_defender(defender, labels).await?;
    r.representatives();
    let attacker_batch = r.judge_attacker(attacker, labels).await?;
    r.timings.judge_ms = ms(judging);
    let next = r.learn(states, attacker_batch, defender_update).await?;
    let (evaluations, deferred) = r.evaluate(states).await?;
    Ok(r.played(started, evaluations, deferred, next))
}

/// A round in play: its seeds, and what its steps have made so far.
struct Round<'c> {
    cx: &'c Ctx<'c>,
    number: u32,
    /// The round's request keys and sampling seeds.
    keys: RoundKeys,
    timings: Timings,
    seeds: Vec<Seed>,
    /// `r<round>/<seed id>` per seed: the prefix of its requests' keys.
    seed_keys: Vec<String>,
    /// Per seed, its rewrites.
    rewrites: Vec<Vec<Rw>>,
    attacker_version: u64,
    /// One per valid rewrite ([`Rw::defender_request`]).
    defender_requests: Vec<GenRequest>,
    /// Per defender request, its responses.
    responses: Vec<Vec<Resp>>,
    /// Per defender request, its responses' texts as the judge sees them ([`shown`]): each once, the judge's
    /// requests share them.
    shown_texts: Vec<Vec<Arc<str>>>,
    defender_version: u64,
    /// The judge's verdicts, on their way to judgment records (with the commit: [`RoundLog`]).
    judgments: Vec<PendingJudgment>,
    /// The learners' records.
    learn_records: Vec<Record>,
    /// The states the learners' new ones replaced.
    retired: Vec<Arc<Vec<u8>>>,
}

impl<'c> Round<'c> {
    fn new(cx: &'c Ctx<'c>, number: u32, seeds: Vec<Seed>, seed_keys: Vec<String>) -> Self {
        Round {
            cx,
            number,
            keys: RoundKeys::new(cx.loaded.scenario.game.seed, number.into()),
            timings: Timings {
                round: number,
                ..Default::default()
            },
            seeds,
            seed_keys,
            rewrites: Vec::new(),
            attacker_version: 0,
            defender_requests: Vec::new(),
            responses: Vec::new(),
            shown_texts: Vec::new(),
            defender_version: 0,
            judgments: Vec::new(),
            learn_records: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// Attack: the attacker's rewrites of the round's seeds (its requests may have been queued behind its
    /// update in the round before); in a multi-turn game, each rewrite opens a conversation, played to its last
    /// turn ([`converse`]). While it generates: a faithfulness and a defender request for every rewrite (texts
    /// filled in when the rewrites come).
    async fn attack(
        &mut self,
        call: AttackerCall,
    ) -> Result<(Vec<Vec<Chain>>, RewriteRequests), RunError> {
        let t = Instant::now();
        let cx = self.cx;
        let generate = async {
            match call {
                AttackerCall::Queued(pending) => {
                    cx.answer(pending).await.map(|g| (g.gens, g.version))
                }
                AttackerCall::ToSend(requests) => cx.generate(Slot::Attacker, requests).await,
            }
        };
        let (generated, requests) = overlap(generate, async { self.rewrite_requests() }).await;
        let (generations, version) = generated?;
        self.attacker_version = version;
        // Each conversation is keyed as its rewrite (and its defender request) is.
        let keys: Vec<Vec<String>> = requests
            .iter()
            .map(|row| row.iter().map(|(_, defend)| defend.key.clone()).collect())
            .collect();
        let chains = converse(cx, self.number, &self.seeds, &keys, generations).await?;
        self.timings.attacker_ms = ms(t);
        Ok((chains, requests))
    }

    /// The faithfulness and defender requests of every rewrite to come, keyed `<seed key>/a<i>`.
    fn rewrite_requests(&self) -> RewriteRequests {
        let g = &self.cx.loaded.scenario.game;
        let suffixes: Vec<(String, String)> = (0..g.attacks_per_seed)
            .map(|ai| (format!("/a{ai}"), format!("/a{ai}/faithful")))
            .collect();
        self.seeds
            .iter()
            .zip(&self.seed_keys)
            .map(|(s, seed_key)| {
                let prefix = self.keys.prefix(seed_key);
                suffixes
                    .iter()
                    .map(|(rewrite_sfx, faithful_sfx)| {
                        let (key, rng_seed) = prefix.with(rewrite_sfx);
                        let faithful = FaithRequest {
                            rng_seed: prefix.seed_with(faithful_sfx),
                            key: key.clone(),
                            seed: s.clone(),
                            rewrite: String::new(),
                            history: Vec::new(),
                        };
                        let defend = GenRequest {
                            rng_seed,
                            key,
                            role: Role::Defender,
                            seed: s.clone(),
                            input: String::new(),
                            n: g.responses_per_attack,
                            history: Vec::new(),
                        };
                        (faithful, defend)
                    })
                    .collect()
            })
            .collect()
    }

    /// Faithfulness gate: the judge's verdicts on the parseable rewrites when the scenario gates (otherwise each
    /// parseable rewrite is valid). Its requests go out first; the rewrites are assembled while the judge works.
    /// Returns each rewrite's defender request (per seed), but for its input.
    async fn faithfulness_gate(
        &mut self,
        generations: Vec<Vec<Chain>>,
        requests: RewriteRequests,
    ) -> Result<Vec<Vec<GenRequest>>, RunError> {
        let t = Instant::now();
        let cx = self.cx;
        let mut faithful_requests = Vec::new();
        // `(seed index, rewrite index)` per faithfulness request.
        let mut faithful_at = Vec::new();
        let mut defender_requests = Vec::with_capacity(self.seeds.len());
        for (si, (row, requests)) in generations.iter().zip(requests).enumerate() {
            let mut defender_row = Vec::with_capacity(requests.len());
            for (ai, (chain, (mut faithful, defend))) in row.iter().zip(requests).enumerate() {
                if let Some(text) = &chain.last.parsed {
                    faithful_at.push((si, ai));
                    faithful.rewrite = text.clone();
                    faithful.history = chain.history.clone();
                    faithful_requests.push(faithful);
                }
                defender_row.push(defend);
            }
            defender_requests.push(defender_row);
        }
        let rewrites = async {
            generations
                .into_iter()
                .map(|row| row.into_iter().map(Rw::new).collect())
                .collect::<Vec<Vec<Rw>>>()
        };
        self.rewrites = if cx.loaded.scenario.payoffs.faithfulness_gate {
            let judge = async {
                if faithful_requests.is_empty() {
                    return Ok(Vec::new());
                }
                let judged = cx.call(Slot::Judge, Faithful(faithful_requests)).await?;
                Ok::<_, RunError>(judged.verdicts)
            };
            let (verdicts, mut rewrites) = overlap(judge, rewrites).await;
            for (&(si, ai), verdict) in faithful_at.iter().zip(verdicts?) {
                let rw = &mut rewrites[si][ai];
                rw.valid = verdict.value == Some(true);
                rw.faithful = verdict.value;
                rw.faithful_raw = Some(verdict.raw);
            }
            rewrites
        } else {
            let mut rewrites = rewrites.await;
            for &(si, ai) in &faithful_at {
                rewrites[si][ai].valid = true;
            }
            rewrites
        };
        self.timings.faithfulness_ms = ms(t);
        Ok(defender_requests)
    }

    /// Defend: the defender's responses to the valid rewrites. While it generates: the judge's requests about
    /// its responses and about the valid rewrites ([`judge_skeleton`]).
    async fn defend(
        &mut self,
        requests_per_rewrite: Vec<Vec<GenRequest>>,
    ) -> Result<JudgeSkeleton, RunError> {
        let t = Instant::now();
        let cx = self.cx;
        let g = &cx.loaded.scenario.game;
        let mut requests = Vec::new();
        for (row, row_requests) in self.rewrites.iter_mut().zip(requests_per_rewrite) {
            for (rw, mut request) in row.iter_mut().zip(row_requests) {
                if rw.valid {
                    rw.defender_request = Some(requests.len());
                    request.input = rw.parsed.clone().unwrap_or_default();
                    request.history = rw.history.clone();
                    requests.push(request);
                }
            }
        }
        let generate = cx.generate(Slot::Defender, requests.clone());
        let (generated, skeleton) = overlap(generate, async {
            judge_skeleton(
                cx.loaded.scenario.payoffs.mode,
                (g.attacks_per_seed, g.responses_per_attack),
                self.keys,
                &self.seeds,
                &self.seed_keys,
                &self.rewrites,
                &requests,
            )
        })
        .await;
        let (generations, version) = generated?;
        self.responses = generations
            .into_iter()
            .map(|row| row.into_iter().map(Resp::new).collect())
            .collect();
        self.defender_requests = requests;
        self.defender_version = version;
        self.timings.defender_ms = ms(t);
        Ok(skeleton)
    }

    /// Judge the defender: the judge's verdicts on its responses (pairs or scores among the responses to each
    /// rewrite, judged against the rewrite) and the responses' compliance labels, in one call. While the judge
    /// works: the defender's learner batch but for its rewards. The defender's update needs only its rewards: it
    /// is sent as soon as they are known (while the judge compares the attacker's rewrites); the verdicts'
    /// judgment records are made after it is sent.
    async fn judge_defender(
        &mut self,
        mut plan: Planned,
        (mut label_requests, label_at): (Vec<LabelRequest>, Vec<(usize, usize)>),
    ) -> Result<(Labels, DefenderUpdate), RunError> {
        let cx = self.cx;
        // Each response's text once; the requests share it.
        self.shown_texts = self
            .responses
            .iter()
            .map(|row| row.iter().map(|r| Arc::from(shown(&r.out))).collect())
            .collect();
        let text = |k: usize, i: usize| Arc::clone(&self.shown_texts[k][i]);
        plan.fill(text);
        for (request, &(k, i)) in label_requests.iter_mut().zip(&label_at) {
            request.response = text(k, i);
        }
        let label_ask = (!label_requests.is_empty()).then_some(Complied(label_requests));
        let judge = async {
            match &mut plan {
                Planned::Pairs(requests, _) => {
                    let ask = (!requests.is_empty()).then(|| Compare(std::mem::take(requests)));
                    let (verdicts, labels) = cx.judge_both(ask, label_ask).await?;
                    Ok::<_, RunError>((verdicts.map(Verdicts::Pairs), labels))
                }
                Planned::Points(requests, _) => {
                    let ask = (!requests.is_empty()).then(|| Score(std::mem::take(requests)));
                    let (verdicts, labels) = cx.judge_both(ask, label_ask).await?;
                    Ok((verdicts.map(Verdicts::Points), labels))
                }
            }
        };
        let learns = cx.loaded.learns(Side::Defender, self.number);
        let (judged, mut batch) = overlap(judge, async {
            if !learns {
                return Vec::new();
            }
            self.defender_batch()
        })
        .await;
        let (verdicts, labels) = judged?;
        let labels = Labels {
            at: label_at,
            verdicts: labels.map(|l| l.verdicts).unwrap_or_default(),
        };
        let weight = cx.loaded.scenario.payoffs.defender_weight;
        let verdicts = defender_rewards(&mut self.responses, plan, verdicts, weight);
        for (k, group) in batch.iter_mut().enumerate() {
            group.rewards = self.responses[k].iter().map(|r| r.reward).collect();
        }
        let update = if !learns {
            DefenderUpdate::Frozen
        } else if cx.loaded.self_play() {
            DefenderUpdate::Held(batch)
        } else {
            DefenderUpdate::Sent(cx.submit(Slot::Defender, Learn(batch))?)
        };
        verdicts.record(&mut self.judgments);
        Ok((labels, update))
    }

    /// The defender's learner batch, one group per request, but for its rewards.
    fn defender_batch(&self) -> Vec<Group> {
        self.defender_requests
            .iter()
            .enumerate()
            .map(|(k, req)| Group {
                key: req.key.clone(),
                role: Role::Defender,
                seed: req.seed.clone(),
                input: req.input.clone(),
                outputs: self.responses[k]
                    .iter()
                    .map(|r| r.out.text.clone())
                    .collect(),
                rewards: Vec::new(),
                logprobs: self.responses[k]
                    .iter()
                    .map(|r| r.out.logprobs.clone())
                    .collect(),
                // The responses answer one conversation.
                histories: if req.history.is_empty() {
                    Vec::new()
                } else {
                    vec![req.history.clone(); self.responses[k].len()]
                },
            })
            .collect()
    }

    /// Representatives: each valid rewrite is represented by the defender's best response (`optimistic`) or
    /// its first response with a verdict ([`payoff::representative`]).
    fn representatives(&mut self) {
        let optimistic = self.cx.loaded.scenario.game.optimistic;
        for rw in self.rewrites.iter_mut().flatten() {
            if let Some(k) = rw.defender_request {
                let rewards: Vec<Option<f64>> =
                    self.responses[k].iter().map(|r| r.reward).collect();
                rw.representative = Some(payoff::representative(&rewards, optimistic));
            }
        }
    }

    /// The text of a rewrite's representative response as the judge sees it (`empty` when it has none).
    fn representative_text(&self, rw: &Rw, empty: &Arc<str>) -> Arc<str> {
        match (rw.defender_request, rw.representative) {
            (Some(k), Some(i)) => self
                .shown_texts
                .get(k)
                .and_then(|row| row.get(i))
                .map_or_else(|| Arc::clone(empty), Arc::clone),
            _ => Arc::clone(empty),
        }
    }

    /// Judge the attacker: the judge's verdicts on its valid rewrites (pairs or scores among those of each
    /// seed, each represented by its representative response, judged against the seed), then its rewards.
    /// While the judge works: the labels go to the responses and the attacker's learner batch is built (its
    /// rewards filled in by [`Self::learn`]).
    async fn judge_attacker(
        &mut self,
        mut plan: Planned,
        labels: Labels,
    ) -> Result<Vec<Group>, RunError> {
        let cx = self.cx;
        let empty: Arc<str> = Arc::from("");
        plan.fill(|si, ai| self.representative_text(&self.rewrites[si][ai], &empty));
        let judge = async {
            Ok::<_, RunError>(match &mut plan {
                Planned::Pairs(requests, _) if !requests.is_empty() => {
                    let ask = Compare(std::mem::take(requests));
                    Some(Verdicts::Pairs(cx.call(Slot::Judge, ask).await?))
                }
                Planned::Points(requests, _) if !requests.is_empty() => {
                    let ask = Score(std::mem::take(requests));
                    Some(Verdicts::Points(cx.call(Slot::Judge, ask).await?))
                }
                _ => None,
            })
        };
        let (verdicts, batch) = overlap(judge, async {
            self.label_responses(labels);
            self.attacker_batch()
        })
        .await;
        self.attacker_rewards(plan, verdicts?);
        Ok(batch)
    }

    /// The compliance labels go to their responses.
    fn label_responses(&mut self, labels: Labels) {
        for ((k, i), verdict) in labels.at.into_iter().zip(labels.verdicts) {
            let response = &mut self.responses[k][i];
            response.complied = verdict.value;
            response.complied_raw = verdict.raw;
        }
    }

    /// The attacker's learner batch, one group per seed, but for its rewards.
    fn attacker_batch(&self) -> Vec<Group> {
        self.seeds
            .iter()
            .enumerate()
            .map(|(si, s)| Group {
                key: self.seed_keys[si].clone(),
                role: Role::Attacker,
                seed: s.clone(),
                input: s.prompt.to_string(),
                outputs: self.rewrites[si].iter().map(|r| r.text.clone()).collect(),
                rewards: Vec::new(),
                logprobs: self.rewrites[si]
                    .iter()
                    .map(|r| r.logprobs.clone())
                    .collect(),
                histories: if self.rewrites[si].iter().all(|r| r.history.is_empty()) {
                    Vec::new()
                } else {
                    self.rewrites[si]
                        .iter()
                        .map(|r| r.history.clone())
                        .collect()
                },
            })
            .collect()
    }

    /// The attacker's verdicts per seed, and its rewards from them (the invalid rewrites get the error reward);
    /// the verdicts become judgment records.
    fn attacker_rewards(&mut self, plan: Planned, verdicts: Option<Verdicts>) {
        let p = &self.cx.loaded.scenario.payoffs;
        let mut per_seed: Vec<Vec<Judgment>> = vec![Vec::new(); self.seeds.len()];
        let judgment = |seed_at, i, j, raw, parsed, version| PendingJudgment {
            side: Side::Attacker,
            seed_at,
            i,
            j,
            raw,
            parsed,
            version,
        };
        match plan {
            Planned::Pairs(_, at) => {
                let (verdicts, version) = match verdicts {
                    Some(Verdicts::Pairs(out)) => (out.verdicts, out.version),
                    _ => (Vec::new(), 0),
                };
                for ((si, i, j), verdict) in at.into_iter().zip(verdicts) {
                    per_seed[si].push(Judgment::Pair(i, j, verdict.value));
                    let parsed = verdict.value.map(|(a, b)| vec![a, b]);
                    self.judgments
                        .push(judgment(si, i, Some(j), verdict.raw, parsed, version));
                }
            }
            Planned::Points(_, at) => {
                let (verdicts, version) = match verdicts {
                    Some(Verdicts::Points(out)) => (out.verdicts, out.version),
                    _ => (Vec::new(), 0),
                };
                for ((si, ai), verdict) in at.into_iter().zip(verdicts) {
                    let value = verdict.value.filter(|x| x.is_finite());
                    per_seed[si].push(Judgment::Point(ai, value));
                    let parsed = value.map(|x| vec![x]);
                    self.judgments
                        .push(judgment(si, ai, None, verdict.raw, parsed, version));
                }
            }
        }
        for (row, judged) in self.rewrites.iter_mut().zip(per_seed) {
            let valid: Vec<bool> = row.iter().map(|rw| rw.valid).collect();
            let rewards =
                payoff::attacker_rewards(&valid, judged, p.attacker_weight, p.error_reward);
            for (rw, reward) in row.iter_mut().zip(rewards) {
                rw.reward = reward;
            }
        }
    }

    /// Learn: the attacker's update (the defender's was sent by [`Self::judge_defender`]) and the defender's
    /// answer; sides frozen by the schedule do not learn. Under self-play, one update of the one player on both
    /// sides' batches (the defender's groups, then the attacker's). The new states replace the old ones in
    /// `states`. While the learners compute: the next round's attacker requests queue behind the attacker's
    /// update.
    async fn learn(
        &mut self,
        states: &mut BTreeMap<Slot, Arc<Vec<u8>>>,
        mut attacker_batch: Vec<Group>,
        defender_update: DefenderUpdate,
    ) -> Result<Option<Next>, RunError> {
        let t = Instant::now();
        let (cx, round) = (self.cx, self.number);
        for (group, row) in attacker_batch.iter_mut().zip(&self.rewrites) {
            group.rewards = row.iter().map(|r| r.reward).collect();
        }
        let attacker_learns = cx.loaded.learns(Side::Attacker, round);
        let (attacker_batch, defender_update) = match defender_update {
            DefenderUpdate::Held(mut both) => {
                both.extend(attacker_batch);
                (both, None)
            }
            DefenderUpdate::Sent(p) => (attacker_batch, Some(p)),
            DefenderUpdate::Frozen => (attacker_batch, None),
        };
        let learners = async {
            tokio::join!(
                async {
                    if attacker_learns {
                        Some(cx.call(Slot::Attacker, Learn(attacker_batch)).await).transpose()
                    } else {
                        Ok(None)
                    }
                },
                async {
                    match defender_update {
                        Some(p) => cx.answer(p).await.map(Some),
                        None => Ok(None),
                    }
                }
            )
        };
        let eval_due = self.eval_due();
        // (`overlap` sends the learners' requests first: the attacker's update comes before these in its queue.)
        let ((attacker, defender), next) =
            overlap(learners, async { queue_next_round(cx, round, eval_due) }).await;
        for (side, learned) in [(Side::Attacker, attacker?), (Side::Defender, defender?)] {
            if let Some(Learned {
                report,
                version,
                state,
            }) = learned
            {
                self.retired.extend(states.insert(side.into(), state));
                self.learn_records.push(Record::Learn(LearnRec {
                    run: cx.run.clone(),
                    round,
                    role: side.into(),
                    version,
                    report,
                }));
            }
        }
        // Under self-play the player's new state is the defender's too.
        super::mirror_player(cx.loaded, states);
        self.timings.learn_ms = ms(t);
        Ok(next)
    }

    /// Is the held-out evaluation due after this round (every `eval.every` rounds, and after the last)?
    fn eval_due(&self) -> bool {
        let sc = &self.cx.loaded.scenario;
        let every = sc.eval.every;
        (self.number == sc.game.rounds || (every > 0 && self.number.is_multiple_of(every)))
            && !self.cx.loaded.eval.is_empty()
    }

    /// Evaluate: the held-out evaluation when due, in every configured mode (an adaptive evaluation that plays
    /// on beside the rounds after this one is deferred to the round's commit).
    async fn evaluate(
        &mut self,
        states: &BTreeMap<Slot, Arc<Vec<u8>>>,
    ) -> Result<(Vec<EvalRec>, Option<(usize, Deferred)>), RunError> {
        let t = Instant::now();
        let evaluated = if self.eval_due() {
            eval_phase(self.cx, self.number, states).await?
        } else {
            (Vec::new(), None)
        };
        self.timings.eval_ms = ms(t);
        Ok(evaluated)
    }

    /// What the round hands to its commit: its log (the learn records, then the evaluation's, in its tail).
    fn played(
        self,
        started: Instant,
        evaluations: Vec<EvalRec>,
        deferred: Option<(usize, Deferred)>,
        next: Option<Next>,
    ) -> Played {
        let mut tail = self.learn_records;
        let deferred = deferred.map(|(at, d)| (tail.len() + at, d));
        tail.extend(evaluations.into_iter().map(Record::Eval));
        let mut timings = self.timings;
        timings.total_ms = ms(started);
        Played {
            log: RoundLog {
                run: self.cx.run.clone(),
                round: self.number,
                mode: self.cx.loaded.scenario.payoffs.mode,
                attacker_version: self.attacker_version,
                defender_version: self.defender_version,
                seeds: self.seeds,
                seed_keys: self.seed_keys,
                rewrites: self.rewrites,
                responses: self.responses,
                defender_requests: self.defender_requests,
                judgments: self.judgments,
                tail,
                deferred,
            },
            timings,
            retired: self.retired,
            end: Instant::now(),
            next,
        }
    }
}
