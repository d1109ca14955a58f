//! The judge's plan for a round: every request it will be asked about the defender's responses (pairs or
//! scores, and the compliance labels) and about the valid rewrites, built while the defender generates, all but
//! the texts still to come ([`judge_skeleton`]); the texts are filled in when they come ([`Planned::fill`]).
//! And what the verdicts on the defender's responses become: its rewards ([`defender_rewards`]), then judgment
//! records.

use super::records::PendingJudgment;
use super::round::{Resp, Rw};
use crate::actor::Judged;
use crate::payoff::{self, Judgment};
use crate::rng::{KeyPrefix, RoundKeys};
use crate::roles::{GenRequest, Goal, LabelRequest, PairRequest, PointRequest, Seed, Verdict};
use crate::vocab::{PayoffMode, Role, Side};
use std::sync::Arc;

/// The judge's verdicts on pairs or on single responses (as the payoff mode asks).
pub(super) enum Verdicts {
    Pairs(Judged<(f64, f64)>),
    Points(Judged<f64>),
}

/// The judge's requests on one side's groups (pairs or scores), built while the defender generates, their texts
/// filled in later: on the defender's responses (a group: the responses to one defender request `k`; texts when
/// they come) or on the valid rewrites (a group: one seed's rewrites; the representative responses once the
/// defender's rewards are known).
pub(super) enum Planned {
    /// `(group, i, j)` per pair.
    Pairs(Vec<PairRequest>, Vec<(usize, usize, usize)>),
    /// `(group, i)` per score.
    Points(Vec<PointRequest>, Vec<(usize, usize)>),
}

/// Everything the judge will be asked about a round's defender responses and valid rewrites, but their texts.
pub(super) struct JudgeSkeleton {
    pub(super) defender: Planned,
    /// Compliance labels, `(request index k, i)` each.
    pub(super) labels: (Vec<LabelRequest>, Vec<(usize, usize)>),
    pub(super) attacker: Planned,
}

impl Planned {
    /// Fill in the texts: `text(group, member i)`.
    pub(super) fn fill(&mut self, text: impl Fn(usize, usize) -> Arc<str>) {
        match self {
            Planned::Pairs(requests, at) => {
                for (r, &(k, i, j)) in requests.iter_mut().zip(at.iter()) {
                    r.a = text(k, i);
                    r.b = text(k, j);
                }
            }
            Planned::Points(requests, at) => {
                for (r, &(k, i)) in requests.iter_mut().zip(at.iter()) {
                    r.response = text(k, i);
                }
            }
        }
    }
}

/// Key suffixes of the judge's requests, by index: a request's key is its prefix's key plus one of these (the game's
/// and `rejudge`'s requests alike).
pub(super) struct Suffixes {
    /// `/p<i>-<j>`: a pair of responses or of rewrites.
    pub(super) pair: Vec<Vec<String>>,
    /// `/d<i>`: a response's label (its key).
    pub(super) response: Vec<String>,
    /// `/d<i>/label`: a response's label (its sampling seed).
    pub(super) label: Vec<String>,
    /// `/d<i>/score`: a response's score.
    pub(super) response_score: Vec<String>,
    /// `/a<i>/score`: a rewrite's score.
    pub(super) rewrite_score: Vec<String>,
}

impl Suffixes {
    /// The suffixes of indices `0..n`.
    pub(super) fn new(n: usize) -> Self {
        let each = |f: fn(usize) -> String| -> Vec<String> { (0..n).map(f).collect() };
        Suffixes {
            pair: (0..n)
                .map(|i| (0..n).map(|j| format!("/p{i}-{j}")).collect())
                .collect(),
            response: each(|i| format!("/d{i}")),
            label: each(|i| format!("/d{i}/label")),
            response_score: each(|i| format!("/d{i}/score")),
            rewrite_score: each(|i| format!("/a{i}/score")),
        }
    }
}

/// The defender's requests as the judge's requests about their responses see them: each rewrite once (the
/// judge's requests share it) and each request's key prefix.
struct Answered<'a> {
    requests: &'a [GenRequest],
    inputs: Vec<Arc<str>>,
    keys: Vec<KeyPrefix<'a>>,
    /// Responses per request.
    per_request: usize,
}

