//! Best-response games: a fresh copy of an attacker trained against a frozen defender, on a game loop of its own
//! ([`best_response`], [`SubRun`]); a run's adaptive evaluation is one, played beside the run's rounds
//! ([`start_adaptive`], [`Deferred`]).

use super::ctx::Ctx;
use super::eval::eval_key;
use super::meters::Parent;
use super::{Progress, RunError, RunOptions, RunSummary, rerr, run_with};
use crate::record::{EvalMode, EvalRec};
use crate::registry::Registry;
use crate::scenario::Loaded;
use crate::vocab::Slot;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A scenario for a best-response attacker against a frozen defender: the same game, players and judge, with
/// the defender frozen, `rounds` rounds, and the `attacker` evaluation after the last round only.
pub fn best_response_scenario(loaded: &Loaded, rounds: u32, tag: &str) -> Loaded {
    let mut sub = loaded.clone();
    let sc = &mut sub.scenario;
    sc.split_player();
    sc.game.schedule = crate::scenario::Schedule::FrozenDefender;
    sc.game.rounds = rounds;
    if let Some(k) = sc.eval.adaptive.seeds_per_round {
        sc.game.seeds_per_round = k;
    }
    sc.eval.every = 0;
    sc.eval.modes = vec![EvalMode::Attacker];
    sc.checkpoints = Default::default();
    sc.replay.fsync = false;
    sc.faults = Default::default();
    sub.run_id = format!("{}/{tag}", loaded.run_id);
    sub.resolved = toml::to_string(&sub.scenario).unwrap_or_default();
    sub
}

/// Train a best-response attacker from `attacker` against the frozen `defender` (states as the roles save them)
/// for `rounds` rounds in `dir` (a run directory of its own, replaced if present), and return its final
/// evaluation through that attacker (records of mode `attacker`, rounds numbered within the sub-run).
pub async fn best_response(
    loaded: &Loaded,
    registry: &Registry,
    dir: &Path,
    rounds: u32,
    init: BTreeMap<Slot, Vec<u8>>,
) -> Result<Vec<EvalRec>, RunError> {
    SubRun::start(loaded, registry, dir, rounds, init, None)?
        .finish()
        .await
}

/// A best-response sub-run ([`best_response`]) playing on a game loop of its own.
pub(super) struct SubRun {
    rounds: u32,
    done: tokio::task::JoinHandle<Result<RunSummary, RunError>>,
}

impl SubRun {
    /// Start the sub-run in `dir`; with `parent`, its role time and compute count in the parent game's meters
    /// too, and it holds the parent's sub-run slot until its last round has played.
    fn start(
        loaded: &Loaded,
        registry: &Registry,
        dir: &Path,
        rounds: u32,
        init: BTreeMap<Slot, Vec<u8>>,
        parent: Option<Parent>,
    ) -> Result<SubRun, RunError> {
        let tag = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "best-response".into());
        let sub = best_response_scenario(loaded, rounds, &tag);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| rerr(format!("{}: {e}", dir.display())))?;
        }
        let (registry, dir) = (registry.clone(), dir.to_path_buf());
        let done = tokio::spawn(async move {
            run_with(
                &sub,
                &registry,
                &dir,
                false,
                RunOptions { init },
                parent,
                &mut |_: &Progress| {},
            )
            .await
        });
        Ok(SubRun { rounds, done })
    }

    /// Wait for the sub-run to end; its last round's evaluation through its attacker (records of mode
    /// `attacker`, rounds numbered within the sub-run).
    async fn finish(self) -> Result<Vec<EvalRec>, RunError> {
        let summary = match self.done.await {
            Ok(r) => r?,
            Err(panic) => return Err(rerr(format!("best-response run: {panic}"))),
        };
        Ok(summary
            .final_eval
            .into_iter()
            .filter(|e| e.round == self.rounds && e.mode == EvalMode::Attacker)
            .collect())
    }
}

