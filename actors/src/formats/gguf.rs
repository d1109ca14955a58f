//! GGUF files (versions 2 and 3): a bounds-checked reader (header, metadata of every value type, tensor infos,
//! alignment, data section), tensor access with dequantization to `f32`, a writer (for tests and conversion),
//! and [`GgufHfView`], which presents a llama GGUF under Hugging Face tensor names and layout.
//!
//! Every length, count and offset read from the file is checked against the bytes that remain before anything
//! is allocated: a truncated or hostile file gives an error naming the byte offset, never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// The type of a metadata value, with its GGUF code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl MetaType {
    /// The type for a GGUF value-type code.
    pub fn from_code(code: u32) -> Option<MetaType> {
        Some(match code {
            0 => MetaType::U8,
            1 => MetaType::I8,
            2 => MetaType::U16,
            3 => MetaType::I16,
            4 => MetaType::U32,
            5 => MetaType::I32,
            6 => MetaType::F32,
            7 => MetaType::Bool,
            8 => MetaType::String,
            9 => MetaType::Array,
            10 => MetaType::U64,
            11 => MetaType::I64,
            12 => MetaType::F64,
            _ => return None,
        })
    }

    /// Smallest encoded size of one value of this type (strings: the 8-byte length; arrays: type + count).
    fn min_size(self) -> u64 {
        match self {
            MetaType::U8 | MetaType::I8 | MetaType::Bool => 1,
            MetaType::U16 | MetaType::I16 => 2,
            MetaType::U32 | MetaType::I32 | MetaType::F32 => 4,
            MetaType::U64 | MetaType::I64 | MetaType::F64 | MetaType::String => 8,
            MetaType::Array => 12,
        }
    }
}

/// A metadata value of any GGUF type. Arrays keep their element type (so empty arrays round-trip) and may nest.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array {
        elem: MetaType,
        items: Vec<MetaValue>,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value's type.
    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array { .. } => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// Any integer type as `i128` (bools are not integers).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v as i128,
            MetaValue::I8(v) => v as i128,
            MetaValue::U16(v) => v as i128,
            MetaValue::I16(v) => v as i128,
            MetaValue::U32(v) => v as i128,
            MetaValue::I32(v) => v as i128,
            MetaValue::U64(v) => v as i128,
            MetaValue::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// A float or integer as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array { items, .. } => Some(items),
            _ => None,
        }
    }

    /// A short description for error messages.
    fn describe(&self) -> String {
        match self {
            MetaValue::Array { elem, items } => format!("array of {} {elem:?}", items.len()),
            MetaValue::String(_) => "string".into(),
            other => format!("{other:?}"),
        }
    }
}

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

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn err(message: String) -> FormatError {
    FormatError::invalid("gguf", message)
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(err(format!(
                "{what} at byte {} needs {n} bytes but the file ends at byte {}",
                self.pos,
                self.buf.len()
            )));
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what remains.
    fn check_count(&self, count: u64, min_size: u64, what: &str, at: usize) -> Result<usize> {
        let need = count.checked_mul(min_size);
        match need {
            Some(n) if n <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(err(format!(
                "{what} {count} at byte {at} exceeds the {} bytes remaining in the file",
                self.remaining()
            ))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(err(format!(
                "{what}: string length {len} at byte {at} exceeds the {} bytes remaining in the file",
                self.remaining()
            )));
        }
        let start = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|e| {
            err(format!(
                "{what}: string at byte {start} is not valid UTF-8 (byte {})",
                start + e.utf8_error().valid_up_to()
            ))
        })
    }

    fn value(&mut self, ty: MetaType, depth: usize, what: &str) -> Result<MetaValue> {
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>(what)?[0]),
            MetaType::I8 => MetaValue::I8(self.array::<1>(what)?[0] as i8),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            MetaType::U32 => MetaValue::U32(self.u32(what)?),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            MetaType::U64 => MetaValue::U64(self.u64(what)?),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            MetaType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(err(format!(
                            "{what}: bool byte {b} at byte {at} is neither 0 nor 1"
                        )));
                    }
                }
            }
            MetaType::String => MetaValue::String(self.string(what)?),
            MetaType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(err(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} at byte {at}"
                    )));
                }
                let code = self.u32(what)?;
                let elem = MetaType::from_code(code).ok_or_else(|| {
                    err(format!(
                        "{what}: unknown array element type {code} at byte {at}"
                    ))
                })?;
                let count_at = self.pos;
                let count = self.u64(what)?;
                let n = self.check_count(
                    count,
                    elem.min_size(),
                    &format!("{what}: array length"),
                    count_at,
                )?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                MetaValue::Array { elem, items }
            }
        })
    }
}

