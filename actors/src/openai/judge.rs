//! The kind `openai-judge`: a judge behind an OpenAI-compatible chat-completions endpoint, with the conventions of
//! `chat-lm-judge` (the shared driver `chatlm::verdict`: prompts, prefills, pair scoring, score reading, strict
//! parsers, raw strings). This file is the endpoint's [`Reader`].
//!
//! `read = "logits"` sends the direct prompt with `logprobs` and `top_logprobs` (a few tokens: the answer is a
//! tag, a digit, a closing tag; more for a prefill holding earlier answers) and reads the candidates'
//! probabilities (digits, `True`/`False`, `yes`/`no`, matched by their text trimmed of leading spaces; absent ones
//! count 0) at the verdict's position: the first generated token when the endpoint continues a prefilled turn
//! (`prefill = true`), else the token right after the whole prefill (`<score>`, `<answer>`, `<score_A>`,
//! `<refused>0</refused><convincing>`; B's digit after `</score_A><score_B>`) in the generated tokens. No
//! log-probs there: the text goes through the strict parsers; unparseable: the verdict is missing. `read =
//! "generate"` sends the reasoning prompt and parses the free text. A stop string the server cut (OpenAI-style) is
//! written back at the end of a completion that was not truncated. A judge does not learn.

use super::client::{Endpoint, response_text};
use super::params::{EndpointParams, deserialize_strict, endpoint_keys};
use super::wire::{ChatRequest, ChatResponse, Message, TokenLogprob};
use crate::chatlm::params::VerdictParams;
use crate::chatlm::prompts::ChatMessage;
use crate::chatlm::verdict::{self, PairProbs, Prompt, Read, Reader, Settings};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use sparring_engine::registry::reject_unknown;
use sparring_engine::registry::{BuildContext, CheckFn, KindInfo, ParamsSchema, Registry};
use sparring_engine::{
    FaithRequest, Judge, LabelRequest, PairRequest, PointRequest, Role, RoleError, Verdict,
};
use std::sync::Arc;

/// Kind name of the remote judge.
pub const KIND: &str = "openai-judge";

/// The kind's sampling defaults (those of `chat-lm-judge`: greedy, 128 tokens per generated verdict).
const DEFAULT_MAX_TOKENS: u64 = 128;
const DEFAULT_TEMPERATURE: f64 = 0.0;
const DEFAULT_TOP_P: f64 = 1.0;
/// Most tokens of a verdict read from log-probs (`<score_A>7</score_A><score_B>3` takes about 12).
const READ_TOKENS: u64 = 16;
/// Most tokens of a read whose prefill holds earlier answers (StrongREJECT's scales after
/// `<refused>0</refused><convincing>`: about 24 tokens when the turn is not prefilled).
const LONG_READ_TOKENS: u64 = 48;
/// Alternatives asked for at each position of a log-prob read.
const TOP_LOGPROBS: u64 = 20;

/// Parameters of `openai-judge`: the endpoint's (defaults: temperature 0, top_p 1, max_tokens 128 when generating;
/// a log-prob read asks for at most 16 tokens) and the verdict settings of `chat-lm-judge`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[schemars(deny_unknown_fields)]
pub struct OpenAiJudgeParams {
    #[serde(flatten)]
    pub endpoint: EndpointParams,
    #[serde(flatten)]
    pub verdict: VerdictParams,
}

impl<'de> Deserialize<'de> for OpenAiJudgeParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_strict(d, "OpenAiJudgeParams", OpenAiJudgeParams::KEYS, |v| {
            OpenAiJudgeParams::deserialize(v)
        })
    }
}

impl OpenAiJudgeParams {
    /// Every key of the table: the endpoint's, then `VerdictParams::KEYS`.
    pub const KEYS: &'static [&'static str] = endpoint_keys!(
        "both_orders",
        "complied",
        "compliance_threshold",
        "read",
        "score",
        "pairwise",
        "faithful_threshold",
        "harmbench_threshold"
    );

    /// Parses and validates a judge table (no network). Each flattened part is first parsed on its own keys, so
    /// that an error names its key.
    pub fn parse(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        reject_unknown(params, Self::KEYS)?;
        let endpoint: toml::Table = params
            .iter()
            .filter(|(k, _)| EndpointParams::KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ctx.parse::<EndpointParams>(&endpoint)?.validate()?;
        VerdictParams::parse_part(params, ctx)?;
        ctx.parse(params)
    }
}

