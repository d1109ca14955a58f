//! Text tokenizers on the `tokenizers` crate: loaded from a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`
//! for the special tokens and chat template, which `chat_template.jinja` beside it replaces, as in transformers ≥
//! 4.50), or built from a GGUF vocabulary (`tokenizer.ggml.*`: byte-level BPE with the pre-tokenizer named by
//! `tokenizer.ggml.pre`, control tokens added as special tokens), and written back as that GGUF metadata.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{GgufFile, MetaValue};
use super::{FormatError, Result};

/// GGUF token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The Llama 3 pre-tokenizer regex (`tokenizer.ggml.pre` = `llama-bpe`), as in its `tokenizer.json`.
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 pre-tokenizer regex (`tokenizer.ggml.pre` = `qwen2`), as in its `tokenizer.json`.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer with its special tokens and (optional) chat template.
#[derive(Clone)]
pub struct TextTokenizer {
    /// The `tokenizers` object (serializable to `tokenizer.json`).
    pub inner: Tokenizer,
    /// Beginning-of-sequence token (text, id), if the model has one.
    pub bos: Option<(String, u32)>,
    /// End-of-sequence token (text, id).
    pub eos: Option<(String, u32)>,
    /// Padding token (text, id).
    pub pad: Option<(String, u32)>,
    /// Whether the model expects a BOS token in front of every sequence (added by `encode(.., true)`).
    pub add_bos: bool,
    /// The Jinja chat template, if the source carries one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("add_bos", &self.add_bos)
            .field(
                "chat_template",
                &self.chat_template.as_ref().map(|t| t.len()),
            )
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::invalid(context, format!("tokenizer: {e}"))
}

/// The pre-tokenizer llama.cpp associates with a `tokenizer.ggml.pre` name, as the model's HF `tokenizer.json` has it.
pub fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level_regex = ByteLevel::new(false, true, true);
    let byte_level_plain = ByteLevel::new(false, true, false);
    let split = |re: &str| {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err("gguf", e))
    };
    Ok(match pre {
        // GPT-2 byte-level with each digit split off first (SmolLM/SmolLM2, StarCoder).
        "smollm" | "starcoder" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level_regex.into(),
        ])),
        "gpt2" | "default" | "gpt-2" => byte_level_regex.into(),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_REGEX)?.into(),
            byte_level_plain.into(),
        ])),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_REGEX)?.into(),
            byte_level_plain.into(),
        ])),
        other => {
            return Err(FormatError::invalid(
                "gguf",
                format!(
                    "tokenizer.ggml.pre `{other}` is not supported (known: smollm, starcoder, gpt2, llama-bpe, qwen2)"
                ),
            ));
        }
    })
}

fn token_text(inner: &Tokenizer, id: u32) -> Option<(String, u32)> {
    inner.id_to_token(id).map(|t| (t, id))
}

