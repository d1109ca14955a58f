//! The formats module's error type, result alias and the format-agnostic [`TensorSource`] trait (kept free of
//! heavy dependencies so the fuzz crate can include it).

use std::path::{Path, PathBuf};

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
    pub fn io(file: &Path, source: std::io::Error) -> Self {
        FormatError::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    pub fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        FormatError::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// Replaces the context (e.g. `gguf` → the file path) of an `Invalid` error.
    pub fn with_context(self, context: impl Into<String>) -> Self {
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
