//! Helpers shared by the actors crate's integration tests (`mod common;` in each test file): temporary
//! directories, host copies and differences of tensors, the tiny random Llama configuration, the SmolLM2 JSON-lines
//! fixtures, and the engine-facing pieces of the chat-LM role tests. Each test binary uses a subset. Skipping when
//! the model or `../shared` is absent is `sparring_actors::testing`'s.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Tensor;
use sparring_actors::llama::{LlamaConfig, RopeLayout};
use sparring_actors::lm::batch::to_vec_f32;
use sparring_actors::lm::params::flat_params;
use sparring_engine::registry::BuildContext;
use sparring_engine::{Category, Role, Seed};

/// A fresh, empty directory `<temp>/sparring-test-<pid>-<name>` (removed first if a previous run left it).
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparring-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The largest `|a[i] - b[i]|` of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A tensor's values on the host, row-major.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// Every float parameter of a module, flattened in visiting order.
pub fn flat<M: Module>(m: &M) -> Vec<f32> {
    flat_params(m)
        .into_iter()
        .flat_map(|t| to_vec_f32(t).unwrap())
        .collect()
}

/// A tiny random-weight Llama: vocab 64, hidden 32, 2 layers, 4 query heads over 2 KV heads of 8, FFN 48, tied
/// head, RoPE `layout`.
pub fn tiny_llama(layout: RopeLayout) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        rope_scaling: Default::default(),
        rms_eps: 1e-5,
        tie_embeddings: true,
        qkv_bias: false,
        max_positions: 128,
        rope_layout: layout,
    }
}

/// The non-blank lines of a JSON-lines file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `fixtures/smollm2/<name>` (the transformers references) for test `what`, parsed; `None` after a `SKIP` line
/// when `../shared` lacks it.
pub fn smollm2_fixture(name: &str, what: &str) -> Option<Vec<serde_json::Value>> {
    let path = sparring_actors::testing::shared_or_skip(&format!("fixtures/smollm2/{name}"), what)?;
    Some(read_jsonl(&path))
}

/// Token ids from a JSON array of integers.
pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The build context of the chat-LM role tests: scenario directory = the actors crate, seed 1.
pub fn ctx(role: Role) -> BuildContext {
    BuildContext {
        scenario_dir: Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        seed: 1,
        role,
        run_dir: None,
        learns: false,
        node: None,
        self_play: false,
        turns: 1,
    }
}

/// A role table from TOML text.
pub fn table(s: &str) -> toml::Table {
    toml::from_str(s).unwrap()
}

/// A seed whose id (`t:<prompt>`) and prompt are `prompt`, in set `t`.
pub fn seed(prompt: &str, category: Category) -> Seed {
    Seed {
        id: format!("t:{prompt}").into(),
        set: "t".into(),
        prompt: prompt.into(),
        category,
        topic: None,
    }
}
