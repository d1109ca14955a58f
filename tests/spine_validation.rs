//! Scenario validation: every error names file:line:column (or the `--set` that caused it) and the key path.

mod spine_common;
use spine_common::*;
use std::path::Path;

fn errors(file: &Path, overrides: &[&str]) -> String {
    let reg = sparring_actors::registry();
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    match sparring_engine::scenario::load(file, &o, &reg) {
        Ok(_) => panic!("{} should not validate", file.display()),
        Err(e) => e.to_string(),
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle} not in text"))
}

fn case(name: &str, text: &str, overrides: &[&str]) -> (String, String, String) {
    let dir = tmpdir(name);
    let f = write_scenario(&dir, text);
    let e = errors(&f, overrides);
    (e, f.display().to_string(), text.to_string())
}

#[test]
fn valid_scenario_loads() {
    let Some(sh) = shared_or_skip("valid_scenario_loads") else {
        return;
    };
    let dir = tmpdir("valid");
    let f = write_scenario(&dir, &scenario(&sh, 2, ""));
    let reg = sparring_actors::registry();
    let l = sparring_engine::scenario::load(&f, &["game.rounds=5".into()], &reg).unwrap();
    assert_eq!(l.scenario.game.rounds, 5);
    assert_eq!(l.train.len(), 80);
    assert_eq!(l.eval.len(), 1);
    assert!(l.resolved.contains("rounds = 5"));
}

