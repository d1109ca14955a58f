//! The intent game's engine kinds: `intent-lm` (attacker or defender on the Burn LM), `intent-rule`
//! (the scripted warm-start behaviours: rule defender, warm-distribution attacker) and the
//! `intent-oracle` judge, implementing the engine's `Policy` / `Judge` traits, plus [`register`].

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sparring_engine::registry::{BuildContext, KindInfo, ParamsSchema, Registry};
use sparring_engine::roles::{
    Category as ECategory, FaithRequest, GenRequest, Generation, Goal as EGoal, Group, Judge,
    LabelRequest, LearnReport, PairRequest, PointRequest, Policy, Role, RoleError, Turn, Verdict,
};

use crate::lm::{
    Algorithm, BackendKind, GrpoGroup, GrpoSample, LearnerConfig, LmError, PreferenceGroup,
    Segment, aligned_logprobs,
};

use super::lang::{Category, EOS, Language, Token};
use super::oracle::{Goal, Oracle, OracleConfig, Outcome, Response, Side};
use super::player::{
    IntentPlayer, ModelSize, PlayerConfig, PlayerRole, WarmStartConfig, d_learner,
};
use super::seeds::split_intents;
use super::warm::{
    Exchange, RewriteStyle, attacker_context_in, defender_context_in, parse_rewrite, small_talk,
    warm_defender_reply,
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
    fn player_config(&self, turns: u32) -> Result<PlayerConfig, RoleError> {
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
            turns: turns.max(1) as usize,
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
        if m.max_len < 24 * cfg.turns {
            return Err(RoleError::config(
                "model.max_len",
                format!(
                    "must be >= {} (24 per turn of a conversation: context + response; `game.turns` is {})",
                    24 * cfg.turns,
                    cfg.turns
                ),
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
        let cfg = params.player_config(ctx.turns)?;
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

    /// The topic of an attacker's conversation, its turns parsed (`None` when one does not parse, or no topic).
    fn conversation_topic(&self, first: &[Token], later: &[Segment]) -> Option<usize> {
        let mut all = parse_rewrite(&self.lang, first).ok()?;
        for s in later {
            all.extend(parse_rewrite(&self.lang, &s.response).ok()?);
        }
        self.lang.topic_of(&all)
    }

    /// The model's context for an input played as `role` (its role tag says which side it plays), after the
    /// conversation `history` (a multi-turn game's turns so far).
    fn context(
        &self,
        role: PlayerRole,
        req_input: &str,
        cat: ECategory,
        history: &[Turn],
    ) -> Result<Vec<Token>, RoleError> {
        let toks = encode(&self.lang, req_input, "input")?;
        let history = exchanges(&self.lang, history)?;
        Ok(match role {
            PlayerRole::Attacker => attacker_context_in(&self.lang, category(cat), &toks, &history),
            PlayerRole::Defender => defender_context_in(&self.lang, &history, &toks),
        })
    }

    /// A learner group's first prompt, and per output its first turn and its later turns (a multi-turn
    /// attacker's conversation: its turns after the first, each after the conversation before it), with the
    /// log-probs each turn was sampled with.
    fn trajectories(&self, g: &Group) -> Result<Trajectories, RoleError> {
        let role = player_role(g.role)?;
        let what = |i: usize| format!("{} output {i}", g.key);
        let mut out = Trajectories {
            prompt: self.context(role, &g.input, g.seed.category, &[])?,
            ..Trajectories::default()
        };
        let mut multi_turn = false;
        for (i, text) in g.outputs.iter().enumerate() {
            let history = g.history(i);
            let logprobs = g.logprobs.get(i).cloned().unwrap_or_default();
            if role == PlayerRole::Defender || history.is_empty() {
                if role == PlayerRole::Defender && !history.is_empty() {
                    // A defender's outputs answer one conversation: its context is the first prompt.
                    out.prompt = self.context(role, &g.input, g.seed.category, history)?;
                }
                out.first
                    .push((learned_tokens(&self.lang, text, &what(i))?, logprobs));
                out.later.push(Vec::new());
                continue;
            }
            multi_turn = true;
            let first = &history[0];
            out.first.push((
                learned_tokens(&self.lang, &first.attack, &what(i))?,
                first.logprobs.clone(),
            ));
            let mut later = Vec::with_capacity(history.len());
            for t in 1..=history.len() {
                let (text, logprobs) = match history.get(t) {
                    Some(turn) => (&turn.attack, turn.logprobs.clone()),
                    None => (text, logprobs.clone()),
                };
                later.push(Segment {
                    prompt: self.context(role, &g.input, g.seed.category, &history[..t])?,
                    response: learned_tokens(&self.lang, text, &what(i))?,
                    gen_logprobs: logprobs,
                });
            }
            out.later.push(later);
        }
        if !multi_turn {
            out.later.clear();
        }
        Ok(out)
    }
}

/// A conversation's earlier exchanges as tokens: each turn's prompt and the defender's reply.
fn exchanges(lang: &Language, history: &[Turn]) -> Result<Vec<Exchange>, RoleError> {
    history
        .iter()
        .enumerate()
        .map(|(t, turn)| {
            Ok((
                encode(lang, &turn.prompt, &format!("turn {} prompt", t + 1))?,
                encode(lang, &turn.reply, &format!("turn {} reply", t + 1))?,
            ))
        })
        .collect()
}

/// A learner group as the intent model learns it ([`IntentLmPolicy::trajectories`]).
#[derive(Default)]
struct Trajectories {
    prompt: Vec<Token>,
    /// Per output: its first turn's tokens and their behaviour log-probs.
    first: Vec<(Vec<Token>, Vec<f32>)>,
    /// Per output: its later turns (all empty, or none at all: a single-turn group).
    later: Vec<Vec<Segment>>,
}

impl Trajectories {
    /// Per output, its turns' tokens up to their ends, joined by `SEP`: equal for copies of one conversation.
    fn whole(&self, i: usize) -> Vec<Token> {
        let end = |t: &[Token]| t.iter().position(|&x| x == EOS).unwrap_or(t.len());
        let first = &self.first[i].0;
        let mut v = first[..end(first)].to_vec();
        for s in self.later.get(i).into_iter().flatten() {
            v.push(super::lang::SEP);
            v.extend_from_slice(&s.response[..end(&s.response)]);
        }
        v
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
                .context(role, &r.input, r.seed.category, &r.history)
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
        let mut tokens = 0u64;
        for g in groups {
            let t = self
                .trajectories(g)
                .map_err(|e| RoleError::failed(format!("{}: {e}", g.key)))?;
            // Copies of one conversation share a reward.
            let whole: Vec<Vec<Token>> = (0..t.first.len()).map(|i| t.whole(i)).collect();
            let rewards = merge_copies(&whole, &g.rewards);
            for (i, (first, _)) in t.first.iter().enumerate() {
                tokens += (t.prompt.len() + first.len()) as u64;
                for s in t.later.get(i).into_iter().flatten() {
                    tokens += (s.prompt.len() + s.response.len()) as u64;
                }
            }
            pgroups.push((t, rewards));
        }
        let report = match self.player.algorithm() {
            Algorithm::Grpo => {
                // One GRPO group per engine group, each sample with the log-probs it was drawn with.
                let mut batch = Vec::with_capacity(pgroups.len());
                for ((t, rewards), eg) in pgroups.into_iter().zip(groups) {
                    // attacker error samples (unparseable, or unfaithful by the exact oracle parse) shift
                    // the baseline but are masked out of the loss
                    let seed_topic = self
                        .lang
                        .encode(&eg.input)
                        .ok()
                        .and_then(|s| self.lang.topic_of(&s));
                    let mut later = t.later.into_iter();
                    let samples = t
                        .first
                        .into_iter()
                        .zip(&rewards)
                        .map(|((response, gen_logprobs), reward)| {
                            let later = later.next().unwrap_or_default();
                            let error = eg.role == Role::Attacker
                                && self.conversation_topic(&response, &later) != seed_topic;
                            GrpoSample {
                                error,
                                gen_logprobs,
                                response,
                                reward: *reward,
                                later,
                            }
                        })
                        .collect();
                    batch.push(GrpoGroup {
                        prompt: t.prompt,
                        seed: eg.seed.id.to_string(),
                        samples,
                    });
                }
                self.player.learn_grpo(&batch).map_err(lm_err)?
            }
            _ => {
                let batch: Vec<PreferenceGroup> = pgroups
                    .into_iter()
                    .map(|(t, rewards)| PreferenceGroup {
                        prompt: t.prompt,
                        responses: t.first.into_iter().map(|(r, _)| r).collect(),
                        rewards,
                        later: t.later,
                    })
                    .collect();
                self.player.learn_pairs(&batch).map_err(lm_err)?
            }
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
    /// A multi-turn game: the defender has the multi-turn weakness, and the attacker opens a conversation with
    /// small talk 30 % of the time (as the warm data does).
    multi_turn: bool,
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
                        let earlier = exchanges(lang, &r.history)?
                            .into_iter()
                            .map(|(user, _)| user)
                            .collect::<Vec<_>>();
                        let resp = warm_defender_reply(lang, &earlier, &toks, self.multi_turn)
                            .tokens(lang);
                        let end = resp.iter().position(|&t| t == EOS).unwrap_or(resp.len());
                        Generation {
                            text: lang.decode(&resp),
                            parsed: Some(lang.decode(&resp[..end])),
                            tokens: resp.len() as u64,
                            logprobs: Vec::new(),
                        }
                    }
                    PlayerRole::Attacker => {
                        let opening = self.multi_turn && r.history.is_empty();
                        let rw = if opening && rng.chance(0.3) {
                            small_talk(lang, 0.2, &mut rng)
                        } else {
                            super::warm::rewrite_tokens(lang, &toks, &style, &mut rng)
                        };
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
                |r| match (lang.encode(&r.seed.prompt), lang.encode(&r.conversation())) {
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
                params.player_config(c.turns).map(|_| ())
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
            Ok(Box::new(IntentRulePolicy { lang: Arc::new(Language::builtin()), multi_turn: c.turns > 1 }) as Box<dyn Policy>)
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
