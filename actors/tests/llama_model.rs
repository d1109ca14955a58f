//! Random-weight tests of the Llama model: cache vs full forward, left padding, batch vs single
//! generation, the two RoPE layouts, autodiff forward.
#![allow(clippy::needless_range_loop)] // index loops mirror the [batch, position] layout

mod common;

use std::collections::HashMap;

use burn::tensor::{Device, Tensor};
use common::{host, max_abs_diff, tiny_llama};
use sparring_actors::llama::{
    GenerateOptions, KvCache, LlamaModel, LogitsMode, RopeLayout, StopReason, TensorLookup,
    WeightNaming,
};

#[test]
fn cached_decode_matches_full_forward() {
    let dev = Device::flex();
    let m = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 1, &dev).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 9, 33, 2, 40, 11];
    let full = host(
        m.forward(std::slice::from_ref(&ids), &[vec![true; ids.len()]])
            .unwrap(),
    );
    let mut cache = KvCache::new(m.config(), 1, 16, &dev);
    // Prefill 5, then one token at a time.
    let first = host(
        m.forward_cached(
            &[ids[..5].to_vec()],
            &[vec![true; 5]],
            &mut cache,
            LogitsMode::All,
        )
        .unwrap(),
    );
    assert!(max_abs_diff(&first, &full[..5 * 64]) < 1e-4);
    for (j, &t) in ids.iter().enumerate().skip(5) {
        let step = host(
            m.forward_cached(&[vec![t]], &[vec![true]], &mut cache, LogitsMode::Last)
                .unwrap(),
        );
        assert!(
            max_abs_diff(&step, &full[j * 64..(j + 1) * 64]) < 1e-4,
            "pos {j}"
        );
    }
    assert_eq!(cache.len(), 8);
    assert_eq!(cache.positions(), &[8]);
    // Overflowing the cache is an error, not a panic.
    let err = m
        .forward_cached(
            &[vec![1; 9]],
            &[vec![true; 9]],
            &mut cache,
            LogitsMode::Last,
        )
        .unwrap_err();
    assert!(err.to_string().contains("cache full"), "{err}");
}

#[test]
fn left_padding_does_not_change_logits() {
    let dev = Device::flex();
    let m = LlamaModel::random(&tiny_llama(RopeLayout::RotateHalf), 2, &dev).unwrap();
    let a: Vec<u32> = vec![1, 2, 3, 4, 5, 6];
    let b: Vec<u32> = vec![7, 8, 9];
    let alone = host(
        m.forward(std::slice::from_ref(&b), &[vec![true; 3]])
            .unwrap(),
    );
    let padded_b = vec![0, 0, 0, 7, 8, 9];
    let valid_b = vec![false, false, false, true, true, true];
    let logits = m
        .forward(&[a.clone(), padded_b], &[vec![true; 6], valid_b])
        .unwrap();
    assert_eq!(logits.dims(), [2, 6, 64]);
    let batch = host(logits);
    let row_b = &batch[6 * 64..];
    assert!(max_abs_diff(&row_b[3 * 64..], &alone) < 1e-4);
    assert!(
        batch.iter().all(|x| x.is_finite()),
        "padding rows stay finite"
    );
    // Out-of-range token ids are an error.
    assert!(m.forward(&[vec![64]], &[vec![true]]).is_err());
}

#[test]
fn batch_generation_equals_single() {
    let dev = Device::flex();
    let m = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 3, &dev).unwrap();
    let prompts: Vec<Vec<u32>> = vec![vec![5, 6, 7, 8, 9], vec![10, 11], vec![12, 13, 14]];
    for (temperature, top_p) in [(0.0, 1.0), (0.8, 1.0), (1.0, 0.9)] {
        let opts = GenerateOptions {
            max_new_tokens: 10,
            temperature,
            top_p,
            stop_tokens: vec![],
            seed: 42,
            logprobs: true,
        };
        let batch = m.generate(&prompts, &opts).unwrap();
        for (r, p) in prompts.iter().enumerate() {
            let seed = sparring_actors::llama::generate::row_seed(42, r);
            let single = m
                .generate_with_seeds(std::slice::from_ref(p), &[seed], &opts)
                .unwrap();
            assert_eq!(batch[r].tokens, single[0].tokens, "row {r} t={temperature}");
            assert!(max_abs_diff(&batch[r].logprobs, &single[0].logprobs) < 1e-3);
            assert_eq!(batch[r].tokens.len(), 10);
        }
    }
    // Same seed, same output.
    let opts = GenerateOptions {
        max_new_tokens: 6,
        temperature: 1.0,
        seed: 9,
        ..Default::default()
    };
    assert_eq!(
        m.generate(&prompts, &opts).unwrap(),
        m.generate(&prompts, &opts).unwrap()
    );
}

