//! Model families against HF transformers: the `tiny-llama3` (Llama 3.1 RoPE scaling, bf16, sharded, untied head)
//! and `tiny-qwen2` (q/k/v biases, `rope_parameters` config form, tied head) checkpoints in
//! `<repo>/../shared/fixtures`, through every load path: the HF directory as the `chat-lm` kind loads it
//! (`ChatModel::load`), on the flex backend and on the host decode path (`HostLlama`), `LlamaModel::load_hf_dir`,
//! and HF → `convert` → GGUF → load → `convert` → HF → load. Compared: the top-20 logits
//! and the logsumexp at three positions of two prompts, each within 1e-4 relative (`|got - want| <= 1e-4 *
//! max(1, |want|)`: relative to the reference magnitude, absolute for values under 1), and the 16 greedy steps
//! until the first one whose reference margin is under 0.01. Skips (with a message) when `../shared` is absent.

mod common;

use std::path::PathBuf;

use common::{max_abs_diff, tmp};
use sparring_actors::chatlm::{ChatMessage, ChatModel};
use sparring_actors::formats::gguf::{GgufWriter, MetaValue};
use sparring_actors::formats::{GgufFile, HfCheckpoint, convert_gguf_to_hf, convert_hf_to_gguf};
use sparring_actors::llama::generate::{Generated, logsumexp};
use sparring_actors::llama::{
    Device, GenerateOptions, HostCache, HostLlama, LlamaConfig, LlamaModel, RopeScaling,
    WeightNaming,
};

/// Relative tolerance on logits and logsumexp (of `max(1, |reference|)`).
const TOL: f64 = 1e-4;

/// The tolerance on the top-20 logits for fixture `name` (the logsumexp is always held to [`TOL`]).
///
/// tiny-llama3's reference was computed with its llama3-scaled RoPE inverse frequencies rounded to bf16, the
/// checkpoint's dtype (a model cast to bf16 rounds its `inv_freq` buffer, and `.float()` cannot undo it), while
/// transformers' `from_pretrained` keeps them in f32, as this crate does: transformers 5.25 loading the fixture in
/// float32 misses this reference by the same 1.759e-2, and by 2.3e-6 with its `inv_freq` rounded to bf16 (measured
/// in session 11). That rounding alone moves the logits by up to 1.8e-2 relative (at position 78: the phase error
/// grows with the position), so the f32 model is held to 3e-2 here (without the scaling they miss by 4.6), and
/// [`tiny_llama3_with_bf16_rope_frequencies_matches_at_1e4`] shows that with the frequencies rounded as the
/// reference had them the model agrees to 1e-4 (3e-6 measured).
fn tolerance(name: &str) -> f64 {
    if name == "tiny-llama3" { 3e-2 } else { TOL }
}

fn fixture_dir(name: &str) -> Option<PathBuf> {
    sparring_actors::testing::shared_or_skip(&format!("fixtures/{name}"), "model_families")
}

/// One reference prompt: its ids, the checked positions and the greedy steps.
struct Case {
    prompt: String,
    ids: Vec<u32>,
    /// (position, top ids, top logits, logsumexp)
    positions: Vec<(usize, Vec<usize>, Vec<f64>, f64)>,
    /// (id, margin)
    greedy: Vec<(u32, f64)>,
}

fn cases(dir: &std::path::Path) -> Vec<Case> {
    let u = |v: &serde_json::Value| v.as_u64().unwrap();
    let list = |v: &serde_json::Value| v.as_array().unwrap().clone();
    common::read_jsonl(&dir.join("reference.jsonl"))
        .into_iter()
        .map(|v| Case {
            prompt: v["prompt"].as_str().unwrap().to_string(),
            ids: common::ids_of(&v["ids"]),
            positions: list(&v["positions"])
                .iter()
                .map(|p| {
                    (
                        u(&p["position"]) as usize,
                        list(&p["top_ids"]).iter().map(|x| u(x) as usize).collect(),
                        list(&p["top_logits"])
                            .iter()
                            .map(|x| x.as_f64().unwrap())
                            .collect(),
                        p["logsumexp"].as_f64().unwrap(),
                    )
                })
                .collect(),
            greedy: list(&v["greedy"])
                .iter()
                .map(|s| (u(&s["id"]) as u32, s["margin"].as_f64().unwrap()))
                .collect(),
        })
        .collect()
}