impl GgufFile {
    /// Memory-maps and parses a GGUF file. Errors name the path and the byte offset.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only and private to this value; like every reader of model files we assume
        // the file is not truncated or modified by another process while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let mut g = Self::parse_bytes(Bytes::Mapped(map))
            .map_err(|e| e.with_context(path.display().to_string()))?;
        g.path = Some(path.to_path_buf());
        Ok(g)
    }

    /// Parses a GGUF file held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse_bytes(Bytes::Owned(bytes))
    }

    fn parse_bytes(bytes: Bytes) -> Result<GgufFile> {
        let buf = bytes.as_slice();
        let mut c = Cursor { buf, pos: 0 };
        let magic = c.array::<4>("magic")?;
        if magic != GGUF_MAGIC {
            return Err(err(format!(
                "bad magic {magic:02x?} at byte 0, expected \"GGUF\""
            )));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(err(
                    "version 1 at byte 4 is not supported (only 2 and 3)".into()
                ));
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(err(
                    "big-endian GGUF (version at byte 4) is not supported".into()
                ));
            }
            v => {
                return Err(err(format!(
                    "unsupported version {v} at byte 4 (only 2 and 3)"
                )));
            }
        }
        let tensors_at = c.pos;
        let n_tensors = c.u64("tensor count")?;
        let kv_at = c.pos;
        let n_kv = c.u64("metadata count")?;
        // Each KV needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
        let n_kv = c.check_count(n_kv, 13, "metadata count", kv_at)?;
        let n_tensors_us = c.check_count(n_tensors, 24, "tensor count", tensors_at)?;

        let mut metadata = Vec::with_capacity(n_kv);
        let mut meta_index = HashMap::with_capacity(n_kv);
        for i in 0..n_kv {
            let key_at = c.pos;
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty_at = c.pos;
            let code = c.u32(&format!("type of metadata `{key}`"))?;
            let ty = MetaType::from_code(code).ok_or_else(|| {
                err(format!(
                    "metadata `{key}`: unknown value type {code} at byte {ty_at}"
                ))
            })?;
            let value = c.value(ty, 0, &format!("metadata `{key}`"))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(err(format!(
                    "duplicate metadata key `{key}` at byte {key_at}"
                )));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
            Some(v) => {
                return Err(err(format!(
                    "`general.alignment` must be a power-of-two u32, got {}",
                    v.describe()
                )));
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors_us);
        let mut tensor_index = HashMap::with_capacity(n_tensors_us);
        for i in 0..n_tensors_us {
            let info_at = c.pos;
            let name = c.string(&format!("tensor #{i} name"))?;
            let what = format!("tensor `{name}`");
            let nd_at = c.pos;
            let n_dims = c.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(err(format!(
                    "{what}: {n_dims} dimensions at byte {nd_at} (must be 1..={MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elements: u64 = 1;
            for _ in 0..n_dims {
                let d_at = c.pos;
                let d = c.u64(&what)?;
                n_elements = n_elements
                    .checked_mul(d)
                    .filter(|&n| n <= i64::MAX as u64)
                    .ok_or_else(|| {
                        err(format!(
                            "{what}: dimension {d} at byte {d_at} overflows the element count"
                        ))
                    })?;
                dims.push(d);
            }
            let ty_at = c.pos;
            let code = c.u32(&what)?;
            let ty = GgmlType::from_code(code).ok_or_else(|| {
                err(format!(
                    "{what}: unknown tensor type {code} at byte {ty_at}"
                ))
            })?;
            let bs = ty.block_size() as u64;
            if bs == 0 || ty.type_size() == 0 || !dims[0].is_multiple_of(bs) {
                return Err(err(format!(
                    "{what}: innermost dimension {} at byte {} is not a multiple of the {} block size {bs}",
                    dims[0],
                    nd_at + 4,
                    ty.name()
                )));
            }
            let n_bytes = ty.bytes_for(n_elements).ok_or_else(|| {
                err(format!(
                    "{what}: size of {n_elements} {} elements overflows",
                    ty.name()
                ))
            })?;
            let off_at = c.pos;
            let offset = c.u64(&what)?;
            if !offset.is_multiple_of(alignment) {
                return Err(err(format!(
                    "{what}: data offset {offset} at byte {off_at} is not a multiple of the alignment {alignment}"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(err(format!(
                    "duplicate tensor name `{name}` at byte {info_at}"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }

        let end_of_infos = c.pos as u64;
        let data_offset = end_of_infos.div_ceil(alignment) * alignment;
        let file_len = buf.len() as u64;
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(e) if e <= file_len => {}
                _ => {
                    return Err(err(format!(
                        "tensor `{}`: data [{} + {}, {} bytes) runs past the end of the file at byte {file_len}",
                        t.name, data_offset, t.offset, t.n_bytes
                    )));
                }
            }
        }

        Ok(GgufFile {
            bytes,
            path: None,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
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

/// Maps a llama-family GGUF tensor name to its Hugging Face name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`); `None` for tensors with no HF counterpart (e.g. `rope_freqs.weight`).
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Maps a Hugging Face llama-family tensor name back to its GGUF name.
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let g = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// Undoes llama.cpp's Q/K permutation (`convert_hf_to_gguf.py`'s `permute`), in place of rows of a tensor
/// whose outer dimension is `n_head * head_dim` (a weight `[n_head*head_dim, in]` or a bias `[n_head*head_dim]`).
///
/// llama.cpp stores each head's rows as interleaved pairs (row `2i+s` of the head holds HF row `s*head_dim/2 + i`),
/// which suits RoPE on adjacent pairs `(x[2i], x[2i+1])`. After this function the rows are in HF order, for
/// rotate-half RoPE `(x[i], x[i + head_dim/2])`.
pub fn unpermute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Result<Vec<f32>> {
    permute_rows(data, shape, n_head, false)
}

/// The inverse of [`unpermute_qk`]: HF row order → llama.cpp's interleaved order.
pub fn permute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Result<Vec<f32>> {
    permute_rows(data, shape, n_head, true)
}

fn permute_rows(data: &[f32], shape: &[usize], n_head: usize, to_gguf: bool) -> Result<Vec<f32>> {
    let rows = shape.first().copied().unwrap_or(0);
    let cols = shape
        .iter()
        .skip(1)
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let cols = match cols {
        Some(c) if rows.checked_mul(c) == Some(data.len()) => c,
        _ => {
            return Err(FormatError::invalid(
                "permute",
                format!("shape {shape:?} does not match {} values", data.len()),
            ));
        }
    };
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(FormatError::invalid(
            "permute",
            format!("shape {shape:?} cannot be split into {n_head} heads of even size"),
        ));
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let hf = h * head_dim + s * half + i;
                let gg = h * head_dim + 2 * i + s;
                let (dst, src) = if to_gguf { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// A llama-family GGUF presented as a Hugging Face checkpoint: HF tensor names, and Q/K rows un-permuted to HF
/// order (rotate-half RoPE) when the architecture is `llama` (llama.cpp's converter permutes only for that
/// family; e.g. `qwen2` files are stored unpermuted and used with NeoX/rotate-half RoPE). A model loader written
/// against HF names and rotate-half RoPE works unchanged on a GGUF file through this view.
pub struct GgufHfView<'a> {
    /// The underlying file.
    pub gguf: &'a GgufFile,
    n_head: usize,
    n_head_kv: usize,
    permuted: bool,
    names: Vec<(String, String)>,
}

impl<'a> GgufHfView<'a> {
    /// Builds the view; reads `{arch}.attention.head_count` (and `head_count_kv`, default equal).
    pub fn new(gguf: &'a GgufFile) -> Result<Self> {
        let arch = gguf.architecture()?.to_string();
        let n_head = gguf.meta_usize(&format!("{arch}.attention.head_count"))?;
        let kv_key = format!("{arch}.attention.head_count_kv");
        let n_head_kv = if gguf.meta(&kv_key).is_some() {
            gguf.meta_usize(&kv_key)?
        } else {
            n_head
        };
        let names = gguf
            .tensors
            .iter()
            .filter_map(|t| gguf_to_hf_name(&t.name).map(|hf| (hf, t.name.clone())))
            .collect();
        Ok(GgufHfView {
            gguf,
            n_head,
            n_head_kv,
            permuted: arch == "llama",
            names,
        })
    }

    /// Whether Q/K rows are un-permuted by this view (true for `llama`).
    pub fn unpermutes_qk(&self) -> bool {
        self.permuted
    }

    fn gguf_name(&self, hf: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(h, _)| h == hf)
            .map(|(_, g)| g.as_str())
    }
}

impl TensorSource for GgufHfView<'_> {
    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(h, _)| h.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.gguf_name(name).and_then(|g| self.gguf.shape(g))
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let g = self.gguf_name(name).ok_or_else(|| {
            FormatError::invalid(
                self.gguf.context(),
                format!("no GGUF tensor maps to HF name `{name}`"),
            )
        })?;
        let (shape, data) = self.gguf.tensor_f32(g)?;
        if self.permuted {
            if g.contains(".attn_q.") {
                return Ok((shape.clone(), unpermute_qk(&data, &shape, self.n_head)?));
            }
            if g.contains(".attn_k.") {
                return Ok((shape.clone(), unpermute_qk(&data, &shape, self.n_head_kv)?));
            }
        }
        Ok((shape, data))
    }
}
