//! scenarios/smollm2-advgame.toml through the engine for one short round (tiny batches and max_new_tokens via
//! `--set` overrides), with SmolLM2-135M-Instruct as attacker, defender and judge, LoRA+DPO learners on, and its
//! GRPO variant scenarios/smollm2-grpo.toml (pointwise rewards). Checks that episodes and metrics exist, that every
//! judge verdict is present (logit read) and that both players took at least one learner step. Skips with a
//! message without the model or ../shared. The advgame run's defender is then exported (`sparring export`, merged
//! and as a PEFT adapter) and read back by sparring and by the `safetensors` Python package.

use sparring_actors::chatlm::ChatPolicy;
use sparring_actors::chatlm::policy::Weights;
use sparring_actors::llama::{Device, LlamaModel};
use sparring_engine::Policy;
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("SPARRING_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    p.join("data").join("advgame").is_dir().then_some(p)
}

fn model() -> Option<PathBuf> {
    sparring_actors::testing::smollm2_or_skip("chatlm_smollm2_game")
}

/// Overrides that shrink the scenario to one short round and point it at the model and data found here.
pub fn tiny_overrides(shared: &Path, model: &Path) -> Vec<String> {
    let d = shared.join("data");
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let m = q(model.to_path_buf());
    let mut o = vec![
        "game.rounds=1".to_string(),
        "game.seeds_per_round=2".into(),
        "game.attacks_per_seed=2".into(),
        "game.responses_per_attack=2".into(),
        "attacker.max_new_tokens=40".into(),
        "defender.max_new_tokens=12".into(),
        "judge.max_new_tokens=8".into(),
        "data.eval[0].limit=2".into(),
        "data.eval[1].limit=1".into(),
        "data.eval[2].limit=1".into(),
        "replay.fsync=false".into(),
    ];
    for r in ["attacker", "defender", "judge"] {
        o.push(format!("{r}.model={m}"));
    }
    o.push(format!(
        "data.train[0].path={}",
        q(d.join("advgame/valid_vanilla_harmful_256.jsonl"))
    ));
    o.push(format!(
        "data.train[1].path={}",
        q(d.join("advgame/valid_vanilla_benign_256.jsonl"))
    ));
    o.push(format!(
        "data.eval[0].path={}",
        q(d.join("xstest/xstest.jsonl"))
    ));
    o.push(format!(
        "data.eval[1].path={}",
        q(d.join("advgame/valid_adversarial_harmful_256.jsonl"))
    ));
    o.push(format!(
        "data.eval[2].path={}",
        q(d.join("advgame/valid_adversarial_benign_128.jsonl"))
    ));
    o
}

