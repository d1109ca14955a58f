//! Causal attention of one layer over the host KV cache, one batch row at a time ([`Attn::row`]): per KV group,
//! scores `Q·Kᵀ` and `P·V` through the matmul kernel with a masked softmax between them.

use super::super::kernels::{self, Layout, PANEL};
use super::ops::{exp_fast, simd_ok};

/// `row = softmax(row · scale + bias)` (`bias` 0 or -inf; at least one 0). Lane-wise max and
/// sum (16 lanes), so the loops vectorize.
#[inline(always)]
fn softmax_masked(row: &mut [f32], bias: &[f32], scale: f32) {
    const L: usize = 16;
    let mut mx = [f32::NEG_INFINITY; L];
    let (mut rc, mut bc) = (row.chunks_exact_mut(L), bias.chunks_exact(L));
    for (c, b) in (&mut rc).zip(&mut bc) {
        for l in 0..L {
            c[l] = c[l] * scale + b[l];
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let mut m = mx
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    for (v, &b) in rc.into_remainder().iter_mut().zip(bc.remainder()) {
        *v = *v * scale + b;
        m = if *v > m { *v } else { m };
    }
    let mut z = [0.0f32; L];
    let mut rc = row.chunks_exact_mut(L);
    for c in &mut rc {
        for l in 0..L {
            c[l] = exp_fast(c[l] - m);
            z[l] += c[l];
        }
    }
    let mut zs: f32 = z.iter().sum();
    for v in rc.into_remainder() {
        *v = exp_fast(*v - m);
        zs += *v;
    }
    let inv = 1.0 / zs;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Causal attention of one layer over the KV cache, one batch row at a time.
pub(super) struct Attn<'a> {
    /// This step's `[live positions, qkv_w]` projections (RoPE applied).
    pub(super) qkv: &'a [f32],
    /// `[batch][kv_heads][cap][head_dim]`
    pub(super) k: &'a [f32],
    pub(super) v: &'a [f32],
    /// Additive mask `[batch][s][past + s]`: 0 where a query sees a position, -inf elsewhere.
    pub(super) bias: &'a [f32],
    /// Row of position `r * s + i` in `qkv` and in the output, `usize::MAX` for padding.
    pub(super) slot: &'a [usize],
    pub(super) s: usize,
    pub(super) nh: usize,
    pub(super) nkv: usize,
    pub(super) hd: usize,
    pub(super) cap: usize,
    pub(super) qkv_w: usize,
    pub(super) scale: f32,
}

impl Attn<'_> {
    /// Row `r`'s outputs over its first `t` cached positions: `att_r: [live positions of r,
    /// heads * head_dim]`, the first of them live position `first`.
    pub(super) fn row(&self, r: usize, first: usize, att_r: &mut [f32], t: usize) {
        #[cfg(target_arch = "x86_64")]
        if simd_ok() {
            // SAFETY: the features are checked.
            unsafe { self.row_simd(r, first, att_r, t) };
            return;
        }
        self.row_body(r, first, att_r, t)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_simd(&self, r: usize, first: usize, att_r: &mut [f32], t: usize) {
        self.row_body(r, first, att_r, t)
    }

    /// Per KV group: the group's query heads × this step's positions as one matrix, scores
    /// `Q·Kᵀ` and `P·V` by the matmul kernel, masked softmax in between.
    #[inline(always)]
    fn row_body(&self, r: usize, first: usize, att_r: &mut [f32], t: usize) {
        let (s, nh, hd, cap) = (self.s, self.nh, self.hd, self.cap);
        let group = nh / self.nkv;
        let rows = group * s;
        let bias = &self.bias[r * s * t..(r + 1) * s * t];
        let mut q = vec![0.0f32; rows * hd];
        let mut sc = vec![0.0f32; rows * t];
        let mut o = vec![0.0f32; rows * hd];
        for g in 0..self.nkv {
            let base = (r * self.nkv + g) * cap * hd;
            for hh in 0..group {
                let head = g * group + hh;
                for i in 0..s {
                    let dst = &mut q[(hh * s + i) * hd..(hh * s + i + 1) * hd];
                    match self.slot[r * s + i] {
                        usize::MAX => dst.fill(0.0),
                        li => dst.copy_from_slice(&self.qkv[li * self.qkv_w + head * hd..][..hd]),
                    }
                }
            }
            let k_lay = Layout {
                ps: hd * PANEL,
                ks: PANEL,
            };
            kernels::matmul_strided(&q, &self.k[base..], rows, t, hd, k_lay, &mut sc);
            for (row, b) in sc.chunks_exact_mut(t).zip(bias.chunks_exact(t).cycle()) {
                softmax_masked(row, b, self.scale);
            }
            let v_lay = Layout { ps: PANEL, ks: hd };
            kernels::matmul_strided(&sc, &self.v[base..], rows, hd, t, v_lay, &mut o);
            for hh in 0..group {
                let head = g * group + hh;
                for i in 0..s {
                    let li = self.slot[r * s + i];
                    if li != usize::MAX {
                        let at = ((li - first) * nh + head) * hd;
                        att_r[at..at + hd]
                            .copy_from_slice(&o[(hh * s + i) * hd..(hh * s + i + 1) * hd]);
                    }
                }
            }
        }
    }
}
