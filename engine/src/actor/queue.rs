//! A role's request queue, shared by the game (which submits), the role's compute thread (which serves the
//! oldest request first) and the supervisor (which re-sends the queue to a restarted worker, or fails it when
//! the role gives up). A request waits in its queue until it is answered, so no request is lost with a worker:
//! that is why requests go through these queues rather than through a worker actor's mailbox, which dies with
//! the actor. A typed request travels as an [`Envelope`] that holds its reply port; the queue sees it as a
//! [`Job`].

use super::protocol::{Implementation, Request};
use super::worker::Busy;
use super::{Slot, lock};
use crate::roles::RoleError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// A request on its way to an answer, whatever its type (an [`Envelope`]).
pub(crate) trait Job: Send + Sync {
    fn name(&self) -> &'static str;
    /// Serve the request on `imp` (on the role's thread).
    fn serve(&self, imp: &mut Implementation) -> Result<Served, RoleError>;
    /// Answer the caller with an error.
    fn fail(&self, error: String);
}

/// A served request: the role's new restore point, if the request made one, and the answer, ready to go to the
/// caller (it stays with the thread that computed it: a replaced thread's answer is dropped, not delivered).
pub(crate) struct Served {
    pub restore: Option<Arc<Vec<u8>>>,
    deliver: Box<dyn FnOnce(Busy) + Send>,
}

type Reply<T> = Arc<Mutex<Option<oneshot::Sender<Result<(T, Busy), String>>>>>;

/// A typed request with its caller's reply port.
pub(crate) struct Envelope<R: Request> {
    request: R,
    reply: Reply<R::Answer>,
}

impl<R: Request> Envelope<R> {
    pub(crate) fn new(request: R) -> (Arc<Self>, Ticket<R::Answer>) {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            request,
            reply: Arc::new(Mutex::new(Some(tx))),
        };
        (Arc::new(env), Ticket(rx))
    }
}

impl<R: Request> Job for Envelope<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn serve(&self, imp: &mut Implementation) -> Result<Served, RoleError> {
        let answer = match imp {
            Implementation::Remote(role) => role.call(&self.request)?,
            imp => self.request.serve(imp)?,
        };
        let reply = Arc::clone(&self.reply);
        Ok(Served {
            restore: self.request.restore_point(&answer),
            deliver: Box::new(move |busy| {
                if let Some(reply) = lock(&reply).take() {
                    let _ = reply.send(Ok((answer, busy)));
                }
            }),
        })
    }

    fn fail(&self, error: String) {
        if let Some(reply) = lock(&self.reply).take() {
            let _ = reply.send(Err(error));
        }
    }
}

/// A request sent to a role and not yet answered ([`super::GameHandle::submit`]).
pub struct Ticket<T>(oneshot::Receiver<Result<(T, Busy), String>>);

impl<T> Ticket<T> {
    /// The answer (after restarts if needed), with the interval the compute thread worked on it.
    pub async fn answer(self) -> Result<(T, Busy), String> {
        self.0
            .await
            .map_err(|_| "the game supervisor dropped a request".to_string())?
    }
}

/// A job on its way to a compute thread (shared with the queue's copy, which a restart re-sends).
pub(crate) struct Sent {
    pub id: u64,
    pub job: Arc<dyn Job>,
}

/// A request in a role's queue.
pub(crate) struct InFlight {
    pub id: u64,
    pub job: Arc<dyn Job>,
    /// Workers that failed on it.
    pub attempts: u32,
}

/// A role's requests, oldest first.
#[derive(Default)]
pub(crate) struct Queue {
    /// The live compute thread's channel and its incarnation; `None` while the worker restarts (requests wait
    /// here and are sent to the new thread).
    pub jobs: Option<(u64, crossbeam_channel::Sender<Sent>)>,
    pub in_flight: VecDeque<InFlight>,
    /// Restore point: the state from the last committed round or the last successful learn / save / load.
    pub restore: Arc<Vec<u8>>,
    /// Why the worker could not be restarted: every later request fails with it.
    pub dead: Option<String>,
}

/// The four roles' queues (shared by a [`super::GameHandle`], the supervisor and the compute threads).
pub struct Queues([Option<Mutex<Queue>>; 4]);

impl Queues {
    /// Queues for these roles, each starting from its restore point.
    pub(crate) fn new(roles: impl IntoIterator<Item = (Slot, Arc<Vec<u8>>)>) -> Self {
        let mut queues: [Option<Mutex<Queue>>; 4] = Default::default();
        for (slot, restore) in roles {
            queues[slot.index()] = Some(Mutex::new(Queue {
                restore,
                ..Default::default()
            }));
        }
        Queues(queues)
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<MutexGuard<'_, Queue>> {
        // A panic never happens while a queue is locked; a poisoned lock still holds a consistent queue.
        self.0[slot.index()].as_ref().map(|m| lock(m))
    }

