//! Seed data: any CSV, TSV or JSON Lines file read into seeds (prompt, harmful or benign, topic, id) by a column
//! mapping from the scenario, a named preset for the published layouts (`presets`), or a layout detected from an
//! unambiguous header. Errors name the file, the line and the column.

mod presets;
mod table;

pub use presets::{Label, Mapping, detect, preset};
pub use table::{Row, Table};

use crate::roles::{Category, Seed};
use crate::scenario::SetCfg;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A set's layout: a published one by name, or `auto` (detected from the header, or the columns the set maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Auto,
    /// JSONL `prompt`, `category` (harmful/benign): the AdvGame paper's seed sets.
    Advgame,
    /// XSTest: `prompt`, `label` (safe/unsafe) or only `type` (`contrast_*`: unsafe); topic `type`.
    Xstest,
    /// HarmBench behaviors CSV: `Behavior`, `ContextString`, `BehaviorID`; all harmful; topic `SemanticCategory`.
    Harmbench,
    /// WildJailbreak's eval TSV: `adversarial`, `label` (1 harmful, 0 benign), topic `data_type`.
    Wildjailbreak,
    /// OR-Bench CSV: `prompt`, topic `category`; the `-toxic` split harmful, the others (80k, hard-1k) benign.
    OrBench,
    /// JailbreakBench JBB-Behaviors CSV: `Goal`, topic `Category`; `benign-behaviors.csv` benign, else harmful.
    Jbb,
    /// StrongREJECT CSV: `forbidden_prompt`, topic `category`; all harmful.
    Strongreject,
    /// AdvBench CSV: `goal` (and `target`); all harmful.
    Advbench,
}

impl Format {
    /// Every layout, in the order the docs list them.
    pub const ALL: [Format; 9] = [
        Format::Auto,
        Format::Advgame,
        Format::Xstest,
        Format::Harmbench,
        Format::Wildjailbreak,
        Format::OrBench,
        Format::Jbb,
        Format::Strongreject,
        Format::Advbench,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Advgame => "advgame",
            Format::Xstest => "xstest",
            Format::Harmbench => "harmbench",
            Format::Wildjailbreak => "wildjailbreak",
            Format::OrBench => "or-bench",
            Format::Jbb => "jbb",
            Format::Strongreject => "strongreject",
            Format::Advbench => "advbench",
        }
    }
}

/// A file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Csv,
    Tsv,
    Jsonl,
}

/// A data reading error: the file, the 1-based line (0: the file as a whole), the column when one is at fault.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {}{message}", path.display(), column.as_ref().map(|c| format!("column `{c}`: ")).unwrap_or_default())]
pub struct DataError {
    pub path: PathBuf,
    pub line: usize,
    pub column: Option<String>,
    pub message: String,
}

fn err(path: &Path, line: usize, column: Option<&str>, message: impl Into<String>) -> DataError {
    DataError {
        path: path.to_path_buf(),
        line,
        column: column.map(str::to_string),
        message: message.into(),
    }
}

/// The set `cfg` from file `path`: every seed, filtered by `cfg.filter` and `cfg.category` (not yet `limit`).
pub fn read_set(path: &Path, cfg: &SetCfg) -> Result<Vec<Seed>, DataError> {
    // A device or a pipe (`/dev/zero`, `/dev/stdin`) would be read without end.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(err(path, 0, None, "not a regular file"));
    }
    let bytes = std::fs::read(path).map_err(|e| err(path, 0, None, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        err(path, 0, None, format!("not UTF-8 (at byte {at})"))
    })?;
    let ty = table::file_type(path, cfg.file_type)?;
    let t = table::read(path, &text, ty)?;
    let m = mapping(path, &t, cfg, ty == FileType::Jsonl)?;
    seeds(path, &t, &m, cfg)
}

