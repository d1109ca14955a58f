//! The decoder-only transformer LM: token + learned position embeddings, pre-norm blocks
//! (LayerNorm or RMSNorm), causal multi-head self-attention, GELU MLP, final norm, tied or untied
//! head; deterministic init from a seed; full forward and a KV cache for incremental decoding.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::module::linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::batch::{CausalLm, KvCacheLm, TokenBatch};
use super::{LmError, SplitMix64};

/// Value added to attention scores of blocked positions (finite, so no row is ever all -inf).
const MASKED: f32 = -1.0e9;

/// Which normalisation the blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// LayerNorm with scale and bias.
    #[default]
    LayerNorm,
    /// RMSNorm with scale only.
    RmsNorm,
}

fn default_true() -> bool {
    true
}
fn default_init_std() -> f64 {
    0.02
}
fn default_norm_eps() -> f64 {
    1e-5
}

/// Sizes of a [`TransformerLm`]; a scenario section deserializes into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// MLP hidden width.
    pub d_ff: usize,
    /// Context length (learned positions).
    pub max_len: usize,
    /// Tie the output head to the token embedding (default true).
    #[serde(default = "default_true")]
    pub tied_head: bool,
    /// Normalisation kind (default `layer_norm`).
    #[serde(default)]
    pub norm: NormKind,
    /// Dropout; only 0 is supported (kept so scenarios can state it).
    #[serde(default)]
    pub dropout: f64,
    /// Std of the normal init (default 0.02).
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// Norm epsilon (default 1e-5).
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
}

impl TransformerConfig {
    /// A config with the defaults for the optional fields.
    pub fn new(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        d_ff: usize,
        max_len: usize,
    ) -> Self {
        Self {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            d_ff,
            max_len,
            tied_head: true,
            norm: NormKind::LayerNorm,
            dropout: 0.0,
            init_std: default_init_std(),
            norm_eps: default_norm_eps(),
        }
    }

    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), LmError> {
        let bad = |k: &str, why: &str| Err(LmError::Config(format!("model.{k}: {why}")));
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return bad(k, "must be > 0");
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return bad(
                "n_heads",
                &format!("must divide d_model = {}", self.d_model),
            );
        }
        if self.vocab_size > i32::MAX as usize {
            return bad("vocab_size", "too large");
        }
        if self.dropout != 0.0 {
            return bad("dropout", "only 0 is supported");
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return bad("init_std", "must be a positive number");
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad("norm_eps", "must be a positive number");
        }
        Ok(())
    }

    /// Builds the model on `device` with weights drawn from `seed` (same seed, same weights, on
    /// every backend).
    pub fn init(&self, seed: u64, device: &Device) -> Result<TransformerLm, LmError> {
        self.validate()?;
        let mut stream = 0u64;
        let mut normal = |shape: &[usize], std: f64| {
            stream += 1;
            let mut rng = SplitMix64::derive(seed, stream);
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (rng.next_normal() * std) as f32).collect();
            param_from(v, shape, device)
        };
        let d = self.d_model;
        let std = self.init_std;
        let proj_std = std / ((2 * self.n_layers) as f64).sqrt();
        let tok_emb = normal(&[self.vocab_size, d], std);
        let pos_emb = normal(&[self.max_len, d], std);
        let mut blocks = Vec::with_capacity(self.n_layers);
        for _ in 0..self.n_layers {
            blocks.push(Block {
                ln1: Norm::new(self.norm, d, self.norm_eps, device),
                wqkv: normal(&[d, 3 * d], std),
                bqkv: param_from(vec![0.0; 3 * d], &[3 * d], device),
                wo: normal(&[d, d], proj_std),
                bo: param_from(vec![0.0; d], &[d], device),
                ln2: Norm::new(self.norm, d, self.norm_eps, device),
                w1: normal(&[d, self.d_ff], std),
                b1: param_from(vec![0.0; self.d_ff], &[self.d_ff], device),
                w2: normal(&[self.d_ff, d], proj_std),
                b2: param_from(vec![0.0; d], &[d], device),
                n_heads: self.n_heads,
            });
        }
        let head = if self.tied_head {
            None
        } else {
            Some(normal(&[d, self.vocab_size], std))
        };
        Ok(TransformerLm {
            tok_emb,
            pos_emb,
            blocks,
            norm_f: Norm::new(self.norm, d, self.norm_eps, device),
            head,
            config: self.clone(),
        })
    }
}

