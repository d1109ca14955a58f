//! Actor round trips: (1) the engine path, a request from the game loop through the `Game` supervisor to a
//! worker actor, its compute thread and back (what every role call costs); (2) a plain ractor call between two
//! actors (actor→actor request/reply). Throughput is reported by criterion as elements (calls) per second.
//! Peer: a Ray actor call takes 778 µs on this machine.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sparring_engine::Role;
use sparring_engine::actor::{Faithful, GameArgs, GameHandle, Slot, SlotSpec, WorkerSpec};
use sparring_engine::registry::BuildContext;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Echo;
impl Actor for Echo {
    type Msg = (u64, RpcReplyPort<u64>);
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        (x, r): Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = r.send(x + 1);
        Ok(())
    }
}

/// Calls `Echo` `n` times for each request and replies with the elapsed time.
struct Caller;
impl Actor for Caller {
    type Msg = (u64, RpcReplyPort<Duration>);
    type State = ActorRef<(u64, RpcReplyPort<u64>)>;
    type Arguments = ActorRef<(u64, RpcReplyPort<u64>)>;
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
        (n, r): Self::Msg,
        echo: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let t = Instant::now();
        for i in 0..n {
            let _ = ractor::call!(echo, |rp| (i, rp))?;
        }
        let _ = r.send(t.elapsed());
        Ok(())
    }
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
            rt.block_on(async { ractor::call!(caller, |rp| (iters, rp)).unwrap() })
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
    g.finish();
    game.stop();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
