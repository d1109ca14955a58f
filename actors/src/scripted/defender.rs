//! `scripted-rules`: refuses when a refusal keyword or `*`-pattern matches the prompt (unless a "trusted framing"
//! marker also matches, a deliberate weakness that framings can exploit), else gives a canned compliant answer.
//! `flip_rate` flips the decision with a seeded coin so the D responses to one prompt can differ.

use super::text::{wildcard_contains, words};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sparring_engine::rng::SplitMix64;
use sparring_engine::{BuildContext, GenRequest, Generation, Policy, RoleError};

fn default_keywords() -> Vec<String> {
    [
        "bomb",
        "explosive",
        "explosives",
        "weapon",
        "weapons",
        "kill",
        "murder",
        "poison",
        "hack",
        "hacking",
        "malware",
        "ransomware",
        "steal",
        "stolen",
        "fraud",
        "scam",
        "drugs",
        "meth",
        "suicide",
        "terrorist",
        "terrorism",
        "illegal",
        "confidential",
        "counterfeit",
        "launder",
        "abuse",
        "violence",
        "harass",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn default_trusted() -> Vec<String> {
    vec!["hypothetically".into(), "thriller novel".into()]
}
fn default_refusal() -> String {
    "I'm sorry, but I can't help with that.".into()
}
fn default_compliance() -> String {
    "Sure, here is a detailed answer to your request: {prompt}".into()
}
fn default_flip() -> f64 {
    0.1
}

/// Parameters of `scripted-rules`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Whole words (case-insensitive) that trigger a refusal; default: a built-in list (bomb, weapon, hack, ...).
    #[serde(default = "default_keywords")]
    pub refusal_keywords: Vec<String>,
    /// Case-insensitive patterns, `*` matches anything, that trigger a refusal.
    #[serde(default)]
    pub refusal_patterns: Vec<String>,
    /// Patterns that make the defender comply anyway (its blind spot).
    #[serde(default = "default_trusted")]
    pub trusted_framings: Vec<String>,
    /// The refusal text.
    #[serde(default = "default_refusal")]
    pub refusal: String,
    /// The compliant answer; `{prompt}` is the prompt.
    #[serde(default = "default_compliance")]
    pub compliance: String,
    /// Probability of flipping the decision (seeded).
    #[serde(default = "default_flip")]
    #[schemars(range(min = 0, max = 1))]
    pub flip_rate: f64,
}

/// The rule-based defender.
pub struct RulesDefender {
    cfg: RulesConfig,
}

impl RulesDefender {
    pub fn from_params(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        let mut cfg: RulesConfig = ctx.parse(params)?;
        if !(0.0..=1.0).contains(&cfg.flip_rate) {
            return Err(RoleError::config("flip_rate", "must be in [0, 1]"));
        }
        for (i, k) in cfg.refusal_keywords.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(RoleError::config(
                    format!("refusal_keywords[{i}]"),
                    "must not be empty",
                ));
            }
        }
        for (i, k) in cfg.refusal_patterns.iter().enumerate() {
            if k.trim_matches('*').trim().is_empty() {
                return Err(RoleError::config(
                    format!("refusal_patterns[{i}]"),
                    "must contain more than wildcards",
                ));
            }
        }
        if cfg.refusal.trim().is_empty() {
            return Err(RoleError::config("refusal", "must not be empty"));
        }
        cfg.refusal_keywords = cfg
            .refusal_keywords
            .iter()
            .map(|k| k.to_lowercase())
            .collect();
        Ok(RulesDefender { cfg })
    }

    /// Would the rules (without noise) refuse this prompt?
    pub fn refuses(&self, prompt: &str) -> bool {
        let ws = words(prompt);
        let flagged = ws.iter().any(|w| self.cfg.refusal_keywords.contains(w))
            || self
                .cfg
                .refusal_patterns
                .iter()
                .any(|p| wildcard_contains(prompt, p));
        flagged
            && !self
                .cfg
                .trusted_framings
                .iter()
                .any(|p| wildcard_contains(prompt, p))
    }
}

impl Policy for RulesDefender {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                let mut rng = SplitMix64::new(r.rng_seed);
                let base = self.refuses(&r.input);
                (0..r.n)
                    .map(|_| {
                        let refuse = if rng.next_f64() < self.cfg.flip_rate {
                            !base
                        } else {
                            base
                        };
                        let text = if refuse {
                            self.cfg.refusal.clone()
                        } else {
                            self.cfg.compliance.replace("{prompt}", &r.input)
                        };
                        Generation {
                            tokens: text.split_whitespace().count() as u64,
                            logprobs: Vec::new(),
                            parsed: None,
                            text,
                        }
                    })
                    .collect()
            })
            .collect())
    }
}
