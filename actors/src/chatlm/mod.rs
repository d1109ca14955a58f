//! Chat-LM backed roles: the role prompts (attacker, faithfulness judge, pairwise and pointwise judges) written for
//! this project after the AdvGame paper's structure, the strict parsers of the tagged answers they ask for, the
//! loaded chat model (`model`), the engine roles built on it (`roles`: the registration of kinds `chat-lm` and
//! `chat-lm-judge`; `params`: their parameters; `policy`: the attacker/defender; `judge`: the judge; `verdict`:
//! the judge conventions every judge kind shares; `labels`: goal → rubric and the refusal-phrase rule; `rubrics`
//! and `classify`: the StrongREJECT rubric and the HarmBench classifier as compliance labels), LoRA
//! adapters for training on a CPU (`lora`) and full fine-tuning (`full`). Evaluation is the engine's
//! (`sparring eval`, a run's `[eval]`).
//!
//! `prompts`, `parse` and `rubrics` are pure text in, text out, so the same prompts serve a Burn model, a remote
//! OpenAI-compatible endpoint or a test double.

pub mod classify;
pub mod complete;
pub mod export;
pub mod full;
pub mod judge;
pub mod labels;
pub mod lora;
pub mod model;
pub mod params;
pub mod parse;
pub mod player;
pub mod policy;
pub mod prompts;
pub mod roles;
pub mod rubrics;
pub mod shared;
pub mod verdict;

pub use lora::{LoraConfig, LoraLlama};
pub use model::{ChatModel, Sample, Sampling};
pub use parse::{
    AttackerOutput, ParseError, parse_attacker, parse_faithfulness, parse_pairwise, parse_pointwise,
};
pub use prompts::{ChatMessage, Rubric, SeedKind};
pub use roles::{
    ChatJudge, ChatPolicy, Finetune, JUDGE_KIND, JudgeParams, POLICY_KIND, PairRead, PolicyParams,
    ReadMode, ScoreRead, register,
};

/// A registry with only the chat-LM kinds (`chat-lm`, `chat-lm-judge`).
pub fn chat_registry() -> sparring_engine::registry::Registry {
    let mut r = sparring_engine::registry::Registry::new();
    roles::register(&mut r);
    r
}
