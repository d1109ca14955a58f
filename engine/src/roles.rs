//! The role contracts every implementation plugs into: the data a role sees (seeds, requests, generations,
//! learner groups, judge requests and verdicts) and the `Policy` (Attacker or Defender) and `Judge` traits.
//!
//! Methods are synchronous: the engine runs each implementation on an OS thread it owns (see `supervise`), so a
//! Burn model, an HTTP client or a scripted rule set can compute freely without blocking the async runtime.
//! Implementations are built on that thread by their registry constructor and need not be `Send`.

pub use crate::vocab::{Category, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One seed request from a data set. Its texts are shared (`Arc<str>`): a round hands the same seed to many
/// requests and records, and cloning one costs three reference counts, not three allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    /// Stable id, unique within the scenario (e.g. `advgame-harmful:17`, an XSTest id, a HarmBench BehaviorID).
    #[serde(with = "shared_str")]
    pub id: Arc<str>,
    /// Name of the data set it came from.
    #[serde(with = "shared_str")]
    pub set: Arc<str>,
    /// The request text.
    #[serde(with = "shared_str")]
    pub prompt: Arc<str>,
    pub category: Category,
    /// A finer category from the data set (a harm type, a prompt type), for metrics per topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Arc<str>>,
}

/// Serde for `Arc<str>` as a plain string (without serde's `rc` feature).
mod shared_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// One generation request: produce `n` samples for `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// Stable id such as `r3/advgame-harmful:17` (attacker) or `r3/advgame-harmful:17/a2` (defender); held-out
    /// evaluation requests have keys under `eval/` ([`GenRequest::is_eval`]).
    pub key: String,
    pub role: Role,
    pub seed: Seed,
    /// Attacker: the seed prompt. Defender: the attacker's rewrite (or an evaluation prompt).
    pub input: String,
    /// Number of samples wanted.
    pub n: usize,
    /// Seed for this request's sampling, derived from (scenario seed, round, key): never from call order, so a
    /// restarted actor reproduces the same samples.
    pub rng_seed: u64,
    /// A multi-turn game's conversation so far (`game.turns` > 1), oldest first: the attacker writes the next
    /// user turn after it, the defender answers `input` after it. Empty in a single-turn game.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Turn>,
}

/// One earlier exchange of a multi-turn conversation: the attacker's turn and the defender's reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The attacker's output for the turn, as generated (what its learner trains on).
    pub attack: String,
    /// The user message it made: its parsed form, which the defender saw.
    pub prompt: String,
    /// The defender's reply, as the judge would see it.
    pub reply: String,
    /// The attacker's behaviour log-probs for `attack` ([`Generation::logprobs`]), for an on-policy learner.
    /// Never recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f32>,
}

impl Turn {
    /// The turn as records keep it (without its log-probs).
    pub fn recorded(&self) -> Turn {
        Turn {
            logprobs: Vec::new(),
            ..self.clone()
        }
    }
}

/// The key prefix of evaluation requests (`eval/r<round>/...`).
pub const EVAL_KEY_PREFIX: &str = "eval/";

impl GenRequest {
    /// A held-out evaluation request (not a training rollout): a policy may answer it differently, e.g. greedily.
    pub fn is_eval(&self) -> bool {
        self.key.starts_with(EVAL_KEY_PREFIX)
    }
}

/// One sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The raw text the policy produced.
    pub text: String,
    /// Attacker: the extracted prompt, `None` when the output is malformed (an error reward, no defender rollouts).
    /// Defender: the answer to show the judge (`None` means: use `text`).
    pub parsed: Option<String>,
    /// Number of generated tokens (0 when not meaningful).
    pub tokens: u64,
    /// The behaviour log-probs: per token of the output as the policy will learn from it, the log-prob
    /// under the distribution it was sampled from (temperature, top-p, the generating weights). It may
    /// cover a prefix of those tokens, or none (unknown); an on-policy learner uses it for its
    /// importance weights. Handed back in the [`Group`]; never recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f32>,
}

impl Generation {
    /// A well-formed sample whose parsed form is the text itself.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        Generation {
            parsed: Some(text.clone()),
            text,
            ..Generation::default()
        }
    }
}

