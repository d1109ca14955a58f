//! Tests of the learners: hand-computed losses, EMA math, training lowers the loss, GRPO moves
//! log-probs the right way, and checkpoints resume bit-identically.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::flat;
use sparring_actors::lm::batch::to_vec_f32;
use sparring_actors::lm::*;

fn t1(v: &[f32], d: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), d)
}
fn t2(v: &[f32], b: usize, d: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [b, v.len() / b]), d)
}
fn scalar(t: Tensor<1>) -> f32 {
    to_vec_f32(t).unwrap()[0]
}

#[test]
fn dpo_and_ipo_equal_hand_computed_values() {
    let d = Device::flex();
    let (pw, pl, rw, rl) = ([-1.0, -3.0], [-2.0, -1.0], [-1.5, -2.0], [-1.5, -2.0]);
    // margins: 1.0 and -2.0; β = 0.5
    let dpo = scalar(dpo_loss(
        t1(&pw, &d),
        t1(&pl, &d),
        t1(&rw, &d),
        t1(&rl, &d),
        0.5,
    ));
    let want = ((1.0 + (-0.5f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln()) / 2.0;
    assert!((dpo as f64 - want).abs() < 1e-6, "{dpo} vs {want}");
    let ipo = scalar(ipo_loss(
        t1(&pw, &d),
        t1(&pl, &d),
        t1(&rw, &d),
        t1(&rl, &d),
        0.5,
    ));
    assert!((ipo - 4.5).abs() < 1e-6, "{ipo}"); // ((1-1)^2 + (-2-1)^2) / 2
}

#[test]
fn grpo_loss_and_gradient_equal_hand_computed_values() {
    let d = Device::flex().autodiff();
    // row 0: two response tokens; row 1: fully masked (e.g. padding only) → excluded.
    let logp = t2(&[-1.0, -2.0, -0.5, -0.5], 2, &d).require_grad();
    let gen_lp = t2(&[-1.5, -2.0, -0.5, -0.5], 2, &d);
    let ref_lp = t2(&[-1.0, -1.0, -0.5, -0.5], 2, &d);
    let mask = t2(&[1.0, 1.0, 0.0, 0.0], 2, &d);
    let adv = t1(&[0.5, 3.0], &d);
    let loss = grpo_loss(logp.clone(), gen_lp, ref_lp, mask, adv, 0.1, 1.2);
    // token 0: min(e^0.5, 1.2) * 0.5 = 0.6, k3 = 0; token 1: 1 * 0.5 - 0.1 * (e - 2)
    let e = std::f64::consts::E;
    let want = -(0.6 + 0.5 - 0.1 * (e - 2.0)) / 2.0;
    let v = scalar(loss.clone());
    assert!((v as f64 - want).abs() < 1e-6, "{v} vs {want}");
    let grads = loss.backward();
    let g = to_vec_f32(logp.grad(&grads).unwrap()).unwrap();
    // d/dlogp: token 0: -(1.2*0.5)/2; token 1: -(0.5 + 0.1*(e-1))/2; masked row: 0
    let want_g = [-0.3, -(0.5 + 0.1 * (e - 1.0)) / 2.0, 0.0, 0.0];
    for (a, b) in g.iter().zip(want_g) {
        assert!((*a as f64 - b).abs() < 1e-6, "{g:?}");
    }
    assert_eq!(
        grpo_advantages(&[Some(1.0), Some(-1.0), Some(-1.0), None]),
        vec![4.0 / 3.0, -2.0 / 3.0, -2.0 / 3.0, 0.0]
    );
}

fn tiny(seed: u64) -> TransformerLm {
    let mut cfg = TransformerConfig::new(12, 16, 1, 2, 32, 16);
    cfg.init_std = 0.2;
    cfg.init(seed, &Device::flex()).unwrap()
}

#[test]
fn ema_update_math() {
    let e0 = tiny(1);
    let p = tiny(2);
    let (a, b) = (flat(&e0), flat(&p));
    let e1 = ema_update(e0, &p, 0.95);
    for ((x, y), z) in a.iter().zip(&b).zip(flat(&e1)) {
        assert!((0.95 * x + 0.05 * y - z).abs() < 1e-6);
    }
}

fn groups() -> Vec<PreferenceGroup> {
    vec![
        PreferenceGroup {
            prompt: vec![1, 2, 3],
            responses: vec![vec![4, 5], vec![6, 7, 8], vec![9]],
            rewards: vec![Some(1.0), Some(-1.0), None],
            later: Vec::new(),
        },
        PreferenceGroup {
            prompt: vec![2],
            responses: vec![vec![3, 3], vec![5, 11]],
            rewards: vec![Some(0.0), Some(0.5)],
            later: Vec::new(),
        },
        // tie: skipped
        PreferenceGroup {
            prompt: vec![7],
            responses: vec![vec![1], vec![2]],
            rewards: vec![Some(0.2), Some(0.2)],
            later: Vec::new(),
        },
    ]
}

fn learner(algorithm: Algorithm, seed: u64) -> Learner<TransformerLm> {
    learner_with(algorithm, seed, None)
}

fn learner_with(
    algorithm: Algorithm,
    seed: u64,
    micro_batch: Option<usize>,
) -> Learner<TransformerLm> {
    let cfg = LearnerConfig {
        algorithm,
        micro_batch,
        optim: OptimConfig {
            lr: 1e-2,
            min_lr: 1e-3,
            total_steps: 20,
            ..Default::default()
        },
        ..Default::default()
    };
    Learner::new(tiny(seed), cfg, 9).unwrap()
}

#[test]
fn dpo_and_ipo_steps_lower_the_loss_and_update_the_ema() {
    for algo in [Algorithm::Dpo, Algorithm::Ipo] {
        let mut l = learner(algo, 3);
        let mut losses = Vec::new();
        for _ in 0..6 {
            let ema_before = flat(l.ema().unwrap());
            let r = l.preference_step(&groups()).unwrap().unwrap();
            assert_eq!(r.examples, 2);
            assert!(r.grad_norm > 0.0);
            // θ_ema ← 0.95 θ_ema + 0.05 θ (θ after the step)
            let pol = flat(l.policy());
            for ((e0, p), e1) in ema_before.iter().zip(&pol).zip(flat(l.ema().unwrap())) {
                assert!((0.95 * e0 + 0.05 * p - e1).abs() < 1e-6);
            }
            losses.push(r.loss);
        }
        assert!(losses[5] < losses[0], "{algo:?}: {losses:?}");
        assert_eq!(l.steps(), 6);
        // nothing usable → no step
        let none = l
            .preference_step(&[PreferenceGroup {
                prompt: vec![1],
                responses: vec![vec![2]],
                rewards: vec![Some(1.0)],
                later: Vec::new(),
            }])
            .unwrap();
        assert!(none.is_none());
        assert!(l.grpo_step(&[]).is_err());
    }
}

/// `micro_batch = 1`: one pair (DPO, IPO) or sample (GRPO) per forward/backward pass, gradients summed — the same
/// steps (loss, KL, gradient norm, importance weights; over three steps) as one pass, up to float rounding; 0 is
/// refused.
#[test]
fn micro_batched_steps_equal_one_pass() {
    for algo in [Algorithm::Dpo, Algorithm::Ipo] {
        let mut whole = learner(algo, 5);
        let mut micro = learner_with(algo, 5, Some(1));
        for step in 0..3 {
            let a = whole.preference_step(&groups()).unwrap().unwrap();
            let b = micro.preference_step(&groups()).unwrap().unwrap();
            assert_eq!(a.examples, 2);
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * x.abs().max(1.0);
            assert!(
                close(a.loss, b.loss),
                "{algo:?} step {step}: {a:?} vs {b:?}"
            );
            assert!(close(a.grad_norm, b.grad_norm), "{a:?} vs {b:?}");
            // (Reward accuracy compares margins with 0: at the first step they are rounding noise.)
            assert!(
                close(a.mean_kl.unwrap(), b.mean_kl.unwrap()),
                "{a:?} vs {b:?}"
            );
            // (The weights are not compared: Adam's first steps are nearly sign(g)·lr, so rounding noise in a
            // near-zero gradient moves a weight by up to 2·lr; the next steps' losses and norms show the updates.)
            assert!(step > 0 || a.grad_norm > 0.0);
        }
    }
    // GRPO: one sample per pass.
    let mut whole = learner(Algorithm::Grpo, 5);
    let mut micro = learner_with(Algorithm::Grpo, 5, Some(1));
    for step in 0..3 {
        let a = whole.grpo_step(&grpo_samples()).unwrap().unwrap();
        let b = micro.grpo_step(&grpo_samples()).unwrap().unwrap();
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * x.abs().max(1.0);
        assert_eq!(a.examples, b.examples);
        for (x, y) in [
            (a.loss, b.loss),
            (a.grad_norm, b.grad_norm),
            (a.mean_kl.unwrap(), b.mean_kl.unwrap()),
            (a.is_weight.unwrap(), b.is_weight.unwrap()),
            (a.is_clipped.unwrap(), b.is_clipped.unwrap()),
        ] {
            assert!(close(x, y), "grpo step {step}: {a:?} vs {b:?}");
        }
        assert!(a.grad_norm > 0.0);
    }
    let cfg = LearnerConfig {
        micro_batch: Some(0),
        ..Default::default()
    };
    let e = Learner::new(tiny(1), cfg, 1).err().unwrap().to_string();
    assert!(e.contains("micro_batch"), "{e}");
}

fn grpo_samples() -> Vec<GrpoGroup> {
    let s = |response: Vec<u32>, reward: Option<f32>, error: bool| GrpoSample {
        gen_logprobs: vec![-2.5; response.len()],
        response,
        reward,
        error,
        later: Vec::new(),
    };
    vec![GrpoGroup {
        prompt: vec![1, 2],
        seed: "s".into(),
        samples: vec![
            s(vec![4, 5], Some(1.0), false),
            s(vec![6, 7], Some(-0.5), false),
            s(vec![8], Some(-1.0), true), // error: shifts the mean, no loss
            s(vec![9], None, false),      // missing: ignored
        ],
    }]
}

#[test]
fn grpo_raises_good_and_lowers_bad_responses() {
    let mut l = learner(Algorithm::Grpo, 4);
    let lp = |l: &Learner<TransformerLm>| {
        sequence_logprobs_vec(
            &l.generator(),
            &[
                (vec![1u32, 2], vec![4u32, 5]),
                (vec![1u32, 2], vec![6u32, 7]),
            ],
            0,
        )
        .unwrap()
    };
    let before = lp(&l);
    let init_ref = flat(l.reference());
    for _ in 0..5 {
        let r = l.grpo_step(&grpo_samples()).unwrap().unwrap();
        assert_eq!(r.examples, 2);
        assert!(r.mean_kl.unwrap() >= 0.0);
    }
    let after = lp(&l);
    assert!(
        after[0] > before[0] && after[1] < before[1],
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        flat(l.reference()),
        init_ref,
        "GRPO reference must stay frozen"
    );
    let mut only_errors = grpo_samples();
    only_errors[0].samples = vec![only_errors[0].samples[2].clone()];
    assert!(l.grpo_step(&only_errors).unwrap().is_none());
}

#[test]
fn checkpoint_resumes_bit_identically() {
    for algo in [Algorithm::Dpo, Algorithm::Grpo] {
        let step = |l: &mut Learner<TransformerLm>| match algo {
            Algorithm::Grpo => l.grpo_step(&grpo_samples()).unwrap().unwrap(),
            _ => l.preference_step(&groups()).unwrap().unwrap(),
        };
        let mut a = learner(algo, 5);
        step(&mut a);
        step(&mut a);
        a.rng.next_u64();
        let bytes = a.checkpoint().unwrap().to_bytes();
        let ra = [step(&mut a), step(&mut a)];

        let mut b = learner(algo, 6); // different init: everything must come from the checkpoint
        b.restore(&Checkpoint::from_bytes(&bytes, "mem").unwrap())
            .unwrap();
        assert_eq!(b.rng, a.rng); // steps draw nothing from it
        let rb = [step(&mut b), step(&mut b)];
        assert_eq!(ra, rb);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(flat(a.policy())), bits(flat(b.policy())));
        assert_eq!(bits(flat(a.reference())), bits(flat(b.reference())));
        assert_eq!(a.steps(), b.steps());
        // file round trip + a mismatching model is rejected with the tensor name
        let dir = std::env::temp_dir().join(format!("sparring-lm-ck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ckpt");
        a.checkpoint().unwrap().save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back, a.checkpoint().unwrap());
        let mut other_cfg = TransformerConfig::new(12, 8, 1, 2, 32, 16);
        other_cfg.init_std = 0.2;
        let mut c = Learner::new(
            other_cfg.init(0, &Device::flex()).unwrap(),
            a.config().clone(),
            0,
        )
        .unwrap();
        let e = c.restore(&back).unwrap_err().to_string();
        assert!(e.contains("shape"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn sft_warm_start_then_reset_reference_in_a_model_thread() {
    let t = ModelThread::spawn("learner", || Ok(learner(Algorithm::Dpo, 8))).unwrap();
    let data = vec![(vec![1u32, 2], vec![3u32, 4]), (vec![5u32], vec![6u32])];
    let d2 = data.clone();
    let first = t
        .call(move |l: &mut Learner<TransformerLm>| l.sft_step(&d2))
        .unwrap()
        .unwrap();
    let mut last = first.clone();
    for _ in 0..8 {
        let d2 = data.clone();
        last = t.call(move |l| l.sft_step(&d2)).unwrap().unwrap();
    }
    assert!(last.loss < first.loss, "{} -> {}", first.loss, last.loss);
    let (same, steps) = t
        .call(|l| {
            l.reset_reference()?;
            Ok((flat(l.ema().unwrap()) == flat(l.policy()), l.steps()))
        })
        .unwrap();
    assert!(same);
    assert_eq!(steps, 0);
    t.shutdown();
}

fn close(got: &[Vec<f32>], want: &[Vec<f64>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| (*a as f64 - b).abs() < 1e-6)
        })
}

#[test]
fn grpo_advantages_subtract_each_groups_own_mean_or_the_seeds_or_the_batchs() {
    // Two groups of one seed with different means (one with a missing reward), a third of another.
    let groups = vec![
        ("s1", vec![Some(1.0), Some(0.5)]),
        ("s1", vec![Some(0.0), None, Some(0.2)]),
        ("s2", vec![Some(-1.0), Some(-0.6)]),
    ];
    let group = grpo_group_advantages(&groups, Baseline::Group);
    assert!(
        close(
            &group,
            &[vec![0.25, -0.25], vec![-0.1, 0.0, 0.1], vec![-0.2, 0.2]]
        ),
        "{group:?}"
    );
    assert_eq!(LearnerConfig::default().baseline, Baseline::Group);
    let seed = grpo_group_advantages(&groups, Baseline::Seed);
    let m1 = (1.0 + 0.5 + 0.0 + 0.2) / 4.0;
    assert!(
        close(
            &seed,
            &[
                vec![1.0 - m1, 0.5 - m1],
                vec![-m1, 0.0, 0.2 - m1],
                vec![-0.2, 0.2]
            ]
        ),
        "{seed:?}"
    );
    let batch = grpo_group_advantages(&groups, Baseline::Batch);
    let m = (1.0 + 0.5 + 0.0 + 0.2 - 1.0 - 0.6) / 6.0;
    assert!(
        close(
            &batch,
            &[
                vec![1.0 - m, 0.5 - m],
                vec![-m, 0.0, 0.2 - m],
                vec![-1.0 - m, -0.6 - m]
            ]
        ),
        "{batch:?}"
    );
}

/// A GRPO learner with `baseline` and cap `is_clip`.
fn grpo_learner(baseline: Baseline, is_clip: f64) -> Learner<TransformerLm> {
    let cfg = LearnerConfig {
        algorithm: Algorithm::Grpo,
        baseline,
        is_clip,
        ..Default::default()
    };
    Learner::new(tiny(4), cfg, 9).unwrap()
}

fn sample(response: Vec<u32>, gen_logprobs: Vec<f32>, reward: f32, error: bool) -> GrpoSample {
    GrpoSample {
        response,
        gen_logprobs,
        reward: Some(reward),
        error,
        later: Vec::new(),
    }
}

#[test]
fn a_grpo_step_takes_its_baseline_per_group() {
    // Group a: rewards 1 and an error sample's 0.5 (in the mean, no loss); group b: a lone 0. At the first
    // step the policy is the reference (k3 = 0) and, without sampled log-probs, every weight is 1, so the loss
    // is minus the mean advantage of the two loss-carrying samples.
    let groups = || {
        vec![
            GrpoGroup {
                prompt: vec![1, 2],
                seed: "a".into(),
                samples: vec![
                    sample(vec![4, 5], vec![], 1.0, false),
                    sample(vec![6], vec![], 0.5, true),
                ],
            },
            GrpoGroup {
                prompt: vec![3],
                seed: "b".into(),
                samples: vec![sample(vec![7, 8], vec![], 0.0, false)],
            },
        ]
    };
    let mut l = grpo_learner(Baseline::Group, 2.0);
    let r = l.grpo_step(&groups()).unwrap().unwrap();
    // per group: a's mean 0.75 → +0.25; b's mean 0 → 0
    assert!((r.loss - (-0.125)).abs() < 1e-5, "{}", r.loss);
    let mut l = grpo_learner(Baseline::Batch, 2.0);
    let r = l.grpo_step(&groups()).unwrap().unwrap();
    // over the batch: mean 0.5 → +0.5 and −0.5
    assert!(r.loss.abs() < 1e-5, "{}", r.loss);
}

#[test]
fn grpo_importance_weights_compare_with_the_sampled_log_probs_and_the_cap_binds() {
    let c = 1.5;
    let l = grpo_learner(Baseline::Group, c);
    let prompt = vec![1u32, 2];
    let (r0, r1) = (vec![4u32, 5], vec![6u32, 7]);
    // The policy's own per-token log-probs of both responses.
    let (lp, _) = response_token_logprobs(
        &l.generator(),
        &[(&prompt[..], &r0[..]), (&prompt[..], &r1[..])],
        0,
    )
    .unwrap();
    let t = lp.dims()[1];
    let lp = to_vec_f32(lp).unwrap();
    let own = |row: usize| lp[row * t + t - 2..(row + 1) * t].to_vec();
    let shift = |v: Vec<f32>, d: f32| v.into_iter().map(|x| x + d).collect::<Vec<_>>();
    // Each case on a fresh learner (the same initial weights).
    let step = |g0: Vec<f32>, g1: Vec<f32>| {
        let group = GrpoGroup {
            prompt: prompt.clone(),
            seed: "s".into(),
            samples: vec![
                sample(r0.clone(), g0, 1.0, false),
                sample(r1.clone(), g1, 0.0, false),
            ],
        };
        grpo_learner(Baseline::Group, c)
            .grpo_step(&[group])
            .unwrap()
            .unwrap()
    };
    // Advantages ±0.5. Sample 0 was drawn where it was 5 nats less likely than under the policy (e.g. a hot
    // temperature): exp(5) is capped at c on both tokens; sample 1 by the policy itself: weight 1.
    let r = step(shift(own(0), -5.0), own(1));
    let want = -(0.5 * c - 0.5) / 2.0;
    assert!((r.loss as f64 - want).abs() < 1e-4, "{} vs {want}", r.loss);
    assert_eq!(r.is_clipped, Some(0.5));
    assert!((r.is_weight.unwrap() as f64 - (2.0 * c + 2.0) / 4.0).abs() < 1e-4);
    // Drawn where it was more likely (a cold temperature, a nucleus): weight e^-0.2 < 1, no cap.
    let r = step(shift(own(0), 0.2), own(1));
    let want = -(0.5 * (-0.2f64).exp() - 0.5) / 2.0;
    assert!((r.loss as f64 - want).abs() < 1e-4, "{} vs {want}", r.loss);
    assert_eq!(r.is_clipped, Some(0.0));
    // Only the first token's log-prob known (an end token appended after a stop string): the second
    // token gets weight 1.
    let first = vec![own(0)[0] - 5.0];
    let r = step(first, own(1));
    let want = -(0.5 * (c + 1.0) / 2.0 - 0.5) / 2.0;
    assert!((r.loss as f64 - want).abs() < 1e-4, "{} vs {want}", r.loss);
    assert_eq!(r.is_clipped, Some(0.25));
}

#[test]
fn dpo_and_ipo_steps_report_the_kl_to_the_reference() {
    for algo in [Algorithm::Dpo, Algorithm::Ipo] {
        let mut l = learner(algo, 3);
        // The first step's policy is its reference (the EMA copy): KL 0.
        let first = l.preference_step(&groups()).unwrap().unwrap();
        assert!(first.mean_kl.is_some_and(|k| k.abs() < 1e-6), "{algo:?}");
        let later = l.preference_step(&groups()).unwrap().unwrap();
        let kl = later.mean_kl.unwrap();
        assert!(kl > 0.0 && kl.is_finite(), "{algo:?}: {kl}");
        assert_eq!(later.metrics()["kl"], kl as f64);
    }
}

/// Trajectory-level learning (a multi-turn game's conversations): a response's later turns share its reward.
/// DPO and GRPO raise the chosen conversation's later turn and lower the rejected one's, each in its own
/// context; a single-turn step on the same first turns leaves those later turns where the first turns' own
/// update takes them (a control: the later turns are what moves them).
#[test]
fn trajectories_learn_their_later_turns() {
    let seg = |prompt: Vec<u32>, response: Vec<u32>| Segment {
        gen_logprobs: vec![-2.5; response.len()],
        prompt,
        response,
    };
    // Two conversations of one seed: first turns [4] and [6]; the chosen one's second turn is [9, 10] after
    // [1, 2, 4, 3], the rejected one's [9, 10] after [1, 2, 6, 3].
    let later = vec![
        vec![seg(vec![1, 2, 4, 3], vec![9, 10])],
        vec![seg(vec![1, 2, 6, 3], vec![9, 10])],
    ];
    let second = |l: &Learner<TransformerLm>| {
        sequence_logprobs_vec(
            &l.policy().clone(),
            &[
                (vec![1u32, 2, 4, 3], vec![9u32, 10]),
                (vec![1u32, 2, 6, 3], vec![9u32, 10]),
            ],
            0,
        )
        .unwrap()
    };
    let gap = |lp: Vec<f32>| lp[0] - lp[1];
    let preference = |later: Vec<Vec<Segment>>| {
        vec![PreferenceGroup {
            prompt: vec![1, 2],
            responses: vec![vec![4], vec![6]],
            rewards: vec![Some(1.0), Some(-1.0)],
            later,
        }]
    };
    let grpo = |later: Vec<Vec<Segment>>| {
        let mut later = later.into_iter();
        let samples = [(vec![4], 1.0), (vec![6], -1.0)]
            .into_iter()
            .map(|(response, reward): (Vec<u32>, f32)| GrpoSample {
                gen_logprobs: vec![-2.5],
                response,
                reward: Some(reward),
                error: false,
                later: later.next().unwrap_or_default(),
            })
            .collect();
        vec![GrpoGroup {
            prompt: vec![1, 2],
            seed: "s".into(),
            samples,
        }]
    };
    for algo in [Algorithm::Dpo, Algorithm::Grpo] {
        let step = |later: Vec<Vec<Segment>>| {
            let mut l = learner(algo, 5);
            let before = gap(second(&l));
            for _ in 0..5 {
                let r = match algo {
                    Algorithm::Grpo => l.grpo_step(&grpo(later.clone())),
                    _ => l.preference_step(&preference(later.clone())),
                };
                assert!(r.unwrap().is_some());
            }
            gap(second(&l)) - before
        };
        let (with, without) = (step(later.clone()), step(Vec::new()));
        assert!(
            with > 0.5 && with > without + 0.5,
            "{algo:?}: the chosen later turn gained {with} over the rejected (single-turn steps: {without})"
        );
    }
    // A trajectory per response, or none.
    let mut l = learner(Algorithm::Dpo, 5);
    let mut bad = preference(later);
    bad[0].later.pop();
    assert!(l.preference_step(&bad).is_err());
}
