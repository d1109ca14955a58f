//! wgpu parity (feature `wgpu`): the transformer forward on wgpu matches flex within 1e-4.
//! Without a GPU this runs on Mesa's lavapipe (`apt-get install mesa-vulkan-drivers libvulkan1`).
#![cfg(feature = "wgpu")]

mod common;

use common::max_abs_diff;
use sparring_actors::lm::batch::to_vec_f32;
use sparring_actors::lm::*;

#[test]
fn wgpu_forward_matches_flex() {
    let cfg = TransformerConfig::new(32, 32, 2, 4, 64, 16);
    let flex = cfg.init(3, &device(BackendKind::Flex).unwrap()).unwrap();
    let gpu = cfg.init(3, &device(BackendKind::Wgpu).unwrap()).unwrap();
    let batch = TokenBatch::left_padded(&[vec![1u32, 5, 9, 13, 2], vec![7u32, 3]], 0).unwrap();
    let a = to_vec_f32(flex.forward_batch(&batch).unwrap()).unwrap();
    let b = to_vec_f32(gpu.forward_batch(&batch).unwrap()).unwrap();
    let diff = max_abs_diff(&a, &b);
    eprintln!("wgpu vs flex max abs diff: {diff:e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
    // the KV-cache path on wgpu agrees with its own full forward
    let reqs = vec![GenRequest {
        prompt: vec![1, 5, 9],
        seed: 0,
    }];
    let g_gpu = generate(&gpu, &reqs, &SamplingConfig::greedy(4)).unwrap();
    let g_flex = generate(&flex, &reqs, &SamplingConfig::greedy(4)).unwrap();
    assert_eq!(g_gpu[0].tokens, g_flex[0].tokens);
}
