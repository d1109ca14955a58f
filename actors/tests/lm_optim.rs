//! Tests of the optimizer against hand-computed values: AdamW's bias correction and decoupled
//! weight decay (rank ≥ 2 only), the warmup + cosine schedule and its floor, clipping by the
//! global gradient norm, and resuming from host copies of the moments.
//!
//! Expected numbers come from plain f64 arithmetic in this file, never from the optimizer.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use sparring_actors::lm::batch::to_vec_f32;
use sparring_actors::lm::optim::OptimStats;
use sparring_actors::lm::params::flat_params;
use sparring_actors::lm::*;

/// A 2×2 matrix (decayed), a bias vector (not decayed) and a matrix the loss never touches
/// (no gradient, like a frozen base weight under LoRA).
#[derive(Module, Debug)]
struct Tiny {
    w: Param<Tensor<2>>,
    b: Param<Tensor<1>>,
    frozen: Param<Tensor<2>>,
}

const W0: [f64; 4] = [1.0, -2.0, 0.5, 3.0];
const B0: [f64; 2] = [1.0, -1.0];
const F0: [f64; 4] = [0.25, -0.75, 2.0, -4.0];

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn tiny(d: &Device) -> Tiny {
    let m = |v: &[f64]| Tensor::<2>::from_data(TensorData::new(f32s(v), [2, 2]), d);
    Tiny {
        w: Param::from_tensor(m(&W0).require_grad()),
        b: Param::from_tensor(
            Tensor::<1>::from_data(TensorData::new(f32s(&B0), [2]), d).require_grad(),
        ),
        frozen: Param::from_tensor(m(&F0)),
    }
}

/// Gradients of `Σ w⊙gw + Σ b⊙gb`, i.e. exactly `gw` for `w`, `gb` for `b`, none for `frozen`.
fn step(opt: &mut AdamW, model: Tiny, gw: &[f64], gb: &[f64]) -> (Tiny, OptimStats) {
    let d = model.w.val().device();
    let cw = Tensor::<2>::from_data(TensorData::new(f32s(gw), [2, 2]), &d);
    let cb = Tensor::<1>::from_data(TensorData::new(f32s(gb), [2]), &d);
    let loss = (model.w.val() * cw).sum() + (model.b.val() * cb).sum();
    let grads = loss.backward();
    opt.step(model, &grads).unwrap()
}

/// Host values of the parameters in visit order (w, b, frozen).
fn values(model: &Tiny) -> Vec<Vec<f64>> {
    flat_params(model).into_iter().map(host).collect::<Vec<_>>()
}

fn host(t: Tensor<1>) -> Vec<f64> {
    to_vec_f32(t).unwrap().into_iter().map(f64::from).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

/// Textbook AdamW on one tensor in f64 (Loshchilov & Hutter, PyTorch's `AdamW`):
/// θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε), m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ).
#[allow(clippy::too_many_arguments)]
fn adamw_ref(
    p: &mut [f64],
    m: &mut [f64],
    v: &mut [f64],
    g: &[f64],
    t: i32,
    lr: f64,
    (b1, b2, eps, wd): (f64, f64, f64, f64),
) {
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let mh = m[i] / (1.0 - b1.powi(t));
        let vh = v[i] / (1.0 - b2.powi(t));
        p[i] = p[i] * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + eps);
    }
}

const LR: f64 = 0.1;
const B1: f64 = 0.8;
const B2: f64 = 0.9;
const EPS: f64 = 1e-3;
const WD: f64 = 0.5;

/// Constant lr (min_lr = lr), no clipping, non-default β/ε and a large weight decay.
fn adam_cfg() -> OptimConfig {
    OptimConfig {
        lr: LR,
        min_lr: LR,
        warmup_steps: 0,
        total_steps: 10,
        beta1: B1,
        beta2: B2,
        eps: EPS,
        weight_decay: WD,
        grad_clip: None,
    }
}

// Step 1 and step 2 gradients; w's has a zero entry (update 0/(0+ε) = 0, decay only).
const GW1: [f64; 4] = [0.5, -0.25, 2.0, 0.0];
const GB1: [f64; 2] = [0.3, -4.0];
const GW2: [f64; 4] = [-1.0, 0.5, 1.0, 0.1];
const GB2: [f64; 2] = [0.1, 2.0];

