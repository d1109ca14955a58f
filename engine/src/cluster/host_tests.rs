//! The host's bookkeeping without a network: uploads and downloads in chunks, the size limit, incarnations, and
//! a request served on a role thread and decoded as the game decodes it.

use super::*;
use crate::actor::{Faithful, Request, Save};
use crate::registry::KindInfo;
use crate::roles::{Category, FaithRequest, Judge, Seed, Verdict};

/// A judge that calls every rewrite faithful and saves a state of `state` bytes.
struct Yes {
    state: usize,
}

impl Judge for Yes {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| Verdict::new(r.rewrite.clone(), Some(true)))
            .collect())
    }
    fn save(&self) -> Result<Vec<u8>, RoleError> {
        Ok((0..self.state).map(|i| i as u8).collect())
    }
}

fn host(max_transfer: u64) -> HostState {
    let mut registry = Registry::new();
    registry.add_judge(
        KindInfo {
            kind: "yes".into(),
            about: String::new(),
            roles: vec![Role::Judge],
            params: None,
            check: Arc::new(|_: &toml::Table, _: &BuildContext| Ok(())),
        },
        Arc::new(|p: &toml::Table, _: &BuildContext| {
            let state = p.get("state").and_then(|v| v.as_integer()).unwrap_or(0) as usize;
            Ok(Box::new(Yes { state }) as Box<dyn Judge>)
        }),
    );
    HostState {
        args: HostArgs {
            name: "n1".into(),
            registry,
            root: None,
            max_transfer,
        },
        roles: HashMap::new(),
        uploads: HashMap::new(),
        downloads: Arc::default(),
    }
}

/// Make `call` and wait for its reply.
fn call(h: &mut HostState, call: Call) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    h.handle_call(call, tx.into());
    let bytes = rx.blocking_recv().expect("a reply");
    wire::decode(&bytes, "a reply").expect("a reply decodes")
}

fn put(game: &str, offset: u64, total: u64, bytes: &[u8]) -> Call {
    Call::Put {
        game: game.into(),
        transfer: 7,
        offset,
        total,
        bytes: bytes.to_vec(),
    }
}

