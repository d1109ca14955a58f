//! Batched sampling: greedy or temperature + top-p, max new tokens, stop tokens, one seeded RNG
//! per request (a request's tokens do not depend on the rest of the batch).

use serde::{Deserialize, Serialize};

use super::batch::{CausalLm, KvCacheLm, TokenBatch, to_vec_f32};
use super::{LmError, SplitMix64};

fn default_temperature() -> f32 {
    1.0
}
fn default_top_p() -> f32 {
    1.0
}
fn default_max_new() -> usize {
    32
}

/// Sampling parameters (a scenario section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// 0 = greedy (ties go to the lowest token id). Default 1.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Nucleus mass in (0, 1]. Default 1 (off).
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// Maximum generated tokens per request. Default 32.
    #[serde(default = "default_max_new")]
    pub max_new_tokens: usize,
    /// Generation of a row ends after it emits one of these (the stop token is kept).
    #[serde(default)]
    pub stop_tokens: Vec<u32>,
    /// Token used for left padding (never attended to). Default 0.
    #[serde(default)]
    pub pad_token: u32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: default_temperature(),
            top_p: default_top_p(),
            max_new_tokens: default_max_new(),
            stop_tokens: Vec::new(),
            pad_token: 0,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), LmError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(LmError::Config("sampling.temperature: must be >= 0".into()));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(LmError::Config("sampling.top_p: must be in (0, 1]".into()));
        }
        Ok(())
    }
}

/// One prompt to continue, with the seed of its own RNG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenRequest {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// Seed of this request's sampling RNG.
    pub seed: u64,
}

/// The continuation of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated token ids (a final stop token included).
    pub tokens: Vec<u32>,
    /// Log-prob of each generated token under the distribution it was drawn from (temperature,
    /// top-p; 0 for greedy): the behaviour policy, `lπ_gen` of GRPO's importance weight.
    pub logprobs: Vec<f32>,
    /// True when the row ended on a stop token (false: hit `max_new_tokens`/context).
    pub stopped: bool,
}

/// The behaviour log-probs of the tokens a learner will train on (`learned`, e.g. the sample's text
/// re-tokenized), given the tokens actually sampled and their log-probs: those of the common prefix.
/// Past the first difference (a stop string cut, an end token appended) no sampled log-prob applies.
pub fn aligned_logprobs(sampled: &[u32], logprobs: &[f32], learned: &[u32]) -> Vec<f32> {
    let n = sampled
        .iter()
        .zip(learned)
        .take_while(|(a, b)| a == b)
        .count()
        .min(logprobs.len());
    logprobs[..n].to_vec()
}

