//! safetensors files: a bounds-checked reader (8-byte little-endian header length, JSON header, raw data) with
//! conversion of float and integer dtypes to `f32`, and a streaming writer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::{FormatError, Result, TensorSource};

/// Largest JSON header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A safetensors element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl Dtype {
    /// The dtype for its header name (`F32`, `BF16`, ...).
    pub fn from_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "BOOL" => Dtype::Bool,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            _ => return None,
        })
    }

    /// The header name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Row-major shape, outer first.
    pub shape: Vec<usize>,
    /// `[begin, end)` relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// A parsed safetensors file.
pub struct SafetensorsFile {
    bytes: Bytes,
    /// The file the bytes came from, if any.
    pub path: Option<PathBuf>,
    /// Tensor infos in data order.
    pub tensors: Vec<StInfo>,
    index: BTreeMap<String, usize>,
    /// The `__metadata__` string map.
    pub metadata: BTreeMap<String, String>,
    /// Absolute offset of the data section (8 + header length).
    pub data_offset: usize,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

fn err(m: String) -> FormatError {
    FormatError::invalid("safetensors", m)
}

impl SafetensorsFile {
    /// Memory-maps and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: read-only private map; the file must not be modified while open (as for every model reader).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let mut f = Self::parse_bytes(Bytes::Mapped(map))
            .map_err(|e| e.with_context(path.display().to_string()))?;
        f.path = Some(path.to_path_buf());
        Ok(f)
    }

    /// Parses a file held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        Self::parse_bytes(Bytes::Owned(bytes))
    }

    fn parse_bytes(bytes: Bytes) -> Result<Self> {
        let buf = bytes.as_slice();
        if buf.len() < 8 {
            return Err(err(format!(
                "header length at byte 0 needs 8 bytes, the file has {}",
                buf.len()
            )));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&buf[..8]);
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER_BYTES || n > (buf.len() - 8) as u64 {
            return Err(err(format!(
                "header length {n} at byte 0 exceeds the {} bytes after it (or the {MAX_HEADER_BYTES}-byte limit)",
                buf.len() - 8
            )));
        }
        let data_offset = 8 + n as usize;
        let header: serde_json::Value =
            serde_json::from_slice(&buf[8..data_offset]).map_err(|e| {
                err(format!(
                    "header JSON invalid at byte {}: {e}",
                    8 + json_byte_offset(&buf[8..data_offset], &e)
                ))
            })?;
        let obj = header
            .as_object()
            .ok_or_else(|| err("header at byte 8 is not a JSON object".into()))?;
        let data_len = buf.len() - data_offset;
        let mut tensors = Vec::with_capacity(obj.len());
        let mut metadata = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                let m = v
                    .as_object()
                    .ok_or_else(|| err("`__metadata__` is not an object".into()))?;
                for (k, v) in m {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err(format!("`__metadata__.{k}` is not a string")))?;
                    metadata.insert(k.clone(), s.to_string());
                }
                continue;
            }
            let bad = |what: &str| err(format!("tensor `{name}`: {what}"));
            let dtype_name = v
                .get("dtype")
                .and_then(|d| d.as_str())
                .ok_or_else(|| bad("missing `dtype`"))?;
            let dtype = Dtype::from_name(dtype_name)
                .ok_or_else(|| bad(&format!("unsupported dtype `{dtype_name}`")))?;
            let shape = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(|| bad("missing `shape`"))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| bad("`shape` is not a list of non-negative integers"))?;
            let offs = v
                .get("data_offsets")
                .and_then(|s| s.as_array())
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
                .ok_or_else(|| bad("`data_offsets` is not [begin, end]"))?;
            if offs.0 > offs.1 || offs.1 > data_len as u64 {
                return Err(bad(&format!(
                    "data_offsets [{}, {}] outside the {data_len}-byte data section starting at byte {data_offset}",
                    offs.0, offs.1
                )));
            }
            let n_el = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.size()));
            if n_el != Some((offs.1 - offs.0) as usize) {
                return Err(bad(&format!(
                    "shape {shape:?} of {dtype_name} does not match data_offsets [{}, {}]",
                    offs.0, offs.1
                )));
            }
            tensors.push(StInfo {
                name: name.clone(),
                dtype,
                shape,
                data_offsets: (offs.0 as usize, offs.1 as usize),
            });
        }
        tensors.sort_by_key(|t| t.data_offsets);
        for w in tensors.windows(2) {
            if w[1].data_offsets.0 < w[0].data_offsets.1 {
                return Err(err(format!(
                    "tensors `{}` and `{}` overlap",
                    w[0].name, w[1].name
                )));
            }
        }
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile {
            bytes,
            path: None,
            tensors,
            index,
            metadata,
            data_offset,
        })
    }

    fn context(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "safetensors".into())
    }

    /// The info of a tensor.
    pub fn tensor(&self, name: &str) -> Option<&StInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor.
    pub fn tensor_data(&self, name: &str) -> Result<(&StInfo, &[u8])> {
        let t = self.tensor(name).ok_or_else(|| {
            FormatError::invalid(self.context(), format!("tensor `{name}` not found"))
        })?;
        let (b, e) = t.data_offsets;
        let data = self
            .bytes
            .as_slice()
            .get(self.data_offset + b..self.data_offset + e)
            .ok_or_else(|| {
                FormatError::invalid(self.context(), format!("tensor `{name}` out of bounds"))
            })?;
        Ok((t, data))
    }

    /// A tensor converted to `f32`: `(shape, data)`.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (t, d) = self.tensor_data(name)?;
        Ok((t.shape.clone(), to_f32(t.dtype, d)))
    }
}

