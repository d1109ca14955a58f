//! Checkpoints: a small self-describing binary dump of named f32 tensors and named u64 scalars
//! (weights, EMA, reference, optimizer moments and step, RNG states). Every length is checked on
//! load; errors name the file and byte offset.
//!
//! Layout (little endian): magic `SPRCKPT1`, u32 tensor count, then per tensor: u32 name length,
//! name (UTF-8), u32 rank, rank × u64 dims, `prod(dims)` × f32; then u32 scalar count and per
//! scalar: u32 name length, name, u64 value.

use std::collections::BTreeMap;
use std::path::Path;

use super::LmError;

const MAGIC: &[u8; 8] = b"SPRCKPT1";
/// Upper bound on a name's length, to refuse absurd allocations from hostile files.
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

    /// Serializes to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for (name, t) in &self.tensors {
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
        out.extend_from_slice(&(self.scalars.len() as u32).to_le_bytes());
        for (name, v) in &self.scalars {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses bytes written by [`Checkpoint::to_bytes`]; `origin` names the source in errors.
    pub fn from_bytes(buf: &[u8], origin: &str) -> Result<Self, LmError> {
        let mut r = Reader {
            buf,
            pos: 0,
            origin,
        };
        if r.take(8, "magic")? != MAGIC {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncation() {
        let mut ck = Checkpoint::default();
        ck.put_tensor(
            "a",
            TensorRecord::new(vec![2, 2], vec![1.0, -2.5, f32::MIN, 3.0]),
        );
        ck.put_tensor("b", TensorRecord::new(vec![], vec![7.0]));
        ck.put_scalar("s", u64::MAX - 3);
        let bytes = ck.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&bytes, "x").unwrap(), ck);
        for cut in [0, 5, 12, 20, bytes.len() - 1] {
            let e = Checkpoint::from_bytes(&bytes[..cut], "f.ckpt")
                .unwrap_err()
                .to_string();
            assert!(e.contains("f.ckpt") && e.contains("byte"), "{e}");
        }
        let mut bad = bytes.clone();
        bad[12] = 0xff; // huge name length
        assert!(Checkpoint::from_bytes(&bad, "x").is_err());
    }
}
