//! safetensors reader/writer and the HF layout: bounds checks, sharded checkpoints, and GGUF → HF conversion of
//! a synthetic model and of the real SmolLM2 (reloaded: identical tokenizer ids, every tensor equal to the GGUF
//! tensor after the documented Q/K un-permutation).

mod common;

use std::collections::BTreeMap;

use common::tmp;
use sparring_actors::formats::TensorSource;
use sparring_actors::formats::gguf::{
    GgufFile, GgufHfView, GgufWriter, MetaType, MetaValue, unpermute_qk,
};
use sparring_actors::formats::hf::{
    ConvertOptions, HfCheckpoint, LlamaConfig, convert_gguf_to_hf, convert_gguf_to_hf_with,
};
use sparring_actors::formats::safetensors::{SafetensorsFile, to_bytes_f32};
use sparring_actors::formats::tokenizer::TextTokenizer;

fn sample() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vec![
        ("w".into(), vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ("b".into(), vec![3], vec![-1.0, 0.5, 7.0]),
        ("s".into(), vec![], vec![42.0]),
    ]
}

#[test]
fn safetensors_round_trip() {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = to_bytes_f32(&sample(), &meta);
    let f = SafetensorsFile::parse(bytes).unwrap();
    assert_eq!(f.metadata, meta);
    assert_eq!(f.data_offset % 8, 0);
    for (name, shape, data) in sample() {
        assert_eq!(f.get_f32(&name).unwrap(), (shape, data));
    }
    assert!(f.get_f32("nope").is_err());
}

#[test]
fn safetensors_every_prefix_and_hostile_headers_are_errors() {
    let bytes = to_bytes_f32(&sample(), &BTreeMap::new());
    for n in 0..bytes.len() {
        let e = SafetensorsFile::parse(bytes[..n].to_vec()).expect_err(&format!("prefix {n}"));
        let m = e.to_string();
        assert!(
            m.contains("byte") || m.contains("data_offsets"),
            "prefix {n}: {m}"
        );
    }
    let header = |json: &str| {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b
    };
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(
        SafetensorsFile::parse(huge)
            .unwrap_err()
            .to_string()
            .contains("header length")
    );
    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            "does not match",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#,
            "outside",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            "outside",
        ),
        (
            r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
            "unsupported dtype",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
            "shape",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            "overlap",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#,
            "does not match",
        ),
        (r#"[1,2]"#, "not a JSON object"),
        (r#"{"a": "#, "header JSON invalid at byte"),
    ];
    for (json, want) in cases {
        let m = SafetensorsFile::parse(header(json))
            .unwrap_err()
            .to_string();
        assert!(m.contains(want), "{json}: {m}");
    }
}

/// A tiny llama GGUF: 2 layers, d=8, 2 heads (head_dim 4), 1 KV head, FFN 12, vocab 4, untied output.
fn tiny_llama() -> GgufWriter {
    let s = |v: &str| MetaValue::String(v.into());
    let mut w = GgufWriter::new();
    w.meta("general.architecture", s("llama"))
        .meta("llama.block_count", MetaValue::U32(2))
        .meta("llama.context_length", MetaValue::U32(64))
        .meta("llama.embedding_length", MetaValue::U32(8))
        .meta("llama.feed_forward_length", MetaValue::U32(12))
        .meta("llama.attention.head_count", MetaValue::U32(2))
        .meta("llama.attention.head_count_kv", MetaValue::U32(1))
        .meta("llama.rope.freq_base", MetaValue::F32(10000.0))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        )
        .meta("tokenizer.ggml.model", s("gpt2"))
        .meta("tokenizer.ggml.pre", s("gpt2"))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array {
                elem: MetaType::String,
                items: ["<|endoftext|>", "a", "b", "ab"].map(s).to_vec(),
            },
        )
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array {
                elem: MetaType::I32,
                items: [3, 1, 1, 1].map(MetaValue::I32).to_vec(),
            },
        )
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::Array {
                elem: MetaType::String,
                items: vec![s("a b")],
            },
        )
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(0))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(0))
        .meta(
            "tokenizer.chat_template",
            s("{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"),
        );
    let mut seed = 1u32;
    let mut vals = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    w.tensor_f32("token_embd.weight", &[4, 8], &vals(32));
    w.tensor_f32("output_norm.weight", &[8], &vals(8));
    w.tensor_f32("output.weight", &[4, 8], &vals(32));
    for l in 0..2 {
        let t = |p: &str| format!("blk.{l}.{p}.weight");
        w.tensor_f32(t("attn_norm"), &[8], &vals(8));
        w.tensor_f32(t("attn_q"), &[8, 8], &vals(64));
        w.tensor_f32(t("attn_k"), &[4, 8], &vals(32));
        w.tensor_f32(t("attn_v"), &[4, 8], &vals(32));
        w.tensor_f32(t("attn_output"), &[8, 8], &vals(64));
        w.tensor_f32(t("ffn_norm"), &[8], &vals(8));
        w.tensor_f32(t("ffn_gate"), &[12, 8], &vals(96));
        w.tensor_f32(t("ffn_up"), &[12, 8], &vals(96));
        w.tensor_f32(t("ffn_down"), &[8, 12], &vals(96));
    }
    w
}

