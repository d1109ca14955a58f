//! The chat-LM judge (`ChatJudge`, kind `chat-lm-judge`): faithfulness of rewrites, pairwise and pointwise
//! scores, and compliance labels, read from a local model's logits or parsed from its generated text.
//!
//! The conventions (prompts, prefills, pair scoring, score reading, compliance, raw strings) are the shared driver's
//! (`verdict`); this file is the local model's [`Reader`]: with `read = "logits"` the judge's turn is prefilled with
//! the verdict's opening tag and the candidates' probabilities are the softmax of the next-token logits restricted
//! to their tokens (the digits 0–9, `True`/`False`: `ReadTokens`); a joint pair continues with A's most likely digit
//! and `</score_A><score_B>` to read B's. `read = "generate"` samples free text until the stop string.

use super::model::{ChatModel, Sampling};
use super::params::{JudgeParams, ReadMode, load_model};
use super::prompts::{DIRECT_MAX, FAITH_PREFILL, PAIR_PREFILL};
use super::verdict::{self, PairProbs, Prompt, Read, Reader, Settings, restricted_probs};
use sparring_engine::registry::BuildContext;
use sparring_engine::{
    FaithRequest, Judge, LabelRequest, PairRequest, PointRequest, RoleError, Verdict,
};

/// Token ids the logit read compares: the digits 0–9 and `True`/`False` after their prefills.
#[derive(Debug, Clone)]
struct ReadTokens {
    digits: Vec<u32>,
    yes: u32,
    no: u32,
}

impl ReadTokens {
    fn find(lm: &ChatModel) -> Result<Self, String> {
        // The token following `prefix` when `word` is appended to it.
        let after = |prefix: &str, word: &str| -> Result<u32, String> {
            let base = lm.encode(prefix)?;
            let full = lm.encode(&format!("{prefix}{word}"))?;
            match full.strip_prefix(base.as_slice()) {
                Some([t, ..]) => Ok(*t),
                _ => Err(format!(
                    "read = \"logits\": `{prefix}{word}` does not tokenize as `{prefix}` + `{word}`; use read = \"generate\""
                )),
            }
        };
        let mut digits = Vec::with_capacity(10);
        for d in 0..=DIRECT_MAX {
            let t = after(PAIR_PREFILL, &d.to_string())?;
            if lm.decode_one(t).as_deref() != Some(d.to_string().as_str()) {
                return Err(format!(
                    "read = \"logits\": digit {d} is not a single token; use read = \"generate\""
                ));
            }
            digits.push(t);
        }
        let yes = after(FAITH_PREFILL, "True")?;
        let no = after(FAITH_PREFILL, "False")?;
        if yes == no {
            return Err("read = \"logits\": True and False share their first token".into());
        }
        Ok(ReadTokens { digits, yes, no })
    }

    /// The token of each candidate (`True`, `False` or a digit).
    fn ids(&self, candidates: &[&str]) -> Result<Vec<u32>, RoleError> {
        candidates
            .iter()
            .map(|c| match *c {
                "True" => Ok(self.yes),
                "False" => Ok(self.no),
                d => d
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.digits.get(i).copied())
                    .ok_or_else(|| RoleError::failed(format!("no read token for {d:?}"))),
            })
            .collect()
    }
}

/// A chat-LM judge.
pub struct ChatJudge {
    lm: ChatModel,
    params: JudgeParams,
    settings: Settings,
    tokens: Option<ReadTokens>,
}

impl ChatJudge {
    /// Builds the judge, loading the model.
    pub fn build(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        let p = JudgeParams::parse(params, ctx)?;
        let lm = load_model(&p.model, p.backend, p.batch_size, ctx)?;
        Self::with_model(lm, p)
    }

    /// Builds the judge around an already loaded model (fails when `read = "logits"` and the tokenizer does not
    /// give single-token digits and `True`/`False`).
    pub fn with_model(lm: ChatModel, params: JudgeParams) -> Result<Self, RoleError> {
        let tokens = match params.verdict.read {
            ReadMode::Logits => {
                Some(ReadTokens::find(&lm).map_err(|m| RoleError::config("read", m))?)
            }
            ReadMode::Generate => None,
        };
        let settings = params.settings();
        Ok(ChatJudge {
            lm,
            params,
            settings,
            tokens,
        })
    }

