//! LoRA adapters for the Llama model: low-rank deltas `x·A·B·(alpha/rank)` on chosen attention and MLP projections
//! (q, k, v, o, gate, up, down), a trainable `LoraLlama` whose only parameters are the adapters (the base weights
//! are frozen constants; the adapters run as a `ProjectionHook` in the llama forward), so the `lm` learners
//! (DPO/IPO/GRPO, AdamW, EMA) train it unchanged; merging into a plain
//! `LlamaModel` for fast KV-cached generation; and safetensors save/load of the adapters.
//!
//! Adapters live in the loaded checkpoint's basis: for a GGUF file the Q/K rows are in llama.cpp's permuted order
//! (the safetensors metadata records `rope_layout`), so adapters are reusable with the same weights file.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::formats::SafetensorsFile;
use crate::formats::safetensors::to_bytes_f32;
use crate::llama::{LlamaModel, Projection, ProjectionHook, RopeLayout};
use crate::lm::{CausalLm, LmError, SplitMix64, TokenBatch};

/// A projection LoRA can adapt.
pub const TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

fn d_rank() -> usize {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<String> {
    vec!["q".into(), "v".into()]
}

/// LoRA settings (a scenario table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of each adapter (default 8).
    #[serde(default = "d_rank")]
    #[schemars(range(min = 1, max = 4096))]
    pub rank: usize,
    /// Scale numerator: the delta is multiplied by alpha / rank (default 16).
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Which projections get adapters: any of q, k, v, o, gate, up, down (default ["q", "v"]).
    #[serde(default = "d_targets")]
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: d_rank(),
            alpha: d_alpha(),
            targets: d_targets(),
        }
    }
}

