//! The Hugging Face face of a llama-family GGUF: tensor-name mapping both ways ([`gguf_to_hf_name`],
//! [`hf_to_gguf_name`]), llama.cpp's Q/K row permutation and its inverse ([`unpermute_qk`], [`permute_qk`]), and
//! [`GgufHfView`], which serves a GGUF file under HF names and row order.

use super::{FormatError, GgufFile, Result, TensorSource};

/// Maps a llama-family GGUF tensor name to its Hugging Face name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`); `None` for tensors with no HF counterpart (e.g. `rope_freqs.weight`).
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Maps a Hugging Face llama-family tensor name back to its GGUF name.
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let g = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// Undoes llama.cpp's Q/K permutation (`convert_hf_to_gguf.py`'s `permute`), in place of rows of a tensor
/// whose outer dimension is `n_head * head_dim` (a weight `[n_head*head_dim, in]` or a bias `[n_head*head_dim]`).
///
/// llama.cpp stores each head's rows as interleaved pairs (row `2i+s` of the head holds HF row `s*head_dim/2 + i`),
/// which suits RoPE on adjacent pairs `(x[2i], x[2i+1])`. After this function the rows are in HF order, for
/// rotate-half RoPE `(x[i], x[i + head_dim/2])`.
pub fn unpermute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Result<Vec<f32>> {
    permute_rows(data, shape, n_head, false)
}

/// The inverse of [`unpermute_qk`]: HF row order → llama.cpp's interleaved order.
pub fn permute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Result<Vec<f32>> {
    permute_rows(data, shape, n_head, true)
}

fn permute_rows(data: &[f32], shape: &[usize], n_head: usize, to_gguf: bool) -> Result<Vec<f32>> {
    let rows = shape.first().copied().unwrap_or(0);
    let cols = shape
        .iter()
        .skip(1)
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let cols = match cols {
        Some(c) if rows.checked_mul(c) == Some(data.len()) => c,
        _ => {
            return Err(FormatError::invalid(
                "permute",
                format!("shape {shape:?} does not match {} values", data.len()),
            ));
        }
    };
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(FormatError::invalid(
            "permute",
            format!("shape {shape:?} cannot be split into {n_head} heads of even size"),
        ));
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let hf = h * head_dim + s * half + i;
                let gg = h * head_dim + 2 * i + s;
                let (dst, src) = if to_gguf { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// A llama-family GGUF presented as a Hugging Face checkpoint: HF tensor names, and Q/K rows un-permuted to HF
/// order (rotate-half RoPE) when the architecture is `llama` (llama.cpp's converter permutes only for that
/// family; e.g. `qwen2` files are stored unpermuted and used with NeoX/rotate-half RoPE). A model loader written
/// against HF names and rotate-half RoPE works unchanged on a GGUF file through this view.
pub struct GgufHfView<'a> {
    /// The underlying file.
    pub gguf: &'a GgufFile,
    n_head: usize,
    n_head_kv: usize,
    permuted: bool,
    names: Vec<(String, String)>,
}

impl<'a> GgufHfView<'a> {
    /// Builds the view; reads `{arch}.attention.head_count` (and `head_count_kv`, default equal).
    pub fn new(gguf: &'a GgufFile) -> Result<Self> {
        let arch = gguf.architecture()?.to_string();
        let n_head = gguf.meta_usize(&format!("{arch}.attention.head_count"))?;
        let kv_key = format!("{arch}.attention.head_count_kv");
        let n_head_kv = if gguf.meta(&kv_key).is_some() {
            gguf.meta_usize(&kv_key)?
        } else {
            n_head
        };
        let names = gguf
            .tensors
            .iter()
            .filter_map(|t| gguf_to_hf_name(&t.name).map(|hf| (hf, t.name.clone())))
            .collect();
        Ok(GgufHfView {
            gguf,
            n_head,
            n_head_kv,
            permuted: arch == "llama",
            names,
        })
    }

    /// Whether Q/K rows are un-permuted by this view (true for `llama`).
    pub fn unpermutes_qk(&self) -> bool {
        self.permuted
    }

    fn gguf_name(&self, hf: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(h, _)| h == hf)
            .map(|(_, g)| g.as_str())
    }
}

impl TensorSource for GgufHfView<'_> {
    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(h, _)| h.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.gguf_name(name).and_then(|g| self.gguf.shape(g))
    }

    fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let g = self.gguf_name(name).ok_or_else(|| {
            FormatError::invalid(
                self.gguf.context(),
                format!("no GGUF tensor maps to HF name `{name}`"),
            )
        })?;
        let (shape, data) = self.gguf.tensor_f32(g)?;
        if self.permuted {
            if g.contains(".attn_q.") {
                return Ok((shape.clone(), unpermute_qk(&data, &shape, self.n_head)?));
            }
            if g.contains(".attn_k.") {
                return Ok((shape.clone(), unpermute_qk(&data, &shape, self.n_head_kv)?));
            }
        }
        Ok((shape, data))
    }
}
