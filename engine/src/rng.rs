//! Deterministic randomness, the one module of it for the whole workspace: a splitmix64 stream (one `u64` of
//! state, so checkpoints store it exactly; the Burn models' init and sampling, the intent game's data and the
//! scripted kinds all draw from it), keyed hashes, and seed derivation from (scenario seed, round, key), so that
//! every request's randomness is fixed by what it is, never by call order or restarts.

/// splitmix64's increment (the golden-ratio constant).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finalizer: a bijective 64-bit mixer.
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a seed and a key of words into one well-mixed 64-bit value (order-sensitive): order-independent draws
/// such as a judge's noise or per-seed choices.
pub fn hash_words(seed: u64, words: &[u64]) -> u64 {
    let mut h = finalize(seed ^ GAMMA);
    for &w in words {
        h = finalize(h.wrapping_add(GAMMA) ^ finalize(w.wrapping_add(0x632B_E59B_D9B4_E019)));
    }
    h
}

/// Maps 64 random bits to a float uniform in [0, 1) (53 bits).
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

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
pub fn mix(z: u64) -> u64 {
    finalize(z.wrapping_add(GAMMA))
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

/// The splitmix64 generator (Steele, Lea, Flood 2014): same seed, same draws, on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator for sub-stream `stream` of `seed` (independent of the other streams).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut g = Self::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        Self::new(g.next_u64() ^ stream)
    }

    /// The raw state (for checkpoints).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a generator from its raw [`state`](Self::state).
    pub fn from_state(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        finalize(self.state)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform in `0..n` (n > 0; returns 0 for n == 0), without modulo bias (rejection).
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

    /// Fisher-Yates shuffle with [`below`](Self::below).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// Uniform in `0..n` by one multiply-shift (Lemire; returns 0 for n == 0): one draw, a bias of at most
    /// n / 2^64. The intent game's data draw with it (and so must keep doing, for the same data).
    pub fn below_scaled(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// A uniformly chosen element ([`below_scaled`](Self::below_scaled)), or `None` for an empty slice.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below_scaled(items.len()))
        }
    }

    /// Fisher-Yates shuffle with [`below_scaled`](Self::below_scaled).
    pub fn shuffle_scaled<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below_scaled(i + 1);
            items.swap(i, j);
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
    fn streams_are_deterministic_restorable_and_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            let x = a.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x.to_bits(), b.next_f64().to_bits());
        }
        // The reference splitmix64 sequence for seed 0.
        let mut z = SplitMix64::new(0);
        assert_eq!(z.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(z.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut c = SplitMix64::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(
            SplitMix64::derive(1, 0).next_u64(),
            SplitMix64::derive(1, 1).next_u64()
        );
        assert_eq!(mix(5), SplitMix64::new(5).next_u64());
    }

    #[test]
    fn scaled_draws_are_in_range_and_cover() {
        let mut r = SplitMix64::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let x = r.below_scaled(5);
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.choose::<u8>(&[]), None);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle_scaled(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn hash_words_is_order_sensitive() {
        assert_ne!(hash_words(1, &[1, 2]), hash_words(1, &[2, 1]));
        assert_eq!(hash_words(1, &[1, 2]), hash_words(1, &[1, 2]));
        assert_ne!(hash_words(1, &[1, 2]), hash_words(2, &[1, 2]));
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