impl LoraConfig {
    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 || self.rank > 4096 {
            return Err("lora.rank: must be in 1..=4096".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err("lora.alpha: must be > 0".into());
        }
        if self.targets.is_empty() {
            return Err("lora.targets: at least one projection".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !TARGETS.contains(&t.as_str()) {
                return Err(format!(
                    "lora.targets[{i}]: unknown projection `{t}` (known: {})",
                    TARGETS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The projections the adapters change.
    pub fn projections(&self) -> Vec<Projection> {
        self.targets
            .iter()
            .filter_map(|t| {
                Some(match t.as_str() {
                    "q" => Projection::Q,
                    "k" => Projection::K,
                    "v" => Projection::V,
                    "o" => Projection::O,
                    "gate" => Projection::Gate,
                    "up" => Projection::Up,
                    "down" => Projection::Down,
                    _ => return None,
                })
            })
            .collect()
    }

    fn wants(&self, t: &str) -> bool {
        self.targets.iter().any(|x| x == t)
    }
}

/// A named tensor: `(name, shape, row-major data)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// One adapter matrix read back ([`LoraLlama::adapter_matrices`]).
pub struct AdapterMatrix {
    pub layer: usize,
    /// The projection: one of [`TARGETS`].
    pub target: &'static str,
    /// `lora_a` (`[in, r]`) or `lora_b` (`[r, out]`).
    pub which: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One adapter: `A [in, r]`, `B [r, out]`; the delta of `x` is `x·A·B·scale`.
#[derive(Module, Debug)]
pub struct LoraPair {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
}

/// The adapters of one decoder block (`None` = not adapted).
#[derive(Module, Debug)]
pub struct LoraBlock {
    pub q: Option<LoraPair>,
    pub k: Option<LoraPair>,
    pub v: Option<LoraPair>,
    pub o: Option<LoraPair>,
    pub gate: Option<LoraPair>,
    pub up: Option<LoraPair>,
    pub down: Option<LoraPair>,
}

impl LoraBlock {
    fn get(&self, t: &str) -> Option<&LoraPair> {
        match t {
            "q" => self.q.as_ref(),
            "k" => self.k.as_ref(),
            "v" => self.v.as_ref(),
            "o" => self.o.as_ref(),
            "gate" => self.gate.as_ref(),
            "up" => self.up.as_ref(),
            "down" => self.down.as_ref(),
            _ => None,
        }
    }
}

/// A frozen Llama model with trainable LoRA adapters. Its only `Param`s are the adapters.
#[derive(Module, Debug)]
pub struct LoraLlama {
    pub blocks: Vec<LoraBlock>,
    #[module(skip)]
    base: LlamaModel,
    #[module(skip)]
    cfg: LoraConfig,
}

/// Uniform in [-1, 1) with 24 random bits.
fn uniform(rng: &mut SplitMix64) -> f32 {
    ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn base_weight(m: &LlamaModel, layer: usize, t: &str) -> Option<Tensor<2>> {
    let b = m.blocks.get(layer)?;
    Some(match t {
        "q" => b.attn.q.val(),
        "k" => b.attn.k.val(),
        "v" => b.attn.v.val(),
        "o" => b.attn.o.val(),
        "gate" => b.mlp.gate.val(),
        "up" => b.mlp.up.val(),
        "down" => b.mlp.down.val(),
        _ => return None,
    })
}

impl LoraLlama {
    /// Fresh adapters over `base`: A uniform in ±1/√in (seeded), B zero, so the model starts equal to `base`.
    pub fn new(base: LlamaModel, cfg: LoraConfig, seed: u64) -> Result<Self, String> {
        cfg.validate()?;
        let device = base.device();
        let mut rng = SplitMix64::new(seed);
        let mut blocks = Vec::with_capacity(base.blocks.len());
        for l in 0..base.blocks.len() {
            let mut mk = |t: &str| -> Option<LoraPair> {
                if !cfg.wants(t) {
                    return None;
                }
                let [din, dout] = base_weight(&base, l, t)?.dims();
                let bound = 1.0 / (din as f32).sqrt();
                let a: Vec<f32> = (0..din * cfg.rank)
                    .map(|_| uniform(&mut rng) * bound)
                    .collect();
                Some(LoraPair {
                    a: Param::from_tensor(Tensor::from_data(
                        TensorData::new(a, [din, cfg.rank]),
                        &device,
                    )),
                    b: Param::from_tensor(Tensor::zeros([cfg.rank, dout], &device)),
                })
            };
            blocks.push(LoraBlock {
                q: mk("q"),
                k: mk("k"),
                v: mk("v"),
                o: mk("o"),
                gate: mk("gate"),
                up: mk("up"),
                down: mk("down"),
            });
        }
        Ok(LoraLlama { blocks, base, cfg })
    }

    /// The frozen base model.
    pub fn base(&self) -> &LlamaModel {
        &self.base
    }

    /// The LoRA settings.
    pub fn lora_config(&self) -> &LoraConfig {
        &self.cfg
    }

    fn scale(&self) -> f64 {
        self.cfg.alpha / self.cfg.rank as f64
    }

    /// The base model with every adapter merged into its weights (plain device, for KV-cached generation).
    pub fn merged(&self) -> LlamaModel {
        let mut m = self.base.clone();
        let s = self.scale();
        for (l, ab) in self.blocks.iter().enumerate() {
            let Some(blk) = m.blocks.get_mut(l) else {
                continue;
            };
            let delta = |p: &LoraPair| p.a.val().inner().matmul(p.b.val().inner()).mul_scalar(s);
            let upd = |w: &mut Param<Tensor<2>>, p: Option<&LoraPair>| {
                if let Some(p) = p {
                    *w = Param::from_tensor(w.val().inner() + delta(p));
                }
            };
            upd(&mut blk.attn.q, ab.q.as_ref());
            upd(&mut blk.attn.k, ab.k.as_ref());
            upd(&mut blk.attn.v, ab.v.as_ref());
            upd(&mut blk.attn.o, ab.o.as_ref());
            upd(&mut blk.mlp.gate, ab.gate.as_ref());
            upd(&mut blk.mlp.up, ab.up.as_ref());
            upd(&mut blk.mlp.down, ab.down.as_ref());
        }
        m
    }

    /// The adapter matrices read back, layer by layer, in [`TARGETS`] order, A before B.
    pub fn adapter_matrices(&self) -> Result<Vec<AdapterMatrix>, String> {
        let mut out = Vec::new();
        for (l, b) in self.blocks.iter().enumerate() {
            for t in TARGETS {
                if let Some(p) = b.get(t) {
                    for (n, w) in [("lora_a", p.a.val()), ("lora_b", p.b.val())] {
                        let shape = w.dims().to_vec();
                        let data = w
                            .inner()
                            .into_data()
                            .try_into_vec::<f32>()
                            .map_err(|e| format!("reading adapter {l}.{t}.{n}: {e:?}"))?;
                        out.push(AdapterMatrix {
                            layer: l,
                            target: t,
                            which: n,
                            shape,
                            data,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The adapters as `(name, shape, data)`: `layers.{i}.{target}.lora_a` `[in, r]` and `.lora_b` `[r, out]`.
    pub fn adapter_tensors(&self) -> Result<Vec<NamedTensor>, String> {
        Ok(self
            .adapter_matrices()?
            .into_iter()
            .map(|m| {
                let name = format!("layers.{}.{}.{}", m.layer, m.target, m.which);
                (name, m.shape, m.data)
            })
            .collect())
    }

    /// The adapters as safetensors bytes; metadata records rank, alpha, targets and the RoPE layout.
    pub fn adapter_bytes(&self) -> Result<Vec<u8>, String> {
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "sparring-lora".to_string());
        meta.insert("rank".to_string(), self.cfg.rank.to_string());
        meta.insert("alpha".to_string(), self.cfg.alpha.to_string());
        meta.insert("targets".to_string(), self.cfg.targets.join(","));
        let layout = match self.base.config().rope_layout {
            RopeLayout::Interleaved => "interleaved",
            RopeLayout::RotateHalf => "rotate-half",
        };
        meta.insert("rope_layout".to_string(), layout.to_string());
        Ok(to_bytes_f32(&self.adapter_tensors()?, &meta))
    }

    /// Writes the adapters to a safetensors file.
    pub fn save_adapters(&self, path: &Path) -> Result<(), String> {
        let bytes = self.adapter_bytes()?;
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Replaces the adapters with those in safetensors `bytes` (`origin` names the file in errors). Every adapter
    /// of this model must be present with the right shape.
    pub fn load_adapter_bytes(self, bytes: Vec<u8>, origin: &str) -> Result<Self, String> {
        let f = SafetensorsFile::parse(bytes).map_err(|e| format!("{origin}: {e}"))?;
        let device = self.base.device();
        let mut blocks = self.blocks;
        for (l, b) in blocks.iter_mut().enumerate() {
            for t in TARGETS {
                let slot = match t {
                    "q" => &mut b.q,
                    "k" => &mut b.k,
                    "v" => &mut b.v,
                    "o" => &mut b.o,
                    "gate" => &mut b.gate,
                    "up" => &mut b.up,
                    _ => &mut b.down,
                };
                let Some(p) = slot.as_mut() else { continue };
                for (n, w) in [("lora_a", &mut p.a), ("lora_b", &mut p.b)] {
                    let name = format!("layers.{l}.{t}.{n}");
                    let want = w.val().dims();
                    let (shape, data) = f
                        .tensor_f32(&name)
                        .map_err(|e| format!("{origin}: tensor `{name}`: {e}"))?;
                    if shape != want.to_vec() {
                        return Err(format!(
                            "{origin}: tensor `{name}` has shape {shape:?}, expected {want:?}"
                        ));
                    }
                    *w =
                        Param::from_tensor(Tensor::from_data(TensorData::new(data, want), &device));
                }
            }
        }
        Ok(LoraLlama {
            blocks,
            base: self.base,
            cfg: self.cfg,
        })
    }

    /// Reads adapters written by `save_adapters`.
    pub fn load_adapters(self, path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.load_adapter_bytes(bytes, &path.display().to_string())
    }

    /// Full forward of left-padded rows (no cache): logits `[batch, seq, vocab]`. `ids` and `mask` are `b` rows of
    /// `s` tokens, flattened. The base model's forward with the adapters as a projection hook.
    pub fn forward_rows(
        &self,
        ids: &[u32],
        mask: &[bool],
        b: usize,
        s: usize,
    ) -> Result<Tensor<3>, String> {
        if ids.len() != b * s || mask.len() != b * s {
            return Err(format!(
                "{} ids / {} mask flags for {b} rows of {s}",
                ids.len(),
                mask.len()
            ));
        }
        let rows: Vec<Vec<u32>> = ids.chunks(s.max(1)).map(<[u32]>::to_vec).collect();
        let valid: Vec<Vec<bool>> = mask.chunks(s.max(1)).map(<[bool]>::to_vec).collect();
        self.base
            .forward_hooked(&rows, &valid, self)
            .map_err(|e| e.to_string())
    }
}

impl ProjectionHook for LoraLlama {
    fn delta(&self, layer: usize, proj: Projection, x: &Tensor<3>) -> Option<Tensor<3>> {
        let b = self.blocks.get(layer)?;
        let p = match proj {
            Projection::Q => b.q.as_ref(),
            Projection::K => b.k.as_ref(),
            Projection::V => b.v.as_ref(),
            Projection::O => b.o.as_ref(),
            Projection::Gate => b.gate.as_ref(),
            Projection::Up => b.up.as_ref(),
            Projection::Down => b.down.as_ref(),
        }?;
        let d = linear(linear(x.clone(), p.a.val(), None), p.b.val(), None);
        Some(d.mul_scalar(self.scale()))
    }
}

impl CausalLm for LoraLlama {
    fn vocab_size(&self) -> usize {
        self.base.config().vocab_size
    }
    fn max_len(&self) -> usize {
        self.base.config().max_positions
    }
    fn device(&self) -> Device {
        match self
            .blocks
            .iter()
            .flat_map(|b| TARGETS.map(|t| b.get(t)))
            .flatten()
            .next()
        {
            Some(p) => p.a.val().device(),
            None => self.base.device(),
        }
    }
    fn forward_batch(&self, batch: &TokenBatch) -> Result<Tensor<3>, LmError> {
        batch.check(self.vocab_size(), self.max_len())?;
        self.forward_rows(&batch.tokens, &batch.mask, batch.batch, batch.len)
            .map_err(LmError::Input)
    }
    fn forward_tail(&self, batch: &TokenBatch, tail: usize) -> Option<Result<Tensor<3>, LmError>> {
        let run = || {
            batch.check(self.vocab_size(), self.max_len())?;
            let (rows, valid) = batch.rows();
            self.base
                .forward_tail(&rows, &valid, Some(self), tail)
                .map_err(|e| LmError::Input(e.to_string()))
        };
        Some(run())
    }
}
