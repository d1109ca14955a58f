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
        let (rows, valid) = batch.rows();
        self.forward(&rows, &valid)
            .map_err(|e| LmError::Input(e.to_string()))
    }
    fn forward_tail(&self, batch: &TokenBatch, tail: usize) -> Option<Result<Tensor<3>, LmError>> {
        let run = || {
            batch.check(self.vocab_size(), self.max_len())?;
            let (rows, valid) = batch.rows();
            self.forward_tail(&rows, &valid, None, tail)
                .map_err(|e| LmError::Input(e.to_string()))
        };
        Some(run())
    }
}
