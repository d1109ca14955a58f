//! Reading a run directory for the report, leniently: `metrics.jsonl`, `episodes.jsonl` (attacker rewrites for the
//! diversity metrics, commit markers), `timings.jsonl`, `run.json`, `scenario.toml`. A run may be in progress or may
//! have crashed mid-round: a torn or unparseable line is skipped with a note naming the file and line, never an
//! error; missing files give notes. Only an unreadable directory is an error.

use super::diversity::distinct_n;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metric name → value for one round.
pub type Metrics = BTreeMap<String, f64>;

/// Everything the report needs from one run directory.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// Short unique name used in legends and the CSV `run` column (directory name, made unique).
    pub label: String,
    pub dir: PathBuf,
    /// `run.json` → `run_id`.
    pub run_id: Option<String>,
    /// The resolved scenario text (`scenario.toml`).
    pub scenario: Option<String>,
    /// The scenario's `game.name`, `game.seed` and `game.rounds` when readable.
    pub game_name: Option<String>,
    pub seed: Option<i64>,
    pub planned_rounds: Option<i64>,
    /// Round → metrics (from `metrics.jsonl`, commit markers, derived diversity, timings).
    pub rounds: BTreeMap<u32, Metrics>,
    /// `summary.json` exists (the run finished).
    pub finished: bool,
    /// Things skipped or missing, each naming the file (and line).
    pub notes: Vec<String>,
}

impl RunData {
    /// Last round with metrics.
    pub fn last_round(&self) -> Option<u32> {
        self.rounds.keys().next_back().copied()
    }
}

