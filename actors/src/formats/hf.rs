//! The Hugging Face checkpoint layout: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) + `tokenizer.json` + `tokenizer_config.json` (chat template), a llama-family
//! [`LlamaConfig`] read from either `config.json` or GGUF metadata, and [`convert_gguf_to_hf`].
//!
//! Conversion writes F32 weights under HF names. llama.cpp's converter permuted the rows of Q and K (per head,
//! HF row `s*head_dim/2 + i` became row `2i + s`) so that GGUF models use RoPE on adjacent pairs; the converter
//! un-permutes them (see [`super::gguf::unpermute_qk`]), so the written checkpoint is a standard HF one for
//! rotate-half RoPE, exactly what `transformers` would load. Only `general.architecture = llama` files are
//! un-permuted (llama.cpp does not permute e.g. `qwen2`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gguf::{GgufFile, GgufHfView};
use super::safetensors::{SafetensorsFile, write_f32_streaming};
use super::tokenizer::TextTokenizer;
use super::{FormatError, Result, TensorSource};

/// Hyper-parameters of a llama-family model (Llama, SmolLM2, Qwen2), with HF `config.json` key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `LlamaForCausalLM`, `Qwen2ForCausalLM`, ...
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `llama`, `qwen2`, ...
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head dimension when it is not `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Q/K/V projections have biases (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids: `config.json` has one id or a list (Llama 3.1); written back as a number when single.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        serialize_with = "ser_one_or_many"
    )]
    pub eos_token_id: Vec<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dtype")]
    pub torch_dtype: String,
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

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_ctx() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}
fn default_dtype() -> String {
    "float32".into()
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

    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        let cfg: LlamaConfig = serde_json::from_slice(&raw).map_err(|e| {
            FormatError::invalid(
                path.display().to_string(),
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        cfg.validate()
            .map_err(|e| e.with_context(path.display().to_string()))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FormatError::invalid("config", m));
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad(
                "hidden_size, num_attention_heads and num_hidden_layers must be positive".into(),
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.n_kv_heads() == 0 || !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.n_kv_heads()
            ));
        }
        Ok(())
    }

    /// Reads the hyper-parameters from GGUF metadata (`{arch}.block_count`, ...). Tied embeddings when the file
    /// has no `output.weight`.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        let k = |s: &str| format!("{arch}.{s}");
        let opt_usize = |key: &str| -> Result<Option<usize>> {
            if g.meta(key).is_some() {
                g.meta_usize(key).map(Some)
            } else {
                Ok(None)
            }
        };
        let opt_u32 = |key: &str| -> Result<Option<u32>> {
            Ok(opt_usize(key)?.and_then(|v| u32::try_from(v).ok()))
        };
        let n_head = g.meta_usize(&k("attention.head_count"))?;
        let hidden = g.meta_usize(&k("embedding_length"))?;
        let vocab_size = match opt_usize(&k("vocab_size"))? {
            Some(v) => v,
            None => g.meta_array("tokenizer.ggml.tokens")?.len(),
        };
        let head_dim = opt_usize(&k("attention.key_length"))?
            .filter(|&d| d.checked_mul(n_head) != Some(hidden));
        let (model_type, class) = match arch.as_str() {
            "llama" => ("llama", "LlamaForCausalLM"),
            "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
            "mistral" => ("mistral", "MistralForCausalLM"),
            other => {
                return Err(FormatError::invalid(
                    g.path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "gguf".into()),
                    format!("architecture `{other}` is not supported (llama, qwen2, mistral)"),
                ));
            }
        };
        let cfg = LlamaConfig {
            architectures: vec![class.into()],
            model_type: model_type.into(),
            vocab_size,
            hidden_size: hidden,
            intermediate_size: g.meta_usize(&k("feed_forward_length"))?,
            num_hidden_layers: g.meta_usize(&k("block_count"))?,
            num_attention_heads: n_head,
            num_key_value_heads: Some(opt_usize(&k("attention.head_count_kv"))?.unwrap_or(n_head)),
            head_dim,
            rms_norm_eps: g.meta_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: if g.meta(&k("rope.freq_base")).is_some() {
                g.meta_f64(&k("rope.freq_base"))?
            } else {
                default_theta()
            },
            max_position_embeddings: opt_usize(&k("context_length"))?.unwrap_or(default_ctx()),
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            attention_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            bos_token_id: opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_id: opt_u32("tokenizer.ggml.eos_token_id")?
                .into_iter()
                .collect(),
            pad_token_id: opt_u32("tokenizer.ggml.padding_token_id")?,
            hidden_act: default_act(),
            torch_dtype: default_dtype(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A Hugging Face model directory: config, weights (one file or shards) and, if present, the tokenizer.
pub struct HfCheckpoint {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: LlamaConfig,
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
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
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

/// Options of [`convert_gguf_to_hf_with`].
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Start a new shard when a shard would exceed this many bytes (then an index file is written).
    pub max_shard_bytes: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            max_shard_bytes: 5 << 30,
        }
    }
}

/// Converts a llama-family GGUF file into an HF directory (see the module doc) with default options.
pub fn convert_gguf_to_hf(gguf_path: &Path, out_dir: &Path) -> Result<()> {
    convert_gguf_to_hf_with(gguf_path, out_dir, &ConvertOptions::default())
}

/// Converts a GGUF file into `out_dir`: `config.json`, `generation_config.json`, `model.safetensors` (or
/// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`.
pub fn convert_gguf_to_hf_with(
    gguf_path: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<()> {
    let g = GgufFile::open(gguf_path)?;
    let config = LlamaConfig::from_gguf(&g)?;
    let tok = TextTokenizer::from_gguf(&g)?;
    let view = GgufHfView::new(&g)?;
    std::fs::create_dir_all(out_dir).map_err(|e| FormatError::io(out_dir, e))?;

    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = out_dir.join(name);
        let text = serde_json::to_string_pretty(v)
            .map_err(|e| FormatError::invalid(name, e.to_string()))?;
        std::fs::write(&p, text + "\n").map_err(|e| FormatError::io(&p, e))
    };
    let cfg_value = serde_json::to_value(&config)
        .map_err(|e| FormatError::invalid("config.json", e.to_string()))?;
    write_json("config.json", &cfg_value)?;
    write_json(
        "generation_config.json",
        &serde_json::json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": cfg_value.get("eos_token_id"),
            "pad_token_id": config.pad_token_id,
        }),
    )?;
    tok.save_hf(out_dir)?;

    // Tensors in GGUF order, with HF names; group into shards by F32 size.
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut cur = 0u64;
    for name in view.names() {
        let shape = view
            .shape(&name)
            .ok_or_else(|| FormatError::invalid("convert", format!("tensor `{name}` vanished")))?;
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        if cur > 0 && cur + bytes > opts.max_shard_bytes {
            shards.push(Vec::new());
            cur = 0;
        }
        cur += bytes;
        if let Some(last) = shards.last_mut() {
            last.push((name, shape));
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        write_f32_streaming(&out_dir.join(&file), shard, &meta, |name| {
            Ok(view.get_f32(name)?.1)
        })?;
        for (name, shape) in shard {
            weight_map.insert(name.clone(), file.clone().into());
            total += 4 * shape.iter().product::<usize>() as u64;
        }
    }
    let index = out_dir.join("model.safetensors.index.json");
    if n > 1 {
        write_json(
            "model.safetensors.index.json",
            &serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
        )?;
    } else if index.exists() {
        std::fs::remove_file(&index).map_err(|e| FormatError::io(&index, e))?;
    }
    Ok(())
}
