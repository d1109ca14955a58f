//! `HostLlama`: a fast CPU inference path for generation. It copies the weights of a
//! [`LlamaModel`] once into matrices packed in 16-row panels (Q/K/V and gate/up fused), f32 or
//! f16 by [`Precision`], and runs the same arithmetic with its own kernels ([`super::kernels`]:
//! a register-tiled small-batch matmul parallel over output panels), a KV cache written in
//! place, attention per KV group through the same kernel (mask built once per call),
//! host-side RMSNorm/RoPE/SiLU. Padding positions (left padding, finished rows) are left out
//! of every matmul. The prompt runs as one batch of all its valid tokens; the head runs on the
//! last position of each row only. No Burn op or tensor readback in the decode step. Training stays on [`LlamaModel`]; rebuild (or
//! [`HostLlama::refresh`]) after the weights change. `SPARRING_HOST_PROFILE=1` accumulates wall
//! time per phase of the forward pass, read with [`take_profile`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::config::{LlamaConfig, RopeLayout};
use super::error::LlamaError;
use super::generate::{GenerateOptions, Generated, generate_loop, row_seed};
use super::kernels::{self, Layout, PANEL, WRef};
use super::model::LlamaModel;

/// Storage precision of the host copy of the weight matrices (activations, norms, the
/// embedding lookup and the KV cache stay f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Bit-exact copy of the model's f32 weights (the default; matches the Burn path to 1e-4).
    #[default]
    F32,
    /// Weights rounded to IEEE f16 (half the memory traffic per token; logits move by ~1e-3
    /// relative on SmolLM2-135M), widened to f32 in registers.
    F16,
}

/// One weight matrix `[n, k]`, packed for the kernels ([`kernels::pack_panels`]).
enum Mat {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Mat {
    /// From out-major rows `w: [n, k]`.
    fn new(w: Vec<f32>, k: usize, p: Precision) -> Self {
        let w = kernels::pack_panels(&w, w.len() / k.max(1), k);
        match p {
            Precision::F32 => Mat::F32(w),
            Precision::F16 => {
                let mut h = vec![half::f16::ZERO; w.len()];
                h.convert_from_f32_slice(&w);
                Mat::F16(h.into_iter().map(half::f16::to_bits).collect())
            }
        }
    }
    fn view(&self) -> WRef<'_> {
        match self {
            Mat::F32(w) => WRef::F32(w),
            Mat::F16(w) => WRef::F16(w),
        }
    }
}

struct HostLayer {
    attn_norm: Vec<f32>,
    /// `[(heads + 2 kv_heads) * head_dim, hidden]`: Q rows, then K, then V.
    wqkv: Mat,
    bqkv: Option<Vec<f32>>,
    /// `[hidden, heads * head_dim]`
    wo: Mat,
    mlp_norm: Vec<f32>,
    /// `[2 * ffn, hidden]`: gate rows, then up rows.
    wgu: Mat,
    /// `[hidden, ffn]`
    wdown: Mat,
}

/// Host copy of a Llama model for fast generation.
pub struct HostLlama {
    cfg: LlamaConfig,
    precision: Precision,
    /// `[vocab, hidden]`, f32 for the lookup.
    embed: Vec<f32>,
    /// The head `[vocab, hidden]`.
    head: Mat,
    norm: Vec<f32>,
    layers: Vec<HostLayer>,
    inv_freq: Vec<f32>,
}

/// Phases of the forward pass timed under `SPARRING_HOST_PROFILE=1`.
const PHASES: [&str; 9] = [
    "embed+rope tables",
    "rmsnorm+qkv matmul",
    "rope+kv write",
    "attention",
    "o-proj",
    "rmsnorm+gate/up matmul",
    "silu*up",
    "down",
    "final norm+lm head",
];
static PHASE_NS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

fn profiling() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SPARRING_HOST_PROFILE").is_ok_and(|v| v == "1"))
}

/// Phase timer: `lap(p)` charges the time since the previous lap to phase `p`.
struct Laps {
    on: bool,
    t: Instant,
}

impl Laps {
    fn new() -> Self {
        Self {
            on: profiling(),
            t: Instant::now(),
        }
    }
    fn lap(&mut self, phase: usize) {
        if self.on {
            let now = Instant::now();
            let ns = now.duration_since(self.t).as_nanos() as u64;
            PHASE_NS[phase].fetch_add(ns, Ordering::Relaxed);
            self.t = now;
        }
    }
}

