//! The chat-LM attacker or defender (`ChatPolicy`, kind `chat-lm`): its prompts, batched generation, and
//! learning (LoRA adapters or every weight, DPO/IPO or GRPO) with its state saved and restored as a checkpoint.
//!
//! Its prompt conventions (messages, prefill, stops, output text, parsing) are the chat-LM player's (`player`),
//! shared with the remote `openai-chat` kind: an attacker with `think = false` has its turn prefilled with
//! `<prompt>` and stops at `</prompt>` or at the end of its first paragraph (closing the tag); an output cut by
//! `max_new_tokens` stays unclosed and is an error reward.

use super::lora::LoraLlama;
use super::model::{ChatModel, Net, Sample, Sampling};
use super::params::{Finetune, PolicyParams, load_model};
use super::parse::parse_attacker;
use super::player;
use super::prompts::ChatMessage;
use crate::llama::generate::row_seed;
use crate::llama::{HostLlama, LlamaModel};
use crate::lm::{
    Algorithm, BackendKind, Checkpoint, GrpoGroup, GrpoSample, Learner, LearnerConfig, LmError,
    PreferenceGroup, Segment, StepReport, aligned_logprobs,
};
use burn::module::Module;
use sparring_engine::registry::BuildContext;
use sparring_engine::roles::Turn;
use sparring_engine::{GenRequest, Generation, Group, LearnReport, Policy, Role, RoleError, Seed};
use std::sync::Arc;

/// The trainable part of a policy: LoRA adapters over frozen weights, or every weight.
enum Training {
    Lora(Learner<LoraLlama>),
    Full(Learner<LlamaModel>),
}

macro_rules! each {
    ($t:expr, $l:ident => $e:expr) => {
        match $t {
            Training::Lora($l) => $e,
            Training::Full($l) => $e,
        }
    };
}

impl Training {
    fn config(&self) -> &LearnerConfig {
        each!(self, l => l.config())
    }
    fn steps(&self) -> u64 {
        each!(self, l => l.steps())
    }
    fn adapter_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Training::Lora(l) => l.generator().adapter_bytes().map(Some),
            Training::Full(_) => Ok(None),
        }
    }
    /// The adapters of the generating weights or of the online policy (`None`: every weight trains).
    fn lora(&self, w: Weights) -> Option<LoraLlama> {
        match (self, w) {
            (Training::Lora(l), Weights::Generator) => Some(l.generator()),
            (Training::Lora(l), Weights::Policy) => Some(l.policy().valid()),
            (Training::Full(_), _) => None,
        }
    }
    /// The generating weights (EMA for DPO/IPO, current for GRPO) or the online policy as a plain model, adapters
    /// merged.
    fn model(&self, w: Weights) -> LlamaModel {
        match (self, w) {
            (Training::Lora(l), Weights::Generator) => l.generator().merged(),
            (Training::Lora(l), Weights::Policy) => l.policy().valid().merged(),
            (Training::Full(l), Weights::Generator) => l.generator(),
            (Training::Full(l), Weights::Policy) => l.policy().valid(),
        }
    }
    fn preference_step(&mut self, g: &[PreferenceGroup]) -> Result<Option<StepReport>, LmError> {
        each!(self, l => l.preference_step(g))
    }
    fn grpo_step(&mut self, g: &[GrpoGroup]) -> Result<Option<StepReport>, LmError> {
        each!(self, l => l.grpo_step(g))
    }
    fn checkpoint(&self) -> Result<Checkpoint, LmError> {
        each!(self, l => l.checkpoint())
    }
    fn restore(&mut self, ck: &Checkpoint) -> Result<(), LmError> {
        each!(self, l => l.restore(ck))
    }
}

/// Which weights of a learning player: those it generates with (the EMA copy under DPO/IPO, the current policy
/// under GRPO), as it plays and as `sparring serve` serves it, or the online policy the optimizer updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    Generator,
    Policy,
}

