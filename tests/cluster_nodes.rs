//! Role actors on other nodes, end to end over loopback: `sparring node` processes host the attacker, defender and
//! judge of games that `sparring run` plays, and every clustered run writes episodes.jsonl, metrics.jsonl and
//! summary.json byte-identical to the same game in one process.
//!
//! - Three nodes: `scripted-redteam` (needs ../shared) and the shortened intent flagship (chunked transfers).
//! - The defender's node SIGKILLed after round 1 is committed: the defender moves to another node
//!   (`on_node_loss = "other"`, the intent flagship: its learned state moves) or into the game (`"local"`, and
//!   then the attacker's and the judge's nodes too), and the records are unchanged; with `"fail"` the run fails
//!   naming the node. A node that hangs (SIGSTOP) is lost by its heartbeat; a node down as the game starts is
//!   replaced per `on_node_loss` too.
//! - The game SIGKILLed after round 1, then `--resume`d: on the same nodes, or on nodes killed and restarted on
//!   the same ports (`on_node_loss = "fail"`, so the resumed roles must run there).
//! - A node with another cookie fails the run quickly, naming the cookie's variable; `sparring node` without
//!   `--listen` listens on 127.0.0.1:7400.
//!
//! The scenario of the kill and resume tests is a scripted game over the intent flagship's own data (no ../shared),
//! slowed by `faults.defender.delay_ms` (outside the run id) so that a kill after round 1 surely lands mid-run.

#[path = "spine_common/mod.rs"]
mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sparring");

/// The files a clustered run must write byte for byte as the in-process run does.
const RECORDS: [&str; 3] = ["episodes.jsonl", "metrics.jsonl", "summary.json"];

/// How long anything may take before a test gives up (generous: CI is a loaded 2-core machine).
const LIMIT: Duration = Duration::from_secs(300);

/// The environment variable the tests' games and nodes read their cookie from (each test its own value, given to
/// its child processes only).
const COOKIE_VAR: &str = "SPARRING_TEST_CLUSTER_COOKIE";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cookie no other test uses.
fn cookie(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Text with its ANSI colour sequences removed (the CLI's log lines are coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (false, c) => out.push(c),
            (true, c) if c.is_ascii_alphabetic() => escape = false,
            (true, _) => {}
        }
    }
    out
}

/// Call `f` every 10 ms until it gives a value, at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process writing its stdout and stderr to files, SIGKILLed on drop.
struct Proc {
    label: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with its output in `<dir>/<label>.out` and `.err` (`label`: unique in `dir`).
    fn spawn(mut cmd: Command, dir: &Path, label: &str) -> Proc {
        let stdout = dir.join(format!("{label}.out"));
        let stderr = dir.join(format!("{label}.err"));
        let file = |p: &Path| File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {label} ({cmd:?}): {e}"));
        Proc {
            label: label.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        plain(&std::fs::read_to_string(&self.stdout).unwrap_or_default())
    }

    fn stderr(&self) -> String {
        plain(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// Everything it wrote so far, for assertion messages.
    fn log(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.label,
            self.stdout(),
            self.label,
            self.stderr()
        )
    }

    /// Its exit status, if it ended.
    fn ended(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.label))
    }

