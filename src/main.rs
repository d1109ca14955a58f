//! The `sparring` command line: `run`, `validate`, `replay`, `list`, `schema`, `convert`, `eval`, `report` and
//! `serve`.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sparring_engine::Role;
use sparring_engine::record::Metrics;
use sparring_engine::replay;
use sparring_engine::run::{self, Progress, RunSummary};
use sparring_engine::scenario::{self, Loaded};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod eval;
mod export;
mod node;
mod rejudge;
mod report;
mod serve;

/// Adversarial alignment games between language models (AdvGame): an attacker rewrites seed requests, a defender
/// answers, a judge turns pairwise preferences into rewards, and both players learn.
#[derive(Parser)]
#[command(name = "sparring", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Refuse a scenario whose rounds would hold more than this much memory (e.g. `8GiB`, `512MB`); default: the
    /// memory available now.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
}

/// A `--max-memory` size: bytes, or a number with a unit (`8GiB`, `1.5 GB`).
fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size like 8GiB or 512MB ({e})"))
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario (or continue a killed run with --resume).
    Run {
        /// Scenario file (TOML, schema = 1). Not needed with --resume.
        file: Option<PathBuf>,
        /// Run directory (default: runs/<name>-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a scenario value: --set game.rounds=3 (TOML value syntax, else a string). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Continue the run in this directory from its last committed round.
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
        resume: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Print the summary as JSON (run dir, metrics, per-round metrics, mean timings, restarts).
        #[arg(long)]
        json: bool,
    },
    /// Check a scenario without running it: schema, types, values, data files, role parameters.
    Validate {
        file: PathBuf,
        /// Override a scenario value (as for `run`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Recompute rewards and metrics of a run from its log alone and check them against the live ones.
    Replay {
        run_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the role kinds a scenario can use, with their parameters.
    List,
    /// Print the JSON Schema of scenario files (every section, and each role's parameters by `kind`), for editors:
    /// `sparring schema > sparring.schema.json`, then `#:schema ./sparring.schema.json` atop a scenario (taplo,
    /// Even Better TOML).
    Schema,
    /// Convert a Llama-family model between the two layouts: a GGUF file to the Hugging Face layout (config.json,
    /// model.safetensors (F32), tokenizer.json, tokenizer_config.json with the chat template), or a Hugging Face
    /// directory (Llama, Mistral, Qwen2) to one GGUF file (F32).
    Convert {
        /// The GGUF file, or the Hugging Face directory.
        input: PathBuf,
        /// The output: a directory (created) for a GGUF input, a `.gguf` file for a directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a scenario's defender (or a run's, at its last committed round or a kept checkpoint): ASR on the
    /// harmful eval sets and compliance on the benign ones, labelled by the scenario's judge — the same
    /// evaluation as a run's `[eval]`.
    ///
    /// A served model (`sparring serve`, vLLM, llama.cpp, …) is evaluated by replacing the defender with an
    /// `openai-chat` player: `--set 'defender={kind="openai-chat", base_url="http://127.0.0.1:8080/v1",
    /// model="sparring-defender"}'` (an inline table replaces the whole role; `sparring list` has the kind's
    /// keys). Evaluation trains nothing, so the scenario's schedule need not freeze it. An endpoint that cannot
    /// be reached fails at once, naming the role and the URL.
    ///
    /// Progress (stderr): the mode (of a suite's), its sets and prompts, and the current phase (attacker
    /// rewrites, faithfulness, defender answers, labels) with its ETA; none with --quiet, --json or --csv.
    Eval {
        /// Scenario file or run directory.
        scenario_or_run: PathBuf,
        /// Override a scenario value (as for `run`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Rewrite each eval seed with the scenario's attacker first (faithfulness-gated like the game: an
        /// unparseable or unfaithful rewrite is a failed attack).
        #[arg(long)]
        attacker: bool,
        /// Keep only the first N seeds of each eval set.
        #[arg(long)]
        limit: Option<usize>,
        /// With a run directory: the players of this round (default: the last committed one).
        #[arg(long)]
        round: Option<u32>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV instead of a table (a row per set and category, then per topic).
        #[arg(long)]
        csv: bool,
        /// Evaluate on a suite's sets (and modes, and judge) instead of the scenario's eval sets
        /// (`suites/safety.toml`).
        #[arg(long, value_name = "FILE")]
        suite: Option<PathBuf>,
        /// Also write the table, JSON and CSV into this directory (`eval.txt`, `eval.json`, `eval.csv`), heatmaps
        /// of ASR and over-refusal per set, topic and mode (`asr.svg|png`, `over_refusal.svg|png`), and grouped
        /// bar charts of the rate per set and mode (`bars.svg|png`: ASR on the harmful sets, over-refusal on the
        /// benign ones) and, for sets with topics, per topic and mode (`topics.svg|png`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Plots, a CSV and a page over run directories: per-round curves, a safety/utility Pareto plot.
    Report(report::ReportArgs),
    /// Serve one player (a scenario's initial one, or a run's at a committed round) behind an OpenAI-compatible
    /// endpoint: POST /v1/chat/completions (batched, streaming, log-probs), GET /v1/models, GET /health.
    Serve(serve::ServeArgs),
    /// Re-judge a run's logged interactions with another judge (or payoffs), without generating anything: new
    /// verdicts, rewards, metrics and a report, written beside the run; continues a killed re-judging.
    Rejudge(rejudge::RejudgeArgs),
    /// Take a run's trained player away: a Hugging Face directory (LoRA merged) that transformers loads, or its
    /// LoRA adapters alone in PEFT's layout (--adapter).
    Export(export::ExportArgs),
    /// Host role actors for games on other machines: a scenario's `[cluster]` lists this node, and a role's
    /// `node = "NAME"` places the role here.
    Node(node::NodeArgs),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Printing into a closed pipe (`sparring list | head`) ends the process quietly, as other Unix tools do,
    // instead of panicking in `println!`.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let registry = sparring_actors::registry();
    scenario::set_memory_limit(cli.max_memory);
    match cli.cmd {
        Cmd::Convert { input, out } => {
            let spin = ProgressBar::new_spinner();
            spin.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spin.set_message(format!(
                "converting {} → {}",
                input.display(),
                out.display()
            ));
            spin.enable_steady_tick(std::time::Duration::from_millis(200));
            let res = if input.is_dir() {
                sparring_actors::formats::convert_hf_to_gguf(&input, &out)
            } else {
                sparring_actors::formats::convert_gguf_to_hf(&input, &out)
            };
            spin.finish_and_clear();
            res.map_err(|e| anyhow!("convert {}: {e}", input.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::List => {
            list(&registry);
            Ok(())
        }
        Cmd::Schema => {
            let schema = scenario::json_schema(&registry);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        Cmd::Validate { file, set } => {
            let loaded = scenario::load(&file, &set, &registry).map_err(|e| anyhow!("{e}"))?;
            let s = &loaded.scenario;
            let players = if loaded.self_play() {
                format!("one player `{}` on both sides", s.attacker.kind)
            } else {
                format!(
                    "attacker `{}`, defender `{}`",
                    s.attacker.kind,
                    s.role(Role::Defender).kind
                )
            };
            println!(
                "{}: ok — `{}`: {} rounds, {} seeds/round, A={}, D={}, schedule {}; {} training seeds, {} eval sets; \
                 {players}, judge `{}`",
                file.display(),
                s.game.name,
                s.game.rounds,
                s.game.seeds_per_round,
                s.game.attacks_per_seed,
                s.game.responses_per_attack,
                serde_json::to_value(s.game.schedule)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                loaded.train.len(),
                loaded.eval.len(),
                s.judge.kind
            );
            if let Some(c) = &s.cluster {
                let on =
                    |r: &scenario::RoleCfg| r.node.clone().unwrap_or_else(|| "this process".into());
                println!(
                    "cluster: {} nodes ({}); attacker on {}, defender on {}, judge on {}; on node loss: {:?}",
                    c.nodes.len(),
                    c.nodes
                        .iter()
                        .map(|n| format!("{} at {}", n.name, n.addr))
                        .collect::<Vec<_>>()
                        .join(", "),
                    on(&s.attacker),
                    on(s.role(Role::Defender)),
                    on(&s.judge),
                    format!("{:?}", c.on_node_loss).to_lowercase()
                );
            }
            Ok(())
        }
        Cmd::Replay { run_dir, json } => replay_cmd(&run_dir, json),
        Cmd::Eval {
            scenario_or_run,
            set,
            attacker,
            limit,
            round,
            quiet,
            json,
            csv,
            suite,
            out,
        } => {
            let args = eval::EvalArgs {
                scenario_or_run,
                set,
                attacker,
                limit,
                round,
                quiet: quiet || json || csv,
            };
            let reps = match &suite {
                Some(file) => {
                    if attacker {
                        bail!(
                            "--attacker: a suite names its modes (`modes = [\"plain\", \"attacker\"]`)"
                        );
                    }
                    eval::suite_cli(args, file, &registry)?
                }
                None => vec![eval::cli(args, &registry)?],
            };
            let table: String = reps
                .iter()
                .map(|r| r.table())
                .collect::<Vec<_>>()
                .join("\n");
            let (json_text, csv_text) = match (&suite, reps.as_slice()) {
                (None, [one]) => (serde_json::to_string_pretty(one)?, one.csv()?),
                _ => (
                    serde_json::to_string_pretty(&reps)?,
                    eval::suite_csv(&reps)?,
                ),
            };
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir).with_context(|| format!("--out {}", dir.display()))?;
                for (name, text) in [
                    ("eval.txt", &table),
                    ("eval.json", &json_text),
                    ("eval.csv", &csv_text),
                ] {
                    let p = dir.join(name);
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                }
                for (name, plot) in eval::plots(&reps) {
                    let p = dir.join(format!("{name}.svg"));
                    std::fs::write(&p, plot.svg()?)
                        .with_context(|| format!("writing {}", p.display()))?;
                    let p = dir.join(format!("{name}.png"));
                    std::fs::write(&p, plot.png()?)
                        .with_context(|| format!("writing {}", p.display()))?;
                }
            }
            if json {
                println!("{json_text}");
            } else if csv {
                print!("{csv_text}");
            } else {
                print!("{table}");
            }
            Ok(())
        }
        Cmd::Report(args) => report::cli(args),
        Cmd::Serve(args) => serve::cli(args, &registry),
        Cmd::Node(args) => node::cli(args, &registry),
        Cmd::Export(args) => {
            let json = args.json;
            let t0 = std::time::Instant::now();
            let done = export::cli(args, &registry)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!("{} in {:.1} s", done.line(), t0.elapsed().as_secs_f64());
            }
            Ok(())
        }
        Cmd::Rejudge(args) => {
            let json = args.json;
            let c = rejudge::cli(args, &registry)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", c.table());
            }
            Ok(())
        }
        Cmd::Run {
            file,
            out,
            set,
            resume,
            quiet,
            json,
        } => {
            let (loaded, run_dir, resuming) = match (&resume, &file) {
                (Some(dir), _) => {
                    if let Some(bad) = set.iter().find(|s| !scenario::resumable_override(s)) {
                        bail!(
                            "--set {bad}: a resumed run keeps its scenario (only `faults.*` and {} may change)",
                            scenario::SCHEDULING_KEYS
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    if file.is_some() {
                        bail!("give either a scenario FILE or --resume RUN_DIR, not both");
                    }
                    let path = dir.join(replay::SCENARIO);
                    let loaded =
                        scenario::load(&path, &set, &registry).map_err(|e| anyhow!("{e}"))?;
                    (loaded, dir.clone(), true)
                }
                (None, Some(f)) => {
                    let loaded = scenario::load(f, &set, &registry).map_err(|e| anyhow!("{e}"))?;
                    let dir = out.unwrap_or_else(|| default_run_dir(&loaded));
                    let resuming = unfinished_run_of(&loaded, &dir)?;
                    if resuming && !(quiet || json) {
                        eprintln!(
                            "{} holds an unfinished run of this scenario: continuing it",
                            dir.display()
                        );
                    }
                    (loaded, dir, resuming)
                }
                (None, None) => bail!("give a scenario FILE (or --resume RUN_DIR)"),
            };
            let summary = run(&loaded, &registry, &run_dir, resuming, quiet || json)?;
            if json {
                let v = serde_json::json!({
                    "run_id": summary.run_id,
                    "run_dir": summary.run_dir,
                    "rounds": summary.rounds,
                    "first_round": summary.first_round,
                    "metrics": summary.metrics,
                    "per_round": summary.per_round.iter().map(|(r, m)| serde_json::json!({"round": r, "metrics": m})).collect::<Vec<_>>(),
                    "mean_timings": summary.mean_timings,
                    "restarts": summary.restarts,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_summary(&summary);
            }
            Ok(())
        }
    }
}

/// Whether `dir` holds an unfinished run of `loaded`'s scenario (then `sparring run FILE --out DIR` continues it,
/// as `--resume DIR` does). A directory without a run is a fresh run; a run of another scenario (another run id:
/// the scenario's hash, without its faults, base directory and scheduling keys) or a finished one is an error.
fn unfinished_run_of(loaded: &Loaded, dir: &Path) -> Result<bool> {
    let log = dir.join(replay::LOG);
    if !log.exists() {
        return Ok(false);
    }
    let info = dir.join("run.json");
    let run_id = run::recorded_run_id(dir);
    if run_id.as_deref() != Some(loaded.run_id.as_str()) {
        bail!(
            "{} holds a run of another scenario ({}; this one is `{}`): choose another --out",
            dir.display(),
            run_id.map_or_else(
                || format!("{} unreadable", info.display()),
                |r| format!("`{r}`")
            ),
            loaded.run_id
        );
    }
    let last = replay::fold_committed(&log, drop)
        .map_err(|e| anyhow!("{e}"))?
        .last_round;
    if last >= loaded.scenario.game.rounds {
        bail!(
            "{} holds a finished run of this scenario ({last} rounds): choose another --out",
            dir.display()
        );
    }
    Ok(true)
}

/// The async runtime of every command: one thread carries the engine's messages (supervision, the replay
/// pipeline, progress) while model compute runs on the roles' own threads, and a run's game loop runs on the
/// role thread that answered it (`sparring_engine::inline`). Fewer cross-thread wake-ups than a multi-thread
/// runtime: measured 2.2 vs 3.2 ms per flagship round outside model compute (benches/scenario.rs).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn default_run_dir(loaded: &Loaded) -> PathBuf {
    let now = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
    PathBuf::from("runs").join(format!("{}-{now}", loaded.scenario.game.name))
}

fn run(
    loaded: &Loaded,
    registry: &sparring_engine::Registry,
    run_dir: &Path,
    resume: bool,
    quiet: bool,
) -> Result<RunSummary> {
    let rounds = loaded.scenario.game.rounds;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(rounds))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} round {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{}", run_dir.display()));
    let rt = runtime()?;
    let bar2 = bar.clone();
    let mut on_round = move |p: &Progress| {
        bar2.set_position(u64::from(p.round));
        let f = |k: &str| {
            p.metrics
                .get(k)
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into())
        };
        bar2.set_message(format!(
            "ASR {} benign-compliance {} faithful {}",
            f("asr"),
            f("benign_compliance"),
            f("faithfulness_rate")
        ));
    };
    let res = rt.block_on(run::run(loaded, registry, run_dir, resume, &mut on_round));
    bar.finish_and_clear();
    res.map_err(|e| anyhow!("run {}: {e}", run_dir.display()))
}

fn fmt_metric(m: &Metrics, k: &str) -> String {
    match m.get(k) {
        Some(v) if k.ends_with("rate") || k.contains("asr") || k.contains("compliance") => {
            format!("{:.1}%", v * 100.0)
        }
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
        None => "-".into(),
    }
}

fn print_summary(s: &RunSummary) {
    println!("run {} ({})", s.run_id, s.run_dir.display());
    if s.first_round > 1 {
        println!("resumed at round {}", s.first_round);
    }
    let w = s.metrics.keys().map(|k| k.len()).max().unwrap_or(6).max(6);
    println!("{:<w$} {:>10}", "metric", "value");
    println!("{}", "-".repeat(w + 11));
    for (k, _) in s.metrics.iter() {
        println!("{:<w$} {:>10}", k, fmt_metric(&s.metrics, k));
    }
    let t = &s.mean_timings;
    println!("{}", "-".repeat(w + 11));
    println!(
        "mean round {:.1} ms (attacker {:.1}, faithfulness {:.1}, defender {:.1}, judge {:.1}, learn {:.1}, eval {:.1}, commit {:.1})",
        t.total_ms,
        t.attacker_ms,
        t.faithfulness_ms,
        t.defender_ms,
        t.judge_ms,
        t.learn_ms,
        t.eval_ms,
        t.commit_ms
    );
    if t.total_ms > 0.0 {
        println!(
            "engine overhead: {:.2} % of the round outside model compute and judging ({:.2} % the engine's own work)",
            100.0 * (t.total_ms - t.compute_ms).max(0.0) / t.total_ms,
            100.0 * (t.total_ms - t.roles_ms).max(0.0) / t.total_ms
        );
    }
    let restarts: Vec<String> = s
        .restarts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !restarts.is_empty() {
        println!("actor restarts: {}", restarts.join(", "));
    }
}

fn replay_cmd(run_dir: &Path, json: bool) -> Result<()> {
    let r = replay::recompute(run_dir).map_err(|e| anyhow!("{e}"))?;
    if json {
        let v = serde_json::json!({
            "last_round": r.last_round,
            "rounds": r.rounds.iter().map(|(k, m)| serde_json::json!({"round": k, "metrics": m})).collect::<Vec<_>>(),
            "summary": r.summary,
            "mismatches": r.mismatches,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let cols = [
            "faithfulness_rate",
            "asr",
            "benign_compliance",
            "reward/attacker",
            "reward/defender",
        ];
        print!("{:>6}", "round");
        for c in cols {
            print!(" {c:>18}");
        }
        println!();
        for (round, m) in &r.rounds {
            print!("{round:>6}");
            for c in cols {
                print!(" {:>18}", fmt_metric(m, c));
            }
            println!();
        }
        println!("summary over {} committed rounds:", r.last_round);
        for k in r.summary.keys() {
            println!("  {:<34} {:>12}", k, fmt_metric(&r.summary, k));
        }
    }
    let live = run_dir.join("summary.json");
    let mut problems = r.mismatches.clone();
    if let Ok(text) = std::fs::read_to_string(&live) {
        match serde_json::from_str::<Metrics>(&text) {
            Ok(m) if m == r.summary => {}
            Ok(_) => problems.push(format!(
                "{}: live summary differs from the recomputed one",
                live.display()
            )),
            Err(e) => problems.push(format!("{}: {e}", live.display())),
        }
    }
    if !problems.is_empty() {
        bail!(
            "replay found {} inconsistencies:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    if !json {
        println!("replay: rewards and metrics recomputed from the log match the live run");
    }
    Ok(())
}

fn list(registry: &sparring_engine::Registry) {
    for info in registry.kinds() {
        let roles: Vec<&str> = info.roles.iter().map(|r| r.as_str()).collect();
        println!("{}  (roles: {})", info.kind, roles.join(", "));
        println!("    {}", info.about);
        for p in info.params.iter().flat_map(|p| p.summaries()) {
            let d = match (&p.default, p.required) {
                (Some(d), _) => format!(" = {d}"),
                (None, true) => " (required)".into(),
                (None, false) => " (optional)".into(),
            };
            println!("    {:<24} {}{}\n        {}", p.name, p.ty, d, p.about);
        }
        println!();
    }
}
