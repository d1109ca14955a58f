//! The intent-game scenarios through the engine, shortened for CI: every scenario runs end to end; the
//! evaluation modes (plain, fixed attack set, current attacker, adaptive best response) and the kept
//! checkpoints; `engine::run::evaluate` on a run's checkpoints reproduces the run's own evaluation; the
//! report's cross-play and exploitability play those checkpoints; the multi-turn variant: its attacker learns the
//! two-turn setup, and its runs restart and resume exactly.

use sparring_engine::actor::Slot;
use sparring_engine::record::{EvalMode, Record};
use sparring_engine::replay;
use sparring_engine::run::{self, Progress};
use sparring_engine::scenario;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparring-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Short settings shared by the tests: small warm starts keep each scenario to seconds.
fn short(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "game.seeds_per_round=8",
        "attacker.warm_start.steps=60",
        "defender.warm_start.steps=60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(name: &str, sets: &[String], dir: &Path) -> run::RunSummary {
    let registry = sparring_actors::registry();
    let path = root().join(format!("scenarios/{name}.toml"));
    let loaded = scenario::load(&path, sets, &registry).unwrap_or_else(|e| panic!("{e}"));
    runtime()
        .block_on(run::run(
            &loaded,
            &registry,
            dir,
            false,
            &mut |_: &Progress| {},
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A run's attacker-mode evaluation of `round` as it logged it, the run's checkpoints of that round (the roles'
/// states by slot) and its scenario.
fn logged_eval(
    dir: &Path,
    round: u32,
) -> (
    Vec<sparring_engine::record::EvalRec>,
    BTreeMap<Slot, Vec<u8>>,
    scenario::Loaded,
) {
    let committed = replay::read_committed(&dir.join(replay::LOG)).unwrap();
    let logged: Vec<_> = committed
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Eval(e) if e.round == round && e.mode == EvalMode::Attacker => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert!(!logged.is_empty());
    let registry = sparring_actors::registry();
    let loaded = scenario::load(&dir.join("scenario.toml"), &[], &registry).unwrap();
    let mut init = BTreeMap::new();
    for (slot, role) in [
        (Slot::Attacker, "attacker"),
        (Slot::Defender, "defender"),
        (Slot::Judge, "judge"),
    ] {
        let state = std::fs::read(run::checkpoint_path(dir, role, round)).unwrap();
        init.insert(slot, state);
    }
    (logged, init, loaded)
}

/// `name` run with `sets` gives the records of its clean run in `clean`: after a panic of `role` on its request
/// number `panic_on` (restarted by the supervisor), and after a SIGKILL of the run after its first commit and
/// `--resume`.
fn restarts_and_resumes_exactly(
    name: &str,
    sets: &[String],
    clean: &Path,
    role: &str,
    panic_on: u32,
) {
    let episodes = std::fs::read(clean.join(replay::LOG)).unwrap();
    let metrics = std::fs::read(clean.join("metrics.jsonl")).unwrap();

    let crashed = tmp(&format!("{name}-crash"));
    let mut with_fault = sets.to_vec();
    with_fault.push(format!("faults.{role}.panic_on_request=[{panic_on}]"));
    let s = run(name, &with_fault, &crashed);
    assert_eq!(s.restarts.get(role), Some(&1), "{:?}", s.restarts);
    assert_eq!(std::fs::read(crashed.join(replay::LOG)).unwrap(), episodes);
    assert_eq!(
        std::fs::read(crashed.join("metrics.jsonl")).unwrap(),
        metrics
    );

    // SIGKILL after the first commit, then `--resume`.
    let killed = tmp(&format!("{name}-killed"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"));
    cmd.args(["run", "-q", "--out"]).arg(&killed);
    cmd.arg(root().join(format!("scenarios/{name}.toml")));
    for s in sets
        .iter()
        .chain(["faults.round_delay_ms=400".to_string()].iter())
    {
        cmd.args(["--set", s]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = killed.join(replay::LOG);
    let t0 = std::time::Instant::now();
    while replay::read_committed(&log).map_or(0, |c| c.last_round) < 1 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(t0.elapsed().as_secs() < 120, "no commit within 120 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        replay::read_committed(&log).unwrap().last_round < 3,
        "killed too late"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(["run", "-q", "--set", "faults.round_delay_ms=0", "--resume"])
        .arg(&killed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&log).unwrap(), episodes);
    assert_eq!(
        std::fs::read(killed.join("metrics.jsonl")).unwrap(),
        metrics
    );
    for d in [crashed, killed] {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// `engine::run::evaluate` on a run's checkpoints of `round` gives the run's own attacker-mode evaluation of it,
/// record for record; returns those records and the run's scenario.
fn reproduces_its_evaluation(
    dir: &Path,
    round: u32,
) -> (Vec<sparring_engine::record::EvalRec>, scenario::Loaded) {
    let (logged, init, loaded) = logged_eval(dir, round);
    let registry = sparring_actors::registry();
    let again = runtime()
        .block_on(run::evaluate(
            &loaded,
            &registry,
            dir,
            init,
            EvalMode::Attacker,
            round,
        ))
        .unwrap();
    assert_eq!(again, logged);
    (logged, loaded)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_intent_scenario_runs_shortened() {
    for name in [
        "intent-advgame-dpo",
        "intent-sequential",
        "intent-grpo",
        "intent-redteam",
        "intent-self-play",
    ] {
        let self_play = name == "intent-self-play";
        let dir = tmp(name);
        let sets = short(&[
            "game.rounds=2",
            "game.phase_rounds=1",
            "eval.every=0",
            "eval.adaptive.rounds=1",
        ]);
        // `phase_rounds` only exists for the sequential schedule, and a self-play scenario has no defender table.
        let sets: Vec<String> = sets
            .into_iter()
            .filter(|s| name == "intent-sequential" || !s.starts_with("game.phase_rounds"))
            .filter(|s| !(self_play && s.starts_with("defender.")))
            .collect();
        let s = run(name, &sets, &dir);
        assert_eq!(s.rounds, 2, "{name}");
        let m = &s.per_round.last().unwrap().1;
        for k in [
            "eval/intent-heldout-harmful/asr",
            "eval/intent-fixed-attacks/asr",
            "eval/intent-benign-framed/compliance",
            "eval/intent-heldout-harmful/attacker/asr",
            "eval/intent-heldout-harmful/adaptive/asr",
        ] {
            let v = m
                .get(k)
                .unwrap_or_else(|| panic!("{name}: no {k} in {m:?}"));
            assert!((0.0..=1.0).contains(v), "{name}: {k} = {v}");
        }
        // Who learned: the attacker except under frozen-attacker, the defender except when red-teaming.
        let steps = |role: &str| {
            s.per_round
                .iter()
                .filter_map(|(_, m)| m.get(&format!("learn/{role}/steps")))
                .sum::<f64>()
        };
        assert!(
            steps("attacker") >= 1.0,
            "{name}: the attacker never learned"
        );
        if name == "intent-redteam" {
            assert_eq!(
                steps("defender"),
                0.0,
                "{name}: the frozen defender learned"
            );
        } else if self_play {
            // One update of the one player per round, recorded as the attacker's.
            assert_eq!(steps("attacker"), 2.0, "{name}");
            assert_eq!(steps("defender"), 0.0, "{name}");
        } else {
            assert!(
                steps("defender") >= 1.0,
                "{name}: the defender never learned"
            );
        }
        for r in [0, 2] {
            for role in ["attacker", "defender", "judge"] {
                assert!(
                    run::checkpoint_path(&dir, role, r).exists(),
                    "{name}: no checkpoint r{r}/{role}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The self-play scenario: one player, whose state is also the defender's (the same bytes), whose checkpoints
/// reproduce the run's own evaluation when two copies of it play (`evaluate`), and whose records are the same
/// after a crash of the player (restarted by the supervisor) and after a SIGKILL of the run and `--resume`.
#[test]
fn a_self_play_run_is_one_player_that_restarts_and_resumes_exactly() {
    let sets = [
        "game.seeds_per_round=6",
        "attacker.warm_start.steps=60",
        "game.rounds=3",
        "eval.every=0",
        "eval.modes=[\"plain\",\"attacker\"]",
        "replay.fsync=false",
    ];
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let clean = tmp("self-play-clean");
    let s = run("intent-self-play", &sets, &clean);
    assert_eq!(s.rounds, 3);
    for r in [0, 3] {
        let a = std::fs::read(run::checkpoint_path(&clean, "attacker", r)).unwrap();
        let d = std::fs::read(run::checkpoint_path(&clean, "defender", r)).unwrap();
        assert!(
            !a.is_empty() && a == d,
            "r{r}: the defender's state is not the player's"
        );
    }
    // Two copies of the player, both from the round-3 checkpoint, give the run's own evaluation.
    let (_, loaded) = reproduces_its_evaluation(&clean, 3);
    assert!(loaded.self_play());
    restarts_and_resumes_exactly("intent-self-play", &sets, &clean, "attacker", 4);
    let _ = std::fs::remove_dir_all(&clean);
}

#[test]
fn checkpoints_reproduce_the_runs_own_evaluation() {
    let dir = tmp("ckpt-eval");
    let sets = short(&[
        "game.rounds=4",
        "eval.every=2",
        "eval.adaptive.rounds=2",
        "checkpoints.every=2",
    ]);
    let s = run("intent-advgame-dpo", &sets, &dir);
    assert_eq!(s.rounds, 4);
    // Kept: r0, r2, r4 (every 2 and the last); not r1, r3.
    for r in [0, 2, 4] {
        assert!(run::checkpoint_path(&dir, "defender", r).exists(), "r{r}");
    }
    for r in [1, 3] {
        assert!(!run::checkpoint_path(&dir, "defender", r).exists(), "r{r}");
    }
    // The adaptive evaluation's best-response runs are kept.
    for r in [2, 4] {
        let log = dir.join(format!("adaptive/r{r}/episodes.jsonl"));
        let c = replay::read_committed(&log).unwrap();
        assert_eq!(c.last_round, 2, "{}", log.display());
    }
    // The run's attacker-mode evaluation of round 2, replayed from the round-2 checkpoints.
    let (logged, mut init, loaded) = logged_eval(&dir, 2);
    let registry = sparring_actors::registry();
    let rt = runtime();
    let again = rt
        .block_on(run::evaluate(
            &loaded,
            &registry,
            &dir,
            init.clone(),
            EvalMode::Attacker,
            2,
        ))
        .unwrap();
    assert_eq!(again, logged);
    // Another defender (round 0) answers differently somewhere: the checkpoint is really loaded.
    init.insert(
        Slot::Defender,
        std::fs::read(run::checkpoint_path(&dir, "defender", 0)).unwrap(),
    );
    let other = rt
        .block_on(run::evaluate(
            &loaded,
            &registry,
            &dir,
            init,
            EvalMode::Attacker,
            2,
        ))
        .unwrap();
    assert_eq!(other.len(), logged.len());
    assert!(
        other
            .iter()
            .zip(&logged)
            .any(|(a, b)| a.version != b.version),
        "the round-0 defender was not loaded"
    );

    // Cross-play with one game (states swapped in by `Work::Load`) equals `evaluate` pair by pair; a state
    // that does not load fails only its own cells.
    let ck =
        |role: &str, r: u32| Arc::new(std::fs::read(run::checkpoint_path(&dir, role, r)).unwrap());
    let attackers = [ck("attacker", 0), ck("attacker", 2)];
    let defenders = [
        ck("defender", 2),
        Arc::new(b"not a defender state".to_vec()),
        ck("defender", 0),
    ];
    let mut seen = 0;
    let cells = rt
        .block_on(run::crossplay(
            &loaded,
            &registry,
            &dir,
            &attackers,
            &defenders,
            2,
            &mut |_| seen += 1,
        ))
        .unwrap();
    assert_eq!((cells.len(), seen), (6, 6));
    let cell = |a: usize, d: usize| {
        cells
            .iter()
            .find(|c| c.attacker == a && c.defender == d)
            .unwrap()
    };
    assert_eq!(cell(1, 0).records.as_ref().unwrap(), &logged);
    assert_eq!(cell(1, 2).records.as_ref().unwrap(), &other);
    for a in 0..2 {
        let e = cell(a, 1).records.as_ref().unwrap_err().to_string();
        assert!(e.contains("defender 1"), "{e}");
    }
    assert_ne!(cell(0, 0).records.as_ref().unwrap(), &logged);

    // `sparring eval` on the round-2 players gives the run's own round-2 attacker-mode rates.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(["eval", "--json", "--attacker", "--round", "2"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let r2: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["round"] == 2)
        .unwrap();
    let mut compared = 0;
    for set in e["sets"].as_array().unwrap() {
        let (name, metric) = (
            set["set"].as_str().unwrap(),
            set["metric"].as_str().unwrap(),
        );
        let key = format!("eval/{name}/attacker/{metric}");
        if let Some(v) = r2["metrics"][&key].as_f64() {
            assert!(
                (set["rate"].as_f64().unwrap() - v).abs() < 1e-12,
                "{key}: {e} vs {v}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 2, "{e}\n{r2}");

    // The report plays the kept checkpoints: a 3×3 cross-play matrix and one exploitability point each.
    let out = tmp("ckpt-report");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args([
            "report",
            "-q",
            "--json",
            "--crossplay",
            "--exploit",
            "1",
            "--out",
        ])
        .arg(&out)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cp = &j["crossplay"];
    assert_eq!(cp["attackers"], serde_json::json!(["r0", "r2", "r4"]));
    assert_eq!(cp["defenders"], serde_json::json!(["r0", "r2", "r4"]));
    for row in cp["asr"].as_array().unwrap() {
        for v in row.as_array().unwrap() {
            let v = v.as_f64().expect("every pair was played");
            assert!((0.0..=1.0).contains(&v));
        }
    }
    let ex = j["exploitability"].as_array().unwrap();
    assert_eq!(ex.len(), 3);
    assert!(ex.iter().all(|p| p["asr"].as_f64().is_some()), "{ex:?}");
    for f in [
        "crossplay.png",
        "crossplay.csv",
        "exploitability.png",
        "exploitability.csv",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(out.join("crossplay.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 9);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copies_of_one_response_are_never_split_by_judge_noise() {
    // Most defender groups are copies of one answer; the oracle's 10 % noise must not crown one copy
    // over another (a DPO pair with nothing to learn: the defender's reward accuracy fell to ~0.1).
    let dir = tmp("copies");
    let sets = short(&[
        "game.rounds=3",
        "eval.every=0",
        "eval.modes=[\"plain\"]",
        "checkpoints.every=0",
    ]);
    let s = run("intent-advgame-dpo", &sets, &dir);
    assert_eq!(s.rounds, 3);
    let committed = replay::read_committed(&dir.join(replay::LOG)).unwrap();
    let mut groups: BTreeMap<String, Vec<(String, Option<f64>)>> = BTreeMap::new();
    let mut accuracy = Vec::new();
    for r in &committed.records {
        match r {
            Record::Response(x) => {
                groups
                    .entry(x.attack_key.clone())
                    .or_default()
                    .push((x.output.clone(), x.reward));
                // the oracle's compliance label is helpful compliance
                assert_eq!(
                    x.complied,
                    Some(x.complied_raw.ends_with(" HelpfulCompliance")),
                    "{}: {}",
                    x.key,
                    x.complied_raw
                );
            }
            Record::Learn(l) if l.role == sparring_engine::roles::Role::Defender => {
                accuracy.extend(l.report.metrics.get("reward_accuracy").copied());
            }
            _ => {}
        }
    }
    // (copies in a group with other answers meet those answers in separately noisy pairs; the learner
    // merges their rewards, see intent::roles::merge_copies)
    let mut with_copies = 0;
    for (key, g) in &groups {
        if g.len() > 1 && g.iter().all(|(o, _)| *o == g[0].0) {
            with_copies += 1;
            assert!(
                g.iter().all(|(_, r)| *r == g[0].1),
                "{key}: copies of one answer rewarded differently: {g:?}"
            );
        }
    }
    assert!(with_copies > 0, "no group of copies: nothing was tested");
    // with pairs between copies gone the defender's pairs carry a signal (was ~0.1: copies never count)
    assert_eq!(accuracy.len(), 3, "the defender learns every round");
    let mean = accuracy.iter().sum::<f64>() / accuracy.len() as f64;
    assert!(
        mean >= 0.2,
        "defender reward accuracy per step: {accuracy:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each round's adaptive evaluation plays on beside the rounds after it: the rounds still commit in order,
/// each with its adaptive records and its sub-run complete on disk, and the run is the same from one run to
/// the next whatever the interleaving.
#[test]
fn adaptive_evaluations_play_beside_later_rounds_and_commit_in_order() {
    let sets = short(&[
        "game.rounds=5",
        "eval.every=2",
        "eval.adaptive.rounds=4",
        "eval.modes=[\"adaptive\"]",
    ]);
    // Twice as scheduled by default (beside later rounds, two sub-runs at once), once with the round waiting
    // for its sub-run, once with one sub-run at a time: the same game each time.
    let with = |extra: &str| {
        let mut v = sets.clone();
        if !extra.is_empty() {
            v.push(extra.to_string());
        }
        v
    };
    let runs = [
        ("beside-a", with("")),
        ("beside-b", with("")),
        ("beside-waits", with("eval.adaptive.beside=false")),
        ("beside-one", with("eval.adaptive.concurrent=1")),
    ];
    let dirs: Vec<PathBuf> = runs.iter().map(|(n, _)| tmp(n)).collect();
    let summaries: Vec<_> = runs
        .iter()
        .zip(&dirs)
        .map(|((_, s), d)| run("intent-advgame-dpo", s, d))
        .collect();
    let committed = replay::read_committed(&dirs[0].join(replay::LOG)).unwrap();
    let marks: Vec<u32> = committed
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Commit(c) => Some(c.round),
            _ => None,
        })
        .collect();
    assert_eq!(marks, [1, 2, 3, 4, 5]);
    // Evaluated: every 2 rounds and the last.
    for r in [2, 4, 5u32] {
        let adaptive = committed
            .records
            .iter()
            .filter(
                |x| matches!(x, Record::Eval(e) if e.round == r && e.mode == EvalMode::Adaptive),
            )
            .count();
        assert!(adaptive > 0, "round {r}: no adaptive records");
        let sub =
            replay::read_committed(&dirs[0].join(format!("adaptive/r{r}/episodes.jsonl"))).unwrap();
        assert_eq!(sub.last_round, 4, "round {r}'s sub-run");
    }
    // The sub-runs' compute was counted beside the rounds; when the round waits for its sub-run, only beside
    // its own evaluations.
    let beside = |d: &Path| -> Vec<f64> {
        std::fs::read_to_string(d.join("timings.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<run::Timings>(l).unwrap().adaptive_ms)
            .collect()
    };
    assert!(beside(&dirs[0]).iter().sum::<f64>() > 0.0);
    let waits = beside(&dirs[2]);
    assert!(
        waits[1] > 0.0 && waits[3] > 0.0 && waits[0] == 0.0 && waits[2] == 0.0,
        "{waits:?}"
    );
    // The same run each time: its log, and each round's metrics.
    let log = |d: &Path| std::fs::read(d.join(replay::LOG)).unwrap();
    for (i, d) in dirs.iter().enumerate().skip(1) {
        assert!(log(&dirs[0]) == log(d), "{}'s log differs", runs[i].0);
        assert_eq!(
            summaries[0].per_round, summaries[i].per_round,
            "{}",
            runs[i].0
        );
    }
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A harmful conversation's first turn sets up a story (the multi-turn weakness of the variant's warm
/// defender: `story`, nothing harmful or alarming).
fn sets_up(first_turn: &str) -> bool {
    const HARMFUL: &[&str] = &[
        "murder",
        "assault",
        "stab",
        "bomb",
        "explosive",
        "grenade",
        "hack",
        "breach",
        "phish",
        "meth",
        "cocaine",
        "heroin",
        "scam",
        "launder",
        "forge",
        "toxin",
        "arsenic",
        "cyanide",
        "person",
        "neighbor",
        "boss",
        "witness",
        "building",
        "crowd",
        "car",
        "stadium",
        "password",
        "account",
        "server",
        "email",
        "street",
        "dealer",
        "high",
        "batch",
        "money",
        "identity",
        "elderly",
        "cheque",
        "drink",
        "victim",
        "spouse",
        "wine",
        "kill",
        "shoot",
        "poison",
        "unfiltered",
        "dan",
    ];
    let words: Vec<&str> = first_turn.split_whitespace().collect();
    words.contains(&"story") && !words.iter().any(|w| HARMFUL.contains(w))
}

/// The multi-turn intent game (`game.turns = 2`) against the frozen warm defender, whose weakness needs two
/// turns: the attacker learns to open harmful conversations with the setup (its first turn gets the
/// conversation's reward), and its attacks start to land.
#[test]
fn a_multi_turn_attacker_learns_the_two_turn_setup() {
    let dir = tmp("multi-turn-learns");
    let sets: Vec<String> = ["game.schedule=\"frozen-defender\"", "replay.fsync=false"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = run("intent-multi-turn", &sets, &dir);
    assert_eq!(s.rounds, 40);
    let committed = replay::read_committed(&dir.join(replay::LOG)).unwrap();
    // Per block of 10 rounds: harmful conversations, those opened with the setup.
    let mut blocks = [(0usize, 0usize); 4];
    // After a setup and without: the defender's answers to valid harmful conversations, those that complied.
    let (mut after_setup, mut without) = ((0usize, 0usize), (0usize, 0usize));
    let mut setup_of = BTreeMap::new();
    let mut eval_setups = BTreeMap::new();
    for r in &committed.records {
        match r {
            Record::Rewrite(w) if w.category == sparring_engine::Category::Harmful => {
                assert!(
                    w.turns.len() <= 1,
                    "{}: {} earlier turns",
                    w.key,
                    w.turns.len()
                );
                let setup = w.turns.first().is_some_and(|t| sets_up(&t.prompt));
                let b = &mut blocks[(w.round as usize - 1) / 10];
                b.0 += 1;
                b.1 += usize::from(setup);
                setup_of.insert(w.key.clone(), setup);
            }
            Record::Response(d) => {
                if let Some(&setup) = setup_of.get(&d.attack_key) {
                    let tally = if setup {
                        &mut after_setup
                    } else {
                        &mut without
                    };
                    tally.0 += 1;
                    tally.1 += usize::from(d.output.starts_with("COMPLY"));
                }
            }
            Record::Eval(e)
                if e.mode == EvalMode::Attacker
                    && e.category == sparring_engine::Category::Harmful =>
            {
                let setup = e.turns.first().is_some_and(|t| sets_up(&t.prompt));
                let v = eval_setups.entry(e.round).or_insert((0usize, 0usize));
                v.0 += 1;
                v.1 += usize::from(setup);
            }
            _ => {}
        }
    }
    let rate = |(n, k): (usize, usize)| k as f64 / n.max(1) as f64;
    // The variant's premise: the warm defender answers harmful requests after a setup, and only then.
    assert!(rate(after_setup) > 0.8, "after a setup: {after_setup:?}");
    assert!(rate(without) < 0.05, "without a setup: {without:?}");
    // The attacker learns it: its setups double between the first and the last 10 rounds (with the rewards
    // given to its last turns only, they fall: 11.9 % → 8.6 %).
    let (first, last) = (rate(blocks[0]), rate(blocks[3]));
    assert!(
        last >= 1.5 * first && last > 0.15,
        "setups per block of 10 rounds: {blocks:?}"
    );
    let share = |round: u32| rate(eval_setups[&round]);
    assert!(share(40) > share(10), "evaluation setups: {eval_setups:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A multi-turn run's records: each conversation's earlier turn and the reply to it; the run's checkpoints
/// reproduce its own (two-turn) evaluation; a crash of the defender while it answers first turns, and a SIGKILL
/// of the run and `--resume`, give the same records.
#[test]
fn a_multi_turn_run_restarts_and_resumes_exactly() {
    let sets: Vec<String> = short(&[
        "game.rounds=3",
        "eval.every=3",
        "checkpoints.every=3",
        "replay.fsync=false",
    ]);
    let clean = tmp("multi-turn-clean");
    let s = run("intent-multi-turn", &sets, &clean);
    assert_eq!(s.rounds, 3);
    let committed = replay::read_committed(&clean.join(replay::LOG)).unwrap();
    let mut conversations = 0;
    for r in &committed.records {
        if let Record::Rewrite(w) = r
            && let Some(t) = w.turns.first()
        {
            conversations += 1;
            assert!(
                !t.prompt.is_empty() && !t.reply.is_empty(),
                "{}: {t:?}",
                w.key
            );
            assert!(t.logprobs.is_empty(), "{}: log-probs recorded", w.key);
            assert!(t.attack.ends_with("<eos>"), "{}: {t:?}", w.key);
        }
    }
    assert!(
        conversations > 3 * 8 * 4 / 2,
        "{conversations} two-turn conversations"
    );
    let (logged, loaded) = reproduces_its_evaluation(&clean, 3);
    assert!(logged.iter().any(|e| !e.turns.is_empty()));
    // Cross-play plays each cell's conversations: the round-3 pair's cell is that evaluation too.
    let state = |role: &str, r: u32| {
        Arc::new(std::fs::read(run::checkpoint_path(&clean, role, r)).unwrap())
    };
    let cells = runtime()
        .block_on(run::crossplay(
            &loaded,
            &sparring_actors::registry(),
            &clean,
            &[state("attacker", 0), state("attacker", 3)],
            &[state("defender", 3)],
            3,
            &mut |_| {},
        ))
        .unwrap();
    assert_eq!(cells.len(), 2);
    let last = cells.iter().find(|c| c.attacker == 1).unwrap();
    assert_eq!(last.records.as_ref().unwrap(), &logged);
    // The defender's 2nd request is its answers to the first round's first turns.
    restarts_and_resumes_exactly("intent-multi-turn", &sets, &clean, "defender", 2);
    let _ = std::fs::remove_dir_all(&clean);
}

/// GRPO over two-turn conversations: each of the attacker's turns is a sequence of its loss, with the
/// conversation's advantage.
#[test]
fn a_multi_turn_game_learns_with_grpo() {
    let attacker_tokens = |turns: u32| {
        let dir = tmp(&format!("multi-turn-grpo-{turns}"));
        let sets = short(&[
            "game.rounds=2",
            &format!("game.turns={turns}"),
            "attacker.model.max_len=48",
            "defender.model.max_len=48",
            "eval.every=0",
            "eval.modes=[\"plain\"]",
        ]);
        let s = run("intent-grpo", &sets, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let sum = |k: &str| {
            s.per_round
                .iter()
                .filter_map(|(_, m)| m.get(k))
                .sum::<f64>()
        };
        assert_eq!(sum("learn/attacker/steps"), 2.0, "turns = {turns}");
        assert_eq!(sum("learn/defender/steps"), 2.0, "turns = {turns}");
        sum("learn/attacker/tokens")
    };
    // A conversation's tokens: both turns with their contexts, the second after the first and its reply.
    let (one, two) = (attacker_tokens(1), attacker_tokens(2));
    assert!(
        two > 2.0 * one,
        "attacker tokens: {one} with one turn, {two} with two"
    );
}
