//! Learners: off-policy DPO/IPO with an EMA copy (used to generate and as the reference) and
//! on-policy GRPO against the frozen initial weights, all over any [`CausalLm`].

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::batch::{CausalLm, to_vec_f32};
use super::checkpoint::{Checkpoint, TensorRecord};
use super::logprob::response_token_logprobs;
pub use super::loss::Baseline;
use super::loss::{dpo_loss, grpo_group_advantages, grpo_loss, ipo_loss, select_pair};
use super::optim::{AdamW, OptimConfig, flat_grads};
use super::params::{flat_params, load_module_records, module_records};
use super::{LmError, SplitMix64};

pub use super::params::ema_update;

/// Which recipe a learner runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Pairwise DPO, off-policy with an EMA generator/reference.
    #[default]
    Dpo,
    /// Pairwise IPO, off-policy with an EMA generator/reference.
    Ipo,
    /// Pointwise GRPO, on-policy, reference = frozen initial weights.
    Grpo,
}

fn d_beta() -> f64 {
    0.1
}
fn d_ema() -> f64 {
    0.95
}
fn d_clip() -> f64 {
    2.0
}

/// Learner settings (a scenario section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnerConfig {
    /// `dpo` (default), `ipo` or `grpo`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// DPO/IPO β; for GRPO the KL (k3) coefficient. Default 0.1.
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// EMA decay d in θ_ema ← d·θ_ema + (1−d)·θ (DPO/IPO). Default 0.95.
    #[serde(default = "d_ema")]
    pub ema_decay: f64,
    /// GRPO truncation c of the importance weight min(exp(lπ − lπ_gen), c). Default 2.
    #[serde(default = "d_clip")]
    pub is_clip: f64,
    /// GRPO: which samples share a reward baseline. Default `group`.
    #[serde(default)]
    pub baseline: Baseline,
    /// Padding token for batching. Default 0.
    #[serde(default)]
    pub pad_token: u32,
    /// Pairs (DPO/IPO) or samples (GRPO) per forward/backward pass (default: all of the step's in one). The
    /// step's gradient is the sum over the passes, so the step is the same up to float rounding, with the
    /// activations of only this many in memory at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub micro_batch: Option<usize>,
    /// Optimizer and schedule.
    #[serde(default)]
    pub optim: OptimConfig,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Dpo,
            beta: d_beta(),
            ema_decay: d_ema(),
            is_clip: d_clip(),
            baseline: Baseline::default(),
            pad_token: 0,
            micro_batch: None,
            optim: OptimConfig::default(),
        }
    }
}

impl LearnerConfig {
    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), LmError> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(LmError::Config("learner.beta: must be > 0".into()));
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return Err(LmError::Config(
                "learner.ema_decay: must be in [0, 1]".into(),
            ));
        }
        if self.micro_batch == Some(0) {
            return Err(LmError::Config(
                "learner.micro_batch: must be at least 1".into(),
            ));
        }
        if !(self.is_clip.is_finite() && self.is_clip > 0.0) {
            return Err(LmError::Config("learner.is_clip: must be > 0".into()));
        }
        self.optim.validate()
    }
}

/// What one forward pass of a preference step gives ([`Learner::preference_pass`]).
struct PreferencePass {
    loss: Tensor<1>,
    correct: usize,
    kl: f32,
    tokens: f64,
}

/// What one forward pass of a GRPO step gives: its loss (mean over its samples), the mean k3 KL over its tokens
/// with their count, and the truncated importance weights' sum, clipped count and count.
struct GrpoPass {
    loss: Tensor<1>,
    kl: f32,
    tokens: f64,
    w_sum: f64,
    clipped: usize,
    n: usize,
}

/// The forward/backward passes of one step: their gradients (in parameter order) summed, their losses (each
/// weighted by its pass's share of the step) added, and the mean k3 KL over all their tokens.
#[derive(Default)]
struct Passes {
    grads: Option<Vec<Option<Tensor<1>>>>,
    loss: f32,
    count: usize,
    kl_last: f32,
    kl_sum: f64,
    tokens: f64,
}

