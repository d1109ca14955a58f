//! The OpenAI-compatible client (`openai::client::Endpoint`) against a fault server on loopback that speaks raw
//! HTTP/1.1 and misbehaves on purpose (429 with `Retry-After`, 500, a hang, truncated JSON, an HTML page, a
//! dropped connection), its concurrency and rate limits, the API key's handling, and the kind `openai-chat`
//! generating against a fake server. Timing assertions are lower bounds only.

use serde_json::{Value, json};
use sparring_actors::openai::chat::{KIND, OpenAiChat, OpenAiChatParams};
use sparring_actors::openai::client::{Endpoint, REQUEST_HEADER};
use sparring_actors::openai::params::EndpointParams;
use sparring_actors::openai::wire::Message;
use sparring_engine::registry::BuildContext;
use sparring_engine::{Category, GenRequest, Policy, Role, RoleError, Seed};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    headers: BTreeMap<String, String>,
    body: Value,
    at: Instant,
}

/// What the server does with request number `n` (0-based).
enum Action {
    Reply {
        status: u16,
        ctype: &'static str,
        extra: &'static str,
        body: String,
    },
    /// Answer after a pause.
    Slow(Duration, Box<Action>),
    /// Never answer (until the client gives up).
    Hang,
    /// Close the connection without a word.
    Drop,
}

type Script = dyn Fn(usize, &Seen) -> Action + Send + Sync;

/// A loopback server that answers each connection's one request with its script's action.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_open: Arc<AtomicUsize>,
}

impl Server {
    fn start(script: impl Fn(usize, &Seen) -> Action + Send + Sync + 'static) -> Server {
        let script: Arc<Script> = Arc::new(script);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s2, m2) = (seen.clone(), max_open.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let open = Arc::new(AtomicUsize::new(0));
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        return;
                    };
                    let (script, seen, open, max_open) =
                        (script.clone(), s2.clone(), open.clone(), m2.clone());
                    tokio::spawn(async move {
                        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                        max_open.fetch_max(now, Ordering::SeqCst);
                        serve(sock, &*script, &seen).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        });
        let addr = rx.recv().unwrap();
        Server {
            url: format!("http://{addr}/v1"),
            seen,
            max_open,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut sock: TcpStream, script: &Script, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    let req = Seen {
        headers,
        body,
        at: Instant::now(),
    };
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(req.clone());
        s.len() - 1
    };
    let mut action = script(n, &req);
    loop {
        match action {
            Action::Slow(d, next) => {
                tokio::time::sleep(d).await;
                action = *next;
            }
            Action::Hang => {
                let _ = sock.read(&mut chunk).await; // until the client hangs up
                return;
            }
            Action::Drop => return,
            Action::Reply {
                status,
                ctype,
                extra,
                body,
            } => {
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\
                     {extra}\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
                return;
            }
        }
    }
}

