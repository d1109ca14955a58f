//! The pictures of `sparring eval --out`: heatmaps and grouped bars of ASR and over-refusal per set, topic and mode.

use super::summary::EvalReport;
use crate::report::chart::{BarPanel, Bars, Heatmap, Plot};
use sparring_engine::roles::Category;

/// The rows of the reports on `cat`'s side: each set (topic `None`), followed by its topics, in the reports' order.
type RowKey = (String, Option<String>);

fn row_keys(reps: &[EvalReport], cat: Category) -> Vec<RowKey> {
    let mut rows: Vec<RowKey> = Vec::new();
    for r in reps {
        for x in &r.sets {
            if x.category != cat {
                continue;
            }
            let topics = r
                .topics
                .iter()
                .filter(|t| t.set == x.set && t.category == cat)
                .map(|t| (x.set.clone(), t.topic.clone()));
            for k in std::iter::once((x.set.clone(), None)).chain(topics) {
                if !rows.contains(&k) {
                    rows.push(k);
                }
            }
        }
    }
    rows
}

/// The plotted rate of a row in a report: ASR on the harmful side, over-refusal on the benign one.
fn plotted(r: &EvalReport, (set, topic): &RowKey, cat: Category) -> Option<f64> {
    let row = r
        .sets
        .iter()
        .chain(&r.topics)
        .find(|x| &x.set == set && &x.topic == topic && x.category == cat)?;
    match cat {
        Category::Harmful => row.rate,
        Category::Benign => row.over_refusal,
    }
}

fn row_label((set, topic): &RowKey) -> String {
    match topic {
        Some(t) => format!("{set}: {t}"),
        None => set.clone(),
    }
}

/// The two sides the pictures show: (file stem of the heatmap, side, title, the rate's short name).
const SIDES: [(&str, Category, &str, &str); 2] = [
    (
        "asr",
        Category::Harmful,
        "Attack success rate on harmful prompts",
        "ASR",
    ),
    (
        "over_refusal",
        Category::Benign,
        "Over-refusal on benign prompts",
        "over-refusal",
    ),
];

