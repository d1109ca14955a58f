//! SmolLM2-135M-Instruct (Q4_1 GGUF) against the HF transformers fixtures in
//! `<repo>/../shared/fixtures/smollm2`: top-20 logits and logsumexp at three positions, and 24
//! greedy steps. Skips (with a message) when the model file or the fixtures are absent.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{ids_of, max_abs_diff, smollm2_fixture};
use sparring_actors::llama::generate::logsumexp;
use sparring_actors::llama::{Device, GenerateOptions, LlamaModel};

/// Where `scripts/fetch-model.sh` puts the model (or `$SPARRING_SMOLLM2_GGUF`).
fn gguf_path() -> PathBuf {
    sparring_actors::formats::smollm2_gguf_path().unwrap_or_default()
}

fn fixtures(name: &str) -> Option<Vec<serde_json::Value>> {
    smollm2_fixture(name, "llama_fixtures")
}

fn model() -> Option<&'static LlamaModel> {
    static MODEL: OnceLock<Option<LlamaModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = sparring_actors::testing::smollm2_or_skip("llama_fixtures")?;
            Some(LlamaModel::load_gguf(&path, &Device::flex()).unwrap())
        })
        .as_ref()
}

#[test]
fn logits_match_transformers() {
    let (Some(cases), Some(m)) = (fixtures("logits.jsonl"), model()) else {
        return;
    };
    let vocab = m.config().vocab_size;
    let mut worst_rel = 0.0f64;
    let mut worst_lse = 0.0f64;
    for case in &cases {
        let ids = ids_of(&case["ids"]);
        let n = ids.len();
        let logits = m.forward(&[ids], &[vec![true; n]]).unwrap();
        let host = logits.into_data().try_into_vec::<f32>().unwrap();
        for p in case["positions"].as_array().unwrap() {
            let pos = p["position"].as_u64().unwrap() as usize;
            let row = &host[pos * vocab..(pos + 1) * vocab];
            let top_ids = p["top_ids"].as_array().unwrap();
            let top_logits = p["top_logits"].as_array().unwrap();
            for (id, want) in top_ids.iter().zip(top_logits) {
                let id = id.as_u64().unwrap() as usize;
                let want = want.as_f64().unwrap();
                let got = row[id] as f64;
                let rel = (got - want).abs() / want.abs().max(1.0);
                worst_rel = worst_rel.max(rel);
                assert!(
                    rel <= 1e-3,
                    "{:?} pos {pos} id {id}: got {got}, want {want}",
                    case["prompt"]
                );
            }
            let want = p["logsumexp"].as_f64().unwrap();
            let got = logsumexp(row) as f64;
            worst_lse = worst_lse.max((got - want).abs());
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{:?} pos {pos}: logsumexp {got} vs {want}",
                case["prompt"]
            );
        }
    }
    eprintln!("logits: worst relative error {worst_rel:.2e}, worst logsumexp diff {worst_lse:.2e}");
}

#[test]
fn greedy_matches_transformers_batched() {
    let (Some(cases), Some(m)) = (fixtures("greedy.jsonl"), model()) else {
        return;
    };
    // All prompts in one left-padded batch: also checks padding against the reference.
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| ids_of(&c["ids"])).collect();
    let steps = cases[0]["greedy"].as_array().unwrap().len();
    let opts = GenerateOptions {
        max_new_tokens: steps,
        ..Default::default()
    };
    let out = m.generate(&prompts, &opts).unwrap();
    for (case, got) in cases.iter().zip(&out) {
        let mut compared = 0;
        for (j, step) in case["greedy"].as_array().unwrap().iter().enumerate() {
            let want = step["id"].as_u64().unwrap() as u32;
            assert_eq!(
                got.tokens[j], want,
                "{:?} step {j}: got {:?}",
                case["prompt"], got.tokens
            );
            compared += 1;
            if step["margin"].as_f64().unwrap() < 0.01 {
                break;
            }
        }
        eprintln!("greedy {:?}: {compared} steps equal", case["prompt"]);
    }
}

fn prompt_logits(m: &LlamaModel, ids: &[u32]) -> Vec<f32> {
    let logits = m
        .forward(&[ids.to_vec()], &[vec![true; ids.len()]])
        .unwrap();
    logits.into_data().try_into_vec::<f32>().unwrap()
}

/// The HF layout (HF names, Q/K rows un-permuted by the formats view, rotate-half RoPE) gives
/// the logits of the GGUF path (interleaved RoPE on llama.cpp's permuted rows).
#[test]
fn hf_layout_matches_gguf() {
    use sparring_actors::formats::gguf::{GgufFile, GgufHfView};
    use sparring_actors::llama::{LlamaConfig, RopeLayout, WeightNaming};
    let (Some(cases), Some(m)) = (fixtures("logits.jsonl"), model()) else {
        return;
    };
    let g = GgufFile::open(gguf_path()).unwrap();
    let view = GgufHfView::new(&g).unwrap();
    assert!(view.unpermutes_qk());
    let mut cfg = LlamaConfig::from_gguf_metadata(&g).unwrap();
    assert_eq!(cfg.rope_layout, RopeLayout::Interleaved);
    cfg.rope_layout = RopeLayout::RotateHalf;
    let hf =
        LlamaModel::from_tensors(&cfg, &view, WeightNaming::HuggingFace, &Device::flex()).unwrap();
    let ids = ids_of(&cases[0]["ids"]);
    let d = max_abs_diff(&prompt_logits(m, &ids), &prompt_logits(&hf, &ids));
    eprintln!("HF layout vs GGUF: max |Δlogit| = {d:.2e}");
    assert!(d < 1e-3, "{d}");
}

/// Full round trip through `convert_gguf_to_hf` on disk (writes ~540 MB).
#[test]
#[ignore = "writes ~540 MB: cargo test -p sparring-actors --test llama_fixtures converted_hf_dir -- --ignored"]
fn converted_hf_dir_matches_gguf() {
    let (Some(cases), Some(m)) = (fixtures("logits.jsonl"), model()) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("sparring-llama-hf-{}", std::process::id()));
    sparring_actors::formats::convert_gguf_to_hf(&gguf_path(), &dir).unwrap();
    let hf = LlamaModel::load_hf_dir(&dir, &Device::flex()).unwrap();
    let ids = ids_of(&cases[0]["ids"]);
    let d = max_abs_diff(&prompt_logits(m, &ids), &prompt_logits(&hf, &ids));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("converted HF dir vs GGUF: max |Δlogit| = {d:.2e}");
    assert!(d < 1e-3, "{d}");
}

/// The fast host path (`HostLlama`) reproduces the reference greedy continuations too.
#[test]
fn host_path_greedy_matches_transformers() {
    let (Some(cases), Some(m)) = (fixtures("greedy.jsonl"), model()) else {
        return;
    };
    let host = sparring_actors::llama::HostLlama::from_model(m).unwrap();
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| ids_of(&c["ids"])).collect();
    let steps = cases[0]["greedy"].as_array().unwrap().len();
    let opts = GenerateOptions {
        max_new_tokens: steps,
        ..Default::default()
    };
    let out = host.generate(&prompts, &opts).unwrap();
    for (case, got) in cases.iter().zip(&out) {
        for (j, step) in case["greedy"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                got.tokens[j] as u64,
                step["id"].as_u64().unwrap(),
                "step {j}"
            );
            if step["margin"].as_f64().unwrap() < 0.01 {
                break;
            }
        }
    }
}
