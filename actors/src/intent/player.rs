//! An intent-game player (attacker or defender) on the Burn transformer LM of `lm`: model sizes and
//! sampling from a config, the supervised warm start (cross-entropy on the warm data, seeded), batched
//! generation from the learner's generator (the EMA copy for DPO/IPO), DPO/IPO/GRPO updates, and a player's
//! evaluation on held-out seeds (the engine's runs evaluate through the `intent-*` kinds instead).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::lm::batch::to_vec_f32;
use crate::lm::{
    Algorithm, BackendKind, Baseline, Checkpoint, GenRequest, Generation, GrpoGroup, Learner,
    LearnerConfig, LmError, OptimConfig, PreferenceGroup, SamplingConfig, StepReport,
    TransformerConfig, TransformerLm, generate, response_token_logprobs,
};

use super::eval::{AttackEval, DefenderEval, evaluate_attacker, evaluate_defender};
use super::lang::{Category, EOS, Language, PAD, Token};
use super::oracle::Response;
use super::seeds::Intent;
use super::warm::{
    Example, attacker_context, defender_context, parse_rewrite, warm_attacker_turns,
    warm_defender_turns,
};
use sparring_engine::rng::{SplitMix64, hash_words};

/// Which player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayerRole {
    /// Rewrites seeds.
    Attacker,
    /// Answers prompts.
    Defender,
}

/// Model sizes (the vocabulary size comes from the language).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSize {
    /// Width (default 64).
    #[serde(default = "d_model")]
    pub d_model: usize,
    /// Blocks (default 2).
    #[serde(default = "d_layers")]
    pub n_layers: usize,
    /// Heads (default 4).
    #[serde(default = "d_heads")]
    pub n_heads: usize,
    /// MLP width (default 128).
    #[serde(default = "d_ff")]
    pub d_ff: usize,
    /// Context length (default 32).
    #[serde(default = "d_max_len")]
    pub max_len: usize,
}

fn d_model() -> usize {
    64
}
fn d_layers() -> usize {
    2
}
fn d_heads() -> usize {
    4
}
fn d_ff() -> usize {
    128
}
fn d_max_len() -> usize {
    32
}

impl Default for ModelSize {
    fn default() -> Self {
        ModelSize {
            d_model: d_model(),
            n_layers: d_layers(),
            n_heads: d_heads(),
            d_ff: d_ff(),
            max_len: d_max_len(),
        }
    }
}

/// The supervised warm start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmStartConfig {
    /// Optimizer steps (default 250).
    #[serde(default = "d_warm_steps")]
    pub steps: u64,
    /// Examples per step (default 32).
    #[serde(default = "d_warm_batch")]
    pub batch_size: usize,
    /// Size of the generated warm data set (default 4096).
    #[serde(default = "d_warm_examples")]
    pub examples: usize,
    /// Peak learning rate (default 5e-3, cosine to a tenth).
    #[serde(default = "d_warm_lr")]
    pub lr: f64,
}

fn d_warm_steps() -> u64 {
    250
}
fn d_warm_batch() -> usize {
    32
}
fn d_warm_examples() -> usize {
    4096
}
fn d_warm_lr() -> f64 {
    5e-3
}

impl Default for WarmStartConfig {
    fn default() -> Self {
        WarmStartConfig {
            steps: d_warm_steps(),
            batch_size: d_warm_batch(),
            examples: d_warm_examples(),
            lr: d_warm_lr(),
        }
    }
}

/// Everything that defines a player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayerConfig {
    /// Backend (default flex).
    #[serde(default)]
    pub backend: BackendKind,
    /// Model sizes.
    #[serde(default)]
    pub model: ModelSize,
    /// Warm start.
    #[serde(default)]
    pub warm_start: WarmStartConfig,
    /// Sampling temperature during the game (default 1.0).
    #[serde(default = "d_temperature")]
    pub temperature: f32,
    /// Nucleus sampling (default 1.0).
    #[serde(default = "d_top_p")]
    pub top_p: f32,
    /// Max new tokens (default: 14 for the attacker, 3 for the defender).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// The learner (algorithm, β, EMA decay, optimizer).
    #[serde(default = "d_learner")]
    pub learner: LearnerConfig,
    /// The game's turns per conversation (default 1; set from the scenario's `game.turns`). With more than one
    /// the warm data holds conversations, and the warm defender has the multi-turn weakness instead of the
    /// single-turn one ([`super::warm::warm_defender_reply`]).
    #[serde(default = "one_turn", skip_serializing_if = "is_one_turn")]
    pub turns: usize,
}

