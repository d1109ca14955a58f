//! A trained chat player taken away (`sparring export`): its weights, adapters merged, as a Hugging Face directory
//! (`config.json`, `model.safetensors`, tokenizer files with the chat template) that transformers and sparring
//! load, or its LoRA adapters alone in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`).
//!
//! Both are written in HF conventions: linear weights `[out, in]`, and — when the model came from a llama GGUF,
//! whose Q/K rows llama.cpp permuted for RoPE on adjacent pairs — Q/K rows (and the rows of the Q/K adapters' B)
//! un-permuted to HF order, so the export pairs with `sparring convert`'s HF form of the same base.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Tensor;

use super::lora::{LoraConfig, LoraLlama};
use crate::formats::TextTokenizer;
use crate::formats::convert::{ConvertOptions, write_hf_dir};
use crate::formats::gguf::unpermute_qk;
use crate::formats::safetensors::to_bytes_f32;
use crate::formats::{FormatError, GgufFile, LlamaConfig as HfConfig, Result, TensorSource};
use crate::llama::load::{LayerTensor, WeightNaming};
use crate::llama::{LlamaModel, RopeLayout};

/// The HF `config.json` of a model file (a GGUF file or an HF directory), as [`crate::formats::convert`] writes it.
pub fn source_config(path: &Path) -> Result<HfConfig> {
    if path.is_dir() {
        HfConfig::from_file(&path.join("config.json"))
    } else {
        HfConfig::from_gguf(&GgufFile::open(path)?)
    }
}

/// Writes `model` as an HF directory at `out`: `config` (the source model's, re-described for F32 weights and
/// the model's own head tying), `tokenizer` (with its chat template), every weight in F32.
pub fn write_merged(
    model: &LlamaModel,
    config: &HfConfig,
    tokenizer: &TextTokenizer,
    out: &Path,
) -> Result<()> {
    let mut config = config.clone();
    config.torch_dtype = "float32".into();
    config.tie_word_embeddings = model.head.is_none();
    let tensors = ModelTensors::new(model);
    write_hf_dir(
        out,
        &config,
        tokenizer,
        &tensors,
        &ConvertOptions::default(),
    )
}