fn completion(text: &str, finish: &str) -> String {
    json!({"id": "c", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    .to_string()
}

fn ok(text: &str) -> Action {
    Action::Reply {
        status: 200,
        ctype: "application/json",
        extra: "",
        body: completion(text, "stop"),
    }
}

fn params(url: &str, more: &str) -> EndpointParams {
    let base = format!(
        "model = 'm'\nbase_url = '{url}'\ntimeout_s = 5.0\nbackoff_s = 0.01\nretry_cap_s = 2.0"
    );
    let mut t: toml::Table = toml::from_str(&base).unwrap();
    t.extend(toml::from_str::<toml::Table>(more).unwrap());
    let p: EndpointParams = t.try_into().unwrap();
    p.validate().unwrap();
    p
}

fn one(ep: &Endpoint, text: &str) -> Result<String, RoleError> {
    let body = ep.body(vec![Message::new("user", text)], "");
    let r = ep.complete_all(vec![body])?;
    Ok(r[0].choices[0].message.content.clone().unwrap_or_default())
}

/// A fault the server commits `times` times before answering.
fn fault(kind: &str) -> Action {
    let reply = |status, ctype, extra, body: &str| Action::Reply {
        status,
        ctype,
        extra,
        body: body.into(),
    };
    match kind {
        "429" => reply(
            429,
            "application/json",
            "retry-after: 1\r\n",
            "{\"error\": \"slow down\"}\n",
        ),
        "500" => reply(
            500,
            "text/plain",
            "",
            "boom: the model fell over\nsecond line",
        ),
        "hang" => Action::Hang,
        "truncated" => reply(
            200,
            "application/json",
            "",
            "{\"choices\": [{\"message\": {\"content\": \"hi",
        ),
        "html" => reply(
            200,
            "text/html",
            "",
            "<html><body>Bad gateway</body></html>",
        ),
        "drop" => Action::Drop,
        _ => unreachable!(),
    }
}

#[test]
fn each_fault_is_retried_and_reported_by_url_and_cause() {
    let cases = [
        ("429", "429", "slow down"),
        ("500", "500", "boom: the model fell over"),
        ("hang", "timeout_s", "timeout_s"),
        ("truncated", "no chat completion", "{\"choices\""),
        ("html", "text/html", "<html><body>Bad gateway"),
        ("drop", "error sending request", ""),
    ];
    for (kind, cause, line) in cases {
        let server = Server::start(move |n, _| if n < 2 { fault(kind) } else { ok("fine") });
        let more = "timeout_s = 0.3\nmax_retries = 2\nretry_cap_s = 0.05";
        let ep = Endpoint::new(&params(&server.url, more)).unwrap();
        assert_eq!(one(&ep, "hi").unwrap(), "fine", "{kind}");
        assert_eq!(server.seen().len(), 3, "{kind}");

        let server = Server::start(move |n, _| if n < 2 { fault(kind) } else { ok("fine") });
        let more = "timeout_s = 0.3\nmax_retries = 1\nretry_cap_s = 0.05";
        let ep = Endpoint::new(&params(&server.url, more)).unwrap();
        let e = one(&ep, "hi").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RoleError::Failed(_)), "{kind}: {e:?}");
        assert!(
            msg.contains(&format!("{}/chat/completions", server.url)),
            "{kind}: {msg}"
        );
        assert!(msg.contains(cause) && msg.contains(line), "{kind}: {msg}");
        assert!(msg.contains("after 2 attempts"), "{kind}: {msg}");
        eprintln!("{kind}: {msg}");
        assert!(!msg.contains("second line"), "{kind}: {msg}");
    }
}

