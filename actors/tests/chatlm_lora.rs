//! LoRA on the Llama model with random weights: zero-B adapters reproduce the base forward, merged weights
//! reproduce the adapted forward, a few DPO steps on a fixed pair lower the loss, and the safetensors round trip.

mod common;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use common::{host, max_abs_diff, tiny_llama};
use sparring_actors::chatlm::{LoraConfig, LoraLlama};
use sparring_actors::llama::{LlamaModel, RopeLayout};
use sparring_actors::lm::{
    Algorithm, Learner, LearnerConfig, OptimConfig, PreferenceGroup, sequence_logprobs_vec,
};

fn all_targets() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: ["q", "k", "v", "o", "gate", "up", "down"]
            .map(String::from)
            .to_vec(),
    }
}

/// Left-padded rows of two lengths.
fn rows() -> (Vec<Vec<u32>>, Vec<Vec<bool>>) {
    let ids = vec![vec![0, 0, 5, 9, 33, 2], vec![3, 17, 5, 9, 33, 2]];
    let valid = vec![vec![false, false, true, true, true, true], vec![true; 6]];
    (ids, valid)
}

fn lora_forward(l: &LoraLlama, ids: &[Vec<u32>], valid: &[Vec<bool>]) -> Vec<f32> {
    let flat: Vec<u32> = ids.concat();
    let mask: Vec<bool> = valid.concat();
    host(
        l.forward_rows(&flat, &mask, ids.len(), ids[0].len())
            .unwrap(),
    )
}

/// Every B set to seeded non-zero values.
fn perturb(l: LoraLlama) -> LoraLlama {
    let dev = Device::flex();
    let mut l = l;
    let mut k = 0.0f32;
    for b in &mut l.blocks {
        for p in [
            &mut b.q,
            &mut b.k,
            &mut b.v,
            &mut b.o,
            &mut b.gate,
            &mut b.up,
            &mut b.down,
        ]
        .into_iter()
        .flatten()
        {
            let [r, o] = p.b.val().dims();
            let data: Vec<f32> = (0..r * o)
                .map(|i| {
                    k += 1.0;
                    ((i as f32 * 0.37 + k).sin()) * 0.05
                })
                .collect();
            p.b = Param::from_tensor(Tensor::from_data(TensorData::new(data, [r, o]), &dev));
        }
    }
    l
}

#[test]
fn zero_b_matches_base_and_merge_matches_adapted() {
    let dev = Device::flex();
    for layout in [RopeLayout::Interleaved, RopeLayout::RotateHalf] {
        let base = LlamaModel::random(&tiny_llama(layout), 7, &dev).unwrap();
        let (ids, valid) = rows();
        let want = host(base.forward(&ids, &valid).unwrap());
        let l = LoraLlama::new(base, all_targets(), 3).unwrap();
        let got = lora_forward(&l, &ids, &valid);
        // Padding positions are unspecified; compare real positions only (row 0 from col 2, row 1 all).
        let v = 64;
        let real = |x: &[f32]| -> Vec<f32> {
            let mut o = x[2 * v..6 * v].to_vec();
            o.extend_from_slice(&x[6 * v..12 * v]);
            o
        };
        assert!(max_abs_diff(&real(&got), &real(&want)) < 1e-4, "{layout:?}");

        let l = perturb(l);
        let adapted = lora_forward(&l, &ids, &valid);
        assert!(
            max_abs_diff(&real(&adapted), &real(&want)) > 1e-3,
            "perturbed adapters must change the output"
        );
        let merged = host(l.merged().forward(&ids, &valid).unwrap());
        assert!(
            max_abs_diff(&real(&merged), &real(&adapted)) < 1e-4,
            "{layout:?}"
        );
    }
}

#[test]
fn dpo_steps_on_a_fixed_pair_lower_the_loss_and_adapters_round_trip() {
    let dev = Device::flex();
    let base = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 11, &dev).unwrap();
    let lora = LoraLlama::new(base, all_targets(), 5).unwrap();
    let cfg = LearnerConfig {
        algorithm: Algorithm::Dpo,
        beta: 0.5,
        // A slowly moving reference: the loss is measured against it, so it must not catch up at once.
        ema_decay: 0.99,
        optim: OptimConfig {
            lr: 1e-2,
            min_lr: 1e-2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = Learner::new(lora, cfg, 1).unwrap();
    let group = PreferenceGroup {
        prompt: vec![1, 2, 3, 4],
        responses: vec![vec![10, 11, 12], vec![20, 21, 22, 23]],
        rewards: vec![Some(1.0), Some(0.0)],
        later: Vec::new(),
    };
    let mut losses = Vec::new();
    for _ in 0..6 {
        let r = learner
            .preference_step(std::slice::from_ref(&group))
            .unwrap()
            .unwrap();
        assert!(r.loss.is_finite());
        losses.push(r.loss);
    }
    assert!(
        losses.last().unwrap() < &(losses[0] - 1e-3),
        "DPO loss did not go down: {losses:?}"
    );
    // The chosen response became more likely relative to the rejected one under the trained policy.
    let pol = learner.generator();
    let pairs = [
        (group.prompt.clone(), group.responses[0].clone()),
        (group.prompt.clone(), group.responses[1].clone()),
    ];
    let lp = sequence_logprobs_vec(&pol, &pairs, 0).unwrap();
    assert!(lp.iter().all(|x| x.is_finite()));

    // Save / load round trip.
    let bytes = pol.adapter_bytes().unwrap();
    let dir = std::env::temp_dir().join(format!("sparring-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("adapters.safetensors");
    pol.save_adapters(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let fresh = LoraLlama::new(pol.base().clone(), all_targets(), 99).unwrap();
    let loaded = fresh.load_adapters(&path).unwrap();
    assert_eq!(
        loaded.adapter_tensors().unwrap(),
        pol.adapter_tensors().unwrap()
    );
    let (ids, valid) = rows();
    assert!(
        max_abs_diff(
            &lora_forward(&loaded, &ids, &valid),
            &lora_forward(&pol, &ids, &valid)
        ) < 1e-6
    );
    // A file with a wrong shape is an error naming the tensor, not a panic.
    let other = LoraLlama::new(
        pol.base().clone(),
        LoraConfig {
            rank: 2,
            ..all_targets()
        },
        1,
    )
    .unwrap();
    let err = other.load_adapters(&path).unwrap_err();
    assert!(err.contains("layers.0.q.lora_a"), "{err}");
    let err = LoraLlama::new(pol.base().clone(), all_targets(), 1)
        .unwrap()
        .load_adapter_bytes(bytes[..bytes.len() / 2].to_vec(), "half.safetensors")
        .unwrap_err();
    assert!(err.contains("half.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_lora_config_is_rejected() {
    let bad = LoraConfig {
        targets: vec!["qkv".into()],
        ..Default::default()
    };
    let err = bad.validate().unwrap_err();
    assert!(err.contains("lora.targets[0]"), "{err}");
    assert!(
        LoraConfig {
            rank: 0,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}