#[test]
fn adamw_first_step_is_bias_corrected_with_decoupled_decay() {
    let d = Device::flex().autodiff();
    let mut opt = AdamW::new(adam_cfg()).unwrap();
    let (model, stats) = step(&mut opt, tiny(&d), &GW1, &GB1);
    assert_eq!(opt.step, 1);
    assert_eq!(stats.lr, LR);

    // Step 1 with bias correction: m̂ = g, v̂ = g², so the Adam update is lr·g/(|g| + ε), and
    // the decay multiplies θ by (1 − lr·wd) on its own (rank-2 `w` only).
    let want_w: Vec<f64> = (0..4)
        .map(|i| W0[i] * (1.0 - LR * WD) - LR * GW1[i] / (GW1[i].abs() + EPS))
        .collect();
    let want_b: Vec<f64> = (0..2)
        .map(|i| B0[i] - LR * GB1[i] / (GB1[i].abs() + EPS))
        .collect();
    let got = values(&model);
    assert_close(&got[0], &want_w, 2e-6, "w after step 1");
    assert_close(&got[1], &want_b, 2e-6, "b after step 1 (rank 1: no decay)");
    assert_close(&got[2], &F0, 0.0, "frozen (no gradient): untouched");
    // Hand values of the first entries, for the reader: 1·0.95 − 0.1·0.5/0.501, −1 + 0.1·4/4.001.
    assert!((want_w[0] - 0.850_199_600_798).abs() < 1e-9);
    assert!((want_b[1] + 0.900_024_993_752).abs() < 1e-9);

    // The moments (what checkpoints store): m = (1−β1)·g, v = (1−β2)·g², zeros for `frozen`.
    let m: Vec<Vec<f64>> = opt.m.iter().cloned().map(host).collect();
    let v: Vec<Vec<f64>> = opt.v.iter().cloned().map(host).collect();
    assert_eq!((m.len(), v.len()), (3, 3));
    let sq = |g: &[f64], k: f64| g.iter().map(|x| k * x * x).collect::<Vec<_>>();
    let lin = |g: &[f64], k: f64| g.iter().map(|x| k * x).collect::<Vec<_>>();
    assert_close(&m[0], &lin(&GW1, 1.0 - B1), 1e-7, "m[w]");
    assert_close(&m[1], &lin(&GB1, 1.0 - B1), 1e-7, "m[b]");
    assert_close(&m[2], &[0.0; 4], 0.0, "m[frozen]");
    assert_close(&v[0], &sq(&GW1, 1.0 - B2), 1e-7, "v[w]");
    assert_close(&v[1], &sq(&GB1, 1.0 - B2), 1e-6, "v[b]");
    assert_close(&v[2], &[0.0; 4], 0.0, "v[frozen]");

    // The data tells the variants apart: without bias correction the step is
    // lr·(1−β1)g/(√(1−β2)|g| + ε) (≈ 0.63 of it), and L2 coupled into the gradient
    // (g + wd·θ through Adam) moves w elsewhere.
    let no_bc =
        W0[0] * (1.0 - LR * WD) - LR * (1.0 - B1) * GW1[0] / ((1.0 - B2).sqrt() * 0.5 + EPS);
    assert!((no_bc - want_w[0]).abs() > 1e-2);
    let coupled: Vec<f64> = (0..4)
        .map(|i| {
            let g = GW1[i] + WD * W0[i];
            W0[i] - LR * g / (g.abs() + EPS)
        })
        .collect();
    assert!(
        coupled
            .iter()
            .zip(&want_w)
            .any(|(c, w)| (c - w).abs() > 1e-2)
    );
}

#[test]
fn adamw_two_steps_equal_the_textbook_update() {
    let d = Device::flex().autodiff();
    let mut opt = AdamW::new(adam_cfg()).unwrap();
    let (model, _) = step(&mut opt, tiny(&d), &GW1, &GB1);
    let (model, stats) = step(&mut opt, model, &GW2, &GB2);
    assert_eq!(opt.step, 2);
    assert_eq!(stats.lr, LR);

    let (mut w, mut mw, mut vw) = (W0.to_vec(), vec![0.0; 4], vec![0.0; 4]);
    let (mut b, mut mb, mut vb) = (B0.to_vec(), vec![0.0; 2], vec![0.0; 2]);
    let hp_w = (B1, B2, EPS, WD);
    let hp_b = (B1, B2, EPS, 0.0);
    adamw_ref(&mut w, &mut mw, &mut vw, &GW1, 1, LR, hp_w);
    adamw_ref(&mut b, &mut mb, &mut vb, &GB1, 1, LR, hp_b);
    adamw_ref(&mut w, &mut mw, &mut vw, &GW2, 2, LR, hp_w);
    adamw_ref(&mut b, &mut mb, &mut vb, &GB2, 2, LR, hp_b);

    let got = values(&model);
    assert_close(&got[0], &w, 4e-6, "w after step 2");
    assert_close(&got[1], &b, 4e-6, "b after step 2");
    assert_close(&got[2], &F0, 0.0, "frozen after step 2");
    assert_close(&host(opt.m[0].clone()), &mw, 1e-6, "m[w] after step 2");
    assert_close(&host(opt.v[1].clone()), &vb, 1e-5, "v[b] after step 2");
}

