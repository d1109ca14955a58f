//! For this workspace's tests and benches only: where the real model and the shared fixtures are, and the one
//! rule for when they are absent. A test that needs them skips with a `SKIP` line naming itself, except that with
//! `SPARRING_REQUIRE_MODEL` set (CI, after `scripts/fetch-model.sh`) a missing model fails the test instead.

use std::path::PathBuf;

use crate::formats::{shared_dir, smollm2_gguf_path};

/// The SmolLM2 GGUF for `what` (a test's or bench's name): its path when the file is there, else `None` after a
/// `SKIP` line. Panics when `SPARRING_REQUIRE_MODEL` is set and the file is missing (a test must fail then).
pub fn smollm2_or_skip(what: &str) -> Option<PathBuf> {
    let path = smollm2_gguf_path().unwrap_or_default();
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("SPARRING_REQUIRE_MODEL").is_some() {
        panic!(
            "{what}: SPARRING_REQUIRE_MODEL is set but the SmolLM2 GGUF is missing at {} (run scripts/fetch-model.sh \
             or set SPARRING_SMOLLM2_GGUF)",
            path.display()
        );
    }
    eprintln!(
        "SKIP {what}: SmolLM2 GGUF not found at {} (run scripts/fetch-model.sh or set SPARRING_SMOLLM2_GGUF)",
        path.display()
    );
    None
}

/// `rel` under the shared directory (`../shared` or `$SPARRING_SHARED`), e.g. `fixtures/tiny-qwen2`, for
/// `what`: its path when it exists, else `None` after a `SKIP` line.
pub fn shared_or_skip(rel: &str, what: &str) -> Option<PathBuf> {
    let path = shared_dir().join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIP {what}: {} not found", path.display());
        None
    }
}
