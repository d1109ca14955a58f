//! Cross-play and exploitability over the kept checkpoints of runs (`checkpoints/r<round>/<role>.bin`).
//!
//! - Cross-play: every attacker checkpoint against every defender checkpoint, with the first run's scenario
//!   as the game (its judge, eval sets and `eval.attack_sets`): the ASR of one attack per held-out harmful seed
//!   through that attacker against that defender (an invalid rewrite is a failed attack) → a matrix.
//! - Exploitability: for each defender checkpoint, a best-response attacker trained for K rounds against it,
//!   frozen (`sparring_engine::run::best_response`), from the run's initial attacker (checkpoint `r0`) — or,
//!   with an evaluator scenario, from that scenario's own attacker, so that runs of different recipes are
//!   measured by one procedure — and the ASR it reaches on the held-out harmful sets.
//!
//! Both play the saved players for real (the role kinds of the scenario, restored from the checkpoints), so
//! they work on any run whose roles save their state: the intent game and pretrained chat models alike.

use super::load::RunData;
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use sparring_engine::actor::Slot;
use sparring_engine::record::EvalMode;
use sparring_engine::record::{EvalRec, eval_rate};
use sparring_engine::registry::Registry;
use sparring_engine::roles::Category;
use sparring_engine::run;
use sparring_engine::scenario::{self, Loaded};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to play besides the plots.
#[derive(Debug, Clone, Default)]
pub struct PlayOpts {
    pub crossplay: bool,
    /// Best-response training rounds per defender checkpoint (exploitability).
    pub exploit: Option<u32>,
    /// Evaluator scenario for exploitability (default: each run's own scenario).
    pub exploit_scenario: Option<PathBuf>,
}

/// One kept checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Ckpt {
    pub run: String,
    pub round: u32,
    pub dir: PathBuf,
}

impl Ckpt {
    fn name(&self, multi: bool) -> String {
        if multi {
            format!("{} r{}", self.run, self.round)
        } else {
            format!("r{}", self.round)
        }
    }

    fn state(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(format!("{role}.bin"))).ok()
    }
}

/// The cross-play matrix.
#[derive(Debug, Clone, Serialize)]
pub struct CrossPlay {
    /// Attacker checkpoints (rows).
    pub attackers: Vec<String>,
    /// Defender checkpoints (columns).
    pub defenders: Vec<String>,
    /// `asr[attacker][defender]` (`None`: could not be played, see the notes).
    pub asr: Vec<Vec<Option<f64>>>,
    pub notes: Vec<String>,
}

/// Exploitability of one defender checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ExploitPoint {
    pub run: String,
    pub round: u32,
    /// ASR of the best-response attacker on the held-out harmful sets.
    pub asr: Option<f64>,
    /// The defender checkpoint on the plain eval sets (no attacker): ASR on harmful, compliance on benign
    /// (utility).
    pub plain_asr: Option<f64>,
    pub utility: Option<f64>,
    /// Per eval set: ASR (harmful sets) or compliance (benign sets) of the defender checkpoint as written.
    pub plain_sets: BTreeMap<String, f64>,
    pub rounds: u32,
    /// The best-response run directory.
    pub dir: PathBuf,
    pub note: Option<String>,
}

/// Kept checkpoints of a run, by round.
pub fn checkpoints(run: &RunData) -> Vec<Ckpt> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(run.dir.join("checkpoints")) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(round) = name.strip_prefix('r').and_then(|r| r.parse::<u32>().ok()) {
            out.push(Ckpt {
                run: run.label.clone(),
                round,
                dir: e.path(),
            });
        }
    }
    out.sort_by_key(|c| c.round);
    out
}

