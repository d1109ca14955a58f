//! Durability: SIGKILL the CLI mid-run, add a torn tail to its log, resume it, and compare with an uninterrupted
//! run byte for byte (episodes and metrics).

mod spine_common;
use spine_common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn commits(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"type\":\"commit\""))
                .count()
        })
        .unwrap_or(0)
}

/// Wait (polling every 2 ms, at most `limit`) until `ready` holds while `child` still runs, then SIGKILL it.
fn kill_when(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
    ready: impl Fn() -> bool,
) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it was killed ({what})"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    child.wait().unwrap();
}

/// `sparring run -q --resume DIR` with `--set` overrides; asserts success and returns its stdout.
fn resume(dir: &std::path::Path, sets: &[&str]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparring"));
    c.args(["run", "-q"]);
    for s in sets {
        c.args(["--set", s]);
    }
    let st = c.arg("--resume").arg(dir).output().unwrap();
    assert!(
        st.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    String::from_utf8_lossy(&st.stdout).into_owned()
}

#[test]
fn sigkill_then_resume_equals_uninterrupted_run() {
    let Some(sh) = shared_or_skip("sigkill_then_resume") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_sparring");
    let dir = tmpdir("resume");
    let rounds = 8;
    let f = write_scenario(
        &dir,
        &scenario(&sh, rounds, "[faults]\nround_delay_ms = 250\n"),
    );
    let killed = dir.join("killed");
    let mut child = Command::new(bin)
        .args(["run", "-q", "--out"])
        .arg(&killed)
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = killed.join("episodes.jsonl");
    kill_when(
        &mut child,
        Duration::from_secs(60),
        "3 rounds committed",
        || commits(&log) >= 3,
    );
    let done = commits(&log);
    assert!(
        done >= 3 && done < rounds as usize,
        "killed after {done} rounds"
    );
    // A torn tail: an uncommitted record and a half-written line.
    let mut text = read(&log);
    let first = text.lines().next().unwrap().to_string();
    text.push_str(&first);
    text.push('\n');
    text.push_str(&first[..first.len() / 2]);
    std::fs::write(&log, text).unwrap();

    let out = resume(&killed, &["faults.round_delay_ms=0"]);
    assert!(
        done == 0 || out.contains(&format!("resumed at round {}", done + 1)),
        "{out}"
    );

    let plain = dir.join("plain-src");
    std::fs::create_dir_all(&plain).unwrap();
    let f2 = write_scenario(&plain, &scenario(&sh, rounds, ""));
    let straight = dir.join("straight");
    let st = Command::new(bin)
        .args(["run", "-q", "--out"])
        .arg(&straight)
        .arg(&f2)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    for file in ["episodes.jsonl", "metrics.jsonl", "summary.json"] {
        assert_eq!(
            read(&killed.join(file)),
            read(&straight.join(file)),
            "{file} differs after resume"
        );
    }
    assert_eq!(commits(&killed.join("episodes.jsonl")), rounds as usize);
    let st = Command::new(bin)
        .arg("replay")
        .arg(&killed)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// `sparring run FILE --out DIR` on a directory that holds an unfinished run of the same scenario continues it
/// (to the same records as an uninterrupted run); a finished run or another scenario's is refused, and so is a
/// `--resume` that changes the scenario.
#[test]
fn run_on_an_unfinished_run_continues_it_and_refuses_finished_or_other_runs() {
    let Some(sh) = shared_or_skip("resume_refuses") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_sparring");
    let dir = tmpdir("resume-refuse");
    let f = write_scenario(&dir, &scenario(&sh, 3, ""));
    let run = |out: &Path, extra: &[&str]| {
        Command::new(bin)
            .args(["run", "-q", "--out"])
            .arg(out)
            .arg(&f)
            .args(extra)
            .output()
            .unwrap()
    };
    let straight = dir.join("straight");
    assert!(run(&straight, &[]).status.success());
    // A run stopped early: the attacker fails every request from its fifth on until the supervisor gives
    // up (faults are not part of the scenario's identity).
    let out = dir.join("run");
    let fail: Vec<String> = (5..60).map(|k| k.to_string()).collect();
    let faults = format!(
        "faults.attacker={{ error_on_request = [{}] }}",
        fail.join(", ")
    );
    let st = run(&out, &["--set", &faults]);
    assert!(!st.status.success());
    let log = read(&out.join("episodes.jsonl"));
    assert!(log.contains("\"type\":\"commit\""), "no round committed");
    assert_ne!(log, read(&straight.join("episodes.jsonl")));
    let st = run(&out, &[]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for file in ["episodes.jsonl", "metrics.jsonl", "summary.json"] {
        assert_eq!(read(&out.join(file)), read(&straight.join(file)), "{file}");
    }
    let st = run(&out, &[]);
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("holds a finished run"));
    let st = run(&out, &["--set", "game.seed=12"]);
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("holds a run of another scenario"));
    let st = Command::new(bin)
        .args(["run", "--set", "game.rounds=3", "--resume"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("keeps its scenario"));
}

/// SIGKILL while a round waits for its adaptive evaluation (the best-response run a few rounds in, the rounds
/// after it playing beside it, none of them committed), resume with another schedule (one sub-run at a time,
/// rounds waiting for theirs): the same run as an uninterrupted one, sub-runs included.
#[test]
fn sigkill_while_rounds_wait_for_an_adaptive_evaluation_then_resume() {
    let bin = env!("CARGO_BIN_EXE_sparring");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join("intent-advgame-dpo.toml");
    let dir = tmpdir("resume-adaptive");
    let sets = [
        "game.rounds=4",
        "game.seeds_per_round=8",
        "attacker.warm_start.steps=60",
        "defender.warm_start.steps=60",
        "eval.every=2",
        "eval.modes=[\"adaptive\"]",
        "eval.adaptive.rounds=16",
    ];
    let start = |out: &std::path::Path| {
        let mut c = Command::new(bin);
        c.args(["run", "-q", "--out"]).arg(out).arg(&scenario);
        for s in sets {
            c.args(["--set", s]);
        }
        c
    };
    let killed = dir.join("killed");
    let mut child = start(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (log, sub) = (
        killed.join("episodes.jsonl"),
        killed.join("adaptive/r2/episodes.jsonl"),
    );
    // Round 2's best-response run is a few rounds in; round 2 waits for it.
    kill_when(
        &mut child,
        Duration::from_secs(120),
        "3 rounds of round 2's adaptive evaluation",
        || commits(&sub) >= 3,
    );
    let (done, sub_done) = (commits(&log), commits(&sub));
    // Round 2 waits for its sub-run; round 1's commit has almost surely landed by now (on a loaded machine it
    // may not have: the resume then starts over from round 1, which is as good a test).
    assert!(done <= 1, "killed with {done} rounds committed");
    assert!(sub_done < 16, "killed after the sub-run ended");

    let out = resume(
        &killed,
        &["eval.adaptive.concurrent=1", "eval.adaptive.beside=false"],
    );
    assert!(
        out.contains(&format!("resumed at round {}", done + 1)),
        "{out}"
    );

    let straight = dir.join("straight");
    let st = start(&straight).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for file in [
        "episodes.jsonl",
        "metrics.jsonl",
        "summary.json",
        "adaptive/r2/episodes.jsonl",
        "adaptive/r4/episodes.jsonl",
        "adaptive/r4/summary.json",
    ] {
        assert_eq!(
            read(&killed.join(file)),
            read(&straight.join(file)),
            "{file} differs after resume"
        );
    }
    assert_eq!(commits(&log), 4);
}

/// `checkpoints.keep_last = N`: of the kept rounds after round 0, only the N most recent stay; round 0 and the
/// last round are kept; a value under 1 is refused.
#[test]
fn keep_last_rotates_the_kept_checkpoints() {
    let Some(sh) = shared_or_skip("keep_last") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_sparring");
    let dir = tmpdir("keep-last");
    let f = write_scenario(&dir, &scenario(&sh, 5, ""));
    let out = dir.join("run");
    let st = Command::new(bin)
        .args(["run", "-q", "--out"])
        .arg(&out)
        .arg(&f)
        .args(["--set", "checkpoints={ every = 1, keep_last = 2 }"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut kept: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, ["r0", "r4", "r5"]);
    let st = Command::new(bin)
        .args(["validate"])
        .arg(&f)
        .args(["--set", "checkpoints.keep_last=0"])
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("keep_last"));
}

/// A run directory another process is writing (its `run.lock` held) is refused by `--resume`, with the owner's
/// pid; once the owner is gone (its lock released, as the OS does however a process ends) the same resume goes
/// ahead.
#[test]
fn a_second_resume_of_a_directory_in_use_is_refused() {
    let Some(sh) = shared_or_skip("a_second_resume") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_sparring");
    let dir = tmpdir("run-lock");
    let f = write_scenario(&dir, &scenario(&sh, 3, ""));
    let out = dir.join("run");
    run(Some(&f), &out, &[]);
    // Another process's lock, as a running `sparring run` holds it.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out.join("run.lock"))
        .unwrap();
    held.try_lock().unwrap();
    std::fs::write(out.join("run.lock"), "4242").unwrap();
    let st = Command::new(bin)
        .args(["run", "-q", "--resume"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        !st.status.success() && err.contains("in use by process 4242"),
        "{err}"
    );
    drop(held);
    resume(&out, &[]);
    assert_eq!(commits(&out.join("episodes.jsonl")), 3);
}

/// Power-loss style damage: every file of a run's directory cut at every 4 KiB boundary (0 included), then
/// `--resume`: of a finished run, and of a run that failed after its second round's commit. Either the run is
/// restored to the records of the uninterrupted run (`episodes.jsonl`, `metrics.jsonl` and `summary.json`
/// byte-identical: a log cut back to an earlier commit, or a role state that no longer matches the sums its
/// commit wrote, plays the lost rounds again from the newest round whose states are intact), or the error names
/// the damaged file. Never a panic, never a silent loss.
#[test]
fn every_file_cut_at_every_4_kib_resumes_identically_or_names_the_file() {
    let Some(sh) = shared_or_skip("truncation") else {
        return;
    };
    let dir = tmpdir("truncation");
    let f = write_scenario(&dir, &scenario(&sh, 4, "[checkpoints]\nevery = 2\n"));
    let clean = dir.join("clean");
    run(Some(&f), &clean, &[]);
    let want = ["episodes.jsonl", "metrics.jsonl", "summary.json"].map(|n| read(&clean.join(n)));
    // The same run, failed by its attacker (one request failing more often than the 3 restarts allowed), after
    // a commit or more.
    let failed = dir.join("failed");
    let out = Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args([
            "run",
            "-q",
            "--set",
            "faults.attacker.error_on_request=[8,9,10,11]",
        ])
        .arg("--out")
        .arg(&failed)
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let last = sparring_engine::replay::read_committed(&failed.join("episodes.jsonl"))
        .unwrap()
        .last_round;
    assert!(
        (1..4).contains(&last),
        "the failed run committed {last} rounds"
    );
    let mut tally = Cuts::default();
    for base in [&clean, &failed] {
        cut_and_resume(base, &dir.join("cut"), &want, &mut tally);
    }
    let Cuts {
        restored,
        replayed,
        named,
    } = tally;
    // The log's cuts before its last commit, and the cut states, are played again; run.json and scenario.toml
    // are named.
    assert!(replayed > 20, "{replayed} replayed of {restored} restored");
    assert!(named >= 4, "{named} named");
    eprintln!("{restored} restored ({replayed} by playing rounds again), {named} named");
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Default)]
struct Cuts {
    restored: usize,
    replayed: usize,
    named: usize,
}

/// Every file of `base` cut at every 4 KiB boundary in a copy (`cut`), then `--resume` (without faults): the
/// records `want`, or an error naming the file.
fn cut_and_resume(base: &Path, cut_dir: &Path, want: &[String; 3], tally: &mut Cuts) {
    let mut files = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "run.lock") {
                files.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    for file in &files {
        let len = std::fs::metadata(base.join(file)).unwrap().len();
        for cut in (0..len.max(1)).step_by(4096) {
            let _ = std::fs::remove_dir_all(cut_dir);
            copy_dir(base, cut_dir);
            std::fs::OpenOptions::new()
                .write(true)
                .open(cut_dir.join(file))
                .unwrap()
                .set_len(cut)
                .unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_sparring"))
                .args(["run", "-q", "--set", "faults.attacker.error_on_request=[]"])
                .arg("--resume")
                .arg(cut_dir)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{}: {} cut at {cut}", base.display(), file.display());
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            if out.status.success() {
                for (name, want) in ["episodes.jsonl", "metrics.jsonl", "summary.json"]
                    .iter()
                    .zip(want)
                {
                    assert!(
                        read(&cut_dir.join(name)) == *want,
                        "{what}: {name} differs after --resume; {stderr}"
                    );
                }
                tally.restored += 1;
                tally.replayed += usize::from(stderr.contains("playing the rounds after it again"));
            } else {
                let name = file.file_name().unwrap().to_string_lossy();
                assert!(stderr.contains(name.as_ref()), "{what}: {stderr}");
                tally.named += 1;
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