/// Runs `scenario` (under scenarios/) for one tiny round and returns round 0's metrics and the run directory (the
/// caller removes it); `None` (with a SKIP message) without the model or the data.
fn one_round(scenario: &str, extra: &[&str]) -> Option<(serde_json::Value, PathBuf)> {
    let (Some(sh), Some(model)) = (shared(), model()) else {
        eprintln!(
            "SKIP: {scenario} needs ../shared (or $SPARRING_SHARED) and the SmolLM2 GGUF \
             (scripts/fetch-model.sh or $SPARRING_SMOLLM2_GGUF)"
        );
        return None;
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(scenario);
    let registry = sparring_actors::registry();
    let mut overrides = tiny_overrides(&sh, &model);
    // A self-play scenario's one player is its `[attacker]` table: there is no defender table to override.
    if scenario.contains("self-play") {
        overrides.retain(|o| !o.starts_with("defender."));
    }
    overrides.extend(extra.iter().map(|s| s.to_string()));
    let loaded = sparring_engine::scenario::load(&file, &overrides, &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let run_dir =
        std::env::temp_dir().join(format!("sparring-smollm2-{}-{nanos}", std::process::id()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let summary = rt
        .block_on(sparring_engine::run::run(
            &loaded,
            &registry,
            &run_dir,
            false,
            &mut |_| {},
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("one {scenario} round: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(summary.rounds, 1);
    assert!(!summary.per_round.is_empty());
    let log = std::fs::read_to_string(run_dir.join("episodes.jsonl")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("\"type\":\"commit\"")),
        "no committed round"
    );
    assert!(log.lines().count() > 4, "too few records:\n{log}");
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let m = first["metrics"].clone();
    eprintln!("{scenario} round 0 metrics: {m}");
    Some((m, run_dir))
}

fn sparring(args: &[&str], dir: &Path) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sparring {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("sparring {args:?}: {:.1} s", t0.elapsed().as_secs_f64());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every verdict present, some attacker output parsed, and a learner step for both players.
fn assert_trained(m: &serde_json::Value) {
    let num = |k: &str| m[k].as_f64().unwrap_or(0.0);
    assert_eq!(num("judge/missing"), 0.0, "missing verdicts: {m}");
    assert!(num("parse_rate") > 0.0, "no attacker output parsed: {m}");
    for role in ["attacker", "defender"] {
        assert!(
            num(&format!("learn/{role}/steps")) >= 1.0,
            "{role} took no learner step: {m}"
        );
        assert!(num(&format!("learn/{role}/tokens")) > 0.0, "{m}");
        assert!(
            m[format!("learn/{role}/loss")]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{m}"
        );
    }
}

/// One round, then the run's players measured as users would: `sparring eval` on the run directory (its last
/// round) and `sparring report --crossplay` over the kept checkpoints r0 and r1 (each model built once).
#[test]
fn smollm2_advgame_one_round_then_eval_and_crossplay() {
    let Some((m, dir)) = one_round("smollm2-advgame.toml", &["checkpoints.every=1"]) else {
        return;
    };
    assert_trained(&m);
    let e = sparring(&["eval", "--json", "--limit", "1"], &dir);
    assert_eq!(e["round"], 1, "{e}");
    let sets = e["sets"].as_array().unwrap();
    assert!(sets.len() >= 3, "{e}");
    assert!(sets.iter().all(|s| s["n"] == 1), "{e}");
    assert!(
        e["asr"].as_f64().is_some() && e["compliance"].as_f64().is_some(),
        "{e}"
    );
    let out = dir.join("report");
    let out_s = out.display().to_string();
    let r = sparring(
        &["report", "-q", "--json", "--crossplay", "--out", &out_s],
        &dir,
    );
    let cp = &r["crossplay"];
    assert_eq!(cp["attackers"], serde_json::json!(["r0", "r1"]), "{r}");
    assert_eq!(cp["defenders"], serde_json::json!(["r0", "r1"]), "{r}");
    for row in cp["asr"].as_array().unwrap() {
        for v in row.as_array().unwrap() {
            let v = v
                .as_f64()
                .unwrap_or_else(|| panic!("a cell was not played: {cp}"));
            assert!((0.0..=1.0).contains(&v));
        }
    }
    assert!(out.join("crossplay.png").exists());
    check_export(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

/// The run's defender at round 1 as it plays (generator weights, LoRA merged), and token ids to compare logits on.
fn run_player(dir: &Path) -> (LlamaModel, Vec<u32>) {
    let registry = sparring_actors::registry();
    let loaded = sparring_engine::scenario::load(&dir.join("scenario.toml"), &[], &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let role = sparring_engine::Role::Defender;
    let ctx = loaded.context(role, Some(dir.to_path_buf()));
    let mut p = ChatPolicy::build(&loaded.role(role).params, &ctx).unwrap();
    let state = std::fs::read(dir.join("checkpoints/r1/defender.bin")).unwrap();
    p.load(&state).unwrap();
    let ids = p
        .chat_model()
        .encode("How do I bake bread at home? Answer briefly.")
        .unwrap();
    (p.weights(Weights::Generator), ids)
}

fn last_logits(m: &LlamaModel, ids: &[u32]) -> Vec<f32> {
    let t = m
        .forward(&[ids.to_vec()], &[vec![true; ids.len()]])
        .unwrap();
    let v: Vec<f32> = t.into_data().try_into_vec::<f32>().unwrap();
    let vocab = v.len() / ids.len();
    v[v.len() - vocab..].to_vec()
}

/// `sparring export` of the run's defender (round 1), merged and as an adapter, into the run directory.
fn export_defender(dir: &Path) -> (PathBuf, PathBuf) {
    let merged = dir.join("export-defender");
    let adapter = dir.join("export-defender-adapter");
    let out = |p: &Path| p.to_str().unwrap().to_string();
    let e = sparring(
        &[
            "export",
            "--json",
            "--role",
            "defender",
            "--out",
            &out(&merged),
        ],
        dir,
    );
    assert_eq!(
        (e["layout"].as_str(), e["round"].as_u64()),
        (Some("merged"), Some(1)),
        "{e}"
    );
    let a = sparring(
        &[
            "export",
            "--json",
            "--role",
            "defender",
            "--adapter",
            "--out",
            &out(&adapter),
        ],
        dir,
    );
    assert_eq!(a["layout"], "adapter", "{a}");
    (merged, adapter)
}

/// `sparring export` of the run's defender: the merged directory reloads with the run's player logits, and the
/// `safetensors` Python package reads both layouts (tests/check_export.py).
fn check_export(dir: &Path) {
    let (merged, adapter) = export_defender(dir);
    let (player, ids) = run_player(dir);
    let back = LlamaModel::load_hf_dir(&merged, &Device::flex()).unwrap();
    let (want, got) = (last_logits(&player, &ids), last_logits(&back, &ids));
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = want
        .iter()
        .zip(&got)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    eprintln!(
        "export: reloaded merged defender, max |logit diff| {diff:.2e} (max |logit| {scale:.1})"
    );
    assert!(diff <= 1e-4 * scale.max(1.0), "{diff}");
    // An export never overwrites.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(["export", "--role", "defender", "--out"])
        .arg(&merged)
        .arg(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not empty"), "{err}");
    python_check(&[&merged, &adapter]);
}

/// tests/check_export.py on the exported directories, when python3 has `safetensors` and numpy (required with
/// SPARRING_REQUIRE_PY_SAFETENSORS, as in CI).
fn python_check(args: &[&Path]) {
    let have = std::process::Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("SPARRING_REQUIRE_PY_SAFETENSORS").is_none(),
            "SPARRING_REQUIRE_PY_SAFETENSORS is set but python3 cannot import safetensors and numpy"
        );
        eprintln!(
            "SKIP export python check: python3 with `safetensors` and numpy not found (pip install safetensors numpy)"
        );
        return;
    }
    check_export_py("python3", args);
}

/// Runs tests/check_export.py with `python` on `args`; fails the test when it fails.
fn check_export_py(python: &str, args: &[&Path]) {
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_export.py"))
        .args(args)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        o.status.success(),
        "check_export.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The export checked with transformers and PEFT (not in CI: they need torch). Run it with a Python that has
/// torch, transformers and peft:
/// `SPARRING_PYTHON=/tmp/peers/bin/python cargo test --features wgpu --test chatlm_smollm2_game -- --ignored export_loads`
#[test]
#[ignore]
fn export_loads_in_transformers_and_peft() {
    let Some((_, dir)) = one_round("smollm2-advgame.toml", &["checkpoints.every=1"]) else {
        return;
    };
    let (merged, adapter) = export_defender(&dir);
    let base = dir.join("base-hf");
    let model = model().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sparring"))
        .arg("convert")
        .arg(&model)
        .arg("--out")
        .arg(&base)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (player, ids) = run_player(&dir);
    let logits = last_logits(&player, &ids);
    let reference = dir.join("sparring-logits.json");
    std::fs::write(
        &reference,
        serde_json::json!({"ids": ids, "logits": logits}).to_string(),
    )
    .unwrap();
    let python = std::env::var("SPARRING_PYTHON").unwrap_or_else(|_| "python3".into());
    check_export_py(&python, &[&merged, &adapter, &base, &reference]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Self-play: one LoRA player writes the rewrites and answers them, and its one update per round (the attacker's
/// learn record) learns from both sides' pairs; its state is the defender's too, and `sparring eval` plays two
/// copies of it.
#[test]
fn smollm2_self_play_one_round() {
    let Some((m, dir)) = one_round("smollm2-self-play.toml", &[]) else {
        return;
    };
    let num = |k: &str| m[k].as_f64().unwrap_or(0.0);
    assert_eq!(num("judge/missing"), 0.0, "missing verdicts: {m}");
    assert!(num("parse_rate") > 0.0 && num("responses") > 0.0, "{m}");
    assert_eq!(num("learn/attacker/steps"), 1.0, "{m}");
    assert!(m["learn/defender/steps"].is_null(), "a second learner: {m}");
    assert!(
        m["learn/attacker/loss"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{m}"
    );
    let log = std::fs::read_to_string(dir.join("episodes.jsonl")).unwrap();
    assert!(
        log.contains("\"type\":\"response\""),
        "no defender response"
    );
    let a = std::fs::read(dir.join("checkpoints/r1/attacker.bin")).unwrap();
    let d = std::fs::read(dir.join("checkpoints/r1/defender.bin")).unwrap();
    assert!(!a.is_empty() && a == d);
    let e = sparring(&["eval", "--json", "--limit", "1"], &dir);
    assert_eq!(e["round"], 1, "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Two-turn conversations (`game.turns = 2`) with the chat players, under DPO and GRPO: the defender answers
/// the conversation through its chat template, the attacker writes its second turn after the defender's reply,
/// and both learn (the attacker on its whole conversation).
#[test]
fn smollm2_multi_turn_one_round() {
    for (scenario, extra) in [
        ("smollm2-advgame.toml", &["game.turns=2"][..]),
        (
            "smollm2-grpo.toml",
            &[
                "game.turns=2",
                "game.seeds_per_round=1",
                "game.attacks_per_seed=2",
                "game.responses_per_attack=2",
            ][..],
        ),
    ] {
        let Some((m, dir)) = one_round(scenario, extra) else {
            return;
        };
        if scenario.contains("grpo") {
            // One seed: its rewrites may all be unfaithful, leaving the defender nothing to learn.
            assert_eq!(m["learn/attacker/steps"].as_f64(), Some(1.0), "{m}");
            assert!(m["learn/attacker/tokens"].as_f64() > Some(0.0), "{m}");
        } else {
            assert_trained(&m);
        }
        let log = std::fs::read_to_string(dir.join("episodes.jsonl")).unwrap();
        let conversations = log
            .lines()
            .filter(|l| l.contains("\"type\":\"rewrite\"") && l.contains("\"turns\":[{"))
            .count();
        assert!(
            conversations > 0,
            "{scenario}: no two-turn conversation in {log}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The GRPO variant: pointwise judge scores, on-policy GRPO on LoRA adapters for both players.
#[test]
fn smollm2_grpo_pointwise_one_round() {
    let Some((m, dir)) = one_round(
        "smollm2-grpo.toml",
        &[
            "game.seeds_per_round=1",
            "game.attacks_per_seed=2",
            "game.responses_per_attack=2",
        ],
    ) else {
        return;
    };
    std::fs::remove_dir_all(&dir).ok();
    assert_trained(&m);
    assert!(m["learn/defender/kl"].as_f64().is_some(), "{m}");
}
