//! Model file formats: GGUF (reader, writer, dequantization), safetensors and the Hugging Face checkpoint
//! layout, tokenizers (from `tokenizer.json` or a GGUF vocabulary), chat templates, and the GGUF → HF
//! converter. Everything read from disk is bounds-checked; errors name the file, key or byte offset.

pub mod chat;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use error::{FormatError, Result, TensorSource};
pub use gguf::{GgufFile, GgufHfView, GgufWriter, MetaType, MetaValue, TensorInfo};
pub use hf::{HfCheckpoint, LlamaConfig, convert_gguf_to_hf};
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