fn failure(r: Reply) -> String {
    match r {
        Reply::Failed(e) => e.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn uploads_arrive_in_order_and_within_the_limit() {
    let mut h = host(8);
    let e = failure(call(&mut h, put("g", 0, 9, &[0; 4])));
    assert!(e.contains("over this node's limit of 8 bytes"), "{e}");
    assert!(matches!(call(&mut h, put("g", 0, 8, &[1; 4])), Reply::Ack));
    let e = failure(call(&mut h, put("g", 6, 8, &[2; 2])));
    assert!(e.contains("does not follow byte 4"), "{e}");
    assert!(matches!(call(&mut h, put("g", 4, 8, &[3; 4])), Reply::Ack));
    // Another game's transfer with the same id is its own.
    assert!(
        h.take_body("other", Body::Transfer { id: 7, len: 8 })
            .is_err()
    );
    let got = h
        .take_body("g", Body::Transfer { id: 7, len: 8 })
        .expect("the upload");
    assert_eq!(got, [1, 1, 1, 1, 3, 3, 3, 3]);
    // Taken once.
    assert!(h.take_body("g", Body::Transfer { id: 7, len: 8 }).is_err());
}

#[test]
fn downloads_come_in_chunks_and_are_released_after_the_last() {
    let mut h = host(1 << 20);
    let Body::Transfer { id, len } = h.downloads.body("g", (0..10).collect(), 4) else {
        panic!("10 bytes over a chunk of 4 are a download");
    };
    assert_eq!(len, 10);
    assert!(matches!(
        h.downloads.body("g", vec![1, 2], 4),
        Body::Inline(_)
    ));
    // Another game cannot fetch it.
    let theirs = Call::Fetch {
        game: "other".into(),
        transfer: id,
        offset: 0,
        max: 4,
    };
    assert!(failure(call(&mut h, theirs)).contains("no download"));
    let mut got = Vec::new();
    while got.len() < 10 {
        let fetch = Call::Fetch {
            game: "g".into(),
            transfer: id,
            offset: got.len() as u64,
            max: 4,
        };
        match call(&mut h, fetch) {
            Reply::Chunk(c) => {
                assert!(c.len() <= 4);
                got.extend(c);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    let again = Call::Fetch {
        game: "g".into(),
        transfer: id,
        offset: 0,
        max: 4,
    };
    assert!(failure(call(&mut h, again)).contains("no download"));
}

fn open(h: &mut HostState, incarnation: u64, state: usize) -> Reply {
    call(
        h,
        Call::Open {
            game: "g/0".into(),
            incarnation,
            origin: "g".into(),
            spec: RoleSpec {
                role: Role::Judge,
                kind: "yes".into(),
                params: format!("state = {state}"),
                scenario_dir: ".".into(),
                seed: 0,
                learns: false,
                self_play: false,
                turns: 1,
            },
            restore: Body::Inline(Vec::new()),
        },
    )
}

fn serve<R: Request>(
    h: &mut HostState,
    incarnation: u64,
    request: &R,
    chunk: u64,
) -> Result<R::Answer, String> {
    serve_within(h, incarnation, request, chunk, u64::MAX)
}

fn serve_within<R: Request>(
    h: &mut HostState,
    incarnation: u64,
    request: &R,
    chunk: u64,
    limit: u64,
) -> Result<R::Answer, String> {
    let mut parts = Vec::new();
    request.encode(&mut parts)?;
    let reply = call(
        h,
        Call::Serve {
            game: "g/0".into(),
            role: Role::Judge,
            incarnation,
            parts: Body::Inline(wire::encode(&parts)?),
            chunk,
            limit,
        },
    );
    let body = match reply {
        Reply::Done(b) => b,
        Reply::Failed(e) => return Err(e.to_string()),
        other => return Err(format!("{other:?}")),
    };
    let bytes = match body {
        Body::Inline(b) => b,
        Body::Transfer { id, len } => {
            let mut out = Vec::new();
            while (out.len() as u64) < len {
                let fetch = Call::Fetch {
                    game: "g/0".into(),
                    transfer: id,
                    offset: out.len() as u64,
                    max: chunk,
                };
                match call(h, fetch) {
                    Reply::Chunk(c) => out.extend(c),
                    other => return Err(format!("{other:?}")),
                }
            }
            out
        }
    };
    let answers: Vec<serde_bytes::ByteBuf> = wire::decode(&bytes, "answers")?;
    request.decode(&mut answers.into_iter().map(serde_bytes::ByteBuf::into_vec))
}

fn faith(n: usize) -> Faithful {
    let seed = Seed {
        id: "s:1".into(),
        set: "s".into(),
        prompt: "p".into(),
        category: Category::Harmful,
        topic: None,
    };
    Faithful(
        (0..n)
            .map(|i| FaithRequest {
                key: format!("k{i}"),
                seed: seed.clone(),
                rewrite: format!("rewrite {i}"),
                rng_seed: i as u64,
                history: Vec::new(),
            })
            .collect(),
    )
}

#[test]
fn requests_are_served_on_the_role_thread_and_decode_as_in_process() {
    let mut h = host(1 << 20);
    assert!(matches!(open(&mut h, 1, 3000), Reply::Done(_)));
    // A pair of reads with an absent one: two parts, answered in order.
    let pair = (faith(2), Option::<Faithful>::None);
    let (judged, none) = serve(&mut h, 1, &pair, 1024).expect("served");
    assert!(none.is_none());
    let raws: Vec<_> = judged.verdicts.iter().map(|v| v.raw.as_str()).collect();
    assert_eq!(raws, ["rewrite 0", "rewrite 1"]);
    // A saved state larger than the chunk comes back as a download, whole.
    let saved = serve(&mut h, 1, &Save, 1024).expect("saved");
    assert_eq!(saved.state.len(), 3000);
    assert_eq!(saved.state[2999], (2999 % 256) as u8);
}

#[test]
fn a_stale_incarnation_is_neither_served_nor_closes_its_successor() {
    let mut h = host(1 << 20);
    assert!(matches!(open(&mut h, 1, 0), Reply::Done(_)));
    assert!(matches!(open(&mut h, 2, 0), Reply::Done(_)));
    let e = serve(&mut h, 1, &faith(1), 1024).expect_err("incarnation 1 was replaced");
    assert!(e.contains("no open judge incarnation 1"), "{e}");
    let close = |inc| Call::Close {
        game: "g/0".into(),
        role: Some((Role::Judge, inc)),
    };
    assert!(matches!(call(&mut h, close(1)), Reply::Ack));
    assert!(
        serve(&mut h, 2, &faith(1), 1024).is_ok(),
        "a stale close released the new incarnation"
    );
    assert!(matches!(call(&mut h, close(2)), Reply::Ack));
    assert!(serve(&mut h, 2, &faith(1), 1024).is_err());
}

#[test]
fn a_build_that_fails_says_which_node() {
    let mut h = host(1 << 20);
    let reply = call(
        &mut h,
        Call::Open {
            game: "g/0".into(),
            incarnation: 1,
            origin: "g".into(),
            spec: RoleSpec {
                role: Role::Judge,
                kind: "no-such-kind".into(),
                params: String::new(),
                scenario_dir: ".".into(),
                seed: 0,
                learns: false,
                self_play: false,
                turns: 1,
            },
            restore: Body::Inline(Vec::new()),
        },
    );
    let e = failure(reply);
    assert!(e.starts_with("on node `n1`: "), "{e}");
    assert!(e.contains("no-such-kind"), "{e}");
    // The game's session ending releases its roles.
    assert!(matches!(open(&mut h, 3, 0), Reply::Done(_)));
    h.release(|_, _, o| o.origin != "g");
    assert!(h.roles.is_empty());
}

#[test]
fn answers_over_the_limit_fail_and_a_closed_game_leaves_no_download() {
    let mut h = host(1 << 20);
    assert!(matches!(open(&mut h, 1, 5000), Reply::Done(_)));
    // Over the game's limit: refused on the node, nothing held.
    let e = serve_within(&mut h, 1, &Save, 1024, 4000).expect_err("5000 bytes over 4000");
    assert!(e.contains("over the limit of 4000 bytes"), "{e}");
    assert!(crate::actor::lock(&h.downloads.held).is_empty());
    // The role still serves.
    assert!(serve_within(&mut h, 1, &Save, 1024, 1 << 20).is_ok());
    // A download the game never fetches goes with the game: closed, or its session gone.
    for gone in ["close", "peer"] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut parts = Vec::new();
        Save.encode(&mut parts).expect("encodes");
        h.handle_call(
            Call::Serve {
                game: "g/0".into(),
                role: Role::Judge,
                incarnation: 1,
                parts: Body::Inline(wire::encode(&parts).expect("encodes")),
                chunk: 1024,
                limit: 1 << 20,
            },
            tx.into(),
        );
        let reply: Reply =
            wire::decode(&rx.blocking_recv().expect("a reply"), "a reply").expect("decodes");
        assert!(
            matches!(reply, Reply::Done(Body::Transfer { .. })),
            "{reply:?}"
        );
        assert_eq!(crate::actor::lock(&h.downloads.held).len(), 1);
        if gone == "close" {
            let close = Call::Close {
                game: "g/0".into(),
                role: None,
            };
            assert!(matches!(call(&mut h, close), Reply::Ack));
            assert!(matches!(open(&mut h, 1, 5000), Reply::Done(_)));
        } else {
            h.downloads.release(|g| g.starts_with("g/"));
        }
        assert!(crate::actor::lock(&h.downloads.held).is_empty(), "{gone}");
    }
}
