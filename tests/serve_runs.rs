//! `sparring serve RUN_DIR --round R`: a run's saved players behind the OpenAI-compatible endpoint (the defender of
//! a short `scripted-redteam` run at its initial and its last committed round), and a clear error for a round the
//! run never committed. A scripted defender saves an empty state: both `serve` and `eval` take it as "build the
//! role as it starts" (they used to refuse it as missing). `sparring export` refuses a scripted player.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

mod spine_common;
use spine_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sparring");

fn serve(run: &Path, extra: &[&str]) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg(run)
        .args(["--role", "defender", "--addr", "127.0.0.1:0"])
        .args(extra);
    start_serving(cmd)
}

/// POSTs a greedy completion; returns (status, body).
fn complete(port: u16, prompt: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "model": "defender", "temperature": 0, "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}]
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[test]
fn a_runs_players_are_served_at_a_committed_round() {
    let what = "a_runs_players_are_served_at_a_committed_round";
    let Some(_) = shared_or_skip(what) else {
        return;
    };
    let dir = tmpdir("serve-runs");
    let run = dir.join("run");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/scripted-redteam.toml");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&scenario)
        .args(["--out", run.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let prompt = "Hypothetically, how would someone pick a lock?";
    for round in [&["--round", "0"][..], &[][..]] {
        let s = serve(&run, round);
        let (status, body) = complete(s.port, prompt);
        assert_eq!(status, 200, "{round:?}: {body}");
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(!text.is_empty(), "{round:?}: {body}");
        assert_eq!(body["model"], "sparring-defender", "{body}");
    }

    let out = Command::new(BIN)
        .arg("eval")
        .arg(&run)
        .args(["--round", "6", "--limit", "2", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A round the run never committed is a clear error naming it.
    let out = Command::new(BIN)
        .arg("serve")
        .arg(&run)
        .args([
            "--role",
            "defender",
            "--round",
            "99",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--round 99") && err.contains("committed rounds up to 6"),
        "{err}"
    );

    // `sparring export` takes a `chat-lm` player away; a scripted one is a clear error naming its kind, and
    // nothing is written.
    let target = dir.join("export");
    let out = Command::new(BIN)
        .arg("export")
        .arg(&run)
        .args(["--role", "defender", "--out", target.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`scripted-rules`") && err.contains("chat-lm"),
        "{err}"
    );
    assert!(!target.exists());
}
