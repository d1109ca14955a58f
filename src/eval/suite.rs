//! `sparring eval --suite FILE`: a suite's sets (and modes, and judge) instead of the scenario's.

use super::progress::Progress;
use super::summary::COLUMNS;
use super::{EvalArgs, EvalReport, eval_mode};
use anyhow::{Result, anyhow, bail};
use sparring_engine::record::EvalMode;
use sparring_engine::registry::Registry;
use std::path::{Path, PathBuf};

/// A suite file (`suites/safety.toml`): the sets to evaluate on (as `data.eval` sets; paths relative to the suite
/// file), the modes (`plain`, `attacker`), and optionally a judge that replaces the scenario's.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    #[serde(default)]
    name: Option<String>,
    sets: Vec<toml::Table>,
    #[serde(default = "plain_only")]
    modes: Vec<String>,
    #[serde(default)]
    judge: Option<toml::Table>,
}

fn plain_only() -> Vec<String> {
    vec!["plain".into()]
}

/// `sparring eval … --suite FILE`: one report per mode of the suite, on its sets (and with its judge).
pub fn suite_cli(a: EvalArgs, suite: &Path, registry: &Registry) -> Result<Vec<EvalReport>> {
    let text = std::fs::read_to_string(suite)
        .map_err(|e| anyhow!("{}: cannot read: {e}", suite.display()))?;
    let s: Suite = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", suite.display()))?;
    if s.sets.is_empty() {
        bail!("{}: `sets` is empty", suite.display());
    }
    let dir = suite.parent().unwrap_or(Path::new("."));
    let mut sets = Vec::new();
    let mut names = Vec::new();
    for (i, mut t) in s.sets.into_iter().enumerate() {
        let key = |k: &str| format!("{}: sets[{i}].{k}", suite.display());
        let Some(toml::Value::String(path)) = t.get("path") else {
            bail!("{}: a path (string) is needed", key("path"));
        };
        let path = PathBuf::from(path);
        // Relative to the suite file: made absolute, as the scenario would read them relative to itself.
        let abs = if path.is_absolute() {
            path
        } else {
            dir.join(path)
        };
        let abs = std::path::absolute(&abs).unwrap_or(abs);
        let Some(abs) = abs.to_str() else {
            bail!("{}: not UTF-8", key("path"));
        };
        t.insert("path".into(), toml::Value::String(abs.to_string()));
        match t.get("name") {
            Some(toml::Value::String(n)) => names.push(toml::Value::String(n.clone())),
            _ => bail!("{}: a name (string) is needed", key("name")),
        }
        sets.push(toml::Value::Table(t));
    }
    // A suite's set may not take a training set's name (seed ids are `<set>:<id>` across both).
    let (_, scenario_file) = super::scenario_or_run(&a.scenario_or_run);
    let train: Vec<String> = std::fs::read_to_string(&scenario_file)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| t.get("data")?.get("train")?.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Some(s.get("name")?.as_str()?.to_string()))
        .collect();
    for n in &names {
        if let Some(n) = n.as_str().filter(|n| train.iter().any(|t| t == n)) {
            bail!(
                "{}: set `{n}` has the name of a training set of {}: rename it in the suite",
                suite.display(),
                scenario_file.display()
            );
        }
    }
    let mut overrides = vec![
        format!("data.eval={}", toml::Value::Array(sets)),
        format!("eval.sets={}", toml::Value::Array(names.clone())),
        format!("eval.attack_sets={}", toml::Value::Array(names)),
    ];
    if let Some(j) = s.judge {
        overrides.push(format!("judge={}", toml::Value::Table(j)));
    }
    let mut modes = Vec::new();
    for (i, mode) in s.modes.iter().enumerate() {
        modes.push(match mode.as_str() {
            "plain" => EvalMode::Plain,
            "attacker" => EvalMode::Attacker,
            other => bail!(
                "{}: modes[{i}]: `{other}` is not a mode of `sparring eval` (plain, attacker)",
                suite.display()
            ),
        });
    }
    // One display over the suite's modes, run one after the other.
    let progress = Progress::new(&modes, a.quiet);
    let mut out = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let mut set = overrides.clone();
        // The user's own overrides last: they win.
        set.extend(a.set.iter().cloned());
        let rep = eval_mode(
            EvalArgs {
                scenario_or_run: a.scenario_or_run.clone(),
                set,
                attacker: *mode == EvalMode::Attacker,
                limit: a.limit,
                round: a.round,
                quiet: a.quiet,
            },
            registry,
            &progress,
            i,
        );
        let mut rep = match rep {
            Ok(r) => r,
            Err(e) => {
                progress.finish();
                return Err(e);
            }
        };
        rep.suite = Some(
            s.name
                .clone()
                .unwrap_or_else(|| suite.display().to_string()),
        );
        out.push(rep);
    }
    progress.finish();
    Ok(out)
}

/// The reports of a suite as one CSV: the report's columns after `mode`.
pub fn suite_csv(reps: &[EvalReport]) -> Result<String> {
    let mut header = vec!["mode"];
    header.extend(COLUMNS);
    let rows = reps.iter().flat_map(|r| {
        r.rows().into_iter().map(move |mut row| {
            row.insert(0, r.mode.clone());
            row
        })
    });
    crate::report::csv_text(&header, rows)
}
