//! Checkpoints: named f32 tensors and named u64 scalars (weights, EMA, reference, optimizer moments
//! and step, RNG states), the saved state of a [`Learner`](super::Learner) and so of the
//! intent-game and chat-LM players.
//!
//! Stored as safetensors, written and read by [`crate::formats::safetensors`]: every tensor an F32
//! tensor under its name, in name order; every scalar an entry of the `__metadata__` string map,
//! its decimal value under its name (the project's writer writes F32 only, and the map keeps the
//! scalars apart from the tensors, as [`Checkpoint`] does). The writer sorts the metadata keys and
//! keeps the tensor order, so one state gives the same bytes every time (the engine's determinism
//! relies on it), and every value round-trips bit-exactly (NaN payloads included). Any safetensors
//! library reads them: in Python, `safe_open(path, "np")` gives the tensors and `.metadata()` the
//! scalars. The name `__metadata__` is the format's own, so no tensor may have it.
//!
//! The format before, `SPRCKPT1`, is still read (run directories of older builds hold it),
//! detected by its magic; nothing writes it any more. Its layout (little endian): magic `SPRCKPT1`,
//! u32 tensor count, then per tensor: u32 name length, name (UTF-8), u32 rank, rank × u64 dims,
//! `prod(dims)` × f32; then u32 scalar count and per scalar: u32 name length, name, u64 value.
//!
//! Bytes that are neither give an error, never a panic: it names the origin (the file, or what the
//! bytes were) and the byte offset, tensor or scalar at fault.

use std::collections::BTreeMap;
use std::path::Path;

use super::LmError;
use crate::formats::safetensors::{Dtype, SafetensorsFile, to_bytes_f32};

/// The magic of the old hand-written format (read, no longer written).
const LEGACY_MAGIC: &[u8; 8] = b"SPRCKPT1";
/// Upper bound on a name's length in the old format, to refuse absurd allocations from hostile files.
const MAX_NAME: usize = 4096;

/// A host-side tensor: shape and row-major f32 data.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values (`shape.iter().product()` of them).
    pub data: Vec<f32>,
}

impl TensorRecord {
    /// A record; the caller guarantees `data.len() == prod(shape)`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { shape, data }
    }
}

/// Named tensors and scalars, ordered by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Tensors by name (e.g. `policy/blocks.0.wqkv`, `optim/m/3`).
    pub tensors: BTreeMap<String, TensorRecord>,
    /// Scalars by name (e.g. `optim/step`, `rng/sampler`). f64 values are stored as their bits.
    pub scalars: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// Adds a tensor.
    pub fn put_tensor(&mut self, name: impl Into<String>, rec: TensorRecord) {
        self.tensors.insert(name.into(), rec);
    }

    /// Adds a scalar.
    pub fn put_scalar(&mut self, name: impl Into<String>, v: u64) {
        self.scalars.insert(name.into(), v);
    }

    /// A scalar that must be present.
    pub fn scalar(&self, name: &str) -> Result<u64, LmError> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| LmError::Checkpoint {
                origin: "<checkpoint>".into(),
                msg: format!("missing scalar `{name}`"),
            })
    }

    /// Serializes to safetensors bytes (see the module doc); the same checkpoint always gives the
    /// same bytes.
    ///
    /// # Panics
    /// When a tensor's data is not as long as its shape says (a [`TensorRecord`] built against its
    /// contract).
    pub fn to_bytes(&self) -> Vec<u8> {
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = self
            .tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.shape.clone(), t.data.clone()))
            .collect();
        let scalars: BTreeMap<String, String> = self
            .scalars
            .iter()
            .map(|(name, v)| (name.clone(), v.to_string()))
            .collect();
        to_bytes_f32(&tensors, &scalars)
    }

    /// Parses bytes written by [`Checkpoint::to_bytes`], or by the old `SPRCKPT1` writer; `origin`
    /// names the source in errors.
    pub fn from_bytes(buf: &[u8], origin: &str) -> Result<Self, LmError> {
        if buf.starts_with(LEGACY_MAGIC) {
            return Self::from_legacy_bytes(buf, origin);
        }
        let err = |msg: String| LmError::Checkpoint {
            origin: origin.to_string(),
            msg,
        };
        let file = SafetensorsFile::parse(buf.to_vec()).map_err(|e| err(e.to_string()))?;
        let mut ck = Checkpoint::default();
        for t in &file.tensors {
            let at = file.data_offset + t.data_offsets.0;
            if t.dtype != Dtype::F32 {
                return Err(err(format!(
                    "tensor `{}` (data at byte {at}) is {}, checkpoints hold F32 only",
                    t.name, t.dtype
                )));
            }
            let (_, bytes) = file.tensor_data(&t.name).map_err(|e| err(e.to_string()))?;
            let data = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            ck.put_tensor(t.name.clone(), TensorRecord::new(t.shape.clone(), data));
        }
        for (name, v) in &file.metadata {
            let v = v.parse::<u64>().map_err(|_| {
                err(format!(
                    "scalar `{name}` in the header's `__metadata__` is {v:?}, not a u64"
                ))
            })?;
            ck.put_scalar(name.clone(), v);
        }
        Ok(ck)
    }

    /// Parses the old `SPRCKPT1` layout (see the module doc).
    fn from_legacy_bytes(buf: &[u8], origin: &str) -> Result<Self, LmError> {
        let mut r = Reader {
            buf,
            pos: 0,
            origin,
        };
        if r.take(8, "magic")? != LEGACY_MAGIC {
            r.pos = 0;
            return Err(r.err("not a sparring checkpoint (bad magic)"));
        }
        let mut ck = Checkpoint::default();
        let n = r.u32("tensor count")?;
        for _ in 0..n {
            let name = r.name()?;
            let rank = r.u32("rank")? as usize;
            if rank > 8 {
                return Err(r.err(format!("tensor `{name}` has rank {rank} > 8")));
            }
            let mut shape = Vec::with_capacity(rank);
            let mut count: usize = 1;
            for _ in 0..rank {
                let d = r.u64("dim")?;
                let d = usize::try_from(d).map_err(|_| r.err("dimension too large"))?;
                count = count
                    .checked_mul(d)
                    .ok_or_else(|| r.err(format!("tensor `{name}` size overflows")))?;
                shape.push(d);
            }
            let nbytes = count
                .checked_mul(4)
                .ok_or_else(|| r.err(format!("tensor `{name}` size overflows")))?;
            let bytes = r.take(nbytes, &format!("data of `{name}`"))?;
            let data = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            ck.tensors.insert(name, TensorRecord { shape, data });
        }
        let n = r.u32("scalar count")?;
        for _ in 0..n {
            let name = r.name()?;
            let v = r.u64("scalar value")?;
            ck.scalars.insert(name, v);
        }
        if r.pos != buf.len() {
            return Err(r.err(format!("{} trailing bytes", buf.len() - r.pos)));
        }
        Ok(ck)
    }

    /// Writes to `path` (via a temporary file and rename, then fsync).
    pub fn save(&self, path: &Path) -> Result<(), LmError> {
        use std::io::Write;
        let io = |source| LmError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&self.to_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads from `path`.
    pub fn load(path: &Path) -> Result<Self, LmError> {
        let buf = std::fs::read(path).map_err(|source| LmError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&buf, &path.display().to_string())
    }
}

