//! The commit pipeline and the run directory's writes: a played round's records are built and serialized off the
//! game thread, folded into the run's summary and committed through the replay actor in round order
//! ([`CommitPipeline`]), with at most [`Behind`] rounds waiting; and the run directory's files (atomic writes,
//! the line-per-round files).

use super::meters::Meters;
use super::records::RoundLog;
use super::{Progress, RunError, Timings, ms, rerr};
use crate::actor::{Commit, GameHandle, lock};
use crate::record::{CommitRec, Metrics, Record, Tally, metrics};
use crate::replay::CommitJob;
use crate::vocab::Slot;
use serde::Serialize;
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Rounds played but not yet committed hold the states they write until their commit.
pub(super) struct Behind;

impl Behind {
    /// At most this many rounds wait for their commit…
    const ROUNDS: usize = 32;
    /// …and, beyond the newest, they hold at most this many bytes of states.
    const BYTES: usize = 256 << 20;

    /// With `waiting` rounds (the newest included) not yet committed, the older ones holding `bytes` of
    /// states, must the game wait for the oldest?
    pub(super) fn over(waiting: usize, bytes: usize) -> bool {
        waiting > Self::ROUNDS || (waiting > 1 && bytes > Self::BYTES)
    }
}

/// A round's records on their way to the log.
pub(super) struct CommitPipeline {
    pub(super) run: String,
    pub(super) round: u32,
    pub(super) checkpoint: bool,
    /// `checkpoints.keep_last`.
    pub(super) keep_last: Option<u32>,
    pub(super) log: RoundLog,
    /// States the round replaced: freed on the blocking thread (freeing a model's state returns its pages to
    /// the system, which takes a while).
    pub(super) retired: Vec<Arc<Vec<u8>>>,
    pub(super) states: Vec<(String, Arc<Vec<u8>>)>,
    /// Told when the round before is committed (none for the first round of this process): a round's records
    /// are folded and committed only after those of the round before.
    pub(super) after: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Tells the round after.
    pub(super) committed: tokio::sync::oneshot::Sender<()>,
    /// The run's summary so far: the round's records are folded in, then freed on the blocking thread.
    pub(super) tally: Arc<std::sync::Mutex<Tally>>,
}

/// A committed round.
pub(super) struct Committed {
    pub(super) round: u32,
    pub(super) metrics: Metrics,
}

impl CommitPipeline {
    /// Serialize the round's records (on a blocking thread) while the rounds before it commit and its adaptive
    /// evaluation plays; once that evaluation has ended (its sub-run complete on disk) and the round before is
    /// committed, add the evaluation's records, compute the metrics, fold the records into the run's summary
    /// (in log order), and commit through the replay actor.
    pub(super) async fn run(self, game: GameHandle) -> Result<Committed, RunError> {
        let CommitPipeline {
            run,
            round,
            checkpoint,
            keep_last,
            mut log,
            retired,
            states,
            tally,
            after,
            committed,
        } = self;
        // The round's records as they will be read back from the log, while the rounds before it commit and
        // its adaptive evaluation plays.
        let deferred = log.deferred.take();
        let tail = log.tail.len();
        let (mut lines, mut recs) = tokio::task::spawn_blocking(move || {
            drop(retired);
            serialized(round, log.records())
        })
        .await
        .map_err(|e| rerr(format!("internal: serializing round {round}: {e}")))??;
        // The adaptive evaluation's records go among the round's evaluation records (the end of the round's
        // records is its tail).
        let adaptive = match deferred {
            Some((at, d)) => Some((lines.len() - tail + at.min(tail), d.records().await?)),
            None => None,
        };
        if let Some(after) = after
            && after.await.is_err()
        {
            return Err(rerr(format!(
                "round {round} not committed: the round before it was not"
            )));
        }
        // The round's metrics, and its records folded into the run's summary, in log order.
        let (lines, metrics) = tokio::task::spawn_blocking(move || {
            if let Some((at, evals)) = adaptive {
                let (l, r) = serialized(round, evals.into_iter().map(Record::Eval).collect())?;
                lines.splice(at..at, l);
                recs.splice(at..at, r);
            }
            let m = roundtrip(&metrics(&recs))?;
            let commit = Record::Commit(CommitRec {
                run,
                round,
                records: recs.len(),
                metrics: m.clone(),
            });
            lines.push(json(&commit)?);
            let mut t = lock(&tally);
            for r in &recs {
                t.add(r);
            }
            Ok::<_, RunError>((lines, m))
        })
        .await
        .map_err(|e| rerr(format!("internal: folding round {round}: {e}")))??;
        let job = CommitJob {
            round,
            checkpoint,
            keep_last,
            lines,
            states,
        };
        game.call(Slot::Replay, Commit(job))
            .await
            .map_err(RunError)?;
        let _ = committed.send(());
        Ok(Committed { round, metrics })
    }
}

