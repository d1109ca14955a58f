//! `sparring serve` over HTTP: the built binary serves scenarios/smollm2-advgame.toml's defender on 127.0.0.1:0 and
//! a small blocking HTTP/1.1 client (raw TcpStream: malformed and huge bodies too) checks completions, `n`,
//! streaming (SSE ending in `data: [DONE]`, deltas adding up to the unstreamed text at temperature 0), log-probs,
//! batched answers equal to unbatched ones, prefill through `continue_final_message`, the errors (400, 401, 404,
//! 413, 429 with Retry-After), the request log, and SIGTERM with a request in flight (it completes, exit 0); and the
//! official OpenAI Python SDK against it (tests/openai_sdk.py) when `openai` is importable. Skips without the model.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(what: &str) -> Option<PathBuf> {
    sparring_actors::testing::smollm2_or_skip(what)
}

/// A running `sparring serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(model: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparring"));
        cmd.current_dir(root())
            .args([
                "serve",
                "scenarios/smollm2-advgame.toml",
                "--role",
                "defender",
                "--addr",
                "127.0.0.1:0",
                "--set",
            ])
            .arg(format!("defender.model={:?}", model.display().to_string()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning sparring serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(a.trim().to_string());
                }
                log2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(a) => a.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("no `listening on` line; stderr:\n{}", log.lock().unwrap());
            }
        };
        Server { child, addr, log }
    }

    fn post(&self, body: &Value) -> Response {
        self.raw(
            "POST",
            "/v1/chat/completions",
            &[],
            body.to_string().as_bytes(),
        )
    }

    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.addr, method, path, headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON ({}): {}", self.status, self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self, choice: usize) -> String {
        self.json()["choices"][choice]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no content: {}", self.body))
            .to_string()
    }
    /// The `data:` payloads of an event stream.
    fn events(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`); a chunked body is decoded.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A refused huge body may be cut short by the server: keep whatever answer it sent.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn greedy(text: &str, max_tokens: u64) -> Value {
    json!({"model": "sparring-defender", "messages": user(text), "temperature": 0, "max_tokens": max_tokens})
}

const PROMPTS: [&str; 4] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How do I boil an egg?",
    "Name three primary colors.",
];

#[test]
fn serve_completions_streaming_logprobs_batching_errors() {
    let Some(m) = model("serve_completions_streaming_logprobs_batching_errors") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("sparring-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("requests.jsonl");
    let _ = std::fs::remove_file(&log);
    let log_s = log.display().to_string();
    let s = Server::start(
        &m,
        &["--batch-window-ms", "150", "--request-log", &log_s],
        &[],
    );

    // Health and the model list.
    assert_eq!(s.raw("GET", "/health", &[], b"").status, 200);
    let models = s.raw("GET", "/v1/models", &[], b"").json();
    assert_eq!(models["data"][0]["id"], "sparring-defender");

    // A completion.
    let r = s.raw(
        "POST",
        "/v1/chat/completions",
        &[("x-sparring-request", "first")],
        greedy(PROMPTS[0], 16).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(!r.text(0).is_empty());
    let fr = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(fr == "stop" || fr == "length");
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    let ct = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&ct), "{u}");
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + ct)
    );
    let unbatched_first = r.text(0);

    // n = 2 (sampled, seeded): two choices; the same seed gives the same pair.
    let body = json!({"messages": user(PROMPTS[1]), "n": 2, "temperature": 0.9, "seed": 11, "max_tokens": 12});
    let a = s.post(&body);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["choices"].as_array().unwrap().len(), 2);
    assert_eq!(a.json()["choices"][1]["index"], 1);
    let b = s.post(&body);
    assert_eq!((a.text(0), a.text(1)), (b.text(0), b.text(1)));

    // Streaming: chunks, finish_reason, the usage chunk, [DONE]; the deltas make the unstreamed text.
    let mut body = greedy(PROMPTS[0], 16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = s.post(&body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let ev = r.events();
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{}", r.body);
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, unbatched_first);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string())
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(last["usage"]["completion_tokens"], json!(ct));

    // Log-probs: one entry per token, top_logprobs sorted, the chosen token among them at temperature 0.
    let mut body = greedy(PROMPTS[3], 8);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let v = s.post(&body).json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    for t in content {
        let lp = t["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        assert_eq!(
            top[0]["token"], t["token"],
            "greedy picks the most likely token"
        );
        assert!((top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-6);
    }

    // Batched vs unbatched: concurrent requests (one model call) answer as one by one, at temperature 0, and a
    // seeded sampled request does not depend on its batch.
    let mut bodies: Vec<Value> = PROMPTS.iter().map(|p| greedy(p, 20)).collect();
    bodies.push(
        json!({"messages": user(PROMPTS[2]), "temperature": 0.8, "seed": 5, "max_tokens": 20}),
    );
    let alone: Vec<String> = bodies.iter().map(|b| s.post(b).text(0)).collect();
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = bodies
            .iter()
            .map(|b| sc.spawn(|| s.post(b).text(0)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);

    // Prefill: the final assistant message is continued, and only the continuation comes back.
    let body = json!({"messages": [{"role": "user", "content": PROMPTS[0]},
                                   {"role": "assistant", "content": "The capital of France is"}],
                      "continue_final_message": true, "add_generation_prompt": false,
                      "temperature": 0, "max_tokens": 6});
    let r = s.post(&body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.text(0).to_lowercase().contains("paris"),
        "{:?}",
        r.text(0)
    );
    // Stop strings cut the text before them.
    let mut body = greedy(PROMPTS[0], 16);
    body["stop"] = json!(["Paris"]);
    let r = s.post(&body);
    assert!(!r.text(0).contains("Paris"), "{}", r.text(0));

    // Errors.
    let r = s.raw("POST", "/v1/chat/completions", &[], b"{not json");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"].is_string());
    let mut body = greedy(PROMPTS[0], 4);
    body["temperature"] = json!(-1);
    let r = s.post(&body);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "temperature");
    body["temperature"] = json!("hot");
    assert_eq!(s.post(&body).json()["error"]["param"], "temperature");
    let mut body = greedy(PROMPTS[0], 4);
    body["model"] = json!("gpt-4");
    let r = s.post(&body);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    body["model"] = json!("defender");
    assert_eq!(s.post(&body).status, 200);
    let huge = vec![b' '; (4 << 20) + 4096];
    let r = s.raw("POST", "/v1/chat/completions", &[], &huge);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(s.raw("GET", "/nowhere", &[], b"").status, 404);

    // The request log: one time-free line per completion, the header's value or null.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["request"], "first");
    assert_eq!(lines[0]["completion_tokens"], json!(ct));
    assert_eq!(lines[1]["request"], Value::Null);
    assert_eq!(lines[1]["n"], 2);
    assert!(lines.len() >= 15, "{}", lines.len());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_api_key() {
    let Some(m) = model("serve_api_key") else {
        return;
    };
    let s = Server::start(
        &m,
        &["--api-key-env", "SPARRING_TEST_KEY"],
        &[("SPARRING_TEST_KEY", "sesame")],
    );
    let body = greedy(PROMPTS[0], 2).to_string();
    let r = s.raw("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let wrong = [("Authorization", "Bearer sesamE")];
    assert_eq!(
        s.raw("POST", "/v1/chat/completions", &wrong, body.as_bytes())
            .status,
        401
    );
    let right = [("Authorization", "Bearer sesame")];
    assert_eq!(
        s.raw("POST", "/v1/chat/completions", &right, body.as_bytes())
            .status,
        200
    );
    assert_eq!(s.raw("GET", "/v1/models", &right, b"").status, 200);
}

#[test]
fn serve_queue_full_is_429_with_retry_after() {
    let Some(m) = model("serve_queue_full_is_429_with_retry_after") else {
        return;
    };
    let s = Server::start(&m, &["--queue", "1", "--max-batch", "1"], &[]);
    // One long request runs, one waits in the queue: the others are refused at once.
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i));
                    let r = s.post(
                        &json!({"messages": user(PROMPTS[1]), "max_tokens": 48, "temperature": 0}),
                    );
                    (r.status, r.header("retry-after").map(str::to_string))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().any(|(c, _)| *c == 200), "{statuses:?}");
    let refused: Vec<_> = statuses.iter().filter(|(c, _)| *c == 429).collect();
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(refused.iter().all(|(_, ra)| ra.is_some()), "{statuses:?}");
}

#[test]
fn serve_sigterm_finishes_the_request_in_flight_and_exits_0() {
    let Some(m) = model("serve_sigterm_finishes_the_request_in_flight_and_exits_0") else {
        return;
    };
    let mut s = Server::start(&m, &[], &[]);
    let addr = s.addr;
    let h = std::thread::spawn(move || {
        let body = json!({"messages": user(PROMPTS[1]), "max_tokens": 64, "temperature": 0});
        request(
            addr,
            "POST",
            "/v1/chat/completions",
            &[],
            body.to_string().as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let pid = s.child.id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let r = h.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.text(0).is_empty());
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{status:?}; stderr:\n{}",
        s.log.lock().unwrap()
    );
}

#[test]
fn openai_python_sdk() {
    let Some(m) = model("openai_python_sdk") else {
        return;
    };
    let have = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        // CI installs the SDK (.ci/run) and sets this: there, a missing SDK is a failure, not a skip.
        assert!(
            std::env::var_os("SPARRING_REQUIRE_OPENAI_SDK").is_none(),
            "SPARRING_REQUIRE_OPENAI_SDK is set but python3 cannot import `openai` (pip install openai)"
        );
        eprintln!(
            "SKIP openai_python_sdk: python3 with the `openai` package not found (pip install openai)"
        );
        return;
    }
    let s = Server::start(
        &m,
        &["--api-key-env", "SPARRING_TEST_KEY"],
        &[("SPARRING_TEST_KEY", "sesame")],
    );
    let out = Command::new("python3")
        .arg(root().join("tests/openai_sdk.py"))
        .arg(format!("http://{}/v1", s.addr))
        .arg("sesame")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "openai_sdk.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
