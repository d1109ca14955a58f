//! Fuzz target: arbitrary bytes into the safetensors parser; every tensor of a file that parses is read as f32.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparring_formats_fuzz::TensorSource;
use sparring_formats_fuzz::safetensors::SafetensorsFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = SafetensorsFile::parse(data.to_vec()) {
        for name in f.names() {
            let _ = f.get_f32(&name);
        }
    }
});