/// Seconds spent per forward phase by every [`HostLlama`] since the previous call, and resets
/// the counters; all zero unless the process runs with `SPARRING_HOST_PROFILE=1`.
pub fn take_profile() -> Vec<(&'static str, f64)> {
    PHASES
        .iter()
        .zip(&PHASE_NS)
        .map(|(name, ns)| (*name, ns.swap(0, Ordering::Relaxed) as f64 * 1e-9))
        .collect()
}

/// KV cache of [`HostLlama`], preallocated: per layer, K as `[batch][kv_heads][capacity / 16]
/// [head_dim][16]` (16-position panels, the Q·Kᵀ kernel's layout) and V as `[batch][kv_heads]
/// [capacity][head_dim]`; the capacity is rounded up to a multiple of 16.
pub struct HostCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    batch: usize,
    capacity: usize,
    len: usize,
    valid: Vec<bool>,
    next_pos: Vec<usize>,
}

impl HostCache {
    /// An empty cache for `batch` rows of at most `capacity` tokens.
    pub fn new(cfg: &LlamaConfig, batch: usize, capacity: usize) -> Self {
        let capacity = capacity.div_ceil(PANEL) * PANEL;
        let per = batch * cfg.num_kv_heads * capacity * cfg.head_dim;
        Self {
            k: (0..cfg.num_layers).map(|_| vec![0.0; per]).collect(),
            // Slack: the P·V kernel reads whole 16-wide panels of the last row.
            v: (0..cfg.num_layers)
                .map(|_| vec![0.0; per + PANEL])
                .collect(),
            batch,
            capacity,
            len: 0,
            valid: vec![false; batch * capacity],
            next_pos: vec![0; batch],
        }
    }
    /// Filled slots per row.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Nothing cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn read2(t: burn::tensor::Tensor<2>) -> Result<(usize, usize, Vec<f32>), LlamaError> {
    let [r, c] = t.dims();
    let d = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| LlamaError::Readback(format!("{e:?}")))?;
    Ok((r, c, d))
}

fn read1(t: burn::tensor::Tensor<1>) -> Result<Vec<f32>, LlamaError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| LlamaError::Readback(format!("{e:?}")))
}

/// A Burn `[in, out]` weight as out-major rows `[out, in]`, appended to `dst`.
fn push_out_major(dst: &mut Vec<f32>, t: burn::tensor::Tensor<2>) -> Result<(), LlamaError> {
    let (i, o, d) = read2(t)?;
    let base = dst.len();
    dst.resize(base + i * o, 0.0);
    let out = &mut dst[base..];
    for a in 0..i {
        for b in 0..o {
            out[b * i + a] = d[a * o + b];
        }
    }
    Ok(())
}

impl HostLlama {
    /// Copies the weights of `model` (any device) to the host, f32.
    pub fn from_model(model: &LlamaModel) -> Result<Self, LlamaError> {
        Self::with_precision(model, Precision::F32)
    }

    /// Copies the weights of `model` (any device) to the host, matrices stored as `precision`.
    pub fn with_precision(model: &LlamaModel, precision: Precision) -> Result<Self, LlamaError> {
        let cfg = model.config().clone();
        let (_, _, embed) = read2(model.embed.val())?;
        let out_major = |ts: &[burn::tensor::Tensor<2>]| -> Result<Mat, LlamaError> {
            let mut v = Vec::new();
            let mut k = 0;
            for t in ts {
                k = t.dims()[0];
                push_out_major(&mut v, t.clone())?;
            }
            Ok(Mat::new(v, k, precision))
        };
        let head = match &model.head {
            Some(h) => out_major(&[h.val()])?,
            None => Mat::new(embed.clone(), cfg.hidden_size, precision),
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for b in &model.blocks {
            let bqkv = match (&b.attn.q_bias, &b.attn.k_bias, &b.attn.v_bias) {
                (Some(q), Some(k), Some(v)) => {
                    let mut all = read1(q.val())?;
                    all.extend(read1(k.val())?);
                    all.extend(read1(v.val())?);
                    Some(all)
                }
                _ => None,
            };
            layers.push(HostLayer {
                attn_norm: read1(b.attn_norm.val())?,
                wqkv: out_major(&[b.attn.q.val(), b.attn.k.val(), b.attn.v.val()])?,
                bqkv,
                wo: out_major(&[b.attn.o.val()])?,
                mlp_norm: read1(b.mlp_norm.val())?,
                wgu: out_major(&[b.mlp.gate.val(), b.mlp.up.val()])?,
                wdown: out_major(&[b.mlp.down.val()])?,
            });
        }
        let inv_freq = cfg.inv_freq();
        Ok(Self {
            norm: read1(model.norm.val())?,
            cfg,
            precision,
            embed,
            head,
            layers,
            inv_freq,
        })
    }

    /// Re-reads the weights (after training steps on `model`).
    pub fn refresh(&mut self, model: &LlamaModel) -> Result<(), LlamaError> {
        *self = Self::with_precision(model, self.precision)?;
        Ok(())
    }

    /// The architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The storage precision of the weight matrices.
    pub fn precision(&self) -> Precision {
        self.precision
    }

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

    /// Batched generation (same semantics and RNG streams as [`LlamaModel::generate`]).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let seeds: Vec<u64> = (0..prompts.len()).map(|r| row_seed(opts.seed, r)).collect();
        self.generate_with_seeds(prompts, &seeds, opts)
    }

