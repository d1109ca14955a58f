//! The HTTP surface: the router (`POST /v1/chat/completions`, `GET /v1/models`, `GET /health`), the bearer-token
//! check, the shared state, the handlers and the request log.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sparring_actors::chatlm::complete::{RowOutput, TokenInfo};
use sparring_actors::openai::wire::{
    ChatResponse, Choice, ChoiceLogprobs, ModelCard, ModelList, ResponseMessage, TokenLogprob,
    TopLogprob, Usage,
};
use sparring_engine::rng::SplitMix64;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::batch::Queue;
use super::error::ApiError;
use super::player::{Event, Info, Job};
use super::request::{self, ChatBody, MAX_BODY};
use super::sse;

/// The header whose value the request log records.
pub const REQUEST_HEADER: &str = "x-sparring-request";

/// The server's shared state.
pub struct App {
    pub queue: Queue,
    pub info: Info,
    /// The served model id (listed), then its accepted aliases.
    pub ids: Vec<String>,
    pub api_key: Option<String>,
    pub log: Option<Mutex<std::fs::File>>,
    /// Seeds of requests that give none, and response ids.
    pub counter: AtomicU64,
    pub seed_base: u64,
}

impl App {
    /// The served model id.
    pub fn id(&self) -> &str {
        self.ids.first().map(String::as_str).unwrap_or("sparring")
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A seed for a request without one (fresh per request).
    pub fn fresh_seed(&self) -> u64 {
        SplitMix64::new(self.seed_base ^ self.next()).next_u64()
    }

    /// A response id.
    pub fn response_id(&self) -> String {
        format!("chatcmpl-{:016x}", self.fresh_seed())
    }

    /// Appends one line to the request log (time-free: the request's header value, `n` and token counts).
    pub fn log_request(&self, tag: Option<&str>, n: usize, prompt: usize, completion: usize) {
        let Some(f) = &self.log else { return };
        let line = serde_json::json!({
            "request": tag,
            "n": n,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        });
        let mut text = line.to_string();
        text.push('\n');
        if let Ok(mut f) = f.lock()
            && let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.flush())
        {
            tracing::warn!("request log: {e}");
        }
    }
}

/// The router over the shared state.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(fallback)
        .method_not_allowed_fallback(not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

/// With an API key, every request needs `Authorization: Bearer <key>` (compared in constant time).
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => {
                return ApiError::unauthorized("missing `Authorization: Bearer` token")
                    .into_response();
            }
            Some(t) if !bool::from(t.as_bytes().ct_eq(key.as_bytes())) => {
                return ApiError::unauthorized("invalid API key").into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn fallback(uri: Uri) -> ApiError {
    ApiError::no_route(uri.path())
}

async fn not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::not_allowed(method.as_str(), uri.path())
}

async fn models(State(app): State<Arc<App>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: app.id().to_string(),
            object: "model".into(),
            created: 0,
            owned_by: "sparring".into(),
        }],
    })
}

/// Unix seconds (the responses' `created`).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ChatBody(req): ChatBody,
) -> Result<Response, ApiError> {
    if !req.model.is_empty() && !app.ids.contains(&req.model) {
        return Err(ApiError::no_model(&req.model, app.id()));
    }
    let ask = request::validate(&req, &app.info.defaults, app.fresh_seed())?;
    if ask.logprobs.is_some() && !app.info.logprobs {
        return Err(ApiError::bad(
            Some("logprobs"),
            "this player's kind has no log-probs to serve",
        ));
    }
    let tag = headers
        .get(REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (tx, mut rx) = unbounded_channel();
    let stream = ask.stream;
    let meta = Meta {
        n: ask.n,
        logprobs: ask.logprobs.is_some(),
        include_usage: ask.include_usage,
        tag,
    };
    app.queue.submit(Job { ask, reply: tx })?;
    if stream {
        // An error before the first token is answered with its status; later ones inside the stream.
        let first = rx
            .recv()
            .await
            .ok_or_else(|| ApiError::internal("the model thread dropped the request"))?;
        if let Event::Failed(e) = first {
            return Err(e);
        }
        return Ok(sse::respond(app, meta, first, rx));
    }
    let (prompt_tokens, completion_tokens, outputs) = wait(&mut rx).await?;
    app.log_request(
        meta.tag.as_deref(),
        meta.n,
        prompt_tokens,
        completion_tokens,
    );
    let body = ChatResponse {
        id: app.response_id(),
        object: "chat.completion".into(),
        created: now(),
        model: app.id().to_string(),
        choices: outputs
            .into_iter()
            .enumerate()
            .map(|(i, o)| choice(i, o, meta.logprobs))
            .collect(),
        usage: Some(usage(prompt_tokens, completion_tokens)),
        system_fingerprint: None,
    };
    Ok(Json(body).into_response())
}

/// What the answer of a request needs beyond the model's outputs.
pub struct Meta {
    pub n: usize,
    pub logprobs: bool,
    pub include_usage: bool,
    pub tag: Option<String>,
}

async fn wait(
    rx: &mut UnboundedReceiver<Event>,
) -> Result<(usize, usize, Vec<RowOutput>), ApiError> {
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Piece { .. } => {}
            Event::Done {
                prompt_tokens,
                completion_tokens,
                outputs,
            } => return Ok((prompt_tokens, completion_tokens, outputs)),
            Event::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the model thread dropped the request"))
}

/// Token counts (the prompt counts once, whatever `n`, as OpenAI counts).
pub fn usage(prompt: usize, completion: usize) -> Usage {
    Usage {
        prompt_tokens: prompt as u64,
        completion_tokens: completion as u64,
        total_tokens: (prompt + completion) as u64,
    }
}

/// The wire form of tokens' log-probs.
pub fn wire_logprobs(lps: &[TokenInfo]) -> ChoiceLogprobs {
    ChoiceLogprobs {
        content: Some(
            lps.iter()
                .map(|t| TokenLogprob {
                    token: t.token.clone(),
                    logprob: t.logprob as f64,
                    bytes: Some(t.token.as_bytes().to_vec()),
                    top_logprobs: t
                        .top
                        .iter()
                        .map(|(tok, lp)| TopLogprob {
                            token: tok.clone(),
                            logprob: *lp as f64,
                            bytes: Some(tok.as_bytes().to_vec()),
                        })
                        .collect(),
                })
                .collect(),
        ),
    }
}

fn choice(index: usize, o: RowOutput, logprobs: bool) -> Choice {
    Choice {
        index: index as u64,
        message: ResponseMessage {
            role: "assistant".into(),
            content: Some(o.text),
        },
        finish_reason: Some(o.finish.as_str().to_string()),
        logprobs: logprobs.then(|| wire_logprobs(o.logprobs.as_deref().unwrap_or(&[]))),
    }
}
