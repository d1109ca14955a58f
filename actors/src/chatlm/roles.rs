//! The engine roles backed by a chat LM and their registration, the one place the kinds `chat-lm` (`ChatPolicy`,
//! attacker or defender) and `chat-lm-judge` (`ChatJudge`) touch the engine's registry. Each loads its own model
//! once, on the engine's compute thread of its role, and generates all samples of a call as batches.
//!
//! The rest lives beside this file: the parameters and their checks in `params`, the policy in `policy`, the judge
//! in `judge`, the goal → rubric mapping and the refusal-phrase rule in `labels`. Their public items are
//! re-exported here, so `chatlm::roles::…` paths keep working.

use std::sync::Arc;

use sparring_engine::registry::{BuildContext, CheckFn, KindInfo, ParamsSchema, Registry};
use sparring_engine::{Judge, Policy, Role};

pub use super::judge::ChatJudge;
pub use super::labels::{REFUSAL_PHRASES, is_refusal, rubric_of};
pub use super::params::{
    ComplyRule, Finetune, JudgeParams, PairRead, PolicyParams, ReadMode, ScoreRead,
};
pub use super::policy::ChatPolicy;

/// Kind name of the chat-LM attacker/defender.
pub const POLICY_KIND: &str = "chat-lm";
/// Kind name of the chat-LM judge.
pub const JUDGE_KIND: &str = "chat-lm-judge";

/// Registers `chat-lm` (attacker, defender) and `chat-lm-judge`.
pub fn register(reg: &mut Registry) {
    let check: CheckFn =
        Arc::new(|t: &toml::Table, ctx: &BuildContext| PolicyParams::parse(t, ctx).map(|_| ()));
    reg.add_policy(
        KindInfo {
            kind: POLICY_KIND.into(),
            about: "chat LM (Llama-family GGUF or HF dir, e.g. SmolLM2-135M-Instruct) as attacker or defender; \
                    LoRA or full DPO/IPO/GRPO training"
                .into(),
            roles: vec![Role::Attacker, Role::Defender],
            params: Some(ParamsSchema::of::<PolicyParams>()),
            check,
        },
        Arc::new(|t: &toml::Table, ctx: &BuildContext| Ok(Box::new(ChatPolicy::build(t, ctx)?) as Box<dyn Policy>)),
    );
    let check: CheckFn =
        Arc::new(|t: &toml::Table, ctx: &BuildContext| JudgeParams::parse(t, ctx).map(|_| ()));
    reg.add_judge(
        KindInfo {
            kind: JUDGE_KIND.into(),
            about: "chat LM judge: faithfulness, pairwise (optionally both orders), pointwise, compliance labels"
                .into(),
            roles: vec![Role::Judge],
            params: Some(ParamsSchema::of::<JudgeParams>()),
            check,
        },
        Arc::new(|t: &toml::Table, ctx: &BuildContext| Ok(Box::new(ChatJudge::build(t, ctx)?) as Box<dyn Judge>)),
    );
}
