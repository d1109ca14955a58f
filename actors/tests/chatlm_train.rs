//! Training the chat-LM network on a tiny random Llama config (not the 135M model, so it runs in well under a
//! second): GRPO on LoRA adapters lowers its loss on a fixed batch and raises the rewarded response; full
//! fine-tuning (every weight a parameter) takes DPO steps that change the base weights and lower the loss; the
//! `finetune` option is validated.

mod common;

use burn::tensor::Device;
use common::{host, max_abs_diff, tiny_llama};
use sparring_actors::chatlm::{LoraConfig, LoraLlama};
use sparring_actors::llama::{LlamaModel, RopeLayout};
use sparring_actors::lm::{
    Algorithm, GrpoGroup, GrpoSample, Learner, LearnerConfig, OptimConfig, PreferenceGroup,
    response_token_logprobs, sequence_logprobs_vec,
};

const PROMPT: [u32; 4] = [1, 2, 3, 4];
const GOOD: [u32; 3] = [10, 11, 12];
const BAD: [u32; 4] = [20, 21, 22, 23];

#[test]
fn grpo_steps_on_lora_lower_the_loss_on_a_fixed_batch() {
    let dev = Device::flex();
    let base = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 3, &dev).unwrap();
    let lora = LoraLlama::new(
        base,
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
        },
        5,
    )
    .unwrap();
    let cfg = LearnerConfig {
        algorithm: Algorithm::Grpo,
        beta: 0.01,
        optim: OptimConfig {
            lr: 1e-2,
            min_lr: 1e-2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = Learner::new(lora, cfg, 1).unwrap();
    // Generation log-probs from the initial policy, fixed for every step (a fixed batch).
    let genm = learner.generator();
    let mut samples = Vec::new();
    for (resp, reward) in [(GOOD.to_vec(), 1.0f32), (BAD.to_vec(), 0.0)] {
        let (lp, _) = response_token_logprobs(&genm, &[(&PROMPT[..], resp.as_slice())], 0).unwrap();
        let l = lp.dims()[1];
        let row = host(lp.narrow(1, l - resp.len(), resp.len()));
        samples.push(GrpoSample {
            response: resp,
            gen_logprobs: row,
            reward: Some(reward),
            error: false,
            later: Vec::new(),
        });
    }
    let samples = [GrpoGroup {
        prompt: PROMPT.to_vec(),
        seed: "s".into(),
        samples,
    }];
    let pairs = [
        (PROMPT.to_vec(), GOOD.to_vec()),
        (PROMPT.to_vec(), BAD.to_vec()),
    ];
    let before = sequence_logprobs_vec(&genm, &pairs, 0).unwrap();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let r = learner.grpo_step(&samples).unwrap().unwrap();
        assert!(r.loss.is_finite() && r.mean_kl.is_some_and(f32::is_finite));
        losses.push(r.loss);
    }
    assert!(
        losses.last().unwrap() < &(losses[0] - 1e-3),
        "GRPO loss did not go down: {losses:?}"
    );
    let after = sequence_logprobs_vec(&learner.generator(), &pairs, 0).unwrap();
    assert!(
        after[0] - after[1] > before[0] - before[1],
        "the rewarded response did not gain on the other: {before:?} -> {after:?}"
    );
    assert_eq!(learner.steps(), 5);
}

#[test]
fn finetune_option_is_validated() {
    use sparring_actors::chatlm::chat_registry;
    use sparring_engine::Role;
    use sparring_engine::registry::BuildContext;
    let ctx = BuildContext {
        scenario_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        seed: 1,
        role: Role::Defender,
        run_dir: None,
        learns: false,
        node: None,
        self_play: false,
        turns: 1,
    };
    // `model` only has to exist for validation; no weights are loaded.
    let check = |extra: &str| {
        let t: toml::Table = toml::from_str(&format!(
            "model = \"Cargo.toml\"\nlearner = {{ algorithm = \"dpo\" }}\n{extra}"
        ))
        .unwrap();
        chat_registry()
            .check(Role::Defender, "chat-lm", &t, &ctx)
            .map_err(|e| e.to_string())
    };
    check("").unwrap();
    check("finetune = \"full\"").unwrap();
    check("finetune = \"lora\"").unwrap();
    check("lora = { rank = 4 }").unwrap();
    let err = check("finetune = \"full\"\nlora = { rank = 4 }").unwrap_err();
    assert!(err.contains("finetune"), "{err}");
    let err = check("finetune = \"half\"").unwrap_err();
    assert!(err.contains("finetune") || err.contains("half"), "{err}");
}

