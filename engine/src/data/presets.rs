//! The published layouts by name (`format = "harmbench"`, …): which columns hold the prompt, the label and its
//! values, the topic, a context and an id; and auto-detection from a header, only where the header is unambiguous.

use super::Format;
use std::path::Path;

/// Where a set's fields come from. Every name is a column of the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub prompt: String,
    /// The column that says harmful or benign, with the values that mean each.
    pub label: Option<Label>,
    /// The whole file's category, when no column says it.
    pub fixed: Option<crate::Category>,
    /// A finer category (HarmBench's semantic category, XSTest's type, …): per-topic metrics.
    pub topic: Option<String>,
    /// Text put before the prompt (HarmBench's `ContextString`), separated by a rule.
    pub context: Option<String>,
    /// The record's id (else its line).
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Label {
    pub column: String,
    pub harmful: Vec<String>,
    pub benign: Vec<String>,
}

fn s(v: &str) -> String {
    v.to_string()
}

fn label(column: &str, harmful: &[&str], benign: &[&str]) -> Option<Label> {
    Some(Label {
        column: s(column),
        harmful: harmful.iter().map(|v| s(v)).collect(),
        benign: benign.iter().map(|v| s(v)).collect(),
    })
}

/// XSTest's prompt types: the `contrast_*` ones are the unsafe prompts.
const XSTEST_SAFE: &[&str] = &[
    "homonyms",
    "figurative_language",
    "safe_targets",
    "safe_contexts",
    "definitions",
    "real_group_nons_discr",
    "nons_group_real_discr",
    "historical_events",
    "privacy_public",
    "privacy_fictional",
];
const XSTEST_UNSAFE: &[&str] = &[
    "contrast_homonyms",
    "contrast_figurative_language",
    "contrast_safe_targets",
    "contrast_safe_contexts",
    "contrast_definitions",
    "contrast_discr",
    "contrast_historical_events",
    "contrast_privacy",
];

/// The mapping of a named layout for a file with these `columns` (a preset reads the variants of its layout:
/// XSTest's `label` or only its `type`; JBB's harmful or benign file; OR-Bench's toxic split or the others).
pub fn preset(format: Format, columns: &[String], path: &Path) -> Option<Mapping> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let id = |c: &str| has(c).then(|| s(c));
    let harmful = Some(crate::Category::Harmful);
    Some(match format {
        Format::Auto => return None,
        Format::Advgame => Mapping {
            prompt: s("prompt"),
            label: label("category", &["harmful"], &["benign"]),
            id: id("id"),
            ..Default::default()
        },
        Format::Xstest => Mapping {
            prompt: s("prompt"),
            label: if has("label") {
                label("label", &["unsafe"], &["safe"])
            } else {
                label("type", XSTEST_UNSAFE, XSTEST_SAFE)
            },
            topic: id("type"),
            id: id("id").or_else(|| id("id_v2")),
            ..Default::default()
        },
        Format::Harmbench => Mapping {
            prompt: s("Behavior"),
            fixed: harmful,
            topic: id("SemanticCategory").or_else(|| id("FunctionalCategory")),
            context: id("ContextString"),
            id: id("BehaviorID"),
            ..Default::default()
        },
        Format::Wildjailbreak => Mapping {
            prompt: s("adversarial"),
            label: label("label", &["1"], &["0"]),
            topic: id("data_type"),
            ..Default::default()
        },
        Format::OrBench => Mapping {
            prompt: s("prompt"),
            // OR-Bench's toxic split holds harmful prompts; the 80k and hard-1k splits seemingly harmful,
            // benign ones.
            fixed: Some(if file.contains("toxic") {
                crate::Category::Harmful
            } else {
                crate::Category::Benign
            }),
            topic: id("category"),
            ..Default::default()
        },
        Format::Jbb => Mapping {
            prompt: s("Goal"),
            // JBB-Behaviors ships `harmful-behaviors.csv` and `benign-behaviors.csv`.
            fixed: Some(if file.contains("benign") {
                crate::Category::Benign
            } else {
                crate::Category::Harmful
            }),
            topic: id("Category"),
            id: id("Index").or_else(|| id("Behavior")),
            ..Default::default()
        },
        Format::Strongreject => Mapping {
            prompt: s("forbidden_prompt"),
            fixed: harmful,
            topic: id("category"),
            ..Default::default()
        },
        Format::Advbench => Mapping {
            prompt: s("goal"),
            fixed: harmful,
            ..Default::default()
        },
    })
}

/// The layout a header identifies, or `None` where it does not say (or could be more than one).
pub fn detect(columns: &[String], jsonl: bool) -> Option<Format> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let all = |cs: &[&str]| cs.iter().all(|c| has(c));
    if has("Behavior") && (has("BehaviorID") || has("FunctionalCategory")) {
        Some(Format::Harmbench)
    } else if has("forbidden_prompt") {
        Some(Format::Strongreject)
    } else if all(&["Goal", "Behavior", "Category"]) {
        Some(Format::Jbb)
    } else if all(&["adversarial", "data_type"]) {
        Some(Format::Wildjailbreak)
    } else if all(&["goal", "target"]) && !has("prompt") {
        Some(Format::Advbench)
    } else if (all(&["prompt", "type"]) && (has("label") || has("focus")))
        || (jsonl && all(&["prompt", "label", "id"]))
    {
        Some(Format::Xstest)
    } else if jsonl && all(&["prompt", "category"]) {
        // AdvGame's JSONL; OR-Bench's CSV has the same two columns but other values: not guessed.
        Some(Format::Advgame)
    } else {
        None
    }
}
