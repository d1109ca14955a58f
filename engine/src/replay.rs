//! The durable record of a run. Layout of a run directory:
//! - `scenario.toml`: the resolved scenario; `run.json`: run id and creation time;
//! - `episodes.jsonl`: append-only log, one `Record` per line, each round closed by a `commit` marker; it is
//!   flushed and fsynced at every round end, and anything after the last marker (a torn tail, an uncommitted
//!   round) is truncated when the log is reopened;
//! - `state/<role>.r<round>.bin`: each role's saved state at the end of committed round `round` (written and
//!   fsynced before the round's marker; older ones are removed after it);
//! - `checkpoints/r<round>/<role>.bin`: kept states of round 0 (the initial players), of every
//!   `checkpoints.every`-th round and of the last round (hard links to the state files where possible);
//! - `adaptive/r<round>/`: the run of the best-response attacker of an adaptive evaluation;
//! - `metrics.jsonl` (per-round metrics, deterministic), `timings.jsonl` (wall times, not deterministic),
//!   `summary.json` (whole-run metrics).
//!
//! `recompute` rebuilds every reward from the logged judge verdicts and every metric from the records alone.

use crate::payoff::{self, Judgment};
use crate::record::{CommitRec, Metrics, Record, Tally, metrics};
use crate::roles::RoleError;
use crate::scenario::{PayoffCfg, Scenario};
use crate::vocab::{PayoffMode, Side};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOG: &str = "episodes.jsonl";
pub const SCENARIO: &str = "scenario.toml";
pub const STATE_DIR: &str = "state";
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// One round's durable commit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommitJob {
    pub round: u32,
    /// Keep this round's states as `checkpoints/r<round>/<role>.bin`.
    pub checkpoint: bool,
    /// After a kept checkpoint: only the N most recent kept rounds after round 0 stay (`checkpoints.keep_last`).
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Serialized records of the round, the commit marker last.
    pub lines: Vec<String>,
    /// (role name, state bytes) to save for this round.
    pub states: Vec<(String, std::sync::Arc<Vec<u8>>)>,
}

/// Path of a role's state file for a round.
pub fn state_path(run_dir: &Path, role: &str, round: u32) -> PathBuf {
    run_dir.join(STATE_DIR).join(format!("{role}.r{round}.bin"))
}

/// The name of the file beside a round's states (in `state/`, `state/r<round>.sums.json`; in a checkpoint's
/// directory, `sums.json`) that records each state's length and CRC-32, written before the round's commit: a
/// state file damaged later (cut, overwritten) is told from an intact one.
pub fn sums_path(dir: &Path, round: Option<u32>) -> PathBuf {
    match round {
        Some(r) => dir.join(format!("r{r}.sums.json")),
        None => dir.join("sums.json"),
    }
}

/// A state's length and CRC-32 ([`sums_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSum {
    pub len: u64,
    pub crc32: u32,
}

impl StateSum {
    pub fn of(bytes: &[u8]) -> Self {
        StateSum {
            len: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }
}

/// Write `sums` to `path` atomically (a temporary file, then a rename).
pub fn write_sums(path: &Path, sums: &BTreeMap<String, StateSum>) -> Result<(), String> {
    let text = serde_json::to_string_pretty(sums).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A role's state read from `path` and checked against the sums file `sums` beside it: an error names the file
/// that is damaged (the state, or the sums file). Without a sums file (a run directory written before they
/// existed) the state is taken as it is.
pub fn read_state(path: &Path, sums: &Path, role: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = match std::fs::read_to_string(sums) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bytes),
        Err(e) => return Err(format!("{}: {e}", sums.display())),
    };
    let table: BTreeMap<String, StateSum> =
        serde_json::from_str(&text).map_err(|e| format!("{}: damaged: {e}", sums.display()))?;
    let want = table
        .get(role)
        .ok_or_else(|| format!("{}: no entry for {role}", sums.display()))?;
    let got = StateSum::of(&bytes);
    if got != *want {
        return Err(format!(
            "{}: damaged: {} bytes with CRC-32 {:08x}, but the round's commit wrote {} bytes with {:08x} ({})",
            path.display(),
            got.len,
            got.crc32,
            want.len,
            want.crc32,
            sums.display()
        ));
    }
    Ok(bytes)
}

