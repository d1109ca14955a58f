//! The intent game's engine kinds: `intent-lm` (attacker or defender on the Burn LM), `intent-rule`
//! (the scripted warm-start behaviours: rule defender, warm-distribution attacker) and the
//! `intent-oracle` judge, implementing the engine's `Policy` / `Judge` traits, plus [`register`].

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sparring_engine::registry::{BuildContext, KindInfo, ParamsSchema, Registry};
use sparring_engine::roles::{
    Category as ECategory, FaithRequest, GenRequest, Generation, Goal as EGoal, Group, Judge,
    LabelRequest, LearnReport, PairRequest, PointRequest, Policy, Role, RoleError, Verdict,
};

use crate::lm::{
    Algorithm, BackendKind, GrpoGroup, GrpoSample, LearnerConfig, LmError, PreferenceGroup,
    aligned_logprobs,
};

use super::lang::{Category, EOS, Language, Token};
use super::oracle::{Goal, Oracle, OracleConfig, Outcome, Response, Side};
use super::player::{
    IntentPlayer, ModelSize, PlayerConfig, PlayerRole, WarmStartConfig, d_learner,
};
use super::seeds::split_intents;
use super::warm::{
    RewriteStyle, attacker_context, defender_context, parse_rewrite, warm_defender_response,
};
use sparring_engine::rng::{SplitMix64, hash_words};

fn lm_err(e: LmError) -> RoleError {
    RoleError::Failed(e.to_string())
}

fn category(c: ECategory) -> Category {
    match c {
        ECategory::Harmful => Category::Harmful,
        ECategory::Benign => Category::Benign,
    }
}

fn encode(lang: &Language, text: &str, what: &str) -> Result<Vec<Token>, RoleError> {
    lang.encode(text)
        .map_err(|e| RoleError::failed(format!("{what}: {e}")))
}

/// The tokens a learner trains on for an output text: the text encoded, or a lone end token for an empty one.
fn learned_tokens(lang: &Language, text: &str, what: &str) -> Result<Vec<Token>, RoleError> {
    let t = encode(lang, text, what)?;
    Ok(if t.is_empty() { vec![EOS] } else { t })
}

fn player_role(role: Role) -> Result<PlayerRole, RoleError> {
    match role {
        Role::Attacker => Ok(PlayerRole::Attacker),
        Role::Defender => Ok(PlayerRole::Defender),
        Role::Judge => Err(RoleError::config(
            "kind",
            "intent policies play attacker or defender, not judge",
        )),
    }
}

/// Parameters of `intent-lm`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentLmParams {
    /// Backend: flex (CPU, default), wgpu or cuda (cargo features).
    #[serde(default)]
    #[schemars(with = "Option<BackendKind>", default = "flex_name")]
    pub backend: Option<String>,
    /// Transformer sizes: `d_model`, `n_layers`, `n_heads`, `d_ff`, `max_len`.
    #[serde(default)]
    pub model: ModelSize,
    /// Supervised warm start on the built-in warm data.
    #[serde(default)]
    pub warm_start: WarmStartConfig,
    /// Sampling temperature in the game.
    #[serde(default = "one_f32")]
    #[schemars(range(min = 0))]
    pub temperature: f32,
    /// Nucleus sampling mass, in (0, 1].
    #[serde(default = "one_f32")]
    #[schemars(range(max = 1))]
    pub top_p: f32,
    /// Generation length cap (default: 14 for the attacker, 3 for the defender).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Answer evaluation requests (keys starting with `eval/`) greedily instead of at `temperature`
    /// (default false): the evaluated policy is then its mode, as in the in-process evaluation.
    #[serde(default)]
    pub eval_greedy: bool,
    /// Learner: `algorithm` (dpo | ipo | grpo), `beta`, `ema_decay` and the AdamW `optim` table.
    #[serde(default = "d_learner")]
    pub learner: LearnerConfig,
    /// Share of intents held out from the warm-start data, in [0, 1) (default 0.25; must match the data files).
    #[serde(default = "quarter")]
    pub held_out_fraction: f64,
    /// Seed of the train/held-out split (default 1; must match the data files).
    #[serde(default = "one_u64")]
    pub split_seed: u64,
}

fn one_f32() -> f32 {
    1.0
}
/// The documented default of `backend`.
fn flex_name() -> Option<String> {
    Some(BackendKind::Flex.name().into())
}
fn one_u64() -> u64 {
    1
}
fn quarter() -> f64 {
    0.25
}

