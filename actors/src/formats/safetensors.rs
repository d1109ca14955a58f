//! safetensors files. Reading goes through Hugging Face's `safetensors` crate, which checks the header: its
//! 8-byte length, the JSON, the dtypes, every tensor's shape against its data offsets, and the tensors packed one
//! after another over the whole data section. Kept here, where the crate does less than this module needs:
//!
//! - owning the bytes, a memory map or a buffer, beside the parsed header (the crate's `SafeTensors` borrows
//!   them, so it cannot be stored next to them; its `read_metadata` gives an owned header instead);
//! - error messages: the crate says what is wrong but not where (e.g. "invalid shape, data type, or offset for
//!   tensor"), so a rejected file is explained again here, naming the file, the tensor and the byte offset;
//! - conversion of the float and integer dtypes to `f32` (bf16 and f16 through `half`), which the crate leaves to
//!   its users;
//! - writing. The crate's serializer puts `__metadata__` in hash-map order, which changes from run to run (the
//!   same adapters would not give the same bytes), takes every tensor's bytes at once, and writes files only with
//!   its `std` feature (which brings `tempfile`). Here the metadata keys are sorted, the tensors keep the caller's
//!   order (each entry is the crate's `TensorInfo`), and a converter streams one dequantized tensor at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ::safetensors::tensor::TensorInfo;
use ::safetensors::{SafeTensorError, SafeTensors};
use half::{bf16, f16};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::bytes::Bytes;
use super::{FormatError, Result, TensorSource};

/// A safetensors element type (the `safetensors` crate's).
pub use ::safetensors::Dtype;

/// Largest JSON header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

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
        let mut f = Self::parse_bytes(Bytes::map(path)?)
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
        let (n, header) = SafeTensors::read_metadata(buf).map_err(|e| err(explain(buf, e)))?;
        let mut tensors: Vec<StInfo> = header
            .tensors()
            .into_iter()
            .map(|(name, t)| StInfo {
                name,
                dtype: t.dtype,
                shape: t.shape.clone(),
                data_offsets: t.data_offsets,
            })
            .collect();
        // Data order; empty tensors share an offset, so their names break the tie.
        tensors.sort_by(|a, b| (a.data_offsets, &a.name).cmp(&(b.data_offsets, &b.name)));
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let metadata = header
            .metadata()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(SafetensorsFile {
            bytes,
            path: None,
            tensors,
            index,
            metadata,
            data_offset: 8 + n,
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
        let data = to_f32(t.dtype, d).ok_or_else(|| {
            FormatError::invalid(
                self.context(),
                format!("tensor `{name}`: dtype {} cannot be read as f32", t.dtype),
            )
        })?;
        Ok((t.shape.clone(), data))
    }
}

