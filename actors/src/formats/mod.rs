//! Model file formats: GGUF (reader, writer, dequantization), safetensors and the Hugging Face checkpoint
//! layout, tokenizers (from `tokenizer.json` or a GGUF vocabulary), chat templates, and the converters between
//! GGUF and HF, both ways. Everything read from disk is bounds-checked; errors name the file, key or byte offset.
//!
//! Loading a llama-family model, format-agnostic (both give HF tensor names, HF row order, rotate-half RoPE):
//!
//! ```no_run
//! use sparring_actors::formats::{GgufFile, GgufHfView, HfCheckpoint, LlamaConfig, TensorSource, TextTokenizer};
//! # fn main() -> sparring_actors::formats::Result<()> {
//! // From GGUF: the view renames `blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight` and undoes
//! // llama.cpp's Q/K row permutation, so RoPE is HF's rotate-half (x[i], x[i + head_dim/2]).
//! let g = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let config = LlamaConfig::from_gguf(&g)?;
//! let weights = GgufHfView::new(&g)?;
//! let (shape, data) = weights.get_f32("model.layers.0.self_attn.q_proj.weight")?; // [576, 576], row-major
//! let tokenizer = TextTokenizer::from_gguf(&g)?;
//! // From an HF directory: the same names and layout.
//! let hf = HfCheckpoint::open("smollm2-hf")?;
//! let (config, tokenizer) = (hf.config.clone(), hf.tokenizer()?);
//! # let _ = (shape, data, config, tokenizer, weights); Ok(()) }
//! ```
//!
//! Raw GGUF access (`GgufFile::tensor_f32`, `tensor_data`) keeps llama.cpp's names and its permuted Q/K rows
//! (RoPE on adjacent pairs). Verified: the converted HF checkpoint, run by a plain numpy Llama forward with
//! rotate-half RoPE, reproduces the transformers fixtures (`logits.jsonl`) to 2e-6 relative.

mod bytes;
pub mod chat;
pub mod convert;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use convert::{convert_gguf_to_hf, convert_hf_to_gguf};
pub use error::{FormatError, Result, TensorSource};
pub use gguf::{GgufFile, GgufHfView, GgufWriter, MetaType, MetaValue, TensorInfo};
pub use hf::{HfCheckpoint, LlamaConfig};
pub use quant::GgmlType;
pub use safetensors::SafetensorsFile;
pub use tokenizer::TextTokenizer;

use std::path::{Path, PathBuf};

/// File name of the SmolLM2-135M-Instruct GGUF fetched by `scripts/fetch-model.sh`.
pub const SMOLLM2_GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache used by `scripts/fetch-model.sh`: `$SPARRING_CACHE`, else `$HOME/.cache/sparring`.
pub fn model_cache_dir() -> Option<PathBuf> {
    std::env::var_os("SPARRING_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sparring")))
}

/// Where the SmolLM2 GGUF should be: `$SPARRING_SMOLLM2_GGUF`, else `<cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
/// The path is returned whether or not the file exists.
pub fn smollm2_gguf_path() -> Option<PathBuf> {
    match std::env::var_os("SPARRING_SMOLLM2_GGUF") {
        Some(p) => Some(PathBuf::from(p)),
        None => model_cache_dir().map(|c| c.join("smollm2").join(SMOLLM2_GGUF_NAME)),
    }
}

/// The shared read-only data directory: `$SPARRING_SHARED`, else `<workspace root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SPARRING_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}
