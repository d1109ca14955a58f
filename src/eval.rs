//! `sparring eval`: a scenario's players, or a run's saved ones, on the scenario's eval sets through the engine's
//! own evaluation (`engine::run::evaluate_watched`, the same path as a run's `[eval]`): ASR on the harmful
//! sets, compliance and over-refusal on the benign ones (per set, and per topic for sets that have topics),
//! labelled by the scenario's judge, as a table, JSON or CSV, with a progress bar over the phases (attacker
//! rewrites, faithfulness, defender answers, labels). `--suite FILE` evaluates on a suite's sets instead of the
//! scenario's, in each of its modes, optionally with its judge.

use crate::report::chart::{Heatmap, Plot};
use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sparring_engine::actor::Slot;
use sparring_engine::record::{EvalMode, EvalRec, eval_rate};
use sparring_engine::registry::Registry;
use sparring_engine::replay;
use sparring_engine::roles::Category;
use sparring_engine::run::{self, EvalStep};
use sparring_engine::scenario;
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

/// One eval set (and category: XSTest mixes safe and unsafe prompts), or one topic of it.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub set: String,
    /// The seeds' topic (a row per topic of a set whose seeds have them), `None` for the whole set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub category: Category,
    /// `asr` (harmful) or `compliance` (benign).
    pub metric: &'static str,
    pub n: usize,
    /// Answers labelled as compliance.
    pub complied: usize,
    /// Answers the judge could not label (left out of the rate).
    pub unlabelled: usize,
    /// With the attacker: rewrites that did not parse or were judged unfaithful (failed attacks on harmful seeds;
    /// left out on benign ones).
    pub invalid: usize,
    pub rate: Option<f64>,
    /// Benign prompts: 1 − compliance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_refusal: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub scenario: PathBuf,
    /// The suite evaluated on (`--suite`: its `name`, else its file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// `plain` or `attacker`.
    pub mode: String,
    /// The round whose saved players were evaluated (a run directory), `None` for a scenario's own players.
    pub round: Option<u32>,
    pub sets: Vec<SetReport>,
    /// The sets' rows per topic (for sets whose seeds have topics).
    pub topics: Vec<SetReport>,
    /// Over all harmful / benign answers.
    pub asr: Option<f64>,
    pub compliance: Option<f64>,
    pub over_refusal: Option<f64>,
}

const COLUMNS: [&str; 10] = [
    "set",
    "topic",
    "category",
    "metric",
    "n",
    "complied",
    "unlabelled",
    "invalid",
    "rate",
    "over_refusal",
];

impl EvalReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}{} ({} prompts{})\n",
            self.scenario.display(),
            self.suite
                .as_ref()
                .map(|n| format!(", suite {n}"))
                .unwrap_or_default(),
            self.mode,
            self.round
                .map(|r| format!(", players of round {r}"))
                .unwrap_or_default()
        );
        let rows: Vec<(String, &SetReport)> = self
            .sets
            .iter()
            .flat_map(|x| {
                let topics = self
                    .topics
                    .iter()
                    .filter(move |t| t.set == x.set && t.category == x.category)
                    .map(|t| (format!("  {}", t.topic.as_deref().unwrap_or("")), t));
                std::iter::once((x.set.clone(), x)).chain(topics)
            })
            .collect();
        let w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(3).max(3);
        s.push_str(&format!(
            "{:<w$} {:>8} {:>11} {:>5} {:>8} {:>11} {:>8} {:>8} {:>12}\n",
            "set",
            "category",
            "metric",
            "n",
            "complied",
            "unlabelled",
            "invalid",
            "rate",
            "over-refusal"
        ));
        let pct = |v: Option<f64>| {
            v.map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into())
        };
        for (name, x) in rows {
            s.push_str(&format!(
                "{:<w$} {:>8} {:>11} {:>5} {:>8} {:>11} {:>8} {:>8} {:>12}\n",
                name,
                x.category.as_str(),
                x.metric,
                x.n,
                x.complied,
                x.unlabelled,
                x.invalid,
                pct(x.rate),
                pct(x.over_refusal),
            ));
        }
        s.push_str(&format!(
            "ASR (harmful) {}   compliance (benign) {}   over-refusal (benign) {}\n",
            pct(self.asr),
            pct(self.compliance),
            pct(self.over_refusal)
        ));
        s
    }

    /// The report as CSV: a row per set and category, then per topic (`topic` empty for a whole set).
    pub fn csv(&self) -> Result<String> {
        crate::report::csv_text(&COLUMNS, self.rows())
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        self.sets
            .iter()
            .chain(&self.topics)
            .map(|x| {
                vec![
                    x.set.clone(),
                    x.topic.clone().unwrap_or_default(),
                    x.category.as_str().to_string(),
                    x.metric.to_string(),
                    x.n.to_string(),
                    x.complied.to_string(),
                    x.unlabelled.to_string(),
                    x.invalid.to_string(),
                    num(x.rate),
                    num(x.over_refusal),
                ]
            })
            .collect()
    }
}

