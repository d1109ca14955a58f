//! Will a round fit in memory? A round holds all its rewrites, responses and judge requests until it commits, so
//! a scenario whose counts multiply past the machine's memory is refused at validation, naming the key and the
//! estimate, instead of growing until the kernel kills it.
//!
//! The estimate is a floor, not a forecast: a fixed number of bytes per rewrite, response and judge request, about
//! a quarter of what `scripted-redteam` measured (6.3 KiB per response with everything the round holds, its texts
//! short: `/usr/bin/time` on `--set game.seeds_per_round=20000`). A scenario under the floor may still not fit; one
//! over it cannot.

use super::{PayoffMode, Scenario};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes a round holds at least per rewrite (its generation, its defender request, its record).
pub const REWRITE_BYTES: u128 = 1024;
/// Bytes a round holds at least per response (its generation, label request, record and log line).
pub const RESPONSE_BYTES: u128 = 1024;
/// Bytes a round holds at least per judge request (a pair or a score).
pub const JUDGE_BYTES: u128 = 256;

/// The memory bound set by `--max-memory` (0: none set, the machine's available memory is the bound).
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Bound what a scenario may hold to `bytes` (`--max-memory`) instead of the memory available now.
pub fn set_memory_limit(bytes: Option<u64>) {
    LIMIT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The bound a scenario is checked against, and what it is: `--max-memory`, else the memory the OS says is
/// available (Linux: `MemAvailable`, or a smaller cgroup limit); `None` where neither is known.
pub fn memory_bound() -> Option<(u64, &'static str)> {
    match LIMIT.load(Ordering::Relaxed) {
        0 => available_memory().map(|b| (b, "this machine has available")),
        b => Some((b, "--max-memory allows")),
    }
}

/// Memory available to this process, in bytes (Linux only).
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        rest.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    })?;
    let mut bytes = kib.saturating_mul(1024);
    // A container's limit (cgroup v2), when lower.
    if let Ok(max) = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        && let Ok(limit) = max.trim().parse::<u64>()
    {
        let used = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .unwrap_or(0);
        bytes = bytes.min(limit.saturating_sub(used));
    }
    Some(bytes)
}

/// What one round of a scenario holds at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundSize {
    pub rewrites: u128,
    pub responses: u128,
    pub judge_requests: u128,
    pub bytes: u128,
}

/// The floor of what one round of `s` holds (exact counts, at most: every rewrite valid).
pub fn round_size(s: &Scenario) -> RoundSize {
    let g = &s.game;
    let (seeds, a, d) = (
        g.seeds_per_round as u128,
        g.attacks_per_seed as u128,
        g.responses_per_attack as u128,
    );
    let chains = seeds.saturating_mul(a);
    // A multi-turn game: every chain's earlier turns, each with one reply.
    let earlier = chains.saturating_mul(u128::from(g.turns.max(1) - 1));
    let rewrites = chains.saturating_add(earlier);
    let responses = chains.saturating_mul(d).saturating_add(earlier);
    let judge_requests = match s.payoffs.mode {
        PayoffMode::Pairwise => chains
            .saturating_mul(d.saturating_mul(d.saturating_sub(1)) / 2)
            .saturating_add(seeds.saturating_mul(a.saturating_mul(a.saturating_sub(1)) / 2)),
        PayoffMode::Pointwise => chains.saturating_mul(d).saturating_add(chains),
    };
    let bytes = rewrites
        .saturating_mul(REWRITE_BYTES)
        .saturating_add(responses.saturating_mul(RESPONSE_BYTES))
        .saturating_add(judge_requests.saturating_mul(JUDGE_BYTES));
    RoundSize {
        rewrites,
        responses,
        judge_requests,
        bytes,
    }
}

