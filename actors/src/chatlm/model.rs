//! A loaded chat LM: Llama-family weights (GGUF file or Hugging Face directory), its tokenizer and chat template,
//! and batched text generation from chat messages. One `ChatModel` is owned by one role implementation and runs on
//! the engine's compute thread of that role.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::prompts::ChatMessage;
use crate::formats::{self, ChatTemplate, GgufFile, HfCheckpoint, TextTokenizer};
use crate::llama::{
    GenerateOptions, LlamaConfig, LlamaModel, MetadataLookup, TensorLookup, WeightNaming,
};

/// GGUF metadata seen through the llama module's lookup trait.
struct GgufMeta<'a>(&'a GgufFile);

impl MetadataLookup for GgufMeta<'_> {
    fn meta_u64(&self, key: &str) -> Option<u64> {
        self.0
            .meta(key)?
            .as_int()
            .and_then(|v| u64::try_from(v).ok())
    }
    fn meta_f64(&self, key: &str) -> Option<f64> {
        self.0.meta(key)?.as_f64()
    }
    fn meta_str(&self, key: &str) -> Option<String> {
        self.0.meta(key)?.as_str().map(str::to_string)
    }
    fn meta_array_len(&self, key: &str) -> Option<usize> {
        self.0.meta(key)?.as_array().map(<[_]>::len)
    }
}

/// Any `formats::TensorSource` (GGUF raw names, HF checkpoint) seen through the llama loader's trait.
struct Source<'a>(&'a dyn formats::TensorSource);

impl TensorLookup for Source<'_> {
    fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>, String> {
        if !self.0.contains(name) {
            return Ok(None);
        }
        self.0.get_f32(name).map(Some).map_err(|e| e.to_string())
    }
}

/// Sampling settings of one generation call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub max_new_tokens: usize,
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Decoded text without special tokens.
    pub text: String,
    /// Generated token ids (the stop token included when one ended the sample).
    pub tokens: Vec<u32>,
    /// True when the sample ended on `max_new_tokens` rather than a stop token.
    pub truncated: bool,
}

/// A chat LM ready to generate.
#[derive(Debug)]
pub struct ChatModel {
    /// The network (weights on `device`).
    pub model: LlamaModel,
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
    /// Tokens that end a generation (`<|im_end|>`, EOS, ...).
    pub stop_tokens: Vec<u32>,
    /// Where the weights came from.
    pub path: PathBuf,
    /// Rows per forward batch when generating.
    pub max_batch: usize,
}

fn fail(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

impl ChatModel {
    /// Loads a GGUF file (`*.gguf`) or a Hugging Face directory (`config.json`, `model.safetensors`[`.index.json`],
    /// `tokenizer.json`, chat template in `tokenizer_config.json`) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, String> {
        let (model, tokenizer) = if path.is_dir() {
            let ck = HfCheckpoint::open(path).map_err(|e| fail(path, e))?;
            let cfg_path = path.join("config.json");
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| fail(&cfg_path, e))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| fail(&cfg_path, e))?;
            let cfg = LlamaConfig::from_hf_config(&json).map_err(|e| fail(&cfg_path, e))?;
            let model =
                LlamaModel::from_tensors(&cfg, &Source(&ck), WeightNaming::HuggingFace, device)
                    .map_err(|e| fail(path, e))?;
            (model, ck.tokenizer().map_err(|e| fail(path, e))?)
        } else {
            let g = GgufFile::open(path).map_err(|e| fail(path, e))?;
            let cfg = LlamaConfig::from_gguf_metadata(&GgufMeta(&g)).map_err(|e| fail(path, e))?;
            let model = LlamaModel::from_tensors(&cfg, &Source(&g), WeightNaming::Gguf, device)
                .map_err(|e| fail(path, e))?;
            (
                model,
                TextTokenizer::from_gguf(&g).map_err(|e| fail(path, e))?,
            )
        };
        let template = ChatTemplate::from_tokenizer(&tokenizer).map_err(|e| fail(path, e))?;
        let mut stop_tokens: Vec<u32> = Vec::new();
        for t in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                stop_tokens.push(id);
            }
        }
        if let Some((_, id)) = &tokenizer.eos
            && !stop_tokens.contains(id)
        {
            stop_tokens.push(*id);
        }
        Ok(ChatModel {
            model,
            tokenizer,
            template,
            stop_tokens,
            path: path.to_path_buf(),
            max_batch: 16,
        })
    }

    /// Renders messages with the chat template (generation prompt appended) and tokenizes them.
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, String> {
        let text = self
            .template
            .render(messages, true)
            .map_err(|e| fail(&self.path, e))?;
        self.tokenizer
            .encode(&text, false)
            .map_err(|e| fail(&self.path, e))
    }

    /// Tokens of a response text as the model would have produced it (stop token appended).
    pub fn response_ids(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| fail(&self.path, e))?;
        if let Some(&s) = self.stop_tokens.first() {
            ids.push(s);
        }
        Ok(ids)
    }

    /// Generates one sample per `(prompt ids, rng seed)` row, in batches of `max_batch` rows.
    pub fn generate(
        &self,
        rows: &[(Vec<u32>, u64)],
        sampling: Sampling,
    ) -> Result<Vec<Sample>, String> {
        self.generate_with(&self.model, rows, sampling)
    }

    /// As `generate`, with another network sharing this tokenizer (e.g. weights merged with LoRA adapters).
    pub fn generate_with(
        &self,
        model: &LlamaModel,
        rows: &[(Vec<u32>, u64)],
        sampling: Sampling,
    ) -> Result<Vec<Sample>, String> {
        let mut out = Vec::with_capacity(rows.len());
        let opts = GenerateOptions {
            max_new_tokens: sampling.max_new_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            stop_tokens: self.stop_tokens.clone(),
            seed: 0,
            logprobs: false,
        };
        for chunk in rows.chunks(self.max_batch.max(1)) {
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|(p, _)| p.clone()).collect();
            let seeds: Vec<u64> = chunk.iter().map(|(_, s)| *s).collect();
            let gens = model
                .generate_with_seeds(&prompts, &seeds, &opts)
                .map_err(|e| fail(&self.path, e))?;
            for g in gens {
                let truncated = !g
                    .tokens
                    .last()
                    .is_some_and(|t| self.stop_tokens.contains(t));
                let text = self
                    .tokenizer
                    .decode(&g.tokens, true)
                    .map_err(|e| fail(&self.path, e))?;
                out.push(Sample {
                    text,
                    tokens: g.tokens,
                    truncated,
                });
            }
        }
        Ok(out)
    }
}
