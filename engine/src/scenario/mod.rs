//! Scenario files: the TOML schema (`schema = 1`), `--set a.b=v` overrides, validation before anything runs (every
//! error with file:line:column or the `--set` that caused it, and the key path), data loading and the resolved
//! scenario written into the run directory.
//!
//! - here: the schema itself, one serde struct per table (`#[serde(deny_unknown_fields)]`, defaults in code);
//! - [`load`]: reading a file, `--set` overrides, validation with file:line:column, data loading ([`Loaded`]);
//! - [`schema`]: the JSON Schema of scenario files (`sparring schema`), from the structs and the registered kinds;
//! - [`fit`]: whether a round of the scenario can fit in memory (refused at validation when it cannot).

pub mod fit;
mod load;
mod schema;

pub use fit::set_memory_limit;
pub use load::*;
pub use schema::json_schema;

use crate::data::{FileType, Format};
use crate::roles::{Category, Role};
pub use crate::vocab::{PayoffMode, Side};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole scenario file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Version of the scenario format: must be 1.
    #[schemars(extend("enum" = [1]))]
    pub schema: u32,
    /// Directory relative paths are resolved against (default: the scenario file's directory). Written by the
    /// engine into the resolved scenario of a run so that `--resume` finds the data again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<PathBuf>,
    /// The game: name, seed, rounds, schedule and batch sizes.
    pub game: GameCfg,
    /// Seed sets the game draws from and held-out evaluation sets.
    pub data: DataCfg,
    /// How judge verdicts become rewards.
    #[serde(default)]
    pub payoffs: PayoffCfg,
    /// Model files shared by several roles: `[models.NAME]` with `path` and `backend`; a role's `model = "NAME"`
    /// takes both (the file is loaded once per process; each role keeps its own adapters and optimizer state).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelDecl>,
    /// The attacker: `kind` (see `sparring list`) and that kind's parameters.
    pub attacker: RoleCfg,
    /// The defender: `kind` (see `sparring list`) and that kind's parameters. Absent under the `self-play`
    /// schedule, where the attacker's table is the one player that plays both sides (and required otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defender: Option<RoleCfg>,
    /// The judge: `kind` (see `sparring list`) and that kind's parameters.
    pub judge: RoleCfg,
    /// The replay log.
    #[serde(default)]
    pub replay: ReplayCfg,
    /// Held-out evaluations during the run.
    #[serde(default)]
    pub eval: EvalCfg,
    /// Kept copies of the players.
    #[serde(default)]
    pub checkpoints: CheckpointCfg,
    /// Fault injection (tests only).
    #[serde(default)]
    pub faults: FaultsCfg,
    /// Nodes (`sparring node` processes) that host roles: a role table's `node = "NAME"` places it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterCfg>,
}

impl Scenario {
    /// Is one player playing both sides (`game.schedule = "self-play"`)?
    pub fn self_play(&self) -> bool {
        self.game.schedule == Schedule::SelfPlay
    }

    /// The table of `role`. Without a `[defender]` (self-play), the defender is the attacker's player.
    pub fn role(&self, role: Role) -> &RoleCfg {
        match role {
            Role::Attacker => &self.attacker,
            Role::Defender => self.defender.as_ref().unwrap_or(&self.attacker),
            Role::Judge => &self.judge,
        }
    }

    /// A self-play scenario becomes the joint game of two copies of its player; others stay as they are.
    pub fn split_player(&mut self) {
        if self.self_play() {
            self.game.schedule = Schedule::Joint;
            self.defender = Some(self.attacker.clone());
        }
    }

    /// The role tables the scenario has (no defender under self-play), with their roles.
    pub fn tables_mut(&mut self) -> Vec<(Role, &mut RoleCfg)> {
        let mut v = vec![(Role::Attacker, &mut self.attacker)];
        if let Some(d) = self.defender.as_mut() {
            v.push((Role::Defender, d));
        }
        v.push((Role::Judge, &mut self.judge));
        v
    }
}