/// The judge's requests for a round, but for their texts: about the `responses_per_attack` responses to each of
/// `defender_requests` (one per valid rewrite) and about the valid ones among `rewrites` (per seed), keyed and
/// seeded by `keys`.
pub(super) fn judge_skeleton(
    mode: PayoffMode,
    (attacks_per_seed, responses_per_attack): (usize, usize),
    keys: RoundKeys,
    seeds: &[Seed],
    seed_keys: &[String],
    rewrites: &[Vec<Rw>],
    defender_requests: &[GenRequest],
) -> JudgeSkeleton {
    // Keys are a request's key plus a suffix from these tables (built once; no formatting per request).
    // (Roles answer `attacks_per_seed` rewrites and `responses_per_attack` responses, checked by the worker; the
    // widest row bounds the table.)
    let n = rewrites
        .iter()
        .map(Vec::len)
        .fold(attacks_per_seed.max(responses_per_attack), usize::max);
    let suffixes = Suffixes::new(n);
    let empty: Arc<str> = Arc::from("");
    let answered = Answered {
        requests: defender_requests,
        // Each rewrite once; its judge requests share it.
        inputs: defender_requests
            .iter()
            .map(|r| Arc::from(r.input.as_str()))
            .collect(),
        keys: defender_requests
            .iter()
            .map(|r| keys.prefix(&r.key))
            .collect(),
        per_request: responses_per_attack,
    };
    JudgeSkeleton {
        defender: defender_plan(mode, &answered, &suffixes, &empty),
        labels: label_plan(&answered, &suffixes, &empty),
        attacker: attacker_plan(mode, keys, (seeds, seed_keys), rewrites, &suffixes, &empty),
    }
}

/// Pairs among each request's responses (pairwise), or a score per response (pointwise), request by request.
fn defender_plan(
    mode: PayoffMode,
    answered: &Answered<'_>,
    suffixes: &Suffixes,
    empty: &Arc<str>,
) -> Planned {
    let Answered {
        requests,
        inputs,
        keys,
        per_request,
    } = answered;
    match mode {
        PayoffMode::Pairwise => {
            let pairs = payoff::all_pairs(&(0..*per_request).collect::<Vec<_>>());
            let mut judged = Vec::with_capacity(requests.len() * pairs.len());
            let mut at = Vec::with_capacity(judged.capacity());
            for (k, req) in requests.iter().enumerate() {
                let goal = Goal::of(Role::Defender, req.seed.category);
                for &(i, j) in &pairs {
                    let (key, rng_seed) = keys[k].with(&suffixes.pair[i][j]);
                    at.push((k, i, j));
                    judged.push(PairRequest {
                        rng_seed,
                        key,
                        seed: req.seed.clone(),
                        context: Arc::clone(&inputs[k]),
                        a: Arc::clone(empty),
                        b: Arc::clone(empty),
                        goal,
                    });
                }
            }
            Planned::Pairs(judged, at)
        }
        PayoffMode::Pointwise => {
            let mut judged = Vec::with_capacity(requests.len() * per_request);
            let mut at = Vec::with_capacity(judged.capacity());
            for (k, req) in requests.iter().enumerate() {
                let goal = Goal::of(Role::Defender, req.seed.category);
                for (i, sfx) in suffixes
                    .response_score
                    .iter()
                    .enumerate()
                    .take(*per_request)
                {
                    let (key, rng_seed) = keys[k].with(sfx);
                    at.push((k, i));
                    judged.push(PointRequest {
                        rng_seed,
                        key,
                        seed: req.seed.clone(),
                        context: Arc::clone(&inputs[k]),
                        response: Arc::clone(empty),
                        goal,
                    });
                }
            }
            Planned::Points(judged, at)
        }
    }
}

/// A compliance label per response, `(request index k, i)` each.
fn label_plan(
    answered: &Answered<'_>,
    suffixes: &Suffixes,
    empty: &Arc<str>,
) -> (Vec<LabelRequest>, Vec<(usize, usize)>) {
    let Answered {
        requests,
        inputs,
        keys,
        per_request,
    } = answered;
    let mut labels = Vec::with_capacity(requests.len() * per_request);
    let mut at = Vec::with_capacity(labels.capacity());
    for (k, req) in requests.iter().enumerate() {
        for i in 0..*per_request {
            at.push((k, i));
            labels.push(LabelRequest {
                rng_seed: keys[k].seed_with(&suffixes.label[i]),
                key: keys[k].key_with(&suffixes.response[i]),
                seed: req.seed.clone(),
                prompt: Arc::clone(&inputs[k]),
                response: Arc::clone(empty),
            });
        }
    }
    (labels, at)
}