/// Why a round of `s` cannot fit under `bound` bytes (`what` says where the bound comes from), with the key to
/// blame (the largest of the three counts that multiply); `None` when it fits.
pub fn too_big(s: &Scenario, bound: u64, what: &str) -> Option<(&'static str, String)> {
    let size = round_size(s);
    if size.bytes <= u128::from(bound) {
        return None;
    }
    let g = &s.game;
    let key = [
        ("game.seeds_per_round", g.seeds_per_round),
        ("game.attacks_per_seed", g.attacks_per_seed),
        ("game.responses_per_attack", g.responses_per_attack),
    ]
    .into_iter()
    .fold(("game.seeds_per_round", 0), |best, (k, v)| {
        if v > best.1 { (k, v) } else { best }
    })
    .0;
    Some((
        key,
        format!(
            "a round of {} seeds × {} rewrites × {} responses holds {} rewrites, {} responses and {} judge \
             requests: at least {} ({} B per rewrite and per response, {} B per judge request), more than the {} \
             {what}; lower it (or give another bound with --max-memory)",
            g.seeds_per_round,
            g.attacks_per_seed,
            g.responses_per_attack,
            size.rewrites,
            size.responses,
            size.judge_requests,
            human(size.bytes),
            REWRITE_BYTES,
            JUDGE_BYTES,
            human(u128::from(bound)),
        ),
    ))
}

/// Bytes in binary units (`1.2 TiB`).
pub fn human(b: u128) -> String {
    bytesize::ByteSize(u64::try_from(b).unwrap_or(u64::MAX))
        .display()
        .iec()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(seeds: usize, a: usize, d: usize, mode: PayoffMode) -> Scenario {
        let text = format!(
            "schema = 1\n[game]\nname = \"t\"\nseed = 0\nrounds = 1\nseeds_per_round = {seeds}\n\
             attacks_per_seed = {a}\nresponses_per_attack = {d}\n[data]\ntrain = []\n[attacker]\nkind = \"x\"\n\
             [defender]\nkind = \"x\"\n[judge]\nkind = \"x\"\n"
        );
        let mut s: Scenario = toml::from_str(&text).unwrap();
        s.payoffs.mode = mode;
        s
    }

    /// The counts of a round: A rewrites per seed, D responses per rewrite, pairs among each rewrite's responses
    /// and among each seed's rewrites (or one score each).
    #[test]
    fn a_round_holds_its_counts() {
        let r = round_size(&scenario(16, 4, 3, PayoffMode::Pairwise));
        assert_eq!(
            (r.rewrites, r.responses, r.judge_requests),
            (64, 192, 64 * 3 + 16 * 6)
        );
        assert_eq!(r.bytes, 64 * 1024 + 192 * 1024 + (64 * 3 + 16 * 6) * 256);
        let r = round_size(&scenario(16, 4, 3, PayoffMode::Pointwise));
        assert_eq!(r.judge_requests, 192 + 64);
        // Three turns: each conversation's two earlier turns and their replies; the judge sees the last.
        let mut s = scenario(16, 4, 3, PayoffMode::Pairwise);
        s.game.turns = 3;
        let r = round_size(&s);
        assert_eq!(
            (r.rewrites, r.responses, r.judge_requests),
            (64 * 3, 192 + 64 * 2, 64 * 3 + 16 * 6)
        );
    }

    /// `scripted-redteam` with 100 million seeds per round: far over any bound, blamed on the seeds; the shipped
    /// counts fit in 64 MiB; counts near `usize::MAX` saturate instead of wrapping.
    #[test]
    fn absurd_counts_are_refused_with_the_key_and_the_estimate() {
        let (key, why) = too_big(
            &scenario(100_000_000, 4, 3, PayoffMode::Pairwise),
            16 << 30,
            "allowed",
        )
        .expect("refused");
        assert_eq!(key, "game.seeds_per_round");
        assert!(
            why.contains("1200000000 responses") && why.contains("TiB"),
            "{why}"
        );
        assert!(
            too_big(
                &scenario(16, 4, 3, PayoffMode::Pairwise),
                64 << 20,
                "allowed"
            )
            .is_none()
        );
        let (key, _) = too_big(
            &scenario(2, usize::MAX, 2, PayoffMode::Pairwise),
            u64::MAX,
            "allowed",
        )
        .expect("refused");
        assert_eq!(key, "game.attacks_per_seed");
    }
}