/// The committed part of a log.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub records: Vec<Record>,
    /// Byte length of the committed prefix.
    pub len: u64,
    /// Last committed round (0 if none).
    pub last_round: u32,
    /// Each committed round and the byte length of the log through its commit marker, in log order.
    pub commits: Vec<(u32, u64)>,
}

/// Read the committed records of a log (a missing file is an empty log). A record that does not parse before
/// the last commit marker is an error naming the line; anything after the last marker is ignored.
pub fn read_committed(path: &Path) -> Result<Committed, String> {
    let mut records = Vec::new();
    let mut out = fold_committed(path, |r| records.push(r))?;
    out.records = records;
    Ok(out)
}

/// [`read_committed`] without keeping the log: `each` gets the committed records in log order. The file is read
/// line by line and a round's records wait only for its commit marker, so memory is one round's, whatever the
/// log's length. The result's `records` is empty.
pub fn fold_committed(path: &Path, mut each: impl FnMut(Record)) -> Result<Committed, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Committed::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let read = |r: &mut BufReader<File>, line: &mut Vec<u8>| {
        line.clear();
        r.read_until(b'\n', line)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut out = Committed::default();
    let mut pending = Vec::new();
    let mut line = Vec::new();
    let (mut pos, mut line_no) = (0u64, 0usize);
    // A last line without its newline is a torn write: ignored, like everything after the last marker.
    while read(&mut reader, &mut line)? > 0 && line.last() == Some(&b'\n') {
        line_no += 1;
        let end = pos + line.len() as u64;
        match serde_json::from_slice::<Record>(&line[..line.len() - 1]) {
            Ok(rec) => {
                let is_commit = matches!(rec, Record::Commit(_));
                let round = rec.round();
                pending.push(rec);
                if is_commit {
                    pending.drain(..).for_each(&mut each);
                    out.len = end;
                    out.last_round = round;
                    out.commits.push((round, end));
                }
            }
            Err(e) => {
                // Garbage is tolerated only in the uncommitted tail.
                let needle = b"\"type\":\"commit\"";
                let mut rest = Vec::new();
                while read(&mut reader, &mut rest)? > 0 {
                    if rest.windows(needle.len()).any(|w| w == needle) {
                        return Err(format!("{}:{line_no}: bad record: {e}", path.display()));
                    }
                }
                break;
            }
        }
        pos = end;
    }
    Ok(out)
}

/// The last committed round of a log (0: none; a missing file has none), and its committed rounds, one at a time:
/// each round's records and its commit marker, read line by line (memory is one round's).
pub fn committed_rounds(
    path: &Path,
) -> Result<
    (
        u32,
        impl Iterator<Item = Result<(Vec<Record>, CommitRec), String>>,
    ),
    String,