#[test]
fn adamw_resumes_exactly_from_host_copies_of_its_state() {
    let d = Device::flex().autodiff();
    let mut opt = AdamW::new(adam_cfg()).unwrap();
    let (model, _) = step(&mut opt, tiny(&d), &GW1, &GB1);
    // What a checkpoint keeps: the step and the moments as host vectors.
    let to_host = |ts: &[Tensor<1>]| -> Vec<Vec<f32>> {
        ts.iter().map(|t| to_vec_f32(t.clone()).unwrap()).collect()
    };
    let (hm, hv) = (to_host(&opt.m), to_host(&opt.v));
    let plain = Device::flex();
    let back = |hs: Vec<Vec<f32>>| -> Vec<Tensor<1>> {
        hs.into_iter()
            .map(|h| {
                let n = h.len();
                Tensor::from_data(TensorData::new(h, [n]), &plain)
            })
            .collect()
    };
    let mut resumed = AdamW::new(adam_cfg()).unwrap();
    resumed.step = opt.step;
    resumed.m = back(hm);
    resumed.v = back(hv);
    let twin = model.clone();

    let (a, _) = step(&mut opt, model, &GW2, &GB2);
    let (b, _) = step(&mut resumed, twin, &GW2, &GB2);
    assert_eq!(values(&a), values(&b));
}

#[test]
fn cosine_schedule_warms_up_decays_and_holds_its_floor() {
    let cfg = OptimConfig {
        lr: 1.0,
        min_lr: 0.1,
        warmup_steps: 4,
        total_steps: 14,
        ..Default::default()
    };
    // Warmup: step i gets lr·(i+1)/4.
    for (i, want) in [0.25, 0.5, 0.75, 1.0].into_iter().enumerate() {
        assert!(
            (lr_at(&cfg, i as u64) - want).abs() < 1e-15,
            "warmup step {i}"
        );
    }
    // Cosine over steps 4..14 (span 10): the peak, a quarter (cos π/4 = √½), the midpoint, 3/4.
    let h = 0.5f64.sqrt();
    for (s, want) in [
        (4, 1.0),
        (6, 0.1 + 0.45 * (1.0 + 0.809_016_994_374_947_5)), // cos(π/5)
        (9, 0.55),
        (13, 0.1 + 0.45 * (1.0 - 0.951_056_516_295_153_5)), // cos(9π/10)
    ] {
        assert!((lr_at(&cfg, s) - want).abs() < 1e-12, "step {s}");
    }
    let quarter = OptimConfig {
        warmup_steps: 0,
        total_steps: 8,
        ..cfg.clone()
    };
    assert!((lr_at(&quarter, 2) - (0.1 + 0.45 * (1.0 + h))).abs() < 1e-12);
    assert!((lr_at(&quarter, 6) - (0.1 + 0.45 * (1.0 - h))).abs() < 1e-12);
    // The floor: exactly min_lr at total_steps and forever after (no cosine rise).
    assert!(lr_at(&cfg, 13) > 0.1);
    for s in [14, 15, 20, 24, 1000, u64::MAX] {
        assert_eq!(lr_at(&cfg, s), 0.1, "step {s}");
    }
    // Non-increasing after the warmup.
    for s in 4..40 {
        assert!(lr_at(&cfg, s + 1) <= lr_at(&cfg, s), "step {s}");
    }
    // A zero floor is exact too, and no warmup starts at the peak.
    let zero = OptimConfig {
        lr: 3e-4,
        min_lr: 0.0,
        warmup_steps: 0,
        total_steps: 100,
        ..Default::default()
    };
    assert_eq!(lr_at(&zero, 0), 3e-4);
    assert!((lr_at(&zero, 50) - 1.5e-4).abs() < 1e-18);
    assert_eq!(lr_at(&zero, 100), 0.0);
    assert_eq!(lr_at(&zero, 101), 0.0);
}

