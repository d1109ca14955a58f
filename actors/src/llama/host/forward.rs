//! [`HostLlama::forward`]: one chunk of tokens through the model on the host, appending to a [`HostCache`]. Only
//! the valid (non-padding) positions enter the matmuls; the attention runs per batch row ([`super::attention`]),
//! in parallel over rows; the head runs on the requested positions only.

use rayon::prelude::*;

use super::super::error::LlamaError;
use super::super::kernels::{self, PANEL};
use super::attention::Attn;
use super::ops::{rms_norm, rope, silu_mul};
use super::profile::Laps;
use super::{HostCache, HostLlama};

impl HostLlama {
    /// Runs a chunk of `ids` (equal-length rows, `valid` false on padding) through the model,
    /// appending to `cache`; returns the logits of the last position of each row,
    /// `[batch * vocab]` (or of every position when `all_positions`, `[batch * seq * vocab]`).
    /// Padding positions cost nothing (no row of any matmul): their logits are zeros and their
    /// cache slots stay masked.
    pub fn forward(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut HostCache,
        all_positions: bool,
    ) -> Result<Vec<f32>, LlamaError> {
        let c = &self.cfg;
        let b = ids.len();
        if b == 0 || b != cache.batch || valid.len() != b {
            return Err(LlamaError::Input(format!(
                "{b} rows of ids, {} of validity, cache of {}",
                valid.len(),
                cache.batch
            )));
        }
        let s = ids[0].len();
        if s == 0
            || ids
                .iter()
                .zip(valid)
                .any(|(r, v)| r.len() != s || v.len() != s)
        {
            return Err(LlamaError::Input(
                "rows must be non-empty and of equal length".into(),
            ));
        }
        if cache.len + s > cache.capacity {
            return Err(LlamaError::Input(format!(
                "cache full: {} + {s} tokens exceed capacity {}",
                cache.len, cache.capacity
            )));
        }
        let (h, nh, nkv, hd) = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
        let ff = c.intermediate_size;
        let past = cache.len;
        let t_all = past + s;
        let cap = cache.capacity;
        let mut laps = Laps::new();
        // The valid positions ("live" rows of every matmul), row-major: `live[li] = r * s + j`;
        // `slot[r * s + j]` is its index in `live`, `NONE` for padding.
        const NONE: usize = usize::MAX;
        let mut live = Vec::with_capacity(b * s);
        let mut slot = vec![NONE; b * s];
        let mut pos = Vec::with_capacity(b * s);
        for r in 0..b {
            let mut p = cache.next_pos[r];
            for j in 0..s {
                let tok = ids[r][j] as usize;
                if tok >= c.vocab_size {
                    return Err(LlamaError::Input(format!(
                        "token id {tok} out of range (vocab {})",
                        c.vocab_size
                    )));
                }
                cache.valid[r * cap + past + j] = valid[r][j];
                if valid[r][j] {
                    slot[r * s + j] = live.len();
                    live.push(r * s + j);
                    pos.push(p);
                    p += 1;
                }
            }
            cache.next_pos[r] = p;
        }
        let m = live.len();
        // Embedding and RoPE tables of the live positions.
        let mut x = vec![0.0f32; m * h];
        for (xr, &i) in x.chunks_exact_mut(h).zip(&live) {
            let tok = ids[i / s][i % s] as usize;
            xr.copy_from_slice(&self.embed[tok * h..(tok + 1) * h]);
        }
        let half = hd / 2;
        let mut cos = vec![0.0f32; m * half];
        let mut sin = vec![0.0f32; m * half];
        for (li, &p) in pos.iter().enumerate() {
            for (f, &fr) in self.inv_freq.iter().enumerate() {
                let a = (p as f32 * fr) as f64;
                cos[li * half + f] = a.cos() as f32;
                sin[li * half + f] = a.sin() as f32;
            }
        }
        // Additive attention mask `[batch][s][t_all]`, shared by every layer: a query sees
        // itself and the valid positions before it.
        let mut bias = vec![f32::NEG_INFINITY; b * s * t_all];
        for (r, br) in bias.chunks_exact_mut(s * t_all).enumerate() {
            let valid_r = &cache.valid[r * cap..][..t_all];
            for (i, row) in br.chunks_exact_mut(t_all).enumerate() {
                let qpos = past + i;
                for (bv, &ok) in row[..qpos].iter_mut().zip(valid_r) {
                    if ok {
                        *bv = 0.0;
                    }
                }
                row[qpos] = 0.0;
            }
        }
        // Batch rows with at least one live position: the attention's work items.
        let rows_live: Vec<usize> = (0..b)
            .filter(|&r| slot[r * s..(r + 1) * s].iter().any(|&l| l != NONE))
            .collect();
        let qkv_w = (nh + 2 * nkv) * hd;
        let mut xn = vec![0.0f32; m * h];
        let mut qkv = vec![0.0f32; m * qkv_w];
        let mut att = vec![0.0f32; m * nh * hd];
        let mut tmp = vec![0.0f32; m * h];
        let mut gu = vec![0.0f32; m * 2 * ff];
        let mut act = vec![0.0f32; m * ff];
        let scale = 1.0 / (hd as f32).sqrt();
        laps.lap(0);
        let layers = if m == 0 { &[][..] } else { &self.layers[..] };
        for (l, layer) in layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.rms_eps as f32, h, &mut xn);
            kernels::matmul(&xn, layer.wqkv.view(), m, qkv_w, h, &mut qkv);
            if let Some(bias) = &layer.bqkv {
                for row in qkv.chunks_mut(qkv_w) {
                    row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
                }
            }
            laps.lap(1);
            for li in 0..m {
                let row = &mut qkv[li * qkv_w..(li + 1) * qkv_w];
                let (cs, sn) = (
                    &cos[li * half..(li + 1) * half],
                    &sin[li * half..(li + 1) * half],
                );
                for head in row[..(nh + nkv) * hd].chunks_mut(hd) {
                    rope(head, cs, sn, c.rope_layout);
                }
            }
            // Write K/V of the live positions into the cache (padding slots stay zero).
            let (kc, vc) = (&mut cache.k[l], &mut cache.v[l]);
            for (row, &i) in qkv.chunks_exact(qkv_w).zip(&live) {
                let (r, j) = (i / s, i % s);
                for g in 0..nkv {
                    let base = (r * nkv + g) * cap * hd;
                    let p = past + j;
                    let kp = base + (p / PANEL) * hd * PANEL + p % PANEL;
                    for (d, &kv) in row[(nh + g) * hd..(nh + g + 1) * hd].iter().enumerate() {
                        kc[kp + d * PANEL] = kv;
                    }
                    let dst = base + p * hd;
                    vc[dst..dst + hd]
                        .copy_from_slice(&row[(nh + nkv + g) * hd..(nh + nkv + g + 1) * hd]);
                }
            }
            laps.lap(2);
            let attn = Attn {
                qkv: &qkv,
                k: &cache.k[l],
                v: &cache.v[l],
                bias: &bias,
                slot: &slot,
                s,
                nh,
                nkv,
                hd,
                cap,
                qkv_w,
                scale,
            };
            // Each batch row's live positions are consecutive rows of `att`.
            let mut parts: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(rows_live.len());
            let mut rest = att.as_mut_slice();
            let mut first = 0;
            for &r in &rows_live {
                let n = slot[r * s..(r + 1) * s]
                    .iter()
                    .filter(|&&l| l != NONE)
                    .count();
                let (mine, tail) = rest.split_at_mut(n * nh * hd);
                parts.push((r, first, mine));
                rest = tail;
                first += n;
            }
            if parts.len() <= 1 || rayon::current_num_threads() == 1 {
                // No hand-off to the pool (a wake-up) for work one thread does anyway.
                for (r, first, att_r) in parts {
                    attn.row(r, first, att_r, t_all);
                }
            } else {
                parts
                    .into_par_iter()
                    .for_each(|(r, first, att_r)| attn.row(r, first, att_r, t_all));
            }
            laps.lap(3);
            kernels::matmul(&att, layer.wo.view(), m, h, nh * hd, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            laps.lap(4);
            rms_norm(&x, &layer.mlp_norm, c.rms_eps as f32, h, &mut xn);
            kernels::matmul(&xn, layer.wgu.view(), m, 2 * ff, h, &mut gu);
            laps.lap(5);
            silu_mul(&gu, &mut act, ff);
            laps.lap(6);
            kernels::matmul(&act, layer.wdown.view(), m, h, ff, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            laps.lap(7);
        }
        cache.len += s;
        // Final norm and head on the requested positions that are live.
        let want: Vec<usize> = if all_positions {
            (0..b * s).collect()
        } else {
            (0..b).map(|r| r * s + s - 1).collect()
        };
        let rows: Vec<(usize, usize)> = want
            .iter()
            .enumerate()
            .filter(|&(_, &i)| slot[i] != NONE)
            .map(|(o, &i)| (o, slot[i]))
            .collect();
        let mut sel = vec![0.0f32; rows.len() * h];
        for (dst, &(_, li)) in sel.chunks_exact_mut(h).zip(&rows) {
            dst.copy_from_slice(&x[li * h..(li + 1) * h]);
        }
        let mut seln = vec![0.0f32; sel.len()];
        rms_norm(&sel, &self.norm, c.rms_eps as f32, h, &mut seln);
        let vocab = c.vocab_size;
        let mut logits = vec![0.0f32; want.len() * vocab];
        if rows.len() == want.len() {
            kernels::matmul(&seln, self.head.view(), rows.len(), vocab, h, &mut logits);
        } else if !rows.is_empty() {
            let mut some = vec![0.0f32; rows.len() * vocab];
            kernels::matmul(&seln, self.head.view(), rows.len(), vocab, h, &mut some);
            for (src, &(o, _)) in some.chunks_exact(vocab).zip(&rows) {
                logits[o * vocab..(o + 1) * vocab].copy_from_slice(src);
            }
        }
        laps.lap(8);
        Ok(logits)
    }
}
