//! Streamed completions as server-sent events: a first chunk with each choice's role, a chunk per piece of text
//! (with its tokens' log-probs when asked), each choice's last chunk with its `finish_reason`, a usage chunk with
//! `stream_options.include_usage`, then `data: [DONE]`. An error after the stream began is sent as an error event
//! before `[DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use sparring_actors::openai::wire::{ChatChunk, ChunkChoice, Delta};
use tokio::sync::mpsc::UnboundedReceiver;

use super::error::ApiError;
use super::player::Event;
use super::routes::{App, Meta, now, usage, wire_logprobs};

/// The streamed answer of a request whose first event is `first`.
pub fn respond(app: Arc<App>, meta: Meta, first: Event, rx: UnboundedReceiver<Event>) -> Response {
    let mut s = Chunks {
        id: app.response_id(),
        created: now(),
        app,
        meta,
        rx,
        out: VecDeque::new(),
        done: false,
    };
    for i in 0..s.meta.n {
        let delta = Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
        };
        s.push(s.chunk(i, delta, None, None));
    }
    s.handle(first);
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

struct Chunks {
    app: Arc<App>,
    meta: Meta,
    id: String,
    created: u64,
    rx: UnboundedReceiver<Event>,
    out: VecDeque<SseEvent>,
    done: bool,
}

impl Chunks {
    fn chunk(
        &self,
        index: usize,
        delta: Delta,
        logprobs: Option<sparring_actors::openai::wire::ChoiceLogprobs>,
        finish: Option<String>,
    ) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.app.id().to_string(),
            choices: vec![ChunkChoice {
                index: index as u64,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: None,
        }
    }

    fn push(&mut self, c: ChatChunk) {
        match serde_json::to_string(&c) {
            Ok(s) => self.out.push_back(SseEvent::default().data(s)),
            Err(e) => self.fail(ApiError::internal(format!("encoding a chunk: {e}"))),
        }
    }

    fn fail(&mut self, e: ApiError) {
        let body = serde_json::to_string(&e.body()).unwrap_or_else(|_| "{}".into());
        self.out.push_back(SseEvent::default().data(body));
        self.finish();
    }

    fn finish(&mut self) {
        self.out.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Piece { choice, piece } => {
                let logprobs = self.meta.logprobs.then(|| wire_logprobs(&piece.logprobs));
                let delta = Delta {
                    role: None,
                    content: Some(piece.text),
                };
                let finish = piece.finish.map(|f| f.as_str().to_string());
                let c = self.chunk(choice, delta, logprobs, finish);
                self.push(c);
            }
            Event::Done {
                prompt_tokens,
                completion_tokens,
                ..
            } => {
                self.app.log_request(
                    self.meta.tag.as_deref(),
                    self.meta.n,
                    prompt_tokens,
                    completion_tokens,
                );
                if self.meta.include_usage {
                    let mut c = self.chunk(0, Delta::default(), None, None);
                    c.choices.clear();
                    c.usage = Some(usage(prompt_tokens, completion_tokens));
                    self.push(c);
                }
                self.finish();
            }
            Event::Failed(e) => self.fail(e),
        }
    }
}

impl Stream for Chunks {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let me = self.get_mut();
        loop {
            if let Some(e) = me.out.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if me.done {
                return Poll::Ready(None);
            }
            match me.rx.poll_recv(cx) {
                Poll::Ready(Some(ev)) => me.handle(ev),
                Poll::Ready(None) => {
                    me.fail(ApiError::internal("the model thread dropped the request"))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