/// Lines of a JSONL file parsed as JSON objects, with notes for torn or unparseable lines. `Ok(None)`: no file.
fn read_jsonl(path: &Path, notes: &mut Vec<String>) -> Result<Option<Vec<(usize, Value)>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The piece after the last newline: empty for a well-formed file, a torn line otherwise.
    let tail = pieces.pop().unwrap_or_default();
    let n_lines = pieces.len();
    for (i, line) in pieces.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.is_object() => out.push((i + 1, v)),
            Ok(_) => notes.push(format!(
                "{}:{}: not a JSON object, skipped",
                path.display(),
                i + 1
            )),
            Err(e) => {
                let what = if i + 1 == n_lines && tail.is_empty() {
                    "last line"
                } else {
                    "line"
                };
                notes.push(format!(
                    "{}:{}: {what} does not parse ({e}), skipped",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    if !tail.iter().all(u8::is_ascii_whitespace) {
        notes.push(format!(
            "{}:{}: torn last line ({} bytes without a newline: a run in progress or a crash), skipped",
            path.display(),
            n_lines + 1,
            tail.len()
        ));
    }
    Ok(Some(out))
}

fn round_of(v: &Value) -> Option<u32> {
    v.get("round")
        .and_then(Value::as_u64)
        .and_then(|r| u32::try_from(r).ok())
}

fn numbers(obj: Option<&Value>) -> Metrics {
    let mut m = Metrics::new();
    if let Some(Value::Object(map)) = obj {
        for (k, v) in map {
            if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                m.insert(k.clone(), x);
            }
        }
    }
    m
}

/// Read one run directory. `label` is assigned later by `unique_labels`.
pub fn read_run(dir: &Path) -> Result<RunData, String> {
    let md = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !md.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let mut run = RunData {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let notes = &mut run.notes;

    match std::fs::read_to_string(dir.join("run.json")) {
        Ok(t) => match serde_json::from_str::<Value>(&t) {
            Ok(v) => run.run_id = v.get("run_id").and_then(Value::as_str).map(str::to_string),
            Err(e) => notes.push(format!("{}: {e}", dir.join("run.json").display())),
        },
        Err(_) => notes.push(format!("{}: missing", dir.join("run.json").display())),
    }
    match std::fs::read_to_string(dir.join("scenario.toml")) {
        Ok(t) => {
            match t.parse::<toml::Table>() {
                Ok(tab) => {
                    let game = tab.get("game").and_then(|g| g.as_table());
                    run.game_name = game
                        .and_then(|g| g.get("name"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    run.seed = game
                        .and_then(|g| g.get("seed"))
                        .and_then(|v| v.as_integer());
                    run.planned_rounds = game
                        .and_then(|g| g.get("rounds"))
                        .and_then(|v| v.as_integer());
                }
                Err(e) => notes.push(format!(
                    "{}: {}",
                    dir.join("scenario.toml").display(),
                    e.message()
                )),
            }
            run.scenario = Some(t);
        }
        Err(_) => notes.push(format!("{}: missing", dir.join("scenario.toml").display())),
    }
    run.finished = dir.join("summary.json").is_file();

    // Per-round metrics as the run logged them.
    let mpath = dir.join("metrics.jsonl");
    let mut seen_rounds = BTreeMap::<u32, usize>::new();
    if let Some(lines) = read_jsonl(&mpath, notes)? {
        for (ln, v) in lines {
            let Some(r) = round_of(&v) else {
                notes.push(format!("{}:{ln}: no `round`, skipped", mpath.display()));
                continue;
            };
            *seen_rounds.entry(r).or_default() += 1;
            // A resumed run may log a round again: the later line wins.
            run.rounds.insert(r, numbers(v.get("metrics")));
        }
    } else {
        notes.push(format!("{}: missing", mpath.display()));
    }
    for (r, n) in seen_rounds {
        if n > 1 {
            notes.push(format!(
                "{}: round {r} logged {n} times (resumed run?), the last one is used",
                mpath.display()
            ));
        }
    }

    // The replay log: commit markers (metrics of rounds missing from metrics.jsonl) and the rewrites.
    let epath = dir.join("episodes.jsonl");
    let mut rewrites: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    if let Some(lines) = read_jsonl(&epath, notes)? {
        let mut committed: Option<u32> = None;
        for (_, v) in &lines {
            if v.get("type").and_then(Value::as_str) == Some("commit")
                && let Some(r) = round_of(v)
            {
                committed = Some(committed.map_or(r, |c| c.max(r)));
                run.rounds
                    .entry(r)
                    .or_insert_with(|| numbers(v.get("metrics")));
            }
        }
        let mut uncommitted = 0usize;
        for (_, v) in &lines {
            if v.get("type").and_then(Value::as_str) != Some("rewrite") {
                continue;
            }
            let Some(r) = round_of(v) else { continue };
            if committed.is_some_and(|c| r > c) {
                uncommitted += 1;
                continue;
            }
            rewrites.entry(r).or_default();
            if let Some(p) = v.get("parsed").and_then(Value::as_str) {
                rewrites.entry(r).or_default().push(p.to_string());
            }
        }
        if uncommitted > 0 {
            notes.push(format!(
                "{}: {uncommitted} rewrites after the last commit marker (an unfinished round) are left out",
                epath.display()
            ));
        }
    } else {
        notes.push(format!(
            "{}: missing (no diversity metrics)",
            epath.display()
        ));
    }
    for (r, texts) in &rewrites {
        let m = run.rounds.entry(*r).or_default();
        for n in [1usize, 2] {
            if let Some(d) = distinct_n(texts, n) {
                m.insert(format!("diversity/distinct-{n}"), d);
            }
        }
    }

    // Wall times (not deterministic; kept for the CSV and one plot).
    let tpath = dir.join("timings.jsonl");
    if let Some(lines) = read_jsonl(&tpath, notes)? {
        for (_, v) in lines {
            let Some(r) = round_of(&v) else { continue };
            // Only rounds that have metrics: timings of an uncommitted round are not shown.
            if let Some(m) = run.rounds.get_mut(&r) {
                for (k, x) in numbers(Some(&v)) {
                    if k != "round" {
                        m.insert(format!("timing/{k}"), x);
                    }
                }
            }
        }
    }
    Ok(run)
}

/// Give every run a short unique label: the directory name, disambiguated with the run id or a counter.
pub fn unique_labels(runs: &mut [RunData]) {
    let base: Vec<String> = runs
        .iter()
        .map(|r| {
            let canon = std::fs::canonicalize(&r.dir).unwrap_or_else(|_| r.dir.clone());
            canon
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| r.dir.display().to_string())
        })
        .collect();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for (i, run) in runs.iter_mut().enumerate() {
        let mut label = base[i].clone();
        if base.iter().filter(|b| **b == base[i]).count() > 1
            && let Some(id) = &run.run_id
        {
            label = format!("{label} ({id})");
        }
        let n = used.entry(label.clone()).or_default();
        *n += 1;
        if *n > 1 {
            label = format!("{label} #{n}");
        }
        run.label = label;
    }
}