> {
    // A first pass checks the log and finds its last committed round (and so where its tail begins).
    let last = fold_committed(path, drop)?.last_round;
    let lines = match File::open(path) {
        Ok(f) => Some(BufReader::new(f).lines()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut lines = lines.into_iter().flatten().enumerate();
    let mut done = last == 0;
    let rounds = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut body = Vec::new();
        for (n, line) in lines.by_ref() {
            let rec = line
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|l| {
                    serde_json::from_str::<Record>(&l)
                        .map_err(|e| format!("{}:{}: bad record: {e}", path.display(), n + 1))
                });
            match rec {
                Ok(Record::Commit(c)) => {
                    done = c.round >= last;
                    return Some(Ok((body, c)));
                }
                Ok(r) => body.push(r),
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        done = true;
        None
    });
    Ok((last, rounds))
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The open log of the replay actor.
pub struct ReplayLog {
    dir: PathBuf,
    file: File,
    fsync: bool,
    committed_len: u64,
    last_round: u32,
}

impl ReplayLog {
    /// Open (or create) the log of `run_dir`, truncating anything after the last commit marker.
    pub fn open(run_dir: &Path, fsync: bool) -> Result<Self, RoleError> {
        let path = run_dir.join(LOG);
        let committed = fold_committed(&path, drop).map_err(RoleError::Failed)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| RoleError::failed(format!("{}: {e}", path.display())))?;
        file.set_len(committed.len)
            .map_err(|e| RoleError::failed(format!("{}: truncate: {e}", path.display())))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| RoleError::failed(format!("{}: {e}", path.display())))?;
        if fsync {
            file.sync_all()
                .map_err(|e| RoleError::failed(format!("{}: fsync: {e}", path.display())))?;
        }
        std::fs::create_dir_all(run_dir.join(STATE_DIR)).map_err(|e| {
            RoleError::failed(format!("{}: {e}", run_dir.join(STATE_DIR).display()))
        })?;
        Ok(ReplayLog {
            dir: run_dir.to_path_buf(),
            file,
            fsync,
            committed_len: committed.len,
            last_round: committed.last_round,
        })
    }

    /// The last committed round of the log (0: none).
    pub fn last_round(&self) -> u32 {
        self.last_round
    }

    /// Write the round's states, then its records and commit marker; flush and fsync; remove older states.
    pub fn commit(&mut self, job: &CommitJob) -> Result<(), RoleError> {
        let io = |p: &Path, e: std::io::Error| RoleError::failed(format!("{}: {e}", p.display()));
        for (role, bytes) in &job.states {
            let path = state_path(&self.dir, role, job.round);
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(bytes).map_err(|e| io(&tmp, e))?;
            if self.fsync {
                f.sync_all().map_err(|e| io(&tmp, e))?;
            }
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        }
        let sums: BTreeMap<String, StateSum> = job
            .states
            .iter()
            .map(|(role, bytes)| (role.clone(), StateSum::of(bytes)))
            .collect();
        let state_sums = sums_path(&self.dir.join(STATE_DIR), Some(job.round));
        write_sums(&state_sums, &sums).map_err(RoleError::failed)?;
        if self.fsync {
            fsync_dir(&self.dir.join(STATE_DIR));
        }
        // Kept checkpoints (before the marker: a crash in between re-plays the round and links again).
        if job.checkpoint {
            let dir = self
                .dir
                .join(CHECKPOINT_DIR)
                .join(format!("r{}", job.round));
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            for (role, _) in &job.states {
                let from = state_path(&self.dir, role, job.round);
                let to = dir.join(format!("{role}.bin"));
                let _ = std::fs::remove_file(&to);
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(|e| io(&to, e))?;
                }
            }
            write_sums(&sums_path(&dir, None), &sums).map_err(RoleError::failed)?;
        }
        // Truncate a partial write from a failed earlier attempt of this commit.
        let log = self.dir.join(LOG);
        if self.last_round >= job.round {
            return Ok(()); // already durable (re-sent after a failure that happened after the fsync)
        }
        self.file
            .set_len(self.committed_len)
            .map_err(|e| io(&log, e))?;
        self.file.seek(SeekFrom::End(0)).map_err(|e| io(&log, e))?;
        let mut buf = String::new();
        for l in &job.lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .map_err(|e| io(&log, e))?;
        self.file.flush().map_err(|e| io(&log, e))?;
        if self.fsync {
            self.file.sync_all().map_err(|e| io(&log, e))?;
        }
        self.committed_len += buf.len() as u64;
        self.last_round = job.round;
        if job.checkpoint
            && let Some(n) = job.keep_last
        {
            self.rotate_checkpoints(n);
        }
        // Older states are no longer needed.
        if let Ok(rd) = std::fs::read_dir(self.dir.join(STATE_DIR)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let keep = format!(".r{}.bin", job.round);
                let keep_sums = format!("r{}.sums.json", job.round);
                if (name.ends_with(".bin") && !name.ends_with(&keep))
                    || (name.ends_with(".sums.json") && name != keep_sums)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}

impl ReplayLog {
    /// Remove kept checkpoints `r<k>` (k > 0) beyond the `n` most recent. After the round's marker: a crash in
    /// between leaves one more, which the next rotation removes.
    fn rotate_checkpoints(&self, n: u32) {
        let dir = self.dir.join(CHECKPOINT_DIR);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut kept: Vec<u32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix('r')?.parse().ok())
            .filter(|&k| k > 0)
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        for k in kept.into_iter().skip(n as usize) {
            let _ = std::fs::remove_dir_all(dir.join(format!("r{k}")));
        }
    }
}