/// A learner group of a chat player ([`ChatPolicy::learn_group`]).
struct LearnGroup {
    prompt: Vec<u32>,
    /// Per output: its first turn's tokens and their behaviour log-probs.
    first: Vec<(Vec<u32>, Vec<f32>)>,
    /// Per output: its later turns (none at all in a single-turn group).
    later: Vec<Vec<Segment>>,
}

impl LearnGroup {
    /// The tokens the learner reads: every turn's context and output.
    fn tokens(&self) -> u64 {
        let first: usize = self
            .first
            .iter()
            .map(|(r, _)| self.prompt.len() + r.len())
            .sum();
        let later: usize = self
            .later
            .iter()
            .flatten()
            .map(|s| s.prompt.len() + s.response.len())
            .sum();
        (first + later) as u64
    }
}

/// A chat-LM attacker or defender (or, under self-play, both): each request is answered, and each group learned,
/// in the role it names.
pub struct ChatPolicy {
    lm: ChatModel,
    params: PolicyParams,
    training: Option<Training>,
    /// Weights used for generation when adapters are in play (base + merged generator adapters).
    generator: Option<LlamaModel>,
    /// On the CPU backend: a host copy of the generating weights for the fast decode path
    /// (`llama::HostLlama`), refreshed whenever they change.
    host: Option<Arc<HostLlama>>,
}

impl ChatPolicy {
    /// Builds the policy for `ctx.role`, loading the model.
    pub fn build(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        let p = PolicyParams::parse(params, ctx)?;
        let lm = load_model(&p.model, p.backend, p.batch_size, ctx)?;
        Self::with_model(lm, p, ctx)
    }

    /// Builds the policy around an already loaded model (tests, evaluation).
    pub fn with_model(
        lm: ChatModel,
        p: PolicyParams,
        ctx: &BuildContext,
    ) -> Result<Self, RoleError> {
        let mut me = ChatPolicy {
            lm,
            params: p.clone(),
            training: None,
            generator: None,
            host: None,
        };
        let role_salt = match ctx.role {
            _ if ctx.self_play => 0x5E1F,
            Role::Attacker => 0xA77A,
            Role::Defender => 0xDEFE,
            Role::Judge => 0x7D6E,
        };
        let seed = ctx.seed ^ role_salt;
        match p.finetune_mode() {
            Finetune::Full => {
                if let Some(cfg) = p.learner.clone() {
                    let learner = Learner::new(me.lm.model.clone(), cfg, seed)
                        .map_err(|e| RoleError::config("learner", e.to_string()))?;
                    me.training = Some(Training::Full(learner));
                    me.refresh_generator();
                }
            }
            Finetune::Lora => {
                if p.learner.is_some() || p.adapters.is_some() {
                    let lora_cfg = p.lora.clone().unwrap_or_default();
                    let mut lora = LoraLlama::new(me.lm.model.clone(), lora_cfg, seed)
                        .map_err(|m| RoleError::config("lora", m))?;
                    if let Some(a) = &p.adapters {
                        lora = lora
                            .load_adapters(&ctx.resolve(a))
                            .map_err(RoleError::Failed)?;
                    }
                    me.generator = Some(lora.merged());
                    me.sync_host()?;
                    if let Some(cfg) = p.learner.clone() {
                        let learner = Learner::new(lora, cfg, seed)
                            .map_err(|e| RoleError::config("learner", e.to_string()))?;
                        me.training = Some(Training::Lora(learner));
                    }
                }
            }
        }
        if me.host.is_none() {
            me.sync_host()?;
        }
        Ok(me)
    }

    /// The chat messages this policy answers as `role` for a seed and an input, after a multi-turn game's
    /// conversation so far (`history`).
    pub fn messages(
        &self,
        role: Role,
        seed: &Seed,
        input: &str,
        history: &[Turn],
    ) -> Vec<ChatMessage> {
        player::messages(role, seed, input, self.params.think, history)
    }