/// Checks every position's logits (`all[pos * vocab..]`, the whole prompt's logits); returns the worst relative
/// errors of the top-20 logits and of the logsumexp.
fn check_logits(what: &str, case: &Case, all: &[f32], vocab: usize, tol: f64) -> (f64, f64) {
    let (mut worst, mut worst_lse) = (0.0f64, 0.0f64);
    for (pos, ids, logits, lse) in &case.positions {
        let row = &all[pos * vocab..(pos + 1) * vocab];
        for (&id, &want) in ids.iter().zip(logits) {
            let got = row[id] as f64;
            let rel = (got - want).abs() / want.abs().max(1.0);
            worst = worst.max(rel);
            assert!(
                rel <= tol,
                "{what} {:?} position {pos} token {id}: logit {got} vs reference {want}",
                case.prompt
            );
        }
        let got = logsumexp(row) as f64;
        let rel = (got - lse).abs() / lse.abs().max(1.0);
        worst_lse = worst_lse.max(rel);
        assert!(
            rel <= TOL,
            "{what} {:?} position {pos}: logsumexp {got} vs reference {lse}",
            case.prompt
        );
    }
    (worst, worst_lse)
}

/// Greedy tokens against the reference, up to the first step whose reference margin (top-1 minus top-2 logit) is
/// under 0.01: there two correct implementations may pick differently, so that step and the rest are not compared.
fn check_greedy(what: &str, case: &Case, got: &[u32]) -> usize {
    let mut compared = 0;
    for (j, &(want, margin)) in case.greedy.iter().enumerate() {
        if margin < 0.01 {
            break;
        }
        assert_eq!(
            got.get(j).copied(),
            Some(want),
            "{what} {:?} greedy step {j}: got {got:?}",
            case.prompt
        );
        compared += 1;
    }
    compared
}

fn greedy_opts(cases: &[Case]) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: cases.iter().map(|c| c.greedy.len()).max().unwrap_or(0),
        ..Default::default()
    }
}

/// The Burn model (flex) against the reference: logits of each prompt alone, greedy steps of both prompts as
/// one left-padded batch.
fn check_burn(what: &str, m: &LlamaModel, cases: &[Case], tol: f64) {
    let vocab = m.config().vocab_size;
    let (mut worst, mut worst_lse) = (0.0f64, 0.0f64);
    for case in cases {
        let n = case.ids.len();
        let all = m
            .forward(std::slice::from_ref(&case.ids), &[vec![true; n]])
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let (a, b) = check_logits(what, case, &all, vocab, tol);
        worst = worst.max(a);
        worst_lse = worst_lse.max(b);
    }
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.ids.clone()).collect();
    let out = m.generate(&prompts, &greedy_opts(cases)).unwrap();
    report(&format!("{what} (flex)"), cases, &out, worst, worst_lse);
}

/// Checks the greedy steps of `out` against the reference and prints the path's worst errors.
fn report(what: &str, cases: &[Case], out: &[Generated], worst: f64, worst_lse: f64) {
    let steps: Vec<usize> = cases
        .iter()
        .zip(out)
        .map(|(c, g)| check_greedy(what, c, &g.tokens))
        .collect();
    eprintln!(
        "{what}: worst relative error: top-20 logits {worst:.2e}, logsumexp {worst_lse:.2e}; greedy steps equal {steps:?}"
    );
}

/// The host decode path against the reference (logits of every prompt position, then batched greedy).
fn check_host(what: &str, m: &LlamaModel, cases: &[Case], tol: f64) {
    let host = HostLlama::from_model(m).unwrap();
    let vocab = m.config().vocab_size;
    let (mut worst, mut worst_lse) = (0.0f64, 0.0f64);
    for case in cases {
        let n = case.ids.len();
        let mut cache = HostCache::new(m.config(), 1, n);
        let all = host
            .forward(
                std::slice::from_ref(&case.ids),
                &[vec![true; n]],
                &mut cache,
                true,
            )
            .unwrap();
        let (a, b) = check_logits(what, case, &all, vocab, tol);
        worst = worst.max(a);
        worst_lse = worst_lse.max(b);
    }
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.ids.clone()).collect();
    let out = host.generate(&prompts, &greedy_opts(cases)).unwrap();
    report(&format!("{what} (host)"), cases, &out, worst, worst_lse);
}

