//! Actor round trips: (1) the engine path, a request from the game loop through the `Game` supervisor to a
//! worker actor, its compute thread and back (what every role call costs); (2) a plain ractor call between two
//! actors (actor→actor request/reply); (3) a remote player's round trip: one `openai-chat` defender request to an
//! OpenAI-compatible server on loopback that answers at once (what the HTTP path adds to a remote model's own
//! time). Throughput is reported by criterion as elements (calls) per second.
//! Peer: a Ray actor call takes 778 µs on this machine.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sparring_engine::Role;
use sparring_engine::actor::{Faithful, GameArgs, GameHandle, Slot, SlotSpec, WorkerSpec};
use sparring_engine::registry::BuildContext;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A number and where its successor goes.
struct Ping(u64, RpcReplyPort<u64>);
impl ractor::Message for Ping {}

/// How many pings to send, and where the elapsed time goes.
struct Run(u64, RpcReplyPort<Duration>);
impl ractor::Message for Run {}

struct Echo;
impl Actor for Echo {
    type Msg = Ping;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        Ping(x, r): Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = r.send(x + 1);
        Ok(())
    }
}

/// Calls `Echo` `n` times for each request and replies with the elapsed time.
struct Caller;
impl Actor for Caller {
    type Msg = Run;
    type State = ActorRef<Ping>;
    type Arguments = ActorRef<Ping>;
    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        a: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(a)
    }
    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        Run(n, r): Self::Msg,
        echo: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let t = Instant::now();
        for i in 0..n {
            let _ = ractor::call!(echo, |rp| Ping(i, rp))?;
        }
        let _ = r.send(t.elapsed());
        Ok(())
    }
}

/// An OpenAI-compatible server on loopback that answers every completion at once (HTTP/1.1 keep-alive, as a real
/// server); returns its base URL.
fn instant_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#;
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut b = vec![0; len];
                    if r.read_exact(&mut b).is_err() {
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    // One write: two small ones would meet Nagle's algorithm and the client's delayed ACK (40 ms).
                    if w.write_all(format!("{head}{body}").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("actors");
    g.throughput(Throughput::Elements(1));

    // (2) actor → actor call between two ractor actors.
    let caller = rt.block_on(async {
        let (echo, _) = Actor::spawn(None, Echo, ()).await.unwrap();
        let (caller, _) = Actor::spawn(None, Caller, echo).await.unwrap();
        caller
    });
    g.bench_function("actor_to_actor_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async { ractor::call!(caller, |rp| Run(iters, rp)).unwrap() })
        })
    });

    // (1) engine path: a task → the judge's queue → its compute thread → back (no supervisor hop).
    let game = rt.block_on(async {
        let mut slots = BTreeMap::new();
        let spec = WorkerSpec::Judge {
            registry: sparring_actors::registry(),
            kind: "refusal-prefix".into(),
            params: toml::Table::new(),
            ctx: BuildContext::detached(Role::Judge),
        };
        slots.insert(Slot::Judge, SlotSpec::fresh(spec));
        GameHandle::start(GameArgs {
            slots,
            max_restarts: 3,
        })
        .await
        .unwrap()
        .0
    });
    g.bench_function("game_supervised_role_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    game.call(Slot::Judge, Faithful(Vec::new())).await.unwrap();
                }
                t.elapsed()
            })
        })
    });

    // (3) a remote player's round trip: one `openai-chat` request on loopback to a server that does no work.
    let url = instant_server();
    let params: toml::Table =
        toml::from_str(&format!("base_url = \"{url}\"\nmodel = \"m\"")).unwrap();
    let mut remote = sparring_actors::openai::chat::OpenAiChat::build(
        &params,
        &BuildContext::detached(Role::Defender),
    )
    .unwrap();
    let seed = sparring_engine::Seed {
        id: Arc::from("s:0"),
        set: Arc::from("s"),
        prompt: Arc::from("How do I bake bread?"),
        category: sparring_engine::Category::Benign,
        topic: None,
    };
    let req = sparring_engine::GenRequest {
        key: "r1/s:0/a0".into(),
        role: Role::Defender,
        seed: seed.clone(),
        input: "How do I bake bread?".into(),
        n: 1,
        rng_seed: 7,
        history: Vec::new(),
    };
    g.bench_function("remote_player_round_trip", |b| {
        b.iter(|| {
            use sparring_engine::Policy;
            remote.generate(std::slice::from_ref(&req)).unwrap()
        })
    });
    g.finish();
    game.stop();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
