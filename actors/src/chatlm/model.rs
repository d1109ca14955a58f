//! A loaded chat LM: Llama-family weights (GGUF file or Hugging Face directory), its tokenizer and chat template,
//! batched text generation from chat messages (with an assistant-turn prefill and stop strings), and logit reads
//! after a prefill (a judge's verdict read from its next-token distribution). One `ChatModel` is owned by one role
//! implementation and runs on the engine's compute thread of that role.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::prompts::ChatMessage;
use crate::formats::{ChatTemplate, GgufFile, HfCheckpoint, TextTokenizer};
use crate::llama::generate::generate_loop;
use crate::llama::{
    GenerateOptions, HostCache, HostLlama, KvCache, LlamaError, LlamaModel, LogitsMode,
};

/// Sampling settings of one generation call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub max_new_tokens: usize,
}

/// The network that generates: the Burn module (any backend, trainable) or its host copy (CPU, fast decode).
#[derive(Clone, Copy)]
pub enum Net<'a> {
    Burn(&'a LlamaModel),
    Host(&'a HostLlama),
}

impl Net<'_> {
    /// The vocabulary size (a row of logits).
    pub fn vocab(&self) -> usize {
        match self {
            Net::Burn(m) => m.config().vocab_size,
            Net::Host(h) => h.config().vocab_size,
        }
    }
}

/// The KV cache of one batch on a [`Net`]: the Burn module's or the host copy's.
pub(super) enum Cache {
    Burn(KvCache),
    Host(HostCache),
}

impl Cache {
    /// An empty cache on `net` for `b` rows of up to `capacity` positions.
    pub(super) fn new(net: Net<'_>, b: usize, capacity: usize) -> Self {
        match net {
            Net::Burn(m) => Cache::Burn(KvCache::new(m.config(), b, capacity, &m.device())),
            Net::Host(h) => Cache::Host(HostCache::new(h.config(), b, capacity)),
        }
    }

    /// One left-padded chunk through `net`, appended to this cache: the last position's logits, `[b * vocab]` on
    /// the host.
    pub(super) fn forward(
        &mut self,
        net: Net<'_>,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
    ) -> Result<Vec<f32>, LlamaError> {
        match (net, self) {
            (Net::Burn(model), Cache::Burn(cache)) => model
                .forward_cached(ids, valid, cache, LogitsMode::Last)?
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| LlamaError::Readback(format!("{e:?}"))),
            (Net::Host(h), Cache::Host(cache)) => h.forward(ids, valid, cache, false),
            _ => Err(LlamaError::Input(
                "internal: network and cache disagree".into(),
            )),
        }
    }
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
    /// Each token's log-prob under the distribution it was drawn from (temperature, top-p, the
    /// generating network; 0 for greedy and for an end token forced by a stop string).
    pub logprobs: Vec<f32>,
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
    /// The process-wide loaded file these weights are shared with ([`super::shared`]), if loaded through it.
    shared: Option<std::sync::Arc<super::shared::Loaded>>,
}

/// Chooses the continuation of a row (`row`, its next-token logits) for `ChatModel::logits_after`; `None` = none.
pub type Continue<'a> = dyn FnMut(usize, &[f32]) -> Option<Vec<u32>> + 'a;

/// Next-token logits of a row after its prompt, and after its continuation when it had one.
pub type RowLogits = (Vec<f32>, Option<Vec<f32>>);

/// Byte offset just past the first stop string in `text`, searched after its leading whitespace.
fn stop_at(text: &str, stop: &[&str]) -> Option<usize> {
    let lead = text.len() - text.trim_start().len();
    stop.iter()
        .filter_map(|s| text[lead..].find(s).map(|i| lead + i + s.len()))
        .min()
}