/// The pictures of one or more reports (`--out`; a report per mode): `asr` (harmful rows) and `over_refusal`
/// (benign rows), each a heatmap of the rate per set (and per topic, `set: topic` under its set) and mode, 1 drawn
/// red in both; `bars`, grouped bars of the rate per set and mode (a panel of ASR on the harmful sets, one of
/// over-refusal on the benign sets, a bar per mode); and `topics`, the same per topic, when a set has topics.
pub fn plots(reps: &[EvalReport]) -> Vec<(&'static str, Plot)> {
    let modes: Vec<String> = reps.iter().map(|r| r.mode.clone()).collect();
    let source = reps
        .first()
        .and_then(|r| r.suite.clone())
        .unwrap_or_else(|| "sparring eval".into());
    let mut out = Vec::new();
    for (name, cat, title, _) in SIDES {
        let rows = row_keys(reps, cat);
        if rows.is_empty() {
            continue;
        }
        let cells = rows
            .iter()
            .map(|k| reps.iter().map(|r| plotted(r, k, cat)).collect())
            .collect();
        out.push((
            name,
            Plot::Heatmap(Heatmap {
                title: title.to_string(),
                subtitle: format!("{source}: per set, then per topic (set: topic); grey: none"),
                row_label: "set / topic".into(),
                col_label: "mode".into(),
                rows: rows.iter().map(row_label).collect(),
                cols: modes.clone(),
                cells,
            }),
        ));
    }
    for (name, topics, title) in [
        ("bars", false, "Rates per set and mode"),
        ("topics", true, "Rates per topic and mode"),
    ] {
        let panels: Vec<BarPanel> = SIDES
            .iter()
            .filter_map(|&(_, cat, side, short)| {
                let rows: Vec<RowKey> = row_keys(reps, cat)
                    .into_iter()
                    .filter(|k| k.1.is_some() == topics)
                    .collect();
                (!rows.is_empty()).then(|| BarPanel {
                    title: format!("{side}{}", if topics { ", per topic" } else { ", per set" }),
                    x_label: short.to_string(),
                    groups: rows.iter().map(row_label).collect(),
                    values: rows
                        .iter()
                        .map(|k| reps.iter().map(|r| plotted(r, k, cat)).collect())
                        .collect(),
                })
            })
            .collect();
        if panels.is_empty() {
            continue;
        }
        out.push((
            name,
            Plot::Bars(Bars {
                title: title.to_string(),
                subtitle: format!(
                    "{source}: ASR on harmful prompts, over-refusal (1 − compliance) on benign ones; a bar per mode"
                ),
                series: modes.clone(),
                panels,
            }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::summary::SetReport;
    use super::*;
    use crate::report::chart::tests::svg_texts;

    fn row(set: &str, topic: Option<&str>, cat: Category, rate: f64) -> SetReport {
        SetReport {
            set: set.into(),
            topic: topic.map(str::to_string),
            category: cat,
            metric: if cat == Category::Harmful {
                "asr"
            } else {
                "compliance"
            },
            n: 10,
            complied: (rate * 10.0).round() as usize,
            unlabelled: 0,
            invalid: 0,
            rate: Some(rate),
            over_refusal: (cat == Category::Benign).then_some(1.0 - rate),
            strongreject: None,
        }
    }

    fn report(mode: &str, asr: f64, compliance: f64) -> EvalReport {
        EvalReport {
            scenario: "s.toml".into(),
            suite: Some("mini".into()),
            mode: mode.into(),
            round: None,
            sets: vec![
                row("xstest", None, Category::Benign, compliance),
                row("harmbench", None, Category::Harmful, asr),
            ],
            topics: vec![
                row("xstest", Some("homonyms"), Category::Benign, compliance),
                row("harmbench", Some("cybercrime"), Category::Harmful, asr),
            ],
            asr: Some(asr),
            compliance: Some(compliance),
            over_refusal: Some(1.0 - compliance),
        }
    }

    /// `--out`'s bar charts: per set and per topic, a bar per mode with its value, ASR for the harmful set and
    /// over-refusal for the benign one.
    #[test]
    fn bars_per_set_and_per_topic_show_each_mode_and_value() {
        let reps = [report("plain", 0.7, 0.9), report("attacker", 0.4, 0.75)];
        let plots = plots(&reps);
        let names: Vec<&str> = plots.iter().map(|p| p.0).collect();
        assert_eq!(names, ["asr", "over_refusal", "bars", "topics"]);
        let svg = |name: &str| {
            let (_, p) = plots.iter().find(|p| p.0 == name).unwrap();
            svg_texts(&p.svg().unwrap())
        };
        let bars = svg("bars");
        // ASR 0.70 / 0.40 per mode on harmbench; over-refusal 0.10 / 0.25 on xstest.
        for t in [
            "harmbench",
            "xstest",
            "plain",
            "attacker",
            "0.70",
            "0.40",
            "0.10",
            "0.25",
        ] {
            assert!(bars.iter().any(|x| x == t), "bars.svg lacks {t}: {bars:?}");
        }
        assert!(
            !bars.iter().any(|x| x.contains("homonyms")),
            "per-set bars show no topic"
        );
        let topics = svg("topics");
        for t in ["xstest: homonyms", "harmbench: cybercrime", "0.70", "0.25"] {
            assert!(
                topics.iter().any(|x| x == t),
                "topics.svg lacks {t}: {topics:?}"
            );
        }
        // No topic rows: no topics chart.
        let bare: Vec<EvalReport> = reps
            .iter()
            .cloned()
            .map(|mut r| {
                r.topics.clear();
                r
            })
            .collect();
        assert!(!plots_names(&bare).contains(&"topics"));
    }

    fn plots_names(reps: &[EvalReport]) -> Vec<&'static str> {
        plots(reps).into_iter().map(|p| p.0).collect()
    }
}
