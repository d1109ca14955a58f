//! Evaluation of a scenario's defender (optionally against its attacker): attack success rate (ASR) on the harmful
//! eval sets and compliance rate on the benign ones (XSTest safe, AdvGame benign), labelled by the scenario's judge
//! (`Judge::complied`), as a table and JSON. Takes a scenario file or a run directory (its resolved
//! `scenario.toml` and the roles' state saved at the last committed round).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use sparring_engine::registry::Registry;
use sparring_engine::replay::{self, LOG, SCENARIO};
use sparring_engine::rng::derive;
use sparring_engine::scenario;
use sparring_engine::{Category, GenRequest, Judge, LabelRequest, Policy, Role, Seed};

/// How to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Also rewrite each eval seed with the scenario's attacker before the defender answers (unparseable rewrites
    /// fall back to the seed itself and are counted in `attack_errors`).
    pub with_attacker: bool,
    /// Keep only the first N seeds of each eval set (on top of the sets' own `limit`).
    pub limit: Option<usize>,
}

/// One eval set's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetReport {
    pub set: String,
    pub category: Category,
    /// `asr` for harmful seeds, `compliance` for benign ones.
    pub metric: String,
    /// Seeds evaluated.
    pub n: usize,
    /// Responses labelled as compliance.
    pub complied: usize,
    /// Labels the judge could not give (excluded from the rate).
    pub unlabelled: usize,
    /// complied / (n − unlabelled); `None` when nothing was labelled.
    pub rate: Option<f64>,
    /// With the attacker: rewrites that did not parse.
    pub attack_errors: usize,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub scenario: String,
    /// Set when evaluating a run directory: the round whose saved state was loaded.
    pub round: Option<u32>,
    pub with_attacker: bool,
    pub sets: Vec<SetReport>,
    /// Mean ASR over harmful sets / mean compliance over benign sets (unweighted).
    pub asr: Option<f64>,
    pub compliance: Option<f64>,
}

impl EvalReport {
    /// A fixed-width text table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<28} {:<8} {:<11} {:>5} {:>8} {:>7} {:>8}\n",
            "set", "category", "metric", "n", "complied", "unlab.", "rate"
        );
        for r in &self.sets {
            s.push_str(&format!(
                "{:<28} {:<8} {:<11} {:>5} {:>8} {:>7} {:>8}\n",
                r.set,
                r.category.as_str(),
                r.metric,
                r.n,
                r.complied,
                r.unlabelled,
                r.rate.map_or("-".to_string(), |x| format!("{x:.3}"))
            ));
        }
        let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
        s.push_str(&format!(
            "ASR (harmful) {}   compliance (benign) {}\n",
            f(self.asr),
            f(self.compliance)
        ));
        s
    }

    /// Pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The registry with the chat-LM kinds.
pub fn chat_registry() -> Registry {
    let mut r = Registry::new();
    super::roles::register(&mut r);
    r
}

/// `eval` with the chat-LM registry.
pub fn eval(
    scenario_or_run: &Path,
    overrides: &[String],
    opts: &EvalOptions,
) -> Result<EvalReport, String> {
    eval_with(scenario_or_run, overrides, opts, &chat_registry())
}

