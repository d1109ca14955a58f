//! Fuzz target: arbitrary bytes into the GGUF parser; every tensor of a file that parses is dequantized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparring_formats_fuzz::TensorSource;
use sparring_formats_fuzz::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GgufFile::parse(data.to_vec()) {
        for name in g.names() {
            // Cap the work per input: skip tensors over 1M elements.
            if g.tensor(&name).is_some_and(|t| t.n_elements() <= 1 << 20) {
                let _ = g.tensor_f32(&name);
            }
        }
        for (k, _) in &g.metadata {
            let _ = g.meta_str(k);
            let _ = g.meta_usize(k);
        }
    }
});