    /// SIGKILL it (if it still runs) and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait (at most `LIMIT`) until it ends.
    fn finish(mut self) -> Finished {
        let status = poll(LIMIT, || self.ended()).unwrap_or_else(|| {
            panic!(
                "{} did not end within {LIMIT:?}\n{}",
                self.label,
                self.log()
            )
        });
        Finished {
            status,
            stderr: self.stderr(),
            log: self.log(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An ended process.
struct Finished {
    status: ExitStatus,
    stderr: String,
    /// Both, labelled, for assertion messages.
    log: String,
}

/// `sparring ARGS`, with the cookie in the environment when given.
fn sparring(dir: &Path, label: &str, args: &[String], cookie: Option<&str>) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(c) = cookie {
        cmd.env(COOKIE_VAR, c);
    }
    Proc::spawn(cmd, dir, label)
}

/// `sparring ARGS` to its end, which must be a success.
fn sparring_ok(dir: &Path, label: &str, args: &[String], cookie: Option<&str>) -> Finished {
    let done = sparring(dir, label, args, cookie).finish();
    assert!(
        done.status.success(),
        "`sparring {}` failed ({})\n{}",
        args.join(" "),
        done.status,
        done.log
    );
    done
}

/// The arguments of `sparring run FILE --out RUN -q --set S...`.
fn run_args(file: &Path, run: &Path, sets: &[String]) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        file.display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "-q".into(),
    ];
    for s in sets {
        a.extend(["--set".to_string(), s.clone()]);
    }
    a
}

/// The arguments of `sparring run --resume RUN -q --set S...`.
fn resume_args(run: &Path, sets: &[&str]) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        "--resume".into(),
        run.display().to_string(),
        "-q".into(),
    ];
    for s in sets {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    a
}

/// A `sparring node` process.
struct Node {
    name: String,
    /// Where it listens, as it printed.
    addr: String,
    proc: Proc,
}

impl Node {
    /// Start node `name` listening on `listen` (port 0: a free port) with `cookie`, and wait for its
    /// `node NAME listening on IP:PORT` line.
    fn start(dir: &Path, label: &str, name: &str, listen: &str, cookie: &str) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--listen", listen, "--name", name, "--cookie-env"])
            .arg(COOKIE_VAR)
            .env(COOKIE_VAR, cookie);
        let mut proc = Proc::spawn(cmd, dir, label);
        let prefix = format!("node {name} listening on ");
        let addr = poll(LIMIT, || {
            if let Some(l) = proc.stdout().lines().find(|l| l.starts_with(&prefix)) {
                return Some(Ok(l[prefix.len()..].trim().to_string()));
            }
            proc.ended().map(Err)
        });
        let addr = match addr {
            Some(Ok(a)) => a,
            Some(Err(status)) => panic!(
                "node {name} ended ({status}) before it listened\n{}",
                proc.log()
            ),
            None => panic!(
                "node {name} printed no `{prefix}…` line within {LIMIT:?}\n{}",
                proc.log()
            ),
        };
        assert_eq!(
            proc.stdout().lines().count(),
            1,
            "node {name} printed more than its one line\n{}",
            proc.log()
        );
        if !listen.ends_with(":0") {
            assert_eq!(addr, listen, "node {name}\n{}", proc.log());
        }
        Node {
            name: name.to_string(),
            addr,
            proc,
        }
    }
}

/// Three nodes `a`, `b`, `c` on free loopback ports sharing one cookie.
struct Cluster {
    dir: PathBuf,
    cookie: String,
    nodes: Vec<Node>,
    /// Nodes started so far (their log files' labels).
    started: usize,
}

