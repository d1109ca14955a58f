//! TOML location helpers: deserialize with errors that carry the key path (`data.train[1].path`), find the span of
//! a key path in a document, and turn byte offsets into line:column.

use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A deserialization error with the key path it concerns (if known) and its span in the parsed text.
#[derive(Debug, Clone)]
pub struct PathError {
    pub key: Option<String>,
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Deserialize `text`; on error, find the deepest key whose key or value span holds the error.
pub fn from_str_located<T: DeserializeOwned>(text: &str) -> Result<T, PathError> {
    toml::from_str::<T>(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(text, s.start));
        PathError {
            key,
            span,
            message: e.message().trim().to_string(),
        }
    })
}

/// The key path at byte `offset` of `text`, if any.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    walk_table(doc.get_ref(), "", offset, &mut best);
    best.map(|(_, k)| k)
}

fn join(prefix: &str, k: &str) -> String {
    let k = if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('"', "\\\""))
    };
    if prefix.is_empty() {
        k
    } else {
        format!("{prefix}.{k}")
    }
}

fn consider(span: &Range<usize>, offset: usize, path: &str, best: &mut Option<(usize, String)>) {
    let inside =
        span.start <= offset && (offset < span.end || (span.is_empty() && offset == span.start));
    if inside {
        let width = span.end - span.start;
        if best.as_ref().is_none_or(|(w, _)| width <= *w) {
            *best = Some((width, path.to_string()));
        }
    }
}

fn walk_table(t: &DeTable<'_>, prefix: &str, offset: usize, best: &mut Option<(usize, String)>) {
    for (k, v) in t.iter() {
        let path = join(prefix, k.get_ref());
        consider(&k.span(), offset, &path, best);
        consider(&v.span(), offset, &path, best);
        walk_value(v.get_ref(), &path, offset, best);
    }
}

fn walk_value(v: &DeValue<'_>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    match v {
        DeValue::Table(t) => walk_table(t, path, offset, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                consider(&item.span(), offset, &p, best);
                walk_value(item.get_ref(), &p, offset, best);
            }
        }
        _ => {}
    }
}

/// Split `a.b[2].c` into segments `a`, `b`, `[2]`, `c` (quoted keys allowed).
fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '"' => {
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '[' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut n = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    n.push(c);
                }
                if let Ok(i) = n.parse() {
                    out.push(Seg::Index(i));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Seg::Key(cur));
    }
    out
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Span of the deepest existing part of `path` in `text` (the key itself when it exists).
pub fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut span: Option<Range<usize>> = None;
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in segments(path) {
        match seg {
            Seg::Key(k) => {
                let t = match table {
                    Some(t) => t,
                    None => break,
                };
                match t.get_key_value(k.as_str()) {
                    Some((key, v)) => {
                        span = Some(key.span());
                        cur = Some(v.get_ref());
                    }
                    None => break,
                }
            }
            Seg::Index(i) => match cur.and_then(|c| c.as_array()).and_then(|a| a.get(i)) {
                Some(v) => {
                    span = Some(v.span());
                    cur = Some(v.get_ref());
                }
                None => break,
            },
        }
        table = cur.and_then(|c| c.as_table());
    }
    span
}

/// 1-based (line, column) of a byte offset (column counts characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