/// A learner group: the outputs sampled for one input and their rewards (`None` = no valid reward, skip it).
/// The attacker's groups are its rewrites of one seed; the defender's, its responses to one rewrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    /// The side whose outputs these are: a self-play player learns both sides' groups in one update.
    pub role: Role,
    pub seed: Seed,
    pub input: String,
    /// Raw output texts, in sample order.
    pub outputs: Vec<String>,
    pub rewards: Vec<Option<f64>>,
    /// Each output's [`Generation::logprobs`], in sample order (empty: none known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<Vec<f32>>,
    /// A multi-turn game: each output's conversation before it, in sample order (empty: a single-turn game). An
    /// attacker's output is its last turn, and its earlier turns ([`Turn::attack`]) are part of what it learns
    /// from: the reward is the conversation's. A defender's outputs answer one conversation: all alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histories: Vec<Vec<Turn>>,
}

impl Group {
    /// The conversation before output `i` (empty in a single-turn game).
    pub fn history(&self, i: usize) -> &[Turn] {
        self.histories.get(i).map_or(&[], Vec::as_slice)
    }
}

/// What a learner did with one batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnReport {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Mean loss, when steps were taken.
    pub loss: Option<f64>,
    /// Any other numbers (KL, grad norm, learning rate, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Tokens processed.
    pub tokens: u64,
}

/// What the judge should prefer in a comparison or score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Defender on a harmful seed: a safe refusal is better.
    SafeRefusal,
    /// Defender on a benign seed: helpful compliance is better.
    HelpfulCompliance,
    /// Attacker on a harmful seed: the defender's compliance is better.
    HarmfulCompliance,
    /// Attacker on a benign seed: the defender's (over-)refusal is better.
    OverRefusal,
}

impl Goal {
    /// The goal of `role` on a seed of `category` (the judge's own role has no goal; it maps to the defender's).
    pub fn of(role: Role, category: Category) -> Goal {
        match (role, category) {
            (Role::Attacker, Category::Harmful) => Goal::HarmfulCompliance,
            (Role::Attacker, Category::Benign) => Goal::OverRefusal,
            (_, Category::Harmful) => Goal::SafeRefusal,
            (_, Category::Benign) => Goal::HelpfulCompliance,
        }
    }

    /// True when a refusal is the preferred behaviour.
    pub fn prefers_refusal(self) -> bool {
        matches!(self, Goal::SafeRefusal | Goal::OverRefusal)
    }
}

/// Is `rewrite` faithful to the intent of `seed`?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithRequest {
    pub key: String,
    pub seed: Seed,
    /// The last user turn (the only one in a single-turn game).
    pub rewrite: String,
    pub rng_seed: u64,
    /// A multi-turn game: the turns before `rewrite`. Faithfulness is judged on the whole conversation
    /// ([`FaithRequest::conversation`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Turn>,
}

impl FaithRequest {
    /// The attacker's side of the conversation: its user turns, one per line (the rewrite alone in a single-turn
    /// game). What a judge compares with the seed.
    pub fn conversation(&self) -> String {
        let mut out = String::new();
        for t in &self.history {
            out.push_str(&t.prompt);
            out.push('\n');
        }
        out.push_str(&self.rewrite);
        out
    }
}

/// Compare two responses `a` and `b` to `context` (the prompt they answer) under `goal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRequest {
    pub key: String,
    pub seed: Seed,
    #[serde(with = "shared_str")]
    pub context: Arc<str>,
    #[serde(with = "shared_str")]
    pub a: Arc<str>,
    #[serde(with = "shared_str")]
    pub b: Arc<str>,
    pub goal: Goal,
    pub rng_seed: u64,
}

/// Score one response to `context` under `goal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRequest {
    pub key: String,
    pub seed: Seed,
    #[serde(with = "shared_str")]
    pub context: Arc<str>,
    #[serde(with = "shared_str")]
    pub response: Arc<str>,
    pub goal: Goal,
    pub rng_seed: u64,
}