#[test]
fn retry_after_is_honoured() {
    let server = Server::start(|n, _| if n < 1 { fault("429") } else { ok("later") });
    let ep = Endpoint::new(&params(&server.url, "max_retries = 1")).unwrap();
    let t = Instant::now();
    assert_eq!(one(&ep, "hi").unwrap(), "later");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_client_error_is_not_retried() {
    let server = Server::start(|_, _| Action::Reply {
        status: 404,
        ctype: "application/json",
        extra: "",
        body: "{\"error\": {\"message\": \"no model m\"}}".into(),
    });
    let ep = Endpoint::new(&params(&server.url, "max_retries = 3")).unwrap();
    let msg = one(&ep, "hi").unwrap_err().to_string();
    assert!(msg.contains("404") && msg.contains("no model m"), "{msg}");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn max_concurrency_bounds_the_requests_in_flight() {
    let server = Server::start(|_, _| Action::Slow(Duration::from_millis(300), Box::new(ok("x"))));
    let ep = Endpoint::new(&params(&server.url, "max_concurrency = 3")).unwrap();
    let bodies = (0..9)
        .map(|i| ep.body(vec![Message::new("user", format!("q{i}"))], ""))
        .collect();
    let out = ep.complete_all(bodies).unwrap();
    assert_eq!(out.len(), 9);
    let max = server.max_open.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "{max} in flight");
}

#[test]
fn requests_per_minute_spaces_the_requests() {
    let server = Server::start(|_, _| ok("x"));
    let ep = Endpoint::new(&params(&server.url, "requests_per_minute = 300.0")).unwrap();
    let bodies = (0..3)
        .map(|_| ep.body(vec![Message::new("user", "q")], ""))
        .collect();
    ep.complete_all(bodies).unwrap();
    let mut at: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    at.sort();
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(180),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[test]
fn the_api_key_is_sent_as_a_bearer_token_and_shown_nowhere() {
    const VAR: &str = "SPARRING_TEST_OPENAI_CLIENT_KEY";
    const KEY: &str = "sk-test-0123456789-secret";
    // SAFETY: this variable is set once, by this test only, before any client of it exists; no other code reads it.
    unsafe { std::env::set_var(VAR, KEY) };
    let server = Server::start(|n, _| match n {
        0 => ok("authorized"),
        _ => Action::Reply {
            status: 500,
            ctype: "text/plain",
            extra: "",
            body: format!("invalid key {KEY}"),
        },
    });
    let ep = Endpoint::new(&params(
        &server.url,
        &format!("api_key_env = '{VAR}'\nmax_retries = 0"),
    ))
    .unwrap();
    assert_eq!(one(&ep, "hi").unwrap(), "authorized");
    assert_eq!(
        server.seen()[0].headers["authorization"],
        format!("Bearer {KEY}")
    );
    let e = one(&ep, "hi").unwrap_err();
    for text in [e.to_string(), format!("{e:?}"), format!("{ep:?}")] {
        assert!(!text.contains(KEY), "{text}");
    }
    assert!(e.to_string().contains("invalid key ***"), "{e}");
}

#[test]
fn a_missing_key_variable_is_a_config_error_naming_it() {
    let p = params(
        "http://127.0.0.1:9/v1",
        "api_key_env = 'SPARRING_TEST_SURELY_UNSET_VAR'",
    );
    let e = Endpoint::new(&p).unwrap_err();
    assert!(matches!(e, RoleError::Config { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("SPARRING_TEST_SURELY_UNSET_VAR") && msg.contains("not set"),
        "{msg}"
    );
}

fn chat_table(url: &str, more: &str) -> toml::Table {
    toml::from_str(&format!(
        "model = 'm'\nbase_url = '{url}'\ntimeout_s = 5.0\n{more}"
    ))
    .unwrap()
}

#[test]
fn openai_chat_refuses_a_role_that_learns() {
    let reg = sparring_actors::registry();
    assert!(reg.kinds_for(Role::Attacker).contains(&KIND.to_string()));
    for role in [Role::Attacker, Role::Defender] {
        let mut ctx = BuildContext::detached(role);
        ctx.learns = true;
        let t = chat_table("http://127.0.0.1:9/v1", "");
        for e in [
            reg.check(role, KIND, &t, &ctx).unwrap_err(),
            reg.build_policy(KIND, &t, &ctx).err().unwrap(),
        ] {
            let msg = e.to_string();
            assert!(
                matches!(&e, RoleError::Config { key: Some(k), .. } if k == "kind"),
                "{e:?}"
            );
            assert!(
                msg.contains(role.as_str()) && msg.contains(KIND) && msg.contains("schedule"),
                "{msg}"
            );
        }
        ctx.learns = false;
        reg.check(role, KIND, &t, &ctx).unwrap();
    }
}

fn request(key: &str, role: Role, input: &str, n: usize) -> GenRequest {
    GenRequest {
        key: key.into(),
        role,
        seed: Seed {
            id: "s:1".into(),
            set: "s".into(),
            prompt: "How do I pick a lock?".into(),
            category: Category::Harmful,
            topic: None,
        },
        input: input.into(),
        n,
        rng_seed: 42,
        history: Vec::new(),
    }
}

/// Answers by the request: the attacker's prompts (well-formed for sample seeds it has seen first, malformed for
/// the third sample), the defender's answers.
fn player_server() -> Server {
    Server::start(|_, r| {
        let msgs = r.body["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        let continued = r.body["continue_final_message"] == json!(true);
        let text = if continued {
            ("Tell me how locks work.\n".to_string(), "stop")
        } else if last.contains("<query>") {
            let sample = r.headers.get(REQUEST_HEADER).cloned().unwrap_or_default();
            match sample.rsplit('#').next() {
                Some("2") => ("<prompt>never closed".to_string(), "length"),
                _ if last.contains("<think>") => (
                    "<think>t</think>\n<prompt>Explain locks.</prompt>".into(),
                    "stop",
                ),
                _ => ("<prompt>Explain locks.".to_string(), "stop"),
            }
        } else {
            (format!("  Answer to: {last}\n"), "stop")
        };
        Action::Reply {
            status: 200,
            ctype: "application/json; charset=utf-8",
            extra: "",
            body: completion(&text.0, text.1),
        }
    })
}

fn player(url: &str, role: Role, more: &str) -> OpenAiChat {
    let ctx = BuildContext::detached(role);
    OpenAiChat::new(
        OpenAiChatParams::parse(&chat_table(url, more), &ctx).unwrap(),
        role,
    )
    .unwrap()
}

#[test]
fn openai_chat_generates_parsed_attacks_and_answers() {
    let server = player_server();
    let mut attacker = player(&server.url, Role::Attacker, "");
    let out = attacker
        .generate(&[request(
            "r1/s:1",
            Role::Attacker,
            "How do I pick a lock?",
            3,
        )])
        .unwrap();
    let parsed: Vec<Option<&str>> = out[0].iter().map(|g| g.parsed.as_deref()).collect();
    assert_eq!(
        parsed,
        [Some("Explain locks."), Some("Explain locks."), None]
    );
    assert_eq!(out[0][0].tokens, 7);
    let seen = server.seen();
    let mut keys: Vec<&str> = seen
        .iter()
        .map(|s| s.headers[REQUEST_HEADER].as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["r1/s:1#0", "r1/s:1#1", "r1/s:1#2"]);
    let b = &seen[0].body;
    assert_eq!(
        (
            b["temperature"].clone(),
            b["top_p"].clone(),
            b["max_tokens"].clone()
        ),
        (json!(0.7), json!(0.95), json!(256))
    );
    let seeds: std::collections::BTreeSet<u64> = seen
        .iter()
        .filter_map(|s| s.body["seed"].as_u64())
        .collect();
    assert_eq!(seeds.len(), 3, "one seed per sample");

    // The direct format, unprefilled: asked to write <prompt>…</prompt>, stopped at </prompt>, closed again.
    let server = player_server();
    let mut direct = player(&server.url, Role::Attacker, "think = false\nseed = false");
    let out = direct
        .generate(&[request(
            "r2/s:1",
            Role::Attacker,
            "How do I pick a lock?",
            1,
        )])
        .unwrap();
    assert_eq!(out[0][0].text, "<prompt>Explain locks.</prompt>");
    assert_eq!(out[0][0].parsed.as_deref(), Some("Explain locks."));
    let b = &server.seen()[0].body;
    assert_eq!(b["stop"], json!(["</prompt>"]));
    assert!(
        b.get("seed").is_none() && b.get("continue_final_message").is_none(),
        "{b}"
    );

    // Prefilled: the turn continues `<prompt>` and stops at the paragraph's end too.
    let server = player_server();
    let mut pre = player(
        &server.url,
        Role::Attacker,
        "think = false\nprefill = true\ntemperature = 0.0",
    );
    let out = pre
        .generate(&[request(
            "r3/s:1",
            Role::Attacker,
            "How do I pick a lock?",
            1,
        )])
        .unwrap();
    assert_eq!(out[0][0].text, "<prompt>Tell me how locks work.</prompt>");
    let b = &server.seen()[0].body;
    assert_eq!(
        b["messages"].as_array().unwrap().last().unwrap()["content"],
        json!("<prompt>")
    );
    assert_eq!(
        (b["add_generation_prompt"].clone(), b["temperature"].clone()),
        (json!(false), json!(0.0))
    );
    assert_eq!(b["stop"], json!(["</prompt>", "\n\n"]));

    let server = player_server();
    let mut defender = player(
        &server.url,
        Role::Defender,
        "extra = { repetition_penalty = 1.1 }",
    );
    let reqs = [
        request("r1/s:1/a0", Role::Defender, "Explain locks.", 2),
        request("r1/s:1/a1", Role::Defender, "Other.", 1),
    ];
    let out = defender.generate(&reqs).unwrap();
    assert_eq!(out[0].len(), 2);
    assert_eq!(
        out[0][0].parsed.as_deref(),
        Some("Answer to: Explain locks.")
    );
    assert_eq!(out[1][0].parsed.as_deref(), Some("Answer to: Other."));
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.body["repetition_penalty"] == json!(1.1))
    );
    assert!(matches!(
        defender.learn(&[]),
        Err(RoleError::Unsupported(_))
    ));
}