    /// Queue `job` on `slot` and send it to the role's thread (if it has one: else the restarted worker gets
    /// it). A role that gave up answers at once with its error.
    pub(crate) fn push(&self, slot: Slot, id: u64, job: Arc<dyn Job>) -> Result<(), String> {
        let Some(mut q) = self.get(slot) else {
            return Err(format!("no {} actor", slot.as_str()));
        };
        if let Some(e) = &q.dead {
            let e = e.clone();
            drop(q);
            job.fail(e);
            return Ok(());
        }
        if let Some((_, jobs)) = &q.jobs
            && jobs
                .send(Sent {
                    id,
                    job: Arc::clone(&job),
                })
                .is_err()
        {
            // The thread is gone: its failure restarts the worker, which gets the whole queue.
            tracing::warn!(
                slot = slot.as_str(),
                "compute thread gone; waiting for the worker's restart"
            );
        }
        q.in_flight.push_back(InFlight {
            id,
            job,
            attempts: 0,
        });
        Ok(())
    }

    /// Answer request `id` if it is the oldest in `slot`'s queue and `incarnation` is the live thread (an answer
    /// from a replaced thread is dropped); a returned state becomes the restore point. The answer goes out after
    /// the queue is unlocked: the caller may submit its next request at once.
    pub(crate) fn answer(&self, slot: Slot, incarnation: u64, id: u64, served: Served, busy: Busy) {
        let Some(mut q) = self.get(slot) else {
            return;
        };
        let current = q.jobs.as_ref().is_some_and(|(i, _)| *i == incarnation);
        if !current || q.in_flight.front().is_none_or(|f| f.id != id) {
            return;
        }
        let Some(f) = q.in_flight.pop_front() else {
            return;
        };
        if let Some(state) = served.restore {
            q.restore = state;
        }
        drop(q);
        (served.deliver)(busy);
        // `f.job` (the request) is freed here, after the answer.
        drop(f);
    }

    /// Hand `slot`'s queue to a started worker's thread: the requests still in flight go to it first.
    pub(crate) fn open(&self, slot: Slot, incarnation: u64, tx: crossbeam_channel::Sender<Sent>) {
        if let Some(mut q) = self.get(slot) {
            for f in &q.in_flight {
                let _ = tx.send(Sent {
                    id: f.id,
                    job: Arc::clone(&f.job),
                });
            }
            q.jobs = Some((incarnation, tx));
        }
    }

    /// `slot`'s worker failed with `reason`: its thread's channel is dropped, and the oldest request (the one it
    /// failed on) counts an attempt (unless `max_restarts` is `None`: the worker's node was lost, not the
    /// request). When that request has used up `max_restarts`, it and the requests queued behind it fail; the
    /// others wait for the restarted worker.
    pub(crate) fn worker_failed(&self, slot: Slot, reason: &str, max_restarts: Option<u32>) {
        let mut failed = Vec::new();
        if let Some(mut q) = self.get(slot) {
            q.jobs = None;
            if let Some(max_restarts) = max_restarts
                && let Some(f) = q.in_flight.front_mut()
            {
                f.attempts += 1;
                if f.attempts > max_restarts {
                    let (what, attempts) = (f.job.name(), f.attempts);
                    let role = slot.as_str();
                    for (i, f) in q.in_flight.drain(..).enumerate() {
                        failed.push((
                            f.job,
                            if i == 0 {
                                format!(
                                    "the {role} failed {attempts} times on the same `{what}` request (game.max_restarts = {max_restarts}); last error: {reason}",
                                )
                            } else {
                                format!(
                                    "the {role} gave up on an earlier `{what}` request queued before this one"
                                )
                            },
                        ));
                    }
                }
            }
        }
        for (job, e) in failed {
            job.fail(e);
        }
    }

    /// Close `slot` for good: its thread's channel is dropped (the thread ends), the requests still queued are
    /// answered with `queued` (after the queue is unlocked) and every later one fails with `dead`.
    pub(crate) fn close(&self, slot: Slot, dead: String, queued: &str) {
        let mut failed = Vec::new();
        if let Some(mut q) = self.get(slot) {
            q.jobs = None;
            q.dead = Some(dead);
            failed.extend(q.in_flight.drain(..).map(|f| f.job));
        }
        for job in failed {
            job.fail(queued.to_string());
        }
    }
}
