//! The error type of the `lm` module.

/// Everything that can go wrong in the LM stack. Messages name the key, file or offset.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// A backend was asked for whose cargo feature is not compiled in.
    #[error(
        "backend `{kind}` is not compiled into this build: rebuild with `cargo build --features {feature}`"
    )]
    BackendNotCompiled {
        /// Backend name as written in a scenario.
        kind: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A backend name that is none of the known ones.
    #[error("unknown backend `{0}` (expected one of: flex, wgpu, cuda)")]
    UnknownBackend(String),
    /// An impossible configuration value; the string names the key.
    #[error("invalid config: {0}")]
    Config(String),
    /// Invalid input to a model call (empty batch, too long sequence, token out of vocabulary…).
    #[error("invalid input: {0}")]
    Input(String),
    /// Reading tensor data back from the device failed.
    #[error("tensor read failed: {0}")]
    Data(String),
    /// A malformed or mismatching checkpoint; `origin` names the file (or `<bytes>`).
    #[error("checkpoint {origin}: {msg}")]
    Checkpoint {
        /// File path or `<bytes>`.
        origin: String,
        /// What is wrong, with the byte offset or tensor name.
        msg: String,
    },
    /// File system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model thread is gone or its job panicked.
    #[error("model thread: {0}")]
    Thread(String),
}