fn param_from<const D: usize>(v: Vec<f32>, shape: &[usize], device: &Device) -> Param<Tensor<D>> {
    let mut dims = [0usize; D];
    dims.copy_from_slice(shape);
    Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), device))
}

/// LayerNorm or RMSNorm over the last dimension.
#[derive(Module, Debug)]
pub struct Norm {
    weight: Param<Tensor<1>>,
    bias: Option<Param<Tensor<1>>>,
    eps: f64,
}

impl Norm {
    fn new(kind: NormKind, d: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: param_from(vec![1.0; d], &[d], device),
            bias: match kind {
                NormKind::LayerNorm => Some(param_from(vec![0.0; d], &[d], device)),
                NormKind::RmsNorm => None,
            },
            eps,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let w = self.weight.val().unsqueeze::<3>();
        match &self.bias {
            Some(b) => {
                let mean = x.clone().mean_dim(2);
                let xc = x - mean;
                let var = xc.clone().square().mean_dim(2);
                xc / var.add_scalar(self.eps).sqrt() * w + b.val().unsqueeze::<3>()
            }
            None => {
                let ms = x.clone().square().mean_dim(2);
                x / ms.add_scalar(self.eps).sqrt() * w
            }
        }
    }
}

/// One pre-norm transformer block.
#[derive(Module, Debug)]
pub struct Block {
    ln1: Norm,
    wqkv: Param<Tensor<2>>,
    bqkv: Param<Tensor<1>>,
    wo: Param<Tensor<2>>,
    bo: Param<Tensor<1>>,
    ln2: Norm,
    w1: Param<Tensor<2>>,
    b1: Param<Tensor<1>>,
    w2: Param<Tensor<2>>,
    b2: Param<Tensor<1>>,
    n_heads: usize,
}

impl Block {
    /// `bias`: `[B, 1, Tq, Tk]` additive attention bias. With a cache, the new keys/values are
    /// appended to it and attention runs over all cached keys.
    fn forward(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.n_heads;
        let dh = d / h;
        let qkv = linear(
            self.ln1.forward(x.clone()),
            self.wqkv.val(),
            Some(self.bqkv.val()),
        );
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([b, t, h, dh])
                .swap_dims(1, 2)
        };
        let q = split(0);
        let mut k = split(1);
        let mut v = split(2);
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (dh as f64).sqrt())
            + bias;
        let att = softmax(scores, 3);
        let out = att.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        let x = x + linear(out, self.wo.val(), Some(self.bo.val()));
        let hdn = gelu(linear(
            self.ln2.forward(x.clone()),
            self.w1.val(),
            Some(self.b1.val()),
        ));
        x + linear(hdn, self.w2.val(), Some(self.b2.val()))
    }
}

/// The decoder-only transformer LM. Build with [`TransformerConfig::init`].
#[derive(Module, Debug)]
pub struct TransformerLm {
    tok_emb: Param<Tensor<2>>,
    pos_emb: Param<Tensor<2>>,
    blocks: Vec<Block>,
    norm_f: Norm,
    head: Option<Param<Tensor<2>>>,
    #[module(skip)]
    config: TransformerConfig,
}

/// Decoding state of a [`TransformerLm`] batch: per-layer keys/values `[B, H, T, dh]`, which
/// cached keys are real, and each row's next position.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    key_mask: Vec<Vec<bool>>,
    next_pos: Vec<i64>,
}

impl KvCache {
    /// Number of cached positions (including padding).
    pub fn len(&self) -> usize {
        self.key_mask.first().map_or(0, Vec::len)
    }
    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TransformerLm {
    /// The config the model was built from.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    fn embed(&self, tokens: Tensor<2, Int>, positions: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let d = self.config.d_model;
        let tok = self.tok_emb.val().select(0, tokens.reshape([b * t]));
        let pos = self.pos_emb.val().select(0, positions.reshape([b * t]));
        (tok + pos).reshape([b, t, d])
    }

    fn head(&self, h: Tensor<3>) -> Tensor<3> {
        let h = self.norm_f.forward(h);
        match &self.head {
            Some(w) => linear(h, w.val(), None),
            None => linear(h, self.tok_emb.val().transpose(), None),
        }
    }

