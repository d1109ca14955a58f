//! Role implementations: Burn models, tokenizers, loaders, learners, scripted and remote actors.

pub mod chatlm;
pub mod formats;
pub mod scripted;

/// The registry of every kind this crate provides (scenario `kind` → constructor).
pub fn registry() -> sparring_engine::Registry {
    let mut r = sparring_engine::Registry::new();
    scripted::register(&mut r);
    r
}
