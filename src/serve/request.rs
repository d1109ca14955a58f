//! A chat-completions request from its body to what the model thread runs (`Ask`): the JSON extractor (413 over
//! the body limit, 400 naming the field a value does not fit) and the checks and defaults of every parameter, with
//! the server's limits.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};
use sparring_actors::chatlm::ChatMessage;
use sparring_actors::chatlm::complete::{Defaults, PromptMode};
use sparring_actors::openai::wire::ChatRequest;

use super::error::ApiError;

/// Request bodies larger than this are refused (413).
pub const MAX_BODY: usize = 4 << 20;
/// Messages per request at most.
pub const MAX_MESSAGES: usize = 256;
/// `max_tokens` at most (the model's context may allow fewer).
pub const MAX_TOKENS: usize = 4096;
/// `n` at most.
pub const MAX_N: usize = 16;
/// `top_logprobs` at most (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Stop strings at most (OpenAI's limit), and their length.
pub const MAX_STOP: usize = 4;
pub const MAX_STOP_LEN: usize = 256;

/// A validated request: what the model thread needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub messages: Vec<ChatMessage>,
    pub mode: PromptMode,
    pub n: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// Asked for explicitly (an error when it does not fit the context), else the role's default (cut to fit).
    pub max_tokens: Option<usize>,
    pub default_max_tokens: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    /// `Some(k)`: log-probs with `k` alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

/// The body of `POST /v1/chat/completions`, parsed.
pub struct ChatBody(pub ChatRequest);

impl<S: Send + Sync> FromRequest<S> for ChatBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(MAX_BODY)
            } else {
                ApiError::bad(None, format!("reading the body: {}", e.body_text()))
            }
        })?;
        parse(&bytes).map(ChatBody)
    }
}

/// Parses a body, naming the field at fault when a value has the wrong shape.
pub fn parse(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(None, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(ApiError::bad(None, "the body must be a JSON object"));
    };
    serde_json::from_value(Value::Object(obj.clone())).map_err(|e| {
        // Every field has a default: the one that fails alone is the one at fault.
        let culprit = obj.iter().find(|(k, v)| {
            let one: Map<String, Value> = [((*k).clone(), (*v).clone())].into_iter().collect();
            serde_json::from_value::<ChatRequest>(Value::Object(one)).is_err()
        });
        match culprit {
            Some((k, _)) => ApiError::bad(Some(k), format!("`{k}`: {e}")),
            None => ApiError::bad(None, e.to_string()),
        }
    })
}

fn int(v: Option<u64>, param: &str, lo: u64, hi: usize) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x >= lo && x <= hi as u64 => Ok(Some(x as usize)),
        Some(x) => Err(ApiError::bad(
            Some(param),
            format!("`{param}` = {x} must be in {lo}..={hi}"),
        )),
    }
}