impl Passes {
    /// One pass over `share.0` of the step's `share.1` examples: its loss (the mean over them) is weighted by that
    /// share, back-propagated through `policy`, and its gradients added.
    fn add<M: Module>(
        &mut self,
        policy: &M,
        loss: Tensor<1>,
        share: (usize, usize),
        kl: f32,
        tokens: f64,
    ) -> Result<(), LmError> {
        let (n, total) = share;
        let loss = if n == total {
            loss
        } else {
            loss.mul_scalar(n as f64 / total as f64)
        };
        let g = loss.backward();
        self.loss += to_vec_f32(loss.detach())?
            .first()
            .copied()
            .unwrap_or(f32::NAN);
        let flat = flat_grads(policy, &g);
        self.grads = Some(match self.grads.take() {
            None => flat,
            Some(sum) => sum
                .into_iter()
                .zip(flat)
                .map(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                })
                .collect(),
        });
        self.count += 1;
        self.kl_last = kl;
        self.kl_sum += kl as f64 * tokens;
        self.tokens += tokens;
        Ok(())
    }

    /// The step's KL: a single pass's own, else the passes' token-weighted mean.
    fn kl(&self) -> f32 {
        if self.count == 1 {
            self.kl_last
        } else {
            (self.kl_sum / self.tokens.max(1.0)) as f32
        }
    }
}

/// A group of responses to one prompt with their rewards (`None` = missing verdict).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreferenceGroup {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Candidate responses.
    pub responses: Vec<Vec<u32>>,
    /// One reward per response.
    pub rewards: Vec<Option<f32>>,
    /// Multi-turn trajectories: per response, the player's later turns in the conversation the response
    /// opened (empty, or empty for all: single turn). A response's log-prob is its own plus its later turns'
    /// (trajectory-level DPO/IPO): the conversations of a group share only their first prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<Vec<Segment>>,
}

/// A later turn of a multi-turn trajectory: the context the player saw (the conversation so far) and the
/// tokens it produced, with the log-probs they were sampled with (GRPO; may be empty, see
/// [`GrpoSample::gen_logprobs`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gen_logprobs: Vec<f32>,
}

/// One trajectory of a preference pair: (context, tokens) per turn, the last one the response.
type Trajectory<'a> = Vec<(&'a [u32], &'a [u32])>;

/// The on-policy samples drawn for one prompt: GRPO's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoGroup {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// The seed the prompt came from: groups of one seed share a baseline under [`Baseline::Seed`].
    pub seed: String,
    /// The samples, in sample order.
    pub samples: Vec<GrpoSample>,
}

/// One on-policy sample for GRPO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoSample {
    /// Generated response tokens.
    pub response: Vec<u32>,
    /// Per-token log-probs of the response under the distribution it was sampled from (temperature,
    /// top-p, the generating weights: the sampler's `logprobs`). It may cover only a prefix of the
    /// response (e.g. none of an end token appended after a stop string, or nothing when unknown):
    /// tokens past it get importance weight 1.
    pub gen_logprobs: Vec<f32>,
    /// Reward; `None` = missing (excluded from the baseline and the loss).
    pub reward: Option<f32>,
    /// An error sample (e.g. unparseable output): its reward (the error reward) shifts the
    /// baseline, but it gets no loss.
    pub error: bool,
    /// A multi-turn trajectory's later turns: each is a sequence of the loss with the sample's advantage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<Segment>,
}

/// What one learner step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Optimizer steps taken so far (after this one).
    pub step: u64,
    /// Loss before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Pairs (DPO/IPO) or loss-carrying samples (GRPO) used.
    pub examples: usize,
    /// DPO/IPO: fraction of pairs whose implicit reward margin is > 0.
    pub reward_accuracy: Option<f32>,
    /// Mean per-token k3 estimate of the KL between policy and reference, on the tokens trained on:
    /// GRPO (sampled from the policy) KL(π‖ref); DPO/IPO (sampled from the EMA generator, which is
    /// the reference) KL(ref‖π).
    pub mean_kl: Option<f32>,
    /// GRPO: mean truncated importance weight over the loss tokens.
    pub is_weight: Option<f32>,
    /// GRPO: fraction of the loss tokens whose importance weight the cap `is_clip` bound.
    pub is_clipped: Option<f32>,
}

impl StepReport {
    /// The step's numbers by name, as a role reports them (`learn/<role>/<name>`): `grad_norm`, `lr`,
    /// and where present `reward_accuracy`, `kl`, `is_weight`, `is_clipped`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("grad_norm".to_string(), self.grad_norm as f64);
        m.insert("lr".to_string(), self.lr);
        let optional = [
            ("reward_accuracy", self.reward_accuracy),
            ("kl", self.mean_kl),
            ("is_weight", self.is_weight),
            ("is_clipped", self.is_clipped),
        ];
        for (name, v) in optional {
            if let Some(v) = v {
                m.insert(name.to_string(), v as f64);
            }
        }
        m
    }
}