/// Writes the adapters of `lora` at `out` in PEFT's layout: `adapter_model.safetensors` with
/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight` `[r, in]` and `.lora_B.weight`
/// `[out, r]`, and `adapter_config.json` (`r`, `lora_alpha`, `target_modules`, `base_model_name_or_path` =
/// `base_name`).
pub fn write_peft_adapter(lora: &LoraLlama, base_name: &str, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| FormatError::io(out, e))?;
    let cfg = lora.lora_config();
    let base = lora.base().config();
    let permuted = base.rope_layout == RopeLayout::Interleaved;
    let adapters = lora
        .adapter_matrices()
        .map_err(|m| FormatError::invalid("adapters", m))?;
    let mut tensors = Vec::with_capacity(adapters.len());
    for m in adapters {
        let bad = || {
            let what = format!("unexpected adapter {}.{}", m.target, m.which);
            FormatError::invalid("adapters", what)
        };
        let module = peft_module(m.target).ok_or_else(bad)?;
        let [rows, cols] = m.shape[..] else {
            return Err(bad());
        };
        // PEFT stores both as torch Linear weights: A `[r, in]`, B `[out, r]`, i.e. ours transposed.
        let mut t = transpose(&m.data, rows, cols);
        let heads = match m.target {
            "q" => Some(base.num_heads),
            "k" => Some(base.num_kv_heads),
            _ => None,
        };
        if let (true, "lora_b", Some(n)) = (permuted, m.which, heads) {
            t = unpermute_qk(&t, &[cols, rows], n)?;
        }
        let ab = if m.which == "lora_a" {
            "lora_A"
        } else {
            "lora_B"
        };
        let name = format!(
            "base_model.model.model.layers.{}.{module}.{ab}.weight",
            m.layer
        );
        tensors.push((name, vec![cols, rows], t));
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let p = out.join("adapter_model.safetensors");
    std::fs::write(&p, to_bytes_f32(&tensors, &meta)).map_err(|e| FormatError::io(&p, e))?;
    let config = adapter_config(cfg, base_name);
    let p = out.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| FormatError::invalid("adapter_config.json", e.to_string()))?;
    std::fs::write(&p, text + "\n").map_err(|e| FormatError::io(&p, e))
}

/// PEFT's `adapter_config.json` for our LoRA settings (no dropout, no bias, plain LoRA scaling alpha / r).
fn adapter_config(cfg: &LoraConfig, base_name: &str) -> serde_json::Value {
    let targets: Vec<&str> = cfg
        .targets
        .iter()
        .filter_map(|t| peft_module(t))
        .map(|m| m.rsplit('.').next().unwrap_or(m))
        .collect();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "target_modules": targets,
        "modules_to_save": null,
    })
}

/// The HF module path (under a decoder layer) of a LoRA target.
fn peft_module(target: &str) -> Option<&'static str> {
    Some(match target {
        "q" => "self_attn.q_proj",
        "k" => "self_attn.k_proj",
        "v" => "self_attn.v_proj",
        "o" => "self_attn.o_proj",
        "gate" => "mlp.gate_proj",
        "up" => "mlp.up_proj",
        "down" => "mlp.down_proj",
        _ => return None,
    })
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Where a tensor of the model lives.
#[derive(Clone, Copy)]
enum Slot {
    Embed,
    Norm,
    Head,
    Layer(usize, LayerTensor),
}

/// A [`LlamaModel`] read as an HF checkpoint: HF names, `[out, in]` linear weights, Q/K rows in HF order.
pub struct ModelTensors<'a> {
    model: &'a LlamaModel,
    slots: Vec<(String, Slot)>,
}

impl<'a> ModelTensors<'a> {
    /// Lists the model's tensors in the order transformers writes them.
    pub fn new(model: &'a LlamaModel) -> Self {
        let n = WeightNaming::HuggingFace;
        let mut slots = vec![(n.embedding().to_string(), Slot::Embed)];
        let bias = model.config().qkv_bias;
        for i in 0..model.blocks.len() {
            use LayerTensor::*;
            for t in [
                AttnNorm, Q, QBias, K, KBias, V, VBias, O, FfnNorm, Gate, Up, Down,
            ] {
                if bias || !matches!(t, QBias | KBias | VBias) {
                    slots.push((n.layer(i, t), Slot::Layer(i, t)));
                }
            }
        }
        slots.push((n.final_norm().to_string(), Slot::Norm));
        if model.head.is_some() {
            slots.push((n.head().to_string(), Slot::Head));
        }
        ModelTensors { model, slots }
    }

    fn slot(&self, name: &str) -> Option<Slot> {
        self.slots.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }

    /// The tensor in Burn's layout, and whether it is a linear weight (Burn `[in, out]`, HF `[out, in]`).
    fn raw(&self, slot: Slot) -> Option<(Raw, bool)> {
        let m = self.model;
        let (two, one) = (|t: Tensor<2>| Raw::Two(t), |t: Tensor<1>| Raw::One(t));
        Some(match slot {
            Slot::Embed => (two(m.embed.val()), false),
            Slot::Norm => (one(m.norm.val()), false),
            Slot::Head => (two(m.head.as_ref()?.val()), true),
            Slot::Layer(i, t) => {
                let b = m.blocks.get(i)?;
                use LayerTensor::*;
                match t {
                    AttnNorm => (one(b.attn_norm.val()), false),
                    FfnNorm => (one(b.mlp_norm.val()), false),
                    QBias => (one(b.attn.q_bias.as_ref()?.val()), false),
                    KBias => (one(b.attn.k_bias.as_ref()?.val()), false),
                    VBias => (one(b.attn.v_bias.as_ref()?.val()), false),
                    Q => (two(b.attn.q.val()), true),
                    K => (two(b.attn.k.val()), true),
                    V => (two(b.attn.v.val()), true),
                    O => (two(b.attn.o.val()), true),
                    Gate => (two(b.mlp.gate.val()), true),
                    Up => (two(b.mlp.up.val()), true),
                    Down => (two(b.mlp.down.val()), true),
                }
            }
        })
    }
}

/// A weight of the model, not yet read back.
enum Raw {
    One(Tensor<1>),
    Two(Tensor<2>),
}

impl Raw {
    fn dims(&self) -> Vec<usize> {
        match self {
            Raw::One(t) => t.dims().to_vec(),
            Raw::Two(t) => t.dims().to_vec(),
        }
    }

    fn read(self) -> std::result::Result<Vec<f32>, String> {
        let data = match self {
            Raw::One(t) => t.into_data(),
            Raw::Two(t) => t.into_data(),
        };
        data.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))
    }
}

impl TensorSource for ModelTensors<'_> {
    fn names(&self) -> Vec<String> {
        self.slots.iter().map(|(n, _)| n.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (raw, linear) = self.raw(self.slot(name)?)?;
        let dims = raw.dims();
        Some(if linear {
            dims.into_iter().rev().collect()
        } else {
            dims
        })
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let missing = || FormatError::invalid("model", format!("no tensor `{name}`"));
        let slot = self.slot(name).ok_or_else(missing)?;
        let (raw, linear) = self.raw(slot).ok_or_else(missing)?;
        let dims = raw.dims();
        let data = raw.read().map_err(|m| FormatError::invalid(name, m))?;
        let (shape, data) = match (linear, &dims[..]) {
            (true, &[i, o]) => (vec![o, i], transpose(&data, i, o)),
            _ => (dims, data),
        };
        let cfg = self.model.config();
        let heads = match slot {
            Slot::Layer(_, LayerTensor::Q | LayerTensor::QBias) => Some(cfg.num_heads),
            Slot::Layer(_, LayerTensor::K | LayerTensor::KBias) => Some(cfg.num_kv_heads),
            _ => None,
        };
        match heads {
            Some(n) if cfg.rope_layout == RopeLayout::Interleaved => {
                let data = unpermute_qk(&data, &shape, n)?;
                Ok((shape, data))
            }
            _ => Ok((shape, data)),
        }
    }
}
