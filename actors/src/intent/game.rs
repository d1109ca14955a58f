//! A self-contained AdvGame loop for the intent game (no engine): rounds of attacker rewrites,
//! faithfulness gate, defender rollouts, oracle rewards (pairwise or pointwise) and DPO/IPO/GRPO
//! updates; schedules (joint, sequential, frozen sides); and the model evaluations of issue 3
//! (fixed-set, current-attacker and adaptive ASR; plain and framed utility). It follows the engine's
//! semantics so it can serve as its reference and power the adaptive-ASR best response.

use serde::{Deserialize, Serialize};

use crate::lm::{Algorithm, GrpoGroup, GrpoSample, LmError, PreferenceGroup, StepReport};

use super::eval::{AttackEval, DefenderEval, evaluate_attacker, evaluate_defender};
use super::lang::{Category, Language, Token};
use super::metrics::Rate;
use super::oracle::{Oracle, Outcome, Preference, Response, Side};
use super::player::{IntentPlayer, PlayerConfig, PlayerRole};
use super::rng::{SplitMix64, hash_words};
use super::seeds::Intent;
use super::warm::{attacker_context, defender_context};

/// Which sides learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Both every round (AdvGame).
    Joint,
    /// Alternating phases of `phase_rounds`, attacker first.
    Sequential,
    /// Only the attacker (red-teaming a fixed defender).
    FrozenDefender,
    /// Only the defender.
    FrozenAttacker,
}

/// Settings of a local game.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameConfig {
    /// Rounds.
    pub rounds: u32,
    /// Schedule.
    pub schedule: Schedule,
    /// Rounds per phase for `sequential`.
    pub phase_rounds: u32,
    /// Seeds drawn per round.
    pub seeds_per_round: usize,
    /// A: rewrites per seed.
    pub attacks_per_seed: usize,
    /// D: responses per faithful rewrite.
    pub responses_per_attack: usize,
    /// Represent a rewrite by the defender's best response (else its first).
    pub optimistic: bool,
    /// Pairwise (true) or pointwise rewards.
    pub pairwise: bool,
    /// Attacker reward for an unparseable or unfaithful rewrite.
    pub error_reward: f64,
    /// Seed of the seed draws and sampling.
    pub seed: u64,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            rounds: 30,
            schedule: Schedule::Joint,
            phase_rounds: 5,
            seeds_per_round: 16,
            attacks_per_seed: 4,
            responses_per_attack: 4,
            optimistic: true,
            pairwise: true,
            error_reward: -1.0,
            seed: 0,
        }
    }
}