/// A bounds-checked cursor over an old `SPRCKPT1` checkpoint.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> LmError {
        LmError::Checkpoint {
            origin: self.origin.to_string(),
            msg: format!("at byte {}: {}", self.pos, msg.into()),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LmError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: {what} needs {n} bytes, {} left",
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, LmError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, LmError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn name(&mut self) -> Result<String, LmError> {
        let n = self.u32("name length")? as usize;
        if n > MAX_NAME {
            return Err(self.err(format!("name length {n} exceeds {MAX_NAME}")));
        }
        let b = self.take(n, "name")?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint with awkward values: NaN payloads, signed zero, subnormals, infinities, a 0-d
    /// and an empty tensor, the largest u64.
    fn sample() -> Checkpoint {
        let mut ck = Checkpoint::default();
        let odd = [
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xffa0_0001),
            -0.0,
            f32::from_bits(1),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN,
            f32::MAX,
        ];
        ck.put_tensor("policy/w", TensorRecord::new(vec![2, 4], odd.to_vec()));
        ck.put_tensor(
            "a",
            TensorRecord::new(vec![2, 2], vec![1.0, -2.5, f32::MIN, 3.0]),
        );
        ck.put_tensor("b", TensorRecord::new(vec![], vec![7.0]));
        ck.put_tensor("optim/m/0", TensorRecord::new(vec![0], vec![]));
        ck.put_tensor(
            "ema/x",
            TensorRecord::new(vec![3, 1, 2], (0..6).map(|i| i as f32 * 0.1).collect()),
        );
        ck.put_scalar("s", u64::MAX - 3);
        ck.put_scalar("optim/step", 0);
        ck.put_scalar("learner/rng", u64::MAX);
        ck
    }

    /// The same checkpoint, bit for bit (`PartialEq` on f32 says NaN != NaN).
    fn assert_bit_equal(a: &Checkpoint, b: &Checkpoint) {
        assert_eq!(a.scalars, b.scalars);
        assert_eq!(
            a.tensors.keys().collect::<Vec<_>>(),
            b.tensors.keys().collect::<Vec<_>>()
        );
        for (name, t) in &a.tensors {
            let u = &b.tensors[name];
            assert_eq!(t.shape, u.shape, "{name}");
            let bits = |d: &[f32]| d.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&t.data), bits(&u.data), "{name}");
        }
    }

    /// The old writer, to check that its files still load.
    fn legacy_bytes(ck: &Checkpoint) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(LEGACY_MAGIC);
        out.extend_from_slice(&(ck.tensors.len() as u32).to_le_bytes());
        for (name, t) in &ck.tensors {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in &t.shape {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            for x in &t.data {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&(ck.scalars.len() as u32).to_le_bytes());
        for (name, v) in &ck.scalars {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    #[test]
    fn roundtrips_bit_exactly_and_saves_identical_bytes() {
        let ck = sample();
        let bytes = ck.to_bytes();
        let back = Checkpoint::from_bytes(&bytes, "mem").unwrap();
        assert_bit_equal(&ck, &back);
        // Two saves of one state, of a copy, of the same state built in another order, and of
        // the state read back: the same bytes.
        assert_eq!(ck.to_bytes(), bytes);
        assert_eq!(ck.clone().to_bytes(), bytes);
        let mut other = Checkpoint::default();
        for (name, t) in ck.tensors.iter().rev() {
            other.put_tensor(name.clone(), t.clone());
        }
        for (name, v) in ck.scalars.iter().rev() {
            other.put_scalar(name.clone(), *v);
        }
        assert_eq!(other.to_bytes(), bytes);
        assert_eq!(back.to_bytes(), bytes);
        // A standard safetensors file: F32 tensors, the scalars as decimal strings.
        let st = SafetensorsFile::parse(bytes.clone()).unwrap();
        assert!(st.tensors.iter().all(|t| t.dtype == Dtype::F32));
        assert_eq!(st.metadata["s"], (u64::MAX - 3).to_string());
        // Through a file.
        let path = std::env::temp_dir().join(format!("sparring-ckpt-{}.st", std::process::id()));
        ck.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_bit_equal(&ck, &Checkpoint::load(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        // An empty checkpoint too.
        let empty = Checkpoint::default();
        assert_eq!(
            Checkpoint::from_bytes(&empty.to_bytes(), "mem").unwrap(),
            empty
        );
    }

    #[test]
    fn reads_the_old_format() {
        let ck = sample();
        let back = Checkpoint::from_bytes(&legacy_bytes(&ck), "old.bin").unwrap();
        assert_bit_equal(&ck, &back);
    }

    #[test]
    fn truncated_or_corrupted_checkpoints_give_errors_naming_the_origin() {
        let bytes = sample().to_bytes();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for cut in [0, 5, 8, 20, header - 1, header, header + 3, bytes.len() - 1] {
            let e = Checkpoint::from_bytes(&bytes[..cut], "f.ckpt")
                .unwrap_err()
                .to_string();
            assert!(e.contains("f.ckpt") && e.contains("byte"), "cut {cut}: {e}");
        }
        let corrupt = |from: &str, to: &str| {
            let text = String::from_utf8_lossy(&bytes[8..header]).replacen(from, to, 1);
            assert_eq!(text.len(), header - 8);
            let mut bad = bytes[..8].to_vec();
            bad.extend_from_slice(text.as_bytes());
            bad.extend_from_slice(&bytes[header..]);
            Checkpoint::from_bytes(&bad, "f.ckpt")
                .unwrap_err()
                .to_string()
        };
        let e = corrupt("\"F32\"", "\"I32\"");
        assert!(e.contains("f.ckpt") && e.contains("is I32"), "{e}");
        let e = corrupt("18446744073709551612", "1844674407370955161x");
        assert!(e.contains("f.ckpt") && e.contains("scalar `s`"), "{e}");
        let e = corrupt("{", "[");
        assert!(
            e.contains("f.ckpt") && e.contains("JSON invalid at byte"),
            "{e}"
        );
        let mut bad = bytes.clone();
        bad[7] = 0x40; // header length of petabytes
        let e = Checkpoint::from_bytes(&bad, "f.ckpt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.ckpt") && e.contains("byte 0"), "{e}");
        // No byte of the header, set to anything, panics.
        for i in 0..header {
            for v in [0, b'"', b'9', b'}', 0xff] {
                let mut bad = bytes.clone();
                bad[i] = v;
                let _ = Checkpoint::from_bytes(&bad, "f.ckpt");
            }
        }
        // The old format's errors, likewise.
        let old = legacy_bytes(&sample());
        for cut in [8, 12, 20, old.len() - 1] {
            let e = Checkpoint::from_bytes(&old[..cut], "old.bin")
                .unwrap_err()
                .to_string();
            assert!(e.contains("old.bin") && e.contains("byte"), "{e}");
        }
        let mut bad = old.clone();
        bad[15] = 0xff; // a name length of 4 GB
        let e = Checkpoint::from_bytes(&bad, "old.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("old.bin") && e.contains("name length"), "{e}");
    }
}
