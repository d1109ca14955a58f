//! Fuzz target: a data set file through its reader (`data::read_set`): the first byte picks the file type
//! (CSV, TSV, JSON Lines) and the layout (auto-detected, or one of the published presets), the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparring_engine::data;
use sparring_engine::scenario::SetCfg;

const FORMATS: &[&str] = &[
    "auto", "advgame", "xstest", "harmbench", "wildjailbreak", "or-bench", "jbb", "strongreject", "advbench",
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, body)) = input.split_first() else {
        return;
    };
    let ext = ["csv", "tsv", "jsonl"][usize::from(pick % 3)];
    let format = FORMATS[usize::from(pick / 3) % FORMATS.len()];
    let dir = std::env::temp_dir().join(format!("sparring-fuzz-data-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("set.{ext}"));
    if std::fs::write(&path, body).is_err() {
        return;
    }
    let cfg = format!("name = \"s\"\npath = \"set.{ext}\"\nformat = \"{format}\"\n");
    let Ok(cfg) = toml::from_str::<SetCfg>(&cfg) else {
        return;
    };
    let _ = data::read_set(&path, &cfg);
});
