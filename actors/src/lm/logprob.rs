//! Sequence log-probs for the learners: per-token and summed log-probs of response tokens given
//! their prompt, batched with left padding; differentiable when the model is on an autodiff
//! device, plain otherwise.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::LmError;
use super::batch::{CausalLm, TokenBatch, to_vec_f32};

/// Per-token log-probs of each response given its prompt.
///
/// Returns `(logp, mask)`, both `[B, T]`, right-aligned: with `L` the padded length of `prompt ++ response`,
/// column `c` holds log p(token `L - T + c` | the tokens before it) and `mask` is 1 where that token belongs to
/// the response, so response token `k` of row `b` sits at column `T - |response_b| + k`. `T` is `L - 1` for a
/// model without [`CausalLm::forward_tail`], else the longest response (the prompt's logits are never computed).
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
    // Columns kept: `t` positions ending before the last, where the longest response is predicted — the whole
    // sequence for a model that computes every position's logits anyway (the intent game's), only the responses'
    // for one that can skip the head on the prompt (the chat models': a large vocabulary).
    let longest = pairs
        .iter()
        .map(|(_, r)| r.as_ref().len())
        .max()
        .unwrap_or(1);
    let (logits, t) = match model.forward_tail(&batch, longest + 1) {
        Some(tail) => (tail?.narrow(1, 0, longest), longest),
        None => (model.forward_batch(&batch)?.narrow(1, 0, l - 1), l - 1),
    };
    let logp = log_softmax(logits, 2);
    let mut targets = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for (row, (_, r)) in pairs.iter().enumerate() {
        let rl = r.as_ref().len();
        // Column c predicts token l - t + c of the row.
        for c in 0..t {
            let pos = l - t + c;
            targets.push(batch.tokens[row * l + pos] as i64);
            mask.push(if pos >= l - rl { 1.0f32 } else { 0.0 });
        }
    }
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, t, 1]), &device);
    let tok_logp = logp.gather(2, targets).reshape([b, t]);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
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