    /// Text the assistant turn of `role` is prefilled with (part of every output text; empty for most settings).
    pub fn prefill(&self, role: Role) -> &'static str {
        player::prefill(role, self.params.think)
    }

    /// The output text of a sample of `role` ([`player::output_text`]).
    fn output_text(&self, role: Role, s: &Sample) -> String {
        player::output_text(
            role,
            self.params.think,
            self.prefill(role),
            &s.text,
            s.truncated,
        )
    }

    /// Prompt tokens (prefill included) for a group's input after `history`.
    fn learn_prompt(&self, g: &Group, history: &[Turn]) -> Result<Vec<u32>, RoleError> {
        self.lm
            .prefilled_ids(
                &self.messages(g.role, &g.seed, &g.input, history),
                self.prefill(g.role),
            )
            .map_err(RoleError::Failed)
    }

    /// A group as the learner sees it: its first prompt, and per output the tokens of its first turn (with
    /// their behaviour log-probs) and its later turns. A defender's outputs answer one conversation (the first
    /// prompt is after it); a multi-turn attacker's output is the last turn of a conversation that its first
    /// turn opened, each later turn after the conversation before it.
    fn learn_group(&self, g: &Group) -> Result<LearnGroup, RoleError> {
        let attacker_turns = g.role == Role::Attacker && !g.histories.is_empty();
        let shared = if attacker_turns {
            &[][..]
        } else {
            g.history(0)
        };
        let mut out = LearnGroup {
            prompt: self.learn_prompt(g, shared)?,
            first: Vec::with_capacity(g.outputs.len()),
            later: Vec::new(),
        };
        for (i, o) in g.outputs.iter().enumerate() {
            let logprobs = g.logprobs.get(i).cloned().unwrap_or_default();
            let history = if attacker_turns { g.history(i) } else { &[] };
            let Some(first) = history.first() else {
                out.first.push((self.learned_ids(g.role, o)?, logprobs));
                out.later.push(Vec::new());
                continue;
            };
            out.first.push((
                self.learned_ids(g.role, &first.attack)?,
                first.logprobs.clone(),
            ));
            let mut later = Vec::with_capacity(history.len());
            for t in 1..=history.len() {
                let (text, lp) = match history.get(t) {
                    Some(turn) => (turn.attack.as_str(), turn.logprobs.clone()),
                    None => (o.as_str(), logprobs.clone()),
                };
                later.push(Segment {
                    prompt: self.learn_prompt(g, &history[..t])?,
                    response: self.learned_ids(g.role, text)?,
                    gen_logprobs: lp,
                });
            }
            out.later.push(later);
        }
        if out.later.iter().all(Vec::is_empty) {
            out.later.clear();
        }
        Ok(out)
    }

    /// The tokens a learner trains on for an output of `role`: the part the model generated (without the
    /// prefill), tokenized, with the end token.
    fn learned_ids(&self, role: Role, output: &str) -> Result<Vec<u32>, RoleError> {
        let generated = output.strip_prefix(self.prefill(role)).unwrap_or(output);
        self.lm.response_ids(generated).map_err(RoleError::Failed)
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            max_new_tokens: self.params.max_new_tokens,
        }
    }

    /// The current LoRA adapters as safetensors bytes (`None` without adapters or with full fine-tuning).
    pub fn adapter_bytes(&self) -> Result<Option<Vec<u8>>, RoleError> {
        match &self.training {
            Some(t) => t.adapter_bytes().map_err(RoleError::Failed),
            None => Ok(None),
        }
    }

    /// The loaded chat model (tokenizer, template, base weights, the file they came from).
    pub fn chat_model(&self) -> &ChatModel {
        &self.lm
    }

    /// The player's weights as a plain model, adapters merged (a player that does not learn: its generating
    /// weights, the same for both choices).
    pub fn weights(&self, w: Weights) -> LlamaModel {
        match &self.training {
            Some(t) => t.model(w),
            None => self
                .generator
                .clone()
                .unwrap_or_else(|| self.lm.model.clone()),
        }
    }

    /// The player's trained LoRA adapters (`None`: it trains every weight, or does not learn).
    pub fn lora(&self, w: Weights) -> Option<LoraLlama> {
        self.training.as_ref().and_then(|t| t.lora(w))
    }

    /// The policy taken apart for serving (`sparring serve`): the chat model (tokenizer, template, base weights),
    /// the generating weights when they differ from the base (adapters merged, or trained), and the host copy of
    /// the generating weights (the CPU decode path), when there is one.
    pub fn into_parts(self) -> (ChatModel, Option<LlamaModel>, Option<Arc<HostLlama>>) {
        (self.lm, self.generator, self.host)
    }

    fn refresh_generator(&mut self) {
        if let Some(t) = &self.training {
            self.generator = Some(t.model(Weights::Generator));
        }
        // A failed host copy falls back to generating with the Burn module.
        if self.sync_host().is_err() {
            self.host = None;
        }
    }

    /// Rebuild the host copy of the generating weights (CPU backend only).
    fn sync_host(&mut self) -> Result<(), RoleError> {
        if self.params.backend != BackendKind::Flex {
            return Ok(());
        }
        // LoRA changes only the adapted projections; a full fine-tune may change every weight.
        let changed = match self.params.finetune_mode() {
            Finetune::Lora => Some(self.params.lora.clone().unwrap_or_default().projections()),
            Finetune::Full => None,
        };
        self.host = None;
        let fresh = self
            .lm
            .host_copy(self.generator.as_ref(), changed.as_deref())
            .map_err(|e| RoleError::failed(format!("host copy of the weights: {e}")))?;
        self.host = Some(fresh);
        Ok(())
    }

    fn learn_preference(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        let mut pgs = Vec::new();
        let mut tokens = 0u64;
        for g in groups {
            let lg = self.learn_group(g)?;
            tokens += lg.tokens();
            pgs.push(PreferenceGroup {
                prompt: lg.prompt,
                responses: lg.first.into_iter().map(|(r, _)| r).collect(),
                rewards: g.rewards.iter().map(|r| r.map(|x| x as f32)).collect(),
                later: lg.later,
            });
        }
        let Some(t) = self.training.as_mut() else {
            return Ok(LearnReport::default());
        };
        let rep = t
            .preference_step(&pgs)
            .map_err(|e| RoleError::failed(e.to_string()))?;
        Ok(learn_report(rep, tokens))
    }

    /// GRPO on the engine's groups as they are (one baseline set per group by default), each sample
    /// with the log-probs it was drawn with (`Group::logprobs`, from `generate`).
    fn learn_grpo(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        let mut batch = Vec::with_capacity(groups.len());
        let mut tokens = 0u64;
        for g in groups {
            let lg = self.learn_group(g)?;
            tokens += lg.tokens();
            let mut later = lg.later.into_iter();
            let mut samples = Vec::with_capacity(g.outputs.len());
            for ((o, r), (response, gen_logprobs)) in g.outputs.iter().zip(&g.rewards).zip(lg.first)
            {
                samples.push(GrpoSample {
                    response,
                    gen_logprobs,
                    reward: r.map(|x| x as f32),
                    error: g.role == Role::Attacker
                        && parse_attacker(o, self.params.require_think).is_err(),
                    later: later.next().unwrap_or_default(),
                });
            }
            batch.push(GrpoGroup {
                prompt: lg.prompt,
                seed: g.seed.id.to_string(),
                samples,
            });
        }
        let Some(t) = self.training.as_mut() else {
            return Ok(LearnReport::default());
        };
        let rep = t
            .grpo_step(&batch)
            .map_err(|e| RoleError::failed(e.to_string()))?;
        Ok(learn_report(rep, tokens))
    }

    /// True when this policy learns on-policy (GRPO): its samples then carry their log-probs.
    fn on_policy(&self) -> bool {
        self.training
            .as_ref()
            .is_some_and(|t| t.config().algorithm == Algorithm::Grpo)
    }
}

