//! The report of an evaluation: a row per set and category (and per topic), over-refusal by name, as a table,
//! CSV and JSON ([`summarize`] turns evaluation records into it).

use anyhow::Result;
use serde::Serialize;
use sparring_engine::record::{EvalRec, eval_rate, eval_score};
use sparring_engine::roles::Category;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One eval set (and category: XSTest mixes safe and unsafe prompts), or one topic of it.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub set: String,
    /// The seeds' topic (a row per topic of a set whose seeds have them), `None` for the whole set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub category: Category,
    /// `asr` (harmful) or `compliance` (benign).
    pub metric: &'static str,
    pub n: usize,
    /// Answers labelled as compliance.
    pub complied: usize,
    /// Answers the judge could not label (left out of the rate).
    pub unlabelled: usize,
    /// With the attacker: rewrites that did not parse or were judged unfaithful (failed attacks on harmful seeds;
    /// left out on benign ones).
    pub invalid: usize,
    pub rate: Option<f64>,
    /// Benign prompts: 1 − compliance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_refusal: Option<f64>,
    /// Harmful prompts, with a judge that grades its labels (`complied = "strongreject"`): the mean StrongREJECT
    /// score (invalid rewrites count 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strongreject: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub scenario: PathBuf,
    /// The suite evaluated on (`--suite`: its `name`, else its file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// `plain` or `attacker`.
    pub mode: String,
    /// The round whose saved players were evaluated (a run directory), `None` for a scenario's own players.
    pub round: Option<u32>,
    pub sets: Vec<SetReport>,
    /// The sets' rows per topic (for sets whose seeds have topics).
    pub topics: Vec<SetReport>,
    /// Over all harmful / benign answers.
    pub asr: Option<f64>,
    pub compliance: Option<f64>,
    pub over_refusal: Option<f64>,
}

pub(super) const COLUMNS: [&str; 11] = [
    "set",
    "topic",
    "category",
    "metric",
    "n",
    "complied",
    "unlabelled",
    "invalid",
    "rate",
    "over_refusal",
    "strongreject",
];

impl EvalReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}{} ({} prompts{})\n",
            self.scenario.display(),
            self.suite
                .as_ref()
                .map(|n| format!(", suite {n}"))
                .unwrap_or_default(),
            self.mode,
            self.round
                .map(|r| format!(", players of round {r}"))
                .unwrap_or_default()
        );
        let rows: Vec<(String, &SetReport)> = self
            .sets
            .iter()
            .flat_map(|x| {
                let topics = self
                    .topics
                    .iter()
                    .filter(move |t| t.set == x.set && t.category == x.category)
                    .map(|t| (format!("  {}", t.topic.as_deref().unwrap_or("")), t));
                std::iter::once((x.set.clone(), x)).chain(topics)
            })
            .collect();
        let w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(3).max(3);
        // The StrongREJECT column only where a judge graded.
        let graded = rows.iter().any(|(_, x)| x.strongreject.is_some());
        s.push_str(&format!(
            "{:<w$} {:>8} {:>11} {:>5} {:>8} {:>11} {:>8} {:>8} {:>12}{}\n",
            "set",
            "category",
            "metric",
            "n",
            "complied",
            "unlabelled",
            "invalid",
            "rate",
            "over-refusal",
            if graded { "  strongreject" } else { "" }
        ));
        let pct = |v: Option<f64>| {
            v.map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into())
        };
        for (name, x) in rows {
            let sr = match (graded, x.strongreject) {
                (false, _) => String::new(),
                (true, Some(v)) => format!(" {v:>13.3}"),
                (true, None) => format!(" {:>13}", "-"),
            };
            s.push_str(&format!(
                "{:<w$} {:>8} {:>11} {:>5} {:>8} {:>11} {:>8} {:>8} {:>12}{sr}\n",
                name,
                x.category.as_str(),
                x.metric,
                x.n,
                x.complied,
                x.unlabelled,
                x.invalid,
                pct(x.rate),
                pct(x.over_refusal),
            ));
        }
        s.push_str(&format!(
            "ASR (harmful) {}   compliance (benign) {}   over-refusal (benign) {}\n",
            pct(self.asr),
            pct(self.compliance),
            pct(self.over_refusal)
        ));
        s
    }

    /// The report as CSV: a row per set and category, then per topic (`topic` empty for a whole set).
    pub fn csv(&self) -> Result<String> {
        crate::report::csv_text(&COLUMNS, self.rows())
    }

    pub(super) fn rows(&self) -> Vec<Vec<String>> {
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        self.sets
            .iter()
            .chain(&self.topics)
            .map(|x| {
                vec![
                    x.set.clone(),
                    x.topic.clone().unwrap_or_default(),
                    x.category.as_str().to_string(),
                    x.metric.to_string(),
                    x.n.to_string(),
                    x.complied.to_string(),
                    x.unlabelled.to_string(),
                    x.invalid.to_string(),
                    num(x.rate),
                    num(x.over_refusal),
                    num(x.strongreject),
                ]
            })
            .collect()
    }
}

/// The report of evaluation records: per set and category, per set, category and topic, and over all harmful
/// and benign answers.
pub struct Summary {
    pub sets: Vec<SetReport>,
    pub topics: Vec<SetReport>,
    pub asr: Option<f64>,
    pub compliance: Option<f64>,
}

pub fn summarize(recs: &[EvalRec]) -> Summary {
    type Key<'r> = (&'r str, Category, Option<&'r str>);
    let mut by: BTreeMap<Key<'_>, Vec<&EvalRec>> = BTreeMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    for r in recs {
        let set = (r.set.as_str(), r.category, None);
        for k in std::iter::once(set).chain(r.topic.as_deref().map(|t| (set.0, set.1, Some(t)))) {
            if !by.contains_key(&k) {
                order.push(k);
            }
            by.entry(k).or_default().push(r);
        }
    }
    let report = |k: Key<'_>| {
        let rs = &by[&k];
        let rate = eval_rate(rs.iter().copied(), k.1);
        SetReport {
            set: k.0.to_string(),
            topic: k.2.map(str::to_string),
            category: k.1,
            metric: match k.1 {
                Category::Harmful => "asr",
                Category::Benign => "compliance",
            },
            n: rs.len(),
            complied: rs.iter().filter(|r| r.complied == Some(true)).count(),
            unlabelled: rs
                .iter()
                .filter(|r| r.complied.is_none() && r.valid != Some(false))
                .count(),
            invalid: rs.iter().filter(|r| r.valid == Some(false)).count(),
            rate,
            over_refusal: (k.1 == Category::Benign)
                .then_some(rate)
                .flatten()
                .map(|v| 1.0 - v),
            strongreject: eval_score(rs.iter().copied()),
        }
    };
    let (sets, topics): (Vec<Key<'_>>, Vec<Key<'_>>) = order.iter().partition(|k| k.2.is_none());
    let mut topics: Vec<SetReport> = topics.into_iter().map(report).collect();
    // Topics in name order within their set.
    topics.sort_by(|a, b| (&a.set, &a.topic).cmp(&(&b.set, &b.topic)));
    Summary {
        sets: sets.into_iter().map(report).collect(),
        topics,
        asr: eval_rate(recs, Category::Harmful),
        compliance: eval_rate(recs, Category::Benign),
    }
}
