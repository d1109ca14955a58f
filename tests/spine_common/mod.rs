//! Helpers shared by the spine integration tests: locating ../shared, temporary directories, a small scripted
//! scenario over the real data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared data directory (`SPARRING_SHARED`, else `<repo root>/../shared`), if present.
pub fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("SPARRING_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    p.join("data").join("advgame").is_dir().then_some(p)
}

/// `shared()` or print a visible SKIP line.
pub fn shared_or_skip(test: &str) -> Option<PathBuf> {
    let s = shared();
    if s.is_none() {
        eprintln!("SKIP: {test}: ../shared (or $SPARRING_SHARED) with data/advgame is absent");
    }
    s
}

/// A fresh empty temporary directory.
pub fn tmpdir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("sparring-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small scripted scenario over the real data (absolute paths), with `extra` TOML appended.
pub fn scenario(shared: &Path, rounds: u32, extra: &str) -> String {
    let d = shared.join("data");
    let p = |s: &str| d.join(s).display().to_string().replace('\\', "/");
    format!(
        r#"schema = 1

[game]
name = "spine-test"
seed = 11
rounds = {rounds}
seeds_per_round = 6
attacks_per_seed = 3
responses_per_attack = 2

[[data.train]]
name = "harmful"
path = "{h}"
limit = 40

[[data.train]]
name = "benign"
path = "{b}"
limit = 40

[[data.eval]]
name = "xstest"
path = "{x}"
limit = 20

[attacker]
kind = "scripted-template"
malformed_rate = 0.1

[defender]
kind = "scripted-rules"
flip_rate = 0.2

[judge]
kind = "refusal-prefix"

[replay]
fsync = false

[eval]
every = 2
{extra}
"#,
        h = p("advgame/valid_vanilla_harmful_256.jsonl"),
        b = p("advgame/valid_vanilla_benign_256.jsonl"),
        x = p("xstest/xstest.jsonl"),
    )
}

/// Write `text` as `<dir>/scenario-in.toml` and return its path.
pub fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("scenario-in.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Run a scenario file in-process to `out` (or resume it).
pub fn run(
    file: Option<&Path>,
    out: &Path,
    overrides: &[String],
) -> sparring_engine::run::RunSummary {
    let reg = sparring_actors::registry();
    let (loaded, resume) = match file {
        Some(f) => (
            sparring_engine::scenario::load(f, overrides, &reg).unwrap(),
            false,
        ),
        None => (
            sparring_engine::scenario::load(&out.join("scenario.toml"), overrides, &reg).unwrap(),
            true,
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sparring_engine::run::run(
        &loaded,
        &reg,
        out,
        resume,
        &mut |_| {},
    ))
    .unwrap()
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A run file's text with its run id (`"run":"<name>-<hash>"`, read from the run's `episodes.jsonl`) masked: two
/// runs of one game whose scenarios differ only in where their servers listen compare equal.
pub fn masked(f: &Path) -> String {
    let text = std::fs::read_to_string(f).unwrap();
    let id = std::fs::read_to_string(f.with_file_name("episodes.jsonl"))
        .unwrap()
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["run"].as_str().map(str::to_string))
        .expect("a run id in episodes.jsonl");
    text.replace(&id, "RUN")
}

/// Asserts that two runs wrote the same episodes, metrics and summary (run ids masked).
pub fn same_records(a: &Path, b: &Path) {
    for f in ["episodes.jsonl", "metrics.jsonl", "summary.json"] {
        assert!(
            masked(&a.join(f)) == masked(&b.join(f)),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A `sparring serve` child process, killed on drop.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (a `sparring serve … --addr 127.0.0.1:0`) and waits for its `listening on` line: the server and
/// the port it took.
pub fn start_serving(mut cmd: std::process::Command) -> Served {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
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
    let port = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(Some(port))) => port,
        Ok(Err(stderr)) => panic!("sparring serve ended without listening:\n{stderr}"),
        other => panic!("sparring serve printed no `listening on` line: {other:?}"),
    };
    Served { child, port }
}
