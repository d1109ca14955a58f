//! End to end over loopback: a game whose defender is `openai-chat` and whose judge is `openai-judge`, both
//! pointing at `sparring serve` processes serving the SmolLM2 players. The run completes; `sparring replay`
//! recomputes it with the servers stopped; a run SIGKILLed after its first committed round and resumed gives the
//! same records as the uninterrupted one, and the servers' request logs show that no request of a committed round
//! was sent twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "spine_common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_sparring");

/// A `sparring serve` child process, killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Serves `role` of the SmolLM2 scenario on a free loopback port, logging its requests to `log`.
fn serve(role: &str, log: &Path) -> Server {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(repo().join("scenarios/smollm2-advgame.toml"))
        .args(["--role", role, "--addr", "127.0.0.1:0", "--request-log"])
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sparring serve");
    let (tx, rx) = mpsc::channel();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
    }
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("sparring serve printed no `listening on http://…` line");
    let base = base.trim_end_matches('/').to_string();
    Server {
        child,
        url: format!("{base}/v1"),
        log: log.to_path_buf(),
    }
}

/// The test scenario: a scripted attacker against the served defender, judged by the served judge.
fn scenario(shared: &Path, defender: &str, judge: &str) -> String {
    let d = shared.join("data/advgame");
    let p = |s: &str| d.join(s).display().to_string().replace('\\', "/");
    format!(
        r#"schema = 1

[game]
name = "endpoint-game"
seed = 5
rounds = 3
schedule = "frozen-defender"
seeds_per_round = 2
attacks_per_seed = 2
responses_per_attack = 2
optimistic = true

[[data.train]]
name = "harmful"
path = "{h}"
format = "advgame"
limit = 20

[[data.train]]
name = "benign"
path = "{b}"
format = "advgame"
limit = 20

[payoffs]
mode = "pairwise"
faithfulness_gate = true

[attacker]
kind = "scripted-template"

[defender]
kind = "openai-chat"
base_url = "{defender}"
model = "defender"
temperature = 0.7
max_tokens = 24
max_concurrency = 4
timeout_s = 120.0

[judge]
kind = "openai-judge"
base_url = "{judge}"
model = "judge"
read = "logits"
pairwise = "separate"
prefill = true
max_concurrency = 4
timeout_s = 120.0

[replay]
fsync = true
"#,
        h = p("valid_vanilla_harmful_256.jsonl"),
        b = p("valid_vanilla_benign_256.jsonl"),
    )
}

fn sparring(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run sparring")
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rounds committed so far in a run directory's log.
fn committed(run: &Path) -> u32 {
    std::fs::read_to_string(run.join("episodes.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "commit")
        .filter_map(|v| v["round"].as_u64())
        .max()
        .unwrap_or(0) as u32
}

/// Requests per request key of rounds `1..=upto` in a server's request log (`x-sparring-request` keys look like
/// `r<round>/…`).
fn requests(log: &Path, upto: u32) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("request log line is JSON");
        let Some(key) = v["request"].as_str() else {
            continue;
        };
        let round = key
            .strip_prefix('r')
            .and_then(|k| k.split('/').next())
            .and_then(|r| r.parse::<u32>().ok());
        if round.is_some_and(|r| r <= upto) {
            *out.entry(key.to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_game_against_served_players_completes_replays_offline_and_resumes_without_resending() {
    let what =
        "a_game_against_served_players_completes_replays_offline_and_resumes_without_resending";
    let Some(shared) = common::shared_or_skip(what) else {
        return;
    };
    if sparring_actors::testing::smollm2_or_skip(what).is_none() {
        return;
    }
    let dir = common::tmpdir("endpoint-game");

    // The uninterrupted run.
    let whole = dir.join("whole");
    let (d1, j1) = (
        serve("defender", &dir.join("d1.jsonl")),
        serve("judge", &dir.join("j1.jsonl")),
    );
    let file = dir.join("game.toml");
    std::fs::write(&file, scenario(&shared, &d1.url, &j1.url)).unwrap();
    ok(&sparring(&["validate", file.to_str().unwrap()]), "validate");
    ok(
        &sparring(&[
            "run",
            file.to_str().unwrap(),
            "--out",
            whole.to_str().unwrap(),
            "--quiet",
        ]),
        "run",
    );
    let (d1_log, j1_log) = (d1.log.clone(), j1.log.clone());
    drop((d1, j1));

    // Replay with the servers stopped: everything it needs is in the log.
    ok(
        &sparring(&["replay", whole.to_str().unwrap()]),
        "replay with the servers stopped",
    );

    // The same run on fresh servers (same addresses are not needed: the scenario is rewritten), killed after its
    // first committed round, then resumed.
    let (d2, j2) = (
        serve("defender", &dir.join("d2.jsonl")),
        serve("judge", &dir.join("j2.jsonl")),
    );
    let file2 = dir.join("game2.toml");
    std::fs::write(&file2, scenario(&shared, &d2.url, &j2.url)).unwrap();
    let cut = dir.join("cut");
    let mut run = Command::new(BIN)
        .args([
            "run",
            file2.to_str().unwrap(),
            "--out",
            cut.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while committed(&cut) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "round 1 never committed"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    let at_kill = committed(&cut);
    assert!(at_kill < 3, "the run finished before it was killed");
    ok(
        &sparring(&["run", "--resume", cut.to_str().unwrap(), "--quiet"]),
        "resume",
    );
    common::same_records(&whole, &cut);

    // No request of a committed round was sent again: the killed-and-resumed run sent each of them exactly as
    // often as the uninterrupted one.
    for (name, a, b) in [("defender", &d1_log, &d2.log), ("judge", &j1_log, &j2.log)] {
        let (x, y) = (requests(a, at_kill), requests(b, at_kill));
        assert!(!x.is_empty(), "the {name} server logged no request keys");
        assert_eq!(
            x, y,
            "{name}: requests of rounds 1..={at_kill} differ after the resume"
        );
    }
}