/// Loads the fixture as the `chat-lm` kind does and checks that its chat template and tokenizer give the
/// reference prompt ids.
fn chat_model(dir: &std::path::Path, cases: &[Case]) -> ChatModel {
    let m = ChatModel::load(dir, &Device::flex()).unwrap();
    for case in cases {
        let ids = m.prompt_ids(&[ChatMessage::user(&case.prompt)]).unwrap();
        assert_eq!(ids, case.ids, "{:?}: prompt ids", case.prompt);
    }
    m
}

/// The HF directory through the `chat-lm` loader, on the flex backend or the host decode path.
fn hf_dir(name: &str, host: bool) {
    let Some(dir) = fixture_dir(name) else {
        return;
    };
    let cases = cases(&dir);
    let m = chat_model(&dir, &cases);
    let what = format!("{name} HF dir");
    if host {
        check_host(&what, &m.model, &cases, tolerance(name));
    } else {
        check_burn(&what, &m.model, &cases, tolerance(name));
    }
}

#[test]
fn tiny_llama3_hf_dir_flex_matches_transformers() {
    hf_dir("tiny-llama3", false);
}

#[test]
fn tiny_llama3_hf_dir_host_matches_transformers() {
    hf_dir("tiny-llama3", true);
}

#[test]
fn tiny_qwen2_hf_dir_flex_matches_transformers() {
    hf_dir("tiny-qwen2", false);
}

#[test]
fn tiny_qwen2_hf_dir_host_matches_transformers() {
    hf_dir("tiny-qwen2", true);
}

/// tiny-llama3 with its llama3-scaled RoPE frequencies rounded to bf16, as the reference computed them (see
/// [`tolerance`]): the HF directory's weights (bf16, sharded, untied head) and the llama3 bands then agree to
/// 1e-4 on the flex backend and the host path, so that rounding is the whole of the looser tolerance.
#[test]
fn tiny_llama3_with_bf16_rope_frequencies_matches_at_1e4() {
    let Some(dir) = fixture_dir("tiny-llama3") else {
        return;
    };
    let cases = cases(&dir);
    let ck = HfCheckpoint::open(&dir).unwrap();
    let mut cfg = ck.model_config.clone();
    let theta = cfg.rope_theta as f64;
    let base = sparring_actors::llama::rope::base_inv_freq(theta, cfg.head_dim);
    let rounded: Vec<f32> = cfg
        .inv_freq()
        .iter()
        .zip(&base)
        .map(|(&f, &b)| (b / half::bf16::from_f32(f).to_f32() as f64) as f32)
        .collect();
    cfg.rope_scaling = RopeScaling::Divisors(rounded);
    let m =
        LlamaModel::from_tensors(&cfg, &ck, WeightNaming::HuggingFace, &Device::flex()).unwrap();
    check_burn("tiny-llama3 bf16 RoPE frequencies", &m, &cases, TOL);
    check_host("tiny-llama3 bf16 RoPE frequencies", &m, &cases, TOL);
}

/// `LlamaModel::load_hf_dir` (the library's own HF loader, through `HfCheckpoint`) gives the reference too.
fn load_hf_dir(name: &str) {
    let Some(dir) = fixture_dir(name) else {
        return;
    };
    let cases = cases(&dir);
    let m = LlamaModel::load_hf_dir(&dir, &Device::flex()).unwrap();
    check_burn(&format!("{name} load_hf_dir"), &m, &cases, tolerance(name));
}

#[test]
fn tiny_llama3_load_hf_dir_matches_transformers() {
    load_hf_dir("tiny-llama3");
}

/// The path that used to re-serialize the config with `attention_bias: false`, dropping Qwen2's biases.
#[test]
fn tiny_qwen2_load_hf_dir_matches_transformers() {
    load_hf_dir("tiny-qwen2");
}