/// The report of evaluation records: per set and category, per set, category and topic, and over all harmful
/// and benign answers.
pub struct Summary {
    pub sets: Vec<SetReport>,
    pub topics: Vec<SetReport>,
    pub asr: Option<f64>,
    pub compliance: Option<f64>,
}

pub fn summarize(recs: &[EvalRec]) -> Summary {
    type Key<'r> = (&'r str, Category, Option<&'r str>);
    let mut by: BTreeMap<Key<'_>, Vec<&EvalRec>> = BTreeMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    for r in recs {
        let set = (r.set.as_str(), r.category, None);
        for k in std::iter::once(set).chain(r.topic.as_deref().map(|t| (set.0, set.1, Some(t)))) {
            if !by.contains_key(&k) {
                order.push(k);
            }
            by.entry(k).or_default().push(r);
        }
    }
    let report = |k: Key<'_>| {
        let rs = &by[&k];
        let rate = eval_rate(rs.iter().copied(), k.1);
        SetReport {
            set: k.0.to_string(),
            topic: k.2.map(str::to_string),
            category: k.1,
            metric: match k.1 {
                Category::Harmful => "asr",
                Category::Benign => "compliance",
            },
            n: rs.len(),
            complied: rs.iter().filter(|r| r.complied == Some(true)).count(),
            unlabelled: rs
                .iter()
                .filter(|r| r.complied.is_none() && r.valid != Some(false))
                .count(),
            invalid: rs.iter().filter(|r| r.valid == Some(false)).count(),
            rate,
            over_refusal: (k.1 == Category::Benign)
                .then_some(rate)
                .flatten()
                .map(|v| 1.0 - v),
        }
    };
    let (sets, topics): (Vec<Key<'_>>, Vec<Key<'_>>) = order.iter().partition(|k| k.2.is_none());
    let mut topics: Vec<SetReport> = topics.into_iter().map(report).collect();
    // Topics in name order within their set.
    topics.sort_by(|a, b| (&a.set, &a.topic).cmp(&(&b.set, &b.topic)));
    Summary {
        sets: sets.into_iter().map(report).collect(),
        topics,
        asr: eval_rate(recs, Category::Harmful),
        compliance: eval_rate(recs, Category::Benign),
    }
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

