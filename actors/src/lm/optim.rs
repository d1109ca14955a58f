//! AdamW with a cosine learning-rate schedule (optional linear warmup, decay to a floor) and
//! gradient clipping by global norm. Its state is plain tensors in parameter order, so
//! checkpoints store and restore it exactly. This module owns the update rule (bias-corrected
//! moments, weight decay decoupled from the gradient and applied to rank ≥ 2 parameters only),
//! the schedule [`lr_at`], the clipping and the reported pre-clip gradient norm; the learner
//! owns when to step and how the state is checkpointed. Tests: `actors/tests/lm_optim.rs`.
//!
//! Why not `burn::optim` (0.22): its `GradientClipping::Norm` clips each parameter's gradient
//! by that parameter's own norm (the `ModuleOptimizer` clips per parameter), not by the global
//! norm over all parameters that the training recipes use, and it reports no gradient norm; its
//! `CosineAnnealingLrScheduler` keeps following the cosine past `num_iters` (the lr climbs back
//! up) instead of holding a floor, and has no warmup of its own; its `AdamW` decays every
//! parameter unless each is put in a group by hand; and its state is an `OptimizerRecord` keyed
//! by `ParamId`, while our checkpoints keep the moments as named flat tensors in parameter
//! order (`optim/m/{i}`, `optim/v/{i}`) that restore into a freshly built model. The update
//! itself is the same as burn's (and PyTorch's) AdamW.

use burn::module::Module;
use burn::tensor::{Gradients, Tensor};
use serde::{Deserialize, Serialize};

use super::LmError;
use super::batch::to_vec_f32;
use super::params::{flat_params, map_flat};

fn d_lr() -> f64 {
    1e-3
}
fn d_min_lr() -> f64 {
    1e-4
}
fn d_total() -> u64 {
    1000
}
fn d_b1() -> f64 {
    0.9
}
fn d_b2() -> f64 {
    0.95
}
fn d_eps() -> f64 {
    1e-8
}
fn d_wd() -> f64 {
    0.01
}
fn d_clip() -> Option<f64> {
    Some(1.0)
}

/// Optimizer + schedule settings (a scenario section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate (default 1e-3).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Floor the cosine decays to (default 1e-4).
    #[serde(default = "d_min_lr")]
    pub min_lr: f64,
    /// Linear warmup steps from 0 to `lr` (default 0).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Step at which the cosine reaches `min_lr` and stays (default 1000).
    #[serde(default = "d_total")]
    pub total_steps: u64,
    /// Adam β1 (default 0.9).
    #[serde(default = "d_b1")]
    pub beta1: f64,
    /// Adam β2 (default 0.95).
    #[serde(default = "d_b2")]
    pub beta2: f64,
    /// Adam ε (default 1e-8).
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Decoupled weight decay, applied to parameters of rank ≥ 2 only (default 0.01).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (default 1.0; `None` = off).
    #[serde(default = "d_clip")]
    pub grad_clip: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: d_lr(),
            min_lr: d_min_lr(),
            warmup_steps: 0,
            total_steps: d_total(),
            beta1: d_b1(),
            beta2: d_b2(),
            eps: d_eps(),
            weight_decay: d_wd(),
            grad_clip: d_clip(),
        }
    }
}