    /// The judge's settings.
    pub fn params(&self) -> &JudgeParams {
        &self.params
    }

    fn tokens(&self) -> Result<&ReadTokens, RoleError> {
        self.tokens
            .as_ref()
            .ok_or_else(|| RoleError::failed("a logit read needs read = \"logits\""))
    }

    /// The token ids of `messages` with the assistant turn opened by `prefill`, one row per prompt.
    fn rows(&self, prompts: &[Prompt], prefill: &str) -> Result<Vec<Vec<u32>>, RoleError> {
        prompts
            .iter()
            .map(|m| {
                self.lm
                    .prefilled_ids(&m.messages, prefill)
                    .map_err(RoleError::Failed)
            })
            .collect()
    }
}

impl Reader for ChatJudge {
    fn source(&self) -> &'static str {
        "logits"
    }

    fn read_choice(
        &self,
        prompts: Vec<Prompt>,
        prefill: &str,
        candidates: &[&str],
    ) -> Result<Vec<Read<Vec<f64>>>, RoleError> {
        let ids = self.tokens()?.ids(candidates)?;
        let rows = self.rows(&prompts, prefill)?;
        let logits = self
            .lm
            .logits_after(&self.lm.model, &rows, &mut |_, _| None)
            .map_err(RoleError::Failed)?;
        Ok(logits
            .into_iter()
            .map(|(l, _)| Read {
                text: None,
                probs: Some(restricted_probs(&l, &ids)),
            })
            .collect())
    }

    fn read_pair(
        &self,
        prompts: Vec<Prompt>,
        prefill: &str,
        _mid: &str,
        candidates: &[&str],
        then: &dyn Fn(&[f64]) -> String,
    ) -> Result<Vec<Read<PairProbs>>, RoleError> {
        let ids = self.tokens()?.ids(candidates)?;
        let rows = self.rows(&prompts, prefill)?;
        let mut first = Vec::with_capacity(rows.len());
        let mut cont_err = None;
        let logits = self
            .lm
            .logits_after(&self.lm.model, &rows, &mut |_, l| {
                let p = restricted_probs(l, &ids);
                let cont = then(&p);
                first.push(p);
                match self.lm.encode(&cont) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        cont_err = Some(e);
                        None
                    }
                }
            })
            .map_err(RoleError::Failed)?;
        if let Some(e) = cont_err {
            return Err(RoleError::Failed(e));
        }
        let mut out = Vec::with_capacity(rows.len());
        for ((_, second), pa) in logits.into_iter().zip(first) {
            let Some(second) = second else {
                return Err(RoleError::failed("pairwise read: no logits for B"));
            };
            out.push(Read {
                text: None,
                probs: Some((pa, restricted_probs(&second, &ids))),
            });
        }
        Ok(out)
    }

    fn ask(&self, items: Vec<(Prompt, u64)>, stop: &[&str]) -> Result<Vec<String>, RoleError> {
        let mut rows = Vec::with_capacity(items.len());
        for (m, s) in items {
            rows.push((
                self.lm.prompt_ids(&m.messages).map_err(RoleError::Failed)?,
                s,
            ));
        }
        let sampling = Sampling {
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            max_new_tokens: self.params.max_new_tokens,
        };
        Ok(self
            .lm
            .generate_until(&self.lm.model, &rows, sampling, stop)
            .map_err(RoleError::Failed)?
            .into_iter()
            .map(|s| s.text)
            .collect())
    }
}

impl Judge for ChatJudge {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        verdict::faithful(self, &self.settings, reqs)
    }

    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        verdict::compare(self, &self.settings, reqs)
    }

    fn score(&mut self, reqs: &[PointRequest]) -> Result<Vec<Verdict<f64>>, RoleError> {
        verdict::score(self, &self.settings, reqs)
    }

    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        verdict::complied(self, &self.settings, reqs)
    }
}
