//! Model file formats: GGUF (reader, writer, dequantization), safetensors and the Hugging Face checkpoint
//! layout, tokenizers (from `tokenizer.json` or a GGUF vocabulary), chat templates, and the GGUF → HF
//! converter. Everything read from disk is bounds-checked; errors name the file, key or byte offset.

pub mod chat;
pub mod gguf;
pub mod hf;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;

use std::path::{Path, PathBuf};

pub use chat::{ChatMessage, ChatTemplate};
pub use gguf::{GgufFile, GgufHfView, GgufWriter, MetaType, MetaValue, TensorInfo};
pub use hf::{HfCheckpoint, LlamaConfig, convert_gguf_to_hf};
pub use quant::GgmlType;
pub use safetensors::SafetensorsFile;
pub use tokenizer::TextTokenizer;

/// Every error of the formats module. Messages name the file (or `<memory>`), and the byte offset or key.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The content is malformed or not what was asked for; `context` is the file (or format) name.
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
}

impl FormatError {
    pub(crate) fn io(file: &Path, source: std::io::Error) -> Self {
        FormatError::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        FormatError::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// Replaces the context (e.g. `gguf` → the file path) of an `Invalid` error.
    pub(crate) fn with_context(self, context: impl Into<String>) -> Self {
        match self {
            FormatError::Invalid {
                context: old,
                message,
            } => FormatError::Invalid {
                context: context.into(),
                message: format!("{old}: {message}"),
            },
            other => other,
        }
    }
}

/// Result alias of the formats module.
pub type Result<T> = std::result::Result<T, FormatError>;

/// A named collection of tensors that can be read as `f32`, whatever the file format. Shapes are row-major,
/// outermost dimension first (PyTorch order: a linear weight is `[out_features, in_features]`).
pub trait TensorSource {
    /// All tensor names, in file order.
    fn names(&self) -> Vec<String>;
    /// The row-major (outer-first) shape of a tensor, `None` when absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Reads (and dequantizes) a tensor to `f32`: `(outer-first shape, row-major data)`.
    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)>;
    /// Whether a tensor is present.
    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }
}

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