impl Cluster {
    fn start(dir: &Path, test: &str) -> Cluster {
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            cookie: cookie(test),
            nodes: Vec::new(),
            started: 0,
        };
        for name in ["a", "b", "c"] {
            let n = c.start_node(name, "127.0.0.1:0");
            c.nodes.push(n);
        }
        c
    }

    fn start_node(&mut self, name: &str, listen: &str) -> Node {
        self.started += 1;
        let label = format!("node-{name}-{}", self.started);
        Node::start(&self.dir, &label, name, listen, &self.cookie)
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// SIGKILL every node, then start each again on its address under its name.
    fn restart_all(&mut self) {
        let old: Vec<Node> = std::mem::take(&mut self.nodes);
        let at: Vec<(String, String)> = old
            .iter()
            .map(|n| (n.name.clone(), n.addr.clone()))
            .collect();
        drop(old);
        for (name, addr) in at {
            let n = self.start_node(&name, &addr);
            self.nodes.push(n);
        }
    }

    /// The overrides that put the attacker on `a`, the defender on `b` and the judge on `c`, with `on_node_loss`
    /// and `extra` cluster keys (`, key = value`...).
    fn sets(&self, on_node_loss: &str, extra: &str) -> Vec<String> {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{{name={:?},addr={:?}}}", n.name, n.addr))
            .collect();
        vec![
            format!(
                "cluster={{nodes=[{}],cookie_env={COOKIE_VAR:?},on_node_loss={on_node_loss:?}{extra}}}",
                nodes.join(",")
            ),
            "attacker.node=a".into(),
            "defender.node=b".into(),
            "judge.node=c".into(),
        ]
    }

    /// Every node still runs (none crashed serving the game).
    fn assert_all_up(&mut self) {
        for n in &mut self.nodes {
            if let Some(status) = n.proc.ended() {
                panic!("node {} ended ({status})\n{}", n.name, n.proc.log());
            }
        }
    }

    /// All nodes' output, for assertion messages.
    fn log(&self) -> String {
        self.nodes.iter().map(|n| n.proc.log()).collect()
    }
}

/// Asserts that run directory `got` holds the same records as `want`, byte for byte.
fn assert_same_records(got: &Path, want: &Path, context: &str) {
    for f in RECORDS {
        let read = |d: &Path| {
            std::fs::read(d.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}\n{context}", d.join(f).display()))
        };
        let (a, b) = (read(got), read(want));
        if a != b {
            let (ta, tb) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            let first = ta
                .lines()
                .zip(tb.lines())
                .position(|(x, y)| x != y)
                .unwrap_or_else(|| ta.lines().count().min(tb.lines().count()));
            let line = |t: &str| -> String {
                t.lines()
                    .nth(first)
                    .unwrap_or("<none>")
                    .chars()
                    .take(400)
                    .collect()
            };
            panic!(
                "{f} differs between {} ({} bytes) and {} ({} bytes); first at line {}:\n  got:  {}\n  want: {}\n{context}",
                got.display(),
                a.len(),
                want.display(),
                b.len(),
                first + 1,
                line(&ta),
                line(&tb)
            );
        }
    }
}

/// Rounds committed so far (lines of metrics.jsonl).
fn committed(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// Wait until `game` (playing `rounds` rounds into `run`) has committed at least `min` rounds and still runs; the
/// rounds committed then, fewer than `rounds`.
fn wait_for_rounds(game: &mut Proc, run: &Path, min: usize, rounds: usize) -> usize {
    let done = poll(LIMIT, || {
        if committed(run) >= min {
            return Some(Ok(()));
        }
        game.ended().map(Err)
    });
    match done {
        Some(Ok(())) => {}
        Some(Err(status)) => panic!(
            "the game ended ({status}) before round {min} was committed\n{}",
            game.log()
        ),
        None => panic!(
            "round {min} was not committed within {LIMIT:?}\n{}",
            game.log()
        ),
    }
    if let Some(status) = game.ended() {
        panic!(
            "the game ended ({status}) before it could be interrupted: slow it more\n{}",
            game.log()
        );
    }
    let n = committed(run);
    assert!(
        n < rounds,
        "{n} of {rounds} rounds committed already: slow the game more\n{}",
        game.log()
    );
    n
}

/// [`wait_for_rounds`] until round 1 is committed.
fn wait_for_round_one(game: &mut Proc, run: &Path, rounds: usize) -> usize {
    wait_for_rounds(game, run, 1, rounds)
}

/// The shortened intent flagship: its file and the overrides that shorten it.
fn intent() -> (PathBuf, Vec<String>) {
    (
        repo().join("scenarios/intent-advgame-dpo.toml"),
        [
            "game.rounds=4",
            "eval.every=2",
            "attacker.warm_start.steps=100",
            "defender.warm_start.steps=100",
        ]
        .map(String::from)
        .to_vec(),
    )
}

/// Rounds of the shortened intent flagship.
const INTENT_ROUNDS: usize = 4;

/// The in-process run of the shortened intent flagship (run once, shared by the tests that compare with it).
fn intent_reference() -> &'static Path {
    static REFERENCE: OnceLock<PathBuf> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = common::tmpdir("cluster-intent-reference");
        let run = dir.join("run");
        let (file, sets) = intent();
        sparring_ok(&dir, "in-process", &run_args(&file, &run, &sets), None);
        run
    })
}