/// The adaptive evaluation of `round`: a best-response attacker from checkpoint `r0` against the current
/// defender, its sub-run kept in `<run dir>/adaptive/r<round>/`. Started here (once one of the
/// `eval.adaptive.concurrent` sub-run slots is free), it plays beside the game.
pub(super) async fn start_adaptive(
    cx: &Ctx<'_>,
    round: u32,
    states: &BTreeMap<Slot, Arc<Vec<u8>>>,
) -> Result<Deferred, RunError> {
    let attacker = cx.initial.get(&Slot::Attacker).cloned().ok_or_else(|| {
        rerr(format!(
            "adaptive evaluation: no initial attacker state (checkpoints/r0/attacker.bin) in {}",
            cx.run_dir.display()
        ))
    })?;
    let mut init = BTreeMap::new();
    init.insert(Slot::Attacker, attacker);
    for slot in [Slot::Defender, Slot::Judge] {
        if let Some(s) = states.get(&slot) {
            init.insert(slot, s.to_vec());
        }
    }
    let permit = Arc::clone(&cx.sub_run_slot)
        .acquire_owned()
        .await
        .map_err(|e| rerr(format!("internal: adaptive evaluation: {e}")))?;
    let dir = cx.run_dir.join("adaptive").join(format!("r{round}"));
    let sub = SubRun::start(
        cx.loaded,
        cx.registry,
        &dir,
        cx.loaded.scenario.eval.adaptive.rounds,
        init,
        Some(Parent {
            meters: Arc::clone(&cx.meters),
            slot: permit,
        }),
    )?;
    Ok(Deferred {
        sub,
        run: cx.run.clone(),
        round,
    })
}

/// An adaptive evaluation still playing.
pub(super) struct Deferred {
    sub: SubRun,
    run: String,
    round: u32,
}

impl Deferred {
    /// The adaptive evaluation's records, once the sub-run is complete on disk.
    pub(super) async fn records(self) -> Result<Vec<EvalRec>, RunError> {
        let rounds = self.sub.rounds;
        let recs = self.sub.finish().await?;
        Ok(recs
            .into_iter()
            .map(|e| as_adaptive(e, rounds, &self.run, self.round))
            .collect())
    }
}

/// A best-response sub-run's final evaluation record (mode `attacker`, of its last round `sub_round`) as the
/// parent run's adaptive evaluation record of `round`: the same rewrite and answer, re-keyed from
/// `eval/r<sub_round>/attacker/<set>/<seed>` to `eval/r<round>/adaptive/<set>/<seed>`.
fn as_adaptive(mut e: EvalRec, sub_round: u32, run: &str, round: u32) -> EvalRec {
    debug_assert_eq!(
        e.key,
        eval_key(sub_round, EvalMode::Attacker, &e.set, &e.seed_id),
        "a best-response evaluation record's key"
    );
    e.key = eval_key(round, EvalMode::Adaptive, &e.set, &e.seed_id);
    e.run = run.to_string();
    e.round = round;
    e.mode = EvalMode::Adaptive;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Category;

    /// The typed re-keying gives the key the string replacement of the sub-run's key prefix gave, and changes
    /// nothing else but the run, round and mode.
    #[test]
    fn an_adaptive_record_is_the_sub_runs_record_rekeyed() {
        let sub = EvalRec {
            run: "run-1/r4".into(),
            round: 20,
            set: "advgame-harmful".into(),
            seed_id: "advgame-harmful:17".into(),
            category: Category::Harmful,
            version: 3,
            key: eval_key(
                20,
                EvalMode::Attacker,
                "advgame-harmful",
                "advgame-harmful:17",
            ),
            input: "rewrite".into(),
            output: "answer".into(),
            complied_raw: "yes".into(),
            complied: Some(true),
            mode: EvalMode::Attacker,
            attack: Some("raw rewrite".into()),
            valid: Some(true),
            topic: None,
            score: None,
            shown: None,
            seed_prompt: None,
            turns: Vec::new(),
        };
        let replaced = sub
            .key
            .replacen("eval/r20/attacker/", "eval/r4/adaptive/", 1);
        let got = as_adaptive(sub.clone(), 20, "run-1", 4);
        assert_eq!(got.key, replaced);
        assert_eq!(
            got.key,
            "eval/r4/adaptive/advgame-harmful/advgame-harmful:17"
        );
        let want = EvalRec {
            run: "run-1".into(),
            round: 4,
            mode: EvalMode::Adaptive,
            key: replaced,
            ..sub
        };
        assert_eq!(got, want);
    }
}