impl IntentLmParams {
    fn player_config(&self) -> Result<PlayerConfig, RoleError> {
        let backend = match &self.backend {
            None => BackendKind::Flex,
            Some(s) => s
                .parse::<BackendKind>()
                .map_err(|e| RoleError::config("backend", e.to_string()))?,
        };
        backend
            .require_compiled()
            .map_err(|e| RoleError::config("backend", e.to_string()))?;
        if !(self.held_out_fraction.is_finite() && (0.0..1.0).contains(&self.held_out_fraction)) {
            return Err(RoleError::config("held_out_fraction", "must be in [0, 1)"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(RoleError::config("temperature", "must be >= 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(RoleError::config("top_p", "must be in (0, 1]"));
        }
        self.learner
            .validate()
            .map_err(|e| RoleError::config("learner", e.to_string()))?;
        let cfg = PlayerConfig {
            backend,
            model: self.model.clone(),
            warm_start: self.warm_start.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            max_new_tokens: self.max_new_tokens,
            learner: self.learner.clone(),
        };
        let m = &cfg.model;
        if m.d_model == 0
            || m.n_heads == 0
            || !m.d_model.is_multiple_of(m.n_heads)
            || m.n_layers == 0
            || m.d_ff == 0
        {
            return Err(RoleError::config(
                "model",
                "d_model, n_layers, d_ff must be > 0 and n_heads must divide d_model",
            ));
        }
        if m.max_len < 24 {
            return Err(RoleError::config(
                "model.max_len",
                "must be >= 24 (context + response)",
            ));
        }
        if let Some(n) = cfg.max_new_tokens
            && !(1..=m.max_len).contains(&n)
        {
            return Err(RoleError::config(
                "max_new_tokens",
                format!("{n} is not in 1..={} (`model.max_len`)", m.max_len),
            ));
        }
        Ok(cfg)
    }
}

type WarmCache = std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>;

fn warm_cache() -> &'static WarmCache {
    static CACHE: std::sync::OnceLock<WarmCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The rewards of a group with copies of one response sharing one reward, the mean of their present
/// rewards: the judge's verdicts on copies differ only by its noise (each pair is judged on its own), and
/// a preference pair between two copies has nothing to learn.
pub fn merge_copies(responses: &[Vec<Token>], rewards: &[Option<f64>]) -> Vec<Option<f32>> {
    let end = |t: &[Token]| t.iter().position(|&x| x == EOS).unwrap_or(t.len());
    (0..rewards.len())
        .map(|i| {
            rewards[i]?;
            let Some(r) = responses.get(i) else {
                return rewards[i].map(|x| x as f32);
            };
            let (mut sum, mut n) = (0.0, 0usize);
            for (o, w) in responses.iter().zip(rewards) {
                if let Some(w) = w
                    && o[..end(o)] == r[..end(r)]
                {
                    sum += w;
                    n += 1;
                }
            }
            Some((sum / n.max(1) as f64) as f32)
        })
        .collect()
}

/// `intent-lm`: an attacker or defender on the Burn LM, warm-started at construction (a self-play player: one
/// model warm-started on both sides' data, answering each request in the role it names).
pub struct IntentLmPolicy {
    lang: Arc<Language>,
    player: IntentPlayer,
    eval_greedy: bool,
}

impl IntentLmPolicy {
    /// Builds and warm-starts the player (seeded by the scenario seed and the role; a self-play player by the
    /// seed alone, whichever role builds it).
    pub fn new(params: &IntentLmParams, ctx: &BuildContext) -> Result<IntentLmPolicy, RoleError> {
        let cfg = params.player_config()?;
        let role = player_role(ctx.role)?;
        let lang = Arc::new(Language::builtin());
        let split = split_intents(&lang, params.held_out_fraction, params.split_seed);
        let (roles, seed) = if ctx.self_play {
            (
                vec![PlayerRole::Attacker, PlayerRole::Defender],
                hash_words(ctx.seed, &[SELF_PLAY_SALT]),
            )
        } else {
            (vec![role], hash_words(ctx.seed, &[role as u64]))
        };
        // The warm start is a pure function of (roles, config, split, seed): cache its state in the
        // process so that a supervisor restart or a second build does not pay for it again.
        let key = format!(
            "{roles:?}|{seed}|{}|{}|{}",
            params.held_out_fraction,
            params.split_seed,
            serde_json::to_string(&cfg).map_err(|e| RoleError::failed(e.to_string()))?
        );
        let cached = warm_cache().lock().ok().and_then(|m| m.get(&key).cloned());
        let player = match cached {
            Some(bytes) => {
                let mut bare = cfg.clone();
                bare.warm_start.steps = 0;
                let mut p =
                    IntentPlayer::playing(&lang, &roles, bare, &[], seed).map_err(lm_err)?;
                p.load(&bytes).map_err(lm_err)?;
                p
            }
            None => {
                let p = IntentPlayer::playing(&lang, &roles, cfg, &split.train, seed)
                    .map_err(lm_err)?;
                let bytes = p.save().map_err(lm_err)?;
                if let Ok(mut m) = warm_cache().lock() {
                    m.insert(key, bytes);
                }
                p
            }
        };
        Ok(IntentLmPolicy {
            lang,
            player,
            eval_greedy: params.eval_greedy,
        })
    }

    /// The underlying player.
    pub fn player(&self) -> &IntentPlayer {
        &self.player
    }

    /// The model's context for an input played as `role` (its role tag says which side it plays).
    fn context(
        &self,
        role: PlayerRole,
        req_input: &str,
        cat: ECategory,
    ) -> Result<Vec<Token>, RoleError> {
        let toks = encode(&self.lang, req_input, "input")?;
        Ok(match role {
            PlayerRole::Attacker => attacker_context(&self.lang, category(cat), &toks),
            PlayerRole::Defender => defender_context(&self.lang, &toks),
        })
    }
}

/// The seed salt of a self-play player (any value that is not a [`PlayerRole`]'s).
const SELF_PLAY_SALT: u64 = 0x5E1F;

impl Policy for IntentLmPolicy {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        // Rows answered greedily (evaluation, with `eval_greedy`) and sampled, per role, each kind in one batch.
        let roles = [PlayerRole::Attacker, PlayerRole::Defender];
        let bucket = |role: PlayerRole, greedy: bool| 2 * usize::from(greedy) + role as usize;
        let mut rows: [(Vec<Vec<Token>>, Vec<u64>); 4] = Default::default();
        let mut which = Vec::new();
        for r in reqs {
            let role = player_role(r.role)?;
            let c = self
                .context(role, &r.input, r.seed.category)
                .map_err(|e| RoleError::failed(format!("{}: {e}", r.key)))?;
            let b = bucket(role, self.eval_greedy && r.is_eval());
            let (contexts, seeds) = &mut rows[b];
            for k in 0..r.n {
                contexts.push(c.clone());
                seeds.push(hash_words(r.rng_seed, &[k as u64]));
                which.push(b);
            }
        }
        let mut answered = Vec::with_capacity(rows.len());
        for greedy in [false, true] {
            for role in roles {
                let (contexts, seeds) = &rows[bucket(role, greedy)];
                let g = self.player.sample(role, contexts, seeds, greedy);
                answered.push(g.map_err(lm_err)?.into_iter());
            }
        }
        let mut it = which.into_iter().filter_map(|b| answered[b].next());
        let on_policy = self.player.algorithm() == Algorithm::Grpo;
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let role = player_role(r.role)?;
            let mut v = Vec::with_capacity(r.n);
            for _ in 0..r.n {
                let Some(g) = it.next() else {
                    return Err(RoleError::failed("sampler returned too few generations"));
                };
                let text = self.lang.decode(&g.tokens);
                // The learner trains on the text re-encoded: the sampled log-probs of its tokens.
                let logprobs = if on_policy && !r.is_eval() {
                    let learned =
                        learned_tokens(&self.lang, &text, "sample").unwrap_or_else(|_| vec![EOS]);
                    aligned_logprobs(&g.tokens, &g.logprobs, &learned)
                } else {
                    Vec::new()
                };
                let parsed = match role {
                    PlayerRole::Attacker => parse_rewrite(&self.lang, &g.tokens)
                        .ok()
                        .map(|p| self.lang.decode(&p)),
                    PlayerRole::Defender => {
                        let end = g
                            .tokens
                            .iter()
                            .position(|&t| t == EOS)
                            .unwrap_or(g.tokens.len());
                        Some(self.lang.decode(&g.tokens[..end]))
                    }
                };
                v.push(Generation {
                    text,
                    parsed,
                    tokens: g.tokens.len() as u64,
                    logprobs,
                });
            }
            out.push(v);
        }
        Ok(out)
    }

    fn learn(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        let mut pgroups = Vec::new();
        for g in groups {
            let ctx = self
                .context(player_role(g.role)?, &g.input, g.seed.category)
                .map_err(|e| RoleError::failed(format!("{}: {e}", g.key)))?;
            let mut responses = Vec::with_capacity(g.outputs.len());
            for (i, o) in g.outputs.iter().enumerate() {
                responses.push(learned_tokens(
                    &self.lang,
                    o,
                    &format!("{} output {i}", g.key),
                )?);
            }
            let rewards = merge_copies(&responses, &g.rewards);
            pgroups.push(PreferenceGroup {
                prompt: ctx,
                responses,
                rewards,
            });
        }
        let tokens: u64 = pgroups
            .iter()
            .flat_map(|g| {
                g.responses
                    .iter()
                    .map(|r| (r.len() + g.prompt.len()) as u64)
            })
            .sum();
        let report = match self.player.algorithm() {
            Algorithm::Grpo => {
                // One GRPO group per engine group, each sample with the log-probs it was drawn with.
                let mut batch = Vec::with_capacity(pgroups.len());
                for (g, eg) in pgroups.into_iter().zip(groups) {
                    // attacker error samples (unparseable, or unfaithful by the exact oracle parse) shift
                    // the baseline but are masked out of the loss
                    let seed_topic = self
                        .lang
                        .encode(&eg.input)
                        .ok()
                        .and_then(|s| self.lang.topic_of(&s));
                    let samples = g
                        .responses
                        .into_iter()
                        .zip(&g.rewards)
                        .enumerate()
                        .map(|(i, (response, reward))| GrpoSample {
                            error: eg.role == Role::Attacker
                                && parse_rewrite(&self.lang, &response)
                                    .map(|p| self.lang.topic_of(&p))
                                    .ok()
                                    .flatten()
                                    != seed_topic,
                            gen_logprobs: eg.logprobs.get(i).cloned().unwrap_or_default(),
                            response,
                            reward: *reward,
                        })
                        .collect();
                    batch.push(GrpoGroup {
                        prompt: g.prompt,
                        seed: eg.seed.id.to_string(),
                        samples,
                    });
                }
                self.player.learn_grpo(&batch).map_err(lm_err)?
            }
            _ => self.player.learn_pairs(&pgroups).map_err(lm_err)?,
        };
        let mut out = LearnReport {
            tokens,
            ..LearnReport::default()
        };
        if let Some(r) = report {
            out.steps = 1;
            out.loss = Some(r.loss as f64);
            out.metrics = r.metrics();
        }
        Ok(out)
    }

    fn version(&self) -> u64 {
        self.player.version()
    }

    fn save(&self) -> Result<Vec<u8>, RoleError> {
        self.player.save().map_err(lm_err)
    }

    fn load(&mut self, state: &[u8]) -> Result<(), RoleError> {
        self.player.load(state).map_err(lm_err)
    }
}

/// `intent-rule`: the warm-start behaviours as scripted policies — as a defender the rule of
/// [`warm_defender_response`], as an attacker rewrites drawn from the warm attacker's distribution (each request
/// in the role it names).
pub struct IntentRulePolicy {
    lang: Arc<Language>,
}

impl Policy for IntentRulePolicy {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        let lang = &self.lang;
        let style = RewriteStyle::warm_attacker();
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let toks = encode(lang, &r.input, &r.key)?;
            let mut v = Vec::with_capacity(r.n);
            for k in 0..r.n {
                let mut rng = SplitMix64::new(hash_words(r.rng_seed, &[k as u64]));
                let g = match player_role(r.role)? {
                    PlayerRole::Defender => {
                        let resp = warm_defender_response(lang, &toks).tokens(lang);
                        let end = resp.iter().position(|&t| t == EOS).unwrap_or(resp.len());
                        Generation {
                            text: lang.decode(&resp),
                            parsed: Some(lang.decode(&resp[..end])),
                            tokens: resp.len() as u64,
                            logprobs: Vec::new(),
                        }
                    }
                    PlayerRole::Attacker => {
                        let rw = super::warm::rewrite_tokens(lang, &toks, &style, &mut rng);
                        let text = lang.decode(&rw);
                        Generation {
                            text: format!("{text} <eos>"),
                            parsed: Some(text),
                            tokens: rw.len() as u64 + 1,
                            logprobs: Vec::new(),
                        }
                    }
                };
                v.push(g);
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Parameters of `intent-oracle`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OracleParams {
    /// Probability that a verdict is replaced by a random one (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub noise: f64,
    /// Noise seed (default: the scenario seed).
    #[serde(default)]
    pub seed: Option<u64>,
    /// What the compliance label counts: `helpful` (default: a compliance that answers the prompt's topic,
    /// the intent game's ASR and utility) or `any` (every `COMPLY`, the prefix-style label).
    #[serde(default)]
    pub compliance: ComplianceLabel,
    /// A hackable judge, for reward-hacking experiments: a response containing `word` (a word of the intent
    /// language, e.g. `ans:gardening`) is worth `weight` more in pairwise and pointwise verdicts, as an LM judge
    /// that over-rewards a keyword. Compliance labels and faithfulness stay exact.
    #[serde(default)]
    pub bias: Option<BiasParams>,
}

/// `intent-oracle`'s `bias`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BiasParams {
    /// The over-rewarded word.
    pub word: String,
    /// How much it adds to a response's exact score (0–1 scale; pointwise scores saturate at 1).
    #[schemars(range(min = 0))]
    pub weight: f64,
}

/// What `intent-oracle` labels as complied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComplianceLabel {
    /// A compliance with the answer of the prompt's topic (an off-topic answer gives away nothing).
    #[default]
    Helpful,
    /// Any compliance.
    Any,
}

impl OracleParams {
    fn check(&self) -> Result<(), RoleError> {
        self.config(0).map(drop)
    }

    /// The oracle's settings (`seed`: the scenario's, unless the table sets one).
    fn config(&self, seed: u64) -> Result<OracleConfig, RoleError> {
        if !(self.noise.is_finite() && (0.0..=1.0).contains(&self.noise)) {
            return Err(RoleError::config("noise", "must be in [0, 1]"));
        }
        let bias = match &self.bias {
            None => None,
            Some(b) => {
                if !(b.weight.is_finite() && b.weight >= 0.0) {
                    return Err(RoleError::config("bias.weight", "must be a number ≥ 0"));
                }
                let Some(token) = Language::builtin().token(&b.word) else {
                    return Err(RoleError::config(
                        "bias.word",
                        format!("`{}` is not a word of the intent language", b.word),
                    ));
                };
                Some((token, b.weight))
            }
        };
        Ok(OracleConfig {
            noise: self.noise,
            seed: self.seed.unwrap_or(seed),
            bias,
        })
    }
}

/// `intent-oracle`: the oracle judge of the intent game.
pub struct OracleJudge {
    oracle: Oracle,
    label: ComplianceLabel,
}

impl OracleJudge {
    /// A judge over the built-in language whose compliance label is helpful compliance.
    pub fn new(config: OracleConfig) -> OracleJudge {
        OracleJudge::with_label(config, ComplianceLabel::Helpful)
    }

    /// A judge over the built-in language with the given compliance label.
    pub fn with_label(config: OracleConfig, label: ComplianceLabel) -> OracleJudge {
        OracleJudge {
            oracle: Oracle::new(Arc::new(Language::builtin()), config),
            label,
        }
    }

    fn goal(g: EGoal) -> Goal {
        match g {
            EGoal::SafeRefusal => Goal {
                side: Side::Defender,
                category: Category::Harmful,
            },
            EGoal::HelpfulCompliance => Goal {
                side: Side::Defender,
                category: Category::Benign,
            },
            EGoal::HarmfulCompliance => Goal {
                side: Side::Attacker,
                category: Category::Harmful,
            },
            EGoal::OverRefusal => Goal {
                side: Side::Attacker,
                category: Category::Benign,
            },
        }
    }

    /// Tokens of a response text (unknown words make it invalid: an empty token list).
    fn response(&self, text: &str) -> Vec<Token> {
        self.oracle.language().encode(text).unwrap_or_default()
    }
}

impl Judge for OracleJudge {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        let lang = self.oracle.language().clone();
        Ok(reqs
            .iter()
            .map(
                |r| match (lang.encode(&r.seed.prompt), lang.encode(&r.rewrite)) {
                    (Ok(s), Ok(w)) => {
                        let v = self.oracle.faithful(&s, &w, r.rng_seed);
                        let topic = lang
                            .topic_of(&w)
                            .and_then(|t| lang.topic(t))
                            .map_or("none", |t| t.name.as_str());
                        Verdict::new(format!("faithful={v} topic={topic}"), Some(v))
                    }
                    (Err(e), _) => Verdict::new(format!("seed: {e}"), None),
                    (_, Err(e)) => Verdict::new(format!("rewrite: {e}"), Some(false)),
                },
            )
            .collect())
    }

    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        let lang = self.oracle.language().clone();
        Ok(reqs
            .iter()
            .map(|r| {
                let Ok(ctx) = lang.encode(&r.context) else {
                    return Verdict::new("context has unknown words", None);
                };
                let p = self.oracle.compare_goal(
                    Self::goal(r.goal),
                    &ctx,
                    &self.response(&r.a),
                    &self.response(&r.b),
                    r.rng_seed,
                );
                let s = (p.score_a() as f64, 1.0 - p.score_a() as f64);
                Verdict::new(format!("{p:?}"), Some(s))
            })
            .collect())
    }