/// A trainable policy with its optimizer, EMA copy or frozen reference, and RNG.
#[derive(Debug)]
pub struct Learner<M: CausalLm> {
    cfg: LearnerConfig,
    policy: M,
    ema: Option<M>,
    reference: Option<M>,
    optim: AdamW,
    /// A seeded RNG owned with the policy (e.g. to seed sampling requests); checkpointed.
    pub rng: SplitMix64,
}

/// The module with every float parameter on the autodiff device, requiring gradients.
fn trainable<M: Module>(m: M) -> M {
    struct F;
    impl burn::module::ModuleMapper for F {
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let (id, t, mapper) = p.consume();
            burn::module::Param::from_mapped_value(id, t.inner().autodiff().require_grad(), mapper)
        }
    }
    m.map(&mut F)
}

fn host_tensor<const D: usize>(v: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, dims), device)
}

/// Mean over the masked tokens of the k3 estimator `e^d − d − 1` of a KL, where `d` is the log
/// ratio of the other distribution to the sampling one (`[B, T]`, masked tokens only).
fn mean_k3(d: Tensor<2>, mask: Tensor<2>) -> Result<f32, LmError> {
    // k3 ≥ 0; clamped so that rounding at d ≈ 0 does not log a negative KL.
    let k3 = (d.clone().exp() - d).sub_scalar(1.0).clamp_min(0.0) * mask.clone();
    let v = to_vec_f32(k3.sum() / mask.sum().clamp_min(1.0))?;
    Ok(v.first().copied().unwrap_or(0.0))
}

impl<M: CausalLm> Learner<M> {
    /// Wraps `model` (any device, autodiff or not) for training with `cfg`.
    pub fn new(model: M, cfg: LearnerConfig, seed: u64) -> Result<Self, LmError> {
        cfg.validate()?;
        let plain = model.valid();
        let (ema, reference) = match cfg.algorithm {
            Algorithm::Dpo | Algorithm::Ipo => (Some(plain), None),
            Algorithm::Grpo => (None, Some(plain)),
        };
        let optim = AdamW::new(cfg.optim.clone())?;
        Ok(Self {
            cfg,
            policy: trainable(model),
            ema,
            reference,
            optim,
            rng: SplitMix64::new(seed),
        })
    }

    /// The settings.
    pub fn config(&self) -> &LearnerConfig {
        &self.cfg
    }

    /// The trained policy (autodiff).
    pub fn policy(&self) -> &M {
        &self.policy
    }

    /// The EMA copy (DPO/IPO only).
    pub fn ema(&self) -> Option<&M> {
        self.ema.as_ref()
    }

    /// The model to sample from: the EMA copy for DPO/IPO, the current policy for GRPO
    /// (plain, no autodiff).
    pub fn generator(&self) -> M {
        match &self.ema {
            Some(e) => e.clone(),
            None => self.policy.valid(),
        }
    }

    /// The reference for the KL/implicit reward: EMA (DPO/IPO) or frozen initial (GRPO).
    pub fn reference(&self) -> &M {
        match (&self.ema, &self.reference) {
            (Some(e), _) => e,
            (None, Some(r)) => r,
            (None, None) => &self.policy,
        }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.optim.step
    }