/// `[cluster]`: the nodes a game may place roles on, how it authenticates, and what it does when a node is lost.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterCfg {
    /// The nodes, each started with `sparring node --listen ADDR --name NAME`.
    pub nodes: Vec<NodeCfg>,
    /// The environment variable that holds the cluster's cookie (the shared secret every node was started with).
    pub cookie_env: String,
    /// When a node is lost (its session closed, or no heartbeat answer in `heartbeat_timeout_ms`): restart its
    /// roles in this process (`local`), on the next listed node that answers (`other`), or fail the run (`fail`).
    #[serde(default)]
    pub on_node_loss: NodeLoss,
    /// Milliseconds between heartbeats to each node.
    #[serde(default = "heartbeat_ms")]
    #[schemars(range(min = 1))]
    pub heartbeat_ms: u64,
    /// A node that has not answered a heartbeat for this long (milliseconds) is lost.
    #[serde(default = "heartbeat_timeout_ms")]
    #[schemars(range(min = 1))]
    pub heartbeat_timeout_ms: u64,
    /// How long (milliseconds) to wait for a node to accept the connection and authenticate.
    #[serde(default = "connect_timeout_ms")]
    #[schemars(range(min = 1))]
    pub connect_timeout_ms: u64,
    /// Payloads larger than this (KiB) go to and from a node in chunks of this size, each acknowledged
    /// (at most 8192: a cluster frame holds 16 MiB).
    #[serde(default = "chunk_kb")]
    #[schemars(range(min = 1, max = 8192))]
    pub chunk_kb: u64,
    /// The largest payload (a learner batch, a saved state) sent to or from a node, in MiB; larger ones fail
    /// their request.
    #[serde(default = "max_transfer_mb")]
    #[schemars(range(min = 1))]
    pub max_transfer_mb: u64,
}

fn heartbeat_ms() -> u64 {
    500
}
fn heartbeat_timeout_ms() -> u64 {
    5000
}
fn connect_timeout_ms() -> u64 {
    10_000
}
fn chunk_kb() -> u64 {
    1024
}
fn max_transfer_mb() -> u64 {
    4096
}

/// One node of `[cluster]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeCfg {
    /// The node's name (its `--name`; role tables refer to it).
    pub name: String,
    /// Where it listens, `HOST:PORT`.
    pub addr: String,
}

/// `cluster.on_node_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NodeLoss {
    /// Restart the lost node's roles in the game's own process.
    #[default]
    Local,
    /// Restart them on the next listed node that answers (in list order after the lost one, wrapping around).
    Other,
    /// Fail the run.
    Fail,
}

/// Which sides learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Both sides learn every round (AdvGame).
    Joint,
    /// Alternating phases of `phase_rounds` rounds; one side learns while the other is frozen.
    Sequential,
    /// Only the attacker learns (red-team a fixed target).
    FrozenDefender,
    /// Only the defender learns.
    FrozenAttacker,
    /// One player (the `[attacker]` table; no `[defender]`) plays both sides, told its role by the prompt, and
    /// one update per round learns from both sides' batches (single-policy self-play).
    SelfPlay,
}

fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
}
fn one_turn() -> u32 {
    1
}
fn is_one(v: &u32) -> bool {
    *v == 1
}

/// `[game]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GameCfg {
    /// Name of the game (the run directory's prefix; no path separators).
    pub name: String,
    /// Seed of every random choice of the run.
    pub seed: u64,
    /// Rounds to play (at least 1).
    #[schemars(range(min = 1))]
    pub rounds: u32,
    /// Which sides learn: `joint` (both, every round), `sequential` (alternating phases), `frozen-defender`,
    /// `frozen-attacker`, or `self-play` (one player plays and learns both sides).
    #[serde(default = "joint")]
    pub schedule: Schedule,
    /// Rounds per phase of the `sequential` schedule.
    #[serde(default)]
    pub phase_rounds: Option<u32>,
    /// Which side learns in the first phase of `sequential` (default attacker).
    #[serde(default)]
    pub first: Option<Side>,
    /// Seeds drawn per round (at least 1).
    #[schemars(range(min = 1))]
    pub seeds_per_round: usize,
    /// A: rewrites per seed.
    #[schemars(range(min = 1))]
    pub attacks_per_seed: usize,
    /// D: defender responses per faithful rewrite.
    #[schemars(range(min = 1))]
    pub responses_per_attack: usize,
    /// Represent each rewrite by the defender's best response (true) or its first response with a verdict, i.e.
    /// a reward (false); response 0 when none has one (`payoff::representative`).
    #[serde(default = "yes")]
    pub optimistic: bool,
    /// Turns per conversation (default 1, at most 16). With T > 1 the attacker writes T user turns, each after
    /// the conversation so far; the defender answers the first T − 1 once and the last `responses_per_attack`
    /// times; the judge rates the last exchange, and faithfulness is judged on all the attacker's turns.
    #[serde(default = "one_turn", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 16))]
    pub turns: u32,
    /// Restarts allowed for one in-flight request before the run fails.
    #[serde(default = "three")]
    pub max_restarts: u32,
}

