//! Wall time per phase of the host forward pass, accumulated under `SPARRING_HOST_PROFILE=1` and read (and reset)
//! with [`take_profile`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Phases of the forward pass timed under `SPARRING_HOST_PROFILE=1`.
const PHASES: [&str; 9] = [
    "embed+rope tables",
    "rmsnorm+qkv matmul",
    "rope+kv write",
    "attention",
    "o-proj",
    "rmsnorm+gate/up matmul",
    "silu*up",
    "down",
    "final norm+lm head",
];
static PHASE_NS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

fn profiling() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SPARRING_HOST_PROFILE").is_ok_and(|v| v == "1"))
}

/// Phase timer: `lap(p)` charges the time since the previous lap to phase `p`.
pub(super) struct Laps {
    on: bool,
    t: Instant,
}

impl Laps {
    pub(super) fn new() -> Self {
        Self {
            on: profiling(),
            t: Instant::now(),
        }
    }
    pub(super) fn lap(&mut self, phase: usize) {
        if self.on {
            let now = Instant::now();
            let ns = now.duration_since(self.t).as_nanos() as u64;
            PHASE_NS[phase].fetch_add(ns, Ordering::Relaxed);
            self.t = now;
        }
    }
}

/// Seconds spent per forward phase by every [`HostLlama`](super::HostLlama) since the previous call, and resets
/// the counters; all zero unless the process runs with `SPARRING_HOST_PROFILE=1`.
pub fn take_profile() -> Vec<(&'static str, f64)> {
    PHASES
        .iter()
        .zip(&PHASE_NS)
        .map(|(name, ns)| (*name, ns.swap(0, Ordering::Relaxed) as f64 * 1e-9))
        .collect()
}
