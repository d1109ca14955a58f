//! Small-batch matmul kernels of the host inference path ([`super::host::HostLlama`]):
//! `out = x · wᵀ` with weights packed in panels of 16 rows, stored as f32 or as f16 (widened in
//! registers, half the memory traffic). One register-tiled kernel body, instantiated by a macro
//! for AVX-512F and for AVX2+FMA+F16C, a portable scalar fallback, and a rayon split over blocks
//! of panels.

use rayon::prelude::*;

/// Weight rows per packed panel.
pub(crate) const PANEL: usize = 16;

/// Weights `[n, k]` packed in panels of [`PANEL`] rows, k-major inside a panel: element
/// `(j, t)` at `((j / PANEL) * k + t) * PANEL + j % PANEL`; rows past `n` are zero. The kernels
/// stream a panel contiguously and need no horizontal reduction.
pub(crate) fn pack_panels(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let panels = n.div_ceil(PANEL);
    let mut out = vec![0.0f32; panels * PANEL * k];
    if k == 0 {
        return out;
    }
    for (j, row) in w.chunks_exact(k).take(n).enumerate() {
        let base = (j / PANEL) * k * PANEL + j % PANEL;
        for (t, &v) in row.iter().enumerate() {
            out[base + t * PANEL] = v;
        }
    }
    out
}

/// Where the kernels find element `(j, t)` of `w`: at `(j / PANEL) * ps + t * ks + j % PANEL`
/// ([`pack_panels`]: `ps = k * PANEL`, `ks = PANEL`).
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// Elements between consecutive panels.
    pub ps: usize,
    /// Elements between consecutive k positions inside a panel.
    pub ks: usize,
}

/// Single-threaded `out[i][j] = Σ_t x[i][t] · w(j, t)` for `x: [m, k]`, f32 `w` addressed by
/// `lay`, `out: [m, n]`. Serves attention: Q·Kᵀ over a KV cache kept in panels, and P·V over
/// the natural `[t][head_dim]` layout (`ps = PANEL`, `ks = head_dim`).
///
/// # Panics
/// When a slice is shorter than its shape and layout say (a caller bug).
pub(crate) fn matmul_strided(
    x: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
    lay: Layout,
    out: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(PANEL);
    let last = (panels - 1) * lay.ps + k.saturating_sub(1) * lay.ks + PANEL;
    assert!(x.len() >= m * k && w.len() >= last && out.len() >= m * n);
    // SAFETY: bounds checked above; one caller covers all panels.
    unsafe { cols(x, WRef::F32(w), m, n, k, lay, 0, panels, out.as_mut_ptr()) };
}

/// Borrowed packed weights (see [`pack_panels`]) in one of the formats the kernels read.
#[derive(Clone, Copy)]
pub(crate) enum WRef<'a> {
    F32(&'a [f32]),
    /// IEEE binary16 bit patterns.
    F16(&'a [u16]),
}

impl WRef<'_> {
    fn len(&self) -> usize {
        match self {
            WRef::F32(w) => w.len(),
            WRef::F16(w) => w.len(),
        }
    }
}

/// Weight element kinds, as const generic parameters of the kernels.
const W_F32: u8 = 0;
const W_F16: u8 = 1;

/// One weight element as f32.
///
/// # Safety
/// `w` points to weights of kind `W` holding more than `idx` elements.
#[inline(always)]
unsafe fn w_scalar<const W: u8>(w: *const u8, idx: usize) -> f32 {
    unsafe {
        if W == W_F16 {
            half::f16::from_bits(*w.cast::<u16>().add(idx)).to_f32()
        } else {
            *w.cast::<f32>().add(idx)
        }
    }
}

/// AVX-512 kernels when the CPU has them, unless `SPARRING_AVX512=0` (then AVX2+FMA+F16C).
#[cfg(target_arch = "x86_64")]
fn use_avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("SPARRING_AVX512").map_or(true, |v| v != "0")
            && std::arch::is_x86_feature_detected!("avx512f")
    })
}