/// Checks a request against the server's limits and fills the role's defaults; `seed` when it gives none.
pub fn validate(r: &ChatRequest, d: &Defaults, seed: u64) -> Result<Ask, ApiError> {
    if r.messages.is_empty() {
        return Err(ApiError::bad(Some("messages"), "`messages` is empty"));
    }
    if r.messages.len() > MAX_MESSAGES {
        return Err(ApiError::bad(
            Some("messages"),
            format!("more than {MAX_MESSAGES} messages"),
        ));
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.iter().enumerate() {
        let content = match &m.content {
            None => String::new(),
            Some(c) => c.text().ok_or_else(|| {
                ApiError::bad(
                    Some(&format!("messages[{i}].content")),
                    "only text content parts are supported",
                )
            })?,
        };
        let role = match m.role.as_str() {
            "developer" => "system",
            "system" | "user" | "assistant" => m.role.as_str(),
            other => {
                return Err(ApiError::bad(
                    Some(&format!("messages[{i}].role")),
                    format!("role `{other}`: expected system, developer, user or assistant"),
                ));
            }
        };
        messages.push(ChatMessage::new(role, content));
    }
    let cont = r.continue_final_message.unwrap_or(false);
    let mode = match (cont, r.add_generation_prompt) {
        (true, Some(true)) => {
            return Err(ApiError::bad(
                Some("continue_final_message"),
                "`continue_final_message` and `add_generation_prompt` cannot both be true",
            ));
        }
        (true, _) => {
            if r.messages.last().map(|m| m.role.as_str()) != Some("assistant") {
                return Err(ApiError::bad(
                    Some("continue_final_message"),
                    "`continue_final_message` needs an assistant message last",
                ));
            }
            PromptMode::Continue
        }
        (false, Some(false)) => PromptMode::Raw,
        (false, _) => PromptMode::Answer,
    };
    let n = int(r.n, "n", 1, MAX_N)?.unwrap_or(1);
    let max_tokens = match r.max_completion_tokens {
        Some(_) => int(
            r.max_completion_tokens,
            "max_completion_tokens",
            1,
            MAX_TOKENS,
        )?,
        None => int(r.max_tokens, "max_tokens", 1, MAX_TOKENS)?,
    };
    let temperature = match r.temperature {
        None => d.temperature,
        Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => t as f32,
        Some(t) => {
            return Err(ApiError::bad(
                Some("temperature"),
                format!("`temperature` = {t} must be in [0, 2]"),
            ));
        }
    };
    let top_p = match r.top_p {
        None => d.top_p,
        Some(p) if p > 0.0 && p <= 1.0 => p as f32,
        Some(p) => {
            return Err(ApiError::bad(
                Some("top_p"),
                format!("`top_p` = {p} must be in (0, 1]"),
            ));
        }
    };
    let stop: Vec<String> = r.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP || stop.iter().any(|s| s.len() > MAX_STOP_LEN) {
        return Err(ApiError::bad(
            Some("stop"),
            format!("at most {MAX_STOP} stop strings of at most {MAX_STOP_LEN} bytes"),
        ));
    }
    let top = int(r.top_logprobs, "top_logprobs", 0, MAX_TOP_LOGPROBS)?;
    let logprobs = match (r.logprobs.unwrap_or(false), top) {
        (true, k) => Some(k.unwrap_or(0)),
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::bad(
                Some("top_logprobs"),
                "`top_logprobs` needs `logprobs` = true",
            ));
        }
        (false, _) => None,
    };
    let stream = r.stream.unwrap_or(false);
    Ok(Ask {
        messages,
        mode,
        n,
        temperature,
        top_p,
        max_tokens,
        default_max_tokens: d.max_tokens.clamp(1, MAX_TOKENS),
        seed: r.seed.unwrap_or(seed),
        stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        logprobs,
        stream,
        include_usage: stream
            && r.stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        temperature: 0.7,
        top_p: 0.95,
        max_tokens: 96,
    };

    fn ask(body: &str) -> Result<Ask, ApiError> {
        validate(&parse(body.as_bytes())?, &D, 1)
    }

    #[test]
    fn a_wrong_field_is_named() {
        let e = ask(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e =
            ask(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":3}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = ask(r#"{"messages":[{"role":"user","content":"hi"}],"n":0}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        assert!(ask("{").is_err());
        assert!(ask("[1]").is_err());
        assert_eq!(
            ask(r#"{"messages":[]}"#).unwrap_err().param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn defaults_and_prefill() {
        let a = ask(r#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            (a.temperature, a.top_p, a.n, a.max_tokens),
            (0.7, 0.95, 1, None)
        );
        assert_eq!(a.mode, PromptMode::Answer);
        let a = ask(
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"<p>"}],
                "continue_final_message":true,"add_generation_prompt":false}"#,
        )
        .unwrap();
        assert_eq!(a.mode, PromptMode::Continue);
        let e =
            ask(r#"{"messages":[{"role":"user","content":"hi"}],"continue_final_message":true}"#)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("continue_final_message"));
    }
}