/// Result of recomputing a run from its log.
#[derive(Debug, Clone)]
pub struct Recomputed {
    /// Per-round metrics recomputed from the records.
    pub rounds: Vec<(u32, Metrics)>,
    /// Metrics over the whole committed run.
    pub summary: Metrics,
    /// Rounds whose logged metrics differ from the recomputed ones (should be empty).
    pub mismatches: Vec<String>,
    pub last_round: u32,
}

/// Recompute rewards (from the logged verdicts) and metrics (from the records) of a run directory, and compare
/// them with what the live run logged.
pub fn recompute(run_dir: &Path) -> Result<Recomputed, String> {
    let scen_path = run_dir.join(SCENARIO);
    let text =
        std::fs::read_to_string(&scen_path).map_err(|e| format!("{}: {e}", scen_path.display()))?;
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| format!("{}: {}", scen_path.display(), e.message()))?;
    let mut out = Recomputed {
        rounds: Vec::new(),
        summary: Metrics::new(),
        mismatches: Vec::new(),
        last_round: 0,
    };
    // Round by round as the log is read (a round's records, then its marker): memory is one round's.
    let mut tally = Tally::default();
    let mut body: Vec<Record> = Vec::new();
    fold_committed(&run_dir.join(LOG), |r| {
        let Record::Commit(CommitRec {
            round,
            metrics: live,
            records,
            ..
        }) = r
        else {
            body.push(r);
            return;
        };
        out.mismatches.extend(check_rewards(
            &body,
            &scenario.payoffs,
            &scenario.game.optimistic,
            round,
        ));
        let m = roundtrip(&metrics(&body));
        if live != m {
            out.mismatches.push(format!(
                "round {round}: logged metrics differ from the recomputed ones"
            ));
        }
        if records != body.len() {
            out.mismatches.push(format!(
                "round {round}: marker says {records} records, found {}",
                body.len()
            ));
        }
        out.rounds.push((round, m));
        out.last_round = round;
        body.drain(..).for_each(|r| tally.add(&r));
    })?;
    out.summary = roundtrip(&tally.metrics());
    Ok(out)
}

/// Metrics as they read back from JSON (the form the live run logs and compares).
fn roundtrip(m: &Metrics) -> Metrics {
    serde_json::to_string(m)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| m.clone())
}