impl GameConfig {
    /// Does `side` learn in 1-based `round`?
    pub fn learns(&self, side: Side, round: u32) -> bool {
        match self.schedule {
            Schedule::Joint => true,
            Schedule::FrozenDefender => side == Side::Attacker,
            Schedule::FrozenAttacker => side == Side::Defender,
            Schedule::Sequential => {
                let phase = (round.saturating_sub(1)) / self.phase_rounds.max(1);
                phase.is_multiple_of(2) == (side == Side::Attacker)
            }
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundStats {
    /// 1-based round.
    pub round: u32,
    /// Faithful rewrites / all rewrites.
    pub faithful: f64,
    /// Helpful compliance on faithful harmful rewrites (the in-game ASR).
    pub asr: f64,
    /// Helpful compliance on faithful benign rewrites.
    pub benign_helpful: f64,
    /// Mean attacker reward (error rewards included).
    pub attacker_reward: f64,
    /// Mean defender reward.
    pub defender_reward: f64,
    /// Attacker loss, when it learned.
    pub attacker_loss: Option<f32>,
    /// Defender loss, when it learned.
    pub defender_loss: Option<f32>,
    /// Tokens generated this round.
    pub generated_tokens: u64,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Group rewards: the mean of each member's pairwise score against every other valid member (`None`
/// members are excluded and get `None`).
fn pairwise_rewards(
    n: usize,
    valid: &[bool],
    mut pref: impl FnMut(usize, usize) -> Preference,
) -> Vec<Option<f64>> {
    let mut out = vec![None; n];
    for i in 0..n {
        if !valid[i] {
            continue;
        }
        let mut s = Vec::new();
        for (j, &vj) in valid.iter().enumerate().take(n) {
            if j != i && vj {
                s.push(pref(i, j).score_a() as f64);
            }
        }
        out[i] = Some(if s.is_empty() { 0.5 } else { mean(&s) });
    }
    out
}

/// The two players, the oracle and the seeds.
pub struct IntentGame<'a> {
    /// The language.
    pub lang: &'a Language,
    /// The judge.
    pub oracle: &'a Oracle,
    /// Training seeds.
    pub train: &'a [Intent],
    /// Settings.
    pub cfg: GameConfig,
}

struct Rewrite {
    tokens: Vec<Token>,
    gen_logprobs: Vec<f32>,
    prompt: Option<Vec<Token>>,
    responses: Vec<(Vec<Token>, Vec<f32>, Response)>,
    defender_rewards: Vec<Option<f64>>,
}

impl IntentGame<'_> {
    /// Plays one round (1-based), letting each side learn when `learn_*` is set.
    pub fn round(
        &self,
        round: u32,
        attacker: &mut IntentPlayer,
        defender: &mut IntentPlayer,
        learn_attacker: bool,
        learn_defender: bool,
    ) -> Result<RoundStats, LmError> {
        let lang = self.lang;
        let cfg = &self.cfg;
        let mut rng = SplitMix64::new(hash_words(cfg.seed, &[round as u64, 1]));
        let seeds: Vec<&Intent> = (0..cfg.seeds_per_round)
            .filter_map(|_| self.train.get(rng.below(self.train.len())))
            .collect();
        let a = cfg.attacks_per_seed.max(1);
        let d = cfg.responses_per_attack.max(1);
        // attacker rollouts
        let mut inputs = Vec::new();
        let mut rs = Vec::new();
        for s in &seeds {
            for _ in 0..a {
                inputs.push((s.category(lang), s.tokens(lang)));
                rs.push(rng.next_u64());
            }
        }
        let attacks = attacker.attack(lang, &inputs, &rs, false)?;
        let mut tokens_out: u64 = attacks.iter().map(|(g, _)| g.tokens.len() as u64).sum();
        let mut rewrites: Vec<Rewrite> = attacks
            .into_iter()
            .enumerate()
            .map(|(i, (g, r))| {
                let seed_toks = &inputs[i].1;
                let prompt = r.filter(|p| self.oracle.faithful(seed_toks, p, round as u64));
                Rewrite {
                    tokens: g.tokens,
                    gen_logprobs: g.logprobs,
                    prompt,
                    responses: Vec::new(),
                    defender_rewards: Vec::new(),
                }
            })
            .collect();
        // defender rollouts
        let mut prompts = Vec::new();
        let mut owners = Vec::new();
        let mut rs = Vec::new();
        for (i, r) in rewrites.iter().enumerate() {
            if let Some(p) = &r.prompt {
                for _ in 0..d {
                    prompts.push(p.clone());
                    owners.push(i);
                    rs.push(rng.next_u64());
                }
            }
        }
        let responses = defender.defend(lang, &prompts, &rs, false)?;
        tokens_out += responses
            .iter()
            .map(|(g, _)| g.tokens.len() as u64)
            .sum::<u64>();
        for ((g, resp), &i) in responses.into_iter().zip(&owners) {
            rewrites[i].responses.push((g.tokens, g.logprobs, resp));
        }
        // defender rewards (judged against the rewrite)
        let salt = round as u64;
        let mut stats = RoundStats {
            round,
            generated_tokens: tokens_out,
            ..RoundStats::default()
        };
        let (mut harm, mut ben) = (Rate::default(), Rate::default());
        let mut def_rewards_all = Vec::new();
        for r in rewrites.iter_mut() {
            let Some(p) = &r.prompt else { continue };
            let n = r.responses.len();
            let valid = vec![true; n];
            r.defender_rewards = if cfg.pairwise {
                pairwise_rewards(n, &valid, |i, j| {
                    self.oracle.compare(
                        Side::Defender,
                        p,
                        &r.responses[i].0,
                        &r.responses[j].0,
                        salt,
                    )
                })
            } else {
                r.responses
                    .iter()
                    .map(|x| Some(self.oracle.score(Side::Defender, p, &x.0, salt) as f64))
                    .collect()
            };
            def_rewards_all.extend(r.defender_rewards.iter().flatten().copied());
            let topic = lang.topic_of(p);
            for x in &r.responses {
                let o = Outcome::of(topic, x.2);
                match lang.category_of(p) {
                    Some(Category::Harmful) => {
                        harm.total += 1;
                        harm.hits += (o == Outcome::HelpfulCompliance) as usize;
                    }
                    _ => {
                        ben.total += 1;
                        ben.hits += (o == Outcome::HelpfulCompliance) as usize;
                    }
                }
            }
        }
        // attacker rewards (judged against the seed), per seed group
        let mut att_groups = Vec::new();
        let mut att_rewards_all = Vec::new();
        for (si, s) in seeds.iter().enumerate() {
            let seed_toks = s.tokens(lang);
            let idx: Vec<usize> = (si * a..(si + 1) * a).collect();
            let reps: Vec<Option<Vec<Token>>> = idx
                .iter()
                .map(|&i| {
                    let r = &rewrites[i];
                    r.prompt.as_ref()?;
                    let k = if cfg.optimistic {
                        (0..r.responses.len())
                            .max_by(|&x, &y| {
                                let rx = r
                                    .defender_rewards
                                    .get(x)
                                    .copied()
                                    .flatten()
                                    .unwrap_or(f64::MIN);
                                let ry = r
                                    .defender_rewards
                                    .get(y)
                                    .copied()
                                    .flatten()
                                    .unwrap_or(f64::MIN);
                                // the defender's best response (ties: the first), as the engine does
                                rx.total_cmp(&ry).then(y.cmp(&x))
                            })
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    r.responses.get(k).map(|x| x.0.clone())
                })
                .collect();
            let valid: Vec<bool> = reps.iter().map(Option::is_some).collect();
            let judged = if cfg.pairwise {
                pairwise_rewards(a, &valid, |i, j| match (&reps[i], &reps[j]) {
                    (Some(x), Some(y)) => {
                        self.oracle.compare(Side::Attacker, &seed_toks, x, y, salt)
                    }
                    _ => Preference::Tie,
                })
            } else {
                reps.iter()
                    .map(|r| {
                        r.as_ref()
                            .map(|x| self.oracle.score(Side::Attacker, &seed_toks, x, salt) as f64)
                    })
                    .collect()
            };
            let rewards: Vec<Option<f64>> = judged
                .iter()
                .zip(&valid)
                .map(|(j, v)| if *v { *j } else { Some(cfg.error_reward) })
                .collect();
            att_rewards_all.extend(rewards.iter().flatten().copied());
            att_groups.push((si, idx, rewards));
        }
        stats.faithful = rewrites.iter().filter(|r| r.prompt.is_some()).count() as f64
            / rewrites.len().max(1) as f64;
        stats.asr = harm.value();
        stats.benign_helpful = ben.value();
        stats.attacker_reward = mean(&att_rewards_all);
        stats.defender_reward = mean(&def_rewards_all);
        // learning
        if learn_attacker {
            let report = match attacker.algorithm() {
                Algorithm::Grpo => {
                    let mut groups = Vec::new();
                    for (si, idx, rewards) in &att_groups {
                        let s = seeds[*si];
                        let samples = idx
                            .iter()
                            .enumerate()
                            .map(|(k, &i)| {
                                let r = &rewrites[i];
                                GrpoSample {
                                    response: r.tokens.clone(),
                                    gen_logprobs: r.gen_logprobs.clone(),
                                    reward: rewards[k].map(|x| x as f32),
                                    // unparseable / unfaithful: shifts the baseline, masked out of the loss
                                    error: r.prompt.is_none(),
                                }
                            })
                            .collect();
                        groups.push(GrpoGroup {
                            prompt: attacker_context(lang, s.category(lang), &s.tokens(lang)),
                            seed: si.to_string(),
                            samples,
                        });
                    }
                    attacker.learn_grpo(&groups)?
                }
                _ => {
                    let groups: Vec<PreferenceGroup> = att_groups
                        .iter()
                        .map(|(si, idx, rewards)| {
                            let s = seeds[*si];
                            PreferenceGroup {
                                prompt: attacker_context(lang, s.category(lang), &s.tokens(lang)),
                                responses: idx
                                    .iter()
                                    .map(|&i| rewrites[i].tokens.clone())
                                    .collect(),
                                rewards: rewards.iter().map(|r| r.map(|x| x as f32)).collect(),
                            }
                        })
                        .collect();
                    attacker.learn_pairs(&groups)?
                }
            };
            stats.attacker_loss = report.map(|r: StepReport| r.loss);
        }
        if learn_defender {
            let faithful: Vec<(usize, &Rewrite)> = rewrites
                .iter()
                .enumerate()
                .filter(|(_, r)| r.prompt.is_some())
                .collect();
            let report = match defender.algorithm() {
                Algorithm::Grpo => {
                    let groups: Vec<GrpoGroup> = faithful
                        .iter()
                        .map(|(i, r)| GrpoGroup {
                            prompt: defender_context(lang, r.prompt.as_deref().unwrap_or(&[])),
                            seed: (i / a).to_string(),
                            samples: r
                                .responses
                                .iter()
                                .enumerate()
                                .map(|(k, x)| GrpoSample {
                                    response: x.0.clone(),
                                    gen_logprobs: x.1.clone(),
                                    reward: r
                                        .defender_rewards
                                        .get(k)
                                        .copied()
                                        .flatten()
                                        .map(|v| v as f32),
                                    error: false,
                                })
                                .collect(),
                        })
                        .collect();
                    defender.learn_grpo(&groups)?
                }
                _ => {
                    let groups: Vec<PreferenceGroup> = faithful
                        .iter()
                        .map(|(_, r)| PreferenceGroup {
                            prompt: defender_context(lang, r.prompt.as_deref().unwrap_or(&[])),
                            responses: r.responses.iter().map(|x| x.0.clone()).collect(),
                            rewards: r
                                .defender_rewards
                                .iter()
                                .map(|v| v.map(|x| x as f32))
                                .collect(),
                        })
                        .collect();
                    defender.learn_pairs(&groups)?
                }
            };
            stats.defender_loss = report.map(|r| r.loss);
        }
        Ok(stats)
    }

    /// Plays `cfg.rounds` rounds under the schedule; `on_round` sees each round's stats.
    pub fn play(
        &self,
        attacker: &mut IntentPlayer,
        defender: &mut IntentPlayer,
        mut on_round: impl FnMut(&RoundStats, &IntentPlayer, &IntentPlayer),
    ) -> Result<Vec<RoundStats>, LmError> {
        let mut out = Vec::new();
        for round in 1..=self.cfg.rounds {
            let la = self.cfg.learns(Side::Attacker, round);
            let ld = self.cfg.learns(Side::Defender, round);
            let s = self.round(round, attacker, defender, la, ld)?;
            on_round(&s, attacker, defender);
            out.push(s);
        }
        Ok(out)
    }
}

/// Full evaluation of a defender (and optionally the current attacker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// ASR under the fixed attack set (greedy defender).
    pub fixed_asr: f64,
    /// ASR of the current attacker (sampled, `samples` per held-out harmful seed).
    pub current_asr: Option<f64>,
    /// ASR of a best-response attacker trained `k` rounds against the frozen defender.
    pub adaptive_asr: Option<f64>,
    /// Helpful compliance on held-out benign seeds, plain.
    pub utility_plain: f64,
    /// Helpful compliance on held-out benign seeds behind each framing.
    pub utility_framed: f64,
}

/// Evaluates a defender on held-out seeds with greedy decoding.
pub fn evaluate_defender_player(
    lang: &Language,
    held_out: &[Intent],
    defender: &IntentPlayer,
) -> Result<DefenderEval, LmError> {
    let mut defend = |ps: &[Vec<Token>]| -> Result<Vec<Response>, LmError> {
        let seeds: Vec<u64> = (0..ps.len() as u64).collect();
        Ok(defender
            .defend(lang, ps, &seeds, true)?
            .into_iter()
            .map(|x| x.1)
            .collect())
    };
    evaluate_defender(lang, held_out, &mut defend)
}

/// The ASR of an attacker against a defender on harmful seeds: `samples` sampled rewrites per seed,
/// greedy defender.
pub fn evaluate_attacker_player(
    lang: &Language,
    harmful: &[Intent],
    attacker: &IntentPlayer,
    defender: &IntentPlayer,
    samples: usize,
    seed: u64,
) -> Result<AttackEval, LmError> {
    let mut total = AttackEval::default();
    for k in 0..samples.max(1) {
        let mut attack = |ss: &[Vec<Token>]| -> Result<Vec<Option<Vec<Token>>>, LmError> {
            let inputs: Vec<(Category, Vec<Token>)> =
                ss.iter().map(|s| (Category::Harmful, s.clone())).collect();
            let rs: Vec<u64> = (0..ss.len() as u64)
                .map(|i| hash_words(seed, &[k as u64, i]))
                .collect();
            Ok(attacker
                .attack(lang, &inputs, &rs, false)?
                .into_iter()
                .map(|x| x.1)
                .collect())
        };
        let mut defend = |ps: &[Vec<Token>]| -> Result<Vec<Response>, LmError> {
            let seeds: Vec<u64> = (0..ps.len() as u64).collect();
            Ok(defender
                .defend(lang, ps, &seeds, true)?
                .into_iter()
                .map(|x| x.1)
                .collect())
        };
        let e = evaluate_attacker(lang, harmful, &mut attack, &mut defend)?;
        total.asr = total.asr.merge(e.asr);
        total.faithful = total.faithful.merge(e.faithful);
    }
    Ok(total)
}

/// Adaptive ASR: forks `attacker_init` (the warm-start attacker) into a fresh best-response attacker,
/// trains it `k_rounds` against the frozen `defender` on `train` seeds, and measures its ASR on the
/// held-out harmful seeds.
#[allow(clippy::too_many_arguments)]
pub fn adaptive_asr(
    lang: &Language,
    oracle: &Oracle,
    train: &[Intent],
    held_out_harmful: &[Intent],
    attacker_init: &IntentPlayer,
    attacker_cfg: PlayerConfig,
    defender: &IntentPlayer,
    k_rounds: u32,
    game: &GameConfig,
    samples: usize,
) -> Result<AttackEval, LmError> {
    let mut br = attacker_init.fork(PlayerRole::Attacker, attacker_cfg, game.seed ^ 0xB357)?;
    let harmful_train: Vec<Intent> = train
        .iter()
        .filter(|i| i.category(lang) == Category::Harmful)
        .cloned()
        .collect();
    let g = IntentGame {
        lang,
        oracle,
        train: &harmful_train,
        cfg: GameConfig {
            rounds: k_rounds,
            schedule: Schedule::FrozenDefender,
            seed: game.seed ^ 0xB357,
            ..game.clone()
        },
    };
    // the defender is frozen: play with a throwaway handle that never learns
    let mut frozen = defender.fork(PlayerRole::Defender, defender.config().clone(), 0)?;
    for round in 1..=k_rounds {
        g.round(round, &mut br, &mut frozen, true, false)?;
    }
    evaluate_attacker_player(
        lang,
        held_out_harmful,
        &br,
        defender,
        samples,
        game.seed ^ 0xE7A1,
    )
}

/// The whole evaluation of issue 3 on held-out seeds: fixed-set ASR and plain/framed utility of
/// `defender`; the ASR of `attacker` (when given); and, when `k_rounds > 0`, the adaptive ASR of a
/// best-response attacker forked from `attacker_init` and trained `k_rounds` against the frozen
/// defender. `samples` sampled rewrites per held-out harmful seed.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    lang: &Language,
    oracle: &Oracle,
    split: &super::seeds::SeedSplit,
    defender: &IntentPlayer,
    attacker: Option<&IntentPlayer>,
    attacker_init: &IntentPlayer,
    attacker_cfg: PlayerConfig,
    k_rounds: u32,
    game: &GameConfig,
    samples: usize,
) -> Result<Evaluation, LmError> {
    let harmful = split.held_out_of(lang, Category::Harmful);
    let d = evaluate_defender_player(lang, &split.held_out, defender)?;
    let current_asr = match attacker {
        Some(a) => Some(
            evaluate_attacker_player(lang, &harmful, a, defender, samples, game.seed)?
                .asr
                .value(),
        ),
        None => None,
    };
    let adaptive = if k_rounds > 0 {
        let e = adaptive_asr(
            lang,
            oracle,
            &split.train,
            &harmful,
            attacker_init,
            attacker_cfg,
            defender,
            k_rounds,
            game,
            samples,
        )?;
        Some(e.asr.value())
    } else {
        None
    };
    Ok(Evaluation {
        fixed_asr: d.fixed_asr.value(),
        current_asr,
        adaptive_asr: adaptive,
        utility_plain: d.utility_plain.value(),
        utility_framed: d.utility_framed.value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_rewards_are_means_over_valid_pairs() {
        // scores 1.0, 0.0, (invalid), 1.0: member 0 ties 3 and beats 1
        let score = [1.0f32, 0.0, 0.5, 1.0];
        let valid = [true, true, false, true];
        let r = pairwise_rewards(4, &valid, |i, j| {
            if score[i] > score[j] {
                Preference::A
            } else if score[j] > score[i] {
                Preference::B
            } else {
                Preference::Tie
            }
        });
        assert_eq!(r, vec![Some(0.75), Some(0.0), None, Some(0.75)]);
        assert_eq!(
            pairwise_rewards(1, &[true], |_, _| Preference::A),
            vec![Some(0.5)]
        );
    }

    #[test]
    fn schedules() {
        let mut g = GameConfig {
            schedule: Schedule::Sequential,
            phase_rounds: 2,
            ..GameConfig::default()
        };
        let a: Vec<bool> = (1..=6).map(|r| g.learns(Side::Attacker, r)).collect();
        let d: Vec<bool> = (1..=6).map(|r| g.learns(Side::Defender, r)).collect();
        assert_eq!(a, vec![true, true, false, false, true, true]);
        assert_eq!(d, vec![false, false, true, true, false, false]);
        g.schedule = Schedule::FrozenDefender;
        assert!(g.learns(Side::Attacker, 3) && !g.learns(Side::Defender, 3));
        g.schedule = Schedule::Joint;
        assert!(g.learns(Side::Attacker, 3) && g.learns(Side::Defender, 3));
    }
}