impl TextTokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata (model `gpt2`: byte-level BPE).
    pub fn from_gguf(g: &GgufFile) -> Result<TextTokenizer> {
        let ctx = g
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "gguf".into());
        let model = g.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(FormatError::invalid(
                &ctx,
                format!(
                    "tokenizer.ggml.model `{model}` is not supported (only byte-level BPE `gpt2`)"
                ),
            ));
        }
        let tokens = g.meta_str_array("tokenizer.ggml.tokens")?;
        let merges_raw = g.meta_str_array("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match g.meta("tokenizer.ggml.token_type") {
            None => vec![token_type::NORMAL; tokens.len()],
            Some(_) => g
                .meta_array("tokenizer.ggml.token_type")?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_int()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| {
                            FormatError::invalid(
                                &ctx,
                                format!(
                                    "metadata `tokenizer.ggml.token_type[{i}]` is not an integer"
                                ),
                            )
                        })
                })
                .collect::<Result<_>>()?,
        };
        if types.len() != tokens.len() {
            return Err(FormatError::invalid(
                &ctx,
                format!(
                    "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                    types.len(),
                    tokens.len()
                ),
            ));
        }
        let mut vocab = std::collections::HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if vocab.insert(t.to_string(), i as u32).is_some() {
                return Err(FormatError::invalid(
                    &ctx,
                    format!("tokenizer.ggml.tokens[{i}] `{t}` is a duplicate"),
                ));
            }
        }
        let merges = merges_raw
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        FormatError::invalid(
                            &ctx,
                            format!("tokenizer.ggml.merges[{i}] `{m}` has no space"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(|e| tok_err(&ctx, e))?;
        let mut inner = Tokenizer::new(bpe);
        let pre = match g.meta("tokenizer.ggml.pre") {
            Some(_) => g.meta_str("tokenizer.ggml.pre")?,
            None => "default",
        };
        inner.with_pre_tokenizer(Some(
            pre_tokenizer_for(pre).map_err(|e| e.with_context(&ctx))?,
        ));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == token_type::CONTROL || **t == token_type::USER_DEFINED)
            .map(|(tok, t)| AddedToken::from(tok.to_string(), *t == token_type::CONTROL))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| tok_err(&ctx, e))?;

        let id = |key: &str| -> Result<Option<(String, u32)>> {
            match g.meta(key) {
                None => Ok(None),
                Some(_) => {
                    let id = g.meta_usize(key)?;
                    let tok = u32::try_from(id).ok().and_then(|id| token_text(&inner, id));
                    tok.map(Some).ok_or_else(|| {
                        FormatError::invalid(
                            &ctx,
                            format!("metadata `{key}` = {id} is not a token id"),
                        )
                    })
                }
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let pad = id("tokenizer.ggml.padding_token_id")?;
        let add_bos = matches!(
            g.meta("tokenizer.ggml.add_bos_token"),
            Some(MetaValue::Bool(true))
        );
        let chat_template = match g.meta("tokenizer.chat_template") {
            Some(_) => Some(g.meta_str("tokenizer.chat_template")?.to_string()),
            None => None,
        };
        let mut tok = TextTokenizer {
            inner,
            bos,
            eos,
            pad,
            add_bos,
            chat_template,
        };
        tok.set_post_processor().map_err(|e| e.with_context(&ctx))?;
        Ok(tok)
    }

    /// Installs the post-processor: BOS in front when `add_bos`, else GPT-2's byte-level (offsets only).
    fn set_post_processor(&mut self) -> Result<()> {
        match (&self.bos, self.add_bos) {
            (Some((text, id)), true) => {
                let tp = TemplateProcessing::builder()
                    .try_single(format!("{text} $A"))
                    .map_err(|e| tok_err("tokenizer", e))?
                    .try_pair(format!("{text} $A {text} $B"))
                    .map_err(|e| tok_err("tokenizer", e))?
                    .special_tokens(vec![(text.clone(), *id)])
                    .build()
                    .map_err(|e| tok_err("tokenizer", e))?;
                self.inner.with_post_processor(Some(tp));
            }
            _ => {
                self.inner
                    .with_post_processor(Some(ByteLevelProcessor::new(true, false, true)));
            }
        }
        Ok(())
    }

    /// Loads `tokenizer.json`, and from `tokenizer_config.json` beside it (if present) the BOS/EOS/PAD tokens,
    /// `add_bos_token` and `chat_template`.
    pub fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<TextTokenizer> {
        let ctx = tokenizer_json.display().to_string();
        let bytes =
            std::fs::read(tokenizer_json).map_err(|e| FormatError::io(tokenizer_json, e))?;
        let inner = Tokenizer::from_bytes(&bytes).map_err(|e| tok_err(&ctx, e))?;
        let mut tok = TextTokenizer {
            inner,
            bos: None,
            eos: None,
            pad: None,
            add_bos: false,
            chat_template: None,
        };
        if let Some(cfg_path) = tokenizer_config {
            let cctx = cfg_path.display().to_string();
            let raw = std::fs::read(cfg_path).map_err(|e| FormatError::io(cfg_path, e))?;
            let cfg: serde_json::Value = serde_json::from_slice(&raw)
                .map_err(|e| FormatError::invalid(&cctx, format!("invalid JSON: {e}")))?;
            let special = |key: &str| -> Result<Option<(String, u32)>> {
                let text = match cfg.get(key) {
                    None | Some(serde_json::Value::Null) => return Ok(None),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => match v.get("content").and_then(|c| c.as_str()) {
                        Some(s) => s.to_string(),
                        None => {
                            return Err(FormatError::invalid(
                                &cctx,
                                format!("`{key}` is neither a string nor {{content}}"),
                            ));
                        }
                    },
                };
                let id = tok.inner.token_to_id(&text).ok_or_else(|| {
                    FormatError::invalid(
                        &cctx,
                        format!("`{key}` `{text}` is not in the vocabulary"),
                    )
                })?;
                Ok(Some((text, id)))
            };
            tok.bos = special("bos_token")?;
            tok.eos = special("eos_token")?;
            tok.pad = special("pad_token")?;
            tok.add_bos = cfg
                .get("add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            tok.chat_template = match cfg.get("chat_template") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .or_else(|| list.first())
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                Some(_) => {
                    return Err(FormatError::invalid(
                        &cctx,
                        "`chat_template` is not a string or a list",
                    ));
                }
            };
        }
        Ok(tok)
    }

    /// Loads from a Hugging Face model directory (`tokenizer.json`, optional `tokenizer_config.json`); a
    /// `chat_template.jinja` file there is the chat template (it replaces the config's, as in transformers).
    pub fn from_hf_dir(dir: &Path) -> Result<TextTokenizer> {
        let cfg = dir.join("tokenizer_config.json");
        let mut tok = Self::from_hf_files(
            &dir.join("tokenizer.json"),
            cfg.is_file().then_some(cfg.as_path()),
        )?;
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            tok.chat_template =
                Some(std::fs::read_to_string(&jinja).map_err(|e| FormatError::io(&jinja, e))?);
        }
        Ok(tok)
    }

    /// The `tokenizer.ggml.*` metadata (and `tokenizer.chat_template`) that [`Self::from_gguf`] reads back as
    /// this tokenizer: byte-level BPE with a pre-tokenizer llama.cpp names (`smollm`, `gpt2`, `llama-bpe`,
    /// `qwen2`), anything else an error. Ids up to `vocab_size` that the tokenizer lacks become unused
    /// `[PADi]` tokens, as llama.cpp's converter writes them.
    pub fn gguf_metadata(&self, vocab_size: usize) -> Result<Vec<(String, MetaValue)>> {
        use super::gguf::MetaType;
        let ctx = "tokenizer.json";
        let bad = |m: String| FormatError::invalid(ctx, format!("cannot be written to GGUF: {m}"));
        let json: serde_json::Value =
            serde_json::from_str(&self.to_json(false)?).map_err(|e| tok_err(ctx, e))?;
        let model = &json["model"];
        if model["type"] != "BPE" || json["decoder"]["type"] != "ByteLevel" {
            return Err(bad(format!(
                "only byte-level BPE is supported (model {}, decoder {})",
                model["type"], json["decoder"]["type"]
            )));
        }
        if !json["normalizer"].is_null() {
            return Err(bad("`normalizer` is not supported".into()));
        }
        if model["byte_fallback"] == true
            || model["continuing_subword_prefix"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
            || model["end_of_word_suffix"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        {
            return Err(bad(
                "`model.byte_fallback`, `continuing_subword_prefix` or `end_of_word_suffix` is set"
                    .into(),
            ));
        }
        let pre = ["smollm", "gpt2", "llama-bpe", "qwen2"]
            .into_iter()
            .find(|name| {
                pre_tokenizer_for(name)
                    .ok()
                    .and_then(|p| serde_json::to_value(p).ok())
                    .is_some_and(|v| v == json["pre_tokenizer"])
            })
            .ok_or_else(|| {
                bad(format!(
                    "pre-tokenizer {} is none of llama.cpp's smollm, gpt2, llama-bpe, qwen2",
                    json["pre_tokenizer"]
                ))
            })?;
        let vocab = model["vocab"]
            .as_object()
            .ok_or_else(|| bad("`model.vocab` is not an object".into()))?;
        let mut entries: Vec<(usize, String, i32)> = Vec::with_capacity(vocab.len());
        for (t, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| bad(format!("`model.vocab.{t}` is not an id")))?;
            entries.push((id as usize, t.clone(), token_type::NORMAL));
        }
        for (i, a) in json["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
                return Err(bad(format!("`added_tokens[{i}]` has no id or content")));
            };
            let ty = if a["special"] == true {
                token_type::CONTROL
            } else {
                token_type::USER_DEFINED
            };
            entries.push((id as usize, content.to_string(), ty));
        }
        // Ids are dense: none beyond the model's vocabulary or the number of tokens.
        let limit = vocab_size.max(entries.len());
        if let Some((id, t, _)) = entries.iter().find(|e| e.0 >= limit) {
            return Err(bad(format!(
                "token `{t}` has id {id}, beyond the vocabulary ({limit})"
            )));
        }
        let n = entries
            .iter()
            .map(|e| e.0 + 1)
            .max()
            .unwrap_or(0)
            .max(vocab_size);
        let mut tokens: Vec<Option<String>> = vec![None; n];
        let mut types = vec![token_type::UNUSED; n];
        for (id, t, ty) in entries {
            tokens[id] = Some(t);
            types[id] = ty;
        }
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| bad("`model.merges` is not a list".into()))?
            .iter()
            .enumerate()
            .map(
                |(i, m)| match (m.as_str(), m.as_array().map(Vec::as_slice)) {
                    (Some(s), _) => Ok(s.to_string()),
                    (_, Some([a, b])) => match (a.as_str(), b.as_str()) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(bad(format!("`model.merges[{i}]` is not two strings"))),
                    },
                    _ => Err(bad(format!("`model.merges[{i}]` is not a merge"))),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let strings = |v: Vec<String>| MetaValue::Array {
            elem: MetaType::String,
            items: v.into_iter().map(MetaValue::String).collect(),
        };
        let mut out = vec![
            (
                "tokenizer.ggml.model".to_string(),
                MetaValue::String("gpt2".into()),
            ),
            ("tokenizer.ggml.pre".into(), MetaValue::String(pre.into())),
            (
                "tokenizer.ggml.tokens".into(),
                strings(
                    tokens
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                MetaValue::Array {
                    elem: MetaType::I32,
                    items: types.into_iter().map(MetaValue::I32).collect(),
                },
            ),
            ("tokenizer.ggml.merges".into(), strings(merges)),
        ];
        for (key, t) in [
            ("tokenizer.ggml.bos_token_id", &self.bos),
            ("tokenizer.ggml.eos_token_id", &self.eos),
            ("tokenizer.ggml.padding_token_id", &self.pad),
        ] {
            if let Some((_, id)) = t {
                out.push((key.into(), MetaValue::U32(*id)));
            }
        }
        out.push((
            "tokenizer.ggml.add_bos_token".into(),
            MetaValue::Bool(self.add_bos),
        ));
        if let Some(t) = &self.chat_template {
            out.push((
                "tokenizer.chat_template".into(),
                MetaValue::String(t.clone()),
            ));
        }
        Ok(out)
    }

    /// Token ids of `text`. `add_special_tokens` adds the post-processor's tokens (BOS when the model wants it);
    /// special-token texts inside `text` (e.g. `<|im_start|>`) always map to their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err("decode", e))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner
            .to_string(pretty)
            .map_err(|e| tok_err("tokenizer.json", e))
    }

    /// The `tokenizer_config.json` value: special tokens, `add_bos_token`, `chat_template`, added tokens decoder.
    pub fn config_json(&self) -> serde_json::Value {
        let mut cfg = serde_json::Map::new();
        let text = |t: &Option<(String, u32)>| match t {
            Some((s, _)) => serde_json::Value::String(s.clone()),
            None => serde_json::Value::Null,
        };
        cfg.insert("add_bos_token".into(), self.add_bos.into());
        cfg.insert("add_eos_token".into(), false.into());
        cfg.insert("bos_token".into(), text(&self.bos));
        cfg.insert("eos_token".into(), text(&self.eos));
        cfg.insert("pad_token".into(), text(&self.pad));
        cfg.insert("clean_up_tokenization_spaces".into(), false.into());
        cfg.insert("model_max_length".into(), serde_json::Value::from(8192));
        cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        if let Some(t) = &self.chat_template {
            cfg.insert("chat_template".into(), t.clone().into());
        }
        serde_json::Value::Object(cfg)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        let tj = dir.join("tokenizer.json");
        std::fs::write(&tj, self.to_json(false)?).map_err(|e| FormatError::io(&tj, e))?;
        let tc = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&self.config_json())
            .map_err(|e| FormatError::invalid("tokenizer_config.json", e.to_string()))?;
        std::fs::write(&tc, text).map_err(|e| FormatError::io(&tc, e))
    }
}