fn one_turn() -> usize {
    1
}
fn is_one_turn(t: &usize) -> bool {
    *t == 1
}

fn d_temperature() -> f32 {
    1.0
}
fn d_top_p() -> f32 {
    1.0
}

/// The default learner: DPO, β 0.1, EMA 0.95, AdamW lr 1e-3 → 1e-4 over 1000 steps.
pub fn d_learner() -> LearnerConfig {
    LearnerConfig {
        algorithm: Algorithm::Dpo,
        beta: 0.1,
        ema_decay: 0.95,
        is_clip: 2.0,
        baseline: Baseline::Group,
        pad_token: PAD,
        micro_batch: None,
        optim: OptimConfig {
            lr: 1e-3,
            min_lr: 1e-4,
            total_steps: 1000,
            ..OptimConfig::default()
        },
    }
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            backend: BackendKind::Flex,
            model: ModelSize::default(),
            warm_start: WarmStartConfig::default(),
            temperature: d_temperature(),
            top_p: d_top_p(),
            max_new_tokens: None,
            learner: d_learner(),
            turns: 1,
        }
    }
}

fn trainable<M: Module>(m: M) -> M {
    struct F;
    impl ModuleMapper for F {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, t, mapper) = p.consume();
            Param::from_mapped_value(id, t.inner().autodiff().require_grad(), mapper)
        }
    }
    m.map(&mut F)
}

/// Supervised cross-entropy on response tokens: `steps` AdamW steps on seeded random batches of
/// `data`. Returns the plain (inference) model and the loss per step.
pub fn supervised_train(
    model: TransformerLm,
    data: &[Example],
    cfg: &WarmStartConfig,
    seed: u64,
) -> Result<(TransformerLm, Vec<f32>), LmError> {
    if data.is_empty() || cfg.steps == 0 {
        return Ok((model, Vec::new()));
    }
    let mut optim = crate::lm::AdamW::new(OptimConfig {
        lr: cfg.lr,
        min_lr: cfg.lr / 10.0,
        warmup_steps: (cfg.steps / 20).min(20),
        total_steps: cfg.steps,
        weight_decay: 0.0,
        ..OptimConfig::default()
    })?;
    let mut model = trainable(model);
    let mut rng = SplitMix64::new(seed);
    let mut losses = Vec::with_capacity(cfg.steps as usize);
    let bs = cfg.batch_size.max(1);
    for _ in 0..cfg.steps {
        let pairs: Vec<(&[u32], &[u32])> = (0..bs)
            .map(|_| {
                let e = &data[rng.below_scaled(data.len())];
                (e.context.as_slice(), e.response.as_slice())
            })
            .collect();
        let (logp, mask) = response_token_logprobs(&model, &pairs, PAD)?;
        let loss = -(logp.sum() / mask.sum().clamp_min(1.0));
        let grads = loss.backward();
        losses.push(
            to_vec_f32(loss.detach())?
                .first()
                .copied()
                .unwrap_or(f32::NAN),
        );
        let (m, _) = optim.step(model, &grads)?;
        model = m;
    }
    Ok((model.valid(), losses))
}

/// A sampled attacker generation and its parsed rewrite (`None`: unparseable).
pub type Attack = (Generation, Option<Vec<Token>>);

/// One player: its language, role, sampling settings and learner.
#[derive(Debug)]
pub struct IntentPlayer {
    role: PlayerRole,
    cfg: PlayerConfig,
    learner: Learner<TransformerLm>,
    /// Warm-start loss per step (empty when restored from a checkpoint).
    pub warm_losses: Vec<f32>,
    version: u64,
}

