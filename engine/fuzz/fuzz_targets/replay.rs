//! Fuzz target: a replay log (`episodes.jsonl`: torn, corrupted, reordered lines) through the readers a resume,
//! `sparring replay` and the reports use: the committed prefix, and the committed rounds one at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparring_engine::replay;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sparring-fuzz-replay-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let log = dir.join(replay::LOG);
    if std::fs::write(&log, data).is_err() {
        return;
    }
    let _ = replay::read_committed(&log);
    if let Ok((_, rounds)) = replay::committed_rounds(&log) {
        for r in rounds {
            if r.is_err() {
                break;
            }
        }
    }
});
