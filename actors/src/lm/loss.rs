//! The learners' losses, exactly as the official recipes: DPO, IPO, GRPO (with truncated
//! importance weights and the k3 KL estimator), pair selection and GRPO advantages.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

/// Which samples share a GRPO baseline (the mean reward subtracted to make an advantage).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The samples drawn for one prompt — the attacker's A rewrites of a seed, the defender's D
    /// responses to one rewrite: GRPO's group.
    #[default]
    Group,
    /// Every sample of one seed (for the defender: all its responses to all the seed's rewrites). The
    /// official AdvGame code's `reward_normalization_mode = "per_seed"` is this when each
    /// data-parallel rank holds one seed (it takes one baseline per rank's share of the batch).
    Seed,
    /// The whole learner batch (the round): the official `across_seeds`, which its paper configs use.
    Batch,
}

/// Picks the (chosen, rejected) pair of a group: argmax vs argmin reward over present rewards.
/// `None` when fewer than two rewards are present or the max equals the min (tie).
/// Among equal rewards the first index wins.
pub fn select_pair(rewards: &[Option<f32>]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, f32)> = None;
    let mut worst: Option<(usize, f32)> = None;
    for (i, r) in rewards.iter().enumerate() {
        let Some(r) = *r else { continue };
        if !r.is_finite() {
            continue;
        }
        if best.is_none_or(|(_, b)| r > b) {
            best = Some((i, r));
        }
        if worst.is_none_or(|(_, w)| r < w) {
            worst = Some((i, r));
        }
    }
    match (best, worst) {
        (Some((bi, b)), Some((wi, w))) if b > w => Some((bi, wi)),
        _ => None,
    }
}

/// DPO: mean over pairs of `−log σ(β[(lπ_w − lref_w) − (lπ_l − lref_l)])`. Inputs `[P]`.
pub fn dpo_loss(
    pi_w: Tensor<1>,
    pi_l: Tensor<1>,
    ref_w: Tensor<1>,
    ref_l: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    let margin = (pi_w - ref_w) - (pi_l - ref_l);
    log_sigmoid(margin.mul_scalar(beta)).neg().mean()
}

/// IPO: mean over pairs of `((Δ_w − Δ_l) − 1/(2β))²` with `Δ = lπ − lref`. Inputs `[P]`.
pub fn ipo_loss(
    pi_w: Tensor<1>,
    pi_l: Tensor<1>,
    ref_w: Tensor<1>,
    ref_l: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    let margin = (pi_w - ref_w) - (pi_l - ref_l);
    margin.sub_scalar(1.0 / (2.0 * beta)).square().mean()
}

/// GRPO advantages of one baseline set (a group, a seed's samples or the whole batch: see
/// [`Baseline`](super::learner::Baseline)): `reward − mean(valid rewards)` (no std division, as the
/// official code). `rewards[i] = None` is a missing reward (excluded from the mean, advantage 0).
/// Error samples carry their (error) reward and so shift the mean; the caller masks them out of the
/// loss.
pub fn grpo_advantages(rewards: &[Option<f32>]) -> Vec<f32> {
    let valid: Vec<f32> = rewards.iter().flatten().copied().collect();
    if valid.is_empty() {
        return vec![0.0; rewards.len()];
    }
    let mean = valid.iter().map(|r| *r as f64).sum::<f64>() / valid.len() as f64;
    rewards
        .iter()
        .map(|r| r.map_or(0.0, |r| (r as f64 - mean) as f32))
        .collect()
}

/// GRPO advantages of a batch of groups, each given as (its seed's id, its samples' rewards): every
/// sample's reward minus the mean of the present rewards of its baseline set — its group, its seed's
/// groups, or the whole batch ([`Baseline`]). One `Vec` per group, in order.
pub fn grpo_group_advantages(
    groups: &[(&str, Vec<Option<f32>>)],
    baseline: Baseline,
) -> Vec<Vec<f32>> {
    let sets: Vec<Vec<usize>> = match baseline {
        Baseline::Group => (0..groups.len()).map(|g| vec![g]).collect(),
        Baseline::Batch => vec![(0..groups.len()).collect()],
        Baseline::Seed => {
            let mut by_seed: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (gi, (seed, _)) in groups.iter().enumerate() {
                by_seed.entry(seed).or_default().push(gi);
            }
            by_seed.into_values().collect()
        }
    };
    let mut out: Vec<Vec<f32>> = groups.iter().map(|g| vec![0.0; g.1.len()]).collect();
    for set in sets {
        let rewards: Vec<Option<f32>> = set
            .iter()
            .flat_map(|&gi| groups[gi].1.iter().copied())
            .collect();
        let mut adv = grpo_advantages(&rewards).into_iter();
        for &gi in &set {
            for a in out[gi].iter_mut() {
                *a = adv.next().unwrap_or(0.0);
            }
        }
    }
    out
}

/// GRPO loss. All token tensors are `[B, T]`; `mask` is 1 on response tokens that take part in
/// the loss (0 on padding, prompts and masked samples); `adv` is `[B]`.
///
/// Per token the objective is `exp(lπ − sg(lπ))·Â·w − β·k3` with the truncated importance weight
/// `w = min(exp(sg(lπ) − lπ_gen), c)` (a constant: `lπ_gen` is the log-prob under the distribution
/// the sample was actually drawn from) and `k3 = e^{ref−lπ} − (ref−lπ) − 1`. The loss is minus the
/// objective, averaged over each sequence's tokens, then over sequences with at least one token.
pub fn grpo_loss(
    logp: Tensor<2>,
    gen_logp: Tensor<2>,
    ref_logp: Tensor<2>,
    mask: Tensor<2>,
    adv: Tensor<1>,
    beta: f64,
    clip_c: f64,
) -> Tensor<1> {
    let [b, _] = logp.dims();
    let ratio_one = (logp.clone() - logp.clone().detach()).exp();
    let is_w = (logp.clone().detach() - gen_logp).exp().clamp_max(clip_c);
    let pg = ratio_one * is_w * adv.reshape([b, 1]);
    let d = ref_logp - logp;
    let k3 = (d.clone().exp() - d).sub_scalar(1.0);
    let obj = (pg - k3.mul_scalar(beta)) * mask.clone();
    let ntok = mask.sum_dim(1).reshape([b]);
    let has = ntok.clone().greater_elem(0.0).float();
    let per_seq = obj.sum_dim(1).reshape([b]) / ntok.clamp_min(1.0);
    let nseq = has.clone().sum().clamp_min(1.0);
    (per_seq * has).sum().neg() / nseq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_advantages() {
        assert_eq!(
            select_pair(&[Some(0.1), Some(0.9), Some(-0.5)]),
            Some((1, 2))
        );
        assert_eq!(select_pair(&[Some(0.5), None, Some(0.5)]), None);
        assert_eq!(select_pair(&[None, Some(1.0)]), None);
        assert_eq!(select_pair(&[Some(1.0), None, Some(0.0)]), Some((0, 2)));
        assert_eq!(select_pair(&[]), None);
        let a = grpo_advantages(&[Some(1.0), Some(-1.0), None, Some(0.0)]);
        assert_eq!(a, vec![1.0, -1.0, 0.0, 0.0]);
    }
}
