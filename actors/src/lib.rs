//! Role implementations: Burn models, tokenizers, loaders, learners, scripted and remote actors.

pub mod chatlm;
pub mod formats;
pub mod llama;
pub mod lm;