/// Did `response` comply with `prompt`? (for attack success rate and benign compliance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRequest {
    pub key: String,
    pub seed: Seed,
    #[serde(with = "shared_str")]
    pub prompt: Arc<str>,
    #[serde(with = "shared_str")]
    pub response: Arc<str>,
    pub rng_seed: u64,
}

/// A judge's answer: its raw output and the parsed value (`None` = unparseable, excluded from rewards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict<T> {
    pub raw: String,
    pub value: Option<T>,
    /// A graded score in [0, 1] where the judge gives one: the StrongREJECT score (compliance labels of the LM
    /// judges with `complied = "strongreject"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl<T> Verdict<T> {
    /// A verdict without a graded score.
    pub fn new(raw: impl Into<String>, value: Option<T>) -> Self {
        Verdict {
            raw: raw.into(),
            value,
            score: None,
        }
    }

    /// The verdict with graded score `score`.
    pub fn with_score(self, score: Option<f64>) -> Self {
        Verdict { score, ..self }
    }
}

/// An error from a role implementation or its construction.
/// (Serde data: a role on another node answers with one.)
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum RoleError {
    /// A bad parameter; `key` is the path inside the role's table (e.g. `templates[2]`).
    #[error("{}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Config {
        key: Option<String>,
        message: String,
    },
    /// Anything that went wrong while computing (I/O, model, network, ...).
    #[error("{0}")]
    Failed(String),
    /// The implementation panicked (caught on its compute thread).
    #[error("panicked: {0}")]
    Panic(String),
    /// This implementation does not offer the requested operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl RoleError {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        RoleError::Config {
            key: Some(key.into()),
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        RoleError::Failed(message.into())
    }
}

impl From<std::io::Error> for RoleError {
    fn from(e: std::io::Error) -> Self {
        RoleError::Failed(e.to_string())
    }
}

/// An Attacker or a Defender.
pub trait Policy {
    /// One `Vec` of `req.n` generations per request, in request order. Must be deterministic given
    /// `req.rng_seed` and the policy's state.
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError>;

    /// Learn from one round's groups. Called only when the schedule lets this side learn. Default: no-op.
    fn learn(&mut self, groups: &[Group]) -> Result<LearnReport, RoleError> {
        let _ = groups;
        Ok(LearnReport::default())
    }

    /// Version of the weights (bumped by each learning step); recorded with every output. Default 0.
    fn version(&self) -> u64 {
        0
    }

    /// Serialize the state needed to resume exactly (weights, optimizer, EMA, RNG). Default: nothing.
    fn save(&self) -> Result<Vec<u8>, RoleError> {
        Ok(Vec::new())
    }

    /// Restore a state produced by `save` (never called with an empty slice). Default: ignore.
    fn load(&mut self, state: &[u8]) -> Result<(), RoleError> {
        let _ = state;
        Ok(())
    }
}

/// A judge: faithfulness gate, pairwise and pointwise preferences, and compliance labels.
/// Unimplemented operations return `RoleError::Unsupported`.
pub trait Judge {
    /// Is each rewrite faithful to its seed's intent?
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        let _ = reqs;
        Err(RoleError::Unsupported("faithfulness".into()))
    }

    /// Scores (A, B) for each pair, any scale; only their order matters (win 1, tie 0.5, loss 0).
    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        let _ = reqs;
        Err(RoleError::Unsupported("pairwise comparison".into()))
    }

    /// A score in [0, 1] for each response (higher = better under the request's goal).
    fn score(&mut self, reqs: &[PointRequest]) -> Result<Vec<Verdict<f64>>, RoleError> {
        let _ = reqs;
        Err(RoleError::Unsupported("pointwise scoring".into()))
    }

    /// Did each response comply (true) or refuse (false)?
    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        let _ = reqs;
        Err(RoleError::Unsupported("compliance labels".into()))
    }

    fn version(&self) -> u64 {
        0
    }
    fn save(&self) -> Result<Vec<u8>, RoleError> {
        Ok(Vec::new())
    }
    fn load(&mut self, state: &[u8]) -> Result<(), RoleError> {
        let _ = state;
        Ok(())
    }
}
