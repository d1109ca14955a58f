//! `sparring eval`: a scenario's players, or a run's saved ones, on the scenario's eval sets through the engine's
//! own evaluation (`engine::run::evaluate_watched`, the same path as a run's `[eval]`): ASR on the harmful
//! sets, compliance and over-refusal on the benign ones (per set, and per topic for sets that have topics),
//! labelled by the scenario's judge, as a table, JSON or CSV, with progress over the modes and phases (attacker
//! rewrites, faithfulness, defender answers, labels; [`Progress`]). `--suite FILE` evaluates on a suite's sets
//! instead of the scenario's, in each of its modes, optionally with its judge. `--out` pictures: heatmaps and
//! grouped bar charts ([`plots`]).
//!
//! A served model is evaluated by replacing a role with `openai-chat` (`--set 'defender={kind="openai-chat",
//! base_url="http://127.0.0.1:8080/v1", model="sparring-defender"}'`): evaluation trains nothing, so such a
//! player may replace a role the scenario's schedule trains ([`load_for_eval`]), and an endpoint that cannot be
//! reached is an error at once, naming the role and the URL ([`check_endpoints`]).
//!
//! Its parts: `summary` (the report and its table, CSV and JSON), `load` (loading the scenario for an evaluation,
//! endpoint checks), `progress` (the progress display), `suite` (`--suite`), `plots` (`--out` pictures).

mod load;
mod plots;
mod progress;
mod suite;
mod summary;

pub use plots::plots;
pub use progress::Progress;
pub use suite::{suite_cli, suite_csv};
pub use summary::{EvalReport, summarize};

use anyhow::{Result, anyhow, bail};
use load::{check_endpoints, load_for_eval, replaced};
use progress::scope;
use sparring_engine::actor::Slot;
use sparring_engine::record::EvalMode;
use sparring_engine::registry::Registry;
use sparring_engine::replay;
use sparring_engine::run::{self, EvalStep};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `sparring eval` was asked.
pub struct EvalArgs {
    pub scenario_or_run: PathBuf,
    pub set: Vec<String>,
    pub attacker: bool,
    pub limit: Option<usize>,
    pub round: Option<u32>,
    pub quiet: bool,
}

/// `--round`: the round asked for (default: the run's last committed one), checked against the run's log.
pub(crate) fn committed_round(run_dir: &Path, round: Option<u32>) -> Result<u32> {
    let last = replay::fold_committed(&run_dir.join(replay::LOG), drop)
        .map_err(|e| anyhow!("{e}"))?
        .last_round;
    let r = round.unwrap_or(last);
    if r > last {
        bail!(
            "--round {r}: {} has committed rounds up to {last}",
            run_dir.display()
        );
    }
    Ok(r)
}

/// The state a role saved at `round` (a checkpoint if one was kept, else the per-round state file), if the run has
/// one: empty for a role without state (a scripted kind), which is then built as it starts. `eval` and `serve` read
/// a run's players with it.
pub(crate) fn saved_state(run_dir: &Path, role: &str, round: u32) -> Result<Option<Vec<u8>>> {
    for p in [
        run::checkpoint_path(run_dir, role, round),
        replay::state_path(run_dir, role, round),
    ] {
        match std::fs::read(&p) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("{}: {e}", p.display())),
        }
    }
    Ok(None)
}

/// A scenario file or a run directory, as the commands that take either read it: the run directory (if it is one)
/// and the scenario file to load (the run's resolved `scenario.toml`).
pub(crate) fn scenario_or_run(source: &Path) -> (Option<PathBuf>, PathBuf) {
    if source.is_dir() {
        (Some(source.to_path_buf()), source.join(replay::SCENARIO))
    } else {
        (None, source.to_path_buf())
    }
}

