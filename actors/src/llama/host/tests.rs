//! Tests of the host path: padding changes nothing, `exp_fast`'s accuracy, and the f32 and f16
//! host paths against the HF transformers fixtures of SmolLM2-135M (the same bounds as
//! `tests/llama_fixtures.rs` applies to the f32 paths). Skip when the model or the fixtures are
//! absent.

use super::ops::exp_fast;
use super::{HostCache, HostLlama, Precision};
use crate::formats::{shared_dir, smollm2_gguf_path};
use crate::llama::config::{LlamaConfig, RopeLayout};
use crate::llama::generate::GenerateOptions;
use crate::llama::generate::logsumexp;
use crate::llama::model::LlamaModel;

fn fixtures(name: &str) -> Option<Vec<serde_json::Value>> {
    let path = shared_dir().join("fixtures/smollm2").join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("SKIP: fixture {} not found", path.display());
        return None;
    };
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn model() -> Option<LlamaModel> {
    let path = smollm2_gguf_path()?;
    if !path.exists() {
        eprintln!(
            "SKIP: {} not found (scripts/fetch-model.sh)",
            path.display()
        );
        return None;
    }
    Some(LlamaModel::load_gguf(&path, &burn::tensor::Device::flex()).unwrap())
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn padding_positions_are_skipped_and_change_nothing() {
    let mut cfg = LlamaConfig::smollm2_135m(RopeLayout::Interleaved);
    cfg.vocab_size = 300;
    cfg.hidden_size = 64;
    cfg.intermediate_size = 96;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 16;
    let m = LlamaModel::random(&cfg, 7, &burn::tensor::Device::flex()).unwrap();
    let host = HostLlama::from_model(&m).unwrap();
    let v = cfg.vocab_size;
    // Alone: a 5-token prompt, then one decode step.
    let p = vec![3u32, 17, 250, 9, 41];
    let mut alone = HostCache::new(&cfg, 1, 8);
    let a0 = host
        .forward(std::slice::from_ref(&p), &[vec![true; 5]], &mut alone, true)
        .unwrap();
    let a1 = host
        .forward(&[vec![77]], &[vec![true]], &mut alone, false)
        .unwrap();
    // In a batch: left-padded by 3 beside a full row; at the decode step the full row is
    // done (padding).
    let mut padded = vec![0u32; 3];
    padded.extend(&p);
    let other = vec![5u32, 6, 7, 8, 9, 10, 11, 12];
    let mut batch = HostCache::new(&cfg, 2, 9);
    let mut valid = vec![false; 3];
    valid.extend([true; 5]);
    let b0 = host
        .forward(&[padded, other], &[valid, vec![true; 8]], &mut batch, true)
        .unwrap();
    let b1 = host
        .forward(
            &[vec![77], vec![0]],
            &[vec![true], vec![false]],
            &mut batch,
            false,
        )
        .unwrap();
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(1.0))
    };
    for j in 0..5 {
        assert!(close(
            &a0[j * v..(j + 1) * v],
            &b0[(3 + j) * v..(4 + j) * v]
        ));
    }
    assert!(
        b0[..3 * v].iter().all(|&x| x == 0.0),
        "padding logits are zeros"
    );
    assert!(close(&a1, &b1[..v]));
    assert!(
        b1[v..].iter().all(|&x| x == 0.0),
        "a finished row's logits are zeros"
    );
    assert!(b1[..v].iter().any(|&x| x != 0.0));
}

#[test]
fn exp_fast_is_within_2e7_relative_of_exp() {
    let mut worst = 0.0f64;
    for i in -87_000..88_000 {
        let x = i as f32 * 1e-3 + 1.7e-4;
        let (got, want) = (exp_fast(x) as f64, (x as f64).exp());
        worst = worst.max((got - want).abs() / want);
    }
    assert!(worst < 2e-7, "{worst}");
    assert_eq!(exp_fast(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_fast(-100.0), 0.0);
    assert!(exp_fast(f32::NAN).is_nan() || exp_fast(f32::NAN) >= 0.0);
}

#[test]
fn host_paths_match_transformers_fixtures() {
    let (Some(logits), Some(greedy), Some(m)) =
        (fixtures("logits.jsonl"), fixtures("greedy.jsonl"), model())
    else {
        return;
    };
    for precision in [Precision::F32, Precision::F16] {
        let host = HostLlama::with_precision(&m, precision).unwrap();
        assert_eq!(host.precision(), precision);
        let vocab = m.config().vocab_size;
        let (mut worst_rel, mut worst_lse) = (0.0f64, 0.0f64);
        for case in &logits {
            let ids = ids_of(case);
            let n = ids.len();
            let mut cache = HostCache::new(m.config(), 1, n);
            let all = host
                .forward(&[ids], &[vec![true; n]], &mut cache, true)
                .unwrap();
            for p in case["positions"].as_array().unwrap() {
                let pos = p["position"].as_u64().unwrap() as usize;
                let row = &all[pos * vocab..(pos + 1) * vocab];
                let ids = p["top_ids"].as_array().unwrap();
                for (id, want) in ids.iter().zip(p["top_logits"].as_array().unwrap()) {
                    let got = row[id.as_u64().unwrap() as usize] as f64;
                    let want = want.as_f64().unwrap();
                    let rel = (got - want).abs() / want.abs().max(1.0);
                    worst_rel = worst_rel.max(rel);
                    assert!(rel <= 1e-3, "pos {pos} id {id}: got {got}, want {want}");
                }
                let want = p["logsumexp"].as_f64().unwrap();
                let got = logsumexp(row) as f64;
                worst_lse = worst_lse.max((got - want).abs());
                assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0));
            }
        }
        eprintln!(
            "{precision:?} host logits: worst relative error {worst_rel:.2e}, logsumexp {worst_lse:.2e}"
        );
    }
    let host = HostLlama::with_precision(&m, Precision::F16).unwrap();
    let prompts: Vec<Vec<u32>> = greedy.iter().map(ids_of).collect();
    let steps = greedy[0]["greedy"].as_array().unwrap().len();
    let opts = GenerateOptions {
        max_new_tokens: steps,
        ..Default::default()
    };
    let out = host.generate(&prompts, &opts).unwrap();
    for (case, got) in greedy.iter().zip(&out) {
        let mut equal = 0;
        for (j, step) in case["greedy"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                got.tokens[j] as u64,
                step["id"].as_u64().unwrap(),
                "step {j}"
            );
            equal += 1;
            if step["margin"].as_f64().unwrap() < 0.01 {
                break;
            }
        }
        eprintln!("f16 host greedy: {equal} steps equal");
    }
}