#[test]
fn stop_tokens_end_rows() {
    let dev = Device::flex();
    let m = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 4, &dev).unwrap();
    let prompts = vec![vec![1u32, 2, 3], vec![4u32]];
    let free = m
        .generate(
            &prompts,
            &GenerateOptions {
                max_new_tokens: 8,
                ..Default::default()
            },
        )
        .unwrap();
    // Stop on the 3rd token the first row produces.
    let stop = free[0].tokens[2];
    let opts = GenerateOptions {
        max_new_tokens: 8,
        stop_tokens: vec![stop],
        ..Default::default()
    };
    let out = m.generate(&prompts, &opts).unwrap();
    let cut = free[0].tokens.iter().position(|&t| t == stop).unwrap();
    assert_eq!(out[0].tokens, free[0].tokens[..=cut].to_vec());
    assert_eq!(out[0].stop, StopReason::StopToken);
    if !free[1].tokens.contains(&stop) {
        assert_eq!(out[1].tokens, free[1].tokens);
        assert_eq!(out[1].stop, StopReason::MaxTokens);
    }
}

/// A source built from a model's weights, renamed; Q/K rows optionally permuted from
/// rotate-half order to llama.cpp's interleaved order.
fn export(
    m: &LlamaModel,
    naming: WeightNaming,
    to_interleaved: bool,
) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    use sparring_actors::llama::load::LayerTensor as L;
    let c = m.config().clone();
    let mut out = HashMap::new();
    let get2 = |t: Tensor<2>| {
        let [i, o] = t.dims();
        let d = t.into_data().try_into_vec::<f32>().unwrap();
        // [in, out] → [out, in]
        let mut tr = vec![0.0; d.len()];
        for a in 0..i {
            for b in 0..o {
                tr[b * i + a] = d[a * o + b];
            }
        }
        (vec![o, i], tr)
    };
    let permute = |(shape, d): (Vec<usize>, Vec<f32>), heads: usize| {
        if !to_interleaved {
            return (shape, d);
        }
        let (rows, cols) = (shape[0], shape[1]);
        let hd = rows / heads;
        let mut p = vec![0.0; d.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for (src, dst) in [(i, 2 * i), (i + hd / 2, 2 * i + 1)] {
                    let s = (h * hd + src) * cols;
                    let t = (h * hd + dst) * cols;
                    p[t..t + cols].copy_from_slice(&d[s..s + cols]);
                }
            }
        }
        (shape, p)
    };
    let v1 = |t: Tensor<1>| {
        (
            t.dims().to_vec(),
            t.into_data().try_into_vec::<f32>().unwrap(),
        )
    };
    let e = m.embed.val();
    out.insert(
        naming.embedding().to_string(),
        (
            e.dims().to_vec(),
            e.into_data().try_into_vec::<f32>().unwrap(),
        ),
    );
    out.insert(naming.final_norm().to_string(), v1(m.norm.val()));
    for (i, b) in m.blocks.iter().enumerate() {
        out.insert(naming.layer(i, L::AttnNorm), v1(b.attn_norm.val()));
        out.insert(naming.layer(i, L::FfnNorm), v1(b.mlp_norm.val()));
        out.insert(
            naming.layer(i, L::Q),
            permute(get2(b.attn.q.val()), c.num_heads),
        );
        out.insert(
            naming.layer(i, L::K),
            permute(get2(b.attn.k.val()), c.num_kv_heads),
        );
        out.insert(naming.layer(i, L::V), get2(b.attn.v.val()));
        out.insert(naming.layer(i, L::O), get2(b.attn.o.val()));
        out.insert(naming.layer(i, L::Gate), get2(b.mlp.gate.val()));
        out.insert(naming.layer(i, L::Up), get2(b.mlp.up.val()));
        out.insert(naming.layer(i, L::Down), get2(b.mlp.down.val()));
    }
    out
}

