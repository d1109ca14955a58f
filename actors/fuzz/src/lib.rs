//! The parser half of `sparring_actors::formats`, compiled from the same source files for fuzzing.
#![allow(dead_code)]

#[path = "../../src/formats/bytes.rs"]
mod bytes;
#[path = "../../src/formats/error.rs"]
pub mod error;
#[path = "../../src/formats/gguf/mod.rs"]
pub mod gguf;
#[path = "../../src/formats/quant.rs"]
pub mod quant;
#[path = "../../src/formats/safetensors.rs"]
pub mod safetensors;

pub use error::{FormatError, Result, TensorSource};
