//! Deterministic randomness: a splitmix64 stream and seed derivation from (scenario seed, round, key), so that
//! every request's randomness is fixed by what it is, never by call order or restarts.

/// FNV-1a 64-bit hash of a string (stable across platforms and versions).
pub fn fnv1a(s: &str) -> u64 {
    fnv1a_more(0xcbf2_9ce4_8422_2325, s)
}

/// FNV-1a continued: `fnv1a_more(fnv1a(a), b) == fnv1a(a + b)`.
pub fn fnv1a_more(mut h: u64, s: &str) -> u64 {
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One splitmix64 step: a good 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed for the request `key` of `round` in a game seeded with `seed`.
pub fn derive(seed: u64, round: u64, key: &str) -> u64 {
    RoundKeys::new(seed, round).derive(key)
}

/// [`derive`] for the key `key + suffix`, without building it.
pub fn derive_suffixed(seed: u64, round: u64, key: &str, suffix: &str) -> u64 {
    RoundKeys::new(seed, round).prefix(key).seed_with(suffix)
}

/// Many request keys of one round that share prefixes (`r3/s1/a0` → `r3/s1/a0/p0-1`, `…/d2`): each key is
/// concatenated, not formatted, and its seed continues the prefix's hash instead of rehashing it.
/// `RoundKeys::new(seed, round).prefix(k).with(sfx)` is `(k + sfx, derive(seed, round, k + sfx))`.
#[derive(Debug, Clone, Copy)]
pub struct RoundKeys {
    base: u64,
}

impl RoundKeys {
    pub fn new(seed: u64, round: u64) -> Self {
        RoundKeys {
            base: mix(seed ^ mix(round)),
        }
    }

    /// [`derive`] of `key` in this round.
    pub fn derive(&self, key: &str) -> u64 {
        mix(self.base ^ fnv1a(key))
    }

    /// `key`, hashed once, to extend with suffixes.
    pub fn prefix<'a>(&self, key: &'a str) -> KeyPrefix<'a> {
        KeyPrefix {
            key,
            hash: fnv1a(key),
            base: self.base,
        }
    }
}

/// A key prefix of a [`RoundKeys`], hashed.
#[derive(Debug, Clone, Copy)]
pub struct KeyPrefix<'a> {
    key: &'a str,
    hash: u64,
    base: u64,
}

impl KeyPrefix<'_> {
    /// The key `prefix + suffix` and its seed.
    pub fn with(&self, suffix: &str) -> (String, u64) {
        (self.key_with(suffix), self.seed_with(suffix))
    }

    /// The key `prefix + suffix`.
    pub fn key_with(&self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.key.len() + suffix.len());
        key.push_str(self.key);
        key.push_str(suffix);
        key
    }

    /// The seed of the key `prefix + suffix`, without building it.
    pub fn seed_with(&self, suffix: &str) -> u64 {
        mix(self.base ^ fnv1a_more(self.hash, suffix))
    }
}

/// A splitmix64 random stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; returns 0 for n == 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffixed_key_derives_as_the_whole_key() {
        for (k, sfx) in [("r2/s1/a0", "/label"), ("", "/x"), ("r1", "")] {
            assert_eq!(
                derive_suffixed(7, 3, k, sfx),
                derive(7, 3, &format!("{k}{sfx}"))
            );
        }
        assert_ne!(derive_suffixed(7, 3, "a", "/b"), derive(7, 3, "a"));
    }

    #[test]
    fn round_keys_build_and_derive_as_whole_keys() {
        let keys = RoundKeys::new(7, 3);
        for (k, sfx) in [("r3/s1/a0", "/p0-1"), ("", "/x"), ("r3", "")] {
            let (key, seed) = keys.prefix(k).with(sfx);
            assert_eq!(key, format!("{k}{sfx}"));
            assert_eq!(seed, derive(7, 3, &key));
            assert_eq!(keys.prefix(k).seed_with(sfx), seed);
            assert_eq!(keys.prefix(k).key_with(sfx), key);
            assert_eq!(keys.derive(&key), seed);
        }
        assert_ne!(RoundKeys::new(7, 4).derive("a"), keys.derive("a"));
    }

    #[test]
    fn derive_depends_on_all_inputs() {
        let a = derive(1, 2, "r2/s1");
        assert_eq!(a, derive(1, 2, "r2/s1"));
        assert_ne!(a, derive(2, 2, "r2/s1"));
        assert_ne!(a, derive(1, 3, "r2/s1"));
        assert_ne!(a, derive(1, 2, "r2/s2"));
    }

    #[test]
    fn below_in_range_and_shuffle_is_permutation() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(r.below(5) < 5);
        }
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
