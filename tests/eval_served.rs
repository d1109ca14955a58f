//! `sparring eval` of a served model: `sparring serve` puts a scenario's defender (the rule-based `scripted-rules`
//! of `scripted-redteam`, without its random flips, so its answers depend on the prompt alone) behind the
//! OpenAI-compatible endpoint, and `sparring eval` replaces the scenario's defender with an `openai-chat` player
//! pointing at it. The report (every set and topic, plain and attacker modes) equals the in-process evaluation of
//! the same defender, every defender answer went through the server (its request log), the scenario's joint
//! schedule needs no `game.schedule` override (evaluation trains nothing), a run's trained attacker plays its
//! served defender as it plays it in process, and an endpoint that nobody listens on is an error within seconds
//! that names the role and the URL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod spine_common;
use spine_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sparring");
const SCENARIO: &str = "scenarios/scripted-redteam.toml";
/// The defender without its seeded flips: the served and the in-process answers then agree whatever the seeds.
const NO_FLIPS: &str = "defender.flip_rate=0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Serves the defender of `source` (a scenario, without flips, or a run directory) on a free port, logging each
/// request to `log`.
fn serve(source: &Path, log: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg(source)
        .args(["--role", "defender", "--addr", "127.0.0.1:0"]);
    if source.extension().is_some_and(|e| e == "toml") {
        cmd.args(["--set", NO_FLIPS]);
    }
    cmd.arg("--request-log").arg(log).current_dir(repo());
    start_serving(cmd)
}

/// The defender as an `openai-chat` player of the endpoint at `port` (an inline table replaces the whole role).
fn remote_defender(port: u16) -> String {
    format!(
        "defender={{kind=\"openai-chat\", base_url=\"http://127.0.0.1:{port}/v1\", model=\"sparring-defender\", \
         temperature=0, max_retries=1}}"
    )
}

fn eval(args: &[&str]) -> Output {
    eval_of(Path::new(SCENARIO), args)
}

/// `sparring eval SOURCE ARGS…` (a scenario or a run directory).
fn eval_of(source: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("eval")
        .arg(source)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// `sparring eval … --json`'s report.
fn eval_json(args: &[&str]) -> serde_json::Value {
    eval_json_of(Path::new(SCENARIO), args)
}

fn eval_json_of(source: &Path, args: &[&str]) -> serde_json::Value {
    let o = eval_of(source, &[args, &["--json"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The figures of a report (not its scenario path, which both share anyway).
fn figures(j: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "mode": j["mode"], "sets": j["sets"], "topics": j["topics"],
        "asr": j["asr"], "compliance": j["compliance"], "over_refusal": j["over_refusal"],
    })
}

#[test]
fn a_served_defender_evaluates_as_it_does_in_process() {
    let what = "a_served_defender_evaluates_as_it_does_in_process";
    let Some(_) = shared_or_skip(what) else {
        return;
    };
    let dir = tmpdir("eval-served");
    let log = dir.join("requests.jsonl");
    let s = serve(Path::new(SCENARIO), &log);
    let remote = remote_defender(s.port);

    let mut answered = 0;
    for mode in [&[][..], &["--attacker"][..]] {
        let local = eval_json(&[mode, &["--set", NO_FLIPS]].concat());
        let served = eval_json(&[mode, &["--set", &remote]].concat());
        assert_eq!(figures(&served), figures(&local), "{mode:?}");
        // Both sides of XSTest, the HarmBench sample, and their topics: a real evaluation, not an empty one.
        assert_eq!(local["sets"].as_array().map(Vec::len), Some(3), "{local}");
        assert!(
            local["topics"].as_array().map_or(0, Vec::len) > 10,
            "{local}"
        );
        let asr = local["asr"].as_f64().unwrap();
        assert!(asr > 0.0 && asr < 1.0, "{local}");
        // The defender answered every prompt as written, and every valid rewrite.
        answered += local["sets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["n"].as_u64().unwrap() - x["invalid"].as_u64().unwrap())
            .sum::<u64>();
    }
    // Every one of those answers came from the server: a line of its request log each.
    let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    assert_eq!(lines, answered);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run's players at its last round: its trained attacker in process, its defender served (`serve RUN_DIR`).
/// The served role starts fresh in `eval` (the run's state is the replaced kind's), the others from the run.
#[test]
fn a_runs_attacker_against_its_served_defender() {
    let what = "a_runs_attacker_against_its_served_defender";
    let Some(_) = shared_or_skip(what) else {
        return;
    };
    let dir = tmpdir("eval-served-run");
    let run = dir.join("run");
    let o = Command::new(BIN)
        .args([
            "run",
            SCENARIO,
            "--quiet",
            "--set",
            "game.rounds=2",
            "--set",
            NO_FLIPS,
        ])
        .arg("--out")
        .arg(&run)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = serve(&run, &dir.join("requests.jsonl"));
    let local = eval_json_of(&run, &["--attacker"]);
    let served = eval_json_of(&run, &["--attacker", "--set", &remote_defender(s.port)]);
    assert_eq!(served["round"], 2, "{served}");
    assert_eq!(figures(&served), figures(&local));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error_at_once() {
    let what = "an_unreachable_endpoint_is_a_clear_error_at_once";
    let Some(_) = shared_or_skip(what) else {
        return;
    };
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let o = eval(&["--quiet", "--limit", "3", "--set", &remote_defender(port)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    let url = format!("http://127.0.0.1:{port}/v1");
    assert!(
        e.contains(&format!("the defender's endpoint {url}")) && e.contains("cannot be reached"),
        "{e}"
    );
    // Not after the requests' retries and the role's restarts (half a minute with the defaults).
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}
