//! Whole-scenario wall time and engine overhead: runs a scenario through the engine exactly as `sparring run`
//! does (supervised actors, replay log with fsync, evaluations, checkpoints) and reports the wall time from
//! loading the scenario to the summary, the per-phase round times, and the engine overhead: the share of the
//! round's wall time outside model compute and judging, i.e. when no attacker, defender or judge compute thread
//! was working on a request (intervals measured on the threads) — the engine's scheduling, payoffs, records,
//! the part of the replay log's commit not overlapped with the next round (commits are pipelined), and the
//! message hand-offs to and from the role threads. Also printed: the engine's own work alone (no role request
//! in flight, so without the hand-offs).
//!
//! Run: `cargo bench --bench scenario` (the flagship, `scenarios/intent-advgame-dpo.toml`).
//! Env: `SCENARIO=path.toml`, `SCENARIO_SET="game.rounds=10;eval.every=0"` (`;`-separated overrides),
//! `SCENARIO_REPS=1`. Under `cargo test --benches` (no `--bench` flag) it runs a 2-round smoke pass.

use sparring_engine::run::{self, Progress, Timings};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var("SCENARIO")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("scenarios/intent-advgame-dpo.toml"));
    let mut sets: Vec<String> = std::env::var("SCENARIO_SET")
        .map(|s| {
            s.split(';')
                .filter(|x| !x.trim().is_empty())
                .map(|x| x.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if quick {
        sets.push("game.rounds=2".into());
        sets.push("eval.modes=[\"plain\"]".into());
    }
    let reps: usize = std::env::var("SCENARIO_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // As the CLI: its runtime (current-thread) unless SCENARIO_RT=multi.
    let multi = std::env::var("SCENARIO_RT").is_ok_and(|v| v == "multi");
    let mut builder = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scenario bench: runtime: {e}");
            std::process::exit(1);
        }
    };
    let registry = sparring_actors::registry();
    println!(
        "scenario: {} {}",
        path.display(),
        if sets.is_empty() {
            String::new()
        } else {
            format!("--set {}", sets.join(" --set "))
        }
    );
    // Overhead of the rounds without evaluation, per repetition (for the median at the end).
    let mut plain_overheads: Vec<f64> = Vec::new();
    for rep in 0..reps {
        let t0 = Instant::now();
        let loaded = match sparring_engine::scenario::load(&path, &sets, &registry) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("scenario bench: {e}");
                std::process::exit(1);
            }
        };
        let dir = std::env::temp_dir().join(format!(
            "sparring-bench-{}-{}-{rep}",
            loaded.scenario.game.name,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut rounds: Vec<Timings> = Vec::new();
        let mut first_round_at = None;
        let mut on_round = |p: &Progress| {
            if first_round_at.is_none() {
                first_round_at = Some(t0.elapsed().as_secs_f64() - p.timings.total_ms / 1000.0);
            }
            rounds.push(p.timings.clone());
        };
        let res = rt.block_on(run::run(&loaded, &registry, &dir, false, &mut on_round));
        let wall = t0.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&dir);
        let summary = match res {
            Ok(s) => s,
            Err(e) => {
                eprintln!("scenario bench: {e}");
                std::process::exit(1);
            }
        };
        let n = rounds.len().max(1) as f64;
        let sum = |f: fn(&Timings) -> f64| rounds.iter().map(f).sum::<f64>();
        let total = sum(|t| t.total_ms);
        let roles = sum(|t| t.roles_ms);
        let compute = sum(|t| t.compute_ms);
        // Rounds without evaluation and with no adaptive evaluation playing beside them (whose compute would
        // cover the round's hand-offs).
        let (plain, beside): (Vec<&Timings>, Vec<&Timings>) = rounds
            .iter()
            .filter(|t| t.eval_ms < 0.02 * t.total_ms)
            .partition(|t| t.adaptive_ms == 0.0);
        let beside = beside.len();
        let (pt, pr, pc) = plain.iter().fold((0.0, 0.0, 0.0), |(a, b, c), t| {
            (a + t.total_ms, b + t.roles_ms, c + t.compute_ms)
        });
        println!(
            "rep {rep}: wall {wall:.2} s for {} rounds (start-up incl. warm starts {:.2} s); rounds {:.2} s, mean {:.1} ms",
            summary.rounds,
            first_round_at.unwrap_or(0.0),
            total / 1000.0,
            total / n
        );
        println!(
            "  per round (ms): attacker {:.1}, faithfulness {:.1}, defender {:.1}, judge {:.1}, learn {:.1}, eval {:.1}, commit {:.1}",
            sum(|t| t.attacker_ms) / n,
            sum(|t| t.faithfulness_ms) / n,
            sum(|t| t.defender_ms) / n,
            sum(|t| t.judge_ms) / n,
            sum(|t| t.learn_ms) / n,
            sum(|t| t.eval_ms) / n,
            sum(|t| t.commit_ms) / n,
        );
        println!(
            "  engine overhead (outside model compute and judging, incl. hand-offs): {:.2} % of round time over all rounds ({:.2} of {:.1} ms per round); the engine's own work alone (no role request in flight): {:.2} % ({:.2} ms)",
            100.0 * (total - compute) / total.max(1e-9),
            (total - compute) / n,
            total / n,
            100.0 * (total - roles) / total.max(1e-9),
            (total - roles) / n,
        );
        if !plain.is_empty() {
            let k = plain.len() as f64;
            plain_overheads.push(100.0 * (pt - pc) / pt.max(1e-9));
            println!(
                "  engine overhead, rounds without evaluation ({} rounds, {:.1} ms each{}): {:.2} % ({:.2} ms per round); own work alone {:.2} % ({:.2} ms)",
                plain.len(),
                pt / k,
                if beside > 0 {
                    format!("; not counted: {beside} with an adaptive evaluation beside them")
                } else {
                    String::new()
                },
                100.0 * (pt - pc) / pt.max(1e-9),
                (pt - pc) / k,
                100.0 * (pt - pr) / pt.max(1e-9),
                (pt - pr) / k
            );
        }
        let m = &summary.metrics;
        let get = |k: &str| {
            m.get(k)
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "–".into())
        };
        println!(
            "  final: held-out ASR {} (attacker {}, adaptive {}), benign compliance {}",
            get("eval/intent-heldout-harmful/asr"),
            get("eval/intent-heldout-harmful/attacker/asr"),
            get("eval/intent-heldout-harmful/adaptive/asr"),
            get("eval/intent-heldout-benign/compliance"),
        );
    }
    // Round times on a shared VM vary from one repetition to the next: the median is the figure to compare.
    if plain_overheads.len() > 1 {
        let v = &mut plain_overheads;
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        println!(
            "engine overhead, rounds without evaluation, over {n} repetitions: median {median:.2} % ({:.2}–{:.2} %)",
            v[0],
            v[n - 1]
        );
    }
}
