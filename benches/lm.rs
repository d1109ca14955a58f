//! Criterion benchmarks of the Burn LM (flex CPU backend): generation tokens/s with the KV cache
//! and DPO / GRPO training-step tokens/s on a small intent-game-sized transformer.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sparring_actors::lm::*;

const BATCH: usize = 16;
const PROMPT: usize = 8;
const NEW: usize = 24;

fn small() -> TransformerConfig {
    // the intent-game scale: 64-token vocabulary, 2 layers of width 64
    TransformerConfig::new(64, 64, 2, 4, 256, 64)
}

fn model() -> TransformerLm {
    let dev = device(BackendKind::Flex).unwrap();
    small().init(1, &dev).unwrap()
}

fn prompts() -> Vec<GenRequest> {
    (0..BATCH)
        .map(|i| GenRequest {
            prompt: (0..PROMPT - i % 3)
                .map(|t| ((t * 7 + i) % 63 + 1) as u32)
                .collect(),
            seed: i as u64,
        })
        .collect()
}

fn bench_generate(c: &mut Criterion) {
    let m = model();
    let reqs = prompts();
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 0.95,
        max_new_tokens: NEW,
        ..Default::default()
    };
    let mut g = c.benchmark_group("lm_generate");
    g.sample_size(10);
    g.throughput(Throughput::Elements((BATCH * NEW) as u64));
    g.bench_function(format!("kv_cache_b{BATCH}_new{NEW}"), |b| {
        b.iter(|| generate(&m, &reqs, &cfg).unwrap())
    });
    let one = vec![reqs[0].clone()];
    g.throughput(Throughput::Elements(NEW as u64));
    g.bench_function(format!("kv_cache_b1_new{NEW}"), |b| {
        b.iter(|| generate(&m, &one, &cfg).unwrap())
    });
    g.finish();
}

fn bench_train(c: &mut Criterion) {
    let gens = generate(
        &model(),
        &prompts(),
        &SamplingConfig {
            max_new_tokens: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let groups: Vec<PreferenceGroup> = prompts()
        .into_iter()
        .zip(gens.chunks(2).cycle())
        .take(BATCH / 2)
        .map(|(r, pair)| PreferenceGroup {
            prompt: r.prompt,
            responses: pair.iter().map(|g| g.tokens.clone()).collect(),
            rewards: vec![Some(1.0), Some(0.0)],
            later: Vec::new(),
        })
        .collect();
    // tokens through the policy per step: chosen + rejected sequences
    let tokens: usize = groups
        .iter()
        .map(|g| 2 * g.prompt.len() + g.responses.iter().map(Vec::len).sum::<usize>())
        .sum();
    let mut g = c.benchmark_group("lm_train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(tokens as u64));
    let mut dpo = Learner::new(model(), LearnerConfig::default(), 0).unwrap();
    g.bench_function(format!("dpo_{}pairs", groups.len()), |b| {
        b.iter(|| dpo.preference_step(&groups).unwrap())
    });
    // One group per prompt, one baseline over the batch (so that every sample has an advantage).
    let groups: Vec<GrpoGroup> = prompts()
        .into_iter()
        .zip(&gens)
        .enumerate()
        .map(|(i, (r, gen_out))| GrpoGroup {
            prompt: r.prompt,
            seed: i.to_string(),
            samples: vec![GrpoSample {
                response: gen_out.tokens.clone(),
                gen_logprobs: gen_out.logprobs.clone(),
                reward: Some((i % 3) as f32),
                error: false,
                later: Vec::new(),
            }],
        })
        .collect();
    let tokens: usize = groups
        .iter()
        .map(|g| g.prompt.len() + g.samples[0].response.len())
        .sum();
    g.throughput(Throughput::Elements(tokens as u64));
    let mut grpo = Learner::new(
        model(),
        LearnerConfig {
            algorithm: Algorithm::Grpo,
            baseline: Baseline::Batch,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    g.bench_function(format!("grpo_{}samples", groups.len()), |b| {
        b.iter(|| grpo.grpo_step(&groups).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_generate, bench_train);
criterion_main!(benches);
