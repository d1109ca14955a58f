//! `sparring convert`: bad input is a clear error naming the file; the real model converts (when fetched).

use std::process::Command;

#[test]
fn convert_of_a_missing_file_fails_naming_it() {
    let dir = std::env::temp_dir().join(format!("sparring-convert-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(["convert", "/nonexistent/model.gguf", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model.gguf"), "stderr: {err}");
}

#[test]
fn convert_of_a_truncated_file_fails_with_an_offset() {
    let dir = std::env::temp_dir().join(format!("sparring-convert-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    // GGUF magic, version 3, then a tensor count cut short.
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00\x01\x00").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(["convert"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("byte"),
        "stderr should name a byte offset: {err}"
    );
}
