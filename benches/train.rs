//! One DPO training step of SmolLM2-135M (architecture and sizes, random weights: the
//! arithmetic is that of the real model) with LoRA adapters, on the flex CPU backend: the
//! chat-LM learner's recipe (`LoraLlama` under `lm::Learner`, DPO, AdamW, EMA reference).
//! Reports tokens/s of a step, counting the policy's tokens (chosen + rejected sequences of
//! prompt + response; the step also runs the reference forward and the backward).
//! Run: `cargo bench --bench train`. Env: `TRAIN_PAIRS=4` `TRAIN_PROMPT=40` `TRAIN_RESPONSE=24`
//! `TRAIN_REPS=3` `TRAIN_TARGETS=q,v` `TRAIN_RANK=8`; `TRAIN_FULL=1` trains every weight instead
//! (full fine-tuning, the recipe of `../shared/peers/torch_dpo_step.py`). The intent-game model's generation and
//! DPO/GRPO steps are in `benches/lm.rs`. Without `--bench` (`cargo test --benches`) a smoke
//! pass runs one small step on a 2-layer model.

use std::time::Instant;

use sparring_actors::chatlm::{LoraConfig, LoraLlama};
use sparring_actors::llama::{Device, LlamaConfig, LlamaModel, RopeLayout};
use sparring_actors::lm::{CausalLm, Learner, LearnerConfig, PreferenceGroup};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("train bench: {what}: {e}");
    std::process::exit(1);
}

/// One warm-up step (allocations, autotune caches), then the best of `reps` steps (s) and the last loss.
fn best_step<M: CausalLm>(
    learner: &mut Learner<M>,
    groups: &[PreferenceGroup],
    reps: usize,
) -> (f64, f32) {
    let mut best = f64::INFINITY;
    let mut last_loss = f32::NAN;
    for rep in 0..=reps {
        let t0 = Instant::now();
        let report = learner
            .preference_step(groups)
            .unwrap_or_else(|e| fail("step", e));
        let dt = t0.elapsed().as_secs_f64();
        match report {
            Some(r) => last_loss = r.loss,
            None => fail("step", "no usable pair"),
        }
        if rep > 0 || reps == 0 {
            best = best.min(dt);
        }
    }
    (best, last_loss)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a smoke pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let device = Device::flex();
    let mut cfg = LlamaConfig::smollm2_135m(RopeLayout::Interleaved);
    if quick {
        cfg.num_layers = 2;
    }
    let pairs = env_usize("TRAIN_PAIRS", if quick { 1 } else { 4 });
    let prompt_len = env_usize("TRAIN_PROMPT", if quick { 8 } else { 40 });
    let response_len = env_usize("TRAIN_RESPONSE", if quick { 8 } else { 24 });
    let reps = env_usize("TRAIN_REPS", if quick { 1 } else { 3 });
    let targets: Vec<String> = std::env::var("TRAIN_TARGETS")
        .unwrap_or_else(|_| "q,v".into())
        .split(',')
        .map(|t| t.trim().to_string())
        .collect();
    let lora_cfg = LoraConfig {
        rank: env_usize("TRAIN_RANK", 8),
        targets: targets.clone(),
        ..Default::default()
    };
    let full = std::env::var("TRAIN_FULL").is_ok_and(|v| v == "1");
    let model = LlamaModel::random(&cfg, 0, &device).unwrap_or_else(|e| fail("model", e));
    let vocab = cfg.vocab_size as u32;
    let tok = |i: usize, salt: usize| ((i * 7919 + salt * 104_729 + 11) as u32) % vocab;
    let groups: Vec<PreferenceGroup> = (0..pairs)
        .map(|g| PreferenceGroup {
            prompt: (0..prompt_len).map(|i| tok(i, g)).collect(),
            responses: (0..2)
                .map(|r| {
                    (0..response_len)
                        .map(|i| tok(i + 1000, 2 * g + r + 1))
                        .collect()
                })
                .collect(),
            rewards: vec![Some(1.0), Some(0.0)],
            later: Vec::new(),
        })
        .collect();
    let tokens = 2 * pairs * (prompt_len + response_len);
    let how = if full {
        "full fine-tuning".to_string()
    } else {
        format!(
            "LoRA r{} on {}",
            env_usize("TRAIN_RANK", 8),
            targets.join(",")
        )
    };
    println!(
        "train: SmolLM2-135M shapes ({} layers), flex backend, DPO + {how}, \
         {pairs} pairs of {prompt_len}+{response_len} tokens ({tokens} policy tokens/step)",
        cfg.num_layers,
    );
    let (best, last_loss) = if full {
        let mut learner =
            Learner::new(model, LearnerConfig::default(), 2).unwrap_or_else(|e| fail("learner", e));
        best_step(&mut learner, &groups, reps)
    } else {
        let lora = LoraLlama::new(model, lora_cfg, 1).unwrap_or_else(|e| fail("lora", e));
        let mut learner =
            Learner::new(lora, LearnerConfig::default(), 2).unwrap_or_else(|e| fail("learner", e));
        best_step(&mut learner, &groups, reps)
    };
    if !last_loss.is_finite() {
        fail("step", format!("non-finite loss {last_loss}"));
    }
    println!(
        "dpo step: {best:.3} s, {:.1} tok/s (best of {reps}; loss {last_loss:.4})",
        tokens as f64 / best
    );
}
