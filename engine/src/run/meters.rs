//! The game's meters: role time (wall time with a role request in flight) and the role threads' compute
//! intervals, per round window; a sub-run's (the adaptive evaluation's game) count in its parent's too.

use super::ms;
use crate::actor::{Busy, lock};
use std::sync::Arc;
use std::time::Instant;

/// Wall time during which at least one role call (attacker, defender, judge) is in flight: concurrent calls
/// (the two learners) count once. A round's wall time minus this is the engine's own time.
#[derive(Default)]
pub(super) struct RoleWaits(std::sync::Mutex<(usize, Option<Instant>, f64)>);

impl RoleWaits {
    fn enter(&self) {
        if let Ok(mut g) = self.0.lock() {
            if g.0 == 0 {
                g.1 = Some(Instant::now());
            }
            g.0 += 1;
        }
    }

    fn leave(&self) {
        if let Ok(mut g) = self.0.lock() {
            g.0 = g.0.saturating_sub(1);
            if g.0 == 0
                && let Some(t) = g.1.take()
            {
                g.2 += ms(t);
            }
        }
    }

    /// The time counted since the last take, up to `now` (a call still in flight counts up to `now` and goes
    /// on from there); resets.
    pub(super) fn take_ms(&self, now: Instant) -> f64 {
        let Ok(mut g) = self.0.lock() else {
            return 0.0;
        };
        if g.0 > 0
            && let Some(t) = g.1.replace(now)
        {
            g.2 += now.saturating_duration_since(t).as_secs_f64() * 1000.0;
        }
        std::mem::take(&mut g.2)
    }
}

/// Compute intervals of the role threads (possibly overlapping: the two learners, or a sub-run's roles beside
/// the game's own).
#[derive(Default)]
pub(super) struct Compute(std::sync::Mutex<Vec<Busy>>);

impl Compute {
    fn push(&self, b: Busy) {
        lock(&self.0).push(b);
    }

    /// The length of the union of the intervals within `[from, to]` (ms) — those answered and those still
    /// running (their starts in `running`); resets. An interval that crosses `from` (a request queued behind
    /// another, started in the round before) counts only from there.
    pub(super) fn take_ms(&self, from: Instant, to: Instant, running: &[Instant]) -> f64 {
        let done = std::mem::take(&mut *lock(&self.0));
        let mut v: Vec<Busy> = done
            .into_iter()
            .chain(running.iter().map(|&start| Busy { start, end: to }))
            .filter_map(|b| {
                let (start, end) = (b.start.max(from), b.end.min(to));
                (start < end).then_some(Busy { start, end })
            })
            .collect();
        v.sort_by_key(|b| b.start);
        let mut total = 0.0;
        let mut cur: Option<Busy> = None;
        for b in v {
            match &mut cur {
                Some(c) if b.start <= c.end => c.end = c.end.max(b.end),
                _ => {
                    if let Some(c) = cur.take() {
                        total += (c.end - c.start).as_secs_f64() * 1000.0;
                    }
                    cur = Some(b);
                }
            }
        }
        if let Some(c) = cur {
            total += (c.end - c.start).as_secs_f64() * 1000.0;
        }
        total
    }
}

/// A game's role time and compute intervals. A sub-run's (the adaptive evaluation's game) count in its parent's
/// too, as they happen: the sub-run plays beside the parent's other evaluations, and time when either has a
/// request in flight or a thread computing counts once.
#[derive(Default)]
pub(super) struct Meters {
    pub(super) waits: RoleWaits,
    pub(super) compute: Compute,
    /// The sub-runs' compute intervals alone.
    pub(super) beside: Compute,
    parent: Option<Arc<Meters>>,
}

impl Meters {
    pub(super) fn within(parent: Option<Arc<Meters>>) -> Arc<Self> {
        Arc::new(Meters {
            parent,
            ..Default::default()
        })
    }

