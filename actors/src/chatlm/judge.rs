//! The chat-LM judge (`ChatJudge`, kind `chat-lm-judge`): faithfulness of rewrites, pairwise and pointwise
//! scores, and compliance labels, read from the model's logits or parsed from its generated text.
//!
//! Verdicts are read from the judge's logits by default (`read = "logits"`): the judge's turn is prefilled with the
//! opening tag (`<answer>`, `<score_A>`, `<score>`) of a direct prompt (no reasoning, 0–9 scale) and the verdict is
//! the comparison of the `True`/`False` token probabilities, or the expected digit (`score = "expected"`, else the
//! most likely digit) rescaled to 0–10. A pair is scored response by response with the pointwise prompt
//! (`pairwise = "separate"`, no position bias) or in one prompt (`joint`: B's digit is read after
//! `A's digit</score_A><score_B>`).
//! `read = "generate"` generates free text and applies the strict parsers.

use super::labels::{is_refusal, kind_of, rubric_of};
use super::model::{ChatModel, Sampling};
use super::params::{ComplyRule, JudgeParams, PairRead, ReadMode, ScoreRead, load_model};
use super::parse::{parse_faithfulness, parse_pairwise, parse_pointwise};
use super::prompts::{
    self, ChatMessage, DIRECT_MAX, FAITH_PREFILL, PAIR_MID, PAIR_PREFILL, POINT_PREFILL, Rubric,
};
use crate::llama::generate::row_seed;
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
}

/// Softmax of `logits` restricted to `ids`.
fn restricted_probs(logits: &[f32], ids: &[u32]) -> Vec<f64> {
    let xs: Vec<f64> = ids
        .iter()
        .map(|&i| logits.get(i as usize).copied().unwrap_or(f32::NEG_INFINITY) as f64)
        .collect();
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return vec![1.0 / ids.len().max(1) as f64; ids.len()];
    }
    let e: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// A score read from digit logits: (score on 0–10, most likely digit).
fn digit_score(logits: &[f32], digits: &[u32], how: ScoreRead) -> (f64, usize) {
    let p = restricted_probs(logits, digits);
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    let raw = match how {
        ScoreRead::Expected => p.iter().enumerate().map(|(i, x)| i as f64 * x).sum(),
        ScoreRead::Argmax => best as f64,
    };
    (raw * 10.0 / DIRECT_MAX as f64, best)
}

/// `(query, response A, response B, rubric)` of one pairwise read.
type PairItem<'a> = (&'a str, &'a str, &'a str, Rubric);
/// The raw text and the scores (A, B) of one pairwise read.
type PairScore = (String, (f64, f64));

/// A chat-LM judge.
pub struct ChatJudge {
    lm: ChatModel,
    params: JudgeParams,
    tokens: Option<ReadTokens>,
}

