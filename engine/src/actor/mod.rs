//! The supervised actors that play a game. A `Game` supervisor (ractor) spawns one linked worker per role
//! (Attacker, Defender, Judge, Replay); each worker owns an OS thread that builds and runs the role's
//! implementation (a `Policy`, a `Judge` or the replay log), so compute never blocks the async runtime. A role
//! placed on another node ([`crate::cluster`]) has the same worker and thread, which forwards its requests there.
//!
//! - [`protocol`]: the typed requests a role serves and their answers (serde data).
//! - [`queue`]: each role's request queue, which outlives the role's workers: nothing queued is lost in a crash.
//! - [`worker`]: the worker actor and its compute thread; fault injection; busy intervals.
//! - [`supervisor`]: the `Game` supervisor (restarts) and [`GameHandle`], where the game loop sends requests.
//!
//! A request goes from the game loop onto the role's queue and the role thread's channel, and its answer
//! straight back to the caller (one hop each way, the compute interval measured on the thread).

pub mod protocol;
pub mod queue;
pub mod supervisor;
pub mod worker;

pub use crate::vocab::Slot;
pub use protocol::{
    Commit, Compare, Complied, Faithful, Generate, Generated, Implementation, Judged, Learn,
    Learned, Load, Read, Request, Save, Saved, Score,
};
pub use queue::Ticket;
pub use supervisor::{Game, GameArgs, GameHandle, GameMsg, SlotSpec};
pub use worker::{Busy, BusyBoard, FaultPlan, WorkerSpec};

use std::sync::{Mutex, MutexGuard};

/// A mutex's guard, also after a panic in another holder: what the engine guards with a mutex (queues, the game
/// loop's meters, a run's tally) stays valid between its operations.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` (a role's build or request, on its thread), a panic becoming `RoleError::Panic`.
pub(crate) fn caught<T>(
    f: impl FnOnce() -> Result<T, crate::roles::RoleError>,
) -> Result<T, crate::roles::RoleError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(crate::roles::RoleError::Panic(panic_text(p.as_ref()))))
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BuildContext, KindInfo, Registry};
    use crate::roles::{Judge, Role};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flagged(Arc<AtomicBool>);
    impl Judge for Flagged {}
    impl Drop for Flagged {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A game with one role, a `Flagged` judge that sets `dropped` when it is dropped.
    async fn judge_game(dropped: Arc<AtomicBool>) -> (GameHandle, tokio::task::JoinHandle<()>) {
        let mut registry = Registry::new();
        registry.add_judge(
            KindInfo {
                kind: "flagged".into(),
                about: String::new(),
                roles: vec![Role::Judge],
                params: None,
                check: Arc::new(|_: &toml::Table, _: &BuildContext| Ok(())),
            },
            Arc::new(move |_: &toml::Table, _: &BuildContext| {
                Ok(Box::new(Flagged(Arc::clone(&dropped))) as Box<dyn Judge>)
            }),
        );
        let spec = WorkerSpec::Judge {
            registry,
            kind: "flagged".into(),
            params: toml::Table::new(),
            ctx: BuildContext::detached(Role::Judge),
        };
        let mut slots = BTreeMap::new();
        slots.insert(Slot::Judge, SlotSpec::fresh(spec));
        GameHandle::start(GameArgs {
            slots,
            max_restarts: 0,
        })
        .await
        .expect("starts")
    }

    /// The queues are shared with the compute threads, so the supervisor must close them when the game stops:
    /// otherwise a thread (and its model) outlives its game.
    #[tokio::test(flavor = "current_thread")]
    async fn stopping_the_game_ends_the_compute_threads() {
        let dropped = Arc::new(AtomicBool::new(false));
        let (game, join) = judge_game(Arc::clone(&dropped)).await;
        assert!(game.call(Slot::Judge, Save).await.is_ok());
        game.stop();
        join.await.expect("supervisor stops");
        for _ in 0..200 {
            if dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "the judge's thread is still running"
        );
        // A request after the game is an error, not a hang.
        let late = game.submit(Slot::Judge, Save).expect("a ticket");
        assert!(late.answer().await.is_err());
    }

    /// A request sent to a role that does not serve it fails the role with an error that names both, instead of
    /// answering something the caller did not ask for.
    #[tokio::test(flavor = "current_thread")]
    async fn a_request_the_role_does_not_serve_names_the_request_and_the_role() {
        let (game, join) = judge_game(Arc::new(AtomicBool::new(false))).await;
        let err = game
            .call(Slot::Judge, Generate(Vec::new()))
            .await
            .expect_err("a judge does not generate");
        assert!(err.contains("`generate` sent to a judge"), "{err}");
        game.stop();
        let _ = join.await;
    }
}