    /// One DPO or IPO step on the pairs selected from `groups` (argmax vs argmin reward; ties
    /// and missing rewards skipped), then the EMA update. `Ok(None)` when no pair was usable.
    pub fn preference_step(
        &mut self,
        groups: &[PreferenceGroup],
    ) -> Result<Option<StepReport>, LmError> {
        if self.cfg.algorithm == Algorithm::Grpo {
            return Err(LmError::Config(
                "learner.algorithm: grpo learners take grpo_step, not preference_step".into(),
            ));
        }
        let mut chosen: Vec<Trajectory> = Vec::new();
        let mut rejected: Vec<Trajectory> = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            if g.responses.len() != g.rewards.len() {
                return Err(LmError::Input(format!(
                    "group {gi}: {} responses but {} rewards",
                    g.responses.len(),
                    g.rewards.len()
                )));
            }
            if !g.later.is_empty() && g.later.len() != g.responses.len() {
                return Err(LmError::Input(format!(
                    "group {gi}: {} responses but {} trajectories",
                    g.responses.len(),
                    g.later.len()
                )));
            }
            let trajectory = |i: usize| -> Trajectory {
                let mut t: Trajectory = vec![(&g.prompt, &g.responses[i])];
                if let Some(later) = g.later.get(i) {
                    t.extend(
                        later
                            .iter()
                            .map(|s| (s.prompt.as_slice(), s.response.as_slice())),
                    );
                }
                t
            };
            if let Some((w, l)) = select_pair(&g.rewards) {
                chosen.push(trajectory(w));
                rejected.push(trajectory(l));
            }
        }
        let p = chosen.len();
        if p == 0 {
            return Ok(None);
        }
        // Pairs per forward/backward pass; the step's gradient is the sum over the passes (each pass's loss
        // weighted by its share of the pairs), so the step is the same up to float rounding.
        let chunk = self.cfg.micro_batch.unwrap_or(p).clamp(1, p);
        let reference = self.reference().clone();
        let (mut passes, mut correct) = (Passes::default(), 0usize);
        for start in (0..p).step_by(chunk) {
            let n = chunk.min(p - start);
            let pass = self.preference_pass(
                &reference,
                &chosen[start..start + n],
                &rejected[start..start + n],
            )?;
            correct += pass.correct;
            passes.add(&self.policy, pass.loss, (n, p), pass.kl, pass.tokens)?;
        }
        let kl = passes.kl();
        let acc = correct as f32 / p as f32;
        let report = self.step_with(passes.grads, passes.loss, p)?;
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema_update(ema, &self.policy, self.cfg.ema_decay));
        }
        Ok(Some(StepReport {
            reward_accuracy: Some(acc),
            mean_kl: Some(kl),
            ..report
        }))
    }

    /// One GRPO step on the round's groups. Advantages are reward − the mean of the present rewards
    /// of the sample's baseline set ([`Baseline`]: its group by default); error samples, missing
    /// rewards and empty responses get no loss. Each token's truncated importance weight compares
    /// the policy with the distribution the token was sampled from (`gen_logprobs`). `Ok(None)`
    /// when no sample carries a loss.
    pub fn grpo_step(&mut self, groups: &[GrpoGroup]) -> Result<Option<StepReport>, LmError> {
        if self.cfg.algorithm != Algorithm::Grpo {
            return Err(LmError::Config(
                "learner.algorithm: dpo/ipo learners take preference_step, not grpo_step".into(),
            ));
        }
        let mut used: Vec<(usize, usize)> = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for (si, s) in g.samples.iter().enumerate() {
                if s.gen_logprobs.len() > s.response.len() {
                    return Err(LmError::Input(format!(
                        "group {gi} sample {si}: {} gen_logprobs for {} response tokens",
                        s.gen_logprobs.len(),
                        s.response.len()
                    )));
                }
                if s.reward.is_some() && !s.error && !s.response.is_empty() {
                    used.push((gi, si));
                }
            }
        }
        if used.is_empty() {
            return Ok(None);
        }
        let keyed: Vec<(&str, Vec<Option<f32>>)> = groups
            .iter()
            .map(|g| {
                (
                    g.seed.as_str(),
                    g.samples.iter().map(|s| s.reward).collect(),
                )
            })
            .collect();
        let adv_all = grpo_group_advantages(&keyed, self.cfg.baseline);
        let total = used.len();
        let chunk = self.cfg.micro_batch.unwrap_or(total).clamp(1, total);
        let reference = self.reference().clone();
        let mut passes = Passes::default();
        let (mut w_sum, mut clipped, mut n) = (0.0f64, 0usize, 0usize);
        for part in used.chunks(chunk) {
            let pass = self.grpo_pass(&reference, groups, part, &adv_all)?;
            w_sum += pass.w_sum;
            clipped += pass.clipped;
            n += pass.n;
            passes.add(
                &self.policy,
                pass.loss,
                (part.len(), total),
                pass.kl,
                pass.tokens,
            )?;
        }
        let kl = passes.kl();
        let report = self.step_with(passes.grads, passes.loss, total)?;
        Ok(Some(StepReport {
            mean_kl: Some(kl),
            is_weight: Some((w_sum / n.max(1) as f64) as f32),
            is_clipped: Some(clipped as f32 / n.max(1) as f32),
            ..report
        }))
    }

    /// One forward pass of a GRPO step over some of its samples (`used`: group and sample indices).
    fn grpo_pass(
        &self,
        reference: &M,
        groups: &[GrpoGroup],
        used: &[(usize, usize)],
        adv_all: &[Vec<f32>],
    ) -> Result<GrpoPass, LmError> {
        let sample = |&(gi, si): &(usize, usize)| &groups[gi].samples[si];
        // One row per turn of each sample (its response, then its later turns), with the sample's advantage.
        let mut rows: Vec<(&[u32], &[u32], &[f32], f32)> = Vec::new();
        for u in used {
            let s = sample(u);
            let adv = adv_all[u.0][u.1];
            rows.push((&groups[u.0].prompt, &s.response, &s.gen_logprobs, adv));
            for e in &s.later {
                rows.push((&e.prompt, &e.response, &e.gen_logprobs, adv));
            }
        }
        let pairs: Vec<(&[u32], &[u32])> = rows.iter().map(|r| (r.0, r.1)).collect();
        let pad = self.cfg.pad_token;
        let device = self.policy.device();
        let (ref_lp, _) = response_token_logprobs(reference, &pairs, pad)?;
        let [b, t] = ref_lp.dims();
        let ref_lp = host_tensor(to_vec_f32(ref_lp)?, [b, t], &device);
        let (logp, mask) = response_token_logprobs(&self.policy, &pairs, pad)?;
        let tokens = to_vec_f32(mask.clone().sum())?
            .first()
            .copied()
            .unwrap_or(0.0) as f64;
        // The behaviour log-probs: the sampler's where known, else the policy's own (weight 1).
        let lp_host = to_vec_f32(logp.clone().detach())?;
        let mut gen_lp = lp_host.clone();
        let (c, mut w_sum, mut clipped, mut n) = (self.cfg.is_clip, 0.0f64, 0usize, 0usize);
        for (row, &(_, response, gen_logprobs, _)) in rows.iter().enumerate() {
            let start = row * t + t - response.len();
            let known = gen_logprobs.len().min(response.len());
            gen_lp[start..start + known].copy_from_slice(&gen_logprobs[..known]);
            for k in start..start + response.len() {
                let w = ((lp_host[k] - gen_lp[k]) as f64).exp();
                clipped += usize::from(w > c);
                w_sum += w.min(c);
                n += 1;
            }
        }
        let gen_lp = host_tensor(gen_lp, [b, t], &device);
        let adv: Vec<f32> = rows.iter().map(|r| r.3).collect();
        let adv = host_tensor(adv, [b], &device);
        let kl = mean_k3(ref_lp.clone() - logp.clone().detach(), mask.clone())?;
        let loss = grpo_loss(logp, gen_lp, ref_lp, mask, adv, self.cfg.beta, c);
        Ok(GrpoPass {
            loss,
            kl,
            tokens,
            w_sum,
            clipped,
            n,
        })
    }

    /// One supervised step (warm start): minimises the mean per-token negative log-likelihood
    /// of each response given its prompt. Works for every algorithm; the EMA is updated as
    /// after a preference step. Call [`Learner::reset_reference`] after a warm-start phase.
    pub fn sft_step<P: AsRef<[u32]>, R: AsRef<[u32]>>(
        &mut self,
        pairs: &[(P, R)],
    ) -> Result<Option<StepReport>, LmError> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let (logp, mask) = response_token_logprobs(&self.policy, pairs, self.cfg.pad_token)?;
        let loss = logp.sum().neg() / mask.sum().clamp_min(1.0);
        let report = self.apply(loss, pairs.len())?;
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema_update(ema, &self.policy, self.cfg.ema_decay));
        }
        Ok(Some(report))
    }

    /// Makes the current policy the new starting point: the EMA copy (DPO/IPO) or the frozen
    /// reference (GRPO) becomes a copy of the policy, and the optimizer restarts (moments and
    /// schedule). Use after a warm-start phase.
    pub fn reset_reference(&mut self) -> Result<(), LmError> {
        let plain = self.policy.valid();
        match self.cfg.algorithm {
            Algorithm::Dpo | Algorithm::Ipo => self.ema = Some(plain),
            Algorithm::Grpo => self.reference = Some(plain),
        }
        self.optim = AdamW::new(self.cfg.optim.clone())?;
        Ok(())
    }

    /// One forward pass of a DPO/IPO step over some pairs: their loss (mean over them), how many the policy
    /// already ranks right, and the mean k3 KL(ref‖π) over their response tokens with the token count.
    fn preference_pass(
        &self,
        reference: &M,
        chosen: &[Trajectory],
        rejected: &[Trajectory],
    ) -> Result<PreferencePass, LmError> {
        let p = chosen.len();
        // Every turn of every trajectory is a row; `owner[row]` is its trajectory (chosen first).
        let mut all: Vec<(&[u32], &[u32])> = Vec::new();
        let mut owner = Vec::new();
        for (i, trajectory) in chosen.iter().chain(rejected).enumerate() {
            all.extend(trajectory.iter().copied());
            owner.extend(std::iter::repeat_n(i, trajectory.len()));
        }
        // Single-turn pairs: one row per trajectory, summed as they are.
        let turns = (owner.len() > 2 * p).then(|| {
            let mut assign = vec![0.0f32; 2 * p * owner.len()];
            for (row, &i) in owner.iter().enumerate() {
                assign[i * owner.len() + row] = 1.0;
            }
            assign
        });
        let pad = self.cfg.pad_token;
        let device = self.policy.device();
        let (ref_tok, _) = response_token_logprobs(reference, &all, pad)?;
        let [b, t] = ref_tok.dims();
        let mut ref_lp = to_vec_f32(ref_tok.clone().sum_dim(1).reshape([b]))?;
        if turns.is_some() {
            let mut summed = vec![0.0f32; 2 * p];
            for (row, &i) in owner.iter().enumerate() {
                summed[i] += ref_lp[row];
            }
            ref_lp = summed;
        }
        let ref_tok = host_tensor(to_vec_f32(ref_tok)?, [b, t], &device);
        let ref_w = host_tensor(ref_lp[..p].to_vec(), [p], &device);
        let ref_l = host_tensor(ref_lp[p..].to_vec(), [p], &device);
        let (lp_tok, mask) = response_token_logprobs(&self.policy, &all, pad)?;
        let tokens = to_vec_f32(mask.clone().sum())?
            .first()
            .copied()
            .unwrap_or(0.0) as f64;
        // KL(ref‖π) on the generator's samples (the generator is the reference): k3 with r = π/ref.
        let kl = mean_k3(lp_tok.clone().detach() - ref_tok, mask)?;
        let mut lp = lp_tok.sum_dim(1).reshape([b]);
        if let Some(assign) = turns {
            let assign = host_tensor(assign, [2 * p, b], &device);
            lp = assign.matmul(lp.reshape([b, 1])).reshape([2 * p]);
        }
        let pi_w = lp.clone().narrow(0, 0, p);
        let pi_l = lp.clone().narrow(0, p, p);
        let margins = to_vec_f32(lp.detach())?;
        let correct = (0..p)
            .filter(|i| (margins[*i] - ref_lp[*i]) - (margins[p + i] - ref_lp[p + i]) > 0.0)
            .count();
        let loss = match self.cfg.algorithm {
            Algorithm::Ipo => ipo_loss(pi_w, pi_l, ref_w, ref_l, self.cfg.beta),
            _ => dpo_loss(pi_w, pi_l, ref_w, ref_l, self.cfg.beta),
        };
        Ok(PreferencePass {
            loss,
            correct,
            kl,
            tokens,
        })
    }

    /// The optimizer step with a loss's gradients (summed over its passes; in parameter order).
    fn step_with(
        &mut self,
        grads: Option<Vec<Option<Tensor<1>>>>,
        loss: f32,
        examples: usize,
    ) -> Result<StepReport, LmError> {
        let policy = self.policy.clone();
        let (policy, stats) = self.optim.step_flat(policy, grads.unwrap_or_default())?;
        self.policy = policy;
        Ok(StepReport {
            step: self.optim.step,
            loss,
            grad_norm: stats.grad_norm,
            lr: stats.lr,
            examples,
            reward_accuracy: None,
            mean_kl: None,
            is_weight: None,
            is_clipped: None,
        })
    }

    fn apply(&mut self, loss: Tensor<1>, examples: usize) -> Result<StepReport, LmError> {
        let grads = loss.backward();
        let loss_v = to_vec_f32(loss.detach())?
            .first()
            .copied()
            .unwrap_or(f32::NAN);
        let flat = flat_grads(&self.policy, &grads);
        self.step_with(Some(flat), loss_v, examples)
    }

    /// Everything needed to resume bit-identically: policy, EMA/reference, optimizer moments
    /// and step, RNG state.
    pub fn checkpoint(&self) -> Result<Checkpoint, LmError> {
        let mut ck = Checkpoint::default();
        for (n, r) in module_records(&self.policy)? {
            ck.put_tensor(format!("policy/{n}"), r);
        }
        if let Some(e) = &self.ema {
            for (n, r) in module_records(e)? {
                ck.put_tensor(format!("ema/{n}"), r);
            }
        }
        if let Some(e) = &self.reference {
            for (n, r) in module_records(e)? {
                ck.put_tensor(format!("ref/{n}"), r);
            }
        }
        for (i, (m, v)) in self.optim.m.iter().zip(&self.optim.v).enumerate() {
            let n = m.dims()[0];
            ck.put_tensor(
                format!("optim/m/{i}"),
                TensorRecord::new(vec![n], to_vec_f32(m.clone())?),
            );
            ck.put_tensor(
                format!("optim/v/{i}"),
                TensorRecord::new(vec![n], to_vec_f32(v.clone())?),
            );
        }
        ck.put_scalar("optim/step", self.optim.step);
        ck.put_scalar("optim/moments", self.optim.m.len() as u64);
        ck.put_scalar("learner/rng", self.rng.state());
        Ok(ck)
    }

    /// Restores a [`Learner::checkpoint`] of a learner with the same model. With the same algorithm the
    /// restore is exact (weights, optimizer, RNG). A checkpoint of another algorithm (e.g. a GRPO player
    /// loaded as a frozen opponent by a DPO scenario) keeps its generator — the weights that played:
    /// the EMA copy of an off-policy learner, else the policy — as this learner's policy, EMA and
    /// reference where the checkpoint lacks them, and starts a fresh optimizer.
    pub fn restore(&mut self, ck: &Checkpoint) -> Result<(), LmError> {
        let has = |prefix: &str| ck.tensors.keys().any(|k| k.starts_with(prefix));
        let (has_ema, has_ref) = (has("ema/"), has("ref/"));
        let same = has_ema == self.ema.is_some() && has_ref == self.reference.is_some();
        let generator = if has_ema { "ema" } else { "policy" };
        let get = |prefix: &'static str| {
            move |name: &str| ck.tensors.get(&format!("{prefix}/{name}")).cloned()
        };
        let policy_src = if same || self.ema.is_some() {
            "policy"
        } else {
            generator
        };
        self.policy = load_module_records(self.policy.clone(), &get(policy_src), policy_src)?;
        if let Some(e) = self.ema.take() {
            let src = if has_ema { "ema" } else { "policy" };
            self.ema = Some(load_module_records(e, &get(src), src)?);
        }
        if let Some(r) = self.reference.take() {
            let src = if has_ref { "ref" } else { generator };
            self.reference = Some(load_module_records(r, &get(src), src)?);
        }
        if !same {
            self.optim.m.clear();
            self.optim.v.clear();
            self.optim.step = 0;
            return Ok(());
        }
        let n = ck.scalar("optim/moments")? as usize;
        let device = self.policy.device().inner();
        let params = flat_params(&self.policy);
        if n != 0 && n != params.len() {
            return Err(LmError::Checkpoint {
                origin: "<checkpoint>".into(),
                msg: format!("{n} optimizer moments for {} parameters", params.len()),
            });
        }
        let mut m = Vec::with_capacity(n);
        let mut v = Vec::with_capacity(n);
        for (i, param) in params.iter().enumerate().take(n) {
            for (key, out) in [("m", &mut m), ("v", &mut v)] {
                let name = format!("optim/{key}/{i}");
                let rec = ck.tensors.get(&name).ok_or_else(|| LmError::Checkpoint {
                    origin: "<checkpoint>".into(),
                    msg: format!("missing tensor `{name}`"),
                })?;
                if rec.data.len() != param.dims()[0] {
                    return Err(LmError::Checkpoint {
                        origin: "<checkpoint>".into(),
                        msg: format!("tensor `{name}` has the wrong size"),
                    });
                }
                out.push(host_tensor(rec.data.clone(), [rec.data.len()], &device));
            }
        }
        self.optim.m = m;
        self.optim.v = v;
        self.optim.step = ck.scalar("optim/step")?;
        self.rng = SplitMix64::from_state(ck.scalar("learner/rng")?);
        Ok(())
    }
}
