//! Writing GGUF: [`GgufWriter`] (whole files in memory, for tests and small conversions) and [`put_header`], the
//! one header writer, which the streaming HF → GGUF converter shares.

use std::path::Path;

use super::{DEFAULT_ALIGNMENT, FormatError, GGUF_MAGIC, GgmlType, MetaValue, Result};

/// Builds GGUF files (v3 by default). Tensor data is given as raw bytes of the stated type.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    /// Version written in the header (2 or 3; both have the same layout).
    pub version: u32,
    /// Alignment of the data section and of every tensor's offset.
    pub alignment: u64,
    /// Metadata in order. `general.alignment` is added when `alignment` is not 32 and it is absent.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensors in order: name, dims innermost first, type, raw bytes.
    pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array { elem, items } => {
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// Writes a GGUF header up to its last tensor info (not the padding after it): magic, `version`, the counts,
/// `metadata`, and each tensor's info `(name, dims innermost first, type, data bytes)` with its offset in the
/// data section, each tensor's data starting at a multiple of `align`. The one header writer
/// ([`GgufWriter::to_bytes`] and the streaming HF → GGUF converter).
pub(crate) fn put_header(
    out: &mut Vec<u8>,
    version: u32,
    metadata: &[&(String, MetaValue)],
    tensors: &[(&str, &[u64], GgmlType, usize)],
    align: usize,
) -> Vec<usize> {
    out.extend_from_slice(&GGUF_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(out, k);
        out.extend_from_slice(&(v.meta_type() as u32).to_le_bytes());
        put_value(out, v);
    }
    let mut offset = 0usize;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (name, dims, ty, bytes) in tensors {
        put_string(out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.code().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = (offset + bytes).div_ceil(align) * align;
    }
    offsets
}

impl GgufWriter {
    /// A v3 writer with the default alignment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry.
    pub fn meta(&mut self, key: impl Into<String>, value: MetaValue) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor; `dims` innermost first, `data` the raw bytes of type `ty`.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push((name.into(), dims, ty, data));
        self
    }

    /// Adds an F32 tensor from a row-major outer-first shape.
    pub fn tensor_f32(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
    ) -> &mut Self {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, data)
    }

    /// Serializes the file. Element types of arrays are taken from `MetaValue::Array::elem`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment.max(1) as usize;
        let add_alignment = self.alignment != DEFAULT_ALIGNMENT
            && !self.metadata.iter().any(|(k, _)| k == "general.alignment");
        let extra = add_alignment.then(|| {
            (
                "general.alignment".to_string(),
                MetaValue::U32(self.alignment as u32),
            )
        });
        let metadata: Vec<&(String, MetaValue)> =
            self.metadata.iter().chain(extra.iter()).collect();
        let infos: Vec<(&str, &[u64], GgmlType, usize)> = self
            .tensors
            .iter()
            .map(|(name, dims, ty, data)| (name.as_str(), dims.as_slice(), *ty, data.len()))
            .collect();
        let mut out = Vec::new();
        let offsets = put_header(&mut out, self.version, &metadata, &infos, align);
        if !self.tensors.is_empty() {
            let start = out.len().div_ceil(align) * align;
            out.resize(start, 0);
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                out.resize(start + off, 0);
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Writes the file.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|e| FormatError::io(path, e))
    }
}