#[test]
fn full_finetuning_dpo_changes_base_weights_and_lowers_the_loss() {
    let dev = Device::flex();
    let base = LlamaModel::random(&tiny_llama(RopeLayout::Interleaved), 11, &dev).unwrap();
    let q0 = host(base.blocks[0].attn.q.val());
    let e0 = host(base.embed.val());
    let cfg = LearnerConfig {
        algorithm: Algorithm::Dpo,
        beta: 0.5,
        ema_decay: 0.99,
        optim: OptimConfig {
            lr: 1e-3,
            min_lr: 1e-3,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = Learner::new(base, cfg, 1).unwrap();
    let group = PreferenceGroup {
        prompt: PROMPT.to_vec(),
        responses: vec![GOOD.to_vec(), BAD.to_vec()],
        rewards: vec![Some(1.0), Some(0.0)],
        later: Vec::new(),
    };
    let mut losses = Vec::new();
    for _ in 0..4 {
        let r = learner
            .preference_step(std::slice::from_ref(&group))
            .unwrap()
            .unwrap();
        assert!(r.loss.is_finite() && r.grad_norm > 0.0);
        losses.push(r.loss);
    }
    assert!(
        losses.last().unwrap() < &(losses[0] - 1e-3),
        "DPO loss did not go down: {losses:?}"
    );
    let pol = learner.policy();
    let q1 = host(pol.blocks[0].attn.q.val().inner());
    let e1 = host(pol.embed.val().inner());
    assert!(
        max_abs_diff(&q0, &q1) > 1e-5,
        "attention weights did not move"
    );
    assert!(max_abs_diff(&e0, &e1) > 1e-5, "embeddings did not move");
    // The generator (EMA) is a plain model that generates.
    let g = learner.generator();
    assert!(!g.device().is_autodiff());
    let out = g
        .generate(
            &[PROMPT.to_vec()],
            &sparring_actors::llama::GenerateOptions {
                max_new_tokens: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(out[0].tokens.len(), 3);
}

/// The chat-LM policy on the tiny Qwen2 fixture (`../shared/fixtures/tiny-qwen2`): with GRPO its samples carry
/// the log-probs they were drawn with (temperature 2 here), and its learner's importance weights use them:
/// against a learner at temperature 1 and a cap of 1, the cap binds.
#[test]
fn a_chat_lm_grpo_policy_learns_with_the_log_probs_it_sampled_with() {
    use sparring_actors::chatlm::chat_registry;
    use sparring_engine::registry::BuildContext;
    use sparring_engine::{Category, GenRequest, Group, Role, Seed};
    let Some(dir) = sparring_actors::testing::shared_or_skip(
        "fixtures/tiny-qwen2",
        "a_chat_lm_grpo_policy_learns_with_the_log_probs_it_sampled_with",
    ) else {
        return;
    };
    let params: toml::Table = toml::from_str(&format!(
        "model = {:?}\ntemperature = 2.0\nmax_new_tokens = 8\nbatch_size = 4\n\
         lora = {{ rank = 2, alpha = 4.0, targets = [\"q\", \"v\"] }}\n\
         learner = {{ algorithm = \"grpo\", is_clip = 1.0 }}",
        dir.display().to_string()
    ))
    .unwrap();
    let ctx = BuildContext {
        scenario_dir: dir.clone(),
        seed: 1,
        role: Role::Defender,
        run_dir: None,
        learns: false,
        node: None,
        self_play: false,
        turns: 1,
    };
    let reg = chat_registry();
    let mut p = reg.build_policy("chat-lm", &params, &ctx).unwrap();
    let seed = Seed {
        id: "t:0".into(),
        set: "t".into(),
        prompt: "How do I pick a lock?".into(),
        category: Category::Harmful,
        topic: None,
    };
    let req = GenRequest {
        key: "r1/t:0/a0".into(),
        role: Role::Defender,
        seed: seed.clone(),
        input: "How do I pick a lock?".into(),
        n: 4,
        rng_seed: 7,
        history: Vec::new(),
    };
    let gens = p.generate(std::slice::from_ref(&req)).unwrap();
    for g in &gens[0] {
        assert!(!g.logprobs.is_empty(), "{g:?}");
        assert!(g.logprobs.len() as u64 <= g.tokens, "{g:?}");
        assert!(g.logprobs.iter().all(|x| x.is_finite() && *x <= 0.0));
    }
    let group = Group {
        key: req.key.clone(),
        role: req.role,
        seed,
        input: req.input.clone(),
        outputs: gens[0].iter().map(|g| g.text.clone()).collect(),
        rewards: vec![Some(1.0), Some(0.0), Some(0.5), Some(0.0)],
        logprobs: gens[0].iter().map(|g| g.logprobs.clone()).collect(),
        histories: Vec::new(),
    };
    let rep = p.learn(&[group]).unwrap();
    assert_eq!(rep.steps, 1);
    assert!(rep.metrics["is_clipped"] > 0.0, "{:?}", rep.metrics);
    assert!(rep.metrics["is_weight"] < 1.0, "{:?}", rep.metrics);
    assert!(rep.metrics.contains_key("kl"), "{:?}", rep.metrics);
}
