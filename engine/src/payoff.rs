//! Reward math, following the official AdvGame semantics.
//!
//! Pairwise: every unordered pair (i, j) of a group is judged once; the per-pair score of a member is
//! **win 1, tie 0.5, loss 0** (comparing the judge's two scores). A member's reward is the mean of its per-pair
//! scores over the pairs it appears in whose verdict parsed; pairs with a missing verdict are excluded (not counted
//! as zero). A member with no valid pair has no reward (`None`), which learners skip.
//! Pointwise: the reward is the judge's score in [0, 1] (missing → `None`).
//! The attacker's unparseable or unfaithful rewrites get the scenario's `error_reward` (−1 by default) and take no
//! part in comparisons. Weights multiply judge-derived rewards, never the error reward.

use std::borrow::Borrow;

/// Per-pair scores of (A, B): 1/0, 0.5/0.5 or 0/1. `None` when a score is not finite.
pub fn pair_score(sa: f64, sb: f64) -> Option<(f64, f64)> {
    if !sa.is_finite() || !sb.is_finite() {
        return None;
    }
    Some(if sa > sb {
        (1.0, 0.0)
    } else if sa < sb {
        (0.0, 1.0)
    } else {
        (0.5, 0.5)
    })
}

/// All unordered pairs (i < j) of the given member indices, in lexicographic order.
pub fn all_pairs(members: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (x, &i) in members.iter().enumerate() {
        for &j in &members[x + 1..] {
            out.push((i, j));
        }
    }
    out
}

/// Mean per-pair score of each of `n` members from judged pairs `(i, j, scores of i and j)`; `None` scores are
/// missing verdicts and are excluded.
pub fn pairwise_rewards<P: Borrow<(usize, usize, Option<(f64, f64)>)>>(
    n: usize,
    judged: impl IntoIterator<Item = P>,
) -> Vec<Option<f64>> {
    let mut sum = vec![0.0f64; n];
    let mut cnt = vec![0usize; n];
    for p in judged {
        let &(i, j, s) = p.borrow();
        let Some((sa, sb)) = s else { continue };
        let Some((pa, pb)) = pair_score(sa, sb) else {
            continue;
        };
        if i < n && j < n {
            sum[i] += pa;
            cnt[i] += 1;
            sum[j] += pb;
            cnt[j] += 1;
        }
    }
    (0..n)
        .map(|k| (cnt[k] > 0).then(|| sum[k] / cnt[k] as f64))
        .collect()
}

/// Index of the response representing a rewrite in the attacker's comparisons, from the defender rewards of its
/// responses (`None` or not finite: no verdict). With `optimistic`, the one with the highest reward (the
/// defender's best response; first on ties; responses without a reward rank lowest). Else the first response
/// with a reward (the official code's "first no-error response", a failed judgment being an error). With no
/// response rewarded, either way, response 0.
pub fn representative(rewards: &[Option<f64>], optimistic: bool) -> usize {
    if !optimistic {
        return rewards
            .iter()
            .position(|r| r.is_some_and(f64::is_finite))
            .unwrap_or(0);
    }
    let mut best = 0;
    let mut best_r = f64::NEG_INFINITY;
    for (i, r) in rewards.iter().enumerate() {
        let v = r.unwrap_or(f64::NEG_INFINITY);
        if v > best_r {
            best = i;
            best_r = v;
        }
    }
    best
}

/// Apply a weight to an optional reward.
pub fn weighted(r: Option<f64>, w: f64) -> Option<f64> {
    r.map(|x| x * w)
}

/// One verdict of the judge on a group's members: a pair `(i, j)` with the judge's two scores, or member `i`'s
/// score alone. `None` scores are missing verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgment {
    Pair(usize, usize, Option<(f64, f64)>),
    Point(usize, Option<f64>),
}

/// The rewards of a group of `n` members (the defender's responses to one rewrite, or the attacker's rewrites of
/// one seed) from the judge's verdicts on it, times `weight`: pairwise, each member's mean per-pair score;
/// pointwise, its score when finite. A member without a verdict has no reward. This is the one reward rule:
/// the game computes rewards with it, and `sparring replay` checks logged rewards with it.
pub fn rewards(
    n: usize,
    verdicts: impl IntoIterator<Item = Judgment>,
    weight: f64,
) -> Vec<Option<f64>> {
    let mut pairs = Vec::new();
    let mut points = vec![None; n];
    for v in verdicts {
        match v {
            Judgment::Pair(i, j, scores) => pairs.push((i, j, scores)),
            Judgment::Point(i, score) => {
                if let Some(slot) = points.get_mut(i) {
                    *slot = score.filter(|x| x.is_finite());
                }
            }
        }
    }
    let raw = if pairs.is_empty() {
        points
    } else {
        pairwise_rewards(n, pairs)
    };
    raw.into_iter().map(|r| weighted(r, weight)).collect()
}

/// The attacker's rewards for one seed's rewrites: [`rewards`] among the valid ones, `error_reward` (unweighted)
/// for the unparseable or unfaithful ones.
pub fn attacker_rewards(
    valid: &[bool],
    verdicts: impl IntoIterator<Item = Judgment>,
    weight: f64,
    error_reward: f64,
) -> Vec<Option<f64>> {
    rewards(valid.len(), verdicts, weight)
        .into_iter()
        .zip(valid)
        .map(|(r, &ok)| if ok { r } else { Some(error_reward) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_rewards_are_mean_pair_scores_or_finite_points_times_the_weight() {
        // Pairs: 0 beats 1, 0 ties 2, the (1, 2) verdict is missing.
        let pairs = [
            Judgment::Pair(0, 1, Some((0.9, 0.1))),
            Judgment::Pair(0, 2, Some((0.5, 0.5))),
            Judgment::Pair(1, 2, None),
        ];
        assert_eq!(
            rewards(3, pairs, 2.0),
            vec![Some(1.5), Some(0.0), Some(1.0)]
        );
        let points = [
            Judgment::Point(0, Some(0.25)),
            Judgment::Point(2, Some(f64::NAN)),
        ];
        assert_eq!(rewards(3, points, 2.0), vec![Some(0.5), None, None]);
        // Invalid rewrites get the error reward, unweighted; valid ones without a verdict get none.
        let judged = [Judgment::Point(0, Some(1.0))];
        assert_eq!(
            attacker_rewards(&[true, false, true], judged, 0.5, -1.0),
            vec![Some(0.5), Some(-1.0), None]
        );
    }

    #[test]
    fn the_optimistic_representative_is_the_best_rewarded_response() {
        assert_eq!(representative(&[Some(0.2), Some(0.9), Some(0.9)], true), 1);
        assert_eq!(representative(&[None, Some(0.1)], true), 1);
        assert_eq!(representative(&[Some(-0.5), None], true), 0);
        assert_eq!(representative(&[None, None], true), 0);
    }

    #[test]
    fn the_non_optimistic_representative_is_the_first_response_with_a_verdict() {
        assert_eq!(representative(&[Some(0.2), Some(0.9)], false), 0);
        // Response 0's verdicts all failed: the first response that has a reward stands for the rewrite.
        assert_eq!(representative(&[None, Some(0.1), Some(0.9)], false), 1);
        assert_eq!(representative(&[None, None, Some(0.0)], false), 2);
        assert_eq!(representative(&[Some(f64::NAN), Some(0.3)], false), 1);
        // None rewarded: response 0.
        assert_eq!(representative(&[None, None], false), 0);
        assert_eq!(representative(&[], false), 0);
    }
}
