//! Which metrics go into which plot: metric groups by name pattern, with titles, axis labels and honest y scales
//! (rates on a fixed [0, 1]). Every metric is in the CSV; bookkeeping ones (`eval/round`, per-phase timings) are not
//! plotted.

use super::chart::YRange;
use std::collections::BTreeSet;

/// One plot: the metrics it shows and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// File stem of the plot (`<id>.svg`, `<id>.png`).
    pub id: &'static str,
    pub title: &'static str,
    pub subtitle: &'static str,
    pub y_label: &'static str,
    pub y: YRange,
    pub metrics: Vec<String>,
}

struct Def {
    id: &'static str,
    title: &'static str,
    subtitle: &'static str,
    y_label: &'static str,
    y: YRange,
    matches: fn(&str) -> bool,
}

const RATE: YRange = YRange::Fixed(0.0, 1.0);

fn learn_tail(m: &str) -> Option<&str> {
    let rest = m.strip_prefix("learn/")?;
    rest.split_once('/').map(|(_, t)| t)
}

const DEFS: &[Def] = &[
    Def {
        id: "asr",
        title: "Attack success rate",
        subtitle: "share of labelled defender responses to harmful seeds that complied; eval/<set>: held-out sets",
        y_label: "ASR",
        y: RATE,
        matches: |m| {
            m == "asr" || (m.starts_with("eval/") && m.ends_with("/asr") && !m.contains("/topic/"))
        },
    },
    Def {
        id: "utility",
        title: "Utility: compliance on benign seeds",
        subtitle: "share of labelled defender responses to benign seeds that complied; eval/<set>: held-out sets",
        y_label: "compliance rate",
        y: RATE,
        matches: |m| {
            m == "benign_compliance"
                || (m.starts_with("eval/") && m.ends_with("/compliance") && !m.contains("/topic/"))
        },
    },
    Def {
        id: "faithfulness",
        title: "Attacker rewrites: parsed and faithful",
        subtitle: "share of rewrites whose output parsed (parse_rate) and that were judged faithful to the seed",
        y_label: "rate",
        y: RATE,
        matches: |m| m == "faithfulness_rate" || m == "parse_rate",
    },
    Def {
        id: "diversity",
        title: "Attack diversity",
        subtitle: "distinct n-grams / all n-grams of the attacker's parsed rewrites in the round (from episodes.jsonl)",
        y_label: "distinct-n ratio",
        y: RATE,
        matches: |m| m.starts_with("diversity/"),
    },
    Def {
        id: "rewards",
        title: "Mean reward per role",
        subtitle: "mean of present rewards in the round (errors count as the error reward)",
        y_label: "mean reward",
        y: YRange::Auto { include_zero: true },
        matches: |m| m == "reward/attacker" || m == "reward/defender",
    },
    Def {
        id: "rewards_by_category",
        title: "Mean reward per role and seed category",
        subtitle: "reward/<role>/<category>",
        y_label: "mean reward",
        y: YRange::Auto { include_zero: true },
        matches: |m| m.starts_with("reward/") && m.matches('/').count() == 2,
    },
    Def {
        id: "loss",
        title: "Learner loss",
        subtitle: "loss reported by each side's learner for the round's update",
        y_label: "loss",
        y: YRange::Auto {
            include_zero: false,
        },
        matches: |m| learn_tail(m) == Some("loss"),
    },
    Def {
        id: "kl",
        title: "KL to the reference policy",
        subtitle: "as reported by each side's learner",
        y_label: "KL (nats)",
        y: YRange::Auto { include_zero: true },
        matches: |m| learn_tail(m).is_some_and(|t| t == "kl" || t.starts_with("kl")),
    },
    Def {
        id: "learn",
        title: "Other learner metrics",
        subtitle: "learn/<role>/<metric> as reported by the learners",
        y_label: "value",
        y: YRange::Auto {
            include_zero: false,
        },
        matches: |m| {
            learn_tail(m)
                .is_some_and(|t| !matches!(t, "loss" | "steps" | "tokens") && !t.starts_with("kl"))
        },
    },
    Def {
        id: "learn_tokens",
        title: "Learner tokens per round",
        subtitle: "tokens in the update batches of each side",
        y_label: "tokens",
        y: YRange::Auto { include_zero: true },
        matches: |m| learn_tail(m) == Some("tokens"),
    },
    Def {
        id: "counts",
        title: "Interactions per round",
        subtitle: "rewrites, defender responses, and unparseable judge outputs (judge/missing)",
        y_label: "count",
        y: YRange::Auto { include_zero: true },
        matches: |m| matches!(m, "rewrites" | "responses" | "judge/missing"),
    },
    Def {
        id: "versions",
        title: "Policy versions",
        subtitle: "version of each side's policy after the round's update (learner steps taken)",
        y_label: "version",
        y: YRange::Auto { include_zero: true },
        matches: |m| m.starts_with("version/") || learn_tail(m) == Some("steps"),
    },
    Def {
        id: "time",
        title: "Round wall time",
        subtitle: "total wall time of each round (timings.jsonl; per-phase times are in the CSV)",
        y_label: "milliseconds",
        y: YRange::Auto { include_zero: true },
        matches: |m| m == "timing/total_ms",
    },
];

