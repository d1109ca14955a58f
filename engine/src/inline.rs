//! Where the game loop runs: on the thread whose answer it was waiting for. A role's compute thread that
//! answers the game's request wakes the game loop, and the waker polls it right there (building the next
//! request and putting it on the next role's channel) instead of waking the async runtime's thread to do it:
//! one thread hand-off per step of a round instead of two. The runtime (ractor supervision, the replay
//! pipeline, timers) keeps its own thread; every poll enters its handle, so the loop can spawn and sleep as a
//! task would. A compute thread with more work queued does not run the loop (its next request would wait):
//! it hands the poll to the runtime (see [`defer_wakes`]).
//!
//! The loop is polled by one thread at a time; a wake during a poll makes the polling thread poll again, so
//! no wake is lost. A panic in the loop is caught and reported as its output, never unwinding into a role's
//! thread.

use crate::supervise::lock;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const NOTIFIED: u8 = 2;
const DONE: u8 = 3;

thread_local! {
    static DEFER: Cell<bool> = const { Cell::new(false) };
}

/// While `defer` is set on this thread, a wake of an inline task from this thread is handed to the runtime
/// instead of polled here (a compute thread sets it when it has more requests queued).
pub fn defer_wakes(defer: bool) {
    DEFER.with(|d| d.set(defer));
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct Task<T> {
    state: AtomicU8,
    fut: Mutex<Option<Boxed<T>>>,
    done: Mutex<Option<tokio::sync::oneshot::Sender<Result<T, String>>>>,
    handle: tokio::runtime::Handle,
}

impl<T: Send + 'static> Task<T> {
    /// Poll now on this thread, unless another thread is polling (then it polls again) or it is done.
    fn schedule(self: &Arc<Self>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                IDLE => RUNNING,
                RUNNING => NOTIFIED,
                _ => return,
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next == RUNNING => return self.run(),
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    fn run(self: &Arc<Self>) {
        let _rt = self.handle.enter();
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        loop {
            let mut slot = lock(&self.fut);
            let Some(fut) = slot.as_mut() else {
                self.state.store(DONE, Ordering::Release);
                return;
            };
            let out = match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => None,
                Ok(Poll::Ready(v)) => Some(Ok(v)),
                Err(p) => Some(Err(format!(
                    "the game loop panicked: {}",
                    crate::supervise::panic_text(p.as_ref())
                ))),
            };
            if let Some(out) = out {
                let fut = slot.take();
                self.state.store(DONE, Ordering::Release);
                drop(slot);
                // Dropping the loop may drop requests' answers: outside the lock, before the result goes out.
                drop(catch_unwind(AssertUnwindSafe(move || drop(fut))));
                if let Some(tx) = lock(&self.done).take() {
                    let _ = tx.send(out);
                }
                return;
            }
            drop(slot);
            // Woken during the poll: poll again.
            if self
                .state
                .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            self.state.store(RUNNING, Ordering::Release);
        }
    }
}

impl<T: Send + 'static> Wake for Task<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if DEFER.with(|d| d.get()) {
            let me = Arc::clone(self);
            self.handle.spawn(async move { me.schedule() });
        } else {
            self.schedule();
        }
    }
}

/// A future run by [`spawn`]; resolves to its output, or to an error if it panicked.
pub struct Inline<T>(tokio::sync::oneshot::Receiver<Result<T, String>>);

impl<T> Future for Inline<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err("the game loop was dropped".to_string())))
    }
}

/// Start `fut`, polled first on this thread and then by whichever thread wakes it, with the current tokio
/// runtime entered (an error outside one). Like `tokio::spawn`, dropping the returned future does not stop it.
pub fn spawn<T, F>(fut: F) -> Result<Inline<T>, String>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| format!("the game loop needs a tokio runtime: {e}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = Arc::new(Task {
        state: AtomicU8::new(IDLE),
        fut: Mutex::new(Some(Box::pin(fut) as Boxed<T>)),
        done: Mutex::new(Some(tx)),
        handle,
    });
    task.schedule();
    Ok(Inline(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_on_the_waking_thread_and_loses_no_wake() {
        // Each answer comes from a new thread; the loop's code after each await runs on that thread.
        let main = std::thread::current().id();
        let out = spawn(async move {
            let mut ran_elsewhere = 0;
            for i in 0..200u32 {
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(i);
                });
                assert_eq!(rx.await.ok(), Some(i));
                if std::thread::current().id() != main {
                    ran_elsewhere += 1;
                }
                // Runtime services work from any poll: a spawned task and a timer.
                let j = tokio::spawn(async move { i + 1 });
                assert_eq!(j.await.ok(), Some(i + 1));
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            ran_elsewhere
        })
        .expect("in a runtime")
        .await;
        let ran_elsewhere = out.ok();
        assert!(ran_elsewhere.is_some_and(|n| n > 0), "{ran_elsewhere:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn deferred_wakes_run_on_the_runtime() {
        let main = std::thread::current().id();
        let out = spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                defer_wakes(true);
                let _ = tx.send(());
            });
            let _ = rx.await;
            std::thread::current().id() == main
        })
        .expect("in a runtime")
        .await;
        assert_eq!(out, Ok(true));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_is_an_error_not_an_unwind() {
        let out: Result<(), String> = spawn(async {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = tx.send(());
            });
            let _ = rx.await;
            panic!("boom");
        })
        .expect("in a runtime")
        .await;
        assert!(out.is_err_and(|e| e.contains("boom")));
    }

    /// Wakes racing with polls: two threads answer at once (one of them handing its wake to the runtime), many
    /// times over. A lost wake hangs the loop; the timeout turns that into a failure.
    #[tokio::test(flavor = "current_thread")]
    async fn racing_wakes_are_never_lost() {
        let run = spawn(async {
            for i in 0..3000u32 {
                let (tx1, rx1) = tokio::sync::oneshot::channel();
                let (tx2, rx2) = tokio::sync::oneshot::channel();
                let defer = i % 3 == 0;
                std::thread::spawn(move || {
                    defer_wakes(defer);
                    let _ = tx1.send(i);
                });
                std::thread::spawn(move || {
                    let _ = tx2.send(i);
                });
                let (a, b) = tokio::join!(rx1, rx2);
                assert_eq!((a.ok(), b.ok()), (Some(i), Some(i)));
            }
        })
        .expect("in a runtime");
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await;
        assert_eq!(out, Ok(Ok(())), "a wake was lost");
    }

    #[test]
    fn outside_a_runtime_is_an_error() {
        assert!(spawn(async {}).is_err());
    }
}
