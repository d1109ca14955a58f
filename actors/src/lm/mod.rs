//! Trainable Burn language models (issue 3): backend selection, a decoder-only transformer LM,
//! batched sampling with a KV cache, sequence log-probs, DPO/IPO/GRPO learners with an EMA copy,
//! AdamW with a cosine schedule and global-norm clipping, checkpoints, and a model thread that
//! keeps Burn compute off the async runtime.
//!
//! The learners and the sampler are generic over [`CausalLm`] / [`KvCacheLm`], so another model
//! (e.g. a Llama-family one) reuses them by implementing those two traits.
//!
//! ```ignore
//! use sparring_actors::lm::*;
//! let dev = device(BackendKind::Flex)?;
//! let model = TransformerConfig::new(64, 64, 2, 4, 256, 64).init(seed, &dev)?;
//! // the learner, its device and optimizer live on their own thread
//! let lm = ModelThread::spawn("defender", move || Learner::new(model, LearnerConfig::default(), seed))?;
//! let gens = lm.call(move |l| generate(&l.generator(), &requests, &SamplingConfig::default()))?;
//! let report = lm.call(move |l| l.preference_step(&groups))?; // Option<StepReport>
//! let ckpt = lm.call(|l| l.checkpoint())?; // Checkpoint::to_bytes / save / load, Learner::restore
//! ```

pub mod backend;
pub mod batch;
pub mod checkpoint;
mod error;
pub mod learner;
pub mod logprob;
pub mod loss;
pub mod model;
pub mod optim;
pub mod params;
pub mod sample;
pub mod worker;

pub use backend::{BackendKind, device};
pub use batch::{CausalLm, KvCacheLm, TokenBatch};
pub use checkpoint::{Checkpoint, TensorRecord};
pub use error::LmError;
pub use learner::{
    Algorithm, Baseline, GrpoGroup, GrpoSample, Learner, LearnerConfig, PreferenceGroup, Segment,
    StepReport, ema_update,
};
pub use logprob::{response_token_logprobs, sequence_logprobs, sequence_logprobs_vec};
pub use loss::{
    dpo_loss, grpo_advantages, grpo_group_advantages, grpo_loss, ipo_loss, select_pair,
};
pub use model::{KvCache, NormKind, TransformerConfig, TransformerLm};
pub use optim::{AdamW, OptimConfig, lr_at};
pub use sample::{
    GenRequest, Generation, SamplingConfig, aligned_logprobs, generate, generate_uncached,
};
pub use sparring_engine::rng::SplitMix64;
pub use worker::ModelThread;
