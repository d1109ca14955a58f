//! `LlamaConfig`: the architecture hyper-parameters of a Llama-family model, read from GGUF
//! metadata (`<arch>.*` keys) or a Hugging Face `config.json`.

use serde::{Deserialize, Serialize};

use super::error::LlamaError;

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: llama.cpp's converter permutes the Q/K rows of Llama
    /// checkpoints, so `llama` GGUF files need this.
    Interleaved,
    /// Rotate-half `(x[i], x[i + d/2])`: Hugging Face checkpoints (and qwen2 GGUF files).
    RotateHalf,
}

/// Architecture hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Model width (d_model).
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when below `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width (usually `hidden_size / num_heads`).
    pub head_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// The output head reuses the token embedding.
    pub tie_embeddings: bool,
    /// Q/K/V projections carry a bias (Qwen2).
    pub qkv_bias: bool,
    /// Maximum context length the model was trained for.
    pub max_positions: usize,
    /// RoPE pairing; depends on where the weights come from, not on the architecture.
    pub rope_layout: RopeLayout,
}

/// Typed access to GGUF-style metadata (implemented by the GGUF reader; a map in tests).
pub trait MetadataLookup {
    /// An unsigned or signed integer value, widened.
    fn meta_u64(&self, key: &str) -> Option<u64>;
    /// A float value (f32/f64), widened; integers may be accepted too.
    fn meta_f64(&self, key: &str) -> Option<f64>;
    /// A string value.
    fn meta_str(&self, key: &str) -> Option<String>;
    /// Length of an array value (e.g. `tokenizer.ggml.tokens`).
    fn meta_array_len(&self, key: &str) -> Option<usize>;
}

impl LlamaConfig {
    /// The configuration of SmolLM2-135M(-Instruct), for tests and defaults.
    pub fn smollm2_135m(rope_layout: RopeLayout) -> Self {
        Self {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            rope_theta: 100_000.0,
            rms_eps: 1e-5,
            tie_embeddings: true,
            qkv_bias: false,
            max_positions: 8192,
            rope_layout,
        }
    }

    /// Checks divisibility and non-zero sizes.
    pub fn validate(&self) -> Result<(), LlamaError> {
        let nz = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_positions", self.max_positions),
        ];
        for (name, v) in nz {
            if v == 0 {
                return Err(LlamaError::BadConfig(format!("{name} must be > 0")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(LlamaError::BadConfig(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(LlamaError::BadConfig(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(LlamaError::BadConfig(format!(
                "rope_theta {} must be positive",
                self.rope_theta
            )));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return Err(LlamaError::BadConfig(format!(
                "rms_eps {} must be non-negative",
                self.rms_eps
            )));
        }
        Ok(())
    }

    /// Reads `general.architecture` and the `<arch>.*` keys of a GGUF file.
    ///
    /// `vocab_size` falls back to the length of `tokenizer.ggml.tokens`; `tie_embeddings` is
    /// decided by the caller (a GGUF without `output.weight` is tied), here defaulting to `true`.
    /// Llama GGUF files get [`RopeLayout::Interleaved`], qwen2 files [`RopeLayout::RotateHalf`]
    /// (llama.cpp's converter permutes Q/K only for the llama architecture).
    pub fn from_gguf_metadata(meta: &dyn MetadataLookup) -> Result<Self, LlamaError> {
        let arch = meta
            .meta_str("general.architecture")
            .ok_or_else(|| missing("general.architecture", "string"))?;
        let (qkv_bias, rope_layout) = match arch.as_str() {
            "llama" | "mistral" => (false, RopeLayout::Interleaved),
            "qwen2" => (true, RopeLayout::RotateHalf),
            other => {
                return Err(LlamaError::BadConfig(format!(
                    "general.architecture `{other}` is not supported (llama, qwen2)"
                )));
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let req_u = |k: &str| -> Result<usize, LlamaError> {
            let full = key(k);
            meta.meta_u64(&full)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing(&full, "unsigned integer"))
        };
        let hidden_size = req_u("embedding_length")?;
        let num_heads = req_u("attention.head_count")?;
        let num_kv_heads = meta
            .meta_u64(&key("attention.head_count_kv"))
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(num_heads);
        let vocab_size = match meta.meta_u64(&key("vocab_size")) {
            Some(v) => usize::try_from(v).map_err(|_| missing(&key("vocab_size"), "usize"))?,
            None => meta
                .meta_array_len("tokenizer.ggml.tokens")
                .ok_or_else(|| missing(&key("vocab_size"), "unsigned integer"))?,
        };
        let head_dim = match meta.meta_u64(&key("attention.key_length")) {
            Some(v) => {
                usize::try_from(v).map_err(|_| missing(&key("attention.key_length"), "usize"))?
            }
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: req_u("feed_forward_length")?,
            num_layers: req_u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: meta.meta_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rms_eps: meta
                .meta_f64(&key("attention.layer_norm_rms_epsilon"))
                .ok_or_else(|| missing(&key("attention.layer_norm_rms_epsilon"), "float"))?,
            tie_embeddings: true,
            qkv_bias,
            max_positions: meta
                .meta_u64(&key("context_length"))
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(4096),
            rope_layout,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` (already parsed). Always [`RopeLayout::RotateHalf`].
    pub fn from_hf_config(json: &serde_json::Value) -> Result<Self, LlamaError> {
        let get_u = |k: &str| -> Option<usize> {
            json.get(k)
                .and_then(|v| v.as_u64())
                .and_then(|v| usize::try_from(v).ok())
        };
        let req_u = |k: &str| get_u(k).ok_or_else(|| missing(k, "unsigned integer"));
        let get_f = |k: &str| json.get(k).and_then(|v| v.as_f64());
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("llama");
        let is_qwen2 = model_type == "qwen2";
        let hidden_size = req_u("hidden_size")?;
        let num_heads = req_u("num_attention_heads")?;
        let head_dim = match get_u("head_dim") {
            Some(h) => h,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let cfg = Self {
            vocab_size: req_u("vocab_size")?,
            hidden_size,
            intermediate_size: req_u("intermediate_size")?,
            num_layers: req_u("num_hidden_layers")?,
            num_heads,
            num_kv_heads: get_u("num_key_value_heads").unwrap_or(num_heads),
            head_dim,
            rope_theta: get_f("rope_theta").unwrap_or(10_000.0) as f32,
            rms_eps: get_f("rms_norm_eps").unwrap_or(1e-6),
            tie_embeddings: json
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            qkv_bias: json
                .get("attention_bias")
                .and_then(|v| v.as_bool())
                .unwrap_or(is_qwen2),
            max_positions: get_u("max_position_embeddings").unwrap_or(4096),
            rope_layout: RopeLayout::RotateHalf,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// From the formats module's HF-style config (config.json fields); rotate-half RoPE.
    pub fn from_hf(hf: &crate::formats::LlamaConfig) -> Result<Self, LlamaError> {
        let json = serde_json::to_value(hf)
            .map_err(|e| LlamaError::BadConfig(format!("config.json: {e}")))?;
        Self::from_hf_config(&json)
    }

    /// Number of query heads sharing one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads.max(1)
    }
}

fn missing(key: &str, expected: &'static str) -> LlamaError {
    LlamaError::MissingMetadata {
        key: key.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Meta(HashMap<&'static str, serde_json::Value>);
    impl MetadataLookup for Meta {
        fn meta_u64(&self, key: &str) -> Option<u64> {
            self.0.get(key).and_then(|v| v.as_u64())
        }
        fn meta_f64(&self, key: &str) -> Option<f64> {
            self.0.get(key).and_then(|v| v.as_f64())
        }
        fn meta_str(&self, key: &str) -> Option<String> {
            self.0.get(key).and_then(|v| v.as_str().map(String::from))
        }
        fn meta_array_len(&self, key: &str) -> Option<usize> {
            self.0.get(key).and_then(|v| v.as_array().map(|a| a.len()))
        }
    }

    #[test]
    fn gguf_metadata_smollm2() {
        let m = Meta(HashMap::from([
            ("general.architecture", serde_json::json!("llama")),
            ("llama.embedding_length", serde_json::json!(576)),
            ("llama.feed_forward_length", serde_json::json!(1536)),
            ("llama.block_count", serde_json::json!(30)),
            ("llama.attention.head_count", serde_json::json!(9)),
            ("llama.attention.head_count_kv", serde_json::json!(3)),
            ("llama.rope.freq_base", serde_json::json!(100000.0)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                serde_json::json!(1e-5),
            ),
            ("llama.context_length", serde_json::json!(8192)),
            ("llama.vocab_size", serde_json::json!(49152)),
        ]));
        let cfg = LlamaConfig::from_gguf_metadata(&m).unwrap();
        assert_eq!(cfg, LlamaConfig::smollm2_135m(RopeLayout::Interleaved));
    }

    #[test]
    fn gguf_missing_key_is_named() {
        let m = Meta(HashMap::from([(
            "general.architecture",
            serde_json::json!("llama"),
        )]));
        let err = LlamaConfig::from_gguf_metadata(&m).unwrap_err().to_string();
        assert!(err.contains("llama.embedding_length"), "{err}");
    }

    #[test]
    fn hf_config_qwen2_and_bad_heads() {
        let j = serde_json::json!({"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 128,
            "num_hidden_layers": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true, "max_position_embeddings": 512});
        let cfg = LlamaConfig::from_hf_config(&j).unwrap();
        assert!(cfg.qkv_bias && cfg.tie_embeddings);
        assert_eq!(
            (cfg.head_dim, cfg.rope_layout),
            (16, RopeLayout::RotateHalf)
        );
        let mut bad = j.clone();
        bad["num_key_value_heads"] = serde_json::json!(3);
        assert!(LlamaConfig::from_hf_config(&bad).is_err());
    }
}
