//! `sparring rejudge RUN_DIR --set judge.kind=…`: a run's logged interactions judged again by another judge (or
//! under other payoffs) through the engine's `run::rejudge`, written beside the run (never over it) with new
//! verdicts, rewards, metrics and a report comparing the two; a killed re-judging continues where it stopped.

use crate::report;
use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sparring_engine::record::Metrics;
use sparring_engine::registry::Registry;
use sparring_engine::replay;
use sparring_engine::run::{self, RejudgeStep};
use sparring_engine::scenario;
use std::path::PathBuf;

/// Arguments of `sparring rejudge`.
#[derive(clap::Args, Debug, Clone)]
pub struct RejudgeArgs {
    /// The run directory (finished or crashed: its committed rounds are re-judged).
    pub run_dir: PathBuf,
    /// The new judge or payoffs: `--set judge.kind=intent-oracle --set judge.noise=0`, `--set judge={ kind = … }`,
    /// `--set payoffs.mode=pointwise`. Only `judge` and `payoffs` keys may change. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output directory (default: `<RUN_DIR>-rejudged-<judge kind>`, beside the run). Given again, a killed
    /// re-judging continues from its last committed round.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One headline metric under the original judge and the new one.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub original: Option<f64>,
    pub rejudged: Option<f64>,
}

/// What `sparring rejudge` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub run_dir: PathBuf,
    pub out: PathBuf,
    pub rounds: u32,
    /// Whole-run metrics, original and re-judged (rewards, labels, evaluations; not per topic).
    pub rows: Vec<Row>,
    /// The report comparing the two (index.html).
    pub report: PathBuf,
}

/// Whether `--set KEY=…` may change in a re-judging: the judge's table and the payoffs.
fn allowed(set: &str) -> bool {
    let key = set.split('=').next().unwrap_or("").trim();
    ["judge", "payoffs"]
        .iter()
        .any(|k| key == *k || key.starts_with(&format!("{k}.")))
}

/// The headline metrics: rewards, labels and evaluation rates (not learner numbers, not per topic).
fn headline(k: &str) -> bool {
    let top = [
        "asr",
        "benign_compliance",
        "judge/missing",
        "faithfulness_rate",
    ];
    top.contains(&k)
        || k.starts_with("reward/")
        || (k.starts_with("eval/") && !k.contains("/topic/"))
}

fn rows(original: &Metrics, rejudged: &Metrics) -> Vec<Row> {
    let mut keys: Vec<&String> = original.keys().chain(rejudged.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| headline(k) && k.as_str() != "eval/round")
        .map(|k| Row {
            metric: k.clone(),
            original: original.get(k).copied(),
            rejudged: rejudged.get(k).copied(),
        })
        .collect()
}

impl Comparison {
    pub fn table(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|r| r.metric.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let num = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        let mut s = format!(
            "{} re-judged ({} rounds) → {}\n{:<w$} {:>10} {:>10} {:>10}\n",
            self.run_dir.display(),
            self.rounds,
            self.out.display(),
            "metric",
            "original",
            "rejudged",
            "Δ"
        );
        for r in &self.rows {
            let d = r.original.zip(r.rejudged).map(|(a, b)| b - a);
            s.push_str(&format!(
                "{:<w$} {:>10} {:>10} {:>10}\n",
                r.metric,
                num(r.original),
                num(r.rejudged),
                d.map(|d| format!("{d:+.4}")).unwrap_or_else(|| "-".into())
            ));
        }
        s.push_str(&format!("report: {}\n", self.report.display()));
        s
    }
}

pub fn cli(a: RejudgeArgs, registry: &Registry) -> Result<Comparison> {
    if let Some(bad) = a.set.iter().find(|s| !allowed(s)) {
        bail!(
            "--set {bad}: a re-judging changes only `judge` and `payoffs` (the interactions are the run's)"
        );
    }
    let log = a.run_dir.join(replay::LOG);
    if !log.exists() {
        bail!(
            "{}: not a run directory (no {})",
            a.run_dir.display(),
            replay::LOG
        );
    }
    let file = a.run_dir.join(replay::SCENARIO);
    let loaded = scenario::load(&file, &a.set, registry).map_err(|e| anyhow!("{e}"))?;
    let out = a.out.clone().unwrap_or_else(|| {
        let name = a
            .run_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "run".into());
        let kind: String = loaded
            .scenario
            .judge
            .kind
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        a.run_dir.with_file_name(format!("{name}-rejudged-{kind}"))
    });
    let original = replay::recompute(&a.run_dir).map_err(|e| anyhow!("{e}"))?;
    let bar = if a.quiet || a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(original.last_round))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} round {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("re-judging with `{}`", loaded.scenario.judge.kind));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let on_round = |s: &RejudgeStep| bar.set_position(u64::from(s.round));
    let rt = crate::runtime()?;
    let done = rt.block_on(run::rejudge(
        &a.run_dir,
        &loaded,
        registry,
        &out,
        Some(&on_round),
    ));
    let done = done.map_err(|e| anyhow!("rejudge {}: {e}", a.run_dir.display()))?;
    bar.set_message("writing the report");
    let report_dir = out.join("report");
    let runs = [a.run_dir.clone(), out.clone()];
    let opts = report::play::PlayOpts {
        crossplay: false,
        exploit: None,
        exploit_scenario: None,
    };
    let written = report::build(&runs, &report_dir, &ProgressBar::hidden(), &opts)?;
    bar.finish_and_clear();
    Ok(Comparison {
        run_dir: a.run_dir,
        out: done.out_dir,
        rounds: done.last_round,
        rows: rows(&original.summary, &done.summary),
        report: written.index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_judge_and_payoff_keys_may_change() {
        assert!(allowed("judge.kind=intent-oracle"));
        assert!(allowed("judge={ kind = \"x\" }"));
        assert!(allowed("payoffs.mode=pointwise"));
        assert!(!allowed("game.rounds=3"));
        assert!(!allowed("judgement.x=1"));
        assert!(!allowed("defender.kind=x"));
    }
}
