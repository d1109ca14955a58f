//! The model thread: an OS thread that owns Burn state (device, model, optimizer…) and runs
//! jobs sent over a crossbeam channel, answering over per-call reply channels, so async code
//! (ractor actors on tokio) never blocks on Burn compute.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::LmError;

type Job<S> = Box<dyn FnOnce(&mut S) + Send + 'static>;

/// Handle to a thread owning a state `S` built on that thread. Cloneable senders are not
/// exposed; dropping the handle stops the thread after the queued jobs.
pub struct ModelThread<S: 'static> {
    tx: Option<Sender<Job<S>>>,
    handle: Option<JoinHandle<()>>,
}

impl<S: 'static> std::fmt::Debug for ModelThread<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelThread").finish_non_exhaustive()
    }
}

impl<S: 'static> ModelThread<S> {
    /// Spawns the thread named `name`; `init` builds the state there (so `S` need not be
    /// `Send`). Returns init's error if it fails.
    pub fn spawn<F>(name: &str, init: F) -> Result<Self, LmError>
    where
        F: FnOnce() -> Result<S, LmError> + Send + 'static,
    {
        let (tx, rx) = unbounded::<Job<S>>();
        let (ready_tx, ready_rx) = bounded::<Result<(), LmError>>(1);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut state = match init() {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })
            .map_err(|e| LmError::Thread(format!("spawn {name}: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                tx: Some(tx),
                handle: Some(handle),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(LmError::Thread(format!("{name}: init panicked")))
            }
        }
    }

    /// Queues `f` and returns the channel its result arrives on. A panic inside `f` is caught
    /// and reported as [`LmError::Thread`]; the thread keeps serving.
    pub fn submit<R, F>(&self, f: F) -> Result<Receiver<Result<R, LmError>>, LmError>
    where
        R: Send + 'static,
        F: FnOnce(&mut S) -> Result<R, LmError> + Send + 'static,
    {
        let (rtx, rrx) = bounded(1);
        self.submit_with(f, move |r| {
            let _ = rtx.send(r);
        })?;
        Ok(rrx)
    }

    /// Queues `f`; `reply` is called on the model thread with the result (e.g. to cast a
    /// message to an actor or complete a tokio oneshot).
    pub fn submit_with<R, F, C>(&self, f: F, reply: C) -> Result<(), LmError>
    where
        F: FnOnce(&mut S) -> Result<R, LmError> + Send + 'static,
        C: FnOnce(Result<R, LmError>) + Send + 'static,
    {
        let job: Job<S> = Box::new(move |s: &mut S| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(s))).unwrap_or_else(
                |p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    Err(LmError::Thread(format!("job panicked: {msg}")))
                },
            );
            reply(r);
        });
        self.tx
            .as_ref()
            .ok_or_else(|| LmError::Thread("stopped".into()))?
            .send(job)
            .map_err(|_| LmError::Thread("the model thread has exited".into()))
    }

    /// Runs `f` on the thread and blocks until it answers (for non-async callers and tests).
    pub fn call<R, F>(&self, f: F) -> Result<R, LmError>
    where
        R: Send + 'static,
        F: FnOnce(&mut S) -> Result<R, LmError> + Send + 'static,
    {
        self.submit(f)?
            .recv()
            .map_err(|_| LmError::Thread("the model thread dropped the reply".into()))?
    }

    /// Stops accepting jobs and waits for the queued ones to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<S: 'static> Drop for ModelThread<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_and_panics_are_caught() {
        let t = ModelThread::spawn("t", || Ok(0u64)).unwrap();
        for i in 1..=10u64 {
            t.submit(move |s: &mut u64| {
                *s += i;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(t.call(|s| Ok(*s)).unwrap(), 55);
        let e = t.call(|_: &mut u64| -> Result<(), LmError> { panic!("boom") });
        assert!(e.unwrap_err().to_string().contains("boom"));
        assert_eq!(t.call(|s| Ok(*s)).unwrap(), 55);
        let r: Result<ModelThread<u8>, _> =
            ModelThread::spawn("bad", || Err(LmError::Config("nope".into())));
        assert!(r.is_err());
    }
}
