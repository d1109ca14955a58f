//! Batched generation with the KV cache: left-padded prompts, greedy or temperature/top-p
//! sampling with a seeded RNG per row, stop tokens, per-token log-probabilities.

use super::error::LlamaError;
use super::model::{KvCache, LlamaModel, LogitsMode};
use sparring_engine::rng::SplitMix64;

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Upper bound on generated tokens per row (a stop token counts).
    pub max_new_tokens: usize,
    /// 0 → greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Nucleus: sample among the most likely tokens whose mass reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Generation of a row ends after it emits one of these (the stop token is kept).
    pub stop_tokens: Vec<u32>,
    /// Base seed; row `r` samples from its own stream derived from `(seed, r)`.
    pub seed: u64,
    /// Also return each generated token's log-probability under the distribution it was drawn from
    /// (the tempered softmax renormalized over the top-p nucleus; 0 for greedy): the behaviour
    /// policy an on-policy learner's importance weights compare against.
    pub logprobs: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            stop_tokens: Vec::new(),
            seed: 0,
            logprobs: false,
        }
    }
}

/// Why a row stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Emitted a stop token (the last token of `tokens`).
    StopToken,
    /// Reached `max_new_tokens`.
    MaxTokens,
}

/// One row's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// New tokens (prompt excluded; the stop token included when one ended the row).
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the distribution sampled (see
    /// [`GenerateOptions::logprobs`]), when requested.
    pub logprobs: Vec<f32>,
    /// Why the row ended.
    pub stop: StopReason,
}

/// Seed of row `row`'s sampling stream.
pub fn row_seed(seed: u64, row: usize) -> u64 {
    SplitMix64::new(seed ^ (row as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

impl LlamaModel {
    /// Generates continuations of `prompts` as one left-padded batch.
    ///
    /// Row `r` samples with its own RNG stream ([`row_seed`]`(seed, r)`), so a batch gives the
    /// same tokens as generating each prompt alone with the matching row seed (up to float
    /// summation order in batched matmuls).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let seeds: Vec<u64> = (0..prompts.len()).map(|r| row_seed(opts.seed, r)).collect();
        self.generate_with_seeds(prompts, &seeds, opts)
    }

    /// Like [`generate`](Self::generate) with an explicit RNG seed per row.
    pub fn generate_with_seeds(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let b = prompts.len();
        let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let device = self.device();
        let mut cache = KvCache::new(
            self.config(),
            b.max(1),
            max_len + opts.max_new_tokens,
            &device,
        );
        let vocab = self.config().vocab_size;
        generate_loop(prompts, seeds, opts, vocab, |ids, valid| {
            let logits = self.forward_cached(ids, valid, &mut cache, LogitsMode::Last)?;
            logits
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| LlamaError::Readback(format!("{e:?}")))
        })
    }
}

/// The generation loop shared by every backend: `step(ids, valid)` runs one left-padded chunk
/// through the model (appending to its cache) and returns the last position's logits,
/// `[batch * vocab]` on the host.
pub fn generate_loop(
    prompts: &[Vec<u32>],
    seeds: &[u64],
    opts: &GenerateOptions,
    vocab: usize,
    mut step: impl FnMut(&[Vec<u32>], &[Vec<bool>]) -> Result<Vec<f32>, LlamaError>,
) -> Result<Vec<Generated>, LlamaError> {
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    if seeds.len() != b {
        return Err(LlamaError::Input(format!(
            "{} seeds for {b} prompts",
            seeds.len()
        )));
    }
    if !(opts.temperature >= 0.0 && opts.temperature.is_finite()) {
        return Err(LlamaError::Input(format!(
            "temperature {} must be finite and >= 0",
            opts.temperature
        )));
    }
    if !(opts.top_p > 0.0 && opts.top_p <= 1.0) {
        return Err(LlamaError::Input(format!(
            "top_p {} must be in (0, 1]",
            opts.top_p
        )));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(LlamaError::Input("empty prompt".into()));
    }
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut out: Vec<Generated> = (0..b)
        .map(|_| Generated {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            stop: StopReason::MaxTokens,
        })
        .collect();
    if opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let mut ids = Vec::with_capacity(b);
    let mut valid = Vec::with_capacity(b);
    for p in prompts {
        let pad = max_len - p.len();
        let mut row = vec![0u32; pad];
        row.extend_from_slice(p);
        let mut v = vec![false; pad];
        v.extend(std::iter::repeat_n(true, p.len()));
        ids.push(row);
        valid.push(v);
    }
    let mut rngs: Vec<SplitMix64> = seeds.iter().map(|&s| SplitMix64::new(s)).collect();
    let mut done = vec![false; b];
    let mut host = step(&ids, &valid)?;
    for n in 0..opts.max_new_tokens {
        if host.len() != b * vocab {
            return Err(LlamaError::Readback(format!(
                "{} logits for {b} rows of {vocab}",
                host.len()
            )));
        }
        let mut next = vec![0u32; b];
        let mut next_valid = vec![false; b];
        for r in 0..b {
            if done[r] {
                continue;
            }
            let row = &host[r * vocab..(r + 1) * vocab];
            let (tok, lp) = pick(row, opts, &mut rngs[r]);
            if opts.logprobs {
                out[r].logprobs.push(lp);
            }
            out[r].tokens.push(tok as u32);
            next[r] = tok as u32;
            next_valid[r] = true;
            if opts.stop_tokens.contains(&(tok as u32)) {
                done[r] = true;
                out[r].stop = StopReason::StopToken;
            }
        }
        if done.iter().all(|&d| d) || n + 1 == opts.max_new_tokens {
            break;
        }
        let ids: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        let valid: Vec<Vec<bool>> = next_valid.iter().map(|&v| vec![v]).collect();
        host = step(&ids, &valid)?;
    }
    Ok(out)
}

/// Log of the sum of exponentials, stable.
pub fn logsumexp(row: &[f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return m;
    }
    let s: f64 = row.iter().map(|&x| ((x - m) as f64).exp()).sum();
    m + s.ln() as f32
}

/// Index of the largest value (first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in row.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best
}