fn fail(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

impl ChatModel {
    /// Loads a GGUF file (`*.gguf`) or a Hugging Face directory (`config.json`, `model.safetensors`[`.index.json`],
    /// `tokenizer.json`, chat template in `chat_template.jinja` or `tokenizer_config.json`) onto `device`, through
    /// the library's loaders (`LlamaModel::from_hf_checkpoint` / `from_gguf`: one configuration reader).
    pub fn load(path: &Path, device: &Device) -> Result<Self, String> {
        let (model, tokenizer) = if path.is_dir() {
            let ck = HfCheckpoint::open(path).map_err(|e| fail(path, e))?;
            let model = LlamaModel::from_hf_checkpoint(&ck, device).map_err(|e| e.to_string())?;
            (model, ck.tokenizer().map_err(|e| fail(path, e))?)
        } else {
            let g = GgufFile::open(path).map_err(|e| fail(path, e))?;
            let model = LlamaModel::from_gguf(&g, device).map_err(|e| e.to_string())?;
            (
                model,
                TextTokenizer::from_gguf(&g).map_err(|e| fail(path, e))?,
            )
        };
        Self::from_parts(model, tokenizer, path)
    }

    /// A chat model around loaded weights and their tokenizer (the chat template compiled from it).
    pub fn from_parts(
        model: LlamaModel,
        tokenizer: TextTokenizer,
        path: &Path,
    ) -> Result<Self, String> {
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
            shared: None,
        })
    }

    /// The same model, marked as sharing the process-wide loaded file `loaded`.
    pub(super) fn shared_with(mut self, loaded: std::sync::Arc<super::shared::Loaded>) -> Self {
        self.shared = Some(loaded);
        self
    }

    /// The host copy of the base weights, shared by every role of the process that loaded this file on this
    /// backend (built on first use); `None` for a model not loaded through [`super::shared`].
    pub fn base_host(&self) -> Option<Result<std::sync::Arc<crate::llama::HostLlama>, String>> {
        self.shared.as_ref().map(|l| l.host())
    }

    /// The host copy (CPU decode path) of `generator` (`None`: these base weights). Shares the process-wide host
    /// copy of the base where it can: all of it for the base weights, and every matrix but those of the
    /// projections in `changed` for a LoRA-merged generator (`changed: None`: every weight may differ).
    pub fn host_copy(
        &self,
        generator: Option<&LlamaModel>,
        changed: Option<&[crate::llama::Projection]>,
    ) -> Result<std::sync::Arc<crate::llama::HostLlama>, String> {
        use crate::llama::HostLlama;
        use std::sync::Arc;
        let own = |m: &LlamaModel| {
            HostLlama::from_model(m)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        match (generator, changed, self.base_host()) {
            (None, _, Some(base)) => base,
            (None, _, None) => own(&self.model),
            (Some(g), Some(changed), Some(base)) => {
                let base = base?;
                HostLlama::sharing(g, &base, &|p| changed.contains(&p))
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            }
            (Some(g), _, _) => own(g),
        }
    }

    /// Renders messages with the chat template (generation prompt appended) and tokenizes them.
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, String> {
        self.prefilled_ids(messages, "")
    }

    /// As `prompt_ids`, with `prefill` appended to the open assistant turn: the model continues after it.
    pub fn prefilled_ids(
        &self,
        messages: &[ChatMessage],
        prefill: &str,
    ) -> Result<Vec<u32>, String> {
        let mut text = self
            .template
            .render(messages, true)
            .map_err(|e| fail(&self.path, e))?;
        text.push_str(prefill);
        self.tokenizer
            .encode(&text, false)
            .map_err(|e| fail(&self.path, e))
    }

    /// Token ids of a text on its own (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| fail(&self.path, e))
    }

    /// The text of one token (special tokens kept).
    pub fn decode_one(&self, id: u32) -> Option<String> {
        self.tokenizer.decode(&[id], false).ok()
    }

    /// The single token that `text` encodes to, if it is one token.
    pub fn single_token(&self, text: &str) -> Option<u32> {
        match self.tokenizer.encode(text, false).ok()?.as_slice() {
            [t] => Some(*t),
            _ => None,
        }
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
        self.generate_until(model, rows, sampling, &[])
    }

    /// As `generate_with`, also ending a row once its decoded output, after leading whitespace, contains one of
    /// `stop` (the text is cut right after the stop string; such a row counts as finished, not truncated).
    pub fn generate_until(
        &self,
        model: &LlamaModel,
        rows: &[(Vec<u32>, u64)],
        sampling: Sampling,
        stop: &[&str],
    ) -> Result<Vec<Sample>, String> {
        self.generate_net(Net::Burn(model), rows, sampling, stop)
    }

    /// As `generate_until`, on either network: the Burn module, or its [`HostLlama`] copy (the fast CPU path).
    pub fn generate_net(
        &self,
        net: Net<'_>,
        rows: &[(Vec<u32>, u64)],
        sampling: Sampling,
        stop: &[&str],
    ) -> Result<Vec<Sample>, String> {
        let mut out = Vec::with_capacity(rows.len());
        let opts = GenerateOptions {
            max_new_tokens: sampling.max_new_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            stop_tokens: self.stop_tokens.clone(),
            seed: 0,
            logprobs: true,
        };
        let end = self.stop_tokens.first().copied();
        for chunk in rows.chunks(self.max_batch.max(1)) {
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|(p, _)| p.clone()).collect();
            let seeds: Vec<u64> = chunk.iter().map(|(_, s)| *s).collect();
            let b = prompts.len();
            let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
            let mut cache = Cache::new(net, b.max(1), max_len + opts.max_new_tokens);
            let vocab = net.vocab();
            // Tokens generated so far per row (seen as the next chunk's inputs) and rows whose stop string appeared.
            let mut seen: Vec<Vec<u32>> = vec![Vec::new(); b];
            let mut hit = vec![false; b];
            let mut first = true;
            let gens = generate_loop(&prompts, &seeds, &opts, vocab, |ids, valid| {
                if !first {
                    for r in 0..b {
                        if valid[r].first() == Some(&true) {
                            seen[r].extend_from_slice(&ids[r]);
                        }
                    }
                }
                first = false;
                let mut host = cache.forward(net, ids, valid)?;
                if let (Some(end), false) = (end, stop.is_empty()) {
                    for r in 0..b {
                        if hit[r] || seen[r].is_empty() {
                            continue;
                        }
                        let text = self.tokenizer.decode(&seen[r], false).unwrap_or_default();
                        if stop_at(&text, stop).is_some() {
                            hit[r] = true;
                        }
                        if hit[r] {
                            // Force the end token: the loop marks the row finished.
                            let row = &mut host[r * vocab..(r + 1) * vocab];
                            row.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                            if let Some(x) = row.get_mut(end as usize) {
                                *x = 0.0;
                            }
                        }
                    }
                }
                Ok(host)
            })
            .map_err(|e| fail(&self.path, e))?;
            for g in gens {
                let truncated = !g
                    .tokens
                    .last()
                    .is_some_and(|t| self.stop_tokens.contains(t));
                let mut text = self
                    .tokenizer
                    .decode(&g.tokens, true)
                    .map_err(|e| fail(&self.path, e))?;
                if let Some(cut) = stop_at(&text, stop) {
                    text.truncate(cut);
                }
                out.push(Sample {
                    text,
                    tokens: g.tokens,
                    truncated,
                    logprobs: g.logprobs,
                });
            }
        }
        Ok(out)
    }

    /// Next-token logits after each prompt (`[vocab]` per row), then, for rows where `then(row, logits)` returns
    /// tokens, the next-token logits after appending those tokens (one KV-cached forward each). Rows are processed
    /// in batches of `max_batch`. This is how a judge's verdict is read from its distribution after a prefill.
    pub fn logits_after(
        &self,
        model: &LlamaModel,
        prompts: &[Vec<u32>],
        then: &mut Continue<'_>,
    ) -> Result<Vec<RowLogits>, String> {
        let vocab = model.config().vocab_size;
        let mut out = Vec::with_capacity(prompts.len());
        let step = self.max_batch.max(1);
        for (ci, chunk) in prompts.chunks(step).enumerate() {
            let b = chunk.len();
            if chunk.iter().any(Vec::is_empty) {
                return Err(fail(&self.path, "empty prompt"));
            }
            let max_len = chunk.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(b);
            let mut valid = Vec::with_capacity(b);
            for p in chunk {
                let pad = max_len - p.len();
                let mut row = vec![0u32; pad];
                row.extend_from_slice(p);
                let mut v = vec![false; pad];
                v.extend(std::iter::repeat_n(true, p.len()));
                ids.push(row);
                valid.push(v);
            }
            let read = |t: burn::tensor::Tensor<3>| -> Result<Vec<f32>, String> {
                t.into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| fail(&self.path, format!("{e:?}")))
            };
            // Continuations are short (a digit and a closing tag): room for 64 tokens.
            const CONT: usize = 64;
            let mut cache = KvCache::new(model.config(), b, max_len + CONT, &model.device());
            let first = read(
                model
                    .forward_cached(&ids, &valid, &mut cache, LogitsMode::Last)
                    .map_err(|e| fail(&self.path, e))?,
            )?;
            if first.len() != b * vocab {
                return Err(fail(&self.path, "logits of unexpected size"));
            }
            let mut conts = Vec::with_capacity(b);
            for r in 0..b {
                conts.push(then(ci * step + r, &first[r * vocab..(r + 1) * vocab]));
            }
            let longest = conts.iter().flatten().map(Vec::len).max().unwrap_or(0);
            let second = if longest == 0 {
                None
            } else if longest > CONT {
                return Err(fail(
                    &self.path,
                    format!("continuation of {longest} tokens (at most {CONT})"),
                ));
            } else {
                // Left-pad each continuation with invalid slots; rows without one get only padding.
                let mut ids = Vec::with_capacity(b);
                let mut valid = Vec::with_capacity(b);
                for c in &conts {
                    let c = c.as_deref().unwrap_or(&[]);
                    let pad = longest - c.len();
                    let mut row = vec![0u32; pad];
                    row.extend_from_slice(c);
                    let mut v = vec![false; pad];
                    v.extend(std::iter::repeat_n(true, c.len()));
                    ids.push(row);
                    valid.push(v);
                }
                Some(read(
                    model
                        .forward_cached(&ids, &valid, &mut cache, LogitsMode::Last)
                        .map_err(|e| fail(&self.path, e))?,
                )?)
            };
            for (r, c) in conts.iter().enumerate() {
                let a = first[r * vocab..(r + 1) * vocab].to_vec();
                let bl = match (&second, c) {
                    (Some(s), Some(c)) if !c.is_empty() => {
                        Some(s[r * vocab..(r + 1) * vocab].to_vec())
                    }
                    _ => None,
                };
                out.push((a, bl));
            }
        }
        Ok(out)
    }
}
