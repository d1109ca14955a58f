//! Conversions between the two checkpoint layouts, both ways, for the llama family.
//!
//! GGUF → HF ([`convert_gguf_to_hf`]) writes F32 weights under HF names. llama.cpp's converter permuted the rows
//! of Q and K (per head, HF row `s*head_dim/2 + i` became row `2i + s`) so that GGUF models use RoPE on adjacent
//! pairs; they are un-permuted (see [`super::gguf::unpermute_qk`]), so the written checkpoint is a standard HF one
//! for rotate-half RoPE, exactly what `transformers` would load. Only `general.architecture = llama` files are
//! un-permuted (llama.cpp does not permute e.g. `qwen2`). llama.cpp's `rope_freqs.weight` (Llama 3.1 scaling)
//! becomes the `rope_scaling` parameters that reproduce it, or an error when none do.
//!
//! HF → GGUF ([`convert_hf_to_gguf`]) writes what llama.cpp's `convert_hf_to_gguf.py` would, in F32: arch `llama`
//! (Llama, Mistral; Q/K rows permuted) or `qwen2` (q/k/v biases, no permutation), the tokenizer as
//! `tokenizer.ggml.*`, `linear` RoPE scaling as `rope.scaling.type` / `.factor`, `llama3` scaling as the
//! `rope_freqs.weight` tensor of per-pair divisors (with `rope.scaling.original_context_length`, which llama.cpp
//! uses only for YaRN, so that converting back recovers the parameters).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::gguf::{
    DEFAULT_ALIGNMENT, GgufFile, GgufHfView, MetaValue, hf_to_gguf_name, permute_qk, put_header,
};
use super::hf::{HfCheckpoint, LlamaConfig};
use super::quant::GgmlType;
use super::safetensors::write_f32_streaming;
use super::tokenizer::TextTokenizer;
use super::{FormatError, Result, TensorSource};
use crate::llama::RopeScaling;

/// Options of [`convert_gguf_to_hf_with`].
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Start a new shard when a shard would exceed this many bytes (then an index file is written).
    pub max_shard_bytes: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            max_shard_bytes: 5 << 30,
        }
    }
}

/// Converts a llama-family GGUF file into an HF directory (see the module doc) with default options.
pub fn convert_gguf_to_hf(gguf_path: &Path, out_dir: &Path) -> Result<()> {
    convert_gguf_to_hf_with(gguf_path, out_dir, &ConvertOptions::default())
}

/// Converts a GGUF file into `out_dir`: `config.json`, `generation_config.json`, `model.safetensors` (or
/// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`.
pub fn convert_gguf_to_hf_with(
    gguf_path: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<()> {
    let g = GgufFile::open(gguf_path)?;
    let config = LlamaConfig::from_gguf(&g)?;
    let tok = TextTokenizer::from_gguf(&g)?;
    let view = GgufHfView::new(&g)?;
    write_hf_dir(out_dir, &config, &tok, &view, opts)
}

/// Writes an HF directory: `config.json`, `generation_config.json`, the tokenizer (`tokenizer.json`,
/// `tokenizer_config.json` with the chat template) and every tensor of `weights` (HF names and layout) in F32, in
/// one `model.safetensors` or in shards with `model.safetensors.index.json` (see [`ConvertOptions`]).
pub fn write_hf_dir(
    out_dir: &Path,
    config: &LlamaConfig,
    tok: &TextTokenizer,
    weights: &dyn TensorSource,
    opts: &ConvertOptions,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| FormatError::io(out_dir, e))?;
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = out_dir.join(name);
        let text = serde_json::to_string_pretty(v)
            .map_err(|e| FormatError::invalid(name, e.to_string()))?;
        std::fs::write(&p, text + "\n").map_err(|e| FormatError::io(&p, e))
    };
    let cfg_value = serde_json::to_value(config)
        .map_err(|e| FormatError::invalid("config.json", e.to_string()))?;
    write_json("config.json", &cfg_value)?;
    write_json(
        "generation_config.json",
        &serde_json::json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": cfg_value.get("eos_token_id"),
            "pad_token_id": config.pad_token_id,
        }),
    )?;
    tok.save_hf(out_dir)?;

    // Tensors in the source's order, with HF names; group into shards by F32 size.
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut cur = 0u64;
    for name in weights.names() {
        let shape = weights
            .shape(&name)
            .ok_or_else(|| FormatError::invalid("convert", format!("tensor `{name}` vanished")))?;
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        if cur > 0 && cur + bytes > opts.max_shard_bytes {
            shards.push(Vec::new());
            cur = 0;
        }
        cur += bytes;
        if let Some(last) = shards.last_mut() {
            last.push((name, shape));
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        write_f32_streaming(&out_dir.join(&file), shard, &meta, |name| {
            Ok(weights.get_f32(name)?.1)
        })?;
        for (name, shape) in shard {
            weight_map.insert(name.clone(), file.clone().into());
            total += 4 * shape.iter().product::<usize>() as u64;
        }
    }
    let index = out_dir.join("model.safetensors.index.json");
    if n > 1 {
        write_json(
            "model.safetensors.index.json",
            &serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
        )?;
    } else if index.exists() {
        std::fs::remove_file(&index).map_err(|e| FormatError::io(&index, e))?;
    }
    Ok(())
}