/// The set's mapping: its preset (named, or detected from the header), with the columns the set names over it.
pub fn mapping(path: &Path, t: &Table, cfg: &SetCfg, jsonl: bool) -> Result<Mapping, DataError> {
    let format = match cfg.format {
        Format::Auto => detect(&t.columns, jsonl),
        f => Some(f),
    };
    let mut m = match format.and_then(|f| preset(f, &t.columns, path)) {
        Some(m) => m,
        None if cfg.prompt.is_some() => Mapping::default(),
        None => {
            return Err(err(
                path,
                t.header_line,
                None,
                format!(
                    "cannot tell this file's layout from its header ({}): set `format` to one of {} or map its \
                     columns (`prompt = \"COLUMN\"`, and `label` with `harmful`/`benign` values or a `category` \
                     for the whole file)",
                    t.header(),
                    Format::ALL[1..]
                        .iter()
                        .map(|f| format!("\"{}\"", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    if let Some(p) = &cfg.prompt {
        m.prompt = p.clone();
    }
    if let Some(col) = &cfg.label {
        let (Some(harmful), Some(benign)) = (&cfg.harmful, &cfg.benign) else {
            return Err(err(
                path,
                0,
                Some(col),
                "`label` needs the values that mean each category: `harmful = [...]` and `benign = [...]`",
            ));
        };
        m.label = Some(Label {
            column: col.clone(),
            harmful: harmful.clone(),
            benign: benign.clone(),
        });
    } else if let Some(l) = &mut m.label {
        if let Some(h) = &cfg.harmful {
            l.harmful = h.clone();
        }
        if let Some(b) = &cfg.benign {
            l.benign = b.clone();
        }
    } else if cfg.harmful.is_some() || cfg.benign.is_some() {
        return Err(err(
            path,
            0,
            None,
            "`harmful`/`benign` values need a `label` column to read them from",
        ));
    }
    if m.label.is_none() {
        // No column says it: the set's `category` (else the preset's) is the whole file's.
        m.fixed = cfg.category.or(m.fixed);
    }
    if let Some(c) = &cfg.topic {
        m.topic = Some(c.clone());
    }
    if let Some(c) = &cfg.context {
        m.context = Some(c.clone());
    }
    if let Some(c) = &cfg.id {
        m.id = Some(c.clone());
    }
    if m.label.is_none() && m.fixed.is_none() {
        return Err(err(
            path,
            0,
            None,
            "no category for these prompts: map a `label` column with `harmful = [...]` and `benign = [...]` \
             values, or give the whole file a `category` (\"harmful\" or \"benign\")",
        ));
    }
    Ok(m)
}

fn seeds(path: &Path, t: &Table, m: &Mapping, cfg: &SetCfg) -> Result<Vec<Seed>, DataError> {
    let col = |name: &str| {
        t.column(name).ok_or_else(|| {
            err(
                path,
                t.header_line,
                Some(name),
                format!("no such column; the header has {}", t.header()),
            )
        })
    };
    let prompt = col(&m.prompt)?;
    let label = match &m.label {
        Some(l) => Some((col(&l.column)?, l)),
        None => None,
    };
    let topic = m.topic.as_deref().map(col).transpose()?;
    let context = m.context.as_deref().map(col).transpose()?;
    let id = m.id.as_deref().map(col).transpose()?;
    let filter = cfg
        .filter
        .iter()
        .map(|(c, vals)| Ok((col(c)?, vals)))
        .collect::<Result<Vec<_>, DataError>>()?;
    let name: Arc<str> = cfg.name.as_str().into();
    let mut out = Vec::new();
    for row in &t.rows {
        let cell = |i: usize| row.cells.get(i).and_then(|c| c.as_deref());
        if !filter
            .iter()
            .all(|(i, vals)| cell(*i).is_some_and(|v| vals.iter().any(|x| x == v)))
        {
            continue;
        }
        let category = match label {
            Some((i, l)) => {
                let v = cell(i).unwrap_or("").trim();
                if l.harmful.iter().any(|x| x == v) {
                    Category::Harmful
                } else if l.benign.iter().any(|x| x == v) {
                    Category::Benign
                } else {
                    return Err(err(
                        path,
                        row.line,
                        Some(&l.column),
                        format!(
                            "{v:?} is neither a harmful value ({}) nor a benign one ({})",
                            list(&l.harmful),
                            list(&l.benign)
                        ),
                    ));
                }
            }
            None => m.fixed.unwrap_or(Category::Harmful),
        };
        if label.is_some() && cfg.category.is_some_and(|c| c != category) {
            continue;
        }
        let mut text = cell(prompt).unwrap_or("").to_string();
        if text.trim().is_empty() {
            return Err(err(path, row.line, Some(&m.prompt), "empty prompt"));
        }
        if let Some(c) = context
            .and_then(cell)
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            text = format!("{c}\n\n---\n\n{text}");
        }
        let sid = id
            .and_then(cell)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| row.line.to_string());
        out.push(Seed {
            id: format!("{name}:{sid}").into(),
            set: Arc::clone(&name),
            prompt: text.into(),
            category,
            topic: topic
                .and_then(cell)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Into::into),
        });
    }
    Ok(out)
}

fn list(v: &[String]) -> String {
    v.iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