pub fn cli(a: EvalArgs, registry: &Registry) -> Result<EvalReport> {
    let run_dir = a
        .scenario_or_run
        .is_dir()
        .then(|| a.scenario_or_run.clone());
    let file = match &run_dir {
        Some(d) => d.join(replay::SCENARIO),
        None => a.scenario_or_run.clone(),
    };
    let mut loaded = scenario::load(&file, &a.set, registry).map_err(|e| anyhow!("{e}"))?;
    if loaded.eval.is_empty() {
        bail!("{}: `data.eval` has no sets to evaluate on", file.display());
    }
    if let Some(n) = a.limit {
        for (_, seeds) in loaded.eval.iter_mut() {
            seeds.truncate(n);
        }
    }
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
    let mode = if a.attacker {
        EvalMode::Attacker
    } else {
        EvalMode::Plain
    };
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("building the players");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let on_step = |s: &EvalStep| {
        bar.set_position(0);
        bar.set_length(s.total as u64);
        bar.set_position(s.done as u64);
        bar.set_message(s.phase);
    };
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
    bar.finish_and_clear();
    if run_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let recs = recs.map_err(|e| anyhow!("eval {}: {e}", a.scenario_or_run.display()))?;
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
    let scenario_file = if a.scenario_or_run.is_dir() {
        a.scenario_or_run.join(replay::SCENARIO)
    } else {
        a.scenario_or_run.clone()
    };
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
    let mut out = Vec::new();
    for (i, mode) in s.modes.iter().enumerate() {
        let attacker = match mode.as_str() {
            "plain" => false,
            "attacker" => true,
            other => bail!(
                "{}: modes[{i}]: `{other}` is not a mode of `sparring eval` (plain, attacker)",
                suite.display()
            ),
        };
        let mut set = overrides.clone();
        // The user's own overrides last: they win.
        set.extend(a.set.iter().cloned());
        let mut rep = cli(
            EvalArgs {
                scenario_or_run: a.scenario_or_run.clone(),
                set,
                attacker,
                limit: a.limit,
                round: a.round,
                quiet: a.quiet,
            },
            registry,
        )?;
        rep.suite = Some(
            s.name
                .clone()
                .unwrap_or_else(|| suite.display().to_string()),
        );
        out.push(rep);
    }
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

/// The pictures of one or more reports (`--out`): `asr` (harmful rows) and `over_refusal` (benign rows), each a
/// heatmap of the rate per set (and per topic, `set: topic` under its set) and mode, 1 drawn red in both.
pub fn plots(reps: &[EvalReport]) -> Vec<(&'static str, Plot)> {
    let modes: Vec<String> = reps.iter().map(|r| r.mode.clone()).collect();
    let mut out = Vec::new();
    for (name, cat, title) in [
        (
            "asr",
            Category::Harmful,
            "Attack success rate on harmful prompts",
        ),
        (
            "over_refusal",
            Category::Benign,
            "Over-refusal on benign prompts",
        ),
    ] {
        let mut rows: Vec<(String, Option<String>)> = Vec::new();
        for r in reps {
            for x in &r.sets {
                if x.category != cat {
                    continue;
                }
                let topics = r
                    .topics
                    .iter()
                    .filter(|t| t.set == x.set && t.category == cat)
                    .map(|t| (x.set.clone(), t.topic.clone()));
                for k in std::iter::once((x.set.clone(), None)).chain(topics) {
                    if !rows.contains(&k) {
                        rows.push(k);
                    }
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        let cells =
            rows.iter()
                .map(|(set, topic)| {
                    reps.iter()
                        .map(|r| {
                            let row = r.sets.iter().chain(&r.topics).find(|x| {
                                &x.set == set && &x.topic == topic && x.category == cat
                            })?;
                            if cat == Category::Harmful {
                                row.rate
                            } else {
                                row.over_refusal
                            }
                        })
                        .collect()
                })
                .collect();
        let label = |(set, topic): &(String, Option<String>)| match topic {
            Some(t) => format!("{set}: {t}"),
            None => set.clone(),
        };
        out.push((
            name,
            Plot::Heatmap(Heatmap {
                title: title.to_string(),
                subtitle: format!(
                    "{}: per set, then per topic (set: topic); grey: none",
                    reps.first()
                        .and_then(|r| r.suite.clone())
                        .unwrap_or_else(|| "sparring eval".into())
                ),
                row_label: "set / topic".into(),
                col_label: "mode".into(),
                rows: rows.iter().map(label).collect(),
                cols: modes.clone(),
                cells,
            }),
        ));
    }
    out
}