    fn score(&mut self, reqs: &[PointRequest]) -> Result<Vec<Verdict<f64>>, RoleError> {
        let lang = self.oracle.language().clone();
        Ok(reqs
            .iter()
            .map(|r| {
                let Ok(ctx) = lang.encode(&r.context) else {
                    return Verdict::new("context has unknown words", None);
                };
                let s = self.oracle.score_goal(
                    Self::goal(r.goal),
                    &ctx,
                    &self.response(&r.response),
                    r.rng_seed,
                ) as f64;
                Verdict::new(format!("{s}"), Some(s))
            })
            .collect())
    }

    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        let lang = self.oracle.language().clone();
        Ok(reqs
            .iter()
            .map(|r| {
                let resp = Response::parse(&lang, &self.response(&r.response));
                let topic = lang.encode(&r.prompt).ok().and_then(|p| lang.topic_of(&p));
                let outcome = Outcome::of(topic, resp);
                let v = match self.label {
                    ComplianceLabel::Helpful => outcome == Outcome::HelpfulCompliance,
                    ComplianceLabel::Any => resp.complied(),
                };
                Verdict::new(format!("{resp:?} {outcome:?}"), Some(v))
            })
            .collect())
    }
}

/// Registers `intent-lm`, `intent-rule` (attacker, defender) and `intent-oracle` (judge).
pub fn register(reg: &mut Registry) {
    let both = vec![Role::Attacker, Role::Defender];
    reg.add_policy(
        KindInfo {
            kind: "intent-lm".into(),
            about: "intent game player on a small Burn transformer LM, warm-started, trained by DPO/IPO/GRPO".into(),
            roles: both.clone(),
            params: Some(ParamsSchema::of::<IntentLmParams>()),
            check: Arc::new(|p: &toml::Table, c: &BuildContext| {
                let params: IntentLmParams = c.parse(p)?;
                player_role(c.role)?;
                params.player_config().map(|_| ())
            }),
        },
        Arc::new(|p: &toml::Table, c: &BuildContext| {
            let params: IntentLmParams = c.parse(p)?;
            Ok(Box::new(IntentLmPolicy::new(&params, c)?) as Box<dyn Policy>)
        }),
    );
    reg.add_policy(
        KindInfo {
            kind: "intent-rule".into(),
            about: "intent game warm-start behaviour as a rule: weak defender / warm-distribution attacker".into(),
            roles: both,
            params: Some(ParamsSchema::empty()),
            check: Arc::new(|p: &toml::Table, c: &BuildContext| {
                player_role(c.role)?;
                if let Some(k) = p.keys().next() {
                    return Err(RoleError::config(k.clone(), "unknown parameter (intent-rule takes none)"));
                }
                Ok(())
            }),
        },
        Arc::new(|p: &toml::Table, c: &BuildContext| {
            if let Some(k) = p.keys().next() {
                return Err(RoleError::config(k.clone(), "unknown parameter (intent-rule takes none)"));
            }
            player_role(c.role)?;
            Ok(Box::new(IntentRulePolicy { lang: Arc::new(Language::builtin()) }) as Box<dyn Policy>)
        }),
    );
    reg.add_judge(
        KindInfo {
            kind: "intent-oracle".into(),
            about: "oracle judge of the intent game (faithfulness, pairwise, pointwise, compliance) with noise".into(),
            roles: vec![Role::Judge],
            params: Some(ParamsSchema::of::<OracleParams>()),
            check: Arc::new(|p: &toml::Table, c: &BuildContext| {
                let params: OracleParams = c.parse(p)?;
                params.check()
            }),
        },
        Arc::new(|p: &toml::Table, c: &BuildContext| {
            let params: OracleParams = c.parse(p)?;
            Ok(Box::new(OracleJudge::with_label(params.config(c.seed)?, params.compliance)) as Box<dyn Judge>)
        }),
    );
}
