//! The served player on the model thread: a chat model (`chat-lm` with its trained weights at the chosen state,
//! or `chat-lm-judge`) completing a batch of requests through `chatlm::complete`, or any other attacker/defender
//! kind through the generic `Policy::generate` (the last user message is its input; no log-probs). Each job's
//! answer (streamed pieces, then its outputs; or its error) goes back on the job's own channel.

use sparring_actors::chatlm::complete::{Completer, Defaults, Finish, Piece, RowOutput, RowSpec};
use sparring_actors::llama::generate::row_seed;
use sparring_engine::registry::BuildContext;
use sparring_engine::{Category, GenRequest, Policy, Role, Seed};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

use super::error::ApiError;
use super::request::Ask;

/// Everything needed to build the player (sent to the model thread, which builds it there).
pub struct Spec {
    pub kind: String,
    pub params: toml::Table,
    pub ctx: BuildContext,
    /// The role's saved state at the served round (`None`: its initial state).
    pub state: Option<Vec<u8>>,
}

/// What the server learns about the player once it is built.
#[derive(Debug, Clone)]
pub struct Info {
    pub defaults: Defaults,
    /// Log-probs can be served (chat kinds).
    pub logprobs: bool,
    /// The model file's stem (chat kinds), an alias of the served model id.
    pub model_stem: Option<String>,
}

/// What the model thread sends back on a job's channel.
#[derive(Debug)]
pub enum Event {
    /// A choice's text grew (streamed jobs only).
    Piece {
        choice: usize,
        piece: Piece,
    },
    /// The job is done: its prompt's token count and one output per choice.
    Done {
        prompt_tokens: usize,
        completion_tokens: usize,
        outputs: Vec<RowOutput>,
    },
    Failed(ApiError),
}

/// One request in the queue.
pub struct Job {
    pub ask: Ask,
    pub reply: UnboundedSender<Event>,
}

/// The player.
pub enum Player {
    Chat(Box<Completer>),
    Generic { policy: Box<dyn Policy>, role: Role },
}

impl Player {
    /// Builds the player a spec describes (on the thread that will run it).
    pub fn build(spec: Spec) -> Result<(Self, Info), String> {
        let role = spec.ctx.role;
        let what = |e: sparring_engine::RoleError| format!("{role} `{}`: {e}", spec.kind);
        match (role, spec.kind.as_str()) {
            (Role::Judge, "chat-lm-judge") => {
                let c = Completer::judge(&spec.params, &spec.ctx).map_err(what)?;
                Ok(Self::chat(c))
            }
            (Role::Judge, other) => Err(format!(
                "the judge's kind `{other}` cannot be served: `sparring serve --role judge` serves `chat-lm-judge`"
            )),
            (_, "chat-lm") => {
                let c = Completer::policy(&spec.params, &spec.ctx, spec.state.as_deref())
                    .map_err(what)?;
                Ok(Self::chat(c))
            }
            (_, kind) => {
                let registry = sparring_actors::registry();
                let mut policy = registry
                    .build_policy(kind, &spec.params, &spec.ctx)
                    .map_err(what)?;
                if let Some(s) = spec.state.as_deref().filter(|s| !s.is_empty()) {
                    policy.load(s).map_err(what)?;
                }
                let info = Info {
                    defaults: Defaults {
                        temperature: 1.0,
                        top_p: 1.0,
                        max_tokens: 256,
                    },
                    logprobs: false,
                    model_stem: None,
                };
                Ok((Player::Generic { policy, role }, info))
            }
        }
    }

    fn chat(c: Completer) -> (Self, Info) {
        let info = Info {
            defaults: c.defaults,
            logprobs: true,
            model_stem: c
                .lm
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned()),
        };
        (Player::Chat(Box::new(c)), info)
    }

    /// Answers a batch of jobs.
    pub fn run(&mut self, jobs: Vec<Job>) {
        match self {
            Player::Chat(c) => run_chat(c, jobs),
            Player::Generic { policy, role } => run_generic(policy.as_mut(), *role, jobs),
        }
    }
}

/// A job's rows after its prompt was rendered, or its error.
fn rows_of(c: &Completer, ask: &Ask) -> Result<(usize, Vec<RowSpec>), ApiError> {
    let prompt = c
        .prompt(&ask.messages, ask.mode)
        .map_err(|e| ApiError::bad(Some("messages"), format!("rendering the chat: {e}")))?;
    let ctx = c.context_len();
    if prompt.is_empty() || prompt.len() >= ctx {
        return Err(ApiError::bad(
            Some("messages"),
            format!(
                "the prompt is {} tokens; the model's context is {ctx}",
                prompt.len()
            ),
        ));
    }
    let room = ctx - prompt.len();
    let max_tokens = match ask.max_tokens {
        Some(m) if m > room => {
            return Err(ApiError::bad(
                Some("max_tokens"),
                format!(
                    "{} prompt tokens + max_tokens {m} exceed the model's context of {ctx}",
                    prompt.len()
                ),
            ));
        }
        Some(m) => m,
        None => ask.default_max_tokens.min(room),
    };
    let rows = (0..ask.n)
        .map(|i| RowSpec {
            prompt: prompt.clone(),
            seed: row_seed(ask.seed, i),
            temperature: ask.temperature,
            top_p: ask.top_p,
            max_tokens,
            stop: ask.stop.clone(),
            logprobs: ask.logprobs,
        })
        .collect();
    Ok((prompt.len(), rows))
}

