//! Tests of the transformer LM, sampling, log-probs, checkpoints and the model thread (flex).

mod common;

use burn::tensor::Device;
use common::{flat, max_abs_diff};
use sparring_actors::lm::batch::to_vec_f32;
use sparring_actors::lm::*;

fn tiny(seed: u64, std: f64) -> TransformerLm {
    let mut cfg = TransformerConfig::new(17, 16, 2, 2, 32, 24);
    cfg.init_std = std;
    cfg.init(seed, &Device::flex()).unwrap()
}

#[test]
fn init_is_deterministic_by_seed_and_config_is_validated() {
    assert_eq!(flat(&tiny(3, 0.02)), flat(&tiny(3, 0.02)));
    assert_ne!(flat(&tiny(3, 0.02)), flat(&tiny(4, 0.02)));
    let mut bad = TransformerConfig::new(17, 16, 2, 3, 32, 24);
    assert!(bad.validate().unwrap_err().to_string().contains("n_heads"));
    bad.n_heads = 2;
    bad.dropout = 0.1;
    assert!(bad.validate().unwrap_err().to_string().contains("dropout"));
    let toml_cfg: TransformerConfig = serde_json::from_str(
        r#"{"vocab_size":8,"d_model":8,"n_layers":1,"n_heads":2,"d_ff":16,"max_len":8,"norm":"rms_norm","tied_head":false}"#,
    )
    .unwrap();
    assert_eq!(toml_cfg.norm, NormKind::RmsNorm);
    let m = toml_cfg.init(0, &Device::flex()).unwrap();
    let b = TokenBatch::left_padded(&[vec![1u32, 2, 3]], 0).unwrap();
    assert_eq!(m.forward_batch(&b).unwrap().dims(), [1, 3, 8]);
    assert!(serde_json::from_str::<TransformerConfig>(r#"{"vocab_size":8,"bogus":1}"#).is_err());
}

#[test]
fn forward_rejects_bad_input() {
    let m = tiny(1, 0.02);
    let b = TokenBatch::left_padded(&[vec![1u32, 99]], 0).unwrap();
    assert!(
        m.forward_batch(&b)
            .unwrap_err()
            .to_string()
            .contains("vocabulary")
    );
    let long = TokenBatch::left_padded(&[vec![1u32; 25]], 0).unwrap();
    assert!(
        m.forward_batch(&long)
            .unwrap_err()
            .to_string()
            .contains("max_len")
    );
}

#[test]
fn padding_does_not_change_a_rows_logits() {
    let m = tiny(5, 0.3);
    let a = vec![3u32, 4, 5];
    let alone = m
        .forward_batch(&TokenBatch::left_padded(std::slice::from_ref(&a), 0).unwrap())
        .unwrap();
    let both = m
        .forward_batch(
            &TokenBatch::left_padded(&[vec![1u32, 2, 6, 7, 8, 9], a.clone()], 0).unwrap(),
        )
        .unwrap();
    let alone = to_vec_f32(alone).unwrap();
    let both = to_vec_f32(both.narrow(0, 1, 1).narrow(1, 3, 3)).unwrap();
    let diff = max_abs_diff(&alone, &both);
    assert!(diff < 1e-5, "max diff {diff}");
}

#[test]
fn kv_cache_logits_match_full_recompute() {
    let m = tiny(7, 0.3);
    let prompts = [vec![1u32, 2, 3, 4], vec![5u32], vec![6u32, 7]];
    let batch = TokenBatch::left_padded(&prompts, 0).unwrap();
    let (mut last, mut cache) = m.prefill(&batch).unwrap();
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    for step in 0..5u32 {
        let full = m
            .forward_batch(&TokenBatch::left_padded(&seqs, 0).unwrap())
            .unwrap();
        let [b, t, v] = full.dims();
        let want = to_vec_f32(full.narrow(1, t - 1, 1).reshape([b, v])).unwrap();
        let got = to_vec_f32(last.clone()).unwrap();
        let diff = max_abs_diff(&want, &got);
        assert!(diff < 1e-4, "step {step}: max diff {diff}");
        let next: Vec<u32> = (0..3).map(|r| (step * 3 + r) % 17).collect();
        for (s, n) in seqs.iter_mut().zip(&next) {
            s.push(*n);
        }
        last = m.decode(&next, &mut cache).unwrap();
    }
}

#[test]
fn greedy_with_cache_equals_without_and_stops() {
    let m = tiny(11, 0.5);
    let reqs: Vec<GenRequest> = [vec![1u32, 2, 3], vec![4u32], vec![5u32, 6, 7, 8, 9]]
        .into_iter()
        .enumerate()
        .map(|(i, prompt)| GenRequest {
            prompt,
            seed: i as u64,
        })
        .collect();
    let cfg = SamplingConfig::greedy(10);
    let a = generate(&m, &reqs, &cfg).unwrap();
    let b = generate_uncached(&m, &reqs, &cfg).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.tokens, y.tokens);
        assert_eq!(x.tokens.len(), 10);
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-4);
        }
    }
    // stop on the first generated token of row 0
    let stop = a[0].tokens[2];
    let cfg = SamplingConfig {
        stop_tokens: vec![stop],
        ..SamplingConfig::greedy(10)
    };
    let s = generate(&m, &reqs, &cfg).unwrap();
    let pos = a[0].tokens.iter().position(|t| *t == stop).unwrap();
    assert_eq!(s[0].tokens, a[0].tokens[..=pos].to_vec());
    assert!(s[0].stopped);
    // context limit: prompt of 20 in a max_len 24 model gets at most 4 tokens
    let r = generate(
        &m,
        &[GenRequest {
            prompt: vec![1; 20],
            seed: 0,
        }],
        &SamplingConfig::greedy(10),
    )
    .unwrap();
    assert_eq!(r[0].tokens.len(), 4);
}

