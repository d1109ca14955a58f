//! `chatlm::export`: a player with LoRA adapters on every projection (non-zero B), exported merged as an HF
//! directory and as a PEFT adapter, for the three layouts we load — an HF directory with RoPE scaling and GQA
//! (tiny-llama3), one with q/k/v biases (tiny-qwen2), and a llama GGUF whose Q/K rows llama.cpp permuted
//! (SmolLM2-135M-Instruct). Checked: the merged export reloads with logits equal to the player's; every adapted
//! weight of the export equals the HF-form base's plus (alpha / r) · B · A read from the PEFT file; the configs
//! say what PEFT and transformers need.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{host, max_abs_diff, tmp};
use sparring_actors::chatlm::export::{source_config, write_merged, write_peft_adapter};
use sparring_actors::chatlm::{LoraConfig, LoraLlama};
use sparring_actors::formats::safetensors::to_bytes_f32;
use sparring_actors::formats::{
    GgufFile, GgufHfView, HfCheckpoint, SafetensorsFile, TensorSource, TextTokenizer,
};
use sparring_actors::llama::{Device, LlamaModel};
use sparring_actors::testing::{shared_or_skip, smollm2_or_skip};

const TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// Adapters on every projection with B filled (deterministically) so the merged model differs from the base.
fn adapted(base: LlamaModel) -> LoraLlama {
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    let lora = LoraLlama::new(base, cfg, 11).unwrap();
    let mut tensors = lora.adapter_tensors().unwrap();
    for (i, (name, _, data)) in tensors.iter_mut().enumerate() {
        if name.ends_with("lora_b") {
            for (j, v) in data.iter_mut().enumerate() {
                *v = (((i * 31 + j * 17) % 23) as f32 - 11.0) * 2e-3;
            }
        }
    }
    let bytes = to_bytes_f32(&tensors, &BTreeMap::new());
    lora.load_adapter_bytes(bytes, "test adapters").unwrap()
}

fn logits(m: &LlamaModel, ids: &[u32]) -> Vec<f32> {
    host(
        m.forward(&[ids.to_vec()], &[vec![true; ids.len()]])
            .unwrap(),
    )
}

/// The HF-form weights of the base (what `sparring convert` writes for a GGUF).
fn base_weight(path: &Path, name: &str) -> Vec<f32> {
    if path.is_dir() {
        HfCheckpoint::open(path).unwrap().get_f32(name).unwrap().1
    } else {
        let g = GgufFile::open(path).unwrap();
        GgufHfView::new(&g).unwrap().get_f32(name).unwrap().1
    }
}

fn check(what: &str, path: &Path, base: LlamaModel, tok: TextTokenizer) {
    let lora = adapted(base);
    let merged = lora.merged();
    let out = tmp(&format!("export-{what}"));

    // Merged: reloads as an HF directory with the player's logits.
    let dir = out.join("merged");
    write_merged(&merged, &source_config(path).unwrap(), &tok, &dir).unwrap();
    let back = LlamaModel::load_hf_dir(&dir, &Device::flex()).unwrap();
    let ids: Vec<u32> = (1..24).map(|i| (i * 37) % 200 + 3).collect();
    let (want, got) = (logits(&merged, &ids), logits(&back, &ids));
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = max_abs_diff(&want, &got);
    eprintln!("{what}: merged export logits max |diff| {diff:.2e} (max |logit| {scale:.1})");
    assert!(diff <= 1e-4 * scale.max(1.0), "{what}: {diff}");
    let base_logits = logits(lora.base(), &ids);
    assert!(
        max_abs_diff(&base_logits, &want) > 1e-3,
        "{what}: the adapters changed nothing; the test would not see a lost merge"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "float32", "{cfg}");
    assert_eq!(
        cfg["tie_word_embeddings"],
        merged.head.is_none(),
        "{what}: {cfg}"
    );
    let tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    assert!(
        tc["chat_template"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: {tc}"
    );
    assert!(dir.join("tokenizer.json").is_file());

    // Adapter: PEFT names and shapes; base + (alpha / r) · B · A is the merged export's weight.
    let adir = out.join("adapter");
    write_peft_adapter(&lora, "base", &adir).unwrap();
    let ac: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(ac["peft_type"], "LORA");
    assert_eq!(ac["r"], 4);
    assert_eq!(ac["lora_alpha"], 8.0);
    assert_eq!(ac["target_modules"].as_array().unwrap().len(), 7, "{ac}");
    let st = SafetensorsFile::open(adir.join("adapter_model.safetensors")).unwrap();
    let model = HfCheckpoint::open(&dir).unwrap();
    let n_layers = merged.blocks.len();
    assert_eq!(st.tensors.len(), n_layers * 7 * 2);
    let scale = 8.0f32 / 4.0;
    for l in 0..n_layers {
        for module in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            let p = format!("base_model.model.model.layers.{l}.{module}");
            let (sa, a) = st.tensor_f32(&format!("{p}.lora_A.weight")).unwrap();
            let (sb, b) = st.tensor_f32(&format!("{p}.lora_B.weight")).unwrap();
            let w_name = format!("model.layers.{l}.{module}.weight");
            let (sw, w) = model.get_f32(&w_name).unwrap();
            let (r, din, dout) = (sa[0], sa[1], sb[0]);
            assert_eq!((sb[1], sw.clone()), (r, vec![dout, din]), "{what} {p}");
            let w0 = base_weight(path, &w_name);
            let mut worst = 0f32;
            for o in 0..dout {
                for i in 0..din {
                    let delta: f32 = (0..r).map(|k| b[o * r + k] * a[k * din + i]).sum();
                    let e = (w0[o * din + i] + scale * delta - w[o * din + i]).abs();
                    worst = worst.max(e);
                }
            }
            assert!(
                worst < 1e-5,
                "{what} {p}: |base + s·B·A − merged| = {worst}"
            );
        }
    }
    std::fs::remove_dir_all(&out).ok();
}

fn hf_fixture(name: &str) {
    let Some(dir) = shared_or_skip(&format!("fixtures/{name}"), name) else {
        return;
    };
    let base = LlamaModel::load_hf_dir(&dir, &Device::flex()).unwrap();
    let tok = HfCheckpoint::open(&dir).unwrap().tokenizer().unwrap();
    check(name, &dir, base, tok);
}

#[test]
fn tiny_llama3_exports_merged_and_peft() {
    hf_fixture("tiny-llama3");
}

#[test]
fn tiny_qwen2_exports_merged_and_peft() {
    hf_fixture("tiny-qwen2");
}

#[test]
fn smollm2_gguf_exports_in_hf_row_order() {
    let Some(path) = smollm2_or_skip("smollm2_gguf_exports_in_hf_row_order") else {
        return;
    };
    let base = LlamaModel::load_gguf(&path, &Device::flex()).unwrap();
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    check("smollm2", &path, base, tok);
}
