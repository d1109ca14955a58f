//! `LlamaConfig`: the architecture hyper-parameters of a Llama-family model, read from GGUF
//! metadata (`<arch>.*` keys, `rope_freqs.weight`) or a Hugging Face `config.json`. This is the one
//! reader of `config.json` ([`LlamaConfig::from_hf_config`]): every load path (the `chat-lm` kind,
//! `LlamaModel::load_hf_dir`, `HfCheckpoint`, `convert`) goes through it. What it cannot run
//! (another `model_type`, an unknown `rope_type`, `attention_bias` / `mlp_bias` on Llama,
//! sliding-window attention, an activation other than SiLU) is an error naming the key.

use serde::{Deserialize, Serialize};

use super::error::LlamaError;
pub use super::rope::RopeScaling;

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
    /// RoPE frequency scaling (`llama3`, `linear`, or GGUF per-pair divisors); see [`Self::inv_freq`].
    #[serde(default)]
    pub rope_scaling: RopeScaling,
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
            rope_scaling: RopeScaling::None,
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
        self.rope_scaling.validate(self.head_dim)?;
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
    /// (llama.cpp's converter permutes Q/K only for the llama architecture). RoPE scaling from
    /// `<arch>.rope.scaling.type` (`none`, `linear` with `.factor`) or the older
    /// `<arch>.rope.scale_linear`; the `rope_freqs.weight` tensor is read by [`Self::from_gguf`].
    pub fn from_gguf_metadata(meta: &dyn MetadataLookup) -> Result<Self, LlamaError> {
        let arch = meta
            .meta_str("general.architecture")
            .ok_or_else(|| missing("general.architecture", "string"))?;
        let (qkv_bias, rope_layout) = match arch.as_str() {
            "llama" | "mistral" => (false, RopeLayout::Interleaved),
            "qwen2" => (true, RopeLayout::RotateHalf),
            other => {
                return Err(LlamaError::BadConfig(format!(
                    "general.architecture `{other}` is not supported (llama, mistral, qwen2)"
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
        if let Some(d) = meta.meta_u64(&key("rope.dimension_count"))
            && d != head_dim as u64
        {
            return Err(LlamaError::BadConfig(format!(
                "`{}` = {d}: RoPE on part of a head (head_dim {head_dim}) is not supported",
                key("rope.dimension_count")
            )));
        }
        let rope_scaling = match meta.meta_str(&key("rope.scaling.type")).as_deref() {
            None => match meta.meta_f64(&key("rope.scale_linear")) {
                Some(f) if f != 1.0 => RopeScaling::Linear { factor: f },
                _ => RopeScaling::None,
            },
            Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: meta
                    .meta_f64(&key("rope.scaling.factor"))
                    .ok_or_else(|| missing(&key("rope.scaling.factor"), "float"))?,
            },
            Some(other) => {
                return Err(LlamaError::BadConfig(format!(
                    "`{}` = \"{other}\" is not supported (none, linear; llama3 scaling is the rope_freqs.weight tensor)",
                    key("rope.scaling.type")
                )));
            }
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
            rope_scaling,
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

    /// The configuration of a GGUF file: [`Self::from_gguf_metadata`], then what its tensors say: tied
    /// exactly when `output.weight` is absent, q/k/v biases when `blk.0.attn_q.bias` is present (qwen2
    /// always; llama.cpp's llama has them optionally), and llama.cpp's per-pair RoPE divisors
    /// `rope_freqs.weight` (how it stores Llama 3.1 scaling), combined with a linear factor if both are
    /// given. Errors name the file.
    pub fn from_gguf(g: &crate::formats::GgufFile) -> Result<Self, LlamaError> {
        let file = g.context();
        let at = |e: LlamaError| e.in_file(&file);
        let mut cfg = Self::from_gguf_metadata(g).map_err(at)?;
        cfg.tie_embeddings = g.tensor("output.weight").is_none();
        cfg.qkv_bias = cfg.qkv_bias || g.tensor("blk.0.attn_q.bias").is_some();
        if g.tensor("blk.0.attn_output.bias").is_some() {
            return Err(at(LlamaError::BadConfig(
                "tensor `blk.0.attn_output.bias`: an output-projection bias is not supported"
                    .into(),
            )));
        }
        if g.tensor("rope_freqs.weight").is_some() {
            let (_, d) = g.tensor_f32("rope_freqs.weight").map_err(|e| {
                at(LlamaError::Source {
                    name: "rope_freqs.weight".into(),
                    message: e.to_string(),
                })
            })?;
            let k = match &cfg.rope_scaling {
                RopeScaling::Linear { factor } => *factor as f32,
                _ => 1.0,
            };
            cfg.rope_scaling = RopeScaling::Divisors(d.into_iter().map(|v| v * k).collect());
            cfg.validate().map_err(at)?;
        }
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` (already parsed): the one reader of that file. Both forms of
    /// the RoPE settings ([`RopeScaling::from_hf_config`]); `model_type` `llama`, `mistral` or `qwen2`
    /// (or, without it, the first of `architectures`); Qwen2 always has q/k/v biases (transformers
    /// hard-codes them; its config has no `attention_bias`). Always [`RopeLayout::RotateHalf`].
    /// Errors name the key.
    pub fn from_hf_config(json: &serde_json::Value) -> Result<Self, LlamaError> {
        if !json.is_object() {
            return Err(LlamaError::BadConfig("not a JSON object".into()));
        }
        let family = hf_model_type(json)?;
        let get_u = |k: &str| {
            optional(json, k, "unsigned integer", |v| {
                v.as_u64().and_then(|v| usize::try_from(v).ok())
            })
        };
        let req_u = |k: &str| get_u(k)?.ok_or_else(|| missing(k, "unsigned integer"));
        let get_f = |k: &str| optional(json, k, "number", serde_json::Value::as_f64);
        let get_b = |k: &str| optional(json, k, "boolean", serde_json::Value::as_bool);
        let unsupported = |what: String| Err(LlamaError::BadConfig(what));
        if let Some(act) = json.get("hidden_act").and_then(|v| v.as_str())
            && act != "silu"
        {
            return unsupported(format!("`hidden_act` = \"{act}\" is not supported (silu)"));
        }
        let qkv_bias = match family {
            "qwen2" => true,
            _ => {
                if get_b("attention_bias")? == Some(true) {
                    return unsupported(format!(
                        "`attention_bias` = true (biases on q, k, v and o of {family}) is not supported"
                    ));
                }
                false
            }
        };
        if get_b("mlp_bias")? == Some(true) {
            return unsupported("`mlp_bias` = true is not supported".into());
        }
        let max_positions = get_u("max_position_embeddings")?.unwrap_or(match family {
            "qwen2" => 32768,
            "mistral" => 131072,
            _ => 2048,
        });
        let window = get_u("sliding_window")?;
        let windowed = match family {
            "qwen2" => get_b("use_sliding_window")?.unwrap_or(false),
            "mistral" => window.is_some_and(|w| w < max_positions),
            _ => false,
        };
        if windowed {
            return unsupported(format!(
                "sliding-window attention (`sliding_window` = {}) is not supported",
                window.map_or("null".to_string(), |w| w.to_string())
            ));
        }
        let hidden_size = req_u("hidden_size")?;
        let num_heads = req_u("num_attention_heads")?;
        let head_dim = match get_u("head_dim")? {
            Some(h) => h,
            None if num_heads > 0 && hidden_size.is_multiple_of(num_heads) => {
                hidden_size / num_heads
            }
            None => {
                return unsupported(format!(
                    "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads} (and no head_dim)"
                ));
            }
        };
        let (rope_theta, rope_scaling) = RopeScaling::from_hf_config(json)?;
        let cfg = Self {
            vocab_size: req_u("vocab_size")?,
            hidden_size,
            intermediate_size: req_u("intermediate_size")?,
            num_layers: req_u("num_hidden_layers")?,
            num_heads,
            num_kv_heads: get_u("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            rope_theta: rope_theta as f32,
            rope_scaling,
            rms_eps: get_f("rms_norm_eps")?.unwrap_or(1e-6),
            tie_embeddings: get_b("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            max_positions,
            rope_layout: RopeLayout::RotateHalf,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The RoPE inverse frequencies (`head_dim / 2`), scaling applied: the one table every forward path
    /// (the Burn model, the host decode path) rotates by.
    pub fn inv_freq(&self) -> Vec<f32> {
        self.rope_scaling
            .inv_freq(self.rope_theta as f64, self.head_dim)
    }

    /// Number of query heads sharing one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads.max(1)
    }
}

/// The family of a `config.json`: `model_type` (`llama`, `mistral`, `qwen2`), or without it the first of
/// `architectures` (`LlamaForCausalLM`, ...). Errors name the key.
pub fn hf_model_type(json: &serde_json::Value) -> Result<&'static str, LlamaError> {
    const KNOWN: [(&str, &str); 3] = [
        ("llama", "LlamaForCausalLM"),
        ("mistral", "MistralForCausalLM"),
        ("qwen2", "Qwen2ForCausalLM"),
    ];
    if let Some(v) = json.get("model_type").filter(|v| !v.is_null()) {
        let t = v.as_str().ok_or_else(|| missing("model_type", "string"))?;
        return KNOWN
            .iter()
            .find(|(m, _)| *m == t)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                LlamaError::BadConfig(format!(
                    "`model_type` = \"{t}\" is not supported (llama, mistral, qwen2)"
                ))
            });
    }
    let first = json
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .ok_or_else(|| missing("model_type", "string"))?;
    KNOWN
        .iter()
        .find(|(_, c)| *c == first)
        .map(|(m, _)| *m)
        .ok_or_else(|| {
            LlamaError::BadConfig(format!(
                "`architectures[0]` = \"{first}\" is not supported (and `model_type` is missing)"
            ))
        })
}

/// `json[key]` read by `read` (`None` when absent or null); a value of another type is an error naming the key.
fn optional<T>(
    json: &serde_json::Value,
    key: &str,
    expected: &'static str,
    read: impl Fn(&serde_json::Value) -> Option<T>,
) -> Result<Option<T>, LlamaError> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => read(v).map(Some).ok_or_else(|| missing(key, expected)),
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

    /// What the model cannot run is an error naming the key, never a silently different model.
    #[test]
    fn hf_config_unsupported_features_are_named() {
        let base = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "vocab_size": 100, "intermediate_size": 128, "num_hidden_layers": 2});
        assert!(LlamaConfig::from_hf_config(&base).is_ok());
        for (key, value, needle) in [
            (
                "model_type",
                serde_json::json!("gemma"),
                "`model_type` = \"gemma\"",
            ),
            (
                "attention_bias",
                serde_json::json!(true),
                "`attention_bias` = true",
            ),
            ("mlp_bias", serde_json::json!(true), "`mlp_bias` = true"),
            (
                "hidden_act",
                serde_json::json!("gelu"),
                "`hidden_act` = \"gelu\"",
            ),
            (
                "num_attention_heads",
                serde_json::json!("4"),
                "`num_attention_heads`",
            ),
        ] {
            let mut j = base.clone();
            j[key] = value;
            let e = LlamaConfig::from_hf_config(&j).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let mut mistral = base.clone();
        mistral["model_type"] = serde_json::json!("mistral");
        mistral["sliding_window"] = serde_json::json!(16);
        let e = LlamaConfig::from_hf_config(&mistral)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sliding_window"), "{e}");
        // Without model_type, the architecture names the family.
        let mut qwen = base.clone();
        qwen.as_object_mut().unwrap().remove("model_type");
        qwen["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        assert!(LlamaConfig::from_hf_config(&qwen).unwrap().qkv_bias);
    }

    #[test]
    fn gguf_rope_scaling_keys() {
        let meta = |extra: Vec<(&'static str, serde_json::Value)>| {
            let mut m = HashMap::from([
                ("general.architecture", serde_json::json!("llama")),
                ("llama.embedding_length", serde_json::json!(64)),
                ("llama.feed_forward_length", serde_json::json!(128)),
                ("llama.block_count", serde_json::json!(1)),
                ("llama.attention.head_count", serde_json::json!(4)),
                ("llama.vocab_size", serde_json::json!(10)),
                (
                    "llama.attention.layer_norm_rms_epsilon",
                    serde_json::json!(1e-5),
                ),
            ]);
            m.extend(extra);
            Meta(m)
        };
        let lin = LlamaConfig::from_gguf_metadata(&meta(vec![
            ("llama.rope.scaling.type", serde_json::json!("linear")),
            ("llama.rope.scaling.factor", serde_json::json!(4.0)),
        ]))
        .unwrap();
        assert_eq!(lin.rope_scaling, RopeScaling::Linear { factor: 4.0 });
        let old = LlamaConfig::from_gguf_metadata(&meta(vec![(
            "llama.rope.scale_linear",
            serde_json::json!(2.0),
        )]))
        .unwrap();
        assert_eq!(old.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        for (extra, needle) in [
            (
                vec![("llama.rope.scaling.type", serde_json::json!("yarn"))],
                "`llama.rope.scaling.type` = \"yarn\"",
            ),
            (
                vec![("llama.rope.scaling.type", serde_json::json!("linear"))],
                "llama.rope.scaling.factor",
            ),
            (
                vec![("llama.rope.dimension_count", serde_json::json!(8))],
                "llama.rope.dimension_count",
            ),
        ] {
            let e = LlamaConfig::from_gguf_metadata(&meta(extra))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