/// Converts little-endian raw data of `dtype` to `f32`; `None` for the dtypes without a conversion here (the
/// 4-, 6- and 8-bit floats and complex numbers).
pub fn to_f32(dtype: Dtype, d: &[u8]) -> Option<Vec<f32>> {
    fn le<const N: usize>(d: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        d.chunks_exact(N)
            .map(|b| {
                let mut a = [0u8; N];
                a.copy_from_slice(b);
                f(a)
            })
            .collect()
    }
    Some(match dtype {
        Dtype::F32 => le(d, f32::from_le_bytes),
        Dtype::F16 => le(d, |b| f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => le(d, |b| bf16::from_le_bytes(b).to_f32()),
        Dtype::F64 => le(d, |b| f64::from_le_bytes(b) as f32),
        Dtype::BOOL | Dtype::U8 => le(d, |[b]: [u8; 1]| b as f32),
        Dtype::I8 => le(d, |[b]: [u8; 1]| b as i8 as f32),
        Dtype::I16 => le(d, |b| i16::from_le_bytes(b) as f32),
        Dtype::U16 => le(d, |b| u16::from_le_bytes(b) as f32),
        Dtype::I32 => le(d, |b| i32::from_le_bytes(b) as f32),
        Dtype::U32 => le(d, |b| u32::from_le_bytes(b) as f32),
        Dtype::I64 => le(d, |b| i64::from_le_bytes(b) as f32),
        Dtype::U64 => le(d, |b| u64::from_le_bytes(b) as f32),
        _ => return None,
    })
}

/// The crate's rejection of `buf`, said again with the byte offset or the tensor it is about.
fn explain(buf: &[u8], e: SafeTensorError) -> String {
    let n = buf.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
    let after = buf.len().saturating_sub(8);
    let header = usize::try_from(n)
        .ok()
        .and_then(|n| buf.get(8..8usize.checked_add(n)?));
    match (e, header) {
        (SafeTensorError::HeaderTooSmall, _) => format!(
            "header length at byte 0 needs 8 bytes, the file has {}",
            buf.len()
        ),
        (SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength, _) => format!(
            "header length {n} at byte 0 exceeds the {after} bytes after it (or the {MAX_HEADER_BYTES}-byte limit)"
        ),
        (SafeTensorError::InvalidHeader(u), _) => {
            format!("header is not UTF-8 at byte {}", 8 + u.valid_up_to())
        }
        (e, Some(header)) => explain_header(header, after - header.len())
            .unwrap_or_else(|| format!("header at byte 8: {e}")),
        (e, None) => e.to_string(),
    }
}

/// The first thing wrong with a header (the JSON bytes after the length) over a data section of `data_len` bytes:
/// JSON, entries, then the tensors' layout in data order; `None` if nothing is found.
fn explain_header(header: &[u8], data_len: usize) -> Option<String> {
    let data_offset = 8 + header.len();
    let json: serde_json::Value = match serde_json::from_slice(header) {
        Ok(v) => v,
        Err(e) => {
            let at = 8 + json_byte_offset(header, &e);
            return Some(format!("header JSON invalid at byte {at}: {e}"));
        }
    };
    let Some(obj) = json.as_object() else {
        return Some("header at byte 8 is not a JSON object".into());
    };
    let mut entries = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            if let Err(e) = BTreeMap::<String, String>::deserialize(v) {
                return Some(format!("`__metadata__` is not a map of strings: {e}"));
            }
            continue;
        }
        if let Some(d) = v.get("dtype")
            && Dtype::deserialize(d).is_err()
        {
            return Some(format!("tensor `{name}`: unsupported dtype {d}"));
        }
        match TensorInfo::deserialize(v) {
            Ok(t) => entries.push((name, t)),
            Err(e) => return Some(format!("tensor `{name}`: {e} in {v}")),
        }
    }
    entries.sort_by_key(|(_, t)| t.data_offsets);
    let mut end = 0;
    for (name, t) in entries {
        let (b, e) = t.data_offsets;
        let at = format!("tensor `{name}`: data_offsets [{b}, {e}]");
        if b > e || e > data_len {
            return Some(format!(
                "{at} outside the {data_len}-byte data section starting at byte {data_offset}"
            ));
        }
        if b < end {
            return Some(format!(
                "{at} overlap the previous tensor's, which ends at {end}"
            ));
        }
        if b > end {
            return Some(format!(
                "{at} leave bytes {end}..{b} of the data section unused"
            ));
        }
        let bits = t
            .shape
            .iter()
            .try_fold(t.dtype.bitsize(), |a, &d| a.checked_mul(d));
        if bits != Some((e - b) * 8) {
            return Some(format!(
                "{at}: shape {:?} of {} does not match them",
                t.shape, t.dtype
            ));
        }
        end = e;
    }
    (end != data_len).then(|| {
        format!(
            "the tensors end at byte {end} of the {data_len}-byte data section starting at byte {data_offset}"
        )
    })
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

/// A header: `__metadata__` (keys sorted), then the tensors in data order, each entry the crate's `TensorInfo`.
struct Header<'a> {
    metadata: &'a BTreeMap<String, String>,
    tensors: Vec<(&'a str, TensorInfo)>,
}

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if !self.metadata.is_empty() {
            map.serialize_entry("__metadata__", self.metadata)?;
        }
        for (name, info) in &self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

/// The header of F32 tensors `(name, shape)` laid out in this order, padded with spaces to a multiple of 8 bytes
/// as the crate pads it; `None` when the sizes overflow.
fn f32_header<'a>(
    shapes: impl Iterator<Item = (&'a str, &'a [usize])>,
    metadata: &'a BTreeMap<String, String>,
) -> Option<Vec<u8>> {
    let mut off = 0usize;
    let mut tensors = Vec::new();
    for (name, shape) in shapes {
        let n = shape.iter().try_fold(4usize, |a, &d| a.checked_mul(d))?;
        let (dtype, shape, data_offsets) = (Dtype::F32, shape.to_vec(), (off, off.checked_add(n)?));
        tensors.push((
            name,
            TensorInfo {
                dtype,
                shape,
                data_offsets,
            },
        ));
        off = data_offsets.1;
    }
    let mut h = serde_json::to_vec(&Header { metadata, tensors }).ok()?;
    h.resize(h.len().next_multiple_of(8), b' ');
    Some(h)
}

/// Writes an F32 safetensors file, streaming: `shapes` gives every tensor's name and shape up front, then
/// `fetch(name)` is called once per tensor, in order, for its data.
pub fn write_f32_streaming(
    path: &Path,
    shapes: &[(String, Vec<usize>)],
    metadata: &BTreeMap<String, String>,
    mut fetch: impl FnMut(&str) -> Result<Vec<f32>>,
) -> Result<()> {
    let header = f32_header(
        shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
        metadata,
    )
    .ok_or_else(|| FormatError::invalid(path.display().to_string(), "tensor sizes overflow"))?;
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
///
/// # Panics
/// When a tensor's data is not as long as its shape says (the header would not describe the data).
pub fn to_bytes_f32(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    for (name, shape, data) in tensors {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert_eq!(n, Some(data.len()), "tensor `{name}` of shape {shape:?}");
    }
    let header = f32_header(
        tensors.iter().map(|(n, s, _)| (n.as_str(), s.as_slice())),
        metadata,
    )
    .expect("the sizes of tensors in memory fit in usize");
    let size: usize = tensors.iter().map(|(_, _, d)| d.len() * 4).sum();
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