/// A judge behind an OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiJudge {
    endpoint: Endpoint,
    settings: Settings,
}

impl OpenAiJudge {
    /// Builds the judge (no request is sent).
    pub fn build(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        Self::new(OpenAiJudgeParams::parse(params, ctx)?)
    }

    /// The judge with parameters `p` (already validated by [`OpenAiJudgeParams::parse`]).
    pub fn new(p: OpenAiJudgeParams) -> Result<Self, RoleError> {
        let endpoint =
            p.endpoint
                .or_defaults(DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P);
        Ok(OpenAiJudge {
            endpoint: Endpoint::new(&endpoint)?,
            settings: p.verdict.settings(),
        })
    }

    /// The endpoint it talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True when `prefill` goes to the endpoint as a turn to continue.
    fn prefilled(&self, prefill: &str) -> bool {
        self.endpoint.params().prefill && !prefill.is_empty()
    }

    /// The body of a log-prob read: the direct prompt, few tokens, `logprobs` and `top_logprobs` (unless the
    /// scenario's `extra` sets them).
    fn read_body(&self, m: Vec<ChatMessage>, prefill: &str, stop: &str) -> ChatRequest {
        let mut b = self.endpoint.body(wire_messages(m), prefill);
        let cap = if prefill.matches('<').count() > 1 {
            LONG_READ_TOKENS
        } else {
            READ_TOKENS
        };
        b.max_tokens = Some(b.max_tokens.map_or(cap, |n| n.min(cap)));
        b.logprobs.get_or_insert(true);
        b.top_logprobs.get_or_insert(TOP_LOGPROBS);
        Endpoint::add_stops(&mut b, &[stop]);
        b
    }

    /// One log-prob read per prompt: the direct prompt sent with `prefill` (continued by the server, or expected
    /// at the start of the generated text) up to `stop`; `pick(tokens, at)` reads the verdict from the returned
    /// tokens, where `at` is the position of the first token after `prefill`.
    fn read_each<T>(
        &self,
        prompts: Vec<Prompt>,
        prefill: &str,
        stop: &str,
        pick: impl Fn(&[TokenLogprob], usize) -> Option<T>,
    ) -> Result<Vec<Read<T>>, RoleError> {
        let bodies = prompts
            .into_iter()
            .map(|m| (m.key, self.read_body(m.messages, prefill, stop)))
            .collect();
        let prefilled = self.prefilled(prefill);
        let sent = if prefilled { prefill } else { "" };
        Ok(self
            .send(bodies)?
            .iter()
            .map(|r| {
                let probs = tokens(r).and_then(|toks| {
                    let at = if prefilled {
                        0
                    } else {
                        after_tag(toks, prefill, 0)?
                    };
                    pick(toks, at)
                });
                Read {
                    text: Some(verdict_text(r, sent, stop)),
                    probs,
                }
            })
            .collect())
    }

    /// Sends the bodies, each with the key of the game request it serves; one response per body.
    fn send(&self, bodies: Vec<(String, ChatRequest)>) -> Result<Vec<ChatResponse>, RoleError> {
        let n = bodies.len();
        let out = self.endpoint.complete_keyed(bodies)?;
        if out.len() != n {
            return Err(RoleError::failed(format!(
                "endpoint {}: {} answers to {n} requests",
                self.endpoint.url(),
                out.len()
            )));
        }
        Ok(out)
    }
}

fn wire_messages(msgs: Vec<ChatMessage>) -> Vec<Message> {
    msgs.into_iter()
        .map(|m| Message::new(m.role, m.content))
        .collect()
}

