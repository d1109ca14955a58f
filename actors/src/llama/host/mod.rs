//! `HostLlama`: a fast CPU inference path for generation. It copies the weights of a
//! [`LlamaModel`](super::LlamaModel) once into matrices packed in 16-row panels (Q/K/V and gate/up
//! fused), f32 or f16 by [`Precision`], and runs the same arithmetic with its own kernels
//! ([`super::kernels`]: a register-tiled small-batch matmul parallel over output panels), a KV
//! cache written in place, attention per KV group through the same kernel (mask built once per
//! call), host-side RMSNorm/RoPE/SiLU. Padding positions (left padding, finished rows) are left out
//! of every matmul. The prompt runs as one batch of all its valid tokens; the head runs on the
//! last position of each row only. No Burn op or tensor readback in the decode step. Training
//! stays on [`LlamaModel`](super::LlamaModel); rebuild (or [`HostLlama::refresh`]) after the
//! weights change. `SPARRING_HOST_PROFILE=1` accumulates wall time per phase of the forward pass,
//! read with [`take_profile`].
//!
//! Where things are: this file holds [`HostLlama`], [`HostCache`] and generation; `weights` the
//! packed host copy of the weights, `forward` the forward pass, `attention` the per-row attention,
//! `ops` the elementwise steps (RMSNorm, RoPE, SiLU, `exp`), `profile` the phase timer.

mod attention;
mod forward;
mod ops;
mod profile;
#[cfg(test)]
mod tests;
mod weights;

pub use profile::take_profile;

use super::config::LlamaConfig;
use super::error::LlamaError;
use super::generate::{GenerateOptions, Generated, generate_loop, row_seed};
use super::kernels::{self, PANEL, WRef};
use weights::{HostLayer, Mat};

/// Storage precision of the host copy of the weight matrices (activations, norms, the
/// embedding lookup and the KV cache stay f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Bit-exact copy of the model's f32 weights (the default; matches the Burn path to 1e-4).
    #[default]
    F32,
    /// Weights rounded to IEEE f16 (half the memory traffic per token; logits move by ~1e-3
    /// relative on SmolLM2-135M), widened to f32 in registers.
    F16,
}

/// Host copy of a Llama model for fast generation.
pub struct HostLlama {
    cfg: LlamaConfig,
    precision: Precision,
    /// `[vocab, hidden]`, f32 for the lookup.
    embed: std::sync::Arc<Vec<f32>>,
    /// The head `[vocab, hidden]`.
    head: std::sync::Arc<Mat>,
    norm: Vec<f32>,
    layers: Vec<HostLayer>,
    inv_freq: Vec<f32>,
}

/// KV cache of [`HostLlama`], preallocated: per layer, K as `[batch][kv_heads][capacity / 16]
/// [head_dim][16]` (16-position panels, the Q·Kᵀ kernel's layout) and V as `[batch][kv_heads]
/// [capacity][head_dim]`; the capacity is rounded up to a multiple of 16.
pub struct HostCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    batch: usize,
    capacity: usize,
    len: usize,
    valid: Vec<bool>,
    next_pos: Vec<usize>,
}

impl HostCache {
    /// An empty cache for `batch` rows of at most `capacity` tokens.
    pub fn new(cfg: &LlamaConfig, batch: usize, capacity: usize) -> Self {
        let capacity = capacity.div_ceil(PANEL) * PANEL;
        let per = batch * cfg.num_kv_heads * capacity * cfg.head_dim;
        Self {
            k: (0..cfg.num_layers).map(|_| vec![0.0; per]).collect(),
            // Slack: the P·V kernel reads whole 16-wide panels of the last row.
            v: (0..cfg.num_layers)
                .map(|_| vec![0.0; per + PANEL])
                .collect(),
            batch,
            capacity,
            len: 0,
            valid: vec![false; batch * capacity],
            next_pos: vec![0; batch],
        }
    }
    /// Filled slots per row.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Nothing cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl HostLlama {
    /// The architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The storage precision of the weight matrices.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Batched generation (same semantics and RNG streams as
    /// [`LlamaModel::generate`](super::LlamaModel::generate)).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let seeds: Vec<u64> = (0..prompts.len()).map(|r| row_seed(opts.seed, r)).collect();
        self.generate_with_seeds(prompts, &seeds, opts)
    }

    /// Batched generation with one RNG seed per row.
    pub fn generate_with_seeds(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut cache = HostCache::new(&self.cfg, prompts.len(), max_len + opts.max_new_tokens);
        generate_loop(prompts, seeds, opts, self.cfg.vocab_size, |ids, valid| {
            self.forward(ids, valid, &mut cache, false)
        })
    }
}

/// `out[i][j] = Σ_k x[i][k] · w[j][k]` for `x: [m, k]`, `w: [n, k]` (out-major weights),
/// `out: [m, n]`; parallel over blocks of output columns.
///
/// # Panics
/// When a slice is shorter than its shape says.
/// (Packs `w` on every call: for occasional use; [`HostLlama`] packs once.)
pub fn matmul_t(x: &[f32], w: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(w.len() >= n * k);
    let packed = kernels::pack_panels(&w[..n * k], n, k);
    kernels::matmul(x, WRef::F32(&packed), m, n, k, out);
}
