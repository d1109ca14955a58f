//! `sparring rejudge`: with the run's own judge it reproduces the run's log byte for byte; with another judge
//! (or payoff rule) it writes new verdicts, rewards and metrics that `sparring replay` finds consistent, beside
//! the run; a killed re-judging continues to the same result; it refuses to change anything but the judge and
//! payoffs, and to write over the run.

mod spine_common;

use spine_common::{scenario, shared_or_skip, tmpdir, write_scenario};
use std::path::Path;
use std::process::{Command, Output};

fn sparring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A finished 4-round scripted run (evaluations at rounds 2 and 4).
fn a_run(test: &str) -> Option<std::path::PathBuf> {
    let shared = shared_or_skip(test)?;
    let dir = tmpdir(test);
    let file = write_scenario(&dir, &scenario(&shared, 4, ""));
    let run = dir.join("run");
    ok(sparring(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]));
    Some(run)
}

#[test]
fn the_runs_own_judge_reproduces_its_log() {
    let Some(run) = a_run("rejudge-same") else {
        return;
    };
    let out = run.with_file_name("same");
    let table = ok(sparring(&[
        "rejudge",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]));
    assert!(table.contains("reward/defender"), "{table}");
    for f in ["episodes.jsonl", "metrics.jsonl", "summary.json"] {
        assert_eq!(read(&run.join(f)), read(&out.join(f)), "{f}");
    }
    assert!(out.join("report/index.html").exists());
}

#[test]
fn another_judge_changes_verdicts_consistently_and_a_killed_rejudging_continues() {
    let Some(run) = a_run("rejudge-other") else {
        return;
    };
    // A judge that takes every answer starting with "Sure" for a refusal, and pointwise payoffs.
    let sets = [
        "--set",
        "judge.extra_prefixes=[\"Sure\", \"Here\", \"Certainly\"]",
        "--set",
        "payoffs.mode=pointwise",
    ];
    let out = run.with_file_name("other");
    let mut args = vec![
        "rejudge",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend(sets);
    let j: serde_json::Value = serde_json::from_str(&ok(sparring(&args))).unwrap();
    let row = |m: &str| {
        j["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("no row {m}: {j}"))
    };
    let asr = row("asr");
    assert!(
        asr["rejudged"].as_f64().unwrap() < asr["original"].as_f64().unwrap(),
        "{asr}"
    );
    let before = read(&run.join("episodes.jsonl"));
    let after = read(&out.join("episodes.jsonl"));
    assert_ne!(before, after);
    // The texts are the run's: the same rewrites and responses, line for line where no judgment is.
    let texts = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "response" || v["type"] == "rewrite")
            .map(|v| format!("{}|{}", v["key"], v["output"]))
            .collect()
    };
    assert_eq!(texts(&before), texts(&after));
    assert!(after.contains("\"mode\":\"pointwise\""));
    // Rewards follow from the new verdicts, metrics from the records.
    let replayed = ok(sparring(&["replay", out.to_str().unwrap(), "--json"]));
    let r: serde_json::Value = serde_json::from_str(&replayed).unwrap();
    assert_eq!(r["mismatches"].as_array().map(Vec::len), Some(0), "{r}");
    // The original is untouched.
    assert_eq!(before, read(&run.join("episodes.jsonl")));

    // Killed after round 2: the log keeps its committed prefix; given again, it continues to the same end.
    let cut = after
        .match_indices("\"type\":\"commit\"")
        .nth(1)
        .map(|(i, _)| i + after[i..].find('\n').unwrap() + 1)
        .unwrap();
    let resumed = run.with_file_name("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    for f in ["scenario.toml", "run.json"] {
        std::fs::copy(out.join(f), resumed.join(f)).unwrap();
    }
    std::fs::write(resumed.join("episodes.jsonl"), &after[..cut]).unwrap();
    let mut args = vec![
        "rejudge",
        run.to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
        "-q",
    ];
    args.extend(sets);
    ok(sparring(&args));
    for f in ["episodes.jsonl", "metrics.jsonl", "summary.json"] {
        assert_eq!(read(&out.join(f)), read(&resumed.join(f)), "{f}");
    }
    // Another judge into the same directory is refused.
    let o = sparring(&[
        "rejudge",
        run.to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another judge"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn only_the_judge_may_change_and_never_over_the_run() {
    let Some(run) = a_run("rejudge-refused") else {
        return;
    };
    let o = sparring(&["rejudge", run.to_str().unwrap(), "--set", "game.rounds=2"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--set game.rounds=2") && e.contains("`judge`"),
        "{e}"
    );
    let o = sparring(&[
        "rejudge",
        run.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("never over it"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = sparring(&["rejudge", run.with_file_name("nothing").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a run directory"));
}

/// The hackable judge of the reward-hacking experiment checks its bias: a word outside the intent language and a
/// negative weight are errors naming the key.
#[test]
fn the_hackable_judges_bias_is_checked() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/intent-reward-hacking.toml"
    );
    ok(sparring(&["validate", file]));
    for (set, key) in [
        ("judge.bias.word=\"zap\"", "bias.word"),
        ("judge.bias.weight=-1", "bias.weight"),
    ] {
        let o = sparring(&["validate", file, "--set", set]);
        assert!(!o.status.success(), "{set}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(key), "{set}: {e}");
    }
}
