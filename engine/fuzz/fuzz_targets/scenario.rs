//! Fuzz target: a scenario file and `--set` overrides through parsing and validation (`scenario::load_str`, with
//! no role kinds registered). The input is the TOML text, then optionally a line `%%` and one override per line.
//! Data paths resolve in an empty directory, so a scenario that validates fails at its data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparring_engine::registry::Registry;
use sparring_engine::scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, sets) = text.split_once("\n%%\n").unwrap_or((text, ""));
    let sets: Vec<String> = sets.lines().map(str::to_string).collect();
    let dir = std::env::temp_dir().join(format!("sparring-fuzz-scenario-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let _ = scenario::load_str(&dir.join("scenario.toml"), toml, &sets, &Registry::new());
});
