//! A data file as a table: CSV, TSV (both through the `csv` crate: quoted fields, doubled quotes, newlines inside
//! quotes, a UTF-8 byte-order mark) or JSON Lines (one object per line; its keys are the columns). Each row keeps
//! the 1-based line it starts on, for errors.

use super::{DataError, FileType, err};
use std::path::Path;

/// The rows of a file under its header.
pub struct Table {
    /// Column names, in the file's order (JSONL: in order of first appearance).
    pub columns: Vec<String>,
    /// The header's line (CSV/TSV: 1; JSONL: the first record's).
    pub header_line: usize,
    pub rows: Vec<Row>,
}

/// One record: the line it starts on and a cell per column (`None`: JSONL's missing key or `null`).
pub struct Row {
    pub line: usize,
    pub cells: Vec<Option<String>>,
}

impl Table {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The header as the error messages show it.
    pub fn header(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The file's syntax: `file_type` when given, else its extension.
pub fn file_type(path: &Path, given: Option<FileType>) -> Result<FileType, DataError> {
    if let Some(t) = given {
        return Ok(t);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(FileType::Csv),
        Some("tsv") | Some("tab") => Ok(FileType::Tsv),
        Some("jsonl") | Some("json") | Some("ndjson") => Ok(FileType::Jsonl),
        _ => Err(err(
            path,
            0,
            None,
            "cannot tell the file's syntax from its extension: set `file_type` (\"csv\", \"tsv\" or \"jsonl\")",
        )),
    }
}

/// Read `text` (the contents of `path`) as a table.
pub fn read(path: &Path, text: &str, ty: FileType) -> Result<Table, DataError> {
    match ty {
        FileType::Csv => delimited(path, text, b','),
        FileType::Tsv => delimited(path, text, b'\t'),
        FileType::Jsonl => jsonl(path, text),
    }
}

fn delimited(path: &Path, text: &str, delimiter: u8) -> Result<Table, DataError> {
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields, the header has {expected_len}"),
            csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8: {err}"),
            _ => e.to_string(),
        };
        err(path, line, None, message)
    };
    let columns: Vec<String> = rd
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(err(path, 1, None, "empty file: no header"));
    }
    let mut rows = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        // A blank line between records.
        if rec.len() == 1 && rec[0].is_empty() && columns.len() > 1 {
            continue;
        }
        rows.push(Row {
            line,
            cells: rec.iter().map(|c| Some(c.to_string())).collect(),
        });
    }
    Ok(Table {
        columns,
        header_line: 1,
        rows,
    })
}

fn jsonl(path: &Path, text: &str) -> Result<Table, DataError> {
    let mut columns: Vec<String> = Vec::new();
    let mut header_line = 0;
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let line = line.trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| err(path, ln, None, format!("not a JSON record: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(err(path, ln, None, "a JSON Lines record must be an object"));
        };
        if header_line == 0 {
            header_line = ln;
        }
        for k in map.keys() {
            if !columns.iter().any(|c| c == k) {
                columns.push(k.clone());
            }
        }
        objects.push((ln, map));
    }
    let rows = objects
        .into_iter()
        .map(|(line, map)| Row {
            line,
            cells: columns
                .iter()
                .map(|c| match map.get(c) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(v) => Some(v.to_string()),
                })
                .collect(),
        })
        .collect();
    Ok(Table {
        columns,
        header_line: header_line.max(1),
        rows,
    })
}