fn joint() -> Schedule {
    Schedule::Joint
}

/// `[data]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataCfg {
    /// Seed sets the game draws from.
    pub train: Vec<SetCfg>,
    /// Held-out evaluation sets.
    #[serde(default)]
    pub eval: Vec<SetCfg>,
}

/// One data set: a CSV, TSV or JSON Lines file, read by a named layout (`format`) or by the columns it maps.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCfg {
    /// Name of the set (unique in the scenario).
    pub name: String,
    /// The data file (relative to the scenario file).
    pub path: PathBuf,
    /// The file's layout: `auto` (detected from an unambiguous header, or the columns mapped below), or a
    /// published one: `advgame`, `xstest`, `harmbench`, `wildjailbreak`, `or-bench`, `jbb`, `strongreject`,
    /// `advbench`. The keys below override the layout's columns.
    #[serde(default)]
    #[schemars(schema_with = "schema::format_schema")]
    pub format: Format,
    /// `csv`, `tsv` or `jsonl` where the file's extension does not say.
    #[serde(default)]
    pub file_type: Option<FileType>,
    /// The column that holds the prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The column that says whether a prompt is harmful or benign (with `harmful` and `benign`).
    #[serde(default)]
    pub label: Option<String>,
    /// The `label` values that mean harmful.
    #[serde(default)]
    pub harmful: Option<Vec<String>>,
    /// The `label` values that mean benign.
    #[serde(default)]
    pub benign: Option<Vec<String>>,
    /// A column with a finer category (a harm type, a prompt type): metrics per topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// A column whose text goes before the prompt (HarmBench's `ContextString`).
    #[serde(default)]
    pub context: Option<String>,
    /// A column with each record's id (else its line number).
    #[serde(default)]
    pub id: Option<String>,
    /// Keep only the rows whose column has one of the values: `filter = { data_type = ["adversarial_harmful"] }`.
    #[serde(default)]
    pub filter: BTreeMap<String, Vec<String>>,
    /// With a label column: keep only this category. Without one: the category of every prompt in the file.
    #[serde(default)]
    #[schemars(schema_with = "schema::category_schema")]
    pub category: Option<Category>,
    /// Keep only the first `limit` records (after the filters).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

/// `[payoffs]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoffCfg {
    /// `pairwise` (rewards from pairwise preferences) or `pointwise` (from pointwise scores).
    #[serde(default)]
    pub mode: PayoffMode,
    /// Attacker reward of an unparseable or unfaithful rewrite.
    #[serde(default = "minus_one")]
    pub error_reward: f64,
    /// Ask the judge whether each rewrite is faithful (false: every parseable rewrite counts as faithful).
    #[serde(default = "yes")]
    pub faithfulness_gate: bool,
    /// Multiplier applied to every attacker reward from the judge (not to the error reward).
    #[serde(default = "one")]
    pub attacker_weight: f64,
    /// Multiplier applied to every defender reward.
    #[serde(default = "one")]
    pub defender_weight: f64,
}

fn minus_one() -> f64 {
    -1.0
}
fn one() -> f64 {
    1.0
}

impl Default for PayoffCfg {
    fn default() -> Self {
        PayoffCfg {
            mode: PayoffMode::Pairwise,
            error_reward: -1.0,
            faithfulness_gate: true,
            attacker_weight: 1.0,
            defender_weight: 1.0,
        }
    }
}

/// `[attacker]`, `[defender]`, `[judge]`: a kind and its parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleCfg {
    pub kind: String,
    /// The `[cluster]` node that hosts the role (absent: this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub params: toml::Table,
}

/// `[models.NAME]`: a model file several roles use.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDecl {
    /// The model file or directory, relative to the scenario (absent: the roles' default model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The backend it lives on (a role naming the model may not name another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// `[replay]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayCfg {
    /// fsync the log and state files at each round end.
    #[serde(default = "yes")]
    pub fsync: bool,
}

impl Default for ReplayCfg {
    fn default() -> Self {
        ReplayCfg { fsync: true }
    }
}