/// Recompute each reward of a round from its judgments, and each rewrite's representative response from its
/// responses' rewards, and compare with the logged ones.
fn check_rewards(recs: &[Record], p: &PayoffCfg, optimistic: &bool, round: u32) -> Vec<String> {
    let mut bad = Vec::new();
    // group key -> [(i, j, scores)]
    let mut judged: BTreeMap<(Side, &str), Vec<(usize, Option<usize>, Option<&Vec<f64>>)>> =
        BTreeMap::new();
    for r in recs {
        if let Record::Judgment(j) = r {
            judged.entry((j.side, j.group.as_str())).or_default().push((
                j.i,
                j.j,
                j.parsed.as_ref(),
            ));
        }
    }
    // A group's verdicts as the game judged them: pairs, or single scores.
    let verdicts_of = |side: Side, group: &str| -> Vec<Judgment> {
        let js = judged.get(&(side, group)).map_or(&[][..], |v| v.as_slice());
        js.iter()
            .filter_map(|&(i, j, s)| match p.mode {
                PayoffMode::Pairwise => {
                    let scores = s.and_then(|v| (v.len() == 2).then(|| (v[0], v[1])));
                    j.map(|j| Judgment::Pair(i, j, scores))
                }
                PayoffMode::Pointwise => {
                    Some(Judgment::Point(i, s.and_then(|v| v.first().copied())))
                }
            })
            .collect()
    };
    // Defender: responses grouped by attack key, in order.
    let mut def: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for r in recs {
        if let Record::Response(x) = r {
            def.entry(x.attack_key.as_str()).or_default().push(x.reward);
        }
    }
    for (group, logged) in &def {
        let re = payoff::rewards(
            logged.len(),
            verdicts_of(Side::Defender, group),
            p.defender_weight,
        );
        if &re != logged {
            bad.push(format!(
                "round {round}: defender rewards of `{group}`: logged {logged:?}, recomputed {re:?}"
            ));
        }
    }
    // Attacker: rewrites grouped by seed key (the key without its `/a<i>` suffix).
    let mut att: BTreeMap<String, Vec<(bool, Option<f64>)>> = BTreeMap::new();
    for r in recs {
        if let Record::Rewrite(x) = r {
            let group = x
                .key
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default();
            att.entry(group).or_default().push((x.valid, x.reward));
        }
    }
    // Each answered rewrite's representative follows from its responses' rewards (`game.optimistic`).
    for r in recs {
        if let Record::Rewrite(x) = r
            && let (Some(logged), Some(rewards)) = (x.representative, def.get(x.key.as_str()))
        {
            let want = payoff::representative(rewards, *optimistic);
            if logged != want {
                bad.push(format!(
                    "round {round}: representative of `{}`: logged {logged}, recomputed {want}",
                    x.key
                ));
            }
        }
    }
    for (group, items) in &att {
        let valid: Vec<bool> = items.iter().map(|(valid, _)| *valid).collect();
        let re = payoff::attacker_rewards(
            &valid,
            verdicts_of(Side::Attacker, group),
            p.attacker_weight,
            p.error_reward,
        );
        for (i, ((_, logged), expect)) in items.iter().zip(re).enumerate() {
            if expect != *logged {
                bad.push(format!("round {round}: attacker reward of `{group}/a{i}`: logged {logged:?}, recomputed {expect:?}"));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LearnRec, Metrics};
    use crate::roles::{LearnReport, Role};

    fn line(r: &Record) -> String {
        serde_json::to_string(r).unwrap() + "\n"
    }

    fn learn(round: u32) -> Record {
        Record::Learn(LearnRec {
            run: "r".into(),
            round,
            role: Role::Attacker,
            version: u64::from(round),
            report: LearnReport::default(),
        })
    }

    fn commit(round: u32) -> Record {
        Record::Commit(CommitRec {
            run: "r".into(),
            round,
            records: 1,
            metrics: Metrics::new(),
        })
    }

    /// The committed prefix is read record by record: an uncommitted round, a garbage line after the last marker
    /// and a torn last line are left out; garbage before a marker is an error naming its line.
    #[test]
    fn the_committed_prefix_folds_in_order_and_the_tail_is_ignored() {
        let dir = std::env::temp_dir().join(format!("sparring-fold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOG);
        let committed = [learn(1), commit(1), learn(2), commit(2)];
        let head: String = committed.iter().map(line).collect();
        let tail = line(&learn(3)) + "{not json\n" + &line(&learn(3))[..20];
        std::fs::write(&path, head.clone() + &tail).unwrap();
        let mut seen = Vec::new();
        let c = fold_committed(&path, |r| seen.push(r)).unwrap();
        assert_eq!(seen, committed);
        assert!(c.records.is_empty());
        assert_eq!((c.len, c.last_round), (head.len() as u64, 2));
        let all = read_committed(&path).unwrap();
        assert_eq!(all.records, committed);
        assert_eq!(all.len, c.len);
        // Round by round: each round's records with its marker, the tail left out.
        let (last, rounds) = committed_rounds(&path).unwrap();
        assert_eq!(last, 2);
        let rounds: Vec<(Vec<Record>, CommitRec)> = rounds.collect::<Result<_, _>>().unwrap();
        let want = |r: u32| match commit(r) {
            Record::Commit(c) => (vec![learn(r)], c),
            _ => unreachable!(),
        };
        assert_eq!(rounds, vec![want(1), want(2)]);
        let missing = dir.join("missing.jsonl");
        let (last, none) = committed_rounds(&missing).unwrap();
        assert_eq!((last, none.count()), (0, 0));

        // Garbage in a committed round.
        let bad = line(&learn(1)) + "{not json\n" + &line(&commit(1));
        std::fs::write(&path, bad).unwrap();
        let e = fold_committed(&path, drop).unwrap_err();
        assert!(e.contains("episodes.jsonl:2: bad record"), "{e}");
        assert_eq!(
            fold_committed(&dir.join("missing.jsonl"), drop)
                .unwrap()
                .last_round,
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
