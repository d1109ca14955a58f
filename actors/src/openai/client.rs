//! The HTTP client of one OpenAI-compatible chat-completions endpoint (`Endpoint`): request bodies from the
//! scenario's settings, and sending a batch of them with at most `max_concurrency` in flight, at most
//! `requests_per_minute` started, a per-request timeout and retries with exponential back-off and jitter (connect
//! errors, timeouts, 429, 5xx, malformed answers), honouring `Retry-After` up to a cap.
//!
//! An `Endpoint` owns a current-thread tokio runtime and blocks the role's own thread on it: it never runs on, or
//! blocks, the engine's runtime. The API key is read from the environment variable the scenario names, sent as
//! `Authorization: Bearer`, and kept out of `Debug` output and every error message.

use super::params::EndpointParams;
use super::wire::{ChatRequest, ChatResponse, Message, Stop};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use sparring_engine::RoleError;
use sparring_engine::rng::{hash_words, unit_f64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The header naming the game request a body answers (for a server's request log).
pub const REQUEST_HEADER: &str = "x-sparring-request";

/// One endpoint: its URL, settings, HTTP client and runtime.
pub struct Endpoint {
    inner: Arc<Inner>,
    rt: tokio::runtime::Runtime,
}

/// What the request tasks share.
struct Inner {
    url: String,
    params: EndpointParams,
    key: Option<String>,
    http: reqwest::Client,
    permits: Semaphore,
    /// When the next request may start (`requests_per_minute`).
    next_start: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.inner.url)
            .field("model", &self.inner.params.model)
            .field("api_key_env", &self.inner.params.api_key_env)
            .field("has_key", &self.inner.key.is_some())
            .finish()
    }
}

/// One failed attempt.
struct Failure {
    /// What went wrong (status and the body's first line, or the transport error).
    message: String,
    /// Worth another try (connect error, timeout, 429, 5xx, malformed answer).
    retry: bool,
    /// The server's `Retry-After`.
    retry_after: Option<Duration>,
}

impl Failure {
    fn retry(message: String) -> Self {
        Failure {
            message,
            retry: true,
            retry_after: None,
        }
    }
}

impl Endpoint {
    /// Validates `p`, reads the API key from the variable `api_key_env` names (an error names the variable, never
    /// a value) and builds the client and its runtime.
    pub fn new(p: &EndpointParams) -> Result<Endpoint, RoleError> {
        p.validate()?;
        let key = match &p.api_key_env {
            None => None,
            Some(name) => Some(read_key(name, &p.base_url)?),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RoleError::failed(format!("runtime of the HTTP client: {e}")))?;
        let timeout = Duration::from_secs_f64(p.timeout_s);
        let http = {
            let _in = rt.enter();
            reqwest::Client::builder()
                .connect_timeout(timeout)
                .build()
                .map_err(|e| RoleError::failed(format!("HTTP client for {}: {e}", p.base_url)))?
        };
        let url = format!(
            "{}/chat/completions",
            p.base_url.trim().trim_end_matches('/')
        );
        Ok(Endpoint {
            inner: Arc::new(Inner {
                url,
                params: p.clone(),
                key,
                http,
                permits: Semaphore::new(p.max_concurrency),
                next_start: Mutex::new(None),
            }),
            rt,
        })
    }

    /// The URL requests are POSTed to (`{base_url}/chat/completions`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The settings it was built with.
    pub fn params(&self) -> &EndpointParams {
        &self.inner.params
    }

    /// A body with the scenario's settings filled in (model, max_tokens, temperature, top_p, stop, extra; `seed`
    /// is the caller's: [`EndpointParams::sample_seed`]). A non-empty `prefill` with `prefill = true` is sent as
    /// a final assistant message to continue (`continue_final_message`, no generation prompt); otherwise it is
    /// not sent.
    pub fn body(&self, mut messages: Vec<Message>, prefill: &str) -> ChatRequest {
        let p = &self.inner.params;
        let continued = p.prefill && !prefill.is_empty();
        if continued {
            messages.push(Message::new("assistant", prefill));
        }
        let mut body = ChatRequest {
            model: p.model.clone(),
            messages,
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            stop: (!p.stop.is_empty()).then(|| Stop::Many(p.stop.clone())),
            continue_final_message: continued.then_some(true),
            add_generation_prompt: continued.then_some(false),
            ..ChatRequest::default()
        };
        if !p.extra.is_empty() {
            // `extra` overrides: merged as JSON, so a typed field it names (`max_completion_tokens`,
            // `logprobs`, ...) lands in its field rather than twice in the body.
            if let Ok(Value::Object(mut v)) = serde_json::to_value(&body) {
                v.extend(p.extra.clone());
                if let Ok(merged) = serde_json::from_value(Value::Object(v)) {
                    body = merged;
                }
            }
        }
        body
    }