/// Converts a Hugging Face llama-family directory (Llama, Mistral, Qwen2; any dtype, sharded or not) into one GGUF
/// file of F32 tensors (see the module doc). Errors name the file and the key or tensor.
pub fn convert_hf_to_gguf(hf_dir: &Path, out: &Path) -> Result<()> {
    let ck = HfCheckpoint::open(hf_dir)?;
    let ctx = hf_dir.display().to_string();
    let m = &ck.model_config;
    let tok = ck.tokenizer()?;
    let arch = if ck.config.model_type == "qwen2" {
        "qwen2"
    } else {
        "llama"
    };
    let k = |s: &str| format!("{arch}.{s}");
    let u32v = |v: usize, key: &str| {
        u32::try_from(v)
            .map(MetaValue::U32)
            .map_err(|_| FormatError::invalid(&ctx, format!("`{key}` = {v} does not fit a u32")))
    };
    let name = hf_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut meta: Vec<(String, MetaValue)> = vec![
        (
            "general.architecture".into(),
            MetaValue::String(arch.into()),
        ),
        ("general.name".into(), MetaValue::String(name)),
        // LLAMA_FTYPE_ALL_F32
        ("general.file_type".into(), MetaValue::U32(0)),
        (
            k("context_length"),
            u32v(m.max_positions, "max_position_embeddings")?,
        ),
        (k("embedding_length"), u32v(m.hidden_size, "hidden_size")?),
        (
            k("feed_forward_length"),
            u32v(m.intermediate_size, "intermediate_size")?,
        ),
        (k("block_count"), u32v(m.num_layers, "num_hidden_layers")?),
        (
            k("attention.head_count"),
            u32v(m.num_heads, "num_attention_heads")?,
        ),
        (
            k("attention.head_count_kv"),
            u32v(m.num_kv_heads, "num_key_value_heads")?,
        ),
        (k("rope.dimension_count"), u32v(m.head_dim, "head_dim")?),
        (k("rope.freq_base"), MetaValue::F32(m.rope_theta)),
        (
            k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(m.rms_eps as f32),
        ),
        (k("vocab_size"), u32v(m.vocab_size, "vocab_size")?),
    ];
    if m.head_dim * m.num_heads != m.hidden_size {
        meta.push((k("attention.key_length"), u32v(m.head_dim, "head_dim")?));
        meta.push((k("attention.value_length"), u32v(m.head_dim, "head_dim")?));
    }
    let mut rope_freqs = None;
    match &m.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            meta.push((k("rope.scaling.type"), MetaValue::String("linear".into())));
            meta.push((k("rope.scaling.factor"), MetaValue::F32(*factor as f32)));
        }
        s @ RopeScaling::Llama3 {
            original_max_position_embeddings,
            ..
        } => {
            meta.push((
                k("rope.scaling.original_context_length"),
                u32v(
                    *original_max_position_embeddings,
                    "original_max_position_embeddings",
                )?,
            ));
            rope_freqs = Some(s.divisors(m.rope_theta as f64, m.head_dim));
        }
        RopeScaling::Divisors(d) => rope_freqs = Some(d.clone()),
    }
    meta.extend(tok.gguf_metadata(m.vocab_size)?);

    // Tensors: (GGUF name, outer-first shape, HF name); `rope_freqs.weight` has no HF name.
    let mut tensors: Vec<(String, Vec<usize>, Option<String>)> = Vec::new();
    if let Some(d) = &rope_freqs {
        tensors.push(("rope_freqs.weight".into(), vec![d.len()], None));
    }
    for hf in ck.names() {
        if hf.ends_with("rotary_emb.inv_freq") || (m.tie_embeddings && hf == "lm_head.weight") {
            continue;
        }
        let g = hf_to_gguf_name(&hf).ok_or_else(|| {
            FormatError::invalid(
                &ctx,
                format!("tensor `{hf}` has no GGUF name (not a llama-family tensor)"),
            )
        })?;
        let shape = ck
            .shape(&hf)
            .ok_or_else(|| FormatError::invalid(&ctx, format!("tensor `{hf}` vanished")))?;
        tensors.push((g, shape, Some(hf)));
    }
    let permute = arch == "llama";
    write_gguf_f32(out, &meta, &tensors, |g, hf| {
        let Some(hf) = hf else {
            return Ok(rope_freqs.clone().unwrap_or_default());
        };
        let (shape, data) = ck.get_f32(hf)?;
        if permute && g.contains(".attn_q.") {
            permute_qk(&data, &shape, m.num_heads)
        } else if permute && g.contains(".attn_k.") {
            permute_qk(&data, &shape, m.num_kv_heads)
        } else {
            Ok(data)
        }
    })
    .map_err(|e| e.with_context(out.display().to_string()))
}