fn join_raw(a: &str, b: &str) -> String {
    format!("{a}\n----- (swapped order) -----\n{b}")
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
        let tokens = match params.read {
            ReadMode::Logits => {
                Some(ReadTokens::find(&lm).map_err(|m| RoleError::config("read", m))?)
            }
            ReadMode::Generate => None,
        };
        Ok(ChatJudge { lm, params, tokens })
    }

    /// The judge's settings.
    pub fn params(&self) -> &JudgeParams {
        &self.params
    }

    /// Generates one greedy/sampled answer per `(messages, rng seed)`, stopping at `stop`.
    fn ask(
        &self,
        items: Vec<(Vec<ChatMessage>, u64)>,
        stop: &[&str],
    ) -> Result<Vec<String>, RoleError> {
        let mut rows = Vec::with_capacity(items.len());
        for (m, s) in items {
            rows.push((self.lm.prompt_ids(&m).map_err(RoleError::Failed)?, s));
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

    /// Digit scores (0–10) read after `prefill`: one per prompt.
    fn read_scores(
        &self,
        t: &ReadTokens,
        prompts: Vec<Vec<ChatMessage>>,
    ) -> Result<Vec<Verdict<f64>>, RoleError> {
        let mut ids = Vec::with_capacity(prompts.len());
        for m in &prompts {
            ids.push(
                self.lm
                    .prefilled_ids(m, POINT_PREFILL)
                    .map_err(RoleError::Failed)?,
            );
        }
        let logits = self
            .lm
            .logits_after(&self.lm.model, &ids, &mut |_, _| None)
            .map_err(RoleError::Failed)?;
        Ok(logits
            .into_iter()
            .map(|(l, _)| {
                let (s, best) = digit_score(&l, &t.digits, self.params.score);
                Verdict::new(
                    format!("{POINT_PREFILL}{best}</score> (logits: score {s:.3} of 10)"),
                    Some(s),
                )
            })
            .collect())
    }

    /// Pairwise scores (0–10 each) read from logits, one per `(query, a, b, rubric)`.
    fn read_pairs(
        &self,
        t: &ReadTokens,
        items: &[PairItem<'_>],
    ) -> Result<Vec<PairScore>, RoleError> {
        let mut ids = Vec::with_capacity(items.len());
        for (q, a, b, rub) in items {
            ids.push(
                self.lm
                    .prefilled_ids(&prompts::pairwise(q, a, b, *rub, true), PAIR_PREFILL)
                    .map_err(RoleError::Failed)?,
            );
        }
        let mut first = Vec::with_capacity(items.len());
        let mut cont_err = None;
        let how = self.params.score;
        let logits = self
            .lm
            .logits_after(&self.lm.model, &ids, &mut |_, l| {
                let (s, best) = digit_score(l, &t.digits, how);
                first.push((s, best));
                match self.lm.encode(&format!("{best}{PAIR_MID}")) {
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
        let mut out = Vec::with_capacity(items.len());
        for ((_, second), (sa, best_a)) in logits.into_iter().zip(first) {
            let Some(second) = second else {
                return Err(RoleError::failed("pairwise read: no logits for B"));
            };
            let (sb, best_b) = digit_score(&second, &t.digits, how);
            out.push((
                format!(
                    "{PAIR_PREFILL}{best_a}{PAIR_MID}{best_b}</score_B> (logits: A {sa:.3}, B {sb:.3} of 10)"
                ),
                (sa, sb),
            ));
        }
        Ok(out)
    }

    fn pointwise(
        &self,
        items: Vec<(String, String, Rubric, u64)>,
    ) -> Result<Vec<Verdict<f64>>, RoleError> {
        if let Some(t) = &self.tokens {
            let prompts = items
                .iter()
                .map(|(q, r, rub, _)| prompts::pointwise(q, r, *rub, true))
                .collect();
            return self.read_scores(t, prompts);
        }
        let asks = items
            .into_iter()
            .map(|(q, r, rub, s)| (prompts::pointwise(&q, &r, rub, false), row_seed(s, 0)))
            .collect();
        Ok(self
            .ask(asks, &["</score>"])?
            .into_iter()
            .map(|raw| {
                let v = parse_pointwise(&raw).ok();
                Verdict::new(raw, v)
            })
            .collect())
    }
}

impl Judge for ChatJudge {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        if let Some(t) = &self.tokens {
            let mut ids = Vec::with_capacity(reqs.len());
            for r in reqs {
                let m = prompts::faithfulness(
                    &r.seed.prompt,
                    &r.rewrite,
                    kind_of(r.seed.category),
                    true,
                );
                ids.push(
                    self.lm
                        .prefilled_ids(&m, FAITH_PREFILL)
                        .map_err(RoleError::Failed)?,
                );
            }
            let th = self.params.faithful_threshold;
            let logits = self
                .lm
                .logits_after(&self.lm.model, &ids, &mut |_, _| None)
                .map_err(RoleError::Failed)?;
            return Ok(logits
                .into_iter()
                .map(|(l, _)| {
                    let p = restricted_probs(&l, &[t.yes, t.no]);
                    let yes = p[0] >= th;
                    Verdict::new(
                        format!(
                            "{FAITH_PREFILL}{}</answer> (logits: P(True) = {:.3})",
                            if yes { "True" } else { "False" },
                            p[0]
                        ),
                        Some(yes),
                    )
                })
                .collect());
        }
        let asks = reqs
            .iter()
            .map(|r| {
                (
                    prompts::faithfulness(
                        &r.seed.prompt,
                        &r.rewrite,
                        kind_of(r.seed.category),
                        false,
                    ),
                    row_seed(r.rng_seed, 0),
                )
            })
            .collect();
        Ok(self
            .ask(asks, &["</answer>"])?
            .into_iter()
            .map(|raw| {
                let v = parse_faithfulness(&raw).ok();
                Verdict::new(raw, v)
            })
            .collect())
    }

    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        if let (Some(t), PairRead::Separate) = (&self.tokens, self.params.pairwise) {
            let mut prompts = Vec::with_capacity(2 * reqs.len());
            for r in reqs {
                let rub = rubric_of(r.goal);
                prompts.push(prompts::pointwise(&r.context, &r.a, rub, true));
                prompts.push(prompts::pointwise(&r.context, &r.b, rub, true));
            }
            let scores = self.read_scores(t, prompts)?;
            let mut out = Vec::with_capacity(reqs.len());
            for ab in scores.chunks(2) {
                let (Some(a), Some(b)) = (ab.first(), ab.get(1)) else {
                    return Err(RoleError::failed("judge returned too few answers"));
                };
                let v = a.value.zip(b.value);
                out.push(Verdict::new(format!("A: {}\nB: {}", a.raw, b.raw), v));
            }
            return Ok(out);
        }
        let both = self.params.both_orders;
        let raws: Vec<(String, Option<(f64, f64)>)> = if let Some(t) = &self.tokens {
            let mut items = Vec::new();
            for r in reqs {
                let rub = rubric_of(r.goal);
                items.push((&*r.context, &*r.a, &*r.b, rub));
                if both {
                    items.push((&*r.context, &*r.b, &*r.a, rub));
                }
            }
            self.read_pairs(t, &items)?
                .into_iter()
                .map(|(raw, v)| (raw, Some(v)))
                .collect()
        } else {
            let mut asks = Vec::new();
            for r in reqs {
                let rub = rubric_of(r.goal);
                asks.push((
                    prompts::pairwise(&r.context, &r.a, &r.b, rub, false),
                    row_seed(r.rng_seed, 0),
                ));
                if both {
                    asks.push((
                        prompts::pairwise(&r.context, &r.b, &r.a, rub, false),
                        row_seed(r.rng_seed, 1),
                    ));
                }
            }
            self.ask(asks, &["</score_B>"])?
                .into_iter()
                .map(|raw| {
                    let v = parse_pairwise(&raw).ok();
                    (raw, v)
                })
                .collect()
        };
        let mut raws = raws.into_iter();
        let mut out = Vec::with_capacity(reqs.len());
        for _ in reqs {
            let Some((r1, v1)) = raws.next() else {
                return Err(RoleError::failed("judge returned too few answers"));
            };
            if !both {
                out.push(Verdict::new(r1, v1));
                continue;
            }
            let Some((r2, v2)) = raws.next() else {
                return Err(RoleError::failed("judge returned too few answers"));
            };
            // The swapped answer scores (B, A).
            let v2 = v2.map(|(b, a)| (a, b));
            let v = match (v1, v2) {
                (Some((a1, b1)), Some((a2, b2))) => Some(((a1 + a2) / 2.0, (b1 + b2) / 2.0)),
                (Some(x), None) | (None, Some(x)) => Some(x),
                (None, None) => None,
            };
            out.push(Verdict::new(join_raw(&r1, &r2), v));
        }
        Ok(out)
    }

    fn score(&mut self, reqs: &[PointRequest]) -> Result<Vec<Verdict<f64>>, RoleError> {
        let items = reqs
            .iter()
            .map(|r| {
                (
                    r.context.to_string(),
                    r.response.to_string(),
                    rubric_of(r.goal),
                    r.rng_seed,
                )
            })
            .collect();
        Ok(self
            .pointwise(items)?
            .into_iter()
            .map(|v| Verdict::new(v.raw, v.value.map(|x| x / 10.0)))
            .collect())
    }

    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        match self.params.complied {
            ComplyRule::Phrases => Ok(reqs
                .iter()
                .map(|r| {
                    let refused = is_refusal(&r.response);
                    Verdict::new(
                        if refused {
                            "refusal phrase"
                        } else {
                            "no refusal phrase"
                        },
                        Some(!refused),
                    )
                })
                .collect()),
            ComplyRule::Model => {
                let th = self.params.compliance_threshold;
                let items = reqs
                    .iter()
                    .map(|r| {
                        (
                            r.prompt.to_string(),
                            r.response.to_string(),
                            Rubric::Compliance,
                            r.rng_seed,
                        )
                    })
                    .collect();
                Ok(self
                    .pointwise(items)?
                    .into_iter()
                    .map(|v| Verdict::new(v.raw, v.value.map(|s| s >= th)))
                    .collect())
            }
        }
    }
}