#[test]
fn sampling_is_seeded_per_request_and_batch_independent() {
    let m = tiny(13, 0.3);
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 0.9,
        max_new_tokens: 12,
        ..Default::default()
    };
    let a = GenRequest {
        prompt: vec![2, 3],
        seed: 42,
    };
    let others = [
        GenRequest {
            prompt: vec![1, 2, 3, 4, 5, 6],
            seed: 1,
        },
        GenRequest {
            prompt: vec![9],
            seed: 2,
        },
    ];
    let alone = generate(&m, std::slice::from_ref(&a), &cfg).unwrap();
    let mixed = generate(&m, &[others[0].clone(), a.clone(), others[1].clone()], &cfg).unwrap();
    assert_eq!(alone[0].tokens, mixed[1].tokens);
    let again = generate(&m, std::slice::from_ref(&a), &cfg).unwrap();
    assert_eq!(alone, again);
    let other_seed = generate(
        &m,
        &[GenRequest {
            seed: 43,
            ..a.clone()
        }],
        &cfg,
    )
    .unwrap();
    assert_ne!(alone[0].tokens, other_seed[0].tokens);
    assert!(generate(&m, &[a], &SamplingConfig { top_p: 0.0, ..cfg }).is_err());
}

#[test]
fn sequence_logprobs_sum_response_tokens_only() {
    let m = tiny(17, 0.3);
    let pairs = [
        (vec![1u32, 2, 3], vec![4u32, 5]),
        (vec![6u32], vec![7u32, 8, 9]),
    ];
    let lp = sequence_logprobs_vec(&m, &pairs, 0).unwrap();
    // by hand from full logits
    for (i, (p, r)) in pairs.iter().enumerate() {
        let seq = [p.as_slice(), r.as_slice()].concat();
        let logits = m
            .forward_batch(&TokenBatch::left_padded(std::slice::from_ref(&seq), 0).unwrap())
            .unwrap();
        let v = 17;
        let l = to_vec_f32(logits).unwrap();
        let mut want = 0.0f64;
        for k in 0..r.len() {
            let t = p.len() + k; // position of the predicted token
            let row = &l[(t - 1) * v..t * v];
            let max = row.iter().copied().fold(f32::MIN, f32::max);
            let lse = max as f64
                + row
                    .iter()
                    .map(|x| ((x - max) as f64).exp())
                    .sum::<f64>()
                    .ln();
            want += row[seq[t] as usize] as f64 - lse;
        }
        assert!((lp[i] as f64 - want).abs() < 1e-4, "{} vs {want}", lp[i]);
    }
    let g = generate(
        &m,
        &[GenRequest {
            prompt: vec![1, 2, 3],
            seed: 0,
        }],
        &SamplingConfig {
            max_new_tokens: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let s = sequence_logprobs_vec(&m, &[(vec![1u32, 2, 3], g[0].tokens.clone())], 0).unwrap();
    let sum: f32 = g[0].logprobs.iter().sum();
    assert!((s[0] - sum).abs() < 1e-4, "{} vs {sum}", s[0]);
}

#[test]
fn model_thread_runs_generation_off_thread() {
    let t = ModelThread::spawn("lm-test", || Ok(tiny(19, 0.3))).unwrap();
    let reqs = vec![GenRequest {
        prompt: vec![1, 2],
        seed: 5,
    }];
    let r2 = reqs.clone();
    let out = t
        .call(move |m: &mut TransformerLm| generate(m, &r2, &SamplingConfig::greedy(4)))
        .unwrap();
    let here = generate(&tiny(19, 0.3), &reqs, &SamplingConfig::greedy(4)).unwrap();
    assert_eq!(out, here);
    let rx = t
        .submit(|m: &mut TransformerLm| {
            let b = TokenBatch::left_padded(&[vec![1u32, 99]], 0)?;
            m.forward_batch(&b).map(|_| ())
        })
        .unwrap();
    assert!(rx.recv().unwrap().is_err());
    t.shutdown();
}
