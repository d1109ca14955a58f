//! The model side of `sparring serve`: a chat LM loaded as a role plays it (`Completer`: a `chat-lm` player with
//! its trained weights — LoRA merged or full — at a saved state, or a `chat-lm-judge`; on the CPU through the
//! host fast path, as `ChatPolicy` does), chat prompts rendered for the OpenAI API (generation prompt, or a
//! prefilled final assistant turn continued), and batched completion with settings per row: temperature, top-p,
//! RNG seed, `max_tokens`, stop strings (cut, OpenAI-style) and raw log-softmax log-probs with top-k
//! alternatives, each row's text streamed to a sink as it grows.
//!
//! A row's tokens depend only on its prompt, its settings and its seed (its own RNG stream, the sampling rule of
//! `llama::generate`), never on the rows it is batched with, up to float summation order.

use super::model::{Cache, ChatModel, Net};
use super::params::{JudgeParams, PolicyParams, load_model};
use super::policy::ChatPolicy;
use super::prompts::ChatMessage;
use crate::llama::generate::{logsumexp, sample_next};
use crate::llama::{HostLlama, LlamaModel};
use crate::lm::BackendKind;
use sparring_engine::registry::BuildContext;
use sparring_engine::rng::SplitMix64;
use sparring_engine::{Policy, RoleError};

/// How one completion is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// The row's RNG stream (e.g. `row_seed(request seed, choice index)`).
    pub seed: u64,
    /// 0 = greedy.
    pub temperature: f32,
    /// In (0, 1].
    pub top_p: f32,
    /// Tokens at most (a stop token counts).
    pub max_tokens: usize,
    /// The text ends before the first of these (not included), as OpenAI's `stop`.
    pub stop: Vec<String>,
    /// `Some(k)`: each token's log-prob and its `k` most likely alternatives.
    pub logprobs: Option<usize>,
}

/// Why a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or a stop string.
    Stop,
    /// `max_tokens`.
    Length,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// A generated token's raw log-prob (log-softmax of the logits) and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The token's text (special tokens kept).
    pub token: String,
    pub logprob: f32,
    /// `(text, log-prob)`, most likely first.
    pub top: Vec<(String, f32)>,
}

/// What a row adds at one step: new text (without a stop string, nor a prefix of one that may still complete),
/// the log-probs of its tokens not sent yet, and, on its last piece, why it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub logprobs: Vec<TokenInfo>,
    pub finish: Option<Finish>,
}

/// One finished row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutput {
    /// The text (special tokens skipped, cut before a stop string).
    pub text: String,
    /// Generated token ids (a final stop token included).
    pub tokens: Vec<u32>,
    pub finish: Finish,
    /// One entry per generated token but a final stop token, when asked.
    pub logprobs: Option<Vec<TokenInfo>>,
}

/// A row's progress in the loop.
struct Row {
    tokens: Vec<u32>,
    text: String,
    sent: String,
    pending: Vec<TokenInfo>,
    all: Vec<TokenInfo>,
    finish: Option<Finish>,
    rng: SplitMix64,
}

/// Byte offset of the first stop string in `text`.
fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Length of `text` that is safe to send while the row goes on: without trailing replacement characters (an
/// incomplete UTF-8 sequence) and without a suffix that starts a stop string.
fn settled(text: &str, stop: &[String]) -> usize {
    let t = text.trim_end_matches('\u{FFFD}');
    let hold = stop
        .iter()
        .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
        .filter(|p| t.ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0);
    t.len() - hold
}

/// The `k` largest entries of `row` as (index, value), largest first (lower index first on ties).
fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let by = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by);
        idx.truncate(k);
    }
    idx.sort_by(by);
    idx.into_iter().map(|i| (i, row[i])).collect()
}

