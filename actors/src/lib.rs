//! Role implementations: Burn models, tokenizers, loaders, learners, scripted and remote actors.

pub mod chatlm;
pub mod formats;
pub mod intent;
pub mod lm;
pub mod llama;
