//! Llama-family decoder LMs (Llama incl. 3.1 RoPE scaling, SmolLM2, Qwen2) in Burn: configuration,
//! RoPE scaling, weight loading from GGUF or Hugging Face tensor names, the model with a preallocated
//! KV cache, and batched generation with left padding.
//!
//! The model is a Burn [`Module`](burn::module::Module) whose weights are `Param`s, so the same
//! network serves inference (flex, wgpu) and training on an autodiff device.

pub mod config;
pub mod error;
pub mod generate;
pub mod host;
mod kernels;
pub mod load;
pub mod model;
pub mod rope;

pub use config::{LlamaConfig, MetadataLookup, RopeLayout};
pub use error::LlamaError;
pub use generate::{GenerateOptions, Generated, StopReason};
pub use host::{HostCache, HostLlama, Precision};
pub use load::{TensorLookup, WeightNaming};
pub use model::{KvCache, LlamaModel, LogitsMode, Projection, ProjectionHook};
pub use rope::RopeScaling;

/// The Burn device type the model runs on (re-exported for callers without a burn dependency).
pub use burn::tensor::Device;