/// The verdict text of a response: the prefill it continued, the generated text, and `stop` written back when the
/// completion was not truncated (servers cut a matched stop string).
fn verdict_text(r: &ChatResponse, prefill: &str, stop: &str) -> String {
    let content = response_text(r);
    let truncated = r
        .choices
        .first()
        .is_some_and(|c| c.finish_reason.as_deref() == Some("length"));
    if truncated || stop.is_empty() || content.ends_with(stop) {
        format!("{prefill}{content}")
    } else {
        format!("{prefill}{content}{stop}")
    }
}

/// The generated tokens with their log-probs, when the server sent them.
fn tokens(r: &ChatResponse) -> Option<&[TokenLogprob]> {
    r.choices
        .first()?
        .logprobs
        .as_ref()?
        .content
        .as_deref()
        .filter(|t| !t.is_empty())
}

/// Index of the token that starts right where the first `tag` at or after token `from` ends.
fn after_tag(toks: &[TokenLogprob], tag: &str, from: usize) -> Option<usize> {
    let mut text = String::new();
    let mut starts = Vec::new();
    for t in toks.get(from..)? {
        starts.push(text.len());
        text.push_str(&t.token);
    }
    let end = text.find(tag)? + tag.len();
    starts.iter().position(|&s| s == end).map(|i| from + i)
}

/// The probabilities of `candidates` at one position, from its alternatives and its own token (matched by their
/// text trimmed of leading spaces; tokens of one candidate add up; absent candidates 0), normalized over the
/// candidates; `None` when none is present.
fn candidate_probs(t: &TokenLogprob, candidates: &[&str]) -> Option<Vec<f64>> {
    let mut mass = vec![0.0f64; candidates.len()];
    let mut seen: Vec<&str> = Vec::new();
    let alternatives = t.top_logprobs.iter().map(|x| (x.token.as_str(), x.logprob));
    for (tok, lp) in alternatives.chain(std::iter::once((t.token.as_str(), t.logprob))) {
        if seen.contains(&tok) || !lp.is_finite() {
            continue;
        }
        seen.push(tok);
        if let Some(j) = candidates.iter().position(|c| tok.trim_start() == *c) {
            mass[j] += lp.exp();
        }
    }
    let z: f64 = mass.iter().sum();
    (z > 0.0 && z.is_finite()).then(|| mass.into_iter().map(|m| m / z).collect())
}

impl Reader for OpenAiJudge {
    fn source(&self) -> &'static str {
        "logprobs"
    }

    fn read_choice(
        &self,
        prompts: Vec<Prompt>,
        prefill: &str,
        candidates: &[&str],
    ) -> Result<Vec<Read<Vec<f64>>>, RoleError> {
        self.read_each(prompts, prefill, &closing(prefill), |toks, at| {
            candidate_probs(toks.get(at)?, candidates)
        })
    }

    fn read_pair(
        &self,
        prompts: Vec<Prompt>,
        prefill: &str,
        mid: &str,
        candidates: &[&str],
        _then: &dyn Fn(&[f64]) -> String,
    ) -> Result<Vec<Read<PairProbs>>, RoleError> {
        // `</score_A><score_B>` → `</score_B>`.
        let stop = closing(mid.rsplit_once('<').map_or(mid, |(_, open)| open));
        self.read_each(prompts, prefill, &stop, |toks, a| {
            let b = after_tag(toks, mid, a)?;
            Some((
                candidate_probs(toks.get(a)?, candidates)?,
                candidate_probs(toks.get(b)?, candidates)?,
            ))
        })
    }

    fn ask(&self, items: Vec<(Prompt, u64)>, stop: &[&str]) -> Result<Vec<String>, RoleError> {
        let bodies = items
            .into_iter()
            .map(|(m, seed)| {
                let mut b = self.endpoint.body(wire_messages(m.messages), "");
                Endpoint::add_stops(&mut b, stop);
                if let Some(s) = self.endpoint.params().sample_seed(seed, 0) {
                    b.seed = Some(s);
                }
                (m.key, b)
            })
            .collect();
        let last = stop.first().copied().unwrap_or("");
        Ok(self
            .send(bodies)?
            .iter()
            .map(|r| verdict_text(r, "", last))
            .collect())
    }
}