    /// Batched generation with one RNG seed per row.
    pub fn generate_with_seeds(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, LlamaError> {
        let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut cache = HostCache::new(&self.cfg, prompts.len(), max_len + opts.max_new_tokens);
        generate_loop(prompts, seeds, opts, self.cfg.vocab_size, |ids, valid| {
            self.forward(ids, valid, &mut cache, false)
        })
    }
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, h: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks(h).zip(out.chunks_mut(h)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * inv * g;
        }
    }
}

fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
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
fn simd_ok() -> bool {
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
fn exp_fast(x: f32) -> f32 {
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
fn silu_mul(gu: &[f32], act: &mut [f32], ff: usize) {
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
struct Attn<'a> {
    /// This step's `[live positions, qkv_w]` projections (RoPE applied).
    qkv: &'a [f32],
    /// `[batch][kv_heads][cap][head_dim]`
    k: &'a [f32],
    v: &'a [f32],
    /// Additive mask `[batch][s][past + s]`: 0 where a query sees a position, -inf elsewhere.
    bias: &'a [f32],
    /// Row of position `r * s + i` in `qkv` and in the output, `usize::MAX` for padding.
    slot: &'a [usize],
    s: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    cap: usize,
    qkv_w: usize,
    scale: f32,
}

impl Attn<'_> {
    /// Row `r`'s outputs over its first `t` cached positions: `att_r: [live positions of r,
    /// heads * head_dim]`, the first of them live position `first`.
    fn row(&self, r: usize, first: usize, att_r: &mut [f32], t: usize) {
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

/// `out[i][j] = Σ_k x[i][k] · w[j][k]` for `x: [m, k]`, `w: [n, k]` (out-major weights),
/// `out: [m, n]`; parallel over blocks of output columns.
///
/// # Panics
/// When a slice is shorter than its shape says.
/// (Packs `w` on every call: for occasional use; [`HostLlama`] packs once.)
pub fn matmul_t(x: &[f32], w: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(w.len() >= n * k);
    let packed = kernels::pack_panels(&w[..n * k], n, k);
    kernels::matmul(x, WRef::F32(&packed), m, n, k, out);
}

#[cfg(test)]
mod tests {
    //! The f16 host path against the HF transformers fixtures of SmolLM2-135M (the same bounds as
    //! `tests/llama_fixtures.rs` applies to the f32 paths). Skips when the model or the fixtures
    //! are absent.

    use super::*;
    use crate::formats::{shared_dir, smollm2_gguf_path};
    use crate::llama::generate::logsumexp;

    fn fixtures(name: &str) -> Option<Vec<serde_json::Value>> {
        let path = shared_dir().join("fixtures/smollm2").join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("SKIP: fixture {} not found", path.display());
            return None;
        };
        Some(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    }

    fn model() -> Option<LlamaModel> {
        let path = smollm2_gguf_path()?;
        if !path.exists() {
            eprintln!(
                "SKIP: {} not found (scripts/fetch-model.sh)",
                path.display()
            );
            return None;
        }
        Some(LlamaModel::load_gguf(&path, &burn::tensor::Device::flex()).unwrap())
    }

    fn ids_of(v: &serde_json::Value) -> Vec<u32> {
        v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    }

    #[test]
    fn padding_positions_are_skipped_and_change_nothing() {
        let mut cfg = LlamaConfig::smollm2_135m(RopeLayout::Interleaved);
        cfg.vocab_size = 300;
        cfg.hidden_size = 64;
        cfg.intermediate_size = 96;
        cfg.num_layers = 2;
        cfg.num_heads = 4;
        cfg.num_kv_heads = 2;
        cfg.head_dim = 16;
        let m = LlamaModel::random(&cfg, 7, &burn::tensor::Device::flex()).unwrap();
        let host = HostLlama::from_model(&m).unwrap();
        let v = cfg.vocab_size;
        // Alone: a 5-token prompt, then one decode step.
        let p = vec![3u32, 17, 250, 9, 41];
        let mut alone = HostCache::new(&cfg, 1, 8);
        let a0 = host
            .forward(std::slice::from_ref(&p), &[vec![true; 5]], &mut alone, true)
            .unwrap();
        let a1 = host
            .forward(&[vec![77]], &[vec![true]], &mut alone, false)
            .unwrap();
        // In a batch: left-padded by 3 beside a full row; at the decode step the full row is
        // done (padding).
        let mut padded = vec![0u32; 3];
        padded.extend(&p);
        let other = vec![5u32, 6, 7, 8, 9, 10, 11, 12];
        let mut batch = HostCache::new(&cfg, 2, 9);
        let mut valid = vec![false; 3];
        valid.extend([true; 5]);
        let b0 = host
            .forward(&[padded, other], &[valid, vec![true; 8]], &mut batch, true)
            .unwrap();
        let b1 = host
            .forward(
                &[vec![77], vec![0]],
                &[vec![true], vec![false]],
                &mut batch,
                false,
            )
            .unwrap();
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(1.0))
        };
        for j in 0..5 {
            assert!(close(
                &a0[j * v..(j + 1) * v],
                &b0[(3 + j) * v..(4 + j) * v]
            ));
        }
        assert!(
            b0[..3 * v].iter().all(|&x| x == 0.0),
            "padding logits are zeros"
        );
        assert!(close(&a1, &b1[..v]));
        assert!(
            b1[v..].iter().all(|&x| x == 0.0),
            "a finished row's logits are zeros"
        );
        assert!(b1[..v].iter().any(|&x| x != 0.0));
    }

    #[test]
    fn exp_fast_is_within_2e7_relative_of_exp() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1.7e-4;
            let (got, want) = (exp_fast(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2e-7, "{worst}");
        assert_eq!(exp_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_fast(-100.0), 0.0);
        assert!(exp_fast(f32::NAN).is_nan() || exp_fast(f32::NAN) >= 0.0);
    }

    #[test]
    fn host_paths_match_transformers_fixtures() {
        let (Some(logits), Some(greedy), Some(m)) =
            (fixtures("logits.jsonl"), fixtures("greedy.jsonl"), model())
        else {
            return;
        };
        for precision in [Precision::F32, Precision::F16] {
            let host = HostLlama::with_precision(&m, precision).unwrap();
            assert_eq!(host.precision(), precision);
            let vocab = m.config().vocab_size;
            let (mut worst_rel, mut worst_lse) = (0.0f64, 0.0f64);
            for case in &logits {
                let ids = ids_of(case);
                let n = ids.len();
                let mut cache = HostCache::new(m.config(), 1, n);
                let all = host
                    .forward(&[ids], &[vec![true; n]], &mut cache, true)
                    .unwrap();
                for p in case["positions"].as_array().unwrap() {
                    let pos = p["position"].as_u64().unwrap() as usize;
                    let row = &all[pos * vocab..(pos + 1) * vocab];
                    let ids = p["top_ids"].as_array().unwrap();
                    for (id, want) in ids.iter().zip(p["top_logits"].as_array().unwrap()) {
                        let got = row[id.as_u64().unwrap() as usize] as f64;
                        let want = want.as_f64().unwrap();
                        let rel = (got - want).abs() / want.abs().max(1.0);
                        worst_rel = worst_rel.max(rel);
                        assert!(rel <= 1e-3, "pos {pos} id {id}: got {got}, want {want}");
                    }
                    let want = p["logsumexp"].as_f64().unwrap();
                    let got = logsumexp(row) as f64;
                    worst_lse = worst_lse.max((got - want).abs());
                    assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0));
                }
            }
            eprintln!(
                "{precision:?} host logits: worst relative error {worst_rel:.2e}, logsumexp {worst_lse:.2e}"
            );
        }
        let host = HostLlama::with_precision(&m, Precision::F16).unwrap();
        let prompts: Vec<Vec<u32>> = greedy.iter().map(ids_of).collect();
        let steps = greedy[0]["greedy"].as_array().unwrap().len();
        let opts = GenerateOptions {
            max_new_tokens: steps,
            ..Default::default()
        };
        let out = host.generate(&prompts, &opts).unwrap();
        for (case, got) in greedy.iter().zip(&out) {
            let mut equal = 0;
            for (j, step) in case["greedy"].as_array().unwrap().iter().enumerate() {
                assert_eq!(
                    got.tokens[j] as u64,
                    step["id"].as_u64().unwrap(),
                    "step {j}"
                );
                equal += 1;
                if step["margin"].as_f64().unwrap() < 0.01 {
                    break;
                }
            }
            eprintln!("f16 host greedy: {equal} steps equal");
        }
    }
}
