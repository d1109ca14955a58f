//! The progress display of `sparring eval`: an overall bar over the phases of every mode and the running phase's
//! bar ([`Progress`]).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparring_engine::record::EvalMode;
use sparring_engine::run::EvalStep;
use sparring_engine::scenario::Loaded;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The phases of an evaluation mode, in order, as `EvalStep::phase` names them.
fn phases(mode: EvalMode, gated: bool) -> Vec<&'static str> {
    match mode {
        EvalMode::Plain => vec!["defender", "labels"],
        _ if gated => vec!["attacker", "faithfulness", "defender", "labels"],
        _ => vec!["attacker", "defender", "labels"],
    }
}

/// What a phase does, for the progress line.
fn phase_label(phase: &str) -> &str {
    match phase {
        "attacker" => "attacker rewrites",
        "faithfulness" => "faithfulness verdicts",
        "defender" => "defender answers",
        "labels" => "compliance labels",
        other => other,
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The progress of `sparring eval` on stderr (hidden with `--quiet`, `--json`, `--csv`): an overall bar over the
/// phases of all modes, e.g. `[00:00:12] ███░░ 3/6 phases · mode 2/2 (attacker) · 2 sets (xstest, harmbench) ·
/// 450 prompts`, and the current phase's bar, `defender answers · 37/120 ███░░ ETA 00:00:09`. A mode evaluates
/// all its sets together, phase by phase; a phase reports when it starts (an empty one ends there) and after each
/// `eval.chunk` requests (0, the default: once, when it is done), so a chunked evaluation moves its bar and ETA as it
/// goes.
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    phase: ProgressBar,
    modes: usize,
    /// Phases of the modes before the current one.
    done: AtomicU64,
}

impl Progress {
    /// The display for these modes, evaluated in order.
    pub fn new(modes: &[EvalMode], quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        // Gated attacker modes until a mode's scenario says otherwise.
        let total: usize = modes.iter().map(|m| phases(*m, true).len()).sum();
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(style(
            "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} phases · {msg}",
        ));
        overall.set_message("loading the scenario and its sets");
        let phase = multi.add(ProgressBar::new(0));
        phase.set_style(style("  {msg}"));
        if !quiet {
            overall.enable_steady_tick(Duration::from_millis(200));
        }
        Progress {
            multi,
            overall,
            phase,
            modes: modes.len(),
            done: AtomicU64::new(0),
        }
    }

    /// Mode `index` starts (its players are being built): the overall bar names it and what it evaluates
    /// (`scope`: its sets and prompts); `gated`: the scenario asks the judge whether rewrites are faithful.
    pub(super) fn start_mode(
        &self,
        index: usize,
        mode: EvalMode,
        gated: bool,
        scope: String,
    ) -> ModeWatch<'_> {
        let phases = phases(mode, gated);
        let assumed = self::phases(mode, true).len() as u64;
        let len = self.overall.length().unwrap_or(0);
        self.overall
            .set_length(len.saturating_sub(assumed) + phases.len() as u64);
        let offset = self.done.load(Ordering::Relaxed);
        self.overall.set_position(offset);
        self.overall.set_message(format!(
            "mode {}/{} ({mode}) · {scope}",
            index + 1,
            self.modes,
        ));
        self.phase.reset();
        self.phase.set_style(style("  {msg}"));
        self.phase.set_message("building the players");
        ModeWatch {
            p: self,
            offset,
            phases,
            shown: AtomicUsize::new(usize::MAX),
        }
    }

    /// Clears the display (the report or an error follows).
    pub fn finish(&self) {
        self.phase.finish_and_clear();
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// The sets and prompts a mode evaluates: `2 sets (xstest, harmbench) · 450 prompts` (the attacker mode rewrites
/// only `eval.attack_sets`).
pub(super) fn scope(loaded: &Loaded, mode: EvalMode) -> String {
    let only = &loaded.scenario.eval.attack_sets;
    let sets: Vec<(&str, usize)> = loaded
        .eval
        .iter()
        .filter(|(n, _)| mode == EvalMode::Plain || only.as_ref().is_none_or(|o| o.contains(n)))
        .map(|(n, seeds)| (n.as_str(), seeds.len()))
        .collect();
    let prompts: usize = sets.iter().map(|s| s.1).sum();
    let mut names: Vec<&str> = sets.iter().take(3).map(|s| s.0).collect();
    if sets.len() > 3 {
        names.push("…");
    }
    format!(
        "{} set{} ({}) · {prompts} prompts",
        sets.len(),
        if sets.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// One mode's view of the progress display, told each [`EvalStep`].
pub(super) struct ModeWatch<'p> {
    p: &'p Progress,
    /// Phases done before this mode.
    offset: u64,
    phases: Vec<&'static str>,
    /// Index of the phase the phase bar shows (`usize::MAX`: none yet).
    shown: AtomicUsize,
}

impl ModeWatch<'_> {
    fn show(&self, i: usize, len: usize) {
        let bar = &self.p.phase;
        if self.shown.swap(i, Ordering::Relaxed) != i {
            bar.reset();
            bar.set_length(len as u64);
            bar.set_style(style("  {msg} · {pos}/{len} {bar:30} ETA {eta}"));
            bar.set_message(phase_label(self.phases[i]).to_string());
        }
        bar.set_length(len as u64);
    }

    pub(super) fn step(&self, s: &EvalStep) {
        let Some(i) = self.phases.iter().position(|p| *p == s.phase) else {
            return;
        };
        let finished = s.done >= s.total;
        self.p
            .overall
            .set_position(self.offset + i as u64 + u64::from(finished));
        if finished && i + 1 < self.phases.len() {
            // The next phase runs now; it has at most as many requests as this one (rewrites that parsed, then
            // were faithful, then were answered): its bar starts with that bound until it reports.
            self.show(i + 1, s.total);
            self.p.phase.set_position(0);
        } else {
            self.show(i, s.total);
            self.p.phase.set_position(s.done as u64);
        }
    }

    /// The mode is done (or failed): the overall bar moves past its phases.
    pub(super) fn end(&self) {
        let n = self.offset + self.phases.len() as u64;
        self.p.done.store(n, Ordering::Relaxed);
        self.p.overall.set_position(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The display follows the phases of each mode: the overall bar counts phases over the modes, the phase bar
    /// shows the running phase (the next one as soon as one is done) with its count.
    #[test]
    fn progress_counts_phases_over_modes() {
        let p = Progress::new(&[EvalMode::Plain, EvalMode::Attacker], true);
        assert_eq!(p.overall.length(), Some(6));
        let w = p.start_mode(0, EvalMode::Plain, true, "2 sets (a, b) · 5 prompts".into());
        assert_eq!(
            p.overall.message(),
            "mode 1/2 (plain) · 2 sets (a, b) · 5 prompts"
        );
        assert_eq!(p.phase.message(), "building the players");
        let step = |w: &ModeWatch<'_>, phase, done, total| {
            w.step(&EvalStep { phase, done, total });
            (
                p.overall.position(),
                p.phase.message(),
                p.phase.position(),
                p.phase.length(),
            )
        };
        // A phase tells when it starts.
        assert_eq!(
            step(&w, "defender", 0, 5),
            (0, "defender answers".into(), 0, Some(5))
        );
        assert_eq!(
            step(&w, "defender", 2, 5),
            (0, "defender answers".into(), 2, Some(5))
        );
        assert_eq!(
            step(&w, "defender", 5, 5),
            (1, "compliance labels".into(), 0, Some(5))
        );
        assert_eq!(step(&w, "labels", 5, 5).0, 2);
        w.end();
        // Without the faithfulness gate the attacker mode has three phases.
        let w = p.start_mode(1, EvalMode::Attacker, false, "1 set (a) · 3 prompts".into());
        assert_eq!(p.overall.length(), Some(5));
        assert!(p.overall.message().starts_with("mode 2/2 (attacker)"));
        assert_eq!(
            step(&w, "attacker", 3, 3),
            (3, "defender answers".into(), 0, Some(3))
        );
        // A phase that does not report (one without requests never does) is passed by the next that does.
        assert_eq!(
            step(&w, "labels", 3, 3),
            (5, "compliance labels".into(), 3, Some(3))
        );
        w.end();
        assert_eq!(p.overall.position(), 5);
        p.finish();
    }
}
