//! The built-in intent game (issue 3): a synthetic AdvGame with the real game's structure — harmful and
//! benign topics expressed by (sometimes ambiguous) surface words resolved by context, framings, an
//! oracle judge with configurable noise, warm-start data giving both players plausible weaknesses, and
//! model-independent evaluation. Pure Rust; the Burn policies plug in through token sequences.

pub mod eval;
pub mod lang;
pub mod metrics;
pub mod oracle;
pub mod player;
pub mod roles;
pub mod seeds;
pub mod warm;

pub use eval::{
    AttackEval, DefenderEval, evaluate_attacker, evaluate_defender, exhaustive_asr,
    fixed_attack_set,
};
pub use lang::{
    BOS, Category, EOS, FramingKind, Language, PAD, SEP, Token, Topic, TopicId, WordClass,
};
pub use metrics::{Rate, asr, compliance, helpful_compliance};
pub use oracle::{Goal, Oracle, OracleConfig, Outcome, Preference, Response, Side, exact_score};
pub use seeds::{Intent, SeedSplit, all_intents, split_intents};
pub use sparring_engine::rng::SplitMix64;
pub use warm::{
    Example, RewriteStyle, attacker_context, defender_context, parse_rewrite,
    warm_defender_response,
};

/// Errors of the intent game (bad text, bad model output).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// A word outside the vocabulary.
    #[error("unknown word {word:?} at byte offset {offset}")]
    UnknownWord {
        /// The word.
        word: String,
        /// Its byte offset in the text.
        offset: usize,
    },
    /// A generated rewrite without `<eos>`.
    #[error("rewrite truncated: no <eos> in {len} generated tokens")]
    Truncated {
        /// Tokens generated.
        len: usize,
    },
    /// A rewrite with no words.
    #[error("empty rewrite")]
    EmptyRewrite,
    /// A rewrite containing a token that cannot appear in a prompt.
    #[error("token {word:?} at offset {offset} cannot appear in a prompt")]
    NotAPromptWord {
        /// The word.
        word: String,
        /// Its token offset in the rewrite.
        offset: usize,
    },
    /// An invalid setting.
    #[error("invalid setting {key}: {reason}")]
    Config {
        /// The key path.
        key: String,
        /// Why.
        reason: String,
    },
}