/// The rounds played whose commits have not been reported yet, oldest first: each with its commit task, its
/// timings and the bytes of states it holds. A commit is reported (metrics.jsonl, timings.jsonl, the run's
/// per-round metrics, `progress`) once it completes, in order, while the next round plays (or after the last).
pub(super) struct Commits<'p> {
    pending: VecDeque<(JoinHandle<Result<Committed, RunError>>, Timings, usize)>,
    /// Told when the newest round is committed: the next round's commit waits for it.
    last_commit: Option<oneshot::Receiver<()>>,
    metrics_file: Appender,
    timings_file: Appender,
    rounds: u32,
    per_round: &'p mut Vec<(u32, Metrics)>,
    progress: &'p mut (dyn FnMut(&Progress) + Send),
    /// The reported rounds' timings.
    pub(super) timings: Vec<Timings>,
}

impl<'p> Commits<'p> {
    pub(super) fn new(
        run_dir: &Path,
        rounds: u32,
        per_round: &'p mut Vec<(u32, Metrics)>,
        progress: &'p mut (dyn FnMut(&Progress) + Send),
    ) -> Self {
        Commits {
            pending: VecDeque::new(),
            last_commit: None,
            metrics_file: Appender::new(run_dir.join("metrics.jsonl")),
            timings_file: Appender::new(run_dir.join("timings.jsonl")),
            rounds,
            per_round,
            progress,
            timings: Vec::new(),
        }
    }

    /// Report a committed round.
    fn report(&mut self, c: Committed, tm: Timings) -> Result<(), RunError> {
        self.metrics_file
            .append(&metrics_line(c.round, &c.metrics)?)?;
        self.timings_file.append(&json(&tm)?)?;
        self.per_round.push((c.round, c.metrics.clone()));
        (self.progress)(&Progress {
            round: c.round,
            rounds: self.rounds,
            metrics: c.metrics,
            timings: tm.clone(),
        });
        self.timings.push(tm);
        Ok(())
    }

    /// Play a round (`play`) while reporting earlier rounds' commits as they complete.
    pub(super) async fn beside<F: Future>(&mut self, play: F) -> Result<F::Output, RunError> {
        tokio::pin!(play);
        loop {
            tokio::select! {
                biased;
                played = &mut play => return Ok(played),
                c = async {
                    match self.pending.front_mut() {
                        Some((h, _, _)) => h.await,
                        None => std::future::pending().await,
                    }
                }, if !self.pending.is_empty() => {
                    if let Some((_, tm, _)) = self.pending.pop_front() {
                        self.report(joined(c)?, tm)?;
                    }
                }
            }
        }
    }

    /// The next round's commit's links: what it tells when it is committed, and what tells it that the round
    /// before is (none for the first round of this process).
    pub(super) fn chain(&mut self) -> (oneshot::Sender<()>, Option<oneshot::Receiver<()>>) {
        let (committed, next_after) = oneshot::channel();
        (committed, self.last_commit.replace(next_after))
    }

    /// Rounds behind their commit hold states: with the next one (not yet pushed) past the bound, wait for the
    /// oldest.
    pub(super) async fn wait_behind(&mut self) -> Result<(), RunError> {
        while Behind::over(
            self.pending.len() + 1,
            self.pending.iter().map(|p| p.2).sum(),
        ) {
            let Some((h, tm, _)) = self.pending.pop_front() else {
                break;
            };
            self.report(joined(h.await)?, tm)?;
        }
        Ok(())
    }

    /// A round's commit, behind the earlier ones: its task, its timings and the bytes of states it holds.
    pub(super) fn push(
        &mut self,
        handle: JoinHandle<Result<Committed, RunError>>,
        tm: Timings,
        bytes: usize,
    ) {
        self.pending.push_back((handle, tm, bytes));
    }