impl IntentPlayer {
    /// A fresh model for `role`, warm-started on data drawn from `train` seeds; all seeded by `seed`.
    pub fn new(
        lang: &Language,
        role: PlayerRole,
        cfg: PlayerConfig,
        train: &[Intent],
        seed: u64,
    ) -> Result<IntentPlayer, LmError> {
        Self::playing(lang, &[role], cfg, train, seed)
    }

    /// A fresh model that plays each of `roles` (the first is its [`Self::role`]; a self-play player has both),
    /// warm-started on the warm data of every one of them (`warm_start.examples` each), drawn from `train`
    /// seeds; all seeded by `seed`.
    pub fn playing(
        lang: &Language,
        roles: &[PlayerRole],
        cfg: PlayerConfig,
        train: &[Intent],
        seed: u64,
    ) -> Result<IntentPlayer, LmError> {
        let device = crate::lm::device(cfg.backend)?;
        let model = Self::init_model(lang, &cfg, seed, &device)?;
        let n = cfg.warm_start.examples;
        let mut data = Vec::new();
        for role in roles {
            data.extend(match role {
                PlayerRole::Attacker => {
                    warm_attacker_turns(lang, train, n, seed ^ 0xA77A, cfg.turns)
                }
                PlayerRole::Defender => {
                    warm_defender_turns(lang, train, n, seed ^ 0xDEFE, cfg.turns)
                }
            });
        }
        let (model, warm_losses) = supervised_train(model, &data, &cfg.warm_start, seed ^ 0x5F7)?;
        let role = roles.first().copied().unwrap_or(PlayerRole::Attacker);
        Self::from_model(role, cfg, model, warm_losses, seed)
    }

    fn init_model(
        lang: &Language,
        cfg: &PlayerConfig,
        seed: u64,
        device: &Device,
    ) -> Result<TransformerLm, LmError> {
        let m = &cfg.model;
        let mut tc = TransformerConfig::new(
            lang.vocab_size(),
            m.d_model,
            m.n_layers,
            m.n_heads,
            m.d_ff,
            m.max_len,
        );
        tc.init_std = 0.05;
        tc.init(seed, device)
    }

    /// A player around an already trained plain model (e.g. a copy of another player's weights).
    pub fn from_model(
        role: PlayerRole,
        mut cfg: PlayerConfig,
        model: TransformerLm,
        warm_losses: Vec<f32>,
        seed: u64,
    ) -> Result<IntentPlayer, LmError> {
        cfg.learner.pad_token = PAD;
        let learner = Learner::new(model, cfg.learner.clone(), seed ^ 0x1EA7)?;
        Ok(IntentPlayer {
            role,
            cfg,
            learner,
            warm_losses,
            version: 0,
        })
    }

    /// The model that generates (EMA copy for DPO/IPO, the policy for GRPO).
    pub fn generator(&self) -> TransformerLm {
        self.learner.generator()
    }

