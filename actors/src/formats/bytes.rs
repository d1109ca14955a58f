//! A model file's bytes, memory-mapped from disk or owned in memory: what the GGUF and safetensors readers parse.

use std::fs::File;
use std::path::Path;

use super::{FormatError, Result};

/// A file's bytes.
pub(crate) enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    /// Memory-maps the file at `path` (errors name it).
    pub(crate) fn map(path: &Path) -> Result<Bytes> {
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only and private to this value; like every reader of model files we assume
        // the file is not truncated or modified by another process while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        Ok(Bytes::Mapped(map))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}
