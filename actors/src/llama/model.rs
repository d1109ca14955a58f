//! The Llama-family network in Burn: RMSNorm, RoPE (interleaved or rotate-half), grouped-query
//! attention with optional q/k/v bias, SwiGLU MLP, tied or untied head, and a preallocated KV
//! cache written in place. Batches are left-padded: every row carries a validity mask and its
//! RoPE positions start at 0 on its first real token. A [`ProjectionHook`] adds a term to any
//! projection in the cache-less forward (how LoRA adapters run without a copy of this forward).
#![allow(clippy::needless_range_loop)] // index loops mirror the [batch, position] mask layout

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::{LlamaConfig, RopeLayout};
use super::error::LlamaError;
use super::load::{LayerTensor, TensorLookup, WeightNaming};
use sparring_engine::rng::SplitMix64;

/// Attention projections; weights are stored `[in, out]` (Burn's `Linear` convention).
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `[hidden, heads * head_dim]`
    pub q: Param<Tensor<2>>,
    /// `[hidden, kv_heads * head_dim]`
    pub k: Param<Tensor<2>>,
    /// `[hidden, kv_heads * head_dim]`
    pub v: Param<Tensor<2>>,
    /// `[heads * head_dim, hidden]`
    pub o: Param<Tensor<2>>,
    /// Qwen2-style biases.
    pub q_bias: Option<Param<Tensor<1>>>,
    pub k_bias: Option<Param<Tensor<1>>>,
    pub v_bias: Option<Param<Tensor<1>>>,
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`, weights `[in, out]`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    pub gate: Param<Tensor<2>>,
    pub up: Param<Tensor<2>>,
    pub down: Param<Tensor<2>>,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct LlamaBlock {
    pub attn_norm: Param<Tensor<1>>,
    pub attn: LlamaAttention,
    pub mlp_norm: Param<Tensor<1>>,
    pub mlp: LlamaMlp,
}

/// A Llama-family causal LM.
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// Token embedding `[vocab, hidden]` (also the head when tied).
    pub embed: Param<Tensor<2>>,
    pub blocks: Vec<LlamaBlock>,
    pub norm: Param<Tensor<1>>,
    /// Untied output head `[hidden, vocab]`; `None` when tied to `embed`.
    pub head: Option<Param<Tensor<2>>>,
    #[module(skip)]
    config: LlamaConfig,
}

/// Which positions get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsMode {
    /// Logits at every position: `[batch, seq, vocab]`.
    All,
    /// Only at the last position of the chunk: `[batch, 1, vocab]` (generation).
    Last,
    /// At the last `n` positions: `[batch, n, vocab]` (learning: the response tokens' log-probs, without the
    /// prompt's logits).
    Tail(usize),
}

/// Preallocated key/value cache for a batch of left-padded rows.
///
/// Keys/values of layer `l` live in `[batch, kv_heads, capacity, head_dim]` tensors that are
/// written in place with `slice_assign`; `len` slots are filled (the same for every row: padding
/// slots are marked invalid instead).
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor<4>>,
    values: Vec<Tensor<4>>,
    batch: usize,
    capacity: usize,
    len: usize,
    /// `valid[r * capacity + j]`: slot `j` of row `r` holds a real token.
    valid: Vec<bool>,
    /// Next RoPE position of each row (number of real tokens seen).
    next_pos: Vec<usize>,
}

impl KvCache {
    /// An empty cache for `batch` rows and at most `capacity` tokens per row.
    pub fn new(config: &LlamaConfig, batch: usize, capacity: usize, device: &Device) -> Self {
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let keys = (0..config.num_layers)
            .map(|_| Tensor::zeros(shape, device))
            .collect();
        let values = (0..config.num_layers)
            .map(|_| Tensor::zeros(shape, device))
            .collect();
        Self {
            keys,
            values,
            batch,
            capacity,
            len: 0,
            valid: vec![false; batch * capacity],
            next_pos: vec![0; batch],
        }
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Slots per row.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Filled slots (prompt + generated, padding included).
    pub fn len(&self) -> usize {
        self.len
    }
    /// No slot filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Next RoPE position of each row.
    pub fn positions(&self) -> &[usize] {
        &self.next_pos
    }
    /// Forget the contents (keeps the allocation).
    pub fn reset(&mut self) {
        self.len = 0;
        self.valid.iter_mut().for_each(|v| *v = false);
        self.next_pos.iter_mut().for_each(|p| *p = 0);
    }
}

/// A projection of a decoder block, for [`ProjectionHook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// Adds a term to projections' outputs in the forward pass: `y = x·W (+ bias) + delta(x)` (LoRA
/// adapters: `delta(x) = x·A·B·scale`).
pub trait ProjectionHook {
    /// The extra term of `layer`'s `proj` for its input `x` (`[batch, seq, in]`), or `None`.
    fn delta(&self, layer: usize, proj: Projection, x: &Tensor<3>) -> Option<Tensor<3>>;
}