/// A run's saved player for `role` at `round` (default: the last committed one): the round and its state (`None`:
/// the role keeps none, e.g. a scripted kind, and plays as it starts). A learning role without a saved state past
/// round 0 is an error naming the files looked for.
pub(crate) fn player_state(
    run_dir: &Path,
    role: &str,
    learns: bool,
    round: Option<u32>,
) -> Result<(u32, Option<Vec<u8>>)> {
    let r = committed_round(run_dir, round)?;
    let state = saved_state(run_dir, role, r)?;
    if state.is_none() && r > 0 && learns {
        bail!(
            "{}: no saved {role} state for round {r} (checkpoints/r{r}/{role}.bin or state/)",
            run_dir.display()
        );
    }
    Ok((r, state.filter(|s| !s.is_empty())))
}

/// `sparring eval` in one mode (`--attacker` or not), with its own progress display.
pub fn cli(a: EvalArgs, registry: &Registry) -> Result<EvalReport> {
    let mode = if a.attacker {
        EvalMode::Attacker
    } else {
        EvalMode::Plain
    };
    let progress = Progress::new(&[mode], a.quiet);
    let out = eval_mode(a, registry, &progress, 0);
    progress.finish();
    out
}

/// One mode of an evaluation (the `index`th of `progress`'s modes).
pub(super) fn eval_mode(
    a: EvalArgs,
    registry: &Registry,
    progress: &Progress,
    index: usize,
) -> Result<EvalReport> {
    let (run_dir, file) = scenario_or_run(&a.scenario_or_run);
    let mut loaded = load_for_eval(&file, &a.set, registry)?;
    if loaded.eval.is_empty() {
        bail!("{}: `data.eval` has no sets to evaluate on", file.display());
    }
    if let Some(n) = a.limit {
        for (_, seeds) in loaded.eval.iter_mut() {
            seeds.truncate(n);
        }
    }
    let mode = if a.attacker {
        EvalMode::Attacker
    } else {
        EvalMode::Plain
    };
    check_endpoints(&loaded, mode)?;
    let mut init = BTreeMap::new();
    let mut round = None;
    let work = match &run_dir {
        Some(dir) => {
            let r = committed_round(dir, a.round)?;
            for (slot, role) in [
                (Slot::Attacker, "attacker"),
                (Slot::Defender, "defender"),
                (Slot::Judge, "judge"),
            ] {
                // A role the overrides gave another kind (e.g. a served model) starts fresh: the run's state is
                // another kind's.
                if replaced(&file, &loaded, role) {
                    continue;
                }
                if let Some(b) = saved_state(dir, role, r)? {
                    if !b.is_empty() {
                        init.insert(slot, b);
                    }
                } else if r > 0 && slot == Slot::Defender {
                    bail!(
                        "{}: no saved defender state for round {r} (checkpoints/r{r}/defender.bin or state/)",
                        dir.display()
                    );
                }
            }
            round = Some(r);
            dir.clone()
        }
        None => {
            if a.round.is_some() {
                bail!("--round needs a run directory");
            }
            std::env::temp_dir().join(format!("sparring-eval-{}", std::process::id()))
        }
    };
    let watch = progress.start_mode(
        index,
        mode,
        loaded.scenario.payoffs.faithfulness_gate,
        scope(&loaded, mode),
    );
    let on_step = |s: &EvalStep| watch.step(s);
    let rt = crate::runtime()?;
    let recs = rt.block_on(run::evaluate_watched(
        &loaded,
        registry,
        &work,
        init,
        mode,
        round.unwrap_or(0),
        Some(&on_step),
    ));
    watch.end();
    if run_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let recs = match recs {
        Ok(r) => r,
        Err(e) => {
            // The error is printed after the bars are gone.
            progress.finish();
            bail!("eval {}: {e}", a.scenario_or_run.display());
        }
    };
    let sum = summarize(&recs);
    Ok(EvalReport {
        scenario: file,
        suite: None,
        mode: mode.to_string(),
        round,
        sets: sum.sets,
        topics: sum.topics,
        asr: sum.asr,
        compliance: sum.compliance,
        over_refusal: sum.compliance.map(|c| 1.0 - c),
    })
}
