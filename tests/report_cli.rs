//! `sparring report` end to end through the binary: files written for two runs, one CSV row per
//! (run, round, metric), torn last lines in metrics/episodes handled, attack diversity equal to a hand-computed value.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "sparring-report-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sparring(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(args)
        .output()
        .unwrap()
}

fn report_json(runs: &[&Path], out: &Path) -> serde_json::Value {
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(runs.iter().map(|p| p.display().to_string()));
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--json".into(),
        "--quiet".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = sparring(&a);
    assert!(
        o.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (run, round, metric) → value from metrics.csv.
fn read_csv(path: &Path) -> Vec<(String, u32, String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("run,round,metric,value"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

fn rewrite(round: u32, parsed: Option<&str>) -> String {
    serde_json::json!({"type": "rewrite", "run": "hand", "round": round, "seed_id": "s:0", "set": "s",
        "category": "harmful", "role": "attacker", "version": 0, "key": format!("r{round}/s:0/a0"),
        "input": "seed", "output": "raw", "parsed": parsed, "faithful_raw": null, "faithful": true,
        "valid": true, "representative": null, "reward": 0.5})
    .to_string()
}

fn commit(round: u32) -> String {
    serde_json::json!({"type": "commit", "run": "hand", "round": round, "records": 2, "metrics": {}}).to_string()
}

/// A hand-made run: 2 committed rounds, then a torn line in both logs.
fn hand_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("run.json"),
        r#"{"run_id":"hand-1","created_unix":0}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("scenario.toml"),
        "schema = 1\n[game]\nname = \"hand\"\nseed = 3\nrounds = 5\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        concat!(
            r#"{"round":1,"metrics":{"asr":0.5,"benign_compliance":0.75,"reward/attacker":0.25}}"#,
            "\n",
            r#"{"round":2,"metrics":{"asr":0.25,"benign_compliance":1.0,"reward/attacker":-0.5,"eval/x/asr":0.2,"eval/x/compliance":0.9,"eval/round":2}}"#,
            "\n",
            r#"{"round":3,"metrics":{"asr":0.1"#
        ),
    )
    .unwrap();
    let eps = [
        rewrite(1, Some("The cat sat.")),
        rewrite(1, Some("the cat ran!")),
        rewrite(1, None),
        commit(1),
        rewrite(2, Some("a b a b")),
        commit(2),
        // Round 3 never committed: written, then the process died mid-line.
        rewrite(3, Some("x y z")),
    ];
    let mut text = eps.join("\n") + "\n";
    text.push_str(r#"{"type":"rewrite","run":"hand","round":3,"par"#);
    std::fs::write(dir.join("episodes.jsonl"), text).unwrap();
}

#[test]
fn torn_logs_and_hand_computed_diversity() {
    let root = tmpdir("hand");
    let run = root.join("hand-run");
    hand_run(&run);
    let out = root.join("out");
    let j = report_json(&[&run], &out);

    let rows = read_csv(&out.join("metrics.csv"));
    let get = |round: u32, m: &str| rows.iter().find(|r| r.1 == round && r.2 == m).map(|r| r.3);
    // Round 1: tokens the cat sat the cat ran → distinct-1 = 4/6; bigrams (the cat)(cat sat)(the cat)(cat ran) → 3/4.
    assert_eq!(get(1, "diversity/distinct-1"), Some(4.0 / 6.0));
    assert_eq!(get(1, "diversity/distinct-2"), Some(0.75));
    // Round 2: a b a b → 2/4 unigrams, bigrams (a b)(b a)(a b) → 2/3.
    assert_eq!(get(2, "diversity/distinct-1"), Some(0.5));
    assert_eq!(get(2, "diversity/distinct-2"), Some(2.0 / 3.0));
    // The torn round 3 is left out everywhere.
    assert!(rows.iter().all(|r| r.1 <= 2), "{rows:?}");
    assert_eq!(get(2, "asr"), Some(0.25));
    // One row per (run, round, metric): round 1 has 3 logged + 2 diversity, round 2 has 6 logged + 2 diversity.
    assert_eq!(rows.len(), 5 + 8);
    assert_eq!(j["csv_rows"].as_u64(), Some(13));
    let notes: Vec<String> = j["runs"][0]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("metrics.jsonl:3") && n.contains("torn")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("episodes.jsonl:8") && n.contains("torn")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("after the last commit marker")),
        "{notes:?}"
    );
    // Pareto: the eval point of round 2 and the final point (round 2).
    let p = j["pareto"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter()
            .any(|q| q["kind"] == "eval" && q["asr"] == 0.2 && q["utility"] == 0.9)
    );
    assert!(
        p.iter()
            .any(|q| q["kind"] == "final" && q["round"] == 2 && q["asr"] == 0.25)
    );
    assert_eq!(j["runs"][0]["last_round"].as_u64(), Some(2));
    assert_eq!(j["runs"][0]["finished"].as_bool(), Some(false));
}

