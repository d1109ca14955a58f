//! Schedules: which side learns in which round, read back from the records (each output records the version of
//! the weights that produced it; each learning step leaves a learn record with the version after it). Exact
//! patterns with test kinds whose version counts their learning steps, then the shipped intent scenarios
//! (`intent-sequential`, `intent-frozen-attacker`), shortened.

mod spine_common;
use sparring_engine::record::Record;
use sparring_engine::*;
use spine_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A policy whose version is the number of its learning steps. As the attacker (the role a request names), its
/// rewrite `i` of a seed is the seed followed by `#i`; as the defender, its answer `i` is `answer i`. Its learn
/// reports count the groups of each side it learned from (`groups/attacker`, `groups/defender`).
struct Counting {
    learned: u64,
}
impl Policy for Counting {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                (0..r.n)
                    .map(|i| match r.role {
                        Role::Attacker => Generation::plain(format!("{} #{i}", r.input)),
                        _ => Generation::plain(format!("answer {i}")),
                    })
                    .collect()
            })
            .collect())
    }
    fn learn(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        self.learned += 1;
        let mut metrics = BTreeMap::new();
        for g in groups {
            *metrics.entry(format!("groups/{}", g.role)).or_insert(0.0) += 1.0;
        }
        Ok(LearnReport {
            steps: 1,
            metrics,
            ..LearnReport::default()
        })
    }
    fn version(&self) -> u64 {
        self.learned
    }
    fn save(&self) -> Result<Vec<u8>, RoleError> {
        Ok(self.learned.to_le_bytes().to_vec())
    }
    fn load(&mut self, state: &[u8]) -> Result<(), RoleError> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| RoleError::failed("a counting state is 8 bytes"))?;
        self.learned = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A judge for which every rewrite is faithful, every pair a tie and every response a refusal.
struct Ties;
impl Judge for Ties {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|_| Verdict::new("yes", Some(true)))
            .collect())
    }
    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|_| Verdict::new("tie", Some((0.0, 0.0))))
            .collect())
    }
    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|_| Verdict::new("no", Some(false)))
            .collect())
    }
}

