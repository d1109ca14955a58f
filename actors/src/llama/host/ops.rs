//! The elementwise steps of the host forward pass: RMSNorm, RoPE (both layouts), SiLU·up, and `exp_fast` (a
//! vectorizable `e^x`), with the AVX2+FMA dispatch (`simd_ok`) they share with the attention.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::super::config::RopeLayout;

/// `out = x / rms(x) · w` per row of `h` values.
pub(super) fn rms_norm(x: &[f32], w: &[f32], eps: f32, h: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks(h).zip(out.chunks_mut(h)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * inv * g;
        }
    }
}

/// Rotates one head's `x` by the position's `cos`/`sin` table, in the model's RoPE layout.
pub(super) fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
    let half = x.len() / 2;
    match layout {
        RopeLayout::RotateHalf => {
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                x[i] = a * cos[i] - b * sin[i];
                x[i + half] = b * cos[i] + a * sin[i];
            }
        }
        RopeLayout::Interleaved => {
            for i in 0..half {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = b * cos[i] + a * sin[i];
            }
        }
    }
}

/// Whether the AVX2+FMA builds of the elementwise loops (attention, SiLU) can run.
pub(super) fn simd_ok() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `e^x` in f32 without a libm call, so loops over it vectorize: Cephes' `expf` range
/// reduction and degree-7 polynomial (about 1 ulp); 0 below -87.3, clamped above 88.
#[inline(always)]
pub(super) fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.0);
    let k = (xc * LOG2E).round_ties_even();
    let r = xc - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((k as i32).wrapping_add(127) as u32) << 23);
    if x < -87.3 { 0.0 } else { e * scale }
}

/// `act = silu(gate) * up` for rows of `gu = [gate | up]` (`ff` each); blocks of rows in
/// parallel when there are many (the prompt).
pub(super) fn silu_mul(gu: &[f32], act: &mut [f32], ff: usize) {
    const ROWS: usize = 32;
    if act.len() > ROWS * ff && rayon::current_num_threads() > 1 {
        gu.par_chunks(ROWS * 2 * ff)
            .zip(act.par_chunks_mut(ROWS * ff))
            .for_each(|(g, a)| silu_mul_rows(g, a, ff));
    } else {
        silu_mul_rows(gu, act, ff);
    }
}

fn silu_mul_rows(gu: &[f32], act: &mut [f32], ff: usize) {
    #[inline(always)]
    fn body(gu: &[f32], act: &mut [f32], ff: usize) {
        for (row, a) in gu.chunks_exact(2 * ff).zip(act.chunks_exact_mut(ff)) {
            let (g, u) = row.split_at(ff);
            for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                *a = g / (1.0 + exp_fast(-g)) * u;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn simd(gu: &[f32], act: &mut [f32], ff: usize) {
        body(gu, act, ff)
    }
    #[cfg(target_arch = "x86_64")]
    if simd_ok() {
        // SAFETY: the features are checked.
        unsafe { simd(gu, act, ff) };
        return;
    }
    body(gu, act, ff)
}
