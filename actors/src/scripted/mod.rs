//! Scripted role implementations that run the spine on real prompts without any model: a template attacker, a
//! rule-based defender and a refusal-prefix judge (pairwise, pointwise, compliance labels and a content-word
//! faithfulness check). Registered as `scripted-template`, `scripted-rules` and `refusal-prefix`.

mod attacker;
mod defender;
mod judge;
pub mod text;

pub use attacker::{TemplateAttacker, TemplateConfig};
pub use defender::{RulesConfig, RulesDefender};
pub use judge::{REFUSAL_PREFIXES, RefusalPrefixConfig, RefusalPrefixJudge};

use sparring_engine::{KindInfo, ParamsSchema, Registry, Role};
use std::sync::Arc;

/// Register the scripted kinds.
pub fn register(r: &mut Registry) {
    r.add_policy(
        KindInfo {
            kind: "scripted-template".into(),
            about: "Attacker that wraps each seed in jailbreak-style templates (role-play, hypothetical, translation, ...) \
                    and learns which templates earn reward (a softmax bandit). Deterministic by request seed."
                .into(),
            roles: vec![Role::Attacker],
            params: Some(ParamsSchema::of::<TemplateConfig>()),
            check: Arc::new(|p, ctx| TemplateAttacker::from_params(p, ctx).map(|_| ())),
        },
        Arc::new(|p, ctx| Ok(Box::new(TemplateAttacker::from_params(p, ctx)?))),
    );
    r.add_policy(
        KindInfo {
            kind: "scripted-rules".into(),
            about: "Defender that refuses when a refusal keyword or pattern matches the prompt, else answers with a canned \
                    compliant answer; `flip_rate` adds seeded noise so that the D responses differ."
                .into(),
            roles: vec![Role::Defender],
            params: Some(ParamsSchema::of::<RulesConfig>()),
            check: Arc::new(|p, ctx| RulesDefender::from_params(p, ctx).map(|_| ())),
        },
        Arc::new(|p, ctx| Ok(Box::new(RulesDefender::from_params(p, ctx)?))),
    );
    r.add_judge(
        KindInfo {
            kind: "refusal-prefix".into(),
            about: "Judge from the standard refusal-prefix list (prefix-based ASR): a response complied when it contains \
                    no refusal prefix. Pairwise and pointwise scores follow the goal; faithfulness = share of the seed's \
                    content words kept by the rewrite."
                .into(),
            roles: vec![Role::Judge],
            params: Some(ParamsSchema::of::<RefusalPrefixConfig>()),
            check: Arc::new(|p, ctx| RefusalPrefixJudge::from_params(p, ctx).map(|_| ())),
        },
        Arc::new(|p, ctx| Ok(Box::new(RefusalPrefixJudge::from_params(p, ctx)?))),
    );
}