/// Picks the next token from one row of logits. Draws exactly one uniform when temperature > 0.
/// Returns the token and its log-prob under the distribution it was drawn from: the tempered
/// softmax renormalized over the top-p nucleus (0 for greedy, a point mass).
fn pick(logits: &[f32], cfg: &SamplingConfig, rng: &mut SplitMix64) -> (u32, f32) {
    if cfg.temperature == 0.0 {
        let mut best = 0usize;
        for (i, l) in logits.iter().enumerate() {
            if *l > logits[best] {
                best = i;
            }
        }
        return (best as u32, 0.0);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / cfg.temperature as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, l)| (i, ((*l - max) as f64 * inv_t).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    for p in probs.iter_mut() {
        p.1 /= z;
    }
    if cfg.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            cum += p.1;
            if cum >= cfg.top_p as f64 {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let u = rng.next_f64() * total;
    let mut acc = 0.0;
    let mut chosen = probs.last().copied().unwrap_or((0, 1.0));
    for &(i, p) in &probs {
        acc += p;
        if u < acc {
            chosen = (i, p);
            break;
        }
    }
    (chosen.0 as u32, (chosen.1 / total).ln() as f32)
}

struct RowState {
    rng: SplitMix64,
    prompt_len: usize,
    out: Generation,
    done: bool,
}

fn check_requests<M: CausalLm>(
    model: &M,
    reqs: &[GenRequest],
    cfg: &SamplingConfig,
) -> Result<(TokenBatch, Vec<RowState>), LmError> {
    cfg.validate()?;
    let prompts: Vec<&[u32]> = reqs.iter().map(|r| r.prompt.as_slice()).collect();
    let batch = TokenBatch::left_padded(&prompts, cfg.pad_token)?;
    batch.check(model.vocab_size(), model.max_len())?;
    let rows = reqs
        .iter()
        .map(|r| RowState {
            rng: SplitMix64::new(r.seed),
            prompt_len: r.prompt.len(),
            out: Generation {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                stopped: false,
            },
            done: cfg.max_new_tokens == 0 || r.prompt.len() >= model.max_len(),
        })
        .collect();
    Ok((batch, rows))
}

/// Applies one step of logits `[B, V]` (host) to the rows; returns whether all are done.
/// A row also ends when prompt + generated tokens fill the context `max_len`.
fn advance(
    logits: &[f32],
    vocab: usize,
    max_len: usize,
    rows: &mut [RowState],
    cfg: &SamplingConfig,
) -> bool {
    for (b, row) in rows.iter_mut().enumerate() {
        if row.done {
            continue;
        }
        let (tok, lp) = pick(&logits[b * vocab..(b + 1) * vocab], cfg, &mut row.rng);
        row.out.tokens.push(tok);
        row.out.logprobs.push(lp);
        if cfg.stop_tokens.contains(&tok) {
            row.out.stopped = true;
            row.done = true;
        } else if row.out.tokens.len() >= cfg.max_new_tokens
            || row.prompt_len + row.out.tokens.len() >= max_len
        {
            row.done = true;
        }
    }
    rows.iter().all(|r| r.done)
}

/// Samples continuations for a batch of prompts with the KV cache. Rows stop independently
/// (stop token, `max_new_tokens`, or their prompt + output filling `max_len`).
pub fn generate<M: KvCacheLm>(
    model: &M,
    reqs: &[GenRequest],
    cfg: &SamplingConfig,
) -> Result<Vec<Generation>, LmError> {
    let (batch, mut rows) = check_requests(model, reqs, cfg)?;
    let vocab = model.vocab_size();
    if rows.iter().all(|r| r.done) {
        return Ok(rows.into_iter().map(|r| r.out).collect());
    }
    let (logits, mut cache) = model.prefill(&batch)?;
    let mut logits = to_vec_f32(logits)?;
    loop {
        if advance(&logits, vocab, model.max_len(), &mut rows, cfg) {
            break;
        }
        let next: Vec<u32> = rows
            .iter()
            .map(|r| r.out.tokens.last().copied().unwrap_or(cfg.pad_token))
            .collect();
        logits = to_vec_f32(model.decode(&next, &mut cache)?)?;
    }
    Ok(rows.into_iter().map(|r| r.out).collect())
}

/// Same contract as [`generate`] but recomputes the full forward at each step (no cache): the
/// reference the cached path is tested against, and a fallback for models without a cache.
pub fn generate_uncached<M: CausalLm>(
    model: &M,
    reqs: &[GenRequest],
    cfg: &SamplingConfig,
) -> Result<Vec<Generation>, LmError> {
    let (_, mut rows) = check_requests(model, reqs, cfg)?;
    let vocab = model.vocab_size();
    loop {
        if rows.iter().all(|r| r.done) {
            break;
        }
        let seqs: Vec<Vec<u32>> = reqs
            .iter()
            .zip(&rows)
            .map(|(r, row)| [r.prompt.as_slice(), row.out.tokens.as_slice()].concat())
            .collect();
        let batch = TokenBatch::left_padded(&seqs, cfg.pad_token)?;
        let full = model.forward_batch(&batch)?;
        let [b, t, v] = full.dims();
        let last = to_vec_f32(full.narrow(1, t - 1, 1).reshape([b, v]))?;
        advance(&last, vocab, model.max_len(), &mut rows, cfg);
    }
    Ok(rows.into_iter().map(|r| r.out).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_log_probs_are_of_the_tempered_nucleus() {
        // temperature 2: p ∝ e^{l/2}; top_p 0.8 keeps tokens 1, 3 (0.386 each) and 2 (0.142).
        let logits = [0.0f32, 3.0, 1.0, 3.0];
        let w: Vec<f64> = logits.iter().map(|l| (*l as f64 / 2.0).exp()).collect();
        let z: f64 = w.iter().sum();
        let kept = (w[1] + w[3] + w[2]) / z;
        let cfg = SamplingConfig {
            temperature: 2.0,
            top_p: 0.8,
            ..Default::default()
        };
        let mut rng = SplitMix64::new(3);
        let mut seen = [0usize; 4];
        for _ in 0..300 {
            let (t, lp) = pick(&logits, &cfg, &mut rng);
            let want = (w[t as usize] / z / kept).ln();
            assert!((lp as f64 - want).abs() < 1e-5, "token {t}: {lp} vs {want}");
            seen[t as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 0 && seen[2] > 0 && seen[3] > 0, "{seen:?}");
    }

    #[test]
    fn aligned_log_probs_cover_the_common_prefix() {
        let lp = [-0.1f32, -0.2, -0.3];
        assert_eq!(aligned_logprobs(&[5, 6, 7], &lp, &[5, 6, 7]), lp.to_vec());
        assert_eq!(
            aligned_logprobs(&[5, 6, 7], &lp, &[5, 6, 9, 2]),
            vec![-0.1, -0.2]
        );
        assert_eq!(aligned_logprobs(&[5, 6, 7], &lp, &[5]), vec![-0.1]);
        assert!(aligned_logprobs(&[5], &lp[..1], &[4]).is_empty());
    }

    #[test]
    fn pick_greedy_and_top_p() {
        let logits = [0.0f32, 3.0, 1.0, 3.0];
        let mut rng = SplitMix64::new(1);
        let (t, lp) = pick(&logits, &SamplingConfig::greedy(1), &mut rng);
        assert_eq!(t, 1);
        assert_eq!(lp, 0.0, "greedy is a point mass");
        // top_p tiny keeps only the most likely token (lowest id among ties).
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_p: 0.01,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(pick(&logits, &cfg, &mut rng).0, 1);
        }
        // temperature sampling covers the support roughly by probability
        let cfg = SamplingConfig::default();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[pick(&logits, &cfg, &mut rng).0 as usize] += 1;
        }
        assert!(
            counts[1] > 1500 && counts[3] > 1500 && counts[0] < 200,
            "{counts:?}"
        );
    }
}