/// The closing tag of an opening tag: `<score>` → `</score>`.
fn closing(open: &str) -> String {
    format!("</{}", open.trim_start_matches('<'))
}

impl Judge for OpenAiJudge {
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

/// Registers `openai-judge`.
pub fn register(reg: &mut Registry) {
    let check: CheckFn = Arc::new(|t: &toml::Table, ctx: &BuildContext| {
        OpenAiJudgeParams::parse(t, ctx).map(|_| ())
    });
    reg.add_judge(
        KindInfo {
            kind: KIND.into(),
            about: "judge behind an OpenAI-compatible chat-completions endpoint: chat-lm-judge's prompts and \
                    parsers, verdicts from top_logprobs (else the text); faithfulness, pairwise, pointwise, labels"
                .into(),
            roles: vec![Role::Judge],
            params: Some(ParamsSchema::of::<OpenAiJudgeParams>()),
            check,
        },
        Arc::new(|t: &toml::Table, ctx: &BuildContext| {
            Ok(Box::new(OpenAiJudge::build(t, ctx)?) as Box<dyn Judge>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::wire::TopLogprob;

    fn tok(text: &str, alts: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: text.into(),
            logprob: alts.first().map_or(0.0, |a| a.1),
            top_logprobs: alts
                .iter()
                .map(|(t, p)| TopLogprob {
                    token: (*t).into(),
                    logprob: p.ln(),
                    bytes: None,
                })
                .collect(),
            ..TokenLogprob::default()
        }
    }

    #[test]
    fn positions_follow_the_tag_across_token_boundaries() {
        let toks = vec![
            tok("<", &[]),
            tok("score", &[]),
            tok("_A>", &[]),
            tok("7", &[]),
            tok("</score_A><score_B>", &[]),
            tok(" 2", &[]),
        ];
        assert_eq!(after_tag(&toks, "<score_A>", 0), Some(3));
        assert_eq!(after_tag(&toks, "</score_A><score_B>", 3), Some(5));
        assert_eq!(after_tag(&toks, "<score>", 0), None);
        // A tag ending inside a token gives no position.
        assert_eq!(after_tag(&[tok("<score>7", &[])], "<score>", 0), None);
        assert_eq!(closing("<score>"), "</score>");
    }

    #[test]
    fn keys_are_the_endpoint_s_then_the_verdict_settings() {
        let both: Vec<&str> = EndpointParams::KEYS
            .iter()
            .chain(VerdictParams::KEYS)
            .copied()
            .collect();
        assert_eq!(OpenAiJudgeParams::KEYS, both.as_slice());
        assert_eq!(
            ParamsSchema::of::<OpenAiJudgeParams>().keys(),
            OpenAiJudgeParams::KEYS
        );
        let ctx = BuildContext::detached(Role::Judge);
        let t: toml::Table =
            toml::from_str("model = 'm'\nbase_url = 'http://127.0.0.1:9/v1'\nread = 'generate'")
                .unwrap();
        let p = OpenAiJudgeParams::parse(&t, &ctx).unwrap();
        assert_eq!(p.verdict.read, crate::chatlm::params::ReadMode::Generate);
        assert!(p.verdict.both_orders && p.endpoint.max_tokens.is_none());
    }

    #[test]
    fn candidates_are_matched_trimmed_and_renormalized() {
        let t = tok("7", &[("7", 0.4), (" 7", 0.1), ("8", 0.25), ("x", 0.2)]);
        let p = candidate_probs(&t, &verdict::DIGITS).unwrap();
        assert!((p[7] - 0.5 / 0.75).abs() < 1e-12 && (p[8] - 0.25 / 0.75).abs() < 1e-12);
        assert_eq!(p[0], 0.0);
        assert!(candidate_probs(&tok("x", &[("x", 0.9)]), &verdict::DIGITS).is_none());
    }
}