    /// Adds stop strings (a kind's own) to a body's.
    pub fn add_stops(body: &mut ChatRequest, stops: &[&str]) {
        if stops.is_empty() {
            return;
        }
        let mut all = body.stop.as_ref().map(Stop::to_vec).unwrap_or_default();
        for s in stops {
            if !all.iter().any(|x| x == s) {
                all.push((*s).to_string());
            }
        }
        body.stop = Some(Stop::Many(all));
    }

    /// Sends every body; the responses in order. See [`Endpoint::complete_keyed`].
    pub fn complete_all(&self, bodies: Vec<ChatRequest>) -> Result<Vec<ChatResponse>, RoleError> {
        self.run(bodies.into_iter().map(|b| (None, b)).collect())
    }

    /// Sends every body with its request key in the header `x-sparring-request`; the responses in order. At most
    /// `max_concurrency` in flight and `requests_per_minute` started; each attempt has `timeout_s`; connect
    /// errors, timeouts, 429, 5xx and a 200 that is no chat completion are retried up to `max_retries` times.
    /// A request still failing is `RoleError::Failed` naming the URL, the status and the body's first line (or
    /// the transport error).
    pub fn complete_keyed(
        &self,
        bodies: Vec<(String, ChatRequest)>,
    ) -> Result<Vec<ChatResponse>, RoleError> {
        self.run(bodies.into_iter().map(|(k, b)| (Some(k), b)).collect())
    }

    fn run(
        &self,
        bodies: Vec<(Option<String>, ChatRequest)>,
    ) -> Result<Vec<ChatResponse>, RoleError> {
        let inner = &self.inner;
        self.rt.block_on(async {
            let tasks: Vec<_> = bodies
                .into_iter()
                .enumerate()
                .map(|(i, (key, body))| {
                    let inner = Arc::clone(inner);
                    tokio::spawn(async move { inner.request(i as u64, key, body).await })
                })
                .collect();
            let mut out = Vec::with_capacity(tasks.len());
            let mut tasks = tasks.into_iter();
            while let Some(t) = tasks.next() {
                let r = match t.await {
                    Ok(r) => r,
                    Err(e) => Err(RoleError::failed(format!(
                        "{}: request task: {e}",
                        inner.url
                    ))),
                };
                match r {
                    Ok(resp) => out.push(resp),
                    Err(e) => {
                        tasks.for_each(|t| t.abort());
                        return Err(e);
                    }
                }
            }
            Ok(out)
        })
    }
}