#[test]
fn two_runs_produce_every_file_and_one_csv_row_per_run_round_metric() {
    let root = tmpdir("two");
    let (a, b) = (root.join("a"), root.join("b"));
    hand_run(&a);
    hand_run(&b);
    // Make run b different and finished.
    std::fs::write(
        b.join("metrics.jsonl"),
        concat!(
            r#"{"round":1,"metrics":{"asr":0.9,"benign_compliance":0.5,"learn/defender/loss":0.69,"learn/defender/kl":0.01}}"#,
            "\n",
            r#"{"round":2,"metrics":{"asr":0.8,"benign_compliance":0.6,"learn/defender/loss":0.6,"learn/defender/kl":0.03}}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(b.join("summary.json"), "{}").unwrap();
    let out = root.join("out");
    let j = report_json(&[&a, &b], &out);

    for f in [
        "index.html",
        "metrics.csv",
        "pareto.svg",
        "pareto.png",
        "asr.svg",
        "asr.png",
        "utility.png",
        "diversity.png",
        "loss.png",
        "kl.png",
    ] {
        let p = out.join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 100,
            "{} missing or empty",
            p.display()
        );
    }
    let png = std::fs::read(out.join("asr.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
        1000,
        "PNG width"
    );
    // Text elements as `>text<`, whatever line breaks the SVG writer puts around them.
    let svg = std::fs::read_to_string(out.join("asr.svg"))
        .unwrap()
        .replace('\n', "");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("Attack success rate") && svg.contains(">round<") && svg.contains(">ASR<"),
        "axis labels"
    );
    assert!(
        svg.contains(">1.0<") && svg.contains(">0.0<"),
        "rates drawn on [0, 1]"
    );
    assert!(
        svg.contains(">a · ASR (training rollouts)<")
            && svg.contains(">b · ASR (training rollouts)<"),
        "legend: one entry per run · metric"
    );
    // The PNG decodes to the full picture, with coloured lines on white.
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut px = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut px).unwrap();
    assert_eq!((info.width, info.height), (1000, 600));
    let rgb = &px[..info.buffer_size()];
    let coloured = rgb
        .chunks(3)
        .filter(|p| p.len() == 3 && p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
        .count();
    assert!(coloured > 1000, "{coloured} coloured pixels");

    let rows = read_csv(&out.join("metrics.csv"));
    // Every (run, round, metric) exactly once.
    let mut keys: Vec<(String, u32, String)> = rows
        .iter()
        .map(|r| (r.0.clone(), r.1, r.2.clone()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate rows");
    // Run a: 13 rows (see the hand test); run b: 4 logged metrics + 2 diversity per round, 2 rounds.
    assert_eq!(rows.iter().filter(|r| r.0 == "a").count(), 13);
    assert_eq!(rows.iter().filter(|r| r.0 == "b").count(), 12);
    assert_eq!(
        rows.iter()
            .find(|r| r.0 == "b" && r.1 == 2 && r.2 == "learn/defender/kl")
            .map(|r| r.3),
        Some(0.03)
    );
    assert_eq!(j["runs"].as_array().unwrap().len(), 2);
    assert_eq!(j["runs"][1]["finished"].as_bool(), Some(true));

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<img src=\"pareto.png\"") && html.contains("<img src=\"asr.png\""));
    assert!(
        html.contains("name = &quot;hand&quot;"),
        "embeds the resolved scenario"
    );
}

#[test]
fn a_missing_run_dir_is_an_error_naming_it() {
    let root = tmpdir("missing");
    let o = sparring(&[
        "report",
        root.join("nope").to_str().unwrap(),
        "--out",
        root.join("o").to_str().unwrap(),
        "-q",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
}
