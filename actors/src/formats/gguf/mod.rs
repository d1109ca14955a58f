//! GGUF files (versions 2 and 3): a bounds-checked reader (header, metadata of every value type, tensor infos,
//! alignment, data section), tensor access with dequantization to `f32`, a writer (for tests and conversion),
//! and [`GgufHfView`], which presents a llama GGUF under Hugging Face tensor names and layout.
//!
//! Every length, count and offset read from the file is checked against the bytes that remain before anything
//! is allocated: a truncated or hostile file gives an error naming the byte offset, never a panic.
//!
//! Where things are: this file holds the types ([`GgufFile`], [`TensorInfo`]) and the accessors of a parsed file;
//! `parse` the byte-level reader, `metadata` the value types, `write` the writer, `hf_view` the Hugging Face view
//! and the name and Q/K-row mappings. Everything is re-exported here, so `formats::gguf::X` names every item.

mod hf_view;
mod metadata;
mod parse;
mod write;

pub use hf_view::{GgufHfView, gguf_to_hf_name, hf_to_gguf_name, permute_qk, unpermute_qk};
pub use metadata::{MetaType, MetaValue};
pub use write::GgufWriter;
// Used by the HF → GGUF converter; not by the fuzz crate, which compiles the parser files alone.
#[allow(unused_imports)]
pub(crate) use write::put_header;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::bytes::Bytes;
use super::quant::{self, GgmlType};
use super::{FormatError, Result, TensorSource};

/// `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays accepted (real files use 1).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions as stored in the file: innermost (contiguous) first, ggml's `ne`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape, outermost first (the reverse of `dims`): a linear weight is `[out, in]`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata, tensor infos, and the (memory-mapped or owned) bytes.
pub struct GgufFile {
    bytes: Bytes,
    /// The file the bytes came from (`None` for [`GgufFile::parse`]).
    pub path: Option<PathBuf>,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Data-section alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a GGUF file. Errors name the path and the byte offset.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let mut g = Self::parse_bytes(Bytes::map(path)?)
            .map_err(|e| e.with_context(path.display().to_string()))?;
        g.path = Some(path.to_path_buf());
        Ok(g)
    }

    /// Parses a GGUF file held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse_bytes(Bytes::Owned(bytes))
    }

    /// The file's path for messages (`gguf` when parsed from memory).
    pub fn context(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "gguf".into(),
        }
    }

    /// The metadata value for `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn required(&self, key: &str) -> Result<&MetaValue> {
        self.meta(key).ok_or_else(|| {
            FormatError::invalid(self.context(), format!("metadata `{key}` is missing"))
        })
    }

    fn wrong(&self, key: &str, want: &str, got: &MetaValue) -> FormatError {
        FormatError::invalid(
            self.context(),
            format!("metadata `{key}` should be {want}, got {}", got.describe()),
        )
    }

    /// A required string value.
    pub fn meta_str(&self, key: &str) -> Result<&str> {
        let v = self.required(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    /// A required non-negative integer value of any integer type.
    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self.required(key)?;
        v.as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// A required number (float or integer) as `f64`.
    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        let v = self.required(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    /// A required array value.
    pub fn meta_array(&self, key: &str) -> Result<&[MetaValue]> {
        let v = self.required(key)?;
        v.as_array().ok_or_else(|| self.wrong(key, "an array", v))
    }

    /// A required array of strings.
    pub fn meta_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.meta_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| self.wrong(&format!("{key}[{i}]"), "a string", v))
            })
            .collect()
    }

    /// `general.architecture` (e.g. `llama`), used as the prefix of the model's hyper-parameter keys.
    pub fn architecture(&self) -> Result<&str> {
        self.meta_str("general.architecture")
    }

    /// The tensor info for `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn tensor_or_err(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| {
            FormatError::invalid(self.context(), format!("tensor `{name}` not found"))
        })
    }

    /// The raw (possibly quantized) bytes of a tensor, with its info. Bounds were checked at parse time.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let t = self.tensor_or_err(name)?;
        let start = (self.data_offset + t.offset) as usize;
        let data = self
            .bytes
            .as_slice()
            .get(start..start + t.n_bytes as usize)
            .ok_or_else(|| {
                FormatError::invalid(
                    self.context(),
                    format!("tensor `{name}` data out of bounds"),
                )
            })?;
        Ok((t, data))
    }

    /// Dequantizes a tensor to `f32`: `(row-major outer-first shape, data)`.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (t, data) = self.tensor_data(name)?;
        let values = quant::dequantize(t.ty, data, t.n_elements() as usize)
            .map_err(|e| e.with_context(format!("{}: tensor `{name}`", self.context())))?;
        Ok((t.shape(), values))
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
}

impl TensorSource for GgufFile {
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensor(name).map(|t| t.shape())
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.tensor_f32(name)
    }
}