impl OptimConfig {
    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), LmError> {
        let bad = |k: &str, why: &str| Err(LmError::Config(format!("optim.{k}: {why}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be > 0");
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("min_lr", "must be in [0, lr]");
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return bad("beta1", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad("beta2", "must be in [0, 1)");
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", "must be > 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be >= 0");
        }
        if let Some(c) = self.grad_clip
            && !(c.is_finite() && c > 0.0)
        {
            return bad("grad_clip", "must be > 0");
        }
        Ok(())
    }
}

/// Learning rate for 0-based `step`: linear warmup over `warmup_steps` (step `i` gets
/// `lr·(i+1)/warmup`), then cosine from `lr` to `min_lr` at `total_steps`, then `min_lr`.
pub fn lr_at(cfg: &OptimConfig, step: u64) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.total_steps.saturating_sub(cfg.warmup_steps);
    if span == 0 || step >= cfg.total_steps {
        return cfg.min_lr;
    }
    let progress = (step - cfg.warmup_steps) as f64 / span as f64;
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// AdamW state: step count and first/second moments per parameter (visit order).
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Settings.
    pub cfg: OptimConfig,
    /// Steps taken so far.
    pub step: u64,
    /// First moments, flattened, one per parameter (empty before the first step).
    pub m: Vec<Tensor<1>>,
    /// Second moments.
    pub v: Vec<Tensor<1>>,
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f64,
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(cfg: OptimConfig) -> Result<Self, LmError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
        })
    }

    /// One AdamW step on `model` (on an autodiff device) with the gradients of a loss.
    /// Parameters without a gradient are left unchanged.
    pub fn step<M: Module>(
        &mut self,
        model: M,
        grads: &Gradients,
    ) -> Result<(M, OptimStats), LmError> {
        let flat = flat_grads(&model, grads);
        self.step_flat(model, flat)
    }

    /// One AdamW step with the gradients given in parameter order ([`flat_grads`], possibly summed over
    /// micro-batches); `None`: the parameter has none and is left unchanged.
    pub fn step_flat<M: Module>(
        &mut self,
        model: M,
        grads_flat: Vec<Option<Tensor<1>>>,
    ) -> Result<(M, OptimStats), LmError> {
        if self.m.is_empty() {
            let params = flat_params(&model);
            self.m = params.iter().map(|p| p.zeros_like()).collect();
            self.v = params.iter().map(|p| p.zeros_like()).collect();
        }
        if self.m.len() != grads_flat.len() {
            return Err(LmError::Input(format!(
                "optimizer state has {} tensors, the model {}",
                self.m.len(),
                grads_flat.len()
            )));
        }
        let mut sq: Option<Tensor<1>> = None;
        for g in grads_flat.iter().flatten() {
            let s = g.clone().square().sum();
            sq = Some(match sq {
                Some(acc) => acc + s,
                None => s,
            });
        }
        let grad_norm = match sq {
            Some(s) => to_vec_f32(s)?.first().copied().unwrap_or(0.0).sqrt(),
            None => 0.0,
        };
        let scale = match self.cfg.grad_clip {
            Some(c) if grad_norm.is_finite() && grad_norm as f64 > c => {
                c / (grad_norm as f64 + 1e-6)
            }
            _ => 1.0,
        };
        let lr = lr_at(&self.cfg, self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let (eps, wd) = (self.cfg.eps, self.cfg.weight_decay);
        let ranks = param_ranks(&model);
        let (ms, vs) = (&mut self.m, &mut self.v);
        let model = map_flat(model, &mut |i, p| {
            let Some(Some(g)) = grads_flat.get(i) else {
                return p;
            };
            let g = if scale != 1.0 {
                g.clone().mul_scalar(scale)
            } else {
                g.clone()
            };
            let m = ms[i].clone().mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1);
            let v = vs[i].clone().mul_scalar(b2) + g.square().mul_scalar(1.0 - b2);
            ms[i] = m.clone();
            vs[i] = v.clone();
            let update = m.div_scalar(bc1) / v.div_scalar(bc2).sqrt().add_scalar(eps);
            let decay = if ranks.get(i).copied().unwrap_or(1) >= 2 {
                1.0 - lr * wd
            } else {
                1.0
            };
            p.mul_scalar(decay) - update.mul_scalar(lr)
        });
        Ok((model, OptimStats { grad_norm, lr }))
    }
}

/// The gradients of `model`'s parameters in a loss's `grads`, flattened, in parameter order (`None`: no gradient).
pub fn flat_grads<M: Module>(model: &M, grads: &Gradients) -> Vec<Option<Tensor<1>>> {
    use burn::module::{ModuleVisitor, Param};
    struct V<'a>(&'a Gradients, Vec<Option<Tensor<1>>>);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = p.val().grad(self.0).map(|g| {
                let n = g.shape().num_elements();
                g.reshape([n])
            });
            self.1.push(g);
        }
    }
    let mut v = V(grads, Vec::new());
    model.visit(&mut v);
    v.1
}

fn param_ranks<M: Module>(m: &M) -> Vec<usize> {
    use burn::module::{ModuleVisitor, Param};
    struct V(Vec<usize>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.0.push(D);
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_with_warmup() {
        let cfg = OptimConfig {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 2,
            total_steps: 12,
            ..Default::default()
        };
        assert!((lr_at(&cfg, 0) - 0.5).abs() < 1e-12);
        assert!((lr_at(&cfg, 1) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 2) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 7) - 0.55).abs() < 1e-12);
        assert!((lr_at(&cfg, 12) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 100) - 0.1).abs() < 1e-12);
        assert!(
            OptimConfig {
                lr: -1.0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