/// `chat_template.jinja` beside `tokenizer_config.json` (transformers ≥ 4.50) is the chat template, and renders
/// exactly as SmolLM2's ChatML template does in transformers (`fixtures/smollm2/chat.jsonl`).
#[test]
fn chat_template_jinja_is_read() {
    use sparring_actors::formats::{ChatTemplate, TextTokenizer};
    let Some(dir) = fixture_dir("tiny-qwen2") else {
        return;
    };
    let tok = TextTokenizer::from_hf_dir(&dir).unwrap();
    let jinja = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap();
    assert_eq!(tok.chat_template.as_deref(), Some(jinja.as_str()));
    let template = ChatTemplate::from_tokenizer(&tok).unwrap();
    let Some(chat) = common::smollm2_fixture("chat.jsonl", "chat_template_jinja_is_read") else {
        return;
    };
    let mut n = 0;
    for v in chat {
        let add = v["add_generation_prompt"].as_bool().unwrap();
        let got = template.render_json(&v["messages"], add, None).unwrap();
        assert_eq!(got, v["text"].as_str().unwrap(), "{}", v["messages"]);
        n += 1;
    }
    assert!(n > 0);
}

/// The configuration `model_config` of an HF directory, with `rms_eps` compared to f32 precision (GGUF stores it
/// as an f32).
fn assert_same_config(a: &LlamaConfig, b: &LlamaConfig) {
    assert!(
        (a.rms_eps - b.rms_eps).abs() <= 1e-6 * a.rms_eps,
        "{a:?} vs {b:?}"
    );
    let mut b = b.clone();
    b.rms_eps = a.rms_eps;
    assert_eq!(a, &b);
}

