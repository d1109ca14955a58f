//! Full fine-tuning: the Llama model itself as a `CausalLm`, so the `lm` learners (DPO/IPO/GRPO, AdamW, EMA) train
//! every weight. Meant for GPUs; on a CPU prefer LoRA (`lora`).

use burn::tensor::{Device, Tensor};

use crate::llama::LlamaModel;
use crate::lm::{CausalLm, LmError, TokenBatch};

impl CausalLm for LlamaModel {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }
    fn max_len(&self) -> usize {
        self.config().max_positions
    }
    fn device(&self) -> Device {
        LlamaModel::device(self)
    }
    fn forward_batch(&self, batch: &TokenBatch) -> Result<Tensor<3>, LmError> {
        batch.check(self.vocab_size(), self.max_len())?;
        let s = batch.len.max(1);
        let rows: Vec<Vec<u32>> = batch.tokens.chunks(s).map(<[u32]>::to_vec).collect();
        let valid: Vec<Vec<bool>> = batch.mask.chunks(s).map(<[bool]>::to_vec).collect();
        self.forward(&rows, &valid)
            .map_err(|e| LmError::Input(e.to_string()))
    }
    fn forward_tail(&self, batch: &TokenBatch, tail: usize) -> Option<Result<Tensor<3>, LmError>> {
        Some(
            batch
                .check(self.vocab_size(), self.max_len())
                .and_then(|_| {
                    let s = batch.len.max(1);
                    let rows: Vec<Vec<u32>> = batch.tokens.chunks(s).map(<[u32]>::to_vec).collect();
                    let valid: Vec<Vec<bool>> =
                        batch.mask.chunks(s).map(<[bool]>::to_vec).collect();
                    self.forward_tail(&rows, &valid, None, tail)
                        .map_err(|e| LmError::Input(e.to_string()))
                }),
        )
    }
}
