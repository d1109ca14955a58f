//! Greedy decode throughput of SmolLM2-135M (architecture and sizes, random weights: the
//! arithmetic is that of the real model) on the flex CPU backend:
//! 64 new tokens at batch 1 and batch 16. Run: `cargo bench --profile dev --bench decode`.
//! Env: `DECODE_BATCHES=1,16` `DECODE_TOKENS=64` `DECODE_REPS=3`
//! `DECODE_PATHS=host,host-f16,burn`. `host` is [`HostLlama`] (the fast generation path) with
//! f32 weights, `host-f16` the same with f16 weights ([`Precision::F16`]), `burn` the Burn
//! module on flex. With `SPARRING_HOST_PROFILE=1` the host paths also print seconds per phase
//! of the forward pass, summed over all runs. Each line also gives the CPU seconds (all threads)
//! of the fastest end-to-end run: steadier than wall time on a busy shared machine; the load
//! average is printed at the start and after each line (wall times on a loaded 2-core machine
//! can be half the quiet ones; `RAYON_NUM_THREADS=1` gives steadier figures there).

use std::time::Instant;

use sparring_actors::llama::host::take_profile;
use sparring_actors::llama::{
    Device, GenerateOptions, Generated, HostLlama, LlamaConfig, LlamaError, LlamaModel, Precision,
    RopeLayout,
};

fn env_list(key: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(key)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// CPU seconds of this process (all threads) from `/proc/self/stat` (Linux, 100 Hz ticks):
/// steadier than wall time on a shared machine. `None` elsewhere.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg` (Linux), `n/a` elsewhere.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "n/a".into())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a smoke pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let device = Device::flex();
    let mut cfg = LlamaConfig::smollm2_135m(RopeLayout::Interleaved);
    if quick {
        // Smoke pass (`cargo test --benches`, unoptimized build): every path, 2 layers.
        cfg.num_layers = 2;
    }
    let model = match LlamaModel::random(&cfg, 0, &device) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("decode bench: {e}");
            std::process::exit(1);
        }
    };
    let batches = env_list("DECODE_BATCHES", &[1, 16]);
    let new_tokens = env_list("DECODE_TOKENS", &[if quick { 4 } else { 64 }])[0];
    let reps = env_list("DECODE_REPS", &[if quick { 1 } else { 3 }])[0];
    // A chat-formatted prompt of ~36 tokens (the fixture prompt length).
    let prompt: Vec<u32> = (0..36u32).map(|i| (i * 7919 + 11) % 49152).collect();
    println!(
        "decode: SmolLM2-135M shapes ({} layers), flex backend, {new_tokens} new tokens, greedy",
        cfg.num_layers
    );
    // Numbers from a shared machine only mean something beside its load.
    println!(
        "machine: {} cpus, RAYON_NUM_THREADS={}, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        load_average()
    );
    let paths = std::env::var("DECODE_PATHS").unwrap_or_else(|_| "host,host-f16,burn".into());
    for path in paths.split(',').map(str::trim) {
        let precision = if path == "host-f16" {
            Precision::F16
        } else {
            Precision::F32
        };
        let host = match HostLlama::with_precision(&model, precision) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("decode bench: {e}");
                std::process::exit(1);
            }
        };
        let run_gen = |p: &[Vec<u32>], o: &GenerateOptions| -> Result<Vec<Generated>, LlamaError> {
            if path == "burn" {
                model.generate(p, o)
            } else {
                host.generate(p, o)
            }
        };
        for &b in &batches {
            let prompts: Vec<Vec<u32>> = (0..b)
                .map(|r| {
                    let mut p = prompt.clone();
                    p.truncate(36 - (r % 5)); // ragged: exercises left padding
                    p[0] = (r as u32 * 31) % 49152;
                    p
                })
                .collect();
            let opts = GenerateOptions {
                max_new_tokens: new_tokens,
                ..Default::default()
            };
            // Prefill alone, to separate it from decode.
            let prefill_opts = GenerateOptions {
                max_new_tokens: 1,
                ..Default::default()
            };
            take_profile();
            let mut best_total = f64::INFINITY;
            let mut best_cpu = f64::INFINITY;
            let mut best_prefill = f64::INFINITY;
            for _ in 0..reps {
                let t0 = Instant::now();
                if let Err(e) = run_gen(&prompts, &prefill_opts) {
                    eprintln!("decode bench: {e}");
                    std::process::exit(1);
                }
                best_prefill = best_prefill.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                let c0 = cpu_secs();
                match run_gen(&prompts, &opts) {
                    Ok(out) => assert!(out.iter().all(|g| g.tokens.len() == new_tokens)),
                    Err(e) => {
                        eprintln!("decode bench: {e}");
                        std::process::exit(1);
                    }
                }
                best_total = best_total.min(t0.elapsed().as_secs_f64());
                if let (Some(a), Some(b)) = (c0, cpu_secs()) {
                    best_cpu = best_cpu.min(b - a);
                }
            }
            let tokens = (b * new_tokens) as f64;
            // Decode alone: end-to-end minus the prefill run (n/a when noise makes it <= 0).
            let decode = best_total - best_prefill;
            let decode_rate = if decode > 0.0 {
                format!("{:>7.1}", (b * (new_tokens - 1)) as f64 / decode)
            } else {
                "    n/a".into()
            };
            println!(
                "{path:>4} batch {b:>2}: {:>7.1} tok/s end-to-end ({best_total:.3} s incl. prefill {best_prefill:.3} s), \
                 {decode_rate} tok/s decode only",
                tokens / best_total,
            );
            if best_cpu.is_finite() {
                println!(
                    "      cpu {best_cpu:.2} s for the best end-to-end run: {:.1} tok per cpu-second; \
                     load average now {}",
                    tokens / best_cpu.max(1e-9),
                    load_average()
                );
            }
            let prof = take_profile();
            let sum: f64 = prof.iter().map(|p| p.1).sum();
            if sum > 0.0 {
                let parts: Vec<String> = prof
                    .iter()
                    .map(|(name, t)| format!("{name} {:.0}%", 100.0 * t / sum))
                    .collect();
                println!("      phases ({sum:.2} s): {}", parts.join(", "));
            }
        }
    }
}
