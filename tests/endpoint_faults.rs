//! A game whose defender is `openai-chat`, played against a fake OpenAI-compatible server in this test (loopback)
//! that misbehaves: 429 with `Retry-After`, 500, a hang past the timeout, truncated JSON, a wrong content type, a
//! dropped connection. With retries the run completes with records identical to a fault-free run; when the server
//! stays down the run stops cleanly, naming the endpoint, the status and the body's first line, and `--resume`
//! against a healthy server completes it with nothing committed lost.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod spine_common;
use spine_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sparring");

/// How the fake server behaves.
#[derive(Default)]
struct Plan {
    /// Every `faulty`-th request misbehaves (0: never), cycling through the fault kinds.
    faulty: usize,
    /// After this many requests the server answers 503 to everything (0: never; set it to 0 to bring it back).
    down_after: AtomicUsize,
    served: AtomicUsize,
}

/// A deterministic answer: the same (prompt, seed) always gets the same text.
fn answer(prompt: &str, seed: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in prompt.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    match h % 3 {
        0 => "I'm sorry, but I can't help with that.".into(),
        1 => format!("Sure. Here is how, step by step ({}).", h % 97),
        _ => format!("Here is a detailed answer: first, {}.", h % 89),
    }
}

fn read_request(s: &mut TcpStream) -> Option<serde_json::Value> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, extra: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

fn handle(mut s: TcpStream, plan: &Plan) {
    let Some(req) = read_request(&mut s) else {
        return;
    };
    let n = plan.served.fetch_add(1, Ordering::SeqCst) + 1;
    let down_after = plan.down_after.load(Ordering::SeqCst);
    if down_after > 0 && n > down_after {
        return respond(
            &mut s,
            "503 Service Unavailable",
            "text/plain",
            "",
            "overloaded: try later\nsecond line",
        );
    }
    if plan.faulty > 0 && n.is_multiple_of(plan.faulty) {
        match (n / plan.faulty) % 6 {
            0 => {
                return respond(
                    &mut s,
                    "429 Too Many Requests",
                    "application/json",
                    "retry-after: 1\r\n",
                    "{}",
                );
            }
            1 => {
                return respond(
                    &mut s,
                    "500 Internal Server Error",
                    "text/plain",
                    "",
                    "boom",
                );
            }
            2 => {
                std::thread::sleep(Duration::from_millis(2500));
                return;
            }
            3 => {
                return respond(
                    &mut s,
                    "200 OK",
                    "application/json",
                    "",
                    "{\"choices\": [{\"message\": {\"cont",
                );
            }
            4 => {
                return respond(
                    &mut s,
                    "200 OK",
                    "text/html",
                    "",
                    "<html>a proxy's page</html>",
                );
            }
            _ => return, // drop the connection without a word
        }
    }
    let prompt = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let text = answer(&prompt, req["seed"].as_u64().unwrap_or(0));
    let body = serde_json::json!({
        "id": format!("fake-{n}"), "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}
    });
    respond(&mut s, "200 OK", "application/json", "", &body.to_string());
}

/// Starts the fake server; returns its base URL (`http://127.0.0.1:PORT/v1`).
fn fake(plan: Arc<Plan>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            let plan = plan.clone();
            std::thread::spawn(move || handle(s, &plan));
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

fn game(shared: &Path, url: &str, retries: u32) -> String {
    let remote = format!(
        "[defender]\nkind = \"openai-chat\"\nbase_url = \"{url}\"\nmodel = \"fake\"\nmax_concurrency = 4\n\
         timeout_s = 0.5\nmax_retries = {retries}\n"
    );
    scenario(shared, 3, "")
        .replace("[game]\n", "[game]\nschedule = \"frozen-defender\"\n")
        .replace(
            "[defender]\nkind = \"scripted-rules\"\nflip_rate = 0.2\n",
            &remote,
        )
        .replace("[eval]\nevery = 2\n", "[eval]\nevery = 0\n")
}

fn run_dir(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn a_remote_defender_survives_server_faults_or_stops_cleanly_and_resumes() {
    let what = "a_remote_defender_survives_server_faults_or_stops_cleanly_and_resumes";
    let Some(shared) = shared_or_skip(what) else {
        return;
    };
    let dir = tmpdir("endpoint-faults");
    let play = |name: &str, plan: Plan, retries: u32, extra: &[&str]| {
        let url = fake(Arc::new(plan));
        let text = game(&shared, &url, retries);
        let f = dir.join(format!("{name}.toml"));
        std::fs::write(&f, text).unwrap();
        let out = dir.join(name);
        let mut args = vec![
            "run",
            f.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        (run_dir(&args), out, url)
    };
    // The servers' URLs (fresh ports) are part of the scenario, hence of the run id: `same_records` masks it.
    let same = same_records;
    let (o, clean, _) = play("clean", Plan::default(), 4, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Every 5th request misbehaves (each kind of fault several times); retries absorb them.
    let (o, faulty, _) = play(
        "faulty",
        Plan {
            faulty: 5,
            ..Plan::default()
        },
        4,
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(&clean, &faulty);

    // The server goes down for good in the second round: the run stops with an error naming the endpoint, the
    // status and the first line of the body, keeping its committed rounds.
    let plan = Arc::new(Plan {
        down_after: AtomicUsize::new(45),
        ..Plan::default()
    });
    let url = fake(plan.clone());
    let f = dir.join("down.toml");
    std::fs::write(&f, game(&shared, &url, 1)).unwrap();
    let down = dir.join("down");
    let o = run_dir(&[
        "run",
        f.to_str().unwrap(),
        "--out",
        down.to_str().unwrap(),
        "--quiet",
        "--set",
        "game.max_restarts=1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "the run should stop while the server is down"
    );
    assert!(err.contains(&format!("{url}/chat/completions")), "{err}");
    assert!(err.contains("503"), "{err}");
    assert!(err.contains("overloaded: try later"), "{err}");
    assert!(!err.contains("second line"), "{err}");
    let committed = std::fs::read_to_string(down.join("episodes.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"commit\""))
        .count();
    assert!(
        committed >= 1,
        "round 1 should have been committed before the server went down"
    );

    // The server is back: the run resumes where it stopped and ends as the clean one did.
    plan.down_after.store(0, Ordering::SeqCst);
    let o = run_dir(&["run", "--resume", down.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(&clean, &down);
}