/// Completes every row as one left-padded batch on `net`, calling `sink(row, piece)` whenever a row's text grows
/// or it ends; a `false` from the sink abandons that row (its client left). Returns the rows in order.
pub fn complete(
    lm: &ChatModel,
    net: Net<'_>,
    rows: &[RowSpec],
    sink: &mut dyn FnMut(usize, Piece) -> bool,
) -> Result<Vec<RowOutput>, String> {
    let b = rows.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    for r in rows {
        if r.prompt.is_empty() {
            return Err("empty prompt".into());
        }
        if !(r.temperature.is_finite() && r.temperature >= 0.0) {
            return Err(format!(
                "temperature {} must be finite and >= 0",
                r.temperature
            ));
        }
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", r.top_p));
        }
    }
    let max_len = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let max_new = rows.iter().map(|r| r.max_tokens).max().unwrap_or(0);
    let mut cache = Cache::new(net, b, max_len + max_new);
    let vocab = net.vocab();
    let mut step = |ids: &[Vec<u32>], valid: &[Vec<bool>]| -> Result<Vec<f32>, String> {
        let out = cache
            .forward(net, ids, valid)
            .map_err(|e| format!("{}: {e}", lm.path.display()))?;
        if out.len() != b * vocab {
            return Err(format!("{} logits for {b} rows of {vocab}", out.len()));
        }
        Ok(out)
    };
    let mut state: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            tokens: Vec::new(),
            text: String::new(),
            sent: String::new(),
            pending: Vec::new(),
            all: Vec::new(),
            finish: (r.max_tokens == 0).then_some(Finish::Length),
            rng: SplitMix64::new(r.seed),
        })
        .collect();
    let mut ids = Vec::with_capacity(b);
    let mut valid = Vec::with_capacity(b);
    for r in rows {
        let pad = max_len - r.prompt.len();
        let mut row = vec![0u32; pad];
        row.extend_from_slice(&r.prompt);
        let mut v = vec![false; pad];
        v.extend(std::iter::repeat_n(true, r.prompt.len()));
        ids.push(row);
        valid.push(v);
    }
    let text_of = |tokens: &[u32]| lm.tokenizer.decode(tokens, true).unwrap_or_default();
    let mut logits = if max_new > 0 {
        step(&ids, &valid)?
    } else {
        Vec::new()
    };
    for _ in 0..max_new {
        let mut next = vec![0u32; b];
        let mut live = vec![false; b];
        for (r, (spec, st)) in rows.iter().zip(state.iter_mut()).enumerate() {
            if st.finish.is_some() {
                continue;
            }
            let row = &logits[r * vocab..(r + 1) * vocab];
            let (tok, _) = sample_next(row, spec.temperature, spec.top_p, &mut st.rng);
            let tok = tok as u32;
            st.tokens.push(tok);
            let end = lm.stop_tokens.contains(&tok);
            if let (Some(k), false) = (spec.logprobs, end) {
                let lse = logsumexp(row);
                let name = |i: usize| lm.decode_one(i as u32).unwrap_or_default();
                st.pending.push(TokenInfo {
                    token: name(tok as usize),
                    logprob: row[tok as usize] - lse,
                    top: top_k(row, k)
                        .into_iter()
                        .map(|(i, x)| (name(i), x - lse))
                        .collect(),
                });
            }
            if end {
                st.finish = Some(Finish::Stop);
            } else {
                st.text = text_of(&st.tokens);
                if let Some(cut) = first_stop(&st.text, &spec.stop) {
                    st.text.truncate(cut);
                    st.finish = Some(Finish::Stop);
                } else if st.tokens.len() >= spec.max_tokens {
                    st.finish = Some(Finish::Length);
                }
            }
            let upto = match st.finish {
                Some(_) => st.text.len(),
                None => settled(&st.text, &spec.stop),
            };
            let delta = match st.text[..upto].strip_prefix(st.sent.as_str()) {
                Some(d) => d.to_string(),
                None => String::new(),
            };
            if !delta.is_empty() || st.finish.is_some() {
                st.sent.push_str(&delta);
                let lps = std::mem::take(&mut st.pending);
                st.all.extend(lps.iter().cloned());
                let piece = Piece {
                    text: delta,
                    logprobs: lps,
                    finish: st.finish,
                };
                if !sink(r, piece) && st.finish.is_none() {
                    st.finish = Some(Finish::Stop);
                }
            }
            if st.finish.is_none() {
                next[r] = tok;
                live[r] = true;
            }
        }
        if !live.contains(&true) {
            break;
        }
        let ids: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        let valid: Vec<Vec<bool>> = live.iter().map(|&v| vec![v]).collect();
        logits = step(&ids, &valid)?;
    }
    Ok(rows
        .iter()
        .zip(state)
        .map(|(spec, mut st)| {
            st.all.append(&mut st.pending);
            RowOutput {
                text: st.text,
                tokens: st.tokens,
                finish: st.finish.unwrap_or(Finish::Length),
                logprobs: spec.logprobs.map(|_| st.all),
            }
        })
        .collect())
}

/// How the messages become a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptMode {
    /// Rendered with the assistant's generation prompt appended (the default).
    Answer,
    /// Rendered as they are (`add_generation_prompt = false`).
    Raw,
    /// The final message is an assistant turn to continue (vLLM's `continue_final_message`): the others are
    /// rendered with the generation prompt, then its text follows, as `ChatModel::prefilled_ids` prefills.
    Continue,
}

/// Sampling defaults of the served role (its scenario settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: usize,
}

