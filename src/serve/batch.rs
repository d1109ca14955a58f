//! Dynamic batching: a bounded queue of jobs feeding the model thread (its own OS thread: the model never runs on
//! the async runtime). The thread takes the first waiting job, collects more for a short window (those already
//! queued at once) up to the batch size in rows, and answers them in one model call; rows of different settings
//! share a batch. A full queue refuses at once (429 with `Retry-After`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::player::{Info, Job, Player, Spec};

/// How the model thread batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Rows (choices) per model call at most; a single larger request runs alone.
    pub max_rows: usize,
    /// How long the first job of a batch waits for company.
    pub window: Duration,
    /// Jobs waiting at most (beyond it: 429).
    pub queue: usize,
}

/// The handlers' end of the queue.
pub struct Queue {
    tx: SyncSender<Job>,
    capacity: usize,
}

impl Queue {
    /// Queues a job, or refuses it: 429 when the queue is full, 503 when the model thread is gone.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ApiError::busy(self.capacity)),
            Err(TrySendError::Disconnected(_)) => {
                Err(ApiError::unavailable("the model thread has stopped"))
            }
        }
    }
}

/// Starts the model thread: builds the player there and returns once it is ready (or failed to build). The
/// thread ends when every `Queue` is dropped and the jobs left are answered.
pub fn start(spec: Spec, b: Batching) -> Result<(Queue, Info, JoinHandle<()>), String> {
    let (tx, rx) = sync_channel::<Job>(b.queue.max(1));
    let (ready_tx, ready_rx) = sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("sparring-serve-model".into())
        .spawn(move || {
            let player = match Player::build(spec) {
                Ok((player, info)) => {
                    let _ = ready_tx.send(Ok(info));
                    player
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            run(player, rx, b);
        })
        .map_err(|e| format!("starting the model thread: {e}"))?;
    let info = match ready_rx.recv() {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            let _ = handle.join();
            return Err(e);
        }
        Err(_) => {
            let _ = handle.join();
            return Err("the model thread stopped while building the player".into());
        }
    };
    Ok((
        Queue {
            tx,
            capacity: b.queue.max(1),
        },
        info,
        handle,
    ))
}

/// The model thread's loop.
fn run(mut player: Player, rx: Receiver<Job>, b: Batching) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut rows = first.ask.n;
        let mut jobs = vec![first];
        let deadline = Instant::now() + b.window;
        while rows < b.max_rows {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(left).ok()
            };
            let Some(job) = next else { break };
            if rows + job.ask.n > b.max_rows {
                carry = Some(job);
                break;
            }
            rows += job.ask.n;
            jobs.push(job);
        }
        // Clients that left while waiting are not answered.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        tracing::debug!(
            jobs = jobs.len(),
            rows = jobs.iter().map(|j| j.ask.n).sum::<usize>(),
            "model call"
        );
        // A panic in the model answers the batch's jobs by dropping their channels (500); the server goes on.
        if catch_unwind(AssertUnwindSafe(|| player.run(jobs))).is_err() {
            tracing::error!("the model panicked on a batch; its requests failed");
        }
    }
}