fn last_state(run_dir: &Path, role: &str) -> Result<(u32, Option<Vec<u8>>), String> {
    let c = replay::read_committed(&run_dir.join(LOG))?;
    if c.last_round == 0 {
        return Ok((0, None));
    }
    let p = replay::state_path(run_dir, role, c.last_round);
    match std::fs::read(&p) {
        Ok(b) if !b.is_empty() => Ok((c.last_round, Some(b))),
        Ok(_) => Ok((c.last_round, None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((c.last_round, None)),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Evaluates a scenario file, or a run directory (its `scenario.toml` plus the saved defender/attacker state of the
/// last committed round), with `--set` overrides, building roles from `registry`.
pub fn eval_with(
    scenario_or_run: &Path,
    overrides: &[String],
    opts: &EvalOptions,
    registry: &Registry,
) -> Result<EvalReport, String> {
    let (file, run_dir): (PathBuf, Option<PathBuf>) = if scenario_or_run.is_dir() {
        (
            scenario_or_run.join(SCENARIO),
            Some(scenario_or_run.to_path_buf()),
        )
    } else {
        (scenario_or_run.to_path_buf(), None)
    };
    let loaded = scenario::load(&file, overrides, registry).map_err(|e| e.to_string())?;
    if loaded.eval.is_empty() {
        return Err(format!(
            "{}: `data.eval` has no sets to evaluate on",
            file.display()
        ));
    }
    let build_policy = |role: Role| -> Result<Box<dyn Policy>, String> {
        let cfg = loaded.role(role);
        let ctx = loaded.context(role, None);
        registry
            .build_policy(&cfg.kind, &cfg.params, &ctx)
            .map_err(|e| format!("[{role}] {e}"))
    };
    let mut round = None;
    let mut defender = build_policy(Role::Defender)?;
    let mut attacker = if opts.with_attacker {
        Some(build_policy(Role::Attacker)?)
    } else {
        None
    };
    if let Some(dir) = &run_dir {
        let (r, st) = last_state(dir, Role::Defender.as_str())?;
        round = Some(r);
        if let Some(b) = st {
            defender
                .load(&b)
                .map_err(|e| format!("[defender] state of round {r}: {e}"))?;
        }
        if let Some(a) = attacker.as_mut() {
            let (r, st) = last_state(dir, Role::Attacker.as_str())?;
            if let Some(b) = st {
                a.load(&b)
                    .map_err(|e| format!("[attacker] state of round {r}: {e}"))?;
            }
        }
    }
    let jcfg = loaded.role(Role::Judge);
    let mut judge: Box<dyn Judge> = registry
        .build_judge(&jcfg.kind, &jcfg.params, &loaded.context(Role::Judge, None))
        .map_err(|e| format!("[judge] {e}"))?;
    let seed = loaded.scenario.game.seed;
    let wanted = loaded.scenario.eval.sets.clone();
    let mut sets = Vec::new();
    for (name, seeds) in &loaded.eval {
        if wanted.as_ref().is_some_and(|w| !w.contains(name)) {
            continue;
        }
        let seeds: Vec<&Seed> = seeds
            .iter()
            .take(opts.limit.unwrap_or(usize::MAX))
            .collect();
        // Per category within a set (XSTest mixes safe and unsafe prompts).
        let mut by_cat: BTreeMap<Category, Vec<&Seed>> = BTreeMap::new();
        for s in seeds {
            by_cat.entry(s.category).or_default().push(s);
        }
        for (cat, seeds) in by_cat {
            sets.push(eval_set(
                name,
                cat,
                &seeds,
                seed,
                defender.as_mut(),
                attacker.as_mut(),
                judge.as_mut(),
            )?);
        }
    }
    let mean = |c: Category| {
        let v: Vec<f64> = sets
            .iter()
            .filter(|s| s.category == c)
            .filter_map(|s| s.rate)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Ok(EvalReport {
        scenario: file.display().to_string(),
        round,
        with_attacker: opts.with_attacker,
        asr: mean(Category::Harmful),
        compliance: mean(Category::Benign),
        sets,
    })
}

fn eval_set(
    name: &str,
    cat: Category,
    seeds: &[&Seed],
    game_seed: u64,
    defender: &mut dyn Policy,
    attacker: Option<&mut Box<dyn Policy>>,
    judge: &mut dyn Judge,
) -> Result<SetReport, String> {
    let key = |s: &Seed, what: &str| format!("eval/{what}/{}", s.id);
    let mut inputs: Vec<String> = seeds.iter().map(|s| s.prompt.clone()).collect();
    let mut attack_errors = 0;
    if let Some(a) = attacker {
        let reqs: Vec<GenRequest> = seeds
            .iter()
            .map(|s| GenRequest {
                key: key(s, "attack"),
                role: Role::Attacker,
                seed: (*s).clone(),
                input: s.prompt.clone(),
                n: 1,
                rng_seed: derive(game_seed, 0, &key(s, "attack")),
            })
            .collect();
        let gens = a.generate(&reqs).map_err(|e| format!("[attacker] {e}"))?;
        for (i, g) in gens.iter().enumerate() {
            match g.first().and_then(|g| g.parsed.clone()) {
                Some(p) => inputs[i] = p,
                None => attack_errors += 1,
            }
        }
    }
    let reqs: Vec<GenRequest> = seeds
        .iter()
        .zip(&inputs)
        .map(|(s, inp)| GenRequest {
            key: key(s, "defend"),
            role: Role::Defender,
            seed: (*s).clone(),
            input: inp.clone(),
            n: 1,
            rng_seed: derive(game_seed, 0, &key(s, "defend")),
        })
        .collect();
    let gens = defender
        .generate(&reqs)
        .map_err(|e| format!("[defender] {e}"))?;
    let labels: Vec<LabelRequest> = seeds
        .iter()
        .zip(&gens)
        .map(|(s, g)| {
            let resp = g
                .first()
                .map(|g| g.parsed.clone().unwrap_or_else(|| g.text.clone()))
                .unwrap_or_default();
            LabelRequest {
                key: key(s, "label"),
                seed: (*s).clone(),
                prompt: s.prompt.clone(),
                response: resp,
                rng_seed: derive(game_seed, 0, &key(s, "label")),
            }
        })
        .collect();
    let verdicts = judge
        .complied(&labels)
        .map_err(|e| format!("[judge] {e}"))?;
    let complied = verdicts.iter().filter(|v| v.value == Some(true)).count();
    let unlabelled = verdicts.iter().filter(|v| v.value.is_none()).count();
    let labelled = seeds.len() - unlabelled;
    Ok(SetReport {
        set: name.to_string(),
        category: cat,
        metric: match cat {
            Category::Harmful => "asr".into(),
            Category::Benign => "compliance".into(),
        },
        n: seeds.len(),
        complied,
        unlabelled,
        rate: (labelled > 0).then(|| complied as f64 / labelled as f64),
        attack_errors,
    })
}