fn load_scenario(path: &Path, registry: &Registry) -> Result<Loaded> {
    scenario::load(path, &[], registry).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every attacker checkpoint of `runs` against every defender checkpoint.
pub fn crossplay(
    runs: &[RunData],
    registry: &Registry,
    work: &Path,
    bar: &ProgressBar,
) -> Result<CrossPlay> {
    let first = runs.first().context("no runs")?;
    let game = load_scenario(&first.dir.join("scenario.toml"), registry)
        .with_context(|| format!("cross-play: the scenario of {}", first.dir.display()))?;
    let cks: Vec<Ckpt> = runs.iter().flat_map(checkpoints).collect();
    let multi = runs.len() > 1;
    // Each checkpoint's state is read once, and each role is built once for the whole matrix.
    let atts: Vec<(&Ckpt, Arc<Vec<u8>>)> = cks
        .iter()
        .filter_map(|c| c.state("attacker").map(|s| (c, Arc::new(s))))
        .collect();
    let defs: Vec<(&Ckpt, Arc<Vec<u8>>)> = cks
        .iter()
        .filter_map(|c| c.state("defender").map(|s| (c, Arc::new(s))))
        .collect();
    let mut notes = Vec::new();
    let mut asr = vec![vec![None; defs.len()]; atts.len()];
    if atts.is_empty() || defs.is_empty() {
        notes.push(format!(
            "cross-play: no checkpoints (checkpoints/r<round>/attacker.bin, defender.bin) in {}",
            runs.iter()
                .map(|r| r.dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(CrossPlay {
            attackers: atts.iter().map(|(c, _)| c.name(multi)).collect(),
            defenders: defs.iter().map(|(c, _)| c.name(multi)).collect(),
            asr,
            notes,
        });
    }
    bar.set_length((atts.len() * defs.len()) as u64);
    bar.set_position(0);
    bar.set_message(format!(
        "cross-play ({} attackers x {} defenders)",
        atts.len(),
        defs.len()
    ));
    let rt = crate::runtime()?;
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let a_states: Vec<Arc<Vec<u8>>> = atts.iter().map(|(_, s)| s.clone()).collect();
    let d_states: Vec<Arc<Vec<u8>>> = defs.iter().map(|(_, s)| s.clone()).collect();
    let cells = rt
        .block_on(run::crossplay(
            &game,
            registry,
            work,
            &a_states,
            &d_states,
            0,
            &mut |_| bar.inc(1),
        ))
        .map_err(|e| anyhow::anyhow!("cross-play: {e}"))?;
    for cell in cells {
        match cell.records {
            Ok(recs) => asr[cell.attacker][cell.defender] = eval_rate(&recs, Category::Harmful),
            Err(e) => notes.push(format!(
                "cross-play {} vs {}: {e}",
                atts[cell.attacker].0.name(true),
                defs[cell.defender].0.name(true)
            )),
        }
    }
    Ok(CrossPlay {
        attackers: atts.iter().map(|(c, _)| c.name(multi)).collect(),
        defenders: defs.iter().map(|(c, _)| c.name(multi)).collect(),
        asr,
        notes,
    })
}

/// Exploitability of every defender checkpoint of `runs`.
pub fn exploitability(
    runs: &[RunData],
    registry: &Registry,
    rounds: u32,
    evaluator: Option<&Path>,
    work: &Path,
    bar: &ProgressBar,
) -> Result<Vec<ExploitPoint>> {
    let eval_game = match evaluator {
        Some(p) => Some(
            load_scenario(p, registry)
                .with_context(|| format!("exploitability: evaluator {}", p.display()))?,
        ),
        None => None,
    };
    let per_run: Vec<(&RunData, Vec<Ckpt>)> = runs.iter().map(|r| (r, checkpoints(r))).collect();
    let total: usize = per_run.iter().map(|(_, c)| c.len()).sum();
    bar.set_length(total as u64);
    bar.set_position(0);
    bar.set_message(format!(
        "exploitability ({rounds} best-response rounds each)"
    ));
    let rt = crate::runtime()?;
    let mut out = Vec::new();
    for (run, cks) in per_run {
        let own;
        let (game, from_r0) = match &eval_game {
            Some(g) => (g, false),
            None => {
                own =
                    load_scenario(&run.dir.join("scenario.toml"), registry).with_context(|| {
                        format!("exploitability: the scenario of {}", run.dir.display())
                    })?;
                (&own, true)
            }
        };
        let r0 = cks
            .iter()
            .find(|c| c.round == 0)
            .and_then(|c| c.state("attacker"));
        for c in &cks {
            let dir = work.join(&run.label).join(format!("r{}", c.round));
            let mut init = BTreeMap::new();
            let mut note = None;
            match c.state("defender") {
                Some(d) => {
                    init.insert(Slot::Defender, d);
                }
                None => note = Some(format!("{}: no defender.bin", c.dir.display())),
            }
            if from_r0 {
                match &r0 {
                    Some(a) => {
                        init.insert(Slot::Attacker, a.clone());
                    }
                    None => {
                        note = Some(format!(
                            "{}: no checkpoints/r0/attacker.bin",
                            run.dir.display()
                        ))
                    }
                }
            }
            let (mut plain_asr, mut utility) = (None, None);
            let mut plain_sets = BTreeMap::new();
            if let Some(d) = init.get(&Slot::Defender) {
                let mut only = BTreeMap::new();
                only.insert(Slot::Defender, d.clone());
                match rt.block_on(run::evaluate(
                    game,
                    registry,
                    work,
                    only,
                    EvalMode::Plain,
                    0,
                )) {
                    Ok(recs) => {
                        plain_asr = eval_rate(&recs, Category::Harmful);
                        utility = eval_rate(&recs, Category::Benign);
                        let mut by: BTreeMap<&str, Vec<&EvalRec>> = BTreeMap::new();
                        for r in &recs {
                            by.entry(r.set.as_str()).or_default().push(r);
                        }
                        for (set, rs) in by {
                            if let Some(v) = eval_rate(rs.iter().copied(), Category::Harmful)
                                .or_else(|| eval_rate(rs.iter().copied(), Category::Benign))
                            {
                                plain_sets.insert(set.to_string(), v);
                            }
                        }
                    }
                    Err(e) => note = Some(format!("r{}: plain evaluation: {e}", c.round)),
                }
            }
            let asr = if note.is_none() {
                match rt.block_on(run::best_response(game, registry, &dir, rounds, init)) {
                    Ok(recs) => eval_rate(&recs, Category::Harmful),
                    Err(e) => {
                        note = Some(format!("r{}: {e}", c.round));
                        None
                    }
                }
            } else {
                None
            };
            out.push(ExploitPoint {
                run: run.label.clone(),
                round: c.round,
                asr,
                plain_asr,
                utility,
                plain_sets,
                rounds,
                dir,
                note,
            });
            bar.inc(1);
        }
    }
    Ok(out)
}

/// `crossplay.csv`: attacker,defender,asr.
pub fn crossplay_csv(cp: &CrossPlay) -> Result<String> {
    let rows = cp.attackers.iter().enumerate().flat_map(|(i, a)| {
        cp.defenders.iter().enumerate().map(move |(j, d)| {
            let v = cp.asr[i][j].map(|v| v.to_string()).unwrap_or_default();
            vec![a.clone(), d.clone(), v]
        })
    });
    super::csv_text(&["attacker", "defender", "asr"], rows)
}

/// `exploitability.csv`: run,round,best_response_asr,plain_asr,utility,best_response_rounds.
pub fn exploit_csv(pts: &[ExploitPoint]) -> Result<String> {
    let f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let rows = pts.iter().map(|p| {
        vec![
            p.run.clone(),
            p.round.to_string(),
            f(p.asr),
            f(p.plain_asr),
            f(p.utility),
            p.rounds.to_string(),
        ]
    });
    let header = [
        "run",
        "round",
        "best_response_asr",
        "plain_asr",
        "utility",
        "best_response_rounds",
    ];
    super::csv_text(&header, rows)
}