#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `out[i][j] = Σ_k x[i][k] · w[j][k]` for `x: [m, k]`, `w` packed from `[n, k]` by
/// [`pack_panels`], `out: [m, n]`; parallel over blocks of panels.
///
/// # Panics
/// When a slice is shorter than its shape says (a caller bug, never data-dependent).
pub(crate) fn matmul(x: &[f32], w: WRef<'_>, m: usize, n: usize, k: usize, out: &mut [f32]) {
    let panels = n.div_ceil(PANEL);
    assert!(x.len() >= m * k && w.len() >= panels * PANEL * k && out.len() >= m * n);
    let lay = Layout {
        ps: k * PANEL,
        ks: PANEL,
    };
    let threads = rayon::current_num_threads().max(1);
    let work = m * n * k;
    let out_ptr = SendPtr(out.as_mut_ptr());
    if threads == 1 || work < 1 << 18 {
        // SAFETY: shapes checked above; a single caller covers all panels.
        unsafe { cols(x, w, m, n, k, lay, 0, panels, out_ptr.0) };
        return;
    }
    // Several blocks of panels per thread for balance.
    let per = panels.div_ceil(threads * 4);
    (0..panels.div_ceil(per)).into_par_iter().for_each(|bi| {
        let q0 = bi * per;
        let q1 = (q0 + per).min(panels);
        let p = out_ptr;
        // SAFETY: shapes checked above; blocks write disjoint column ranges of `out`.
        unsafe { cols(x, w, m, n, k, lay, q0, q1, p.0) };
    });
}

/// The columns of panels `q0..q1` of `out` (row stride `n`).
///
/// # Safety
/// `x` holds `m * k` floats, `w` the packed panels of `[n, k]`, `out` points to `m * n` floats;
/// no other thread writes these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn cols(
    x: &[f32],
    w: WRef<'_>,
    m: usize,
    n: usize,
    k: usize,
    lay: Layout,
    q0: usize,
    q1: usize,
    out: *mut f32,
) {
    unsafe {
        match w {
            WRef::F32(w) => cols_of::<W_F32>(x, w.as_ptr().cast(), m, n, k, lay, q0, q1, out),
            WRef::F16(w) => cols_of::<W_F16>(x, w.as_ptr().cast(), m, n, k, lay, q0, q1, out),
        }
    }
}

/// [`cols`] for one weight kind: the widest kernel the CPU runs, else scalar.
///
/// # Safety
/// As [`cols`], with `w` pointing to packed weights of kind `W`.
#[allow(clippy::too_many_arguments)]
unsafe fn cols_of<const W: u8>(
    x: &[f32],
    w: *const u8,
    m: usize,
    n: usize,
    k: usize,
    lay: Layout,
    q0: usize,
    q1: usize,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if use_avx512() {
            // SAFETY: feature checked; caller's contract.
            unsafe { avx512::matmul_cols::<W>(x.as_ptr(), w, m, n, k, lay, q0, q1, out) };
            return;
        }
        if use_avx2() {
            // SAFETY: features checked; caller's contract.
            unsafe { avx2::matmul_cols::<W>(x.as_ptr(), w, m, n, k, lay, q0, q1, out) };
            return;
        }
    }
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in q0 * PANEL..(q1 * PANEL).min(n) {
            let base = (j / PANEL) * lay.ps + j % PANEL;
            let mut s = 0.0f32;
            for (t, &xv) in xr.iter().enumerate() {
                // SAFETY: j < n, t < k: inside the panels (caller's contract).
                s += xv * unsafe { w_scalar::<W>(w, base + t * lay.ks) };
            }
            // SAFETY: i < m, j < n.
            unsafe { *out.add(i * n + j) = s };
        }
    }
}

