//! Seed data readers: AdvGame JSONL (`prompt`, `category`), XSTest JSONL (`id`, `label` safe/unsafe, `prompt`) and
//! HarmBench CSV (`Behavior`, `BehaviorID`; all harmful). Errors name the data file and line.

use crate::roles::{Category, Seed};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.csv` → harmbench; JSONL whose first record has `label` → xstest; else advgame.
    #[default]
    Auto,
    Advgame,
    Xstest,
    Harmbench,
}

/// A data reading error: file, 1-based line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct DataError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

fn err(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Read a data set named `name` from `path`.
pub fn read_set(path: &Path, format: Format, name: &str) -> Result<Vec<Seed>, DataError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(path, 0, format!("cannot read: {e}")))?;
    let format = match format {
        Format::Auto => {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                Format::Harmbench
            } else {
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                match serde_json::from_str::<serde_json::Value>(first) {
                    Ok(v) if v.get("label").is_some() => Format::Xstest,
                    _ => Format::Advgame,
                }
            }
        }
        f => f,
    };
    match format {
        Format::Harmbench => read_harmbench(path, &text, name),
        f => read_jsonl(path, &text, name, f),
    }
}

#[derive(Deserialize)]
struct AdvgameRec {
    prompt: String,
    category: String,
}

#[derive(Deserialize)]
struct XstestRec {
    id: serde_json::Value,
    label: String,
    prompt: String,
}

fn read_jsonl(path: &Path, text: &str, name: &str, format: Format) -> Result<Vec<Seed>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let seed = if format == Format::Xstest {
            let r: XstestRec = serde_json::from_str(line)
                .map_err(|e| err(path, ln, format!("bad XSTest record: {e}")))?;
            let category = match r.label.as_str() {
                "safe" => Category::Benign,
                "unsafe" => Category::Harmful,
                other => {
                    return Err(err(
                        path,
                        ln,
                        format!("`label` must be \"safe\" or \"unsafe\", found {other:?}"),
                    ));
                }
            };
            let id = match r.id {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            Seed {
                id: format!("{name}:{id}").into(),
                set: name.into(),
                prompt: r.prompt.into(),
                category,
            }
        } else {
            let r: AdvgameRec = serde_json::from_str(line)
                .map_err(|e| err(path, ln, format!("bad AdvGame record: {e}")))?;
            let category = match r.category.as_str() {
                "harmful" => Category::Harmful,
                "benign" => Category::Benign,
                other => {
                    return Err(err(
                        path,
                        ln,
                        format!("`category` must be \"harmful\" or \"benign\", found {other:?}"),
                    ));
                }
            };
            Seed {
                id: format!("{name}:{ln}").into(),
                set: name.into(),
                prompt: r.prompt.into(),
                category,
            }
        };
        if seed.prompt.trim().is_empty() {
            return Err(err(path, ln, "empty `prompt`"));
        }
        out.push(seed);
    }
    Ok(out)
}

/// Parse CSV text (RFC 4180: quoted fields, doubled quotes, newlines inside quotes) into records, each with the
/// 1-based line where it starts.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted_field => {
                in_quotes = true;
                quoted_field = true;
            }
            '"' => return Err((line, "unexpected quote inside an unquoted field".into())),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
                records.push((start_line, std::mem::take(&mut fields)));
                line += 1;
                start_line = line;
                any = false;
            }
            c => {
                if quoted_field {
                    return Err((line, format!("unexpected {c:?} after a closing quote")));
                }
                field.push(c);
            }
        }
    }
    if in_quotes {
        return Err((start_line, "unterminated quoted field".into()));
    }
    if any {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

fn read_harmbench(path: &Path, text: &str, name: &str) -> Result<Vec<Seed>, DataError> {
    let recs = parse_csv(text).map_err(|(l, m)| err(path, l, m))?;
    let mut it = recs.into_iter();
    let (hl, header) = it.next().ok_or_else(|| err(path, 1, "empty CSV file"))?;
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == n)
    };
    let b = col("Behavior").ok_or_else(|| err(path, hl, "header has no `Behavior` column"))?;
    let id = col("BehaviorID");
    let ctx = col("ContextString");
    let mut out = Vec::new();
    for (ln, rec) in it {
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        if rec.len() != header.len() {
            return Err(err(
                path,
                ln,
                format!("{} fields, the header has {}", rec.len(), header.len()),
            ));
        }
        let mut prompt = rec[b].clone();
        if let Some(c) = ctx.map(|c| rec[c].trim()).filter(|c| !c.is_empty()) {
            prompt = format!("{c}\n\n---\n\n{prompt}");
        }
        if prompt.trim().is_empty() {
            return Err(err(path, ln, "empty `Behavior`"));
        }
        let sid = id
            .map(|i| rec[i].clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ln.to_string());
        out.push(Seed {
            id: format!("{name}:{sid}").into(),
            set: name.into(),
            prompt: prompt.into(),
            category: Category::Harmful,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_newlines() {
        let t = "a,b\n\"x, \"\"y\"\"\",2\n\"multi\nline\",3\nlast,4";
        let r = parse_csv(t).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].1, vec!["x, \"y\"".to_string(), "2".into()]);
        assert_eq!(r[2], (3, vec!["multi\nline".to_string(), "3".into()]));
        assert_eq!(r[3].0, 5);
        assert!(parse_csv("a,\"b\nc").is_err());
        assert!(parse_csv("a,b\"c\n").is_err());
    }
}