#[test]
fn unknown_key_has_line_column_and_path() {
    let Some(sh) = shared_or_skip("unknown_key") else {
        return;
    };
    let text =
        scenario(&sh, 2, "").replace("seeds_per_round = 6", "seeds_per_round = 6\nbogus_key = 1");
    let (e, f, text) = case("unknown", &text, &[]);
    let line = line_of(&text, "bogus_key");
    assert!(e.contains(&format!("{f}:{line}:1")), "{e}");
    assert!(e.contains("game.bogus_key"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn unknown_role_parameter_has_line_and_path() {
    let Some(sh) = shared_or_skip("unknown_role_parameter") else {
        return;
    };
    let text = scenario(&sh, 2, "").replace(
        "flip_rate = 0.2",
        "flip_rate = 0.2\nrefusal_kewords = [\"x\"]",
    );
    let (e, f, text) = case("unknown-param", &text, &[]);
    let line = line_of(&text, "refusal_kewords");
    assert!(e.contains(&format!("{f}:{line}:1")), "{e}");
    assert!(e.contains("defender.refusal_kewords"), "{e}");
}

#[test]
fn wrong_type_has_line_column_and_path() {
    let Some(sh) = shared_or_skip("wrong_type") else {
        return;
    };
    let text = scenario(&sh, 2, "").replace("attacks_per_seed = 3", "attacks_per_seed = \"three\"");
    let (e, f, text) = case("type", &text, &[]);
    let line = line_of(&text, "attacks_per_seed");
    assert!(e.contains(&format!("{f}:{line}:")), "{e}");
    assert!(e.contains("game.attacks_per_seed"), "{e}");
}

#[test]
fn missing_data_file_names_key() {
    let Some(sh) = shared_or_skip("missing_file") else {
        return;
    };
    let text = scenario(&sh, 2, "").replace("valid_vanilla_benign_256.jsonl", "no_such_file.jsonl");
    let (e, f, text) = case("missing", &text, &[]);
    let line = line_of(&text, "no_such_file");
    assert!(e.contains(&format!("{f}:{line}:1")), "{e}");
    assert!(e.contains("data.train[1].path"), "{e}");
    assert!(e.contains("no such file"), "{e}");
}

#[test]
fn impossible_values_are_rejected() {
    let Some(sh) = shared_or_skip("impossible") else {
        return;
    };
    let text = scenario(&sh, 2, "")
        .replace("attacks_per_seed = 3", "attacks_per_seed = 0")
        .replace("malformed_rate = 0.1", "malformed_rate = 2.0");
    let (e, f, text) = case("impossible", &text, &[]);
    let l1 = line_of(&text, "attacks_per_seed");
    let l2 = line_of(&text, "malformed_rate");
    assert!(
        e.contains(&format!(
            "{f}:{l1}:1: `game.attacks_per_seed`: must be at least 1"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("{f}:{l2}:1: `attacker.malformed_rate`")),
        "{e}"
    );
}

#[test]
fn sequential_needs_phase_rounds_and_kinds_must_exist() {
    let Some(sh) = shared_or_skip("sequential") else {
        return;
    };
    let text = scenario(&sh, 2, "")
        .replace(
            "responses_per_attack = 2",
            "responses_per_attack = 2\nschedule = \"sequential\"",
        )
        .replace("kind = \"refusal-prefix\"", "kind = \"no-such-judge\"");
    let (e, f, text) = case("seq", &text, &[]);
    assert!(
        e.contains(&format!(
            "{f}:{}:1: `game.schedule`",
            line_of(&text, "schedule =")
        )),
        "{e}"
    );
    assert!(
        e.contains("`judge.kind`: unknown judge kind `no-such-judge`"),
        "{e}"
    );
}

/// `self-play` takes one player, the `[attacker]` table: a `[defender]` beside it is an error at `defender`, a
/// scenario of another schedule without one is an error, and the player's kind must be able to defend.
#[test]
fn self_play_has_one_player_that_can_play_both_sides() {
    let Some(sh) = shared_or_skip("self_play_validation") else {
        return;
    };
    let base = scenario(&sh, 2, "");
    let self_play = base.replace(
        "responses_per_attack = 2",
        "responses_per_attack = 2\nschedule = \"self-play\"",
    );
    let (e, f, text) = case("self-play-defender", &self_play, &[]);
    assert!(
        e.contains(&format!("{f}:{}:", line_of(&text, "[defender]")))
            && e.contains("`defender`: under `game.schedule = \"self-play\"`")
            && e.contains("remove `[defender]`"),
        "{e}"
    );
    // The scripted attacker cannot defend.
    let no_defender = self_play.replace(
        "[defender]\nkind = \"scripted-rules\"\nflip_rate = 0.2\n",
        "",
    );
    assert!(!no_defender.contains("scripted-rules"));
    let (e, _, _) = case("self-play-kind", &no_defender, &[]);
    assert!(
        e.contains("`attacker.kind`: `scripted-template` cannot play the defender"),
        "{e}"
    );
    let joint_without = base.replace(
        "[defender]\nkind = \"scripted-rules\"\nflip_rate = 0.2\n",
        "",
    );
    let (e, _, _) = case("joint-no-defender", &joint_without, &[]);
    assert!(e.contains("missing table `[defender]`"), "{e}");
    // The intent player can play both sides; faults go to the attacker's.
    let reg = sparring_actors::registry();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/intent-self-play.toml");
    let l = sparring_engine::scenario::load(&shipped, &[], &reg).unwrap();
    assert!(l.self_play() && l.scenario.defender.is_none());
    assert_eq!(l.role(sparring_engine::Role::Defender).kind, "intent-lm");
    let two = l.two_players();
    assert!(!two.self_play() && two.scenario.defender.is_some());
    let e = errors(&shipped, &["faults.defender.delay_ms=1"]);
    assert!(
        e.contains("`faults.defender`") && e.contains("faults.attacker"),
        "{e}"
    );
}

#[test]
fn data_errors_name_the_data_file_and_line() {
    let Some(sh) = shared_or_skip("data_errors") else {
        return;
    };
    let dir = tmpdir("baddata");
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\":\"a\",\"category\":\"harmful\"}\n{\"prompt\":\"b\",\"category\":\"evil\"}\n",
    )
    .unwrap();
    let text = scenario(&sh, 2, "").replace(
        &sh.join("data/advgame/valid_vanilla_benign_256.jsonl")
            .display()
            .to_string(),
        &bad.display().to_string(),
    );
    let f = write_scenario(&dir, &text);
    let e = errors(&f, &[]);
    assert!(
        e.contains(&format!(
            "{}:2: column `category`: \"evil\" is neither",
            bad.display()
        )),
        "{e}"
    );
    assert!(e.contains("data.train[1].path"), "{e}");
}

#[test]
fn override_errors_name_the_override() {
    let Some(sh) = shared_or_skip("override") else {
        return;
    };
    let dir = tmpdir("override");
    let f = write_scenario(&dir, &scenario(&sh, 2, ""));
    let e = errors(&f, &["game.rounds=many"]);
    assert!(e.contains("--set game.rounds=many"), "{e}");
    assert!(e.contains("game.rounds"), "{e}");
    let e = errors(&f, &["game.seeds_per_round=0"]);
    assert!(
        e.contains("--set game.seeds_per_round=0: `game.seeds_per_round`: must be at least 1"),
        "{e}"
    );
    let e = errors(&f, &["eval.adaptive.concurrent=0"]);
    assert!(
        e.contains("`eval.adaptive.concurrent`: must be at least 1"),
        "{e}"
    );
}

/// Keys that only schedule the adaptive evaluation leave the run id (and so every record) as it is; a key of
/// the game changes it.
#[test]
fn scheduling_keys_keep_the_run_id() {
    let Some(sh) = shared_or_skip("run-id") else {
        return;
    };
    let dir = tmpdir("run-id");
    let f = write_scenario(&dir, &scenario(&sh, 2, ""));
    let reg = sparring_actors::registry();
    let id = |sets: &[&str]| {
        let o: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        sparring_engine::scenario::load(&f, &o, &reg)
            .unwrap()
            .run_id
    };
    let plain = id(&[]);
    assert_eq!(id(&["eval.adaptive.beside=false"]), plain);
    assert_eq!(
        id(&["eval.adaptive.concurrent=3", "eval.adaptive.beside=true"]),
        plain
    );
    assert_ne!(id(&["eval.adaptive.rounds=3"]), plain);
    assert_ne!(
        id(&["eval.adaptive.rounds=3", "eval.adaptive.concurrent=1"]),
        plain
    );
    assert_eq!(
        id(&["eval.adaptive.rounds=3", "eval.adaptive.concurrent=1"]),
        id(&["eval.adaptive.rounds=3"])
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let dir = tmpdir("syntax");
    let f = write_scenario(&dir, "schema = 1\n[game]\nname = \"x\nseed = 1\n");
    let e = errors(&f, &[]);
    assert!(e.starts_with(&format!("{}:3:", f.display())), "{e}");
}

#[test]
fn cli_validate_exits_nonzero_with_message() {
    let dir = tmpdir("cli-validate");
    let f = write_scenario(&dir, "schema = 2\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("missing field"),
        "{err}"
    );
}

#[test]
fn a_remote_player_that_the_schedule_would_train_is_refused() {
    let Some(sh) = shared_or_skip("a_remote_player_that_the_schedule_would_train_is_refused")
    else {
        return;
    };
    let remote =
        "[defender]\nkind = \"openai-chat\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n";
    let local = "[defender]\nkind = \"scripted-rules\"\nflip_rate = 0.2\n";
    // Joint schedule (the default): the defender learns, and a remote defender cannot.
    let (e, f, text) = case(
        "remote-learns",
        &scenario(&sh, 2, "").replace(local, remote),
        &[],
    );
    assert!(e.contains("defender.kind"), "{e}");
    assert!(e.contains("openai-chat"), "{e}");
    assert!(e.contains("frozen-defender"), "{e}");
    let line = line_of(&text, "kind = \"openai-chat\"");
    assert!(e.contains(&format!("{f}:{line}:")), "{e}");
    // Frozen: the same remote defender validates (no network is touched).
    let dir = tmpdir("remote-frozen");
    let ok = write_scenario(&dir, &scenario(&sh, 2, "").replace(local, remote));
    let reg = sparring_actors::registry();
    sparring_engine::scenario::load(&ok, &["game.schedule=\"frozen-defender\"".into()], &reg)
        .unwrap();
}

#[test]
fn cluster_tables_are_checked_and_keep_the_run_id() {
    let Some(sh) = shared_or_skip("cluster_tables_are_checked") else {
        return;
    };
    // A role placed on a node of a scenario without a cluster.
    let (e, _, _) = case("cluster-none", &scenario(&sh, 2, ""), &["defender.node=a"]);
    assert!(e.contains("`defender.node`"), "{e}");
    assert!(e.contains("no `[cluster]` table"), "{e}");

    // Every key of the table is checked, each error naming its key.
    let bad = r#"
[cluster]
nodes = [{ name = "a", addr = "127.0.0.1:7401" }, { name = "a", addr = "nowhere" }]
cookie_env = "SPARRING_TEST_SURELY_UNSET_COOKIE"
heartbeat_ms = 500
heartbeat_timeout_ms = 400
chunk_kb = 9000
"#;
    let (e, f, text) = case("cluster-bad", &scenario(&sh, 2, bad), &["judge.node=z"]);
    for want in [
        "`cluster.nodes[1].name`: `a` is empty or listed twice",
        "`cluster.nodes[1].addr`: `nowhere` is not HOST:PORT",
        "`judge.node`: no node `z` in `cluster.nodes`",
        "`cluster.cookie_env`: the environment variable `SPARRING_TEST_SURELY_UNSET_COOKIE`",
        "`cluster.heartbeat_timeout_ms`: must be longer",
        "`cluster.chunk_kb`: 9000 is over 8192",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(
        e.contains(&format!("{f}:{}", line_of(&text, "heartbeat_timeout_ms"))),
        "{e}"
    );

    // Where roles run is not part of the game: the run id is the same as in one process.
    let dir = tmpdir("cluster-id");
    let plain = write_scenario(&dir, &scenario(&sh, 2, ""));
    let reg = sparring_actors::registry();
    let id = |f: &Path, o: &[&str]| {
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        sparring_engine::scenario::load(f, &o, &reg)
            .unwrap_or_else(|e| panic!("{e}"))
            .run_id
    };
    let placed = [
        r#"cluster={nodes=[{name="a",addr="127.0.0.1:7401"},{name="b",addr="10.0.0.2:7400"}],cookie_env="PATH",on_node_loss="other"}"#,
        "attacker.node=a",
        "defender.node=b",
    ];
    assert_eq!(id(&plain, &[]), id(&plain, &placed));
    // And a resumed run may move its roles.
    for o in placed.iter().chain(&["cluster.on_node_loss=\"fail\""]) {
        assert!(sparring_engine::scenario::resumable_override(o), "{o}");
    }
}

#[test]
fn a_shared_model_is_named_once_and_its_backend_is_the_roles() {
    let Some(sh) = shared_or_skip("a_shared_model_is_named_once") else {
        return;
    };
    let local = "[defender]\nkind = \"scripted-rules\"\nflip_rate = 0.2\n";
    let chat = "[defender]\nkind = \"chat-lm\"\nmodel = \"base\"\n";
    // The role's `model = "base"` takes [models.base]'s path: a missing file is named at the role's key.
    let text = scenario(&sh, 2, "").replace(local, chat)
        + "\n[models.base]\npath = \"nowhere/base.gguf\"\nbackend = \"flex\"\n";
    let (e, _, _) = case("models-missing", &text, &[]);
    assert!(
        e.contains("defender.model") && e.contains("nowhere/base.gguf"),
        "{e}"
    );
    // A role may not put a shared model on another backend.
    let (e, _, _) = case("models-backend", &text, &["defender.backend=\"wgpu\""]);
    assert!(
        e.contains("defender.backend") && e.contains("models.base"),
        "{e}"
    );
    // With the real model: it validates, and the role reads the declared path and backend.
    let Some(model) = sparring_actors::testing::smollm2_or_skip("a_shared_model_is_named_once")
    else {
        return;
    };
    let text = text.replace("nowhere/base.gguf", &model.display().to_string());
    let dir = tmpdir("models-ok");
    let f = write_scenario(&dir, &text);
    let reg = sparring_actors::registry();
    let l = sparring_engine::scenario::load(&f, &[], &reg).unwrap_or_else(|e| panic!("{e}"));
    let p = &l.role(sparring_engine::Role::Defender).params;
    assert_eq!(
        p["model"].as_str(),
        Some(model.display().to_string().as_str())
    );
    assert_eq!(p["backend"].as_str(), Some("flex"));
}

/// A round that cannot fit in memory is refused before anything runs, naming the `--set` and the estimate (it
/// used to grow to 24 GB and be killed by the kernel with no message); `--max-memory` sets another bound, and a
/// size that does not parse is a usage error.
#[test]
fn a_round_that_cannot_fit_is_refused_with_the_key_and_the_estimate() {
    let Some(sh) = shared_or_skip("round_that_cannot_fit") else {
        return;
    };
    let dir = tmpdir("cannot-fit");
    let f = write_scenario(&dir, &scenario(&sh, 1, ""));
    let sparring = |args: &[&str]| {
        let t0 = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
            .args(args)
            .arg(&f)
            .output()
            .unwrap();
        (out, t0.elapsed())
    };
    let (out, took) = sparring(&["run", "-q", "--set", "game.seeds_per_round=100000000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--set game.seeds_per_round=100000000")
            && err.contains("`game.seeds_per_round`")
            && err.contains("600000000 responses")
            && err.contains("at least"),
        "{err}"
    );
    assert!(took.as_secs() < 30, "refused only after {took:?}");
    // The scenario as written fits in the machine; under a 1 MiB bound it does not.
    let (out, _) = sparring(&["validate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, _) = sparring(&["validate", "--max-memory", "16KiB"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--max-memory allows"),
        "{err}"
    );
    let (out, _) = sparring(&["validate", "--max-memory", "lots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a size"), "{err}");
}

/// `game.turns`: 1 to 16; the intent player needs `model.max_len` room for the conversation (24 per turn).
#[test]
fn turns_are_bounded_and_the_intent_model_needs_room_for_them() {
    let reg = sparring_actors::registry();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/intent-multi-turn.toml");
    let l = sparring_engine::scenario::load(&shipped, &[], &reg).unwrap();
    assert_eq!(l.scenario.game.turns, 2);
    for bad in ["0", "17"] {
        let e = sparring_engine::scenario::load(&shipped, &[format!("game.turns={bad}")], &reg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`game.turns`: must be between 1 and 16"), "{e}");
    }
    let e =
        sparring_engine::scenario::load(&shipped, &["defender.model.max_len=32".to_string()], &reg)
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("defender.model.max_len") && e.contains("must be >= 48"),
        "{e}"
    );
}
