//! Host-side token batches (left padding + mask) and the model traits the sampler and learners
//! are written against: [`CausalLm`] (full forward) and [`KvCacheLm`] (incremental decoding).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::LmError;

/// A left-padded batch of token sequences kept on the host: `tokens[b * len + t]`, and
/// `mask[b * len + t]` true for a real token. Positions of real tokens count from 0 at each row's
/// first real token, so a sequence gets the same positions whatever the padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Number of rows.
    pub batch: usize,
    /// Padded length of every row.
    pub len: usize,
    /// Row-major tokens, `batch * len`.
    pub tokens: Vec<u32>,
    /// Row-major validity mask, `batch * len`.
    pub mask: Vec<bool>,
}

impl TokenBatch {
    /// The rows and their validity masks, one `Vec` per row (what `LlamaModel::forward` takes).
    pub fn rows(&self) -> (Vec<Vec<u32>>, Vec<Vec<bool>>) {
        let s = self.len.max(1);
        (
            self.tokens.chunks(s).map(<[u32]>::to_vec).collect(),
            self.mask.chunks(s).map(<[bool]>::to_vec).collect(),
        )
    }

    /// Left-pad `seqs` to the longest one with `pad`. Errors on an empty batch or an empty row.
    pub fn left_padded<S: AsRef<[u32]>>(seqs: &[S], pad: u32) -> Result<Self, LmError> {
        if seqs.is_empty() {
            return Err(LmError::Input("empty batch".into()));
        }
        let len = seqs.iter().map(|s| s.as_ref().len()).max().unwrap_or(0);
        if let Some(i) = seqs.iter().position(|s| s.as_ref().is_empty()) {
            return Err(LmError::Input(format!("sequence {i} is empty")));
        }
        let mut tokens = Vec::with_capacity(seqs.len() * len);
        let mut mask = Vec::with_capacity(seqs.len() * len);
        for s in seqs {
            let s = s.as_ref();
            let padn = len - s.len();
            tokens.extend(std::iter::repeat_n(pad, padn));
            mask.extend(std::iter::repeat_n(false, padn));
            tokens.extend_from_slice(s);
            mask.extend(std::iter::repeat_n(true, s.len()));
        }
        Ok(Self {
            batch: seqs.len(),
            len,
            tokens,
            mask,
        })
    }

    /// Position id of every slot: number of real tokens before it in its row (0 for padding).
    pub fn positions(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.tokens.len());
        for b in 0..self.batch {
            let mut p = 0i64;
            for t in 0..self.len {
                if self.mask[b * self.len + t] {
                    out.push(p);
                    p += 1;
                } else {
                    out.push(0);
                }
            }
        }
        out
    }

    /// Number of real tokens per row.
    pub fn lengths(&self) -> Vec<usize> {
        (0..self.batch)
            .map(|b| {
                self.mask[b * self.len..(b + 1) * self.len]
                    .iter()
                    .filter(|m| **m)
                    .count()
            })
            .collect()
    }

    /// Checks tokens against a vocabulary and lengths against a context size.
    pub fn check(&self, vocab: usize, max_len: usize) -> Result<(), LmError> {
        if let Some((i, t)) = self
            .tokens
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab)
        {
            return Err(LmError::Input(format!(
                "token {t} at row {} col {} is outside the vocabulary of {vocab}",
                i / self.len.max(1),
                i % self.len.max(1)
            )));
        }
        if self.len > max_len {
            return Err(LmError::Input(format!(
                "sequence length {} exceeds the model's max_len {max_len}",
                self.len
            )));
        }
        Ok(())
    }

    /// The tokens as an `[batch, len]` Int tensor.
    pub fn tokens_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let data: Vec<i64> = self.tokens.iter().map(|t| *t as i64).collect();
        Tensor::from_data(TensorData::new(data, [self.batch, self.len]), device)
    }
}

/// A causal LM usable by the learners: logits for every position of a left-padded batch.
pub trait CausalLm: Module {
    /// Vocabulary size (last dim of the logits).
    fn vocab_size(&self) -> usize;
    /// Longest sequence (prompt + response) the model accepts.
    fn max_len(&self) -> usize;
    /// The device the weights live on (autodiff or not).
    fn device(&self) -> Device;
    /// Logits `[batch, len, vocab]`; padding positions produce unspecified (finite) values.
    fn forward_batch(&self, batch: &TokenBatch) -> Result<Tensor<3>, LmError>;
    /// The logits of the last `tail` positions only, `[batch, tail, vocab]`, when the model can skip the head on
    /// the others (`None`: it cannot; [`forward_batch`](Self::forward_batch) and narrow).
    fn forward_tail(&self, batch: &TokenBatch, tail: usize) -> Option<Result<Tensor<3>, LmError>> {
        let _ = (batch, tail);
        None
    }
}

/// A causal LM with incremental decoding, usable by the batched sampler.
pub trait KvCacheLm: CausalLm {
    /// Per-batch decoding state (keys/values and the key mask).
    type Cache;
    /// Run the (left-padded) prompts; return the logits of the last position `[batch, vocab]`
    /// and the cache.
    fn prefill(&self, batch: &TokenBatch) -> Result<(Tensor<2>, Self::Cache), LmError>;
    /// Append one token per row (all real) and return the next logits `[batch, vocab]`.
    fn decode(&self, next: &[u32], cache: &mut Self::Cache) -> Result<Tensor<2>, LmError>;
}

/// Reads a float tensor back to the host as `f32`.
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, LmError> {
    t.try_into_data()
        .map_err(|e| LmError::Data(format!("{e:?}")))?
        .try_into_vec_as::<f32>()
        .map_err(|e| LmError::Data(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_and_positions() {
        let b = TokenBatch::left_padded(&[vec![5u32, 6, 7], vec![9]], 0).unwrap();
        assert_eq!(b.len, 3);
        assert_eq!(b.tokens, vec![5, 6, 7, 0, 0, 9]);
        assert_eq!(b.mask, vec![true, true, true, false, false, true]);
        assert_eq!(b.positions(), vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(b.lengths(), vec![3, 1]);
        assert!(b.check(10, 3).is_ok());
        assert!(b.check(8, 3).is_err());
        assert!(b.check(10, 2).is_err());
        assert!(TokenBatch::left_padded::<Vec<u32>>(&[], 0).is_err());
        assert!(TokenBatch::left_padded(&[vec![1u32], vec![]], 0).is_err());
    }
}