impl Inner {
    /// One body, with its retries.
    async fn request(
        &self,
        index: u64,
        key: Option<String>,
        body: ChatRequest,
    ) -> Result<ChatResponse, RoleError> {
        let p = &self.params;
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|e| RoleError::failed(format!("{}: {e}", self.url)))?;
                self.pace().await;
                let timeout = Duration::from_secs_f64(p.timeout_s);
                match tokio::time::timeout(timeout, self.attempt(key.as_deref(), &body)).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::retry(format!(
                        "no answer within timeout_s = {}",
                        p.timeout_s
                    ))),
                }
            };
            let f = match outcome {
                Ok(resp) => return Ok(resp),
                Err(f) => f,
            };
            if !f.retry || attempt >= p.max_retries {
                let tries = attempt + 1;
                let msg = format!(
                    "endpoint {}: {} (after {tries} attempt{})",
                    self.url,
                    f.message,
                    if tries == 1 { "" } else { "s" }
                );
                return Err(RoleError::Failed(self.redact(msg)));
            }
            tracing::debug!(url = %self.url, attempt, "retrying: {}", self.redact(f.message.clone()));
            tokio::time::sleep(self.delay(index, attempt, f.retry_after)).await;
            attempt += 1;
        }
    }

    /// One attempt: send, read the whole answer, check it is a chat completion.
    async fn attempt(
        &self,
        key: Option<&str>,
        body: &ChatRequest,
    ) -> Result<ChatResponse, Failure> {
        let mut req = self.http.post(&self.url).json(body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(k) = key {
            req = req.header(REQUEST_HEADER, header_value(k));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::retry(transport_error(&e, &self.url)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| {
            Failure::retry(format!(
                "HTTP {status}, reading the body: {}",
                transport_error(&e, &self.url)
            ))
        })?;
        let line = first_line(&bytes);
        if !status.is_success() {
            let retry = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error();
            return Err(Failure {
                message: format!("HTTP {status}: {line}"),
                retry,
                retry_after: retry_after(&headers),
            });
        }
        let ctype = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ctype.is_empty() && !ctype.to_ascii_lowercase().contains("json") {
            return Err(Failure::retry(format!(
                "HTTP {status} with content type `{ctype}`, not JSON: {line}"
            )));
        }
        let parsed: ChatResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::retry(format!("HTTP {status}, no chat completion ({e}): {line}"))
        })?;
        if parsed.choices.is_empty() {
            return Err(Failure::retry(format!("HTTP {status}, no choices: {line}")));
        }
        Ok(parsed)
    }

    /// Waits for this request's start slot under `requests_per_minute`.
    async fn pace(&self) {
        let Some(rpm) = self.params.requests_per_minute else {
            return;
        };
        let gap = Duration::from_secs_f64(60.0 / rpm);
        let start = {
            let mut next = self.next_start.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + gap);
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// Back-off before retry `attempt + 1`: the server's `Retry-After`, else `backoff_s · 2^attempt` with a
    /// deterministic jitter in [0.5, 1.5); both capped at `retry_cap_s`.
    fn delay(&self, index: u64, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let p = &self.params;
        let secs = match retry_after {
            Some(d) => d.as_secs_f64(),
            None => {
                let jitter = 0.5 + unit_f64(hash_words(0x0BAC_C0FF, &[index, attempt as u64]));
                p.backoff_s * 2f64.powi(attempt.min(30) as i32) * jitter
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, p.retry_cap_s))
    }

    /// `msg` with the API key, should a server have echoed it, masked.
    fn redact(&self, msg: String) -> String {
        match &self.key {
            Some(k) if !k.is_empty() && msg.contains(k.as_str()) => msg.replace(k.as_str(), "***"),
            _ => msg,
        }
    }
}

/// The API key from the variable `name`: set, Unicode, not empty.
fn read_key(name: &str, base_url: &str) -> Result<String, RoleError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        Ok(_) => Err(RoleError::config(
            "api_key_env",
            format!("environment variable `{name}` (the API key of {base_url}) is empty"),
        )),
        Err(std::env::VarError::NotPresent) => Err(RoleError::config(
            "api_key_env",
            format!("environment variable `{name}` (the API key of {base_url}) is not set"),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(RoleError::config(
            "api_key_env",
            format!(
                "environment variable `{name}` (the API key of {base_url}) is not valid Unicode"
            ),
        )),
    }
}

/// A request key as a header value (bytes outside visible ASCII percent-encoded).
fn header_value(key: &str) -> HeaderValue {
    let visible = |b: u8| (0x20..0x7f).contains(&b);
    if key.bytes().all(visible)
        && let Ok(v) = HeaderValue::from_str(key)
    {
        return v;
    }
    let enc: String = key
        .bytes()
        .map(|b| {
            if visible(b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&enc).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
}

/// A transport error with its causes (`error sending request: …: connection refused`), without the URL the
/// message around it names.
fn transport_error(e: &reqwest::Error, url: &str) -> String {
    let mut msg = if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg.replace(&format!(" for url ({url})"), "")
}

/// A body's first non-empty line, cut to 200 characters (`(empty body)` when none).
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.is_empty() {
        return "(empty body)".into();
    }
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)));
    }
    let at = http_date(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    let d: i64 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [hh, mm, ss] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// The text of a response's first choice (empty when the server sent none).
pub fn response_text(r: &ChatResponse) -> String {
    r.choices
        .first()
        .and_then(|c| c.message.content.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_first_lines() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("yesterday"), None);
        assert_eq!(first_line(b"\n  <html>\n<body>"), "<html>");
        assert_eq!(first_line(b""), "(empty body)");
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(header_value("r1/a b").to_str().unwrap(), "r1/a b");
        assert_eq!(header_value("r1/é").to_str().unwrap(), "r1/%C3%A9");
    }
}