/// Pairs among each seed's valid rewrites (pairwise), or a score per valid rewrite (pointwise), seed by seed;
/// judged against the seed.
fn attacker_plan(
    mode: PayoffMode,
    keys: RoundKeys,
    (seeds, seed_keys): (&[Seed], &[String]),
    rewrites: &[Vec<Rw>],
    suffixes: &Suffixes,
    empty: &Arc<str>,
) -> Planned {
    match mode {
        PayoffMode::Pairwise => {
            let mut judged = Vec::new();
            let mut at = Vec::new();
            for (si, (s, seed_key)) in seeds.iter().zip(seed_keys).enumerate() {
                let prefix = keys.prefix(seed_key);
                let goal = Goal::of(Role::Attacker, s.category);
                let members: Vec<usize> = rewrites[si]
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.valid)
                    .map(|(i, _)| i)
                    .collect();
                for (i, j) in payoff::all_pairs(&members) {
                    let (key, rng_seed) = prefix.with(&suffixes.pair[i][j]);
                    at.push((si, i, j));
                    judged.push(PairRequest {
                        rng_seed,
                        key,
                        seed: s.clone(),
                        context: Arc::clone(&s.prompt),
                        a: Arc::clone(empty),
                        b: Arc::clone(empty),
                        goal,
                    });
                }
            }
            Planned::Pairs(judged, at)
        }
        PayoffMode::Pointwise => {
            let mut judged = Vec::new();
            let mut at = Vec::new();
            for (si, (s, seed_key)) in seeds.iter().zip(seed_keys).enumerate() {
                let prefix = keys.prefix(seed_key);
                let goal = Goal::of(Role::Attacker, s.category);
                for (ai, rw) in rewrites[si].iter().enumerate() {
                    if rw.valid {
                        let (key, rng_seed) = prefix.with(&suffixes.rewrite_score[ai]);
                        at.push((si, ai));
                        judged.push(PointRequest {
                            rng_seed,
                            key,
                            seed: s.clone(),
                            context: Arc::clone(&s.prompt),
                            response: Arc::clone(empty),
                            goal,
                        });
                    }
                }
            }
            Planned::Points(judged, at)
        }
    }
}

/// The judge's verdicts on the defender's responses, with what each is about (as [`Planned`] lists
/// them): judgment records once the defender's update is sent.
pub(super) enum DefenderVerdicts {
    Pairs(Vec<(usize, usize, usize)>, Vec<Verdict<(f64, f64)>>, u64),
    Points(Vec<(usize, usize)>, Vec<Verdict<f64>>, u64),
    None,
}

/// The defender's rewards, per request from the verdicts on its responses.
pub(super) fn defender_rewards(
    responses: &mut [Vec<Resp>],
    plan: Planned,
    verdicts: Option<Verdicts>,
    weight: f64,
) -> DefenderVerdicts {
    match (plan, verdicts) {
        (Planned::Pairs(_, at), Some(Verdicts::Pairs(out))) => {
            let (verdicts, version) = (out.verdicts, out.version);
            // `judge_skeleton` lists the pairs request by request: each request's pairs are one stretch.
            let mut from = 0;
            for (k, row) in responses.iter_mut().enumerate() {
                let len = at[from..].iter().take_while(|e| e.0 == k).count();
                let judged = at[from..from + len]
                    .iter()
                    .zip(verdicts.get(from..).unwrap_or_default())
                    .map(|(&(_, i, j), verdict)| Judgment::Pair(i, j, verdict.value));
                set_rewards(row, judged, weight);
                from += len;
            }
            DefenderVerdicts::Pairs(at, verdicts, version)
        }
        (Planned::Points(_, at), Some(Verdicts::Points(out))) => {
            let (mut verdicts, version) = (out.verdicts, out.version);
            let mut per_request: Vec<Vec<Judgment>> = vec![Vec::new(); responses.len()];
            for (&(k, i), verdict) in at.iter().zip(&mut verdicts) {
                verdict.value = verdict.value.filter(|x| x.is_finite());
                per_request[k].push(Judgment::Point(i, verdict.value));
            }
            for (row, judged) in responses.iter_mut().zip(per_request) {
                set_rewards(row, judged, weight);
            }
            DefenderVerdicts::Points(at, verdicts, version)
        }
        _ => DefenderVerdicts::None,
    }
}

/// The rewards of one request's responses from the judge's verdicts on them.
fn set_rewards(row: &mut [Resp], judged: impl IntoIterator<Item = Judgment>, weight: f64) {
    for (reward, response) in payoff::rewards(row.len(), judged, weight)
        .into_iter()
        .zip(row.iter_mut())
    {
        response.reward = reward;
    }
}

impl DefenderVerdicts {
    /// The verdicts as judgment records (side `defender`), in the judge's order.
    pub(super) fn record(self, judgments: &mut Vec<PendingJudgment>) {
        let judgment = |seed_at, i, j, raw, parsed, version| PendingJudgment {
            side: Side::Defender,
            seed_at,
            i,
            j,
            raw,
            parsed,
            version,
        };
        match self {
            DefenderVerdicts::Pairs(at, verdicts, version) => {
                for ((k, i, j), verdict) in at.into_iter().zip(verdicts) {
                    let parsed = verdict.value.map(|(a, b)| vec![a, b]);
                    judgments.push(judgment(k, i, Some(j), verdict.raw, parsed, version));
                }
            }
            DefenderVerdicts::Points(at, verdicts, version) => {
                for ((k, i), verdict) in at.into_iter().zip(verdicts) {
                    let parsed = verdict.value.map(|x| vec![x]);
                    judgments.push(judgment(k, i, None, verdict.raw, parsed, version));
                }
            }
            DefenderVerdicts::None => {}
        }
    }
}