/// Writes a GGUF v3 file of F32 tensors (`(name, outer-first shape, source)`), fetching each tensor's data only
/// when it is written: memory stays at one tensor.
fn write_gguf_f32(
    path: &Path,
    metadata: &[(String, MetaValue)],
    tensors: &[(String, Vec<usize>, Option<String>)],
    mut fetch: impl FnMut(&str, Option<&str>) -> Result<Vec<f32>>,
) -> Result<()> {
    let align = DEFAULT_ALIGNMENT as usize;
    let dims: Vec<Vec<u64>> = tensors
        .iter()
        .map(|(_, shape, _)| shape.iter().rev().map(|&d| d as u64).collect())
        .collect();
    let infos: Vec<(&str, &[u64], GgmlType, usize)> = tensors
        .iter()
        .zip(&dims)
        .map(|((name, shape, _), d)| {
            (
                name.as_str(),
                d.as_slice(),
                GgmlType::F32,
                4 * shape.iter().product::<usize>(),
            )
        })
        .collect();
    let metadata: Vec<&(String, MetaValue)> = metadata.iter().collect();
    let mut head = Vec::new();
    put_header(&mut head, 3, &metadata, &infos, align);
    head.resize(head.len().div_ceil(align) * align, 0);
    let file = std::fs::File::create(path).map_err(|e| FormatError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e: std::io::Error| FormatError::io(path, e);
    w.write_all(&head).map_err(io)?;
    for (name, shape, src) in tensors {
        let data = fetch(name, src.as_deref())?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(FormatError::invalid(
                name.clone(),
                format!("{} values for shape {shape:?}", data.len()),
            ));
        }
        let mut bytes = Vec::with_capacity(4 * n.div_ceil(8) * 8);
        for v in &data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.resize(bytes.len().div_ceil(align) * align, 0);
        w.write_all(&bytes).map_err(io)?;
    }
    w.flush().map_err(io)
}