/// Converts little-endian raw data of `dtype` to `f32`.
pub fn to_f32(dtype: Dtype, d: &[u8]) -> Vec<f32> {
    let s = dtype.size();
    let it = d.chunks_exact(s);
    match dtype {
        Dtype::F32 => it
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => it
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => it
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => it
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::Bool | Dtype::U8 => it.map(|b| b[0] as f32).collect(),
        Dtype::I8 => it.map(|b| b[0] as i8 as f32).collect(),
        Dtype::I16 => it
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
            .collect(),
        Dtype::U16 => it
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32)
            .collect(),
        Dtype::I32 => it
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        Dtype::U32 => it
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        Dtype::I64 => it
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::U64 => it
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    }
}

fn json_byte_offset(text: &[u8], e: &serde_json::Error) -> usize {
    let (line, col) = (e.line(), e.column());
    let mut cur_line = 1;
    for (i, &b) in text.iter().enumerate() {
        if cur_line == line {
            return (i + col.saturating_sub(1)).min(text.len());
        }
        if b == b'\n' {
            cur_line += 1;
        }
    }
    text.len()
}

impl TensorSource for SafetensorsFile {
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensor(name).map(|t| t.shape.clone())
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.tensor_f32(name)
    }
}

/// The JSON header for tensors `(name, dtype, shape)` laid out in order, and the total data size.
fn header_json(
    entries: &[(String, Dtype, Vec<usize>)],
    metadata: &BTreeMap<String, String>,
) -> (Vec<u8>, usize) {
    let mut obj = serde_json::Map::new();
    if !metadata.is_empty() {
        obj.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).unwrap_or_default(),
        );
    }
    let mut off = 0usize;
    for (name, dtype, shape) in entries {
        let n = shape.iter().product::<usize>() * dtype.size();
        obj.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::Value::Object(obj).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    (h, off)
}

/// Writes an F32 safetensors file, streaming: `shapes` gives every tensor's name and shape up front, then
/// `fetch(name)` is called once per tensor, in order, for its data.
pub fn write_f32_streaming(
    path: &Path,
    shapes: &[(String, Vec<usize>)],
    metadata: &BTreeMap<String, String>,
    mut fetch: impl FnMut(&str) -> Result<Vec<f32>>,
) -> Result<()> {
    let entries: Vec<(String, Dtype, Vec<usize>)> = shapes
        .iter()
        .map(|(n, s)| (n.clone(), Dtype::F32, s.clone()))
        .collect();
    let (header, _) = header_json(&entries, metadata);
    let file = File::create(path).map_err(|e| FormatError::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| FormatError::io(path, e);
    w.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&header).map_err(io)?;
    for (name, shape) in shapes {
        let data = fetch(name)?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(FormatError::invalid(
                path.display().to_string(),
                format!(
                    "tensor `{name}` has {} values for shape {shape:?}",
                    data.len()
                ),
            ));
        }
        let mut buf = Vec::with_capacity(n * 4);
        for v in &data {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&buf).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Serializes F32 tensors `(name, shape, data)` to safetensors bytes.
pub fn to_bytes_f32(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let entries: Vec<(String, Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), Dtype::F32, s.clone()))
        .collect();
    let (header, size) = header_json(&entries, metadata);
    let mut out = Vec::with_capacity(8 + header.len() + size);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, _, d) in tensors {
        for v in d {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
