//! The Hugging Face checkpoint layout: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) + `tokenizer.json` + `tokenizer_config.json` (+ `chat_template.jinja`), and
//! [`LlamaConfig`], the `config.json` of a llama-family model under HF key names.
//!
//! [`LlamaConfig`] is never parsed on its own: the architecture comes from the one reader,
//! [`crate::llama::LlamaConfig::from_hf_config`] (or [`crate::llama::LlamaConfig::from_gguf`]), and this struct is
//! written from it, so every path sees the same configuration (Qwen2's biases, RoPE scaling, ...). Conversions
//! between GGUF and this layout are in [`super::convert`] (re-exported here).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::convert::{
    ConvertOptions, convert_gguf_to_hf, convert_gguf_to_hf_with, convert_hf_to_gguf,
};
use super::gguf::GgufFile;
use super::safetensors::SafetensorsFile;
use super::tokenizer::TextTokenizer;
use super::{FormatError, Result, TensorSource};
use crate::llama::LlamaConfig as ModelConfig;
use crate::llama::LlamaError;

/// Hyper-parameters of a llama-family model (Llama, SmolLM2, Qwen2), with HF `config.json` key names: what
/// [`convert_gguf_to_hf`] writes, derived from a [`ModelConfig`] (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    /// `LlamaForCausalLM`, `Qwen2ForCausalLM`, ...
    pub architectures: Vec<String>,
    /// `llama`, `qwen2`, ...
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    /// Per-head dimension when it is not `hidden_size / num_attention_heads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// `{"rope_type": "llama3" | "linear", ...}` when RoPE is scaled (the Hub's form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Q/K/V projections have biases (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids: `config.json` has one id or a list (Llama 3.1); written back as a number when single.
    #[serde(serialize_with = "ser_one_or_many")]
    pub eos_token_id: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub hidden_act: String,
    pub torch_dtype: String,
}

/// The keys of `config.json` that are not the architecture (which [`ModelConfig::from_hf_config`] reads).
#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default, deserialize_with = "one_or_many")]
    eos_token_id: Vec<u32>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    torch_dtype: Option<String>,
    /// transformers ≥ 5 writes `dtype`.
    #[serde(default)]
    dtype: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

fn ser_one_or_many<S: serde::Serializer>(v: &[u32], s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        [] => s.serialize_none(),
        [x] => s.serialize_u32(*x),
        many => many.serialize(s),
    }
}

/// A configuration error of `file` (named once).
fn llama_error(file: &str, e: LlamaError) -> FormatError {
    match e {
        LlamaError::InFile { file, source } => FormatError::invalid(file, source.to_string()),
        e => FormatError::invalid(file, e.to_string()),
    }
}

fn class_of(model_type: &str) -> &'static str {
    match model_type {
        "qwen2" => "Qwen2ForCausalLM",
        "mistral" => "MistralForCausalLM",
        _ => "LlamaForCausalLM",
    }
}

impl LlamaConfig {
    /// Key/value heads (defaults to the query heads).
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether the Q/K/V projections have biases (`attention_bias`, or always for `qwen2`).
    pub fn has_qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The HF form of `model` (a `model_type` family), without token ids. `original_context` helps write GGUF
    /// per-pair RoPE divisors as llama3 parameters.
    pub fn describe(
        model: &ModelConfig,
        model_type: &str,
        original_context: Option<usize>,
    ) -> std::result::Result<Self, LlamaError> {
        if model.qkv_bias && model_type != "qwen2" {
            return Err(LlamaError::BadConfig(format!(
                "q/k/v biases without an output bias have no `config.json` form for model_type `{model_type}`"
            )));
        }
        let rope_scaling = model.rope_scaling.to_hf_json(
            model.rope_theta as f64,
            model.head_dim,
            original_context,
        )?;
        Ok(LlamaConfig {
            architectures: vec![class_of(model_type).into()],
            model_type: model_type.into(),
            vocab_size: model.vocab_size,
            hidden_size: model.hidden_size,
            intermediate_size: model.intermediate_size,
            num_hidden_layers: model.num_layers,
            num_attention_heads: model.num_heads,
            num_key_value_heads: Some(model.num_kv_heads),
            head_dim: Some(model.head_dim)
                .filter(|&d| d.checked_mul(model.num_heads) != Some(model.hidden_size)),
            rms_norm_eps: model.rms_eps,
            rope_theta: model.rope_theta as f64,
            rope_scaling,
            max_position_embeddings: model.max_positions,
            tie_word_embeddings: model.tie_embeddings,
            attention_bias: model.qkv_bias,
            bos_token_id: None,
            eos_token_id: Vec::new(),
            pad_token_id: None,
            hidden_act: "silu".into(),
            torch_dtype: "float32".into(),
        })
    }

    /// A parsed `config.json`: the architecture through [`ModelConfig::from_hf_config`], returned too.
    pub fn from_json(
        json: &serde_json::Value,
    ) -> std::result::Result<(Self, ModelConfig), LlamaError> {
        let model = ModelConfig::from_hf_config(json)?;
        let model_type = crate::llama::config::hf_model_type(json)?;
        let mut cfg = Self::describe(&model, model_type, None)?;
        let names = Names::deserialize(json)
            .map_err(|e| LlamaError::BadConfig(format!("token ids or names: {e}")))?;
        if !names.architectures.is_empty() {
            cfg.architectures = names.architectures;
        }
        cfg.bos_token_id = names.bos_token_id;
        cfg.eos_token_id = names.eos_token_id;
        cfg.pad_token_id = names.pad_token_id;
        if let Some(d) = names.torch_dtype.or(names.dtype) {
            cfg.torch_dtype = d;
        }
        Ok((cfg, model))
    }