    /// Open a round's window at `at`: what was counted before it is dropped (a request still in flight counts
    /// from `at`).
    pub(super) fn restart(&self, at: Instant) {
        self.waits.take_ms(at);
        self.compute.take_ms(at, at, &[]);
        self.beside.take_ms(at, at, &[]);
    }

    pub(super) fn enter(&self) {
        self.waits.enter();
        if let Some(p) = &self.parent {
            p.enter();
        }
    }

    pub(super) fn leave(&self) {
        self.waits.leave();
        if let Some(p) = &self.parent {
            p.leave();
        }
    }

    pub(super) fn push(&self, b: Busy) {
        self.compute.push(b);
        if let Some(p) = &self.parent {
            p.push_beside(b);
        }
    }

    fn push_beside(&self, b: Busy) {
        self.beside.push(b);
        self.push(b);
    }
}

/// The game a sub-run plays in.
pub(super) struct Parent {
    pub(super) meters: Arc<Meters>,
    /// The parent's sub-run slot, given back when the sub-run's last round has played.
    pub(super) slot: tokio::sync::OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Compute intervals count only inside a round's window: one answered that started in the round before
    /// (queued behind another request) counts from the window's start; one still running counts up to its end.
    #[test]
    fn compute_is_clipped_to_the_round_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let c = Compute::default();
        c.push(Busy {
            start: at(0),
            end: at(10),
        });
        c.push(Busy {
            start: at(8),
            end: at(12),
        });
        let got = c.take_ms(at(5), at(20), &[at(15)]);
        // [5, 12] ∪ [15, 20] = 12 ms.
        assert!((got - 12.0).abs() < 1e-6, "{got}");
        assert_eq!(c.take_ms(at(20), at(30), &[]), 0.0, "not reset");

        // Role time still in flight at the end of a round counts up to there, and from there in the next.
        let w = RoleWaits::default();
        w.enter();
        let first = w.take_ms(Instant::now());
        std::thread::sleep(Duration::from_millis(3));
        w.leave();
        let second = w.take_ms(Instant::now());
        assert!(first < 3.0 && second >= 3.0, "{first} {second}");
    }

    /// A sub-run's requests and compute count in its parent's meters as they happen, overlaps with the
    /// parent's own once, and apart as compute beside the parent; the sub-run's meters see only its own.
    #[test]
    fn a_sub_runs_time_counts_once_in_its_parents_meters() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let parent = Meters::within(None);
        let sub = Meters::within(Some(Arc::clone(&parent)));
        let subsub = Meters::within(Some(Arc::clone(&sub)));
        parent.push(Busy {
            start: at(0),
            end: at(10),
        });
        sub.push(Busy {
            start: at(5),
            end: at(15),
        });
        sub.push(Busy {
            start: at(20),
            end: at(25),
        });
        // A sub-run's own sub-run counts in both.
        subsub.push(Busy {
            start: at(40),
            end: at(45),
        });
        // Parent: [0, 15] ∪ [20, 25] ∪ [40, 45], of which beside it [5, 15] ∪ [20, 25] ∪ [40, 45]; sub-run:
        // [5, 15] ∪ [20, 25] ∪ [40, 45], of which beside it [40, 45].
        let took = |c: &Compute| c.take_ms(at(0), at(50), &[]);
        for (got, want) in [
            (took(&parent.compute), 25.0),
            (took(&parent.beside), 20.0),
            (took(&sub.compute), 20.0),
            (took(&sub.beside), 5.0),
            (took(&subsub.beside), 0.0),
        ] {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }

        // A request of either in flight counts as role time, up to the last one's end.
        parent.waits.take_ms(Instant::now());
        parent.enter();
        sub.enter();
        std::thread::sleep(Duration::from_millis(2));
        parent.leave();
        std::thread::sleep(Duration::from_millis(2));
        sub.leave();
        std::thread::sleep(Duration::from_millis(40));
        let both = parent.waits.take_ms(Instant::now());
        assert!((4.0..40.0).contains(&both), "{both}");
        assert_eq!(parent.waits.0.lock().unwrap().0, 0, "all left");
    }
}