/// KV cache one model call may allocate: a batch whose rows (each padded to the longest prompt plus the largest
/// `max_tokens`) would take more is split into calls made one after the other.
const KV_BUDGET: usize = 1 << 30;

fn run_chat(c: &Completer, jobs: Vec<Job>) {
    let per_token = c.kv_bytes_per_token().max(1);
    let mut part: Vec<Job> = Vec::new();
    let (mut longest, mut rows) = (0usize, 0usize);
    for job in jobs {
        // An upper bound on the job's row length: its prompt is not rendered yet, its text is.
        let chars: usize = job.ask.messages.iter().map(|m| m.content.len()).sum();
        let len = chars
            + 64 * job.ask.messages.len()
            + job.ask.max_tokens.unwrap_or(job.ask.default_max_tokens);
        let (l, r) = (longest.max(len), rows + job.ask.n);
        if !part.is_empty() && l * r * per_token > KV_BUDGET {
            run_chat_call(c, std::mem::take(&mut part));
            (longest, rows) = (len, job.ask.n);
        } else {
            (longest, rows) = (l, r);
        }
        part.push(job);
    }
    if !part.is_empty() {
        run_chat_call(c, part);
    }
}

/// Answers jobs in one model call.
fn run_chat_call(c: &Completer, jobs: Vec<Job>) {
    let mut rows = Vec::new();
    // Per batch row: (job, choice); per job: (its job, prompt tokens, first row).
    let mut owner = Vec::new();
    let mut live: Vec<(Job, usize, usize)> = Vec::new();
    for job in jobs {
        match rows_of(c, &job.ask) {
            Ok((p, rs)) => {
                let j = live.len();
                owner.extend((0..rs.len()).map(|i| (j, i)));
                live.push((job, p, rows.len()));
                rows.extend(rs);
            }
            Err(e) => {
                let _ = job.reply.send(Event::Failed(e));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let mut sink = |r: usize, piece: Piece| -> bool {
        let Some(&(j, choice)) = owner.get(r) else {
            return false;
        };
        let job = &live[j].0;
        if job.ask.stream {
            job.reply.send(Event::Piece { choice, piece }).is_ok()
        } else {
            !job.reply.is_closed()
        }
    };
    match c.complete(&rows, &mut sink) {
        Ok(outputs) => {
            let mut it = outputs.into_iter();
            for (job, prompt_tokens, _) in live {
                let outputs: Vec<RowOutput> = it.by_ref().take(job.ask.n).collect();
                let completion_tokens = outputs.iter().map(|o| o.tokens.len()).sum();
                let _ = job.reply.send(Event::Done {
                    prompt_tokens,
                    completion_tokens,
                    outputs,
                });
            }
        }
        Err(e) => {
            for (job, _, _) in live {
                let _ = job.reply.send(Event::Failed(ApiError::internal(format!(
                    "generation: {e}"
                ))));
            }
        }
    }
}

/// The text of a generic policy's output, cut before a stop string.
fn cut(mut text: String, stop: &[String]) -> String {
    if let Some(i) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(i);
    }
    text
}

fn run_generic(policy: &mut dyn Policy, role: Role, jobs: Vec<Job>) {
    let reqs: Vec<GenRequest> = jobs
        .iter()
        .enumerate()
        .map(|(k, job)| {
            let input = job
                .ask
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let id: Arc<str> = format!("serve:{k}").into();
            GenRequest {
                key: format!("serve/{k}"),
                role,
                seed: Seed {
                    id,
                    set: "serve".into(),
                    prompt: input.as_str().into(),
                    category: Category::Harmful,
                    topic: None,
                },
                input,
                n: job.ask.n,
                rng_seed: job.ask.seed,
                history: Vec::new(),
            }
        })
        .collect();
    match policy.generate(&reqs) {
        Ok(gens) if gens.len() == jobs.len() => {
            for ((job, req), gens) in jobs.into_iter().zip(&reqs).zip(gens) {
                // No tokenizer here: the prompt's words stand for its tokens.
                let prompt_tokens = req.input.split_whitespace().count();
                let completion_tokens = gens.iter().map(|g| g.tokens as usize).sum();
                let outputs: Vec<RowOutput> = gens
                    .into_iter()
                    .map(|g| RowOutput {
                        text: cut(g.text, &job.ask.stop),
                        tokens: Vec::new(),
                        finish: Finish::Stop,
                        logprobs: None,
                    })
                    .collect();
                if job.ask.stream {
                    for (choice, o) in outputs.iter().enumerate() {
                        let piece = Piece {
                            text: o.text.clone(),
                            logprobs: Vec::new(),
                            finish: Some(o.finish),
                        };
                        let _ = job.reply.send(Event::Piece { choice, piece });
                    }
                }
                let _ = job.reply.send(Event::Done {
                    prompt_tokens,
                    completion_tokens,
                    outputs,
                });
            }
        }
        Ok(_) => {
            for job in jobs {
                let _ = job.reply.send(Event::Failed(ApiError::internal(
                    "the policy answered a different number of requests",
                )));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Event::Failed(ApiError::internal(format!(
                    "generation: {e}"
                ))));
            }
        }
    }
}
