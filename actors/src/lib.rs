//! Role implementations: Burn models, tokenizers, loaders, learners, scripted and remote actors.
#![allow(clippy::type_complexity)] // nested maps of (key, Vec) are spelled out where they are built

pub mod chatlm;
pub mod formats;
pub mod intent;
pub mod llama;
pub mod lm;
pub mod openai;
pub mod scripted;
pub mod testing;

/// The registry of every kind this crate provides (scenario `kind` → constructor).
pub fn registry() -> sparring_engine::Registry {
    let mut r = sparring_engine::Registry::new();
    scripted::register(&mut r);
    intent::roles::register(&mut r);
    chatlm::register(&mut r);
    openai::register(&mut r);
    r
}