/// HF directory → `convert` → GGUF, loaded as the `chat-lm` kind loads it (flex and host path), then GGUF →
/// `convert` → HF directory again, loaded again: every path matches the reference.
fn round_trip(name: &str, check_gguf: impl Fn(&GgufFile)) {
    let Some(dir) = fixture_dir(name) else {
        return;
    };
    let cases = cases(&dir);
    let work = tmp(name);
    let gguf = work.join("model.gguf");
    convert_hf_to_gguf(&dir, &gguf).unwrap();
    check_gguf(&GgufFile::open(&gguf).unwrap());
    let m = chat_model(&gguf, &cases);
    check_burn(
        &format!("{name} HF→GGUF"),
        &m.model,
        &cases,
        tolerance(name),
    );
    check_host(
        &format!("{name} HF→GGUF"),
        &m.model,
        &cases,
        tolerance(name),
    );
    let back = work.join("hf");
    convert_gguf_to_hf(&gguf, &back).unwrap();
    assert_same_config(
        &HfCheckpoint::open(&dir).unwrap().model_config,
        &HfCheckpoint::open(&back).unwrap().model_config,
    );
    let m = chat_model(&back, &cases);
    check_burn(
        &format!("{name} HF→GGUF→HF"),
        &m.model,
        &cases,
        tolerance(name),
    );
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn tiny_llama3_converts_to_gguf_and_back() {
    round_trip("tiny-llama3", |g| {
        assert_eq!(g.architecture().unwrap(), "llama");
        // llama.cpp's form of Llama 3.1 scaling: per-pair divisors, 1 (kept) to 8 (scaled).
        let (shape, d) = g.tensor_f32("rope_freqs.weight").unwrap();
        assert_eq!(shape, vec![8]);
        assert_eq!((d[0], d[7]), (1.0, 8.0));
        assert!(d[1] > 1.0 && d[1] < 8.0, "{d:?}");
        assert!(g.tensor("output.weight").is_some());
    });
}

#[test]
fn tiny_qwen2_converts_to_gguf_and_back() {
    round_trip("tiny-qwen2", |g| {
        assert_eq!(g.architecture().unwrap(), "qwen2");
        for b in ["attn_q.bias", "attn_k.bias", "attn_v.bias"] {
            assert!(g.tensor(&format!("blk.1.{b}")).is_some(), "{b}");
        }
        assert!(g.tensor("output.weight").is_none() && g.tensor("rope_freqs.weight").is_none());
    });
}

/// A copy of fixture `name` with its `config.json` changed by `edit` (weights and tokenizer copied).
fn edited_copy(name: &str, tag: &str, edit: impl Fn(&mut serde_json::Value)) -> Option<PathBuf> {
    let src = fixture_dir(name)?;
    let dst = tmp(&format!("{name}-{tag}"));
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap();
        if file != "config.json" {
            std::fs::copy(&p, dst.join(file)).unwrap();
        }
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    Some(dst)
}

/// Each checkpoint's `config.json` rewritten in the other form (`rope_parameters` ↔ top-level `rope_theta` /
/// `rope_scaling`) reads as the same configuration.
#[test]
fn both_config_forms_read_the_same() {
    for name in ["tiny-llama3", "tiny-qwen2"] {
        let Some(dir) = fixture_dir(name) else {
            return;
        };
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let orig: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut other = orig.clone();
        let o = other.as_object_mut().unwrap();
        match o.remove("rope_parameters") {
            Some(mut p) => {
                o.insert("rope_theta".into(), p["rope_theta"].take());
                p.as_object_mut().unwrap().remove("rope_theta");
                o.insert("rope_scaling".into(), p);
            }
            None => {
                let mut p = o.remove("rope_scaling").unwrap();
                p["rope_theta"] = o.remove("rope_theta").unwrap();
                o.insert("rope_parameters".into(), p);
            }
        }
        let a = LlamaConfig::from_hf_config(&orig).unwrap();
        assert_eq!(a, LlamaConfig::from_hf_config(&other).unwrap(), "{name}");
        let want_scaling = name == "tiny-llama3";
        assert_eq!(a.rope_scaling != RopeScaling::None, want_scaling, "{name}");
        assert_eq!(a.qkv_bias, name == "tiny-qwen2", "{name}");
    }
}

/// An unknown `rope_type` (either config form) or GGUF `rope.scaling.type` is an error naming the file and the
/// key, on every load path.
#[test]
fn unknown_rope_type_is_an_error_naming_file_and_key() {
    let cases = [
        ("tiny-llama3", "rope_scaling.rope_type", "yarn"),
        ("tiny-qwen2", "rope_parameters.rope_type", "dynamic"),
    ];
    for (name, key, ty) in cases {
        let (obj, _) = key.split_once('.').unwrap();
        let Some(dir) = edited_copy(name, ty, |c| c[obj]["rope_type"] = ty.into()) else {
            return;
        };
        let file = dir.join("config.json").display().to_string();
        let errors = [
            ChatModel::load(&dir, &Device::flex()).unwrap_err(),
            LlamaModel::load_hf_dir(&dir, &Device::flex())
                .unwrap_err()
                .to_string(),
            convert_hf_to_gguf(&dir, &dir.join("x.gguf"))
                .unwrap_err()
                .to_string(),
        ];
        for e in errors {
            assert!(
                e.contains(&file) && e.contains(&format!("`{key}` = \"{ty}\" is not supported")),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // GGUF: `<arch>.rope.scaling.type`.
    let work = tmp("yarn-gguf");
    let path = work.join("yarn.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in [
        ("general.architecture", MetaValue::String("llama".into())),
        ("llama.rope.scaling.type", MetaValue::String("yarn".into())),
        ("llama.embedding_length", MetaValue::U32(64)),
        ("llama.feed_forward_length", MetaValue::U32(128)),
        ("llama.block_count", MetaValue::U32(1)),
        ("llama.attention.head_count", MetaValue::U32(4)),
        ("llama.vocab_size", MetaValue::U32(8)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        ),
    ] {
        w.meta(k, v);
    }
    w.write(&path).unwrap();
    let e = LlamaModel::load_gguf(&path, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&path.display().to_string())
            && e.contains("`llama.rope.scaling.type` = \"yarn\" is not supported"),
        "{e}"
    );
    std::fs::remove_dir_all(&work).unwrap();
}

/// `linear` RoPE scaling is applied on every path: tiny-qwen2 with `rope_scaling = linear ×4` moves the logits
/// away from the unscaled reference, identically through the HF directory (flex, host) and HF → GGUF
/// (`rope.scaling.type = linear`) → load, and converts back to the same configuration.
#[test]
fn linear_rope_scaling_on_every_path() {
    let Some(dir) = edited_copy("tiny-qwen2", "linear", |c| {
        c["rope_parameters"] =
            serde_json::json!({"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6});
    }) else {
        return;
    };
    let cases = cases(&fixture_dir("tiny-qwen2").unwrap());
    let ids = cases[1].ids.clone();
    let n = ids.len();
    let burn_logits = |m: &LlamaModel| {
        m.forward(std::slice::from_ref(&ids), &[vec![true; n]])
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let hf = ChatModel::load(&dir, &Device::flex()).unwrap();
    assert_eq!(
        hf.model.config().rope_scaling,
        RopeScaling::Linear { factor: 4.0 }
    );
    let a = burn_logits(&hf.model);
    let host = HostLlama::from_model(&hf.model).unwrap();
    let mut cache = HostCache::new(hf.model.config(), 1, n);
    let b = host
        .forward(
            std::slice::from_ref(&ids),
            &[vec![true; n]],
            &mut cache,
            true,
        )
        .unwrap();
    let gguf = dir.join("linear.gguf");
    convert_hf_to_gguf(&dir, &gguf).unwrap();
    let g = GgufFile::open(&gguf).unwrap();
    assert_eq!(
        g.meta("qwen2.rope.scaling.type").and_then(|v| v.as_str()),
        Some("linear")
    );
    let c = burn_logits(&ChatModel::load(&gguf, &Device::flex()).unwrap().model);
    let back = dir.join("back");
    convert_gguf_to_hf(&gguf, &back).unwrap();
    assert_same_config(
        &hf.model.config().clone(),
        &HfCheckpoint::open(&back).unwrap().model_config,
    );
    let diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| ((p - q).abs() / q.abs().max(1.0)) as f64)
            .fold(0.0, f64::max)
    };
    assert!(
        diff(&a, &b) <= TOL && diff(&a, &c) <= TOL,
        "{} {}",
        diff(&a, &b),
        diff(&a, &c)
    );
    // Against the unscaled reference: the last position's top logit moved.
    let (pos, top, logits, _) = &cases[1].positions[2];
    let moved = (a[pos * 49152 + top[0]] as f64 - logits[0]).abs();
    assert!(moved > 0.05, "linear scaling had no effect ({moved})");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SmolLM2 (the real model): its GGUF → `convert` → HF → `convert` → GGUF again (arch `llama`, Q/K rows permuted
/// back, pre-tokenizer `smollm` recognised) gives the original's logits and prompt ids. Writes ~1.1 GB of F32
/// files.
#[test]
#[ignore = "writes ~1.1 GB: cargo test -p sparring-actors --test model_families smollm2_converts -- --ignored"]
fn smollm2_converts_to_hf_and_back_to_gguf() {
    let Some(src) =
        sparring_actors::testing::smollm2_or_skip("smollm2_converts_to_hf_and_back_to_gguf")
    else {
        return;
    };
    let work = tmp("smollm2");
    let (hf, gguf) = (work.join("hf"), work.join("again.gguf"));
    convert_gguf_to_hf(&src, &hf).unwrap();
    convert_hf_to_gguf(&hf, &gguf).unwrap();
    let g = GgufFile::open(&gguf).unwrap();
    assert_eq!(
        g.meta("tokenizer.ggml.pre").and_then(|v| v.as_str()),
        Some("smollm")
    );
    let a = ChatModel::load(&src, &Device::flex()).unwrap();
    let b = ChatModel::load(&gguf, &Device::flex()).unwrap();
    let msgs = [ChatMessage::user("How do rainbows form? 1234 apples.")];
    let ids = a.prompt_ids(&msgs).unwrap();
    assert_eq!(ids, b.prompt_ids(&msgs).unwrap());
    let n = ids.len();
    let logits = |m: &LlamaModel| {
        m.forward(std::slice::from_ref(&ids), &[vec![true; n]])
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let d = max_abs_diff(&logits(&a.model), &logits(&b.model));
    eprintln!("SmolLM2 GGUF → HF → GGUF: max |Δlogit| = {d:.2e}");
    assert!(d < 1e-3, "{d}");
    std::fs::remove_dir_all(&work).unwrap();
}
