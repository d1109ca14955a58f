//! Error type of the Llama model: loading, configuration and input validation.

/// Everything that can go wrong building or running a Llama-family model.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// A required metadata key (GGUF metadata or config.json field) is absent or has a wrong type.
    #[error("model metadata: key `{key}` is missing or not a {expected}")]
    MissingMetadata { key: String, expected: &'static str },
    /// A configuration value is impossible (zero, not divisible, …).
    #[error("model config: {0}")]
    BadConfig(String),
    /// A tensor the architecture needs is not in the weight source.
    #[error("weights: tensor `{0}` is missing")]
    MissingTensor(String),
    /// A tensor has a shape other than the one the configuration implies.
    #[error("weights: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The weight source failed to produce a tensor (I/O, dequantization, …).
    #[error("weights: reading tensor `{name}`: {message}")]
    Source { name: String, message: String },
    /// Invalid input to forward/generate (empty batch, token id out of range, cache overflow, …).
    #[error("input: {0}")]
    Input(String),
    /// Reading a tensor back from the device failed.
    #[error("device readback: {0}")]
    Readback(String),
    /// Any of the above, in the file (or directory) named first.
    #[error("{file}: {source}")]
    InFile {
        file: String,
        #[source]
        source: Box<LlamaError>,
    },
}

impl LlamaError {
    /// This error as coming from `file` (unchanged when it already names one).
    pub fn in_file(self, file: &str) -> Self {
        match self {
            e @ LlamaError::InFile { .. } => e,
            e => LlamaError::InFile {
                file: file.to_string(),
                source: Box::new(e),
            },
        }
    }
}