#[test]
fn optimizer_steps_follow_the_schedule_and_decay_with_the_scheduled_lr() {
    let d = Device::flex().autodiff();
    let cfg = OptimConfig {
        lr: 0.4,
        min_lr: 0.1,
        warmup_steps: 2,
        total_steps: 6,
        weight_decay: 0.5,
        grad_clip: None,
        ..Default::default()
    };
    let h = 0.5f64.sqrt();
    let want_lr = [
        0.2,
        0.4,
        0.4,
        0.1 + 0.15 * (1.0 + h),
        0.25,
        0.1 + 0.15 * (1.0 - h),
        0.1,
        0.1,
    ];
    let mut opt = AdamW::new(cfg).unwrap();
    let mut model = tiny(&d);
    // Zero gradients: the Adam update is 0/(0+ε) = 0, so only the decay moves w:
    // w ← w·Π(1 − lr_t·wd); b (rank 1) stays.
    let mut w = W0.to_vec();
    for (t, &lr) in want_lr.iter().enumerate() {
        let (next, stats) = step(&mut opt, model, &[0.0; 4], &[0.0; 2]);
        model = next;
        assert!(
            (stats.lr - lr).abs() < 1e-12,
            "lr of step {t}: {}",
            stats.lr
        );
        assert_eq!(stats.grad_norm, 0.0);
        for x in &mut w {
            *x *= 1.0 - lr * 0.5;
        }
        let got = values(&model);
        assert_close(&got[0], &w, 2e-6, &format!("w after step {t}"));
        assert_close(&got[1], &B0, 0.0, &format!("b after step {t}"));
    }
}

#[test]
fn clipping_scales_all_gradients_by_the_global_norm() {
    let d = Device::flex().autodiff();
    // ‖gw‖ = 5, ‖gb‖ = 12, global norm 13: each tensor is under 6.5 or not, but the global
    // norm is over it, so both scale by 6.5/13 = 0.5.
    let gw = [3.0, 0.0, 0.0, -4.0];
    let gb = [0.0, 12.0];
    let (b1, b2) = (0.9, 0.95);
    let cfg = |clip| OptimConfig {
        lr: 0.01,
        min_lr: 0.01,
        weight_decay: 0.0,
        grad_clip: clip,
        beta1: b1,
        beta2: b2,
        ..Default::default()
    };
    let moments = |opt: &AdamW| -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        (
            opt.m.iter().cloned().map(host).collect(),
            opt.v.iter().cloned().map(host).collect(),
        )
    };
    let scaled = |g: &[f64], s: f64| g.iter().map(|x| s * x).collect::<Vec<_>>();
    let squared = |g: &[f64], s: f64| g.iter().map(|x| s * x * x).collect::<Vec<_>>();

    for (clip, s) in [(Some(6.5), 0.5), (Some(13.5), 1.0), (None, 1.0)] {
        let mut opt = AdamW::new(cfg(clip)).unwrap();
        let (_, stats) = step(&mut opt, tiny(&d), &gw, &gb);
        // The reported norm is the global one before clipping.
        assert!(
            (stats.grad_norm - 13.0).abs() < 1e-5,
            "{clip:?}: {}",
            stats.grad_norm
        );
        // The first moments are (1−β1)·s·g, the second (1−β2)·s²·g².
        let (m, v) = moments(&opt);
        let tol = 1e-6;
        assert_close(
            &m[0],
            &scaled(&gw, (1.0 - b1) * s),
            tol,
            &format!("m[w] {clip:?}"),
        );
        assert_close(
            &m[1],
            &scaled(&gb, (1.0 - b1) * s),
            tol,
            &format!("m[b] {clip:?}"),
        );
        assert_close(
            &v[0],
            &squared(&gw, (1.0 - b2) * s * s),
            tol,
            &format!("v[w] {clip:?}"),
        );
        assert_close(
            &v[1],
            &squared(&gb, (1.0 - b2) * s * s),
            1e-5,
            &format!("v[b] {clip:?}"),
        );
    }

    // Second step: the norm is recomputed from that step's gradients, the moments accumulate
    // the clipped ones. g2 = (gw, gb)/2: global norm 6.5, not over 6.5 → no scaling.
    let mut opt = AdamW::new(cfg(Some(6.5))).unwrap();
    let (model, _) = step(&mut opt, tiny(&d), &gw, &gb);
    let (_, stats) = step(&mut opt, model, &scaled(&gw, 0.5), &scaled(&gb, 0.5));
    assert!((stats.grad_norm - 6.5).abs() < 1e-5, "{}", stats.grad_norm);
    let (m, _) = moments(&opt);
    // m2 = β1·(1−β1)·0.5·g + (1−β1)·0.5·g
    let k = (b1 * (1.0 - b1) + (1.0 - b1)) * 0.5;
    assert_close(&m[0], &scaled(&gw, k), 1e-6, "m[w] after step 2");
    assert_close(&m[1], &scaled(&gb, k), 1e-6, "m[b] after step 2");
}