/// `[eval]`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalCfg {
    /// Evaluate every N rounds (0: only after the last round). Needs `data.eval` sets.
    #[serde(default)]
    pub every: u32,
    /// Names of `data.eval` sets to use (default: all).
    #[serde(default)]
    pub sets: Option<Vec<String>>,
    /// How prompts reach the defender: `plain` (as written: plain requests, or a fixed attack set), `attacker`
    /// (rewritten by the current attacker), `adaptive` (rewritten by a best-response attacker trained against the
    /// frozen defender for `adaptive.rounds` rounds). Default `["plain"]`.
    #[serde(default = "plain_only")]
    #[schemars(schema_with = "schema::eval_modes_schema")]
    pub modes: Vec<crate::record::EvalMode>,
    /// Sets the `attacker` and `adaptive` modes rewrite (default: the sets of `sets`).
    #[serde(default)]
    pub attack_sets: Option<Vec<String>>,
    /// The best-response attacker of the `adaptive` mode.
    #[serde(default)]
    pub adaptive: AdaptiveCfg,
    /// Requests per role call during evaluation (0: all of a phase in one call). Smaller chunks bound a model's
    /// memory and let long evaluations report progress; the records do not depend on it when the role's
    /// generation does not depend on batch composition.
    #[serde(default)]
    pub chunk: usize,
}

impl Default for EvalCfg {
    fn default() -> Self {
        EvalCfg {
            every: 0,
            sets: None,
            modes: plain_only(),
            attack_sets: None,
            adaptive: AdaptiveCfg::default(),
            chunk: 0,
        }
    }
}

fn plain_only() -> Vec<crate::record::EvalMode> {
    vec![crate::record::EvalMode::Plain]
}

/// `[eval.adaptive]`: a fresh copy of the initial attacker (checkpoint `r0`) trained with the scenario's attacker
/// learner for `rounds` rounds against the frozen current defender, then evaluated like the `attacker` mode. Its
/// run (log, metrics) is kept in `<run dir>/adaptive/r<round>/`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveCfg {
    /// Training rounds of the best-response attacker.
    #[serde(default = "ten")]
    pub rounds: u32,
    /// Seeds per round (default: `game.seeds_per_round`).
    #[serde(default)]
    pub seeds_per_round: Option<usize>,
    /// Let the best-response run play on beside the rounds after its own (default): the round commits, with
    /// its adaptive records, once that run has ended. `false`: the round waits for it, so no game computes
    /// beside the main one after the round's evaluations (less memory, a longer run). The records are the same.
    #[serde(default = "yes")]
    pub beside: bool,
    /// At most this many best-response runs play at once (each on role threads of its own; default 2); a later
    /// one waits for a slot. The records are the same.
    #[serde(default = "two")]
    pub concurrent: u32,
}

impl Default for AdaptiveCfg {
    fn default() -> Self {
        AdaptiveCfg {
            rounds: ten(),
            seeds_per_round: None,
            beside: yes(),
            concurrent: two(),
        }
    }
}

fn ten() -> u32 {
    10
}

fn two() -> u32 {
    2
}

/// `[checkpoints]`: kept copies of every role's state (weights, optimizer, EMA, RNG, as the role saves them) in
/// `<run dir>/checkpoints/r<round>/<role>.bin`. Round 0 (the initial players) and the last round are always kept.
#[derive(Debug, Clone, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointCfg {
    /// Also keep every N-th round (0: only round 0 and the last).
    #[serde(default)]
    pub every: u32,
    /// Rotation: of the kept rounds after round 0, only the N most recent stay (round 0 and, at the end, the last
    /// round are always kept). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,
}

impl CheckpointCfg {
    /// Is round `round` of a `rounds`-round game checkpointed?
    pub fn keeps(&self, round: u32, rounds: u32) -> bool {
        round == 0 || round == rounds || (self.every > 0 && round.is_multiple_of(self.every))
    }
}

/// Fault injection for one role actor (test only). Requests are counted per role from 1 over the whole run.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleFault {
    /// Panic when handling these requests (an integer or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(schema_with = "schema::one_or_many_schema")]
    pub panic_on_request: Vec<u64>,
    /// Return an error when handling these requests (an integer or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(schema_with = "schema::one_or_many_schema")]
    pub error_on_request: Vec<u64>,
    /// Sleep this long before every request.
    #[serde(default)]
    pub delay_ms: u64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u64),
        Many(Vec<u64>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
    })
}

/// `[faults]` (test only).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsCfg {
    /// Faults of the attacker actor.
    #[serde(default)]
    pub attacker: Option<RoleFault>,
    /// Faults of the defender actor.
    #[serde(default)]
    pub defender: Option<RoleFault>,
    /// Faults of the judge actor.
    #[serde(default)]
    pub judge: Option<RoleFault>,
    /// For the replay actor, a "request" is a round commit.
    #[serde(default)]
    pub replay: Option<RoleFault>,
    /// Sleep after each committed round (lets tests kill a run between rounds).
    #[serde(default)]
    pub round_delay_ms: u64,
}
