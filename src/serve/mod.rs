//! `sparring serve`: one player (attacker, defender or judge) of a scenario, or of a run at a committed round,
//! behind an OpenAI-compatible chat-completions endpoint. This file is the command: its options, which player at
//! which state, the model thread, binding and graceful shutdown. Beside it: `routes` (router, handlers, auth,
//! request log), `request` (body parsing and parameter checks), `error` (OpenAI's error shape), `batch` (the
//! bounded queue and the batching model thread), `player` (the model side), `sse` (streaming).
//!
//! Model ids: the served id is `sparring-<role>` (listed by `GET /v1/models`); the role name, the model file's
//! stem (chat kinds) and the scenario's file stem (or the run directory's name) are accepted too, as is an empty
//! `model`.

mod batch;
mod error;
mod player;
mod request;
mod routes;
mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sparring_engine::registry::Registry;
use sparring_engine::{Role, scenario};

/// The options of `sparring serve`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Model ids: `sparring-<role>` (listed by GET /v1/models); the role name, the model file's stem (chat kinds) and \
the scenario file's stem (or the run directory's name) are accepted too, as is an empty `model`; any other is a \
404.

Players: `chat-lm` (its trained weights at the round: LoRA merged or full) and `chat-lm-judge` serve their chat \
model through its chat template, with log-probs and `continue_final_message` (a prefilled assistant turn); \
sampling defaults are the role's scenario settings (temperature, top_p, max_new_tokens). Other attacker/defender \
kinds answer through their own `generate` with the last user message as input (no log-probs).

Limits: body 4 MiB (413), 256 messages, max_tokens 4096 (and the model's context), n <= 16, top_logprobs <= 20, \
4 stop strings. Ctrl-C / SIGTERM: stop accepting, finish the requests in flight, exit 0.")]
pub struct ServeArgs {
    /// Scenario file (its initial player) or run directory (the player saved at --round).
    pub source: PathBuf,
    /// Which player to serve.
    #[arg(long, value_parser = ["attacker", "defender", "judge"])]
    pub role: String,
    /// With a run directory: the player of this committed round (default: the last committed one; 0 = initial).
    #[arg(long)]
    pub round: Option<u32>,
    /// Address to listen on (port 0: any free port; the address is printed as `listening on http://…`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Require `Authorization: Bearer <key>` on every request, the key read from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Append one JSON line per completion request: the `x-sparring-request` header (or null), `n`, prompt
    /// and completion tokens (no time: two runs' logs compare line for line).
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,
    /// Rows (choices) per model call at most: concurrent requests are batched up to it.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_batch: u64,
    /// How long a request waits for others to share its model call (milliseconds).
    #[arg(long, default_value_t = 5)]
    pub batch_window_ms: u64,
    /// Requests waiting for the model at most; beyond, 429 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub queue: u64,
    /// Override a scenario value (as for `run`), e.g. --set defender.model=/path/to/model.gguf.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// The player to build and the model ids it answers to.
fn spec(a: &ServeArgs, registry: &Registry) -> Result<(player::Spec, Vec<String>)> {
    let role = match a.role.as_str() {
        "attacker" => Role::Attacker,
        "defender" => Role::Defender,
        _ => Role::Judge,
    };
    let (run_dir, file) = crate::eval::scenario_or_run(&a.source);
    let loaded = scenario::load(&file, &a.set, registry).map_err(|e| anyhow!("{e}"))?;
    let ctx = loaded.context(role, run_dir.clone());
    let state = match &run_dir {
        Some(dir) => crate::eval::player_state(dir, role.as_str(), ctx.learns, a.round)?.1,
        None if a.round.is_some() => bail!("--round needs a run directory"),
        None => None,
    };
    let cfg = loaded.role(role);
    let mut ids = vec![format!("sparring-{role}"), role.as_str().to_string()];
    if let Some(stem) = a.source.file_stem().or_else(|| a.source.file_name()) {
        ids.push(stem.to_string_lossy().into_owned());
    }
    let spec = player::Spec {
        kind: cfg.kind.clone(),
        params: cfg.params.clone(),
        ctx,
        state,
    };
    Ok((spec, ids))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("shutting down: finishing the requests in flight");
}

/// `sparring serve`: builds the player, listens, serves until Ctrl-C / SIGTERM, then finishes the requests in
/// flight and returns.
pub fn cli(a: ServeArgs, registry: &Registry) -> Result<()> {
    let api_key = match &a.api_key_env {
        Some(var) => {
            let key = std::env::var(var)
                .with_context(|| format!("--api-key-env {var}: the variable is not set"))?;
            if key.is_empty() {
                bail!("--api-key-env {var}: the variable is empty");
            }
            Some(key)
        }
        None => None,
    };
    let log = match &a.request_log {
        Some(p) => Some(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("--request-log {}", p.display()))?,
        )),
        None => None,
    };
    let (spec, mut ids) = spec(&a, registry)?;
    let batching = batch::Batching {
        max_rows: a.max_batch as usize,
        window: Duration::from_millis(a.batch_window_ms),
        queue: a.queue as usize,
    };
    let (queue, info, model_thread) = batch::start(spec, batching).map_err(|e| anyhow!("{e}"))?;
    if let Some(stem) = &info.model_stem {
        ids.push(stem.clone());
    }
    let seed_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let app = Arc::new(routes::App {
        queue,
        info,
        ids,
        api_key,
        log,
        counter: AtomicU64::new(0),
        seed_base,
    });
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .with_context(|| format!("binding {}", a.addr))?;
        let local = listener.local_addr().context("the bound address")?;
        eprintln!("serving `{}` ({})", app.id(), a.source.display());
        eprintln!("listening on http://{local}");
        // TCP_NODELAY on every connection: streamed chunks are small writes, which Nagle's algorithm would hold
        // back for the client's delayed ACK (40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!("TCP_NODELAY: {e}");
            }
        });
        axum::serve(listener, routes::router(app))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")
    })?;
    // The router (and with it the queue's sender) is gone: the model thread ends once its jobs are answered.
    drop(rt);
    model_thread
        .join()
        .map_err(|_| anyhow!("the model thread panicked"))?;
    Ok(())
}