/// One module of register-tiled kernels per instruction set, from one body: `$feat` the
/// target features, `$v` the f32 vector type of `LANES` lanes, then the intrinsics it is built
/// from (zero, broadcast of an `__m128` low lane, unaligned loads of `LANES` f32 or f16 weights
/// widened to f32, fused multiply-add, unaligned store), then `$mr => $np`: the tile shape
/// (rows of x × panels) by remaining rows, up to `($max_mr, $max_np)`, sized to the register
/// file.
///
/// A tile accumulates `MR · NP · VPP` vectors while the panels stream along k; each weight
/// vector is loaded once per tile, each x value broadcast once per k step. The hot loop uses
/// pointer increments and wrapping arithmetic only, and loads through intrinsics that carry no
/// debug-build precondition checks (`_mm*_loadu_ps` copy through a stack temporary under them):
/// a build with debug assertions or overflow checks (the dev profile) compiles it to the same
/// code as a release build.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_kernels {
    (
        mod $name:ident, $feat:literal, $v:ty, lanes $lanes:literal,
        zero $zero:ident, bcast $bcast:ident,
        load_f32 |$pf:ident| $load_f32:expr, load_f16 |$ph:ident| $load_f16:expr,
        fma $fma:ident, store $store:ident,
        tiles { $($mr:literal => $np:literal,)* _ => ($max_mr:literal, $max_np:literal) }
    ) => {
        mod $name {
            use std::arch::x86_64::*;

            const LANES: usize = $lanes;
            const VPP: usize = super::PANEL / LANES;

            #[inline]
            #[target_feature(enable = $feat)]
            fn zero() -> $v {
                $zero()
            }

            /// Broadcast of `*p` (read through an intrinsic: no alignment check in debug builds).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn splat(p: *const f32) -> $v {
                unsafe { $bcast(_mm_load_ss(p)) }
            }

            /// `LANES` weights from element `idx` of packed weights of kind `W`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_w<const W: u8>(w: *const u8, idx: usize) -> $v {
                unsafe {
                    if W == super::W_F16 {
                        let $ph = w.cast::<u16>().wrapping_add(idx);
                        $load_f16
                    } else {
                        let $pf = w.cast::<f32>().wrapping_add(idx);
                        $load_f32
                    }
                }
            }

            /// One tile: `MR` rows of x from `x` (row stride `k`) against the `NP` panels from
            /// element `w0` of `w`; results to `out` (row stride `n`) from column `col0`.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn tile<const W: u8, const MR: usize, const NP: usize>(
                x: *const f32,
                k: usize,
                w: *const u8,
                w0: usize,
                lay: super::Layout,
                out: *mut f32,
                n: usize,
                col0: usize,
            ) {
                unsafe {
                    let mut acc = [[[zero(); VPP]; NP]; MR];
                    let mut xo = [0usize; MR];
                    for (r, o) in xo.iter_mut().enumerate() {
                        *o = r.wrapping_mul(k);
                    }
                    let mut wo = [0usize; NP];
                    for (c, o) in wo.iter_mut().enumerate() {
                        *o = w0.wrapping_add(c.wrapping_mul(lay.ps));
                    }
                    let mut xp = x;
                    let mut t = k;
                    while t != 0 {
                        t -= 1;
                        let mut wv = [[zero(); VPP]; NP];
                        for c in 0..NP {
                            for v in 0..VPP {
                                wv[c][v] = load_w::<W>(w, wo[c].wrapping_add(v * LANES));
                            }
                        }
                        for r in 0..MR {
                            let xv = splat(xp.wrapping_add(xo[r]));
                            for c in 0..NP {
                                for v in 0..VPP {
                                    acc[r][c][v] = $fma(xv, wv[c][v], acc[r][c][v]);
                                }
                            }
                        }
                        xp = xp.wrapping_add(1);
                        for o in wo.iter_mut() {
                            *o = o.wrapping_add(lay.ks);
                        }
                    }
                    for (r, accr) in acc.iter().enumerate() {
                        let row = out.wrapping_add(r.wrapping_mul(n));
                        for (c, accc) in accr.iter().enumerate() {
                            let col = col0 + c * super::PANEL;
                            if col + super::PANEL <= n {
                                for (v, &a) in accc.iter().enumerate() {
                                    $store(row.wrapping_add(col + v * LANES), a);
                                }
                            } else if col < n {
                                let mut buf = [0.0f32; super::PANEL];
                                for (v, &a) in accc.iter().enumerate() {
                                    $store(buf.as_mut_ptr().wrapping_add(v * LANES), a);
                                }
                                std::ptr::copy_nonoverlapping(
                                    buf.as_ptr(),
                                    row.wrapping_add(col),
                                    n - col,
                                );
                            }
                        }
                    }
                }
            }

            /// Tiles of `MR` rows from row `i` across panels `q0..q1`.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn rows<const W: u8, const MR: usize, const NP: usize>(
                x: *const f32,
                w: *const u8,
                k: usize,
                lay: super::Layout,
                i: usize,
                q0: usize,
                q1: usize,
                n: usize,
                out: *mut f32,
            ) {
                unsafe {
                    let x = x.wrapping_add(i * k);
                    let out = out.wrapping_add(i * n);
                    let mut q = q0;
                    while q + NP <= q1 {
                        let (w0, col) = (q * lay.ps, q * super::PANEL);
                        tile::<W, MR, NP>(x, k, w, w0, lay, out, n, col);
                        q += NP;
                    }
                    while q < q1 {
                        let (w0, col) = (q * lay.ps, q * super::PANEL);
                        tile::<W, MR, 1>(x, k, w, w0, lay, out, n, col);
                        q += 1;
                    }
                }
            }

            /// The columns of panels `q0..q1` of `out = x · wᵀ`.
            ///
            /// # Safety
            /// The CPU has `$feat`; `x` holds `m * k` floats, `w` the packed panels of `[n, k]`
            /// of kind `W`, `out` `m * n` floats of which no other thread writes these columns.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn matmul_cols<const W: u8>(
                x: *const f32,
                w: *const u8,
                m: usize,
                n: usize,
                k: usize,
                lay: super::Layout,
                q0: usize,
                q1: usize,
                out: *mut f32,
            ) {
                // With several row tiles, chunks of panels (a multiple of the widest tile, about
                // 256 KiB of weights) stay in L2 while every row tile passes over them: the
                // weights stream from memory once.
                let elem = if W == super::W_F16 { 2 } else { 4 };
                let fit = (256 << 10) / (lay.ps * elem).max(1);
                let chunk = if m <= $max_mr {
                    q1 - q0
                } else {
                    (fit / $max_np * $max_np).max($max_np)
                };
                let mut qa = q0;
                while qa < q1 {
                    let qb = (qa + chunk).min(q1);
                    let mut i = 0;
                    while i < m {
                        let mr = (m - i).min($max_mr);
                        unsafe {
                            match mr {
                                $($mr => rows::<W, $mr, $np>(x, w, k, lay, i, qa, qb, n, out),)*
                                _ => rows::<W, $max_mr, $max_np>(x, w, k, lay, i, qa, qb, n, out),
                            }
                        }
                        i += mr;
                    }
                    qa = qb;
                }
            }
        }
    };
}