fn info(kind: &str, roles: Vec<Role>) -> KindInfo {
    KindInfo {
        kind: kind.into(),
        about: "test".into(),
        roles,
        params: None,
        check: Arc::new(|_, _| Ok(())),
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add_policy(
        info("counting", vec![Role::Attacker, Role::Defender]),
        Arc::new(|_, _| Ok(Box::new(Counting { learned: 0 }))),
    );
    r.add_judge(
        info("ties", vec![Role::Judge]),
        Arc::new(|_, _| Ok(Box::new(Ties))),
    );
    r
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Six rounds of the test kinds over the intent game's training seeds, under the `[game]` lines `schedule` (a
/// `self-play` schedule has no `[defender]` table).
fn counting_scenario(schedule: &str) -> String {
    let defender = if schedule.contains("self-play") {
        ""
    } else {
        "[defender]\nkind = \"counting\"\n"
    };
    let train = repo().join("scenarios/intent-data/train.jsonl");
    format!(
        r#"schema = 1

[game]
name = "schedule-test"
seed = 5
rounds = 6
{schedule}
seeds_per_round = 2
attacks_per_seed = 2
responses_per_attack = 2

[[data.train]]
name = "intent-train"
path = "{train}"
format = "advgame"

[attacker]
kind = "counting"

{defender}
[judge]
kind = "ties"

[replay]
fsync = false
"#,
        train = train.display().to_string().replace('\\', "/"),
    )
}

/// Play a scenario file with `reg` and `overrides` into a fresh directory; its records.
fn play(name: &str, file: &Path, reg: &Registry, overrides: &[&str]) -> Vec<Record> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let loaded = scenario::load(file, &overrides, reg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = tmpdir(name);
    let out = dir.join("run");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run::run(&loaded, reg, &out, false, &mut |_| {}))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let recs = read(&out.join("episodes.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    recs
}

fn play_counting(name: &str, schedule: &str) -> Vec<Record> {
    let dir = tmpdir(name);
    let f = write_scenario(&dir, &counting_scenario(schedule));
    let recs = play(name, &f, &registry(), &[]);
    let _ = std::fs::remove_dir_all(&dir);
    recs
}

/// Per round (1-based, in order): the versions of the attacker's rewrites and of the defender's responses (each
/// a single version: one set of weights plays a whole round).
fn output_versions(recs: &[Record]) -> Vec<(u32, u64, u64)> {
    let mut by_round: BTreeMap<u32, (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
    for r in recs {
        match r {
            Record::Rewrite(x) => {
                by_round.entry(x.round).or_default().0.insert(x.version);
            }
            Record::Response(x) => {
                by_round.entry(x.round).or_default().1.insert(x.version);
            }
            _ => {}
        }
    }
    by_round
        .into_iter()
        .map(|(round, (a, d))| {
            assert_eq!(a.len(), 1, "round {round}: attacker versions {a:?}");
            assert_eq!(d.len(), 1, "round {round}: defender versions {d:?}");
            (round, *a.first().unwrap(), *d.first().unwrap())
        })
        .collect()
}

/// (round, role, version after the step) of each learn record, in order.
fn learn_steps(recs: &[Record]) -> Vec<(u32, Role, u64)> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Learn(l) => Some((l.round, l.role, l.version)),
            _ => None,
        })
        .collect()
}

/// The roles that learned in each round 1..=rounds.
fn learners(recs: &[Record], rounds: u32) -> Vec<Vec<Role>> {
    (1..=rounds)
        .map(|round| {
            learn_steps(recs)
                .into_iter()
                .filter(|l| l.0 == round)
                .map(|l| l.1)
                .collect()
        })
        .collect()
}

const A: Role = Role::Attacker;
const D: Role = Role::Defender;

/// `phase_rounds = 2`, attacker first (the default): rounds 1–2 move only the attacker, 3–4 only the defender,
/// 5–6 only the attacker again. Each round's outputs come from the weights after the rounds before it.
#[test]
fn sequential_phases_of_two_rounds_move_only_the_learning_sides_version() {
    let recs = play_counting(
        "schedule-sequential",
        "schedule = \"sequential\"\nphase_rounds = 2",
    );
    assert_eq!(
        learn_steps(&recs),
        vec![
            (1, A, 1),
            (2, A, 2),
            (3, D, 1),
            (4, D, 2),
            (5, A, 3),
            (6, A, 4)
        ]
    );
    // (round, attacker version, defender version) of the outputs.
    assert_eq!(
        output_versions(&recs),
        vec![
            (1, 0, 0),
            (2, 1, 0),
            (3, 2, 0),
            (4, 2, 1),
            (5, 2, 2),
            (6, 3, 2)
        ]
    );
}

#[test]
fn a_sequential_game_with_the_defender_first_starts_with_a_defender_phase() {
    let recs = play_counting(
        "schedule-sequential-defender-first",
        "schedule = \"sequential\"\nphase_rounds = 2\nfirst = \"defender\"",
    );
    assert_eq!(
        learn_steps(&recs),
        vec![
            (1, D, 1),
            (2, D, 2),
            (3, A, 1),
            (4, A, 2),
            (5, D, 3),
            (6, D, 4)
        ]
    );
    assert_eq!(
        output_versions(&recs),
        vec![
            (1, 0, 0),
            (2, 0, 1),
            (3, 0, 2),
            (4, 1, 2),
            (5, 2, 2),
            (6, 2, 3)
        ]
    );
}

/// The contrast: under `joint` both versions move every round (the pattern the sequential tests rule out).
#[test]
fn a_joint_game_moves_both_versions_every_round() {
    let recs = play_counting("schedule-joint", "schedule = \"joint\"");
    assert_eq!(learners(&recs, 6), vec![vec![A, D]; 6]);
    let v: Vec<(u32, u64, u64)> = (1..=6)
        .map(|r| (r, u64::from(r) - 1, u64::from(r) - 1))
        .collect();
    assert_eq!(output_versions(&recs), v);
}

#[test]
fn a_frozen_attacker_game_never_moves_the_attackers_version() {
    let recs = play_counting("schedule-frozen-attacker", "schedule = \"frozen-attacker\"");
    assert_eq!(learners(&recs, 6), vec![vec![D]; 6]);
    let v: Vec<(u32, u64, u64)> = (1..=6).map(|r| (r, 0, u64::from(r) - 1)).collect();
    assert_eq!(output_versions(&recs), v);
}

/// Self-play: one player writes both sides' outputs of a round with the same weights, and one update per round
/// (recorded as the attacker's) learns from both sides' groups: the defender's, one per valid rewrite (2 seeds ×
/// 2 rewrites), and the attacker's, one per seed.
#[test]
fn a_self_play_game_is_one_player_learning_both_sides_in_one_step() {
    let recs = play_counting("schedule-self-play", "schedule = \"self-play\"");
    assert_eq!(learners(&recs, 6), vec![vec![A]; 6]);
    assert_eq!(
        learn_steps(&recs),
        (1..=6).map(|r| (r, A, u64::from(r))).collect::<Vec<_>>()
    );
    let v: Vec<(u32, u64, u64)> = (1..=6)
        .map(|r| (r, u64::from(r) - 1, u64::from(r) - 1))
        .collect();
    assert_eq!(output_versions(&recs), v);
    for r in &recs {
        if let Record::Learn(l) = r {
            let m = &l.report.metrics;
            assert_eq!(
                m.get("groups/defender"),
                Some(&4.0),
                "round {}: {m:?}",
                l.round
            );
            assert_eq!(
                m.get("groups/attacker"),
                Some(&2.0),
                "round {}: {m:?}",
                l.round
            );
        }
    }
}

/// Short settings for the shipped intent scenarios: small warm starts, few seeds, the evaluation after the last
/// round only and plain.
const SHORT: [&str; 5] = [
    "game.seeds_per_round=8",
    "attacker.warm_start.steps=60",
    "defender.warm_start.steps=60",
    "eval.every=0",
    "eval.modes=[\"plain\"]",
];

fn shipped(name: &str) -> PathBuf {
    repo().join(format!("scenarios/{name}.toml"))
}

/// Every `scenarios/intent-*.toml` validates (they need nothing outside the repository), the frozen-attacker one
/// among them.
#[test]
fn every_shipped_intent_scenario_validates() {
    let reg = sparring_actors::registry();
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("intent-") && name.ends_with(".toml") {
            let path = repo().join("scenarios").join(&name);
            let loaded = scenario::load(&path, &[], &reg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!loaded.train.is_empty(), "{name}");
            names.insert(name);
        }
    }
    assert!(names.contains("intent-frozen-attacker.toml"), "{names:?}");
    assert!(names.len() >= 5, "{names:?}");
}