/// A chat LM served as a role plays it.
pub struct Completer {
    pub lm: ChatModel,
    /// The generating weights when they differ from `lm.model` (adapters merged, a restored full fine-tune).
    generator: Option<LlamaModel>,
    /// The host copy of the generating weights (CPU backend).
    host: Option<std::sync::Arc<HostLlama>>,
    pub defaults: Defaults,
}

impl Completer {
    /// A `chat-lm` player at `state` (what its `save` wrote; `None`: its initial weights).
    pub fn policy(
        params: &toml::Table,
        ctx: &BuildContext,
        state: Option<&[u8]>,
    ) -> Result<Self, RoleError> {
        let p = PolicyParams::parse(params, ctx)?;
        let defaults = Defaults {
            temperature: p.temperature,
            top_p: p.top_p,
            max_tokens: p.max_new_tokens,
        };
        // The player exactly as a run builds and restores it (LoRA merged, trained weights, host copy).
        let mut policy = ChatPolicy::build(params, ctx)?;
        if let Some(state) = state.filter(|s| !s.is_empty()) {
            policy
                .load(state)
                .map_err(|e| RoleError::failed(format!("restoring the saved state: {e}")))?;
        }
        let (lm, generator, host) = policy.into_parts();
        Ok(Completer {
            lm,
            generator,
            host,
            defaults,
        })
    }

    /// A `chat-lm-judge`'s model (a judge does not learn).
    pub fn judge(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        let p = JudgeParams::parse(params, ctx)?;
        let lm = load_model(&p.model, p.backend, p.batch_size, ctx)?;
        let defaults = Defaults {
            temperature: p.temperature,
            top_p: p.top_p,
            max_tokens: p.max_new_tokens,
        };
        Ok(Self::assemble(lm, None, p.backend, defaults))
    }

    fn assemble(
        lm: ChatModel,
        generator: Option<LlamaModel>,
        backend: BackendKind,
        defaults: Defaults,
    ) -> Self {
        // On the CPU the host copy decodes; should it fail, the Burn module does (as ChatPolicy falls back).
        let host = (backend == BackendKind::Flex)
            .then(|| lm.host_copy(generator.as_ref(), None).ok())
            .flatten();
        Completer {
            lm,
            generator,
            host,
            defaults,
        }
    }

    /// The generating network.
    pub fn net(&self) -> Net<'_> {
        match &self.host {
            Some(h) => Net::Host(h),
            None => Net::Burn(self.generator.as_ref().unwrap_or(&self.lm.model)),
        }
    }

    /// The model's context length (prompt and completion together).
    pub fn context_len(&self) -> usize {
        self.lm.model.config().max_positions
    }

    /// Bytes of KV cache one token of one row takes (K and V, every layer, f32).
    pub fn kv_bytes_per_token(&self) -> usize {
        let c = self.lm.model.config();
        2 * c.num_layers * c.num_kv_heads * c.head_dim * std::mem::size_of::<f32>()
    }

    /// The prompt token ids of `messages`.
    pub fn prompt(&self, messages: &[ChatMessage], mode: PromptMode) -> Result<Vec<u32>, String> {
        let text = match mode {
            PromptMode::Answer => self.lm.template.render(messages, true),
            PromptMode::Raw => self.lm.template.render(messages, false),
            PromptMode::Continue => {
                let Some((last, rest)) = messages.split_last() else {
                    return Err("no message to continue".into());
                };
                self.lm
                    .template
                    .render(rest, true)
                    .map(|t| format!("{t}{}", last.content))
            }
        }
        .map_err(|e| e.to_string())?;
        self.lm.encode(&text)
    }

    /// Completes `rows` as one batch ([`complete`]); the caller sizes batches.
    pub fn complete(
        &self,
        rows: &[RowSpec],
        sink: &mut dyn FnMut(usize, Piece) -> bool,
    ) -> Result<Vec<RowOutput>, String> {
        complete(&self.lm, self.net(), rows, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_and_hold_back_their_prefixes() {
        let stop = vec!["</p>".to_string(), "END".to_string()];
        assert_eq!(first_stop("ab</p>cd END", &stop), Some(2));
        assert_eq!(first_stop("abc", &stop), None);
        assert_eq!(settled("hello </", &stop), "hello ".len());
        assert_eq!(settled("hello EN", &stop), "hello ".len());
        assert_eq!(settled("hello E\u{FFFD}", &stop), "hello ".len());
        assert_eq!(settled("hello", &stop), 5);
    }

    #[test]
    fn top_k_is_by_value_then_index() {
        let row = [0.5f32, 2.0, 2.0, -1.0, 3.0];
        assert_eq!(top_k(&row, 3), vec![(4, 3.0), (1, 2.0), (2, 2.0)]);
        assert_eq!(top_k(&row, 0), vec![]);
        assert_eq!(top_k(&row, 9).len(), 5);
    }
}
