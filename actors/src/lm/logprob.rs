//! Sequence log-probs for the learners: per-token and summed log-probs of response tokens given
//! their prompt, batched with left padding; differentiable when the model is on an autodiff
//! device, plain otherwise.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::LmError;
use super::batch::{CausalLm, TokenBatch, to_vec_f32};

/// Per-token log-probs of each response given its prompt.
///
/// Returns `(logp, mask)`, both `[B, L-1]` where `L` is the padded length of `prompt ++ response`:
/// `logp[b, t]` is log p(token t+1 | tokens ≤ t) and `mask[b, t]` is 1 where token t+1 belongs to
/// the response. Response token `k` of row `b` sits at column `L - 1 - |response_b| + k`.
pub fn response_token_logprobs<M: CausalLm, P: AsRef<[u32]>, R: AsRef<[u32]>>(
    model: &M,
    pairs: &[(P, R)],
    pad: u32,
) -> Result<(Tensor<2>, Tensor<2>), LmError> {
    if let Some(i) = pairs.iter().position(|(_, r)| r.as_ref().is_empty()) {
        return Err(LmError::Input(format!("response {i} is empty")));
    }
    if let Some(i) = pairs.iter().position(|(p, _)| p.as_ref().is_empty()) {
        return Err(LmError::Input(format!("prompt {i} is empty")));
    }
    let seqs: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(p, r)| [p.as_ref(), r.as_ref()].concat())
        .collect();
    let batch = TokenBatch::left_padded(&seqs, pad)?;
    let (b, l) = (batch.batch, batch.len);
    let device = model.device();
    let logits = model.forward_batch(&batch)?;
    let v = logits.dims()[2];
    let logp = log_softmax(logits.narrow(1, 0, l - 1), 2);
    let mut targets = Vec::with_capacity(b * (l - 1));
    let mut mask = Vec::with_capacity(b * (l - 1));
    for (row, (_, r)) in pairs.iter().enumerate() {
        let rl = r.as_ref().len();
        for t in 1..l {
            targets.push(batch.tokens[row * l + t] as i64);
            mask.push(if t >= l - rl { 1.0f32 } else { 0.0 });
        }
    }
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, l - 1, 1]), &device);
    let _ = v;
    let tok_logp = logp.gather(2, targets).reshape([b, l - 1]);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, l - 1]), &device);
    Ok((tok_logp * mask.clone(), mask))
}

/// Summed response log-probs `[B]` (differentiable on an autodiff model).
pub fn sequence_logprobs<M: CausalLm, P: AsRef<[u32]>, R: AsRef<[u32]>>(
    model: &M,
    pairs: &[(P, R)],
    pad: u32,
) -> Result<Tensor<1>, LmError> {
    let (lp, _) = response_token_logprobs(model, pairs, pad)?;
    let b = lp.dims()[0];
    Ok(lp.sum_dim(1).reshape([b]))
}

/// Summed response log-probs read back to the host (no gradient kept).
pub fn sequence_logprobs_vec<M: CausalLm, P: AsRef<[u32]>, R: AsRef<[u32]>>(
    model: &M,
    pairs: &[(P, R)],
    pad: u32,
) -> Result<Vec<f32>, LmError> {
    to_vec_f32(sequence_logprobs(model, pairs, pad)?.detach())
}
