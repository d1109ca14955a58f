//! Chat-LM backed roles: the role prompts (attacker, faithfulness judge, pairwise and pointwise judges) written for
//! this project after the AdvGame paper's structure, and the strict parsers of the tagged answers they ask for.
//!
//! The model side (which chat LM renders and generates) lives elsewhere; this module is pure text in, text out, so the
//! same prompts serve a Burn model, a remote OpenAI-compatible endpoint or a test double.

pub mod parse;
pub mod prompts;

pub use parse::{
    AttackerOutput, ParseError, parse_attacker, parse_faithfulness, parse_pairwise, parse_pointwise,
};
pub use prompts::{ChatMessage, Rubric, SeedKind};
