//! `sparring report`: plots and tables over one or more run directories. Owns reading runs leniently (`load`), the
//! attack-diversity metric (`diversity`), metric grouping (`groups`), the plots (`chart`, drawn with `plotters`),
//! cross-play and exploitability (`play`), and the outputs: one SVG+PNG per metric group with one line per run, a
//! safety/utility Pareto plot, `metrics.csv` (run, round, metric, value; written with `csv`), the cross-play and
//! exploitability plots and CSVs when asked for, and `index.html` showing the plots and each run's resolved scenario.

pub mod chart;
pub mod diversity;
pub mod groups;
pub mod load;
pub mod play;

use anyhow::{Context, Result, bail};
use chart::{LineChart, Pareto, ParetoPoint, Plot, Series};
use indicatif::{ProgressBar, ProgressStyle};
use load::RunData;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `sparring report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Run directories written by `sparring run` (finished, in progress, or crashed).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output directory (created): index.html, metrics.csv, <plot>.svg and <plot>.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Print a machine-readable summary (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Cross-play: every attacker checkpoint against every defender checkpoint of the runs → an ASR matrix
    /// (crossplay.svg/png/csv). Plays the saved players with the first run's scenario.
    #[arg(long)]
    pub crossplay: bool,
    /// Exploitability: train a best-response attacker for K rounds against each defender checkpoint (frozen)
    /// and plot the ASR it reaches (exploitability.svg/png/csv).
    #[arg(long, value_name = "K")]
    pub exploit: Option<u32>,
    /// Evaluator scenario for --exploit (default: each run's own scenario, from its initial attacker): use one
    /// to measure runs of different recipes with one procedure, e.g. scenarios/intent-redteam.toml.
    #[arg(long, value_name = "FILE", requires = "exploit")]
    pub exploit_scenario: Option<PathBuf>,
}

/// One written plot.
#[derive(Debug, Clone, Serialize)]
pub struct PlotInfo {
    pub id: String,
    pub title: String,
    pub svg: PathBuf,
    pub png: PathBuf,
    /// Legend entries (run · metric).
    pub series: Vec<String>,
}

/// One run as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub label: String,
    pub dir: PathBuf,
    pub run_id: Option<String>,
    pub rounds: usize,
    pub last_round: Option<u32>,
    pub planned_rounds: Option<i64>,
    pub finished: bool,
    /// Metrics of the last round.
    pub last: BTreeMap<String, f64>,
    pub notes: Vec<String>,
}

/// What `report` wrote (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub index: PathBuf,
    pub csv: PathBuf,
    pub csv_rows: usize,
    pub runs: Vec<RunInfo>,
    pub plots: Vec<PlotInfo>,
    pub pareto: Vec<ParetoJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crossplay: Option<play::CrossPlay>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exploitability: Vec<play::ExploitPoint>,
}

/// A Pareto point in the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoJson {
    pub run: String,
    pub round: u32,
    /// "final" (training rollouts of the last round) or "eval" (held-out sets).
    pub kind: &'static str,
    pub asr: f64,
    pub utility: f64,
}

/// `sparring report …` from the command line.
pub fn cli(args: ReportArgs) -> Result<()> {
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let opts = play::PlayOpts {
        crossplay: args.crossplay,
        exploit: args.exploit,
        exploit_scenario: args.exploit_scenario.clone(),
    };
    let summary = build(&args.runs, &args.out, &bar, &opts)?;
    if let Some(cp) = &summary.crossplay {
        for n in &cp.notes {
            eprintln!("note: {n}");
        }
    }
    for p in &summary.exploitability {
        if let Some(n) = &p.note {
            eprintln!("note: exploitability {} r{}: {n}", p.run, p.round);
        }
    }
    bar.finish_and_clear();
    for r in &summary.runs {
        for n in &r.notes {
            eprintln!("note: {n}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "report of {} run(s): {} plots, {} CSV rows → {}",
            summary.runs.len(),
            summary.plots.len(),
            summary.csv_rows,
            summary.index.display()
        );
    }
    Ok(())
}

/// Friendly legend name of a metric.
fn metric_name(m: &str) -> String {
    match m {
        "asr" => "ASR (training rollouts)".into(),
        "benign_compliance" => "benign compliance (training)".into(),
        "faithfulness_rate" => "faithful".into(),
        "parse_rate" => "parsed".into(),
        "timing/total_ms" => "round total".into(),
        _ => {
            if let Some(rest) = m.strip_prefix("eval/") {
                let rest = rest
                    .strip_suffix("/asr")
                    .or_else(|| rest.strip_suffix("/compliance"))
                    .unwrap_or(rest);
                format!("eval {rest}")
            } else if let Some(rest) = m.strip_prefix("learn/") {
                rest.to_string()
            } else if let Some(rest) = m.strip_prefix("diversity/") {
                rest.to_string()
            } else if let Some(rest) = m.strip_prefix("reward/") {
                rest.to_string()
            } else {
                m.to_string()
            }
        }
    }
}

/// CSV text: `header`, then one line per row (fields quoted where needed).
pub fn csv_text(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// The CSV of every metric: `run,round,metric,value`, one row per (run, round, metric); and the row count.
pub fn csv(runs: &[RunData]) -> Result<(String, usize)> {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            r.rounds.iter().flat_map(move |(round, m)| {
                m.iter().map(move |(k, v)| {
                    vec![r.label.clone(), round.to_string(), k.clone(), v.to_string()]
                })
            })
        })
        .collect();
    let n = rows.len();
    Ok((csv_text(&["run", "round", "metric", "value"], rows)?, n))
}

/// Mean of the values of `m` whose key is `eval/<set>/<suffix>`.
fn eval_mean(m: &BTreeMap<String, f64>, suffix: &str) -> Option<f64> {
    let v: Vec<f64> = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("eval/") && k.ends_with(suffix) && k.matches('/').count() == 2
        })
        .map(|(_, v)| *v)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Pareto points: per run, the last round with both `asr` and `benign_compliance`, and every round with held-out
/// ASR and compliance (unweighted means over the eval sets).
pub fn pareto_points(runs: &[RunData]) -> Vec<ParetoJson> {
    let mut out = Vec::new();
    for r in runs {
        for (round, m) in &r.rounds {
            if let (Some(a), Some(u)) = (eval_mean(m, "/asr"), eval_mean(m, "/compliance")) {
                out.push(ParetoJson {
                    run: r.label.clone(),
                    round: *round,
                    kind: "eval",
                    asr: a,
                    utility: u,
                });
            }
        }
        let last =
            r.rounds.iter().rev().find_map(|(round, m)| {
                Some((*round, *m.get("asr")?, *m.get("benign_compliance")?))
            });
        if let Some((round, a, u)) = last {
            out.push(ParetoJson {
                run: r.label.clone(),
                round,
                kind: "final",
                asr: a,
                utility: u,
            });
        }
    }
    out
}

/// Write the report for `run_dirs` into `out`.
pub fn build(
    run_dirs: &[PathBuf],
    out: &Path,
    bar: &ProgressBar,
    opts: &play::PlayOpts,
) -> Result<Summary> {
    if run_dirs.is_empty() {
        bail!("give at least one RUN_DIR");
    }
    bar.set_length(run_dirs.len() as u64);
    bar.set_message("reading runs");
    let mut runs = Vec::new();
    for d in run_dirs {
        runs.push(
            load::read_run(d)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("reading run {}", d.display()))?,
        );
        bar.inc(1);
    }
    load::unique_labels(&mut runs);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    // Plots.
    let names: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.rounds.values().flat_map(|m| m.keys().cloned()))
        .collect();
    let gs = groups::groups(&names);
    let multi = runs.len() > 1;
    let mut plots: Vec<(String, String, Vec<String>, Plot)> = Vec::new();
    for g in &gs {
        let mut series = Vec::new();
        for (ri, r) in runs.iter().enumerate() {
            for (mi, m) in g.metrics.iter().enumerate() {
                let pts: Vec<(u32, f64)> = r
                    .rounds
                    .iter()
                    .filter_map(|(round, ms)| ms.get(m).map(|v| (*round, *v)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let label = match (multi, g.metrics.len() > 1) {
                    (true, true) => format!("{} · {}", r.label, metric_name(m)),
                    (true, false) => r.label.clone(),
                    (false, _) => metric_name(m),
                };
                let (color, style) = if multi { (ri, mi) } else { (mi, mi) };
                series.push(Series {
                    label,
                    color,
                    style,
                    pts,
                });
            }
        }
        let chart = LineChart {
            title: g.title.to_string(),
            subtitle: g.subtitle.to_string(),
            x_label: "round".into(),
            y_label: g.y_label.to_string(),
            y: g.y,
            series,
        };
        let labels = chart.series.iter().map(|s| s.label.clone()).collect();
        plots.push((
            g.id.to_string(),
            g.title.to_string(),
            labels,
            Plot::Line(chart),
        ));
    }
    let pj = pareto_points(&runs);
    let index_of: BTreeMap<&str, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.label.as_str(), i))
        .collect();
    let pareto = Pareto {
        title: "Safety vs utility".into(),
        subtitle: "● last round's training rollouts; ◇ held-out eval rounds (mean over eval sets); up-right is better"
            .into(),
        x_label: "safety = 1 − ASR on harmful seeds".into(),
        y_label: "utility = compliance on benign seeds".into(),
        runs: runs.iter().map(|r| r.label.clone()).collect(),
        points: pj
            .iter()
            .map(|p| ParetoPoint {
                run: index_of.get(p.run.as_str()).copied().unwrap_or(0),
                tag: format!("r{}", p.round),
                is_final: p.kind == "final",
                x: 1.0 - p.asr,
                y: p.utility,
            })
            .collect(),
    };
    plots.insert(
        0,
        (
            "pareto".into(),
            "Safety vs utility (Pareto)".into(),
            pareto.runs.clone(),
            Plot::Pareto(pareto),
        ),
    );

    // Cross-play and exploitability: play the kept checkpoints.
    let mut crossplay = None;
    let mut exploit = Vec::new();
    if opts.crossplay || opts.exploit.is_some() {
        let registry = sparring_actors::registry();
        if opts.crossplay {
            let cp = play::crossplay(&runs, &registry, &out.join("crossplay-work"), bar)?;
            let p = out.join("crossplay.csv");
            std::fs::write(&p, play::crossplay_csv(&cp)?)
                .with_context(|| format!("writing {}", p.display()))?;
            let hm = chart::Heatmap {
                title: "Cross-play: ASR of each attacker checkpoint against each defender checkpoint".into(),
                subtitle: "one faithful-gated attack per held-out harmful seed; rows attackers, columns defenders"
                    .into(),
                row_label: "attacker checkpoint".into(),
                col_label: "defender checkpoint".into(),
                rows: cp.attackers.clone(),
                cols: cp.defenders.clone(),
                cells: cp.asr.clone(),
            };
            plots.push((
                "crossplay".into(),
                "Cross-play ASR matrix".into(),
                cp.attackers.clone(),
                Plot::Heatmap(hm),
            ));
            crossplay = Some(cp);
        }
        if let Some(k) = opts.exploit {
            exploit = play::exploitability(
                &runs,
                &registry,
                k,
                opts.exploit_scenario.as_deref(),
                &out.join("exploit"),
                bar,
            )?;
            let p = out.join("exploitability.csv");
            std::fs::write(&p, play::exploit_csv(&exploit)?)
                .with_context(|| format!("writing {}", p.display()))?;
            let series: Vec<Series> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let pts: Vec<(u32, f64)> = exploit
                        .iter()
                        .filter(|p| p.run == r.label)
                        .filter_map(|p| p.asr.map(|a| (p.round, a)))
                        .collect();
                    (!pts.is_empty()).then(|| Series {
                        label: r.label.clone(),
                        color: i,
                        style: 0,
                        pts,
                    })
                })
                .collect();
            let by = match &opts.exploit_scenario {
                Some(p) => format!("evaluator {}", p.display()),
                None => "each run's scenario, from its initial attacker".into(),
            };
            let chart = LineChart {
                title: "Exploitability of the defender over the run".into(),
                subtitle: format!(
                    "ASR on held-out harmful seeds of a best-response attacker trained {k} rounds against each defender checkpoint ({by})"
                ),
                x_label: "defender checkpoint (round)".into(),
                y_label: "best-response ASR".into(),
                y: chart::YRange::Fixed(0.0, 1.0),
                series,
            };
            let labels = chart.series.iter().map(|s| s.label.clone()).collect();
            plots.push((
                "exploitability".into(),
                "Exploitability".into(),
                labels,
                Plot::Line(chart),
            ));
        }
    }

    bar.set_length((run_dirs.len() + plots.len()) as u64);
    bar.set_message("drawing plots");
    // Draw on all cores (each plot is independent): the SVG and the PNG of each.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = plots.len().div_ceil(threads).max(1);
    let drawn: Vec<Result<(String, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = plots
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|(id, _, _, plot)| {
                            let both = plot.svg().and_then(|svg| Ok((svg, plot.png()?)));
                            bar.inc(1);
                            both.with_context(|| format!("drawing the {id} plot"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if drawn.len() != plots.len() {
        bail!("drawing the plots failed");
    }
    let mut infos = Vec::new();
    for ((id, title, series, _), d) in plots.iter().zip(drawn) {
        let (svg_text, png) = d?;
        let svg = out.join(format!("{id}.svg"));
        let pngp = out.join(format!("{id}.png"));
        std::fs::write(&svg, svg_text).with_context(|| format!("writing {}", svg.display()))?;
        std::fs::write(&pngp, png).with_context(|| format!("writing {}", pngp.display()))?;
        infos.push(PlotInfo {
            id: id.clone(),
            title: title.clone(),
            svg,
            png: pngp,
            series: series.clone(),
        });
    }
    let plots = infos;

    let (csv_text, csv_rows) = csv(&runs)?;
    let csv_path = out.join("metrics.csv");
    std::fs::write(&csv_path, csv_text)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let index = out.join("index.html");
    std::fs::write(&index, html(&runs, &plots, &pj))
        .with_context(|| format!("writing {}", index.display()))?;

    let infos = runs
        .iter()
        .map(|r| RunInfo {
            label: r.label.clone(),
            dir: r.dir.clone(),
            run_id: r.run_id.clone(),
            rounds: r.rounds.len(),
            last_round: r.last_round(),
            planned_rounds: r.planned_rounds,
            finished: r.finished,
            last: r
                .last_round()
                .and_then(|k| r.rounds.get(&k))
                .cloned()
                .unwrap_or_default(),
            notes: r.notes.clone(),
        })
        .collect();
    Ok(Summary {
        out: out.to_path_buf(),
        index,
        csv: csv_path,
        csv_rows,
        runs: infos,
        plots,
        pareto: pj,
        crossplay,
        exploitability: exploit,
    })
}

fn fmt_val(k: &str, v: Option<&f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if k.contains("asr") || k.contains("compliance") || k.ends_with("_rate") => {
            format!("{:.1}%", v * 100.0)
        }
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The page: runs table, Pareto plot, curves, CSV link, resolved scenarios, notes.
fn html(runs: &[RunData], plots: &[PlotInfo], pareto: &[ParetoJson]) -> String {
    let mut h = String::new();
    let title = if runs.len() == 1 {
        format!("sparring report: {}", runs[0].label)
    } else {
        format!("sparring report: {} runs", runs.len())
    };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;margin:24px auto;max-width:1080px;color:#1e1e1e;padding:0 12px}}\
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
th{{background:#f2f2f2}}td.l,th.l{{text-align:left}}img{{max-width:100%;border:1px solid #e5e5e5;margin:8px 0}}\
pre{{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}}figure{{margin:0 0 28px}}\
figcaption{{font-size:13px;color:#555}}.note{{color:#8a5a00;font-size:13px}}\
</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    // Runs table.
    let key_cols = [
        "asr",
        "benign_compliance",
        "faithfulness_rate",
        "reward/attacker",
        "reward/defender",
        "diversity/distinct-2",
    ];
    h.push_str("<h2>Runs</h2>\n<table><tr><th class=\"l\">run</th><th class=\"l\">directory</th><th class=\"l\">run id</th><th>rounds</th><th class=\"l\">status</th>");
    for c in key_cols {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for r in runs {
        let last = r.last_round().and_then(|k| r.rounds.get(&k));
        let status = if r.finished {
            "finished".to_string()
        } else if r.rounds.is_empty() {
            "no committed round yet".to_string()
        } else {
            "in progress or interrupted".to_string()
        };
        let planned = r
            .planned_rounds
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}{}</td><td class=\"l\">{}</td>",
            escape(&r.label),
            escape(&r.dir.display().to_string()),
            escape(r.run_id.as_deref().unwrap_or("–")),
            r.last_round()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "0".into()),
            planned,
            status
        );
        for c in key_cols {
            let _ = write!(h, "<td>{}</td>", fmt_val(c, last.and_then(|m| m.get(c))));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p>Metrics of each run's last committed round. All metrics of every round: <a href=\"metrics.csv\">metrics.csv</a> (run, round, metric, value).</p>\n");
    // Plots.
    for p in plots {
        if p.id == "pareto" {
            h.push_str("<h2>Safety vs utility</h2>\n");
        } else if plots.first().is_some_and(|f| f.id == "pareto")
            && plots.get(1).is_some_and(|s| s.id == p.id)
        {
            h.push_str("<h2>Per-round curves</h2>\n");
        }
        let png = p
            .png
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let svg = p
            .svg
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<figure id=\"{id}\"><img src=\"{png}\" alt=\"{t}\"><figcaption>{t} (<a href=\"{svg}\">SVG</a>, <a href=\"{png}\">PNG</a>)</figcaption></figure>",
            id = escape(&p.id),
            png = escape(&png),
            svg = escape(&svg),
            t = escape(&p.title)
        );
        if p.id == "pareto" && !pareto.is_empty() {
            h.push_str("<table><tr><th class=\"l\">run</th><th>round</th><th class=\"l\">point</th><th>ASR</th><th>safety = 1 − ASR</th><th>utility</th></tr>\n");
            for q in pareto {
                let _ = writeln!(
                    h,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                    escape(&q.run),
                    q.round,
                    if q.kind == "final" {
                        "training rollouts"
                    } else {
                        "held-out eval"
                    },
                    q.asr,
                    1.0 - q.asr,
                    q.utility
                );
            }
            h.push_str("</table>\n");
        }
    }
    // Scenarios and notes.
    h.push_str("<h2>Resolved scenarios</h2>\n");
    for r in runs {
        let _ = writeln!(
            h,
            "<details><summary>{} — {}</summary><pre>{}</pre></details>",
            escape(&r.label),
            escape(&r.dir.join("scenario.toml").display().to_string()),
            escape(r.scenario.as_deref().unwrap_or("(scenario.toml missing)"))
        );
    }
    if runs.iter().any(|r| !r.notes.is_empty()) {
        h.push_str("<h2>Notes</h2>\n<ul>\n");
        for r in runs {
            for n in &r.notes {
                let _ = writeln!(
                    h,
                    "<li class=\"note\">{}: {}</li>",
                    escape(&r.label),
                    escape(n)
                );
            }
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// Escape text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