    /// Reads `config.json`; errors name the file and the key.
    pub fn read(path: &Path) -> Result<(Self, ModelConfig)> {
        let ctx = path.display().to_string();
        let raw = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        let json: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            FormatError::invalid(
                &ctx,
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        Self::from_json(&json).map_err(|e| llama_error(&ctx, e))
    }

    /// Reads `config.json` (see [`Self::read`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::read(path).map(|(c, _)| c)
    }

    /// The configuration of a GGUF file ([`ModelConfig::from_gguf`]) with its token ids, under HF names.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let ctx = g.context();
        let fail = |e: LlamaError| llama_error(&ctx, e);
        let model = ModelConfig::from_gguf(g).map_err(fail)?;
        let arch = g.architecture()?.to_string();
        let opt_usize = |key: &str| g.meta(key).map(|_| g.meta_usize(key)).transpose();
        let orig = opt_usize(&format!("{arch}.rope.scaling.original_context_length"))?;
        let mut cfg = Self::describe(&model, &arch, orig).map_err(fail)?;
        let opt_u32 =
            |key: &str| Ok::<_, FormatError>(opt_usize(key)?.and_then(|v| u32::try_from(v).ok()));
        cfg.bos_token_id = opt_u32("tokenizer.ggml.bos_token_id")?;
        cfg.eos_token_id = opt_u32("tokenizer.ggml.eos_token_id")?
            .into_iter()
            .collect();
        cfg.pad_token_id = opt_u32("tokenizer.ggml.padding_token_id")?;
        Ok(cfg)
    }
}

/// A Hugging Face model directory: config, weights (one file or shards) and, if present, the tokenizer.
pub struct HfCheckpoint {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json` under HF names.
    pub config: LlamaConfig,
    /// The architecture, read from `config.json` by [`ModelConfig::from_hf_config`].
    pub model_config: ModelConfig,
    shards: Vec<SafetensorsFile>,
    /// Tensor name → shard index, in a stable (sorted) order.
    weight_map: BTreeMap<String, usize>,
}

impl std::fmt::Debug for HfCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfCheckpoint")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .field("tensors", &self.weight_map.len())
            .finish()
    }
}

impl HfCheckpoint {
    /// Opens `dir`: `config.json`, then `model.safetensors.index.json` (shards) or `model.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let (config, model_config) = LlamaConfig::read(&dir.join("config.json"))?;
        let index_path = dir.join("model.safetensors.index.json");
        let mut shards = Vec::new();
        let mut weight_map = BTreeMap::new();
        if index_path.is_file() {
            let ctx = index_path.display().to_string();
            let raw = std::fs::read(&index_path).map_err(|e| FormatError::io(&index_path, e))?;
            let idx: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
                FormatError::invalid(
                    &ctx,
                    format!("line {} column {}: {e}", e.line(), e.column()),
                )
            })?;
            let map = idx
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    FormatError::invalid(&ctx, "`weight_map` is missing or not an object")
                })?;
            let mut files: HashMap<String, usize> = HashMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    FormatError::invalid(&ctx, format!("`weight_map.{name}` is not a string"))
                })?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(FormatError::invalid(
                        &ctx,
                        format!("`weight_map.{name}`: bad shard name `{file}`"),
                    ));
                }
                let si = match files.get(file) {
                    Some(&i) => i,
                    None => {
                        shards.push(SafetensorsFile::open(dir.join(file))?);
                        files.insert(file.to_string(), shards.len() - 1);
                        shards.len() - 1
                    }
                };
                if shards[si].tensor(name).is_none() {
                    return Err(FormatError::invalid(
                        &ctx,
                        format!("`weight_map.{name}`: tensor not in shard `{file}`"),
                    ));
                }
                weight_map.insert(name.clone(), si);
            }
        } else {
            let f = SafetensorsFile::open(dir.join("model.safetensors"))?;
            for t in &f.tensors {
                weight_map.insert(t.name.clone(), 0);
            }
            shards.push(f);
        }
        Ok(HfCheckpoint {
            dir,
            config,
            model_config,
            shards,
            weight_map,
        })
    }

    /// The tokenizer (`tokenizer.json` + `tokenizer_config.json`).
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        TextTokenizer::from_hf_dir(&self.dir)
    }

    /// Number of safetensors files.
    pub fn n_shards(&self) -> usize {
        self.shards.len()
    }
}

impl TensorSource for HfCheckpoint {
    fn names(&self) -> Vec<String> {
        self.weight_map.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &si = self.weight_map.get(name)?;
        self.shards[si].tensor(name).map(|t| t.shape.clone())
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let &si = self.weight_map.get(name).ok_or_else(|| {
            FormatError::invalid(
                self.dir.display().to_string(),
                format!("tensor `{name}` not found"),
            )
        })?;
        self.shards[si].tensor_f32(name)
    }
}