    fn positions_tensor(&self, pos: Vec<i64>, b: usize, t: usize) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(pos, [b, t]), &CausalLm::device(self))
    }

    /// Causal + key-padding bias `[B, 1, T, T]` (the diagonal is always open).
    fn full_bias(&self, batch: &TokenBatch) -> Tensor<4> {
        let (b, t) = (batch.batch, batch.len);
        let mut v = vec![MASKED; b * t * t];
        for r in 0..b {
            for i in 0..t {
                for j in 0..=i {
                    if i == j || batch.mask[r * t + j] {
                        v[(r * t + i) * t + j] = 0.0;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [b, 1, t, t]), &CausalLm::device(self))
    }

    fn hidden(
        &self,
        batch: &TokenBatch,
        mut cache: Option<&mut Vec<Option<(Tensor<4>, Tensor<4>)>>>,
    ) -> Result<Tensor<3>, LmError> {
        batch.check(self.config.vocab_size, self.config.max_len)?;
        let device = CausalLm::device(self);
        let mut x = self.embed(
            batch.tokens_tensor(&device),
            self.positions_tensor(batch.positions(), batch.batch, batch.len),
        );
        let bias = self.full_bias(batch);
        for (i, blk) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().and_then(|c| c.get_mut(i));
            x = blk.forward(x, bias.clone(), slot);
        }
        Ok(x)
    }
}

impl CausalLm for TransformerLm {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn max_len(&self) -> usize {
        self.config.max_len
    }
    fn device(&self) -> Device {
        self.tok_emb.val().device()
    }
    fn forward_batch(&self, batch: &TokenBatch) -> Result<Tensor<3>, LmError> {
        let h = self.hidden(batch, None)?;
        Ok(self.head(h))
    }
}

impl KvCacheLm for TransformerLm {
    type Cache = KvCache;

    fn prefill(&self, batch: &TokenBatch) -> Result<(Tensor<2>, KvCache), LmError> {
        let mut layers = vec![None; self.blocks.len()];
        let h = self.hidden(batch, Some(&mut layers))?;
        let [b, t, d] = h.dims();
        let last = self
            .head(h.narrow(1, t - 1, 1))
            .reshape([b, self.config.vocab_size]);
        let _ = d;
        let key_mask = (0..b)
            .map(|r| batch.mask[r * t..(r + 1) * t].to_vec())
            .collect();
        let next_pos = batch.lengths().into_iter().map(|l| l as i64).collect();
        Ok((
            last,
            KvCache {
                layers,
                key_mask,
                next_pos,
            },
        ))
    }

    fn decode(&self, next: &[u32], cache: &mut KvCache) -> Result<Tensor<2>, LmError> {
        let b = next.len();
        if b != cache.next_pos.len() {
            return Err(LmError::Input(format!(
                "decode got {b} tokens for a batch of {}",
                cache.next_pos.len()
            )));
        }
        if let Some(t) = next.iter().find(|t| **t as usize >= self.config.vocab_size) {
            return Err(LmError::Input(format!(
                "token {t} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let device = CausalLm::device(self);
        let toks: Vec<i64> = next.iter().map(|t| *t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(toks, [b, 1]), &device);
        // Rows already finished by the caller may run past the context; their outputs are
        // ignored, so their positions are clamped rather than rejected.
        let last_pos = self.config.max_len as i64 - 1;
        let pos: Vec<i64> = cache.next_pos.iter().map(|p| (*p).min(last_pos)).collect();
        let positions = self.positions_tensor(pos, b, 1);
        let mut x = self.embed(tokens, positions);
        for m in cache.key_mask.iter_mut() {
            m.push(true);
        }
        let tk = cache.len();
        let mut bias = Vec::with_capacity(b * tk);
        for m in &cache.key_mask {
            bias.extend(m.iter().map(|ok| if *ok { 0.0f32 } else { MASKED }));
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, 1, tk]), &device);
        for (blk, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = blk.forward(x, bias.clone(), Some(slot));
        }
        for p in cache.next_pos.iter_mut() {
            *p += 1;
        }
        Ok(self.head(x).reshape([b, self.config.vocab_size]))
    }
}