/// Metrics that are in the CSV but in no plot: per-phase timings, over-refusal (1 − the utility plot's
/// compliance) and the rates per topic (as many as a set has topics).
fn unplotted(m: &str) -> bool {
    m == "eval/round"
        || (m.starts_with("timing/") && m != "timing/total_ms")
        || (m.starts_with("eval/") && (m.ends_with("/over_refusal") || m.contains("/topic/")))
}

/// The plots for a set of metric names, in display order; metrics matching no group go to an "other" plot.
pub fn groups(names: &BTreeSet<String>) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    for d in DEFS {
        let metrics: Vec<String> = names
            .iter()
            .filter(|m| !taken.contains(m.as_str()) && (d.matches)(m))
            .cloned()
            .collect();
        for m in &metrics {
            taken.insert(names.get(m).map(String::as_str).unwrap_or_default());
        }
        if !metrics.is_empty() {
            out.push(Group {
                id: d.id,
                title: d.title,
                subtitle: d.subtitle,
                y_label: d.y_label,
                y: d.y,
                metrics,
            });
        }
    }
    let rest: Vec<String> = names
        .iter()
        .filter(|m| !taken.contains(m.as_str()) && !unplotted(m))
        .cloned()
        .collect();
    if !rest.is_empty() {
        out.push(Group {
            id: "other",
            title: "Other metrics",
            subtitle: "metrics that fit no other plot",
            y_label: "value",
            y: YRange::Auto {
                include_zero: false,
            },
            metrics: rest,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_lands_in_one_plot_at_most() {
        let names: BTreeSet<String> = [
            "asr",
            "eval/xstest/asr",
            "eval/xstest/compliance",
            "eval/xstest/over_refusal",
            "eval/xstest/topic/homonyms/compliance",
            "eval/round",
            "benign_compliance",
            "learn/attacker/loss",
            "learn/defender/kl",
            "learn/defender/reward_accuracy",
            "learn/defender/steps",
            "reward/attacker",
            "reward/attacker/harmful",
            "timing/total_ms",
            "timing/judge_ms",
            "weird",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let g = groups(&names);
        let find = |m: &str| {
            g.iter()
                .filter(|x| x.metrics.iter().any(|y| y == m))
                .map(|x| x.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("asr"), ["asr"]);
        assert_eq!(find("eval/xstest/asr"), ["asr"]);
        assert_eq!(find("eval/xstest/compliance"), ["utility"]);
        assert_eq!(find("learn/defender/kl"), ["kl"]);
        assert_eq!(find("learn/defender/reward_accuracy"), ["learn"]);
        assert_eq!(find("reward/attacker/harmful"), ["rewards_by_category"]);
        assert_eq!(find("weird"), ["other"]);
        assert!(find("eval/round").is_empty() && find("timing/judge_ms").is_empty());
        assert!(find("eval/xstest/over_refusal").is_empty());
        assert!(find("eval/xstest/topic/homonyms/compliance").is_empty());
        assert_eq!(
            g.iter().find(|x| x.id == "asr").map(|x| x.y),
            Some(YRange::Fixed(0.0, 1.0))
        );
    }
}
