//! The host copy of the weights: [`Mat`] (a weight matrix packed in 16-row panels, f32 or f16) and
//! [`HostLayer`], and [`HostLlama::with_precision`], which reads a [`LlamaModel`]'s tensors back from its device
//! once, fusing Q/K/V and gate/up.

use half::slice::HalfFloatSliceExt;

use super::super::error::LlamaError;
use super::super::kernels::{self, WRef};
use super::super::model::{LlamaModel, Projection};
use super::{HostLlama, Precision};
use std::sync::Arc;

/// One weight matrix `[n, k]`, packed for the kernels ([`kernels::pack_panels`]).
pub(super) enum Mat {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Mat {
    /// From out-major rows `w: [n, k]`.
    pub(super) fn new(w: Vec<f32>, k: usize, p: Precision) -> Self {
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
    pub(super) fn view(&self) -> WRef<'_> {
        match self {
            Mat::F32(w) => WRef::F32(w),
            Mat::F16(w) => WRef::F16(w),
        }
    }
}

/// A decoder layer's host weights; the matrices are reference-counted, so a host copy whose model shares frozen
/// weights with another's shares their matrices too ([`HostLlama::sharing`]).
pub(super) struct HostLayer {
    pub(super) attn_norm: Vec<f32>,
    /// `[(heads + 2 kv_heads) * head_dim, hidden]`: Q rows, then K, then V.
    pub(super) wqkv: Arc<Mat>,
    pub(super) bqkv: Option<Vec<f32>>,
    /// `[hidden, heads * head_dim]`
    pub(super) wo: Arc<Mat>,
    pub(super) mlp_norm: Vec<f32>,
    /// `[2 * ffn, hidden]`: gate rows, then up rows.
    pub(super) wgu: Arc<Mat>,
    /// `[hidden, ffn]`
    pub(super) wdown: Arc<Mat>,
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
        Self::build(model, precision, None)
    }

    /// The host copy of `model`, a model whose weights are `base`'s model's except the projections `changed` says
    /// (LoRA adapters merged into some projections): the embedding, head, norms, biases and every fused matrix
    /// none of whose projections changed are `base`'s own (shared, not copied); the rest is read from `model`.
    /// In `base`'s precision.
    pub fn sharing(
        model: &LlamaModel,
        base: &HostLlama,
        changed: &dyn Fn(Projection) -> bool,
    ) -> Result<Self, LlamaError> {
        Self::build(model, base.precision, Some((base, changed)))
    }

    fn build(
        model: &LlamaModel,
        precision: Precision,
        base: Option<(&HostLlama, &dyn Fn(Projection) -> bool)>,
    ) -> Result<Self, LlamaError> {
        let cfg = model.config().clone();
        if let Some((b, _)) = base
            && b.layers.len() != model.blocks.len()
        {
            return Err(LlamaError::BadConfig(format!(
                "a host copy of {} layers cannot share a base of {}",
                model.blocks.len(),
                b.layers.len()
            )));
        }
        let out_major = |ts: &[burn::tensor::Tensor<2>]| -> Result<Arc<Mat>, LlamaError> {
            let mut v = Vec::new();
            let mut k = 0;
            for t in ts {
                k = t.dims()[0];
                push_out_major(&mut v, t.clone())?;
            }
            Ok(Arc::new(Mat::new(v, k, precision)))
        };
        // A fused matrix of the base when none of its projections changed, else read from the model.
        let fused = |l: usize,
                     projs: &[Projection],
                     pick: fn(&HostLayer) -> &Arc<Mat>,
                     ts: &[burn::tensor::Tensor<2>]|
         -> Result<Arc<Mat>, LlamaError> {
            match base {
                Some((b, changed)) if !projs.iter().any(|&p| changed(p)) => {
                    Ok(Arc::clone(pick(&b.layers[l])))
                }
                _ => out_major(ts),
            }
        };
        let (embed, head, norm) = match base {
            Some((b, _)) => (Arc::clone(&b.embed), Arc::clone(&b.head), b.norm.clone()),
            None => {
                let (_, _, embed) = read2(model.embed.val())?;
                let head = match &model.head {
                    Some(h) => out_major(&[h.val()])?,
                    None => Arc::new(Mat::new(embed.clone(), cfg.hidden_size, precision)),
                };
                (Arc::new(embed), head, read1(model.norm.val())?)
            }
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, b) in model.blocks.iter().enumerate() {
            use Projection::*;
            let bqkv = match (&b.attn.q_bias, &b.attn.k_bias, &b.attn.v_bias) {
                (Some(q), Some(k), Some(v)) => {
                    let mut all = read1(q.val())?;
                    all.extend(read1(k.val())?);
                    all.extend(read1(v.val())?);
                    Some(all)
                }
                _ => None,
            };
            let qkv = [b.attn.q.val(), b.attn.k.val(), b.attn.v.val()];
            layers.push(HostLayer {
                attn_norm: read1(b.attn_norm.val())?,
                wqkv: fused(l, &[Q, K, V], |h| &h.wqkv, &qkv)?,
                bqkv,
                wo: fused(l, &[O], |h| &h.wo, &[b.attn.o.val()])?,
                mlp_norm: read1(b.mlp_norm.val())?,
                wgu: fused(
                    l,
                    &[Gate, Up],
                    |h| &h.wgu,
                    &[b.mlp.gate.val(), b.mlp.up.val()],
                )?,
                wdown: fused(l, &[Down], |h| &h.wdown, &[b.mlp.down.val()])?,
            });
        }
        let inv_freq = cfg.inv_freq();
        Ok(Self {
            norm,
            cfg,
            precision,
            embed,
            head,
            layers,
            inv_freq,
        })
    }
}
