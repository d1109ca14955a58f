//! Parsing a GGUF file's bytes: a bounds-checked `Cursor` over the buffer, and `GgufFile::parse_bytes`, which
//! reads the header, every metadata value, the tensor infos and the alignment, and checks every tensor's data
//! against the end of the file. Every count and length is checked against the bytes that remain before anything is
//! allocated; errors name the byte offset.

use std::collections::HashMap;

use super::{
    Bytes, DEFAULT_ALIGNMENT, FormatError, GGUF_MAGIC, GgmlType, GgufFile, MAX_ARRAY_DEPTH,
    MAX_DIMS, MetaType, MetaValue, Result, TensorInfo,
};

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
    /// Parses the whole file: header, metadata, tensor infos, data-section bounds.
    pub(super) fn parse_bytes(bytes: Bytes) -> Result<GgufFile> {
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
}