type Hook<'a> = Option<&'a dyn ProjectionHook>;

/// `x·W (+ bias)`, plus the hook's term.
fn project(
    hook: Hook<'_>,
    layer: usize,
    proj: Projection,
    x: Tensor<3>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<3> {
    let d = hook.and_then(|h| h.delta(layer, proj, &x));
    let y = linear(x, w, bias);
    match d {
        Some(d) => y + d,
        None => y,
    }
}

/// Host-side description of one forward chunk: RoPE tables and the attention mask.
struct ChunkPlan {
    cos: Tensor<4>,
    sin: Tensor<4>,
    mask: Tensor<4, Bool>,
}

impl LlamaModel {
    /// The architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Device the weights live on.
    pub fn device(&self) -> Device {
        self.embed.val().device()
    }

    /// Random weights (uniform, small), deterministic in `seed`; for tests and benchmarks.
    pub fn random(config: &LlamaConfig, seed: u64, device: &Device) -> Result<Self, LlamaError> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let mut mat = |rows: usize, cols: usize, scale: f32| -> Param<Tensor<2>> {
            let data: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
                .collect();
            Param::from_tensor(Tensor::from_data(
                TensorData::new(data, [rows, cols]),
                device,
            ))
        };
        let c = config;
        let h = c.hidden_size;
        let qd = c.num_heads * c.head_dim;
        let kvd = c.num_kv_heads * c.head_dim;
        let s_in = 1.0 / (h as f32).sqrt();
        let s_ff = 1.0 / (c.intermediate_size as f32).sqrt();
        let mut blocks = Vec::with_capacity(c.num_layers);
        let embed = mat(c.vocab_size, h, 1.0);
        for _ in 0..c.num_layers {
            let attn = LlamaAttention {
                q: mat(h, qd, s_in),
                k: mat(h, kvd, s_in),
                v: mat(h, kvd, s_in),
                o: mat(qd, h, 1.0 / (qd as f32).sqrt()),
                q_bias: None,
                k_bias: None,
                v_bias: None,
            };
            let mlp = LlamaMlp {
                gate: mat(h, c.intermediate_size, s_in),
                up: mat(h, c.intermediate_size, s_in),
                down: mat(c.intermediate_size, h, s_ff),
            };
            blocks.push(LlamaBlock {
                attn_norm: ones(h, device),
                attn,
                mlp_norm: ones(h, device),
                mlp,
            });
        }
        let mut model = Self {
            embed,
            blocks,
            norm: ones(h, device),
            head: None,
            config: c.clone(),
        };
        if !c.tie_embeddings {
            model.head = Some(mat(h, c.vocab_size, s_in));
        }
        if c.qkv_bias {
            let mut vec1 = |n: usize| -> Param<Tensor<1>> {
                let data: Vec<f32> = (0..n)
                    .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * 0.1)
                    .collect();
                Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), device))
            };
            for b in &mut model.blocks {
                b.attn.q_bias = Some(vec1(qd));
                b.attn.k_bias = Some(vec1(kvd));
                b.attn.v_bias = Some(vec1(kvd));
            }
        }
        Ok(model)
    }

    /// Builds the model from named f32 tensors (GGUF or HF names). An untied `config` needs the
    /// head tensor (an error naming it otherwise). A tied one ignores a head tensor under HF names
    /// (as transformers does) but uses it under GGUF names (as llama.cpp does: `output.weight`
    /// decides).
    pub fn from_tensors(
        config: &LlamaConfig,
        source: &dyn TensorLookup,
        naming: WeightNaming,
        device: &Device,
    ) -> Result<Self, LlamaError> {
        config.validate()?;
        let c = config;
        let h = c.hidden_size;
        let qd = c.num_heads * c.head_dim;
        let kvd = c.num_kv_heads * c.head_dim;
        let ff = c.intermediate_size;

        let fetch = |name: &str| -> Result<Option<(Vec<usize>, Vec<f32>)>, LlamaError> {
            source
                .tensor_f32(name)
                .map_err(|message| LlamaError::Source {
                    name: name.to_string(),
                    message,
                })
        };
        let req = |name: &str, shape: &[usize]| -> Result<Vec<f32>, LlamaError> {
            let (got, data) = fetch(name)?.ok_or_else(|| LlamaError::MissingTensor(name.into()))?;
            // A 1-D tensor may come as [n] or [1, n].
            let squeezed: Vec<usize> = got.iter().copied().filter(|&d| d != 1).collect();
            let want: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
            if squeezed != want || data.len() != shape.iter().product::<usize>() {
                return Err(LlamaError::ShapeMismatch {
                    name: name.into(),
                    expected: shape.to_vec(),
                    got,
                });
            }
            Ok(data)
        };
        // A linear layer stored [out, in] becomes a Param [in, out].
        let lin = |name: &str, out_f: usize, in_f: usize| -> Result<Param<Tensor<2>>, LlamaError> {
            let data = req(name, &[out_f, in_f])?;
            let t = transpose(&data, out_f, in_f);
            Ok(Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [in_f, out_f]),
                device,
            )))
        };
        let vec1 = |name: &str, n: usize| -> Result<Param<Tensor<1>>, LlamaError> {
            let data = req(name, &[n])?;
            Ok(Param::from_tensor(Tensor::from_data(
                TensorData::new(data, [n]),
                device,
            )))
        };

        let emb_name = naming.embedding();
        let embed_data = req(emb_name, &[c.vocab_size, h])?;
        let embed = Param::from_tensor(Tensor::from_data(
            TensorData::new(embed_data, [c.vocab_size, h]),
            device,
        ));
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let n = |t| naming.layer(i, t);
            let bias = |t, len| -> Result<Option<Param<Tensor<1>>>, LlamaError> {
                if c.qkv_bias {
                    vec1(&n(t), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            let attn = LlamaAttention {
                q: lin(&n(LayerTensor::Q), qd, h)?,
                k: lin(&n(LayerTensor::K), kvd, h)?,
                v: lin(&n(LayerTensor::V), kvd, h)?,
                o: lin(&n(LayerTensor::O), h, qd)?,
                q_bias: bias(LayerTensor::QBias, qd)?,
                k_bias: bias(LayerTensor::KBias, kvd)?,
                v_bias: bias(LayerTensor::VBias, kvd)?,
            };
            let mlp = LlamaMlp {
                gate: lin(&n(LayerTensor::Gate), ff, h)?,
                up: lin(&n(LayerTensor::Up), ff, h)?,
                down: lin(&n(LayerTensor::Down), h, ff)?,
            };
            blocks.push(LlamaBlock {
                attn_norm: vec1(&n(LayerTensor::AttnNorm), h)?,
                attn,
                mlp_norm: vec1(&n(LayerTensor::FfnNorm), h)?,
                mlp,
            });
        }
        let norm = vec1(naming.final_norm(), h)?;
        let use_head = !c.tie_embeddings || naming == WeightNaming::Gguf;
        let head = match fetch(naming.head())? {
            Some(_) if use_head => Some(lin(naming.head(), c.vocab_size, h)?),
            // The configuration says untied: the head must be there.
            None if !c.tie_embeddings => {
                return Err(LlamaError::MissingTensor(naming.head().to_string()));
            }
            _ => None,
        };
        let mut config = c.clone();
        config.tie_embeddings = head.is_none();
        Ok(Self {
            embed,
            blocks,
            norm,
            head,
            config,
        })
    }

    /// Loads a GGUF file (llama, mistral or qwen2 architecture): configuration from its
    /// metadata and tensors ([`LlamaConfig::from_gguf`]: RoPE scaling and `rope_freqs.weight`
    /// included), weights dequantized to f32, RoPE layout from the architecture.
    pub fn from_gguf(
        gguf: &crate::formats::gguf::GgufFile,
        device: &Device,
    ) -> Result<Self, LlamaError> {
        let config = LlamaConfig::from_gguf(gguf)?;
        Self::from_tensors(&config, gguf, WeightNaming::Gguf, device)
            .map_err(|e| e.in_file(&gguf.context()))
    }

    /// Opens and loads a GGUF file from disk (see [`from_gguf`](Self::from_gguf)).
    pub fn load_gguf(path: &std::path::Path, device: &Device) -> Result<Self, LlamaError> {
        let gguf = crate::formats::gguf::GgufFile::open(path).map_err(|e| LlamaError::Source {
            name: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_gguf(&gguf, device)
    }

    /// Loads a Hugging Face checkpoint directory (config.json + safetensors), rotate-half RoPE;
    /// the configuration is the checkpoint's [`model_config`](crate::formats::HfCheckpoint::model_config),
    /// read by [`LlamaConfig::from_hf_config`].
    pub fn from_hf_checkpoint(
        checkpoint: &crate::formats::HfCheckpoint,
        device: &Device,
    ) -> Result<Self, LlamaError> {
        Self::from_tensors(
            &checkpoint.model_config,
            checkpoint,
            WeightNaming::HuggingFace,
            device,
        )
        .map_err(|e| e.in_file(&checkpoint.dir.display().to_string()))
    }

    /// Opens and loads a Hugging Face checkpoint directory.
    pub fn load_hf_dir(dir: &std::path::Path, device: &Device) -> Result<Self, LlamaError> {
        let ck = crate::formats::HfCheckpoint::open(dir).map_err(|e| LlamaError::Source {
            name: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_hf_checkpoint(&ck, device)
    }

    /// Forward over a cache-less batch (training, scoring): `ids` are left-padded rows of equal
    /// length, `valid[r][j]` false on padding. Returns logits `[batch, seq, vocab]`.
    pub fn forward(&self, ids: &[Vec<u32>], valid: &[Vec<bool>]) -> Result<Tensor<3>, LlamaError> {
        self.forward_inner(ids, valid, None, LogitsMode::All)
    }

    /// As [`forward`](Self::forward), with `hook`'s terms added to the projections.
    pub fn forward_hooked(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        hook: &dyn ProjectionHook,
    ) -> Result<Tensor<3>, LlamaError> {
        self.forward_inner(ids, valid, Some(hook), LogitsMode::All)
    }

    /// As [`forward`](Self::forward) (with `hook`'s terms, if any), the logits of the last `tail` positions
    /// only: `[batch, tail, vocab]`.
    pub fn forward_tail(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        hook: Option<&dyn ProjectionHook>,
        tail: usize,
    ) -> Result<Tensor<3>, LlamaError> {
        self.forward_inner(ids, valid, hook, LogitsMode::Tail(tail))
    }

    fn forward_inner(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        hook: Hook<'_>,
        mode: LogitsMode,
    ) -> Result<Tensor<3>, LlamaError> {
        let (b, s) = check_rect(ids, valid)?;
        let starts = vec![0usize; b];
        let plan = self.plan(valid, &starts, 0, s, None)?;
        let x = self.embed_ids(ids, b, s)?;
        Ok(self.run(x, &plan, None, mode, hook))
    }

    /// Forward a chunk of new tokens through the cache: `ids` (equal-length rows, left-padded
    /// on the first chunk; `valid` false on padding) are appended after the cached slots.
    pub fn forward_cached(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
        mode: LogitsMode,
    ) -> Result<Tensor<3>, LlamaError> {
        let (b, s) = check_rect(ids, valid)?;
        if b != cache.batch {
            return Err(LlamaError::Input(format!(
                "batch of {b} rows for a cache of {} rows",
                cache.batch
            )));
        }
        if cache.len + s > cache.capacity {
            return Err(LlamaError::Input(format!(
                "cache full: {} + {s} tokens exceed capacity {}",
                cache.len, cache.capacity
            )));
        }
        // Record validity and positions of the new slots.
        let past = cache.len;
        for r in 0..b {
            for j in 0..s {
                cache.valid[r * cache.capacity + past + j] = valid[r][j];
            }
        }
        let starts = cache.next_pos.clone();
        let plan = self.plan(valid, &starts, past, s, Some(&*cache))?;
        for r in 0..b {
            cache.next_pos[r] += valid[r].iter().filter(|&&v| v).count();
        }
        let x = self.embed_ids(ids, b, s)?;
        let out = self.run(x, &plan, Some(&mut *cache), mode, None);
        cache.len += s;
        Ok(out)
    }

    fn embed_ids(&self, ids: &[Vec<u32>], b: usize, s: usize) -> Result<Tensor<3>, LlamaError> {
        let vocab = self.config.vocab_size;
        let mut flat = Vec::with_capacity(b * s);
        for row in ids {
            for &t in row {
                if t as usize >= vocab {
                    return Err(LlamaError::Input(format!(
                        "token id {t} out of range (vocab {vocab})"
                    )));
                }
                flat.push(t as i64);
            }
        }
        let device = self.device();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, s]), &device);
        Ok(embedding(self.embed.val(), idx))
    }

    /// RoPE tables for each new token and the boolean attention mask (true = masked).
    fn plan(
        &self,
        valid: &[Vec<bool>],
        starts: &[usize],
        past: usize,
        s: usize,
        cache: Option<&KvCache>,
    ) -> Result<ChunkPlan, LlamaError> {
        let c = &self.config;
        let b = valid.len();
        let half = c.head_dim / 2;
        let inv_freq = c.inv_freq();
        let mut cos = Vec::with_capacity(b * s * half);
        let mut sin = Vec::with_capacity(b * s * half);
        for r in 0..b {
            let mut pos = starts[r];
            for j in 0..s {
                let p = if valid[r][j] { pos } else { 0 };
                if valid[r][j] {
                    pos += 1;
                }
                if p >= c.max_positions.max(1) * 4 {
                    return Err(LlamaError::Input(format!(
                        "position {p} far beyond max_positions {}",
                        c.max_positions
                    )));
                }
                for &f in &inv_freq {
                    let a = (p as f32 * f) as f64;
                    cos.push(a.cos() as f32);
                    sin.push(a.sin() as f32);
                }
            }
        }
        let t = past + s;
        let mut mask = Vec::with_capacity(b * s * t);
        for r in 0..b {
            for i in 0..s {
                let qpos = past + i;
                for j in 0..t {
                    let key_valid = if j < past {
                        cache.is_some_and(|c| c.valid[r * c.capacity + j])
                    } else {
                        valid[r][j - past]
                    };
                    // Future keys and padding are masked; a padding query still sees itself
                    // so that no softmax row is empty.
                    let masked = j > qpos || (!key_valid && j != qpos);
                    mask.push(masked);
                }
            }
        }
        let device = self.device();
        // [b, s, 1, half]: broadcast over heads in the [b, s, heads, head_dim] layout.
        let cos = Tensor::<4>::from_data(TensorData::new(cos, [b, s, 1, half]), &device);
        let sin = Tensor::<4>::from_data(TensorData::new(sin, [b, s, 1, half]), &device);
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, s, t]), &device);
        Ok(ChunkPlan { cos, sin, mask })
    }

    fn run(
        &self,
        mut x: Tensor<3>,
        plan: &ChunkPlan,
        mut cache: Option<&mut KvCache>,
        mode: LogitsMode,
        hook: Hook<'_>,
    ) -> Tensor<3> {
        let eps = self.config.rms_eps;
        for (l, block) in self.blocks.iter().enumerate() {
            let h = rms_norm(x.clone(), block.attn_norm.val(), eps);
            let a = self.attention(l, &block.attn, h, plan, cache.as_deref_mut(), hook);
            x = x + a;
            let h = rms_norm(x.clone(), block.mlp_norm.val(), eps);
            let mlp = &block.mlp;
            let gate = silu(project(
                hook,
                l,
                Projection::Gate,
                h.clone(),
                mlp.gate.val(),
                None,
            ));
            let up = project(hook, l, Projection::Up, h, mlp.up.val(), None);
            x = x + project(hook, l, Projection::Down, gate * up, mlp.down.val(), None);
        }
        let x = match mode {
            LogitsMode::All => x,
            LogitsMode::Last => {
                let s = x.dims()[1];
                x.narrow(1, s - 1, 1)
            }
            LogitsMode::Tail(n) => {
                let s = x.dims()[1];
                let n = n.clamp(1, s);
                x.narrow(1, s - n, n)
            }
        };
        let x = rms_norm(x, self.norm.val(), eps);
        match &self.head {
            Some(w) => linear(x, w.val(), None),
            None => {
                // logits = x · Eᵀ computed as (E · xᵀ)ᵀ: the big operand stays contiguous
                // (a transposed [hidden, vocab] view would be copied on every call).
                let [b, s, h] = x.dims();
                let xt = x.reshape([b * s, h]).transpose();
                let vocab = self.config.vocab_size;
                self.embed
                    .val()
                    .matmul(xt)
                    .transpose()
                    .reshape([b, s, vocab])
            }
        }
    }

    fn attention(
        &self,
        layer: usize,
        attn: &LlamaAttention,
        x: Tensor<3>,
        plan: &ChunkPlan,
        cache: Option<&mut KvCache>,
        hook: Hook<'_>,
    ) -> Tensor<3> {
        let c = &self.config;
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let bias = |p: &Option<Param<Tensor<1>>>| p.as_ref().map(|p| p.val());
        let q = project(
            hook,
            layer,
            Projection::Q,
            x.clone(),
            attn.q.val(),
            bias(&attn.q_bias),
        );
        let k = project(
            hook,
            layer,
            Projection::K,
            x.clone(),
            attn.k.val(),
            bias(&attn.k_bias),
        );
        let v = project(
            hook,
            layer,
            Projection::V,
            x,
            attn.v.val(),
            bias(&attn.v_bias),
        );
        let q = self.rope(q.reshape([b, s, nh, hd]), plan).swap_dims(1, 2);
        let k = self.rope(k.reshape([b, s, nkv, hd]), plan).swap_dims(1, 2);
        let v = v.reshape([b, s, nkv, hd]).swap_dims(1, 2);
        let (k, v) = match cache {
            Some(cache) => {
                let past = cache.len;
                let t = past + s;
                cache.keys[layer].inplace(|kc| kc.slice_assign([0..b, 0..nkv, past..t, 0..hd], k));
                cache.values[layer]
                    .inplace(|vc| vc.slice_assign([0..b, 0..nkv, past..t, 0..hd], v));
                (
                    cache.keys[layer].clone().slice([0..b, 0..nkv, 0..t, 0..hd]),
                    cache.values[layer]
                        .clone()
                        .slice([0..b, 0..nkv, 0..t, 0..hd]),
                )
            }
            None => (k, v),
        };
        let autodiff =
            q.device().is_autodiff() || k.device().is_autodiff() || v.device().is_autodiff();
        let (k, v) = if nkv != nh && autodiff {
            // The autodiff fallback attention has no grouped-query support: repeat K/V heads
            // (also when only some operands are autodiff, as with adapters on frozen weights).
            let g = nh / nkv;
            let t = k.dims()[2];
            let rep = |x: Tensor<4>| {
                x.unsqueeze_dim::<5>(2)
                    .expand([b, nkv, g, t, hd])
                    .reshape([b, nh, t, hd])
            };
            (rep(k), rep(v))
        } else {
            (k, v)
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, Some(plan.mask.clone()), None, options);
        let out = out.swap_dims(1, 2).reshape([b, s, nh * hd]);
        project(hook, layer, Projection::O, out, attn.o.val(), None)
    }

    /// Applies RoPE to `x: [b, s, heads, head_dim]`.
    fn rope(&self, x: Tensor<4>, plan: &ChunkPlan) -> Tensor<4> {
        let [b, s, nh, hd] = x.dims();
        let half = hd / 2;
        let cos = plan.cos.clone();
        let sin = plan.sin.clone();
        match self.config.rope_layout {
            RopeLayout::RotateHalf => {
                let x1 = x.clone().narrow(3, 0, half);
                let x2 = x.narrow(3, half, half);
                let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
                let r2 = x2 * cos + x1 * sin;
                Tensor::cat(vec![r1, r2], 3)
            }
            RopeLayout::Interleaved => {
                let x = x.reshape([b, s, nh, half, 2]);
                let x1 = x.clone().narrow(4, 0, 1);
                let x2 = x.narrow(4, 1, 1);
                let cos = cos.unsqueeze_dim::<5>(4);
                let sin = sin.unsqueeze_dim::<5>(4);
                let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
                let r2 = x2 * cos + x1 * sin;
                Tensor::cat(vec![r1, r2], 4).reshape([b, s, nh, hd])
            }
        }
    }
}

fn ones(n: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::ones([n], device))
}

fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f64) -> Tensor<D> {
    let var = x.clone().powi_scalar(2).mean_dim(D - 1);
    x * var.add_scalar(eps).sqrt().recip() * w.unsqueeze::<D>()
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

fn check_rect(ids: &[Vec<u32>], valid: &[Vec<bool>]) -> Result<(usize, usize), LlamaError> {
    let b = ids.len();
    if b == 0 {
        return Err(LlamaError::Input("empty batch".into()));
    }
    if valid.len() != b {
        return Err(LlamaError::Input(format!(
            "{b} rows of ids but {} rows of validity",
            valid.len()
        )));
    }
    let s = ids[0].len();
    if s == 0 {
        return Err(LlamaError::Input("empty sequence".into()));
    }
    for (r, (row, vrow)) in ids.iter().zip(valid).enumerate() {
        if row.len() != s || vrow.len() != s {
            return Err(LlamaError::Input(format!(
                "row {r}: {} ids / {} flags, expected {s} (rows must be padded to equal length)",
                row.len(),
                vrow.len()
            )));
        }
    }
    Ok((b, s))
}
