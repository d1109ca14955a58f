//! Role implementations: Burn models, tokenizers, loaders, learners, scripted and remote actors.

pub mod intent;
pub mod lm;