fn check_converted(g: &GgufFile, hf: &HfCheckpoint) {
    let n_head = hf.config.num_attention_heads;
    let n_kv = hf.config.n_kv_heads();
    let view = GgufHfView::new(g).unwrap();
    let mut names = view.names();
    names.sort();
    assert_eq!(hf.names(), names);
    for t in &g.tensors {
        let hf_name = sparring_actors::formats::gguf::gguf_to_hf_name(&t.name).unwrap();
        let (gshape, gdata) = g.tensor_f32(&t.name).unwrap();
        let want = if t.name.contains("attn_q") {
            unpermute_qk(&gdata, &gshape, n_head).unwrap()
        } else if t.name.contains("attn_k") {
            unpermute_qk(&gdata, &gshape, n_kv).unwrap()
        } else {
            gdata
        };
        let (shape, data) = hf.get_f32(&hf_name).unwrap();
        assert_eq!(shape, gshape, "{hf_name}");
        assert!(data == want, "{hf_name} differs");
    }
}

#[test]
fn tiny_llama_converts_to_sharded_hf_and_back() {
    let dir = tmp("tiny");
    let gguf_path = dir.join("tiny.gguf");
    tiny_llama().write(&gguf_path).unwrap();
    let out = dir.join("hf");
    convert_gguf_to_hf_with(
        &gguf_path,
        &out,
        &ConvertOptions {
            max_shard_bytes: 1024,
        },
    )
    .unwrap();
    assert!(out.join("model.safetensors.index.json").is_file());
    let hf = HfCheckpoint::open(&out).unwrap();
    assert!(hf.n_shards() > 2, "{}", hf.n_shards());
    assert_eq!(hf.config.model_type, "llama");
    assert_eq!(
        (
            hf.config.hidden_size,
            hf.config.num_attention_heads,
            hf.config.n_kv_heads()
        ),
        (8, 2, 1)
    );
    assert!(!hf.config.tie_word_embeddings);
    assert_eq!(hf.config.vocab_size, 4);
    let g = GgufFile::open(&gguf_path).unwrap();
    check_converted(&g, &hf);
    // Q rows really moved: head 0 row 1 of HF is GGUF row 2.
    let (_, gq) = g.tensor_f32("blk.0.attn_q.weight").unwrap();
    let (_, hq) = hf
        .get_f32("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(&hq[8..16], &gq[16..24]);

    let tok = hf.tokenizer().unwrap();
    assert_eq!(tok.encode("abba", false).unwrap(), vec![3, 2, 1]);
    assert_eq!(tok.encode("ab<|endoftext|>", false).unwrap(), vec![3, 0]);
    assert_eq!(
        tok.chat_template,
        TextTokenizer::from_gguf(&g).unwrap().chat_template
    );

    // Unsharded conversion into the same directory removes the stale index.
    convert_gguf_to_hf(&gguf_path, &out).unwrap();
    assert!(!out.join("model.safetensors.index.json").exists());
    let hf = HfCheckpoint::open(&out).unwrap();
    assert_eq!(hf.n_shards(), 1);
    check_converted(&g, &hf);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_hf_dirs_are_errors_naming_the_file() {
    let dir = tmp("bad");
    let e = HfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(
        dir.join("config.json"),
        "{\"model_type\": \"llama\", \"hidden_size\": 8}",
    )
    .unwrap();
    let e = HfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("`num_attention_heads` is missing"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn smollm2_converts_to_hf_and_matches() {
    let Some(p) = sparring_actors::testing::smollm2_or_skip("smollm2_converts_to_hf_and_matches")
    else {
        return;
    };
    let dir = tmp("smollm2");
    convert_gguf_to_hf(&p, &dir).unwrap();
    let hf = HfCheckpoint::open(&dir).unwrap();
    let g = GgufFile::open(&p).unwrap();
    let want = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!(hf.config, want);
    assert_eq!(
        (
            hf.config.num_hidden_layers,
            hf.config.hidden_size,
            hf.config.intermediate_size
        ),
        (30, 576, 1536)
    );
    assert_eq!(
        (
            hf.config.num_attention_heads,
            hf.config.n_kv_heads(),
            hf.config.vocab_size
        ),
        (9, 3, 49152)
    );
    assert_eq!(hf.config.rope_theta, 100000.0);
    assert!(hf.config.tie_word_embeddings);
    check_converted(&g, &hf);

    let tok = hf.tokenizer().unwrap();
    let gtok = TextTokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.chat_template, gtok.chat_template);
    for v in common::smollm2_fixture("tokens.jsonl", "smollm2_converts_to_hf_and_matches")
        .unwrap_or_default()
    {
        let s = v["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(s, false).unwrap(),
            common::ids_of(&v["ids"]),
            "{s:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn safetensors_seeded_mutations_never_panic() {
    let base = to_bytes_f32(&sample(), &BTreeMap::new());
    let mut rng = sparring_engine::rng::SplitMix64::new(7);
    let mut next = || rng.next_u64();
    let mut ok = 0;
    for _ in 0..10_000 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 3 {
            let i = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[i] = next() as u8,
                1 => b[i] = b"0123456789[]{},:\"-"[(next() % 18) as usize],
                _ => b.truncate(i.max(1)),
            }
        }
        if let Ok(f) = SafetensorsFile::parse(b) {
            ok += 1;
            for n in f.names() {
                let _ = f.get_f32(&n);
            }
        }
    }
    assert!(ok > 0 && ok < 10_000, "{ok}");
}

#[test]
fn llama31_and_qwen25_style_configs_parse() {
    let dir = tmp("cfgs");
    let p = dir.join("config.json");
    std::fs::write(
        &p,
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128256,"hidden_size":4096,
        "intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,
        "rms_norm_eps":1e-05,"rope_theta":500000.0,"max_position_embeddings":131072,"tie_word_embeddings":false,
        "bos_token_id":128000,"eos_token_id":[128001,128008,128009],"hidden_act":"silu","torch_dtype":"bfloat16",
        "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,
        "rope_type":"llama3"},"attention_bias":false,"mlp_bias":false}"#,
    )
    .unwrap();
    let c = LlamaConfig::from_file(&p).unwrap();
    assert_eq!(c.eos_token_id, vec![128001, 128008, 128009]);
    assert_eq!((c.n_kv_heads(), c.head_dim()), (8, 128));
    assert!(!c.has_qkv_bias());
    assert_eq!(c.rope_scaling.as_ref().unwrap()["rope_type"], "llama3");
    std::fs::write(
        &p,
        r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,"hidden_size":896,
        "intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,
        "rms_norm_eps":1e-06,"rope_theta":1000000.0,"tie_word_embeddings":true,"bos_token_id":151643,
        "eos_token_id":151645,"rope_scaling":null,"sliding_window":32768,"use_sliding_window":false}"#,
    )
    .unwrap();
    let c = LlamaConfig::from_file(&p).unwrap();
    assert_eq!(c.eos_token_id, vec![151645]);
    assert!(c.has_qkv_bias() && c.tie_word_embeddings);
    assert_eq!(c.head_dim(), 64);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["eos_token_id"], serde_json::json!(151645));
    std::fs::write(&p, r#"{"model_type":"llama","vocab_size":4,"hidden_size":6,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4}"#).unwrap();
    assert!(
        LlamaConfig::from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("not a multiple")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