/// One row's next token and its log-prob under the distribution it was drawn from, by the rule of
/// [`generate_loop`] (greedy at temperature 0, else the tempered softmax over the top-p nucleus), for a
/// caller that runs its own loop with settings per row (`chatlm::complete`, `sparring serve`).
pub fn sample_next(
    row: &[f32],
    temperature: f32,
    top_p: f32,
    rng: &mut SplitMix64,
) -> (usize, f32) {
    let opts = GenerateOptions {
        temperature,
        top_p,
        ..GenerateOptions::default()
    };
    pick(row, &opts, rng)
}

/// The next token of one row and its log-prob under the distribution it was drawn from: greedy
/// (argmax, log-prob 0), or the softmax of `row / temperature` renormalized over the top-p nucleus.
fn pick(row: &[f32], opts: &GenerateOptions, rng: &mut SplitMix64) -> (usize, f32) {
    if opts.temperature == 0.0 {
        return (argmax(row), 0.0);
    }
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / opts.temperature as f64;
    let probs: Vec<f64> = row
        .iter()
        .map(|&x| (((x - m) as f64) * inv_t).exp())
        .collect();
    let z: f64 = probs.iter().sum();
    if !(z.is_finite() && z > 0.0) {
        return (argmax(row), 0.0);
    }
    // The sampled mass: all of it, or the nucleus.
    let lp = |i: usize, mass: f64| (probs[i] / mass).ln() as f32;
    if opts.top_p >= 1.0 {
        let u = rng.next_f64() * z;
        let mut acc = 0.0;
        for (i, &p) in probs.iter().enumerate() {
            acc += p;
            if acc > u {
                return (i, lp(i, z));
            }
        }
        let i = argmax(row);
        return (i, lp(i, z));
    }
    // Nucleus: sorting only candidates above a tiny threshold gives the same prefix as a full
    // sort whenever their mass reaches top_p (the skipped tail sorts last anyway).
    let top_p = opts.top_p as f64;
    let thresh = z * 1e-9;
    let mut cand: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > thresh).collect();
    let cand_mass: f64 = cand.iter().map(|&i| probs[i]).sum();
    if cand_mass < top_p * z {
        cand = (0..probs.len()).collect();
    }
    cand.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut kept = 0;
    let mut mass = 0.0;
    for &i in &cand {
        mass += probs[i];
        kept += 1;
        if mass >= top_p * z {
            break;
        }
    }
    let u = rng.next_f64() * mass;
    let mut acc = 0.0;
    for &i in &cand[..kept] {
        acc += probs[i];
        if acc > u {
            return (i, lp(i, mass));
        }
    }
    (cand[0], lp(cand[0], mass))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_greedy_and_top_p() {
        let row = [0.0f32, 5.0, 1.0, 4.9];
        let mut rng = SplitMix64::new(1);
        let g = GenerateOptions::default();
        assert_eq!(pick(&row, &g, &mut rng), (1, 0.0));
        // top_p tiny → only the argmax survives.
        let o = GenerateOptions {
            temperature: 1.0,
            top_p: 0.01,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(pick(&row, &o, &mut rng).0, 1);
        }
        // top_p 0.9 keeps {1, 3}: never 0 or 2 (they hold ~1.3% of the mass).
        let o = GenerateOptions {
            temperature: 1.0,
            top_p: 0.9,
            ..Default::default()
        };
        let mut seen = [0; 4];
        for _ in 0..200 {
            seen[pick(&row, &o, &mut rng).0] += 1;
        }
        assert_eq!((seen[0], seen[2]), (0, 0));
        assert!(seen[1] > 50 && seen[3] > 50, "{seen:?}");
    }

    #[test]
    fn sampled_log_probs_are_of_the_tempered_nucleus() {
        // temperature 2: p ∝ e^{x/2}; top_p 0.8 keeps tokens 1, 3 (0.386 each) and 2 (0.142).
        let row = [0.0f32, 3.0, 1.0, 3.0];
        let w: Vec<f64> = row.iter().map(|x| (*x as f64 / 2.0).exp()).collect();
        let z: f64 = w.iter().sum();
        let kept = (w[1] + w[3] + w[2]) / z;
        for (top_p, mass) in [(0.8f32, kept), (1.0, 1.0)] {
            let o = GenerateOptions {
                temperature: 2.0,
                top_p,
                ..Default::default()
            };
            let mut rng = SplitMix64::new(5);
            for _ in 0..200 {
                let (t, lp) = pick(&row, &o, &mut rng);
                let want = (w[t] / z / mass).ln();
                assert!(
                    (lp as f64 - want).abs() < 1e-5,
                    "top_p {top_p}, token {t}: {lp} vs {want}"
                );
            }
        }
    }

    #[test]
    fn logsumexp_matches_naive() {
        let row = [1.0f32, 2.0, 3.0];
        let naive = row.iter().map(|x| x.exp()).sum::<f32>().ln();
        assert!((logsumexp(&row) - naive).abs() < 1e-6);
    }
}