// 32 registers: up to 24 accumulators + the panel vectors + a broadcast.
#[cfg(target_arch = "x86_64")]
simd_kernels! {
    mod avx512, "avx512f", __m512, lanes 16,
    zero _mm512_setzero_ps, bcast _mm512_broadcastss_ps,
    load_f32 |p| _mm512_maskz_loadu_ps(!0, p),
    load_f16 |p| _mm512_cvtph_ps(_mm256_lddqu_si256(p.cast())),
    fma _mm512_fmadd_ps, store _mm512_storeu_ps,
    tiles { 1 => 4, 2 => 4, 3 => 4, 4 => 4, 5 => 4, 6 => 4, 7 => 3, _ => (8, 3) }
}

// 16 registers: up to 12 accumulators + 2 panel vectors + a broadcast.
#[cfg(target_arch = "x86_64")]
simd_kernels! {
    mod avx2, "avx2,fma,f16c", __m256, lanes 8,
    zero _mm256_setzero_ps, bcast _mm256_broadcastss_ps,
    load_f32 |p| _mm256_castsi256_ps(_mm256_lddqu_si256(p.cast())),
    load_f16 |p| _mm256_cvtph_ps(_mm_lddqu_si128(p.cast())),
    fma _mm256_fmadd_ps, store _mm256_storeu_ps,
    tiles { 1 => 2, 2 => 2, 3 => 1, 4 => 1, 5 => 1, _ => (6, 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut o = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                o[i * n + j] = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
            }
        }
        o
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn strided_layouts_match_naive() {
        // P·V: V natural `[t][hd]` read as n = hd rows of k = t.
        let (m, t, hd) = (5, 37, 64);
        let x = data(m * t, 3);
        let v = data(t * hd, 4);
        let vt: Vec<f32> = (0..hd * t).map(|i| v[(i % t) * hd + i / t]).collect();
        let mut got = vec![0.0; m * hd];
        let lay = Layout { ps: PANEL, ks: hd };
        matmul_strided(&x, &v, m, hd, t, lay, &mut got);
        let want = naive(&x, &vt, m, hd, t);
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-3, "{d}");
        // Q·Kᵀ: K in panels of a larger capacity (stride `cap * 0 + hd * PANEL`), n = t rows.
        let cap = 48;
        let k_rows = data(cap * hd, 5);
        let mut kp = vec![0.0; cap * hd];
        for j in 0..cap {
            for dd in 0..hd {
                kp[((j / PANEL) * hd + dd) * PANEL + j % PANEL] = k_rows[j * hd + dd];
            }
        }
        let q = data(m * hd, 6);
        let mut got = vec![0.0; m * t];
        let lay = Layout {
            ps: hd * PANEL,
            ks: PANEL,
        };
        matmul_strided(&q, &kp, m, t, hd, lay, &mut got);
        let want = naive(&q, &k_rows[..t * hd], m, t, hd);
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-3, "{d}");
    }

    #[test]
    fn kernels_match_naive_for_every_shape_and_kind() {
        for &(m, n, k) in &[
            (1, 7, 5),
            (3, 70, 40),
            (5, 131, 33),
            (16, 96, 64),
            (17, 600, 520),
            (49, 40, 24),
            (9, 1, 3),
        ] {
            let x = data(m * k, 1);
            let w = data(n * k, 2);
            let packed = pack_panels(&w, n, k);
            let w16: Vec<u16> = packed
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            let w16f: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            for (wr, reference) in [(WRef::F32(&packed), &w), (WRef::F16(&w16), &w16f)] {
                let want = naive(&x, reference, m, n, k);
                let mut got = vec![f32::NAN; m * n];
                matmul(&x, wr, m, n, k, &mut got);
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-3, "{m}x{n}x{k}: {d}");
            }
        }
    }
}
