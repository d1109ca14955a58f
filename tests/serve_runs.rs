//! `sparring serve RUN_DIR --round R`: a run's saved players behind the OpenAI-compatible endpoint (the defender of
//! a short `scripted-redteam` run at its initial and its last committed round), and a clear error for a round the
//! run never committed. A scripted defender saves an empty state: both `serve` and `eval` take it as "build the
//! role as it starts" (they used to refuse it as missing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod spine_common;
use spine_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sparring");

/// A `sparring serve` child process, killed on drop.
struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(run: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(run)
        .args(["--role", "defender", "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                let _ = tx.send(Ok(port));
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    let port = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(Some(port))) => port,
        Ok(Err(stderr)) => panic!("sparring serve ended without listening:\n{stderr}"),
        other => panic!("sparring serve printed no `listening on` line: {other:?}"),
    };
    Served { child, port }
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
}
