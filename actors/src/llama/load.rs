//! Weight sources for the Llama model: the `TensorLookup` trait (named f32 tensors, outer-first
//! shapes) and the tensor names of the two layouts we read, GGUF and Hugging Face.

use std::collections::HashMap;

/// A source of named tensors, dequantized to f32, shapes outer-first (row-major data).
///
/// For a linear layer both layouts store `[out_features, in_features]` outer-first (GGUF lists
/// dims innermost-first, so its `ne = [in, out]`; the reader flips them).
pub trait TensorLookup {
    /// The tensor `name` as `(outer-first shape, row-major data)`, `Ok(None)` when absent,
    /// `Err(message)` when present but unreadable.
    fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>, String>;
}

impl TensorLookup for HashMap<String, (Vec<usize>, Vec<f32>)> {
    fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>, String> {
        Ok(self.get(name).cloned())
    }
}

/// Tensor names of a checkpoint layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNaming {
    /// llama.cpp names: `token_embd.weight`, `blk.N.attn_q.weight`, …
    Gguf,
    /// transformers names: `model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, …
    HuggingFace,
}

/// One per-layer tensor role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerTensor {
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl WeightNaming {
    /// Token embedding `[vocab, hidden]`.
    pub fn embedding(self) -> &'static str {
        match self {
            Self::Gguf => "token_embd.weight",
            Self::HuggingFace => "model.embed_tokens.weight",
        }
    }

    /// Final RMSNorm weight `[hidden]`.
    pub fn final_norm(self) -> &'static str {
        match self {
            Self::Gguf => "output_norm.weight",
            Self::HuggingFace => "model.norm.weight",
        }
    }

    /// Untied output head `[vocab, hidden]` (absent when tied).
    pub fn head(self) -> &'static str {
        match self {
            Self::Gguf => "output.weight",
            Self::HuggingFace => "lm_head.weight",
        }
    }

    /// Name of a per-layer tensor.
    pub fn layer(self, i: usize, t: LayerTensor) -> String {
        use LayerTensor::*;
        match self {
            Self::Gguf => {
                let s = match t {
                    AttnNorm => "attn_norm.weight",
                    Q => "attn_q.weight",
                    K => "attn_k.weight",
                    V => "attn_v.weight",
                    QBias => "attn_q.bias",
                    KBias => "attn_k.bias",
                    VBias => "attn_v.bias",
                    O => "attn_output.weight",
                    FfnNorm => "ffn_norm.weight",
                    Gate => "ffn_gate.weight",
                    Up => "ffn_up.weight",
                    Down => "ffn_down.weight",
                };
                format!("blk.{i}.{s}")
            }
            Self::HuggingFace => {
                let s = match t {
                    AttnNorm => "input_layernorm.weight",
                    Q => "self_attn.q_proj.weight",
                    K => "self_attn.k_proj.weight",
                    V => "self_attn.v_proj.weight",
                    QBias => "self_attn.q_proj.bias",
                    KBias => "self_attn.k_proj.bias",
                    VBias => "self_attn.v_proj.bias",
                    O => "self_attn.o_proj.weight",
                    FfnNorm => "post_attention_layernorm.weight",
                    Gate => "mlp.gate_proj.weight",
                    Up => "mlp.up_proj.weight",
                    Down => "mlp.down_proj.weight",
                };
                format!("model.layers.{i}.{s}")
            }
        }
    }
}

impl<T: crate::formats::TensorSource> TensorLookup for T {
    fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>, String> {
        if !self.contains(name) {
            return Ok(None);
        }
        self.get_f32(name).map(Some).map_err(|e| e.to_string())
    }
}

impl super::config::MetadataLookup for crate::formats::gguf::GgufFile {
    fn meta_u64(&self, key: &str) -> Option<u64> {
        self.meta(key)
            .and_then(|v| v.as_int())
            .and_then(|v| u64::try_from(v).ok())
    }
    fn meta_f64(&self, key: &str) -> Option<f64> {
        self.meta(key).and_then(|v| v.as_f64())
    }
    fn meta_str(&self, key: &str) -> Option<String> {
        self.meta(key).and_then(|v| v.as_str().map(String::from))
    }
    fn meta_array_len(&self, key: &str) -> Option<usize> {
        self.meta(key).and_then(|v| v.as_array().map(<[_]>::len))
    }
}