    /// The role.
    pub fn role(&self) -> PlayerRole {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &PlayerConfig {
        &self.cfg
    }

    /// Learner steps taken.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The generation length cap when playing `role`.
    fn max_new(&self, role: PlayerRole) -> usize {
        self.cfg.max_new_tokens.unwrap_or(match role {
            PlayerRole::Attacker => 14,
            PlayerRole::Defender => 3,
        })
    }

    /// Samples one continuation per context of `role` (`greedy` ignores the temperature); `seeds` gives each
    /// row's sampling seed.
    pub fn sample(
        &self,
        role: PlayerRole,
        contexts: &[Vec<Token>],
        seeds: &[u64],
        greedy: bool,
    ) -> Result<Vec<Generation>, LmError> {
        if contexts.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = SamplingConfig {
            temperature: if greedy { 0.0 } else { self.cfg.temperature },
            top_p: self.cfg.top_p,
            max_new_tokens: self.max_new(role),
            stop_tokens: vec![EOS],
            pad_token: PAD,
        };
        let reqs: Vec<GenRequest> = contexts
            .iter()
            .enumerate()
            .map(|(i, c)| GenRequest {
                prompt: c.clone(),
                seed: seeds.get(i).copied().unwrap_or(i as u64),
            })
            .collect();
        let model = self.learner.generator();
        generate(&model, &reqs, &cfg)
    }

    /// Attacker: one rewrite per (category, seed) with its raw generation (`None` rewrite when it does not
    /// parse).
    pub fn attack(
        &self,
        lang: &Language,
        seeds: &[(Category, Vec<Token>)],
        rng_seeds: &[u64],
        greedy: bool,
    ) -> Result<Vec<Attack>, LmError> {
        let ctx: Vec<Vec<Token>> = seeds
            .iter()
            .map(|(c, s)| attacker_context(lang, *c, s))
            .collect();
        let gens = self.sample(PlayerRole::Attacker, &ctx, rng_seeds, greedy)?;
        Ok(gens
            .into_iter()
            .map(|g| {
                let r = parse_rewrite(lang, &g.tokens).ok();
                (g, r)
            })
            .collect())
    }

    /// Defender: one response per prompt.
    pub fn defend(
        &self,
        lang: &Language,
        prompts: &[Vec<Token>],
        rng_seeds: &[u64],
        greedy: bool,
    ) -> Result<Vec<(Generation, Response)>, LmError> {
        let ctx: Vec<Vec<Token>> = prompts.iter().map(|p| defender_context(lang, p)).collect();
        let gens = self.sample(PlayerRole::Defender, &ctx, rng_seeds, greedy)?;
        Ok(gens
            .into_iter()
            .map(|g| {
                let r = Response::parse(lang, &g.tokens);
                (g, r)
            })
            .collect())
    }

    /// A DPO/IPO step on preference groups (no-op for a GRPO learner, use [`Self::learn_grpo`]).
    pub fn learn_pairs(
        &mut self,
        groups: &[PreferenceGroup],
    ) -> Result<Option<StepReport>, LmError> {
        let r = self.learner.preference_step(groups)?;
        if r.is_some() {
            self.version += 1;
        }
        Ok(r)
    }

    /// A GRPO step.
    pub fn learn_grpo(&mut self, groups: &[GrpoGroup]) -> Result<Option<StepReport>, LmError> {
        let r = self.learner.grpo_step(groups)?;
        if r.is_some() {
            self.version += 1;
        }
        Ok(r)
    }

    /// The learning algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.cfg.learner.algorithm
    }

    /// Checkpoint bytes (weights, EMA/reference, optimizer, RNG, version).
    pub fn save(&self) -> Result<Vec<u8>, LmError> {
        let mut ck = self.learner.checkpoint()?;
        ck.put_scalar("player/version", self.version);
        Ok(ck.to_bytes())
    }

    /// Restores [`Self::save`] bytes.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), LmError> {
        let ck = Checkpoint::from_bytes(bytes, "intent player state")?;
        self.learner.restore(&ck)?;
        self.version = ck.scalar("player/version")?;
        Ok(())
    }

    /// A new player of `role` with a copy of this player's generator weights and a fresh learner.
    pub fn fork(
        &self,
        role: PlayerRole,
        cfg: PlayerConfig,
        seed: u64,
    ) -> Result<IntentPlayer, LmError> {
        IntentPlayer::from_model(role, cfg, self.generator(), Vec::new(), seed)
    }
}

/// Evaluates a defender on held-out seeds with greedy decoding.
pub fn evaluate_defender_player(
    lang: &Language,
    held_out: &[Intent],
    defender: &IntentPlayer,
) -> Result<DefenderEval, LmError> {
    evaluate_defender(lang, held_out, &mut |ps| {
        greedy_responses(lang, defender, ps)
    })
}

/// The defender's greedy answers to `prompts`, as the oracle parses them.
fn greedy_responses(
    lang: &Language,
    defender: &IntentPlayer,
    prompts: &[Vec<Token>],
) -> Result<Vec<Response>, LmError> {
    let seeds: Vec<u64> = (0..prompts.len() as u64).collect();
    Ok(defender
        .defend(lang, prompts, &seeds, true)?
        .into_iter()
        .map(|x| x.1)
        .collect())
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
        let mut defend = |ps: &[Vec<Token>]| greedy_responses(lang, defender, ps);
        let e = evaluate_attacker(lang, harmful, &mut attack, &mut defend)?;
        total.asr = total.asr.merge(e.asr);
        total.faithful = total.faithful.merge(e.faithful);
    }
    Ok(total)
}
