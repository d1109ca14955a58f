//! `sparring report` over two real (short) scripted runs on ../shared data: every plot and the CSV are written, the
//! CSV has one row per (run, round, metric) of metrics.jsonl plus the diversity metrics, and a run cut mid-line
//! (a crash) still reports.

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("SPARRING_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    p.join("data").join("advgame").is_dir().then_some(p)
}

fn tmpdir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "sparring-reportruns-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scenario(shared: &Path) -> String {
    let d = shared.join("data");
    let p = |s: &str| d.join(s).display().to_string().replace('\\', "/");
    format!(
        r#"schema = 1
[game]
name = "report-test"
seed = 5
rounds = 3
seeds_per_round = 6
attacks_per_seed = 3
responses_per_attack = 2
[[data.train]]
name = "harmful"
path = "{h}"
limit = 30
[[data.train]]
name = "benign"
path = "{b}"
limit = 30
[[data.eval]]
name = "xstest"
path = "{x}"
[attacker]
kind = "scripted-template"
[defender]
kind = "scripted-rules"
[judge]
kind = "refusal-prefix"
[replay]
fsync = false
[eval]
every = 2
"#,
        h = p("advgame/valid_vanilla_harmful_256.jsonl"),
        b = p("advgame/valid_vanilla_benign_256.jsonl"),
        x = p("xstest/xstest.jsonl"),
    )
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparring"))
}

#[test]
fn report_over_two_real_runs_and_a_crashed_copy() {
    let Some(shared) = shared() else {
        eprintln!(
            "SKIP: report_over_two_real_runs: ../shared (or $SPARRING_SHARED) with data/advgame is absent"
        );
        return;
    };
    let root = tmpdir("real");
    let scn = root.join("s.toml");
    std::fs::write(&scn, scenario(&shared)).unwrap();
    let (a, b) = (root.join("seed5"), root.join("seed6"));
    for (dir, seed) in [(&a, 5), (&b, 6)] {
        let o = bin()
            .args([
                "run",
                scn.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
                "-q",
                "--set",
            ])
            .arg(format!("game.seed={seed}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // A crashed copy of run b: both logs cut in the middle of their last line.
    let c = root.join("crashed");
    std::fs::create_dir_all(&c).unwrap();
    for f in [
        "run.json",
        "scenario.toml",
        "metrics.jsonl",
        "episodes.jsonl",
    ] {
        let bytes = std::fs::read(b.join(f)).unwrap();
        let cut = if f.ends_with(".jsonl") {
            bytes.len() - 20
        } else {
            bytes.len()
        };
        std::fs::write(c.join(f), &bytes[..cut]).unwrap();
    }
    let out = root.join("out");
    let o = bin()
        .args([
            "report",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            c.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--json", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in [
        "index.html",
        "metrics.csv",
        "pareto.png",
        "asr.png",
        "utility.png",
        "faithfulness.png",
        "diversity.png",
        "rewards.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // CSV rows of run a = its metrics.jsonl entries + 2 diversity metrics per round.
    let logged: usize = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["metrics"]
                .as_object()
                .unwrap()
                .len()
        })
        .sum();
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows_a = csv.lines().filter(|l| l.starts_with("seed5,")).count();
    let timing_a = csv
        .lines()
        .filter(|l| l.starts_with("seed5,") && l.contains(",timing/"))
        .count();
    assert_eq!(rows_a - timing_a, logged + 2 * 3);
    // The crashed copy lost its last round (torn metrics line and torn commit marker) and says so.
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs[2]["last_round"].as_u64(), Some(2), "{:?}", runs[2]);
    assert!(
        runs[2]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("torn"))
    );
    // Final and eval points for every complete run.
    let p = j["pareto"].as_array().unwrap();
    assert!(
        p.iter().filter(|q| q["kind"] == "final").count() == 3,
        "{p:?}"
    );
    assert!(p.iter().any(|q| q["kind"] == "eval"), "{p:?}");
}