/// A learner step's report as the engine's.
fn learn_report(rep: Option<StepReport>, tokens: u64) -> LearnReport {
    match rep {
        Some(r) => {
            let mut metrics = r.metrics();
            if r.reward_accuracy.is_some() {
                metrics.insert("pairs".to_string(), r.examples as f64);
            }
            LearnReport {
                steps: 1,
                loss: Some(r.loss as f64),
                metrics,
                tokens,
            }
        }
        None => LearnReport::default(),
    }
}

impl Policy for ChatPolicy {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        // One batch per role among the requests (a self-play player's call may hold both): each has its own
        // prefill and stops.
        let roles = [Role::Attacker, Role::Defender];
        let mut rows: [Vec<(Vec<u32>, u64)>; 2] = Default::default();
        for r in reqs {
            let ids = self
                .lm
                .prefilled_ids(
                    &self.messages(r.role, &r.seed, &r.input, &r.history),
                    self.prefill(r.role),
                )
                .map_err(RoleError::Failed)?;
            let at = usize::from(r.role != Role::Attacker);
            for k in 0..r.n {
                rows[at].push((ids.clone(), row_seed(r.rng_seed, k)));
            }
        }
        let model = self.generator.as_ref().unwrap_or(&self.lm.model);
        let net = match &self.host {
            Some(h) => Net::Host(h),
            None => Net::Burn(model),
        };
        let mut sampled = Vec::with_capacity(2);
        for (role, rows) in roles.into_iter().zip(&rows) {
            let stops = player::stops(role, self.params.think);
            let samples = if rows.is_empty() {
                Vec::new()
            } else {
                self.lm
                    .generate_net(net, rows, self.sampling(), stops)
                    .map_err(RoleError::Failed)?
            };
            sampled.push(samples.into_iter());
        }
        let on_policy = self.on_policy();
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let role = r.role;
            let mut gens = Vec::with_capacity(r.n);
            for _ in 0..r.n {
                let Some(s) = sampled[usize::from(role != Role::Attacker)].next() else {
                    return Err(RoleError::failed("generation returned too few samples"));
                };
                let text = self.output_text(role, &s);
                let parsed = player::parsed(role, &text, self.params.require_think);
                // The learner trains on the text re-tokenized: the sampled log-probs of its tokens.
                let logprobs = if on_policy && !r.is_eval() {
                    let learned = self.learned_ids(role, &text)?;
                    aligned_logprobs(&s.tokens, &s.logprobs, &learned)
                } else {
                    Vec::new()
                };
                gens.push(Generation {
                    text,
                    parsed,
                    tokens: s.tokens.len() as u64,
                    logprobs,
                });
            }
            out.push(gens);
        }
        Ok(out)
    }

    fn learn(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        let Some(t) = &self.training else {
            return Ok(LearnReport::default());
        };
        let algorithm = t.config().algorithm;
        let rep = match algorithm {
            Algorithm::Grpo => self.learn_grpo(groups)?,
            _ => self.learn_preference(groups)?,
        };
        self.refresh_generator();
        Ok(rep)
    }

    fn version(&self) -> u64 {
        self.training.as_ref().map_or(0, |t| t.steps())
    }

    fn save(&self) -> Result<Vec<u8>, RoleError> {
        match &self.training {
            Some(t) => Ok(t
                .checkpoint()
                .map_err(|e| RoleError::failed(e.to_string()))?
                .to_bytes()),
            None => Ok(Vec::new()),
        }
    }

    fn load(&mut self, state: &[u8]) -> Result<(), RoleError> {
        if let Some(t) = self.training.as_mut() {
            let ck = Checkpoint::from_bytes(state, "chat-lm state")
                .map_err(|e| RoleError::failed(e.to_string()))?;
            t.restore(&ck)
                .map_err(|e| RoleError::failed(e.to_string()))?;
            self.refresh_generator();
        }
        Ok(())
    }
}