/// The blue-teaming scenario: over four rounds the defender learns every round and its version moves, the
/// attacker's never does (its warm-started weights write every round's rewrites).
#[test]
fn the_shipped_frozen_attacker_scenario_trains_only_the_defender() {
    let name = "intent-frozen-attacker";
    let reg = sparring_actors::registry();
    let loaded = scenario::load(&shipped(name), &[], &reg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.scenario.game.schedule,
        scenario::Schedule::FrozenAttacker
    );
    let mut sets = SHORT.to_vec();
    sets.push("game.rounds=4");
    let recs = play(name, &shipped(name), &reg, &sets);
    assert_eq!(learners(&recs, 4), vec![vec![D]; 4]);
    let v = output_versions(&recs);
    assert_eq!(v.len(), 4);
    assert!(v.iter().all(|x| x.1 == v[0].1), "the attacker moved: {v:?}");
    let last = learn_steps(&recs).last().map(|l| l.2);
    assert!(
        last > Some(v[0].2),
        "the defender never moved: {v:?}, last learned version {last:?}"
    );
}

/// The shipped sequential scenario with `phase_rounds = 2` over four rounds: the attacker learns in rounds 1–2
/// and the defender's version stands still, then the defender learns in rounds 3–4 and the attacker's stands
/// still.
#[test]
fn the_shipped_sequential_scenario_alternates_which_side_learns() {
    let name = "intent-sequential";
    let reg = sparring_actors::registry();
    let mut sets = SHORT.to_vec();
    sets.extend(["game.rounds=4", "game.phase_rounds=2"]);
    let recs = play(name, &shipped(name), &reg, &sets);
    assert_eq!(learners(&recs, 4), vec![vec![A], vec![A], vec![D], vec![D]]);
    let v = output_versions(&recs);
    assert_eq!(v.len(), 4);
    // The defender's weights play rounds 1–3 unchanged; the attacker's, rounds 3–4.
    assert!(v[0].2 == v[1].2 && v[1].2 == v[2].2, "{v:?}");
    assert_eq!(v[2].1, v[3].1, "{v:?}");
    let steps = learn_steps(&recs);
    assert!(steps[1].2 > v[0].1, "the attacker never moved: {steps:?}");
    assert!(steps[3].2 > v[0].2, "the defender never moved: {steps:?}");
}