    /// Wait for the remaining commits and report them. The run ends when its last round is committed: the wait
    /// counts in that round's window (with the compute of an adaptive evaluation still playing).
    pub(super) async fn finish(&mut self, meters: &Meters) -> Result<(), RunError> {
        let t = Instant::now();
        while let Some((h, mut tm, _)) = self.pending.pop_front() {
            let c = joined(h.await)?;
            if self.pending.is_empty() {
                let now = Instant::now();
                tm.commit_ms += ms(t);
                tm.total_ms += ms(t);
                tm.roles_ms += meters.waits.take_ms(now);
                tm.compute_ms += meters.compute.take_ms(t, now, &[]);
                tm.adaptive_ms += meters.beside.take_ms(t, now, &[]);
            }
            self.report(c, tm)?;
        }
        Ok(())
    }
}

/// A round's records as log lines, and as they will be read back from the log: metrics are computed from
/// those, so that `sparring replay` reproduces them exactly (JSON float parsing is deterministic but not
/// always exact). Non-finite numbers are logged as missing.
fn serialized(
    round: u32,
    mut records: Vec<Record>,
) -> Result<(Vec<String>, Vec<Record>), RunError> {
    let changed = records
        .iter_mut()
        .map(Record::keep_finite)
        .filter(|c| *c)
        .count();
    if changed > 0 {
        tracing::warn!(
            round,
            records = changed,
            "non-finite numbers (NaN or infinity) in the round's records are logged as missing"
        );
    }
    let mut lines = Vec::with_capacity(records.len() + 1);
    for r in &records {
        lines.push(json(r)?);
    }
    let mut recs = Vec::with_capacity(lines.len());
    for l in &lines {
        recs.push(
            serde_json::from_str::<Record>(l)
                .map_err(|e| rerr(format!("internal: record round trip: {e}")))?,
        );
    }
    Ok((lines, recs))
}

fn joined<T>(r: Result<Result<T, RunError>, tokio::task::JoinError>) -> Result<T, RunError> {
    r.map_err(|e| rerr(format!("internal: commit task: {e}")))?
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| rerr(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| rerr(format!("{}: {e}", path.display())))
}

/// A round's line of `metrics.jsonl`.
pub(super) fn metrics_line(round: u32, m: &Metrics) -> Result<String, RunError> {
    json(&serde_json::json!({"round": round, "metrics": m}))
}

/// A line-per-round file of the run directory (`metrics.jsonl`, `timings.jsonl`), opened once for appending: a
/// round's line is one `write` (opening the file and writing the line and its newline apart was six system
/// calls a round per file, tens of µs under nested virtualization).
struct Appender {
    path: PathBuf,
    file: Option<std::fs::File>,
    line: String,
}

impl Appender {
    fn new(path: PathBuf) -> Self {
        Appender {
            path,
            file: None,
            line: String::new(),
        }
    }

    fn append(&mut self, line: &str) -> Result<(), RunError> {
        let err = |e: std::io::Error| rerr(format!("{}: {e}", self.path.display()));
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?,
            ),
        };
        self.line.clear();
        self.line.push_str(line);
        self.line.push('\n');
        file.write_all(self.line.as_bytes()).map_err(err)
    }
}

/// Metrics as they read back from JSON.
pub fn roundtrip(m: &Metrics) -> Result<Metrics, RunError> {
    serde_json::from_str(&json(m)?).map_err(|e| rerr(format!("internal: metrics round trip: {e}")))
}

pub(super) fn json<T: Serialize>(v: &T) -> Result<String, RunError> {
    serde_json::to_string(v).map_err(|e| rerr(format!("serialize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds wait for their commit up to a count, and beyond the newest up to a size of held states.
    #[test]
    fn rounds_behind_their_commit_are_bounded() {
        assert!(!Behind::over(1, 0));
        assert!(!Behind::over(Behind::ROUNDS, 0));
        assert!(Behind::over(Behind::ROUNDS + 1, 0), "too many rounds");
        assert!(
            !Behind::over(1, Behind::BYTES + 1),
            "the newest round alone never waits"
        );
        assert!(Behind::over(2, Behind::BYTES + 1), "too many bytes");
        assert!(!Behind::over(2, 0));
    }
}