/// The tests that compare with [`intent_reference`].
const INTENT_REFERENCE_USERS: usize = 2;

/// A test is done with [`intent_reference`]: the last of them removes it.
fn done_with_intent_reference() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    if DONE.fetch_add(1, Ordering::SeqCst) + 1 == INTENT_REFERENCE_USERS
        && let Some(dir) = intent_reference().parent()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Rounds of the kill-and-resume scenario.
const SCRIPTED_ROUNDS: usize = 10;

/// A scripted game over the intent flagship's data (no ../shared), written to `<dir>/scripted.toml`: a learning
/// template attacker, a rule-based defender, the refusal-prefix judge, an evaluation every 3 rounds.
fn scripted(dir: &Path) -> PathBuf {
    let data = repo().join("scenarios/intent-data");
    let p = |f: &str| data.join(f).display().to_string().replace('\\', "/");
    let text = format!(
        r#"schema = 1

[game]
name = "cluster-scripted"
seed = 3
rounds = {SCRIPTED_ROUNDS}
schedule = "joint"
seeds_per_round = 8
attacks_per_seed = 3
responses_per_attack = 2
optimistic = true

[[data.train]]
name = "intent-train"
path = "{train}"
format = "advgame"

[[data.eval]]
name = "intent-heldout"
path = "{heldout}"
format = "advgame"

[payoffs]
mode = "pairwise"
faithfulness_gate = true

[attacker]
kind = "scripted-template"
malformed_rate = 0.05
learning_rate = 0.5

[defender]
kind = "scripted-rules"
flip_rate = 0.15

[judge]
kind = "refusal-prefix"

[replay]
fsync = false

[eval]
every = 3
"#,
        train = p("train.jsonl"),
        heldout = p("heldout.jsonl"),
    );
    let file = dir.join("scripted.toml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    file
}

/// The delay before each defender request that makes a scripted round last long enough to kill mid-run.
const SLOW: &str = "faults.defender.delay_ms=100";

/// The in-process run of [`scripted`] into `<dir>/in-process`.
fn scripted_reference(dir: &Path, file: &Path) -> PathBuf {
    let run = dir.join("in-process");
    sparring_ok(dir, "in-process", &run_args(file, &run, &[]), None);
    run
}

#[test]
fn scripted_redteam_on_three_nodes_writes_the_in_process_records() {
    let what = "scripted_redteam_on_three_nodes_writes_the_in_process_records";
    let Some(shared) = common::shared_or_skip(what) else {
        return;
    };
    let dir = common::tmpdir("cluster-scripted-redteam");
    // The stock scenario with its ../shared paths made absolute ($SPARRING_SHARED may be elsewhere).
    let text = std::fs::read_to_string(repo().join("scenarios/scripted-redteam.toml"))
        .expect("scenarios/scripted-redteam.toml");
    let shared = shared.display().to_string().replace('\\', "/");
    let file = dir.join("scripted-redteam.toml");
    std::fs::write(
        &file,
        text.replace("\"../../shared/", &format!("\"{shared}/")),
    )
    .unwrap();

    let want = dir.join("in-process");
    sparring_ok(&dir, "in-process", &run_args(&file, &want, &[]), None);

    let mut cluster = Cluster::start(&dir, what);
    let got = dir.join("clustered");
    // "fail": a role that could not run on its node fails the run instead of quietly running here.
    let sets = cluster.sets("fail", "");
    let done = sparring_ok(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    cluster.assert_all_up();
    assert_same_records(&got, &want, &format!("{}{}", done.log, cluster.log()));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_intent_flagship_on_three_nodes_writes_the_in_process_records() {
    let what = "the_intent_flagship_on_three_nodes_writes_the_in_process_records";
    let dir = common::tmpdir("cluster-intent");
    let mut cluster = Cluster::start(&dir, what);
    let (file, mut sets) = intent();
    // Small chunks: the models' states and the learners' batches cross in many of them.
    sets.extend(cluster.sets("fail", ",chunk_kb=16"));
    let got = dir.join("clustered");
    let done = sparring_ok(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    cluster.assert_all_up();
    assert_same_records(
        &got,
        intent_reference(),
        &format!("{}{}", done.log, cluster.log()),
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    done_with_intent_reference();
}

#[test]
fn a_lost_defender_node_moves_the_defender_to_another_node() {
    let what = "a_lost_defender_node_moves_the_defender_to_another_node";
    let dir = common::tmpdir("cluster-lose-other");
    let mut cluster = Cluster::start(&dir, what);
    // The intent flagship: the defender learns, so its state of the last committed round moves with it.
    let (file, mut sets) = intent();
    sets.extend(cluster.sets("other", ",chunk_kb=64"));
    let got = dir.join("clustered");
    let mut game = sparring(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    let at = wait_for_round_one(&mut game, &got, INTENT_ROUNDS);
    cluster.node("b").proc.kill();
    let done = game.finish();
    assert!(
        done.status.success(),
        "the run failed after node b was killed at round {at}\n{}{}",
        done.log,
        cluster.log()
    );
    assert!(
        done.stderr.contains("from=b to=\"c\""),
        "the game did not say that the defender moved from b to c\n{}",
        done.log
    );
    assert_same_records(
        &got,
        intent_reference(),
        &format!("{}{}", done.log, cluster.log()),
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    done_with_intent_reference();
}

#[test]
fn lost_nodes_move_their_roles_into_the_game() {
    let what = "lost_nodes_move_their_roles_into_the_game";
    let dir = common::tmpdir("cluster-lose-local");
    let file = scripted(&dir);
    let want = scripted_reference(&dir, &file);
    let mut cluster = Cluster::start(&dir, what);
    let mut sets = cluster.sets("local", "");
    sets.push(SLOW.into());
    let got = dir.join("clustered");
    let mut game = sparring(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    // The defender's node first; once the game has committed a round with the defender in it, the others.
    let at = wait_for_round_one(&mut game, &got, SCRIPTED_ROUNDS);
    cluster.node("b").proc.kill();
    let then = wait_for_rounds(&mut game, &got, at + 1, SCRIPTED_ROUNDS);
    cluster.node("a").proc.kill();
    cluster.node("c").proc.kill();
    let done = game.finish();
    assert!(
        done.status.success(),
        "the run failed after node b was killed at round {at} and nodes a and c at round {then}\n{}{}",
        done.log,
        cluster.log()
    );
    for (node, role) in [("b", "defender"), ("a", "attacker"), ("c", "judge")] {
        assert!(
            done.stderr
                .lines()
                .any(|l| l.contains(&format!("slot=\"{role}\" from={node} to=\"this process\""))),
            "the game did not say that the {role} moved from {node} into the game\n{}",
            done.log
        );
    }
    assert_same_records(&got, &want, &format!("{}{}", done.log, cluster.log()));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn a_hung_node_is_lost_by_its_heartbeat_and_its_role_moves() {
    let what = "a_hung_node_is_lost_by_its_heartbeat_and_its_role_moves";
    let dir = common::tmpdir("cluster-hung");
    let file = scripted(&dir);
    let want = scripted_reference(&dir, &file);
    let mut cluster = Cluster::start(&dir, what);
    let mut sets = cluster.sets("other", ",heartbeat_ms=100,heartbeat_timeout_ms=1000");
    sets.push(SLOW.into());
    let got = dir.join("clustered");
    let mut game = sparring(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    let at = wait_for_round_one(&mut game, &got, SCRIPTED_ROUNDS);
    // SIGSTOP: its connections stay open, it just never answers (dropping the node SIGKILLs it).
    let pid = cluster.node("b").proc.child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child of this test that has not been reaped.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP node b"
    );
    let done = game.finish();
    assert!(
        done.status.success(),
        "the run failed after node b hung at round {at}\n{}{}",
        done.log,
        cluster.log()
    );
    assert!(
        done.stderr.contains("no heartbeat answer") && done.stderr.contains("from=b to=\"c\""),
        "the game did not say that b missed its heartbeat and the defender moved to c\n{}",
        done.log
    );
    assert_same_records(&got, &want, &format!("{}{}", done.log, cluster.log()));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_down_as_the_game_starts_is_replaced_or_fails_the_run() {
    let what = "a_node_down_as_the_game_starts_is_replaced_or_fails_the_run";
    let dir = common::tmpdir("cluster-down-at-start");
    let file = scripted(&dir);
    let want = scripted_reference(&dir, &file);
    let mut cluster = Cluster::start(&dir, what);
    cluster.node("b").proc.kill();
    // "other": the defender starts on the next listed node.
    let got = dir.join("other");
    let done = sparring_ok(
        &dir,
        "other",
        &run_args(&file, &got, &cluster.sets("other", "")),
        Some(&cluster.cookie),
    );
    assert!(
        done.stderr.contains("unreachable as the game starts"),
        "the game did not say that node b was unreachable\n{}",
        done.log
    );
    assert_same_records(&got, &want, &format!("{}{}", done.log, cluster.log()));
    // "fail": the run fails, naming the node.
    let done = sparring(
        &dir,
        "fail",
        &run_args(&file, &dir.join("fail"), &cluster.sets("fail", "")),
        Some(&cluster.cookie),
    )
    .finish();
    assert!(
        !done.status.success() && done.stderr.contains("node `b`"),
        "the run did not fail naming node `b` although b is down and on_node_loss = \"fail\"\n{}",
        done.log
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lost_node_fails_the_run_when_on_node_loss_is_fail() {
    let what = "a_lost_node_fails_the_run_when_on_node_loss_is_fail";
    let dir = common::tmpdir("cluster-lose-fail");
    let file = scripted(&dir);
    let mut cluster = Cluster::start(&dir, what);
    let mut sets = cluster.sets("fail", "");
    sets.push(SLOW.into());
    let got = dir.join("clustered");
    let mut game = sparring(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    let at = wait_for_round_one(&mut game, &got, SCRIPTED_ROUNDS);
    cluster.node("b").proc.kill();
    let done = game.finish();
    assert!(
        !done.status.success(),
        "the run succeeded although node b was killed at round {at} and on_node_loss = \"fail\"\n{}",
        done.log
    );
    let error: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert!(
        error.iter().any(|l| l.contains("node `b`")),
        "the run's error does not name node `b`\n{}",
        done.log
    );
    assert!(
        committed(&got) < SCRIPTED_ROUNDS,
        "the failed run committed every round\n{}",
        done.log
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kill the game after round 1, optionally kill and restart all nodes, resume, and compare with an uninterrupted
/// run.
fn kill_the_game_and_resume(what: &str, restart_nodes: bool) {
    let dir = common::tmpdir(&format!("cluster-resume-{restart_nodes}"));
    let file = scripted(&dir);
    let want = scripted_reference(&dir, &file);
    let mut cluster = Cluster::start(&dir, what);
    // "fail": the resumed roles must run on the nodes, not quietly in the game.
    let mut sets = cluster.sets("fail", "");
    sets.push(SLOW.into());
    let got = dir.join("clustered");
    let mut game = sparring(
        &dir,
        "clustered",
        &run_args(&file, &got, &sets),
        Some(&cluster.cookie),
    );
    let at = wait_for_round_one(&mut game, &got, SCRIPTED_ROUNDS);
    game.kill();
    let killed = game.log();
    drop(game);
    if restart_nodes {
        cluster.restart_all();
    }
    let done = sparring_ok(
        &dir,
        "resumed",
        &resume_args(&got, &["faults.defender.delay_ms=0"]),
        Some(&cluster.cookie),
    );
    cluster.assert_all_up();
    assert_same_records(
        &got,
        &want,
        &format!(
            "killed after {at} rounds\n{killed}{}{}",
            done.log,
            cluster.log()
        ),
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_game_resumes_on_the_same_nodes() {
    kill_the_game_and_resume("a_killed_game_resumes_on_the_same_nodes", false);
}

#[test]
fn a_killed_game_resumes_on_restarted_nodes() {
    kill_the_game_and_resume("a_killed_game_resumes_on_restarted_nodes", true);
}

#[test]
fn a_node_with_another_cookie_fails_the_run_naming_the_cookie_variable() {
    let what = "a_node_with_another_cookie_fails_the_run_naming_the_cookie_variable";
    let dir = common::tmpdir("cluster-cookie");
    let file = scripted(&dir);
    let mut node = Node::start(&dir, "node-a", "a", "127.0.0.1:0", &cookie(what));
    // "local", the lenient policy: a refusal must not pass for an unreachable node (whose roles would quietly
    // run in the game).
    let sets = vec![
        format!(
            "cluster={{nodes=[{{name=\"a\",addr={:?}}}],cookie_env={COOKIE_VAR:?},on_node_loss=\"local\",connect_timeout_ms=3000}}",
            node.addr
        ),
        "defender.node=a".to_string(),
    ];
    let start = Instant::now();
    let done = sparring(
        &dir,
        "game",
        &run_args(&file, &dir.join("run"), &sets),
        Some(&cookie("another")),
    )
    .finish();
    let took = start.elapsed();
    assert!(
        !done.status.success(),
        "the run succeeded with a cookie the node does not share\n{}{}",
        done.log,
        node.proc.log()
    );
    assert!(
        done.stderr.contains(COOKIE_VAR),
        "the run's error does not name the cookie variable {COOKIE_VAR}\n{}",
        done.log
    );
    assert!(
        took < Duration::from_secs(30),
        "the run took {took:?} to fail\n{}",
        done.log
    );
    if let Some(status) = node.proc.ended() {
        panic!(
            "node a ended ({status}) after refusing a game\n{}",
            node.proc.log()
        );
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_listens_on_127_0_0_1_port_7400_by_default() {
    let what = "a_node_listens_on_127_0_0_1_port_7400_by_default";
    let dir = common::tmpdir("cluster-default-listen");
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--cookie-env", COOKIE_VAR])
        .env(COOKIE_VAR, cookie(what));
    let mut node = Proc::spawn(cmd, &dir, "node");
    // It listens (and says so), or it cannot (the port is taken: it says so and ends).
    let said = poll(LIMIT, || {
        if node.stdout().contains("listening on") {
            return Some(node.stdout());
        }
        node.ended().map(|_| node.stdout() + &node.stderr())
    })
    .unwrap_or_else(|| panic!("the node said nothing within {LIMIT:?}\n{}", node.log()));
    assert!(
        said.contains("127.0.0.1:7400"),
        "the node's output does not mention 127.0.0.1:7400\n{}",
        node.log()
    );
    if said.contains("listening on") {
        assert_eq!(
            said.trim(),
            "node node-7400 listening on 127.0.0.1:7400",
            "{}",
            node.log()
        );
    } else {
        eprintln!(
            "note: {what}: 127.0.0.1:7400 is taken here; the node said so:\n{}",
            node.log()
        );
    }
    node.kill();
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