#[test]
fn interleaved_rope_on_permuted_weights_equals_rotate_half() {
    let dev = Device::flex();
    let hf_cfg = tiny_llama(RopeLayout::RotateHalf);
    let hf = LlamaModel::random(&hf_cfg, 5, &dev).unwrap();
    let hf_src = export(&hf, WeightNaming::HuggingFace, false);
    let gguf_src = export(&hf, WeightNaming::Gguf, true);
    let reloaded =
        LlamaModel::from_tensors(&hf_cfg, &hf_src, WeightNaming::HuggingFace, &dev).unwrap();
    let gguf = LlamaModel::from_tensors(
        &tiny_llama(RopeLayout::Interleaved),
        &gguf_src,
        WeightNaming::Gguf,
        &dev,
    )
    .unwrap();
    let ids = vec![vec![1u32, 9, 17, 25, 33, 41, 49, 57]];
    let valid = vec![vec![true; 8]];
    let a = host(hf.forward(&ids, &valid).unwrap());
    let b = host(reloaded.forward(&ids, &valid).unwrap());
    let c = host(gguf.forward(&ids, &valid).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-6);
    assert!(max_abs_diff(&a, &c) < 1e-4, "{}", max_abs_diff(&a, &c));
    // The wrong layout gives different logits (the trap the issue warns about).
    let wrong = LlamaModel::from_tensors(
        &hf_cfg,
        &export(&hf, WeightNaming::HuggingFace, true),
        WeightNaming::HuggingFace,
        &dev,
    )
    .unwrap();
    let d = host(wrong.forward(&ids, &valid).unwrap());
    assert!(max_abs_diff(&a, &d) > 1e-3);
    // Missing tensors and wrong shapes are named.
    let mut broken = hf_src.clone();
    broken.remove("model.layers.1.mlp.up_proj.weight");
    let err =
        LlamaModel::from_tensors(&hf_cfg, &broken, WeightNaming::HuggingFace, &dev).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.layers.1.mlp.up_proj.weight"),
        "{err}"
    );
    let mut broken = hf_src;
    broken.insert("model.norm.weight".into(), (vec![3], vec![1.0; 3]));
    let err =
        LlamaModel::from_tensors(&hf_cfg, &broken, WeightNaming::HuggingFace, &dev).unwrap_err();
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
    let _: &dyn TensorLookup = &broken;
}

#[test]
fn qkv_bias_and_untied_head() {
    let dev = Device::flex();
    let mut cfg = tiny_llama(RopeLayout::RotateHalf);
    cfg.qkv_bias = true;
    cfg.tie_embeddings = false;
    let m = LlamaModel::random(&cfg, 6, &dev).unwrap();
    assert!(m.head.is_some() && m.blocks[0].attn.q_bias.is_some());
    let ids = vec![vec![1u32, 2, 3, 4]];
    let valid = vec![vec![true; 4]];
    let full = host(m.forward(&ids, &valid).unwrap());
    let mut cache = KvCache::new(m.config(), 1, 8, &dev);
    let last = host(
        m.forward_cached(&ids, &valid, &mut cache, LogitsMode::Last)
            .unwrap(),
    );
    assert!(max_abs_diff(&last, &full[3 * 64..]) < 1e-5);
}

#[test]
fn autodiff_forward_matches_and_backprops() {
    let cfg = tiny_llama(RopeLayout::Interleaved);
    let plain = LlamaModel::random(&cfg, 7, &Device::flex()).unwrap();
    let ad = LlamaModel::random(&cfg, 7, &Device::flex().autodiff()).unwrap();
    let ids = vec![vec![0u32, 1, 2, 3, 4], vec![9, 8, 7, 6, 5]];
    let valid = vec![vec![false, true, true, true, true], vec![true; 5]];
    let a = host(plain.forward(&ids, &valid).unwrap());
    let logits = ad.forward(&ids, &valid).unwrap();
    let b = host(logits.clone());
    assert!(max_abs_diff(&a, &b) < 1e-4);
    let grads = logits.sum().backward();
    let g = ad.blocks[0].attn.k.grad(&grads).expect("gradient for k");
    assert_eq!(g.dims(), [32, 16]);
}

#[test]
fn host_path_matches_burn_path() {
    use sparring_actors::llama::{HostCache, HostLlama};
    let dev = Device::flex();
    for (layout, bias) in [
        (RopeLayout::Interleaved, false),
        (RopeLayout::RotateHalf, true),
    ] {
        let mut cfg = tiny_llama(layout);
        cfg.qkv_bias = bias;
        cfg.tie_embeddings = !bias;
        let m = LlamaModel::random(&cfg, 11, &dev).unwrap();
        let host = HostLlama::from_model(&m).unwrap();
        let ids = vec![vec![0u32, 0, 5, 6, 7], vec![1, 2, 3, 4, 5]];
        let valid = vec![vec![false, false, true, true, true], vec![true; 5]];
        let want = common::host(m.forward(&ids, &valid).unwrap());
        let mut cache = HostCache::new(&cfg, 2, 8);
        let got = host.forward(&ids, &valid, &mut cache, true).unwrap();
        // Padding positions are garbage in both; compare real ones.
        for r in 0..2 {
            for j in 0..5 {
                if valid[r][j] {
                    let o = (r * 5 + j) * 64;
                    assert!(
                        max_abs_diff(&got[o..o + 64], &want[o..o + 64]) < 1e-4,
                        "{r} {j}"
                    );
                }
            }
        }
        let prompts = vec![vec![5u32, 6, 7], vec![1, 2, 3, 4, 5]];
        for temperature in [0.0, 1.0] {
            let opts = GenerateOptions {
                max_new_tokens: 6,
                temperature,
                seed: 3,
                logprobs: true,
                ..Default::default()
            };
            let a = m.generate(&prompts, &opts).unwrap();
            let b = host.generate(&prompts, &opts).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.tokens, y.tokens);
                assert!(max_abs_diff(&x.logprobs, &y.logprobs) < 1e-3);
            }
        }
    }
}
