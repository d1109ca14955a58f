//! Scenario files: the TOML schema (`schema = 1`), `--set a.b=v` overrides, validation before anything runs (every
//! error with file:line:column or the `--set` that caused it, and the key path), data loading and the resolved
//! scenario written into the run directory.

use crate::data::{self, Format};
use crate::record::EvalMode;
use crate::registry::{self, BuildContext, Registry};
use crate::roles::{Category, Role, RoleError, Seed};
use crate::tomlpath;
pub use crate::vocab::{PayoffMode, Side};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

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
    /// The attacker: `kind` (see `sparring list`) and that kind's parameters.
    pub attacker: RoleCfg,
    /// The defender: `kind` (see `sparring list`) and that kind's parameters.
    pub defender: RoleCfg,
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
}

fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
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
    /// `frozen-attacker`.
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

/// One data set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCfg {
    /// Name of the set (unique in the scenario).
    pub name: String,
    /// The data file (relative to the scenario file).
    pub path: PathBuf,
    /// `auto` (`.csv`: harmbench; JSONL whose first record has `label`: xstest; else advgame), `advgame`, `xstest`
    /// or `harmbench`.
    #[serde(default)]
    #[schemars(schema_with = "format_schema")]
    pub format: Format,
    /// Keep only this category.
    #[serde(default)]
    #[schemars(schema_with = "category_schema")]
    pub category: Option<Category>,
    /// Keep only the first `limit` records (after the category filter).
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
    #[serde(flatten)]
    pub params: toml::Table,
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
    #[schemars(schema_with = "eval_modes_schema")]
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
    #[schemars(schema_with = "one_or_many_schema")]
    pub panic_on_request: Vec<u64>,
    /// Return an error when handling these requests (an integer or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(schema_with = "one_or_many_schema")]
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

/// Without a registry: a table with a `kind` string and any other keys ([`json_schema`] narrows it per kind).
impl JsonSchema for RoleCfg {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoleCfg".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": { "kind": { "type": "string", "description": "The role's kind (see `sparring list`)." } },
            "required": ["kind"]
        })
    }
}

/// The names serde gives unit variants, as a string `enum`.
fn variants<T: Serialize>(all: &[T]) -> Schema {
    let names: Vec<serde_json::Value> = all
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    json_schema!({ "type": "string", "enum": names })
}

fn format_schema(_: &mut SchemaGenerator) -> Schema {
    // Every variant: a new one fails to compile here until it is listed.
    let all = [
        Format::Auto,
        Format::Advgame,
        Format::Xstest,
        Format::Harmbench,
    ];
    for f in all {
        match f {
            Format::Auto | Format::Advgame | Format::Xstest | Format::Harmbench => {}
        }
    }
    variants(&all)
}

fn category_schema(_: &mut SchemaGenerator) -> Schema {
    let all = [Category::Harmful, Category::Benign];
    for c in all {
        match c {
            Category::Harmful | Category::Benign => {}
        }
    }
    variants(&all)
}

fn eval_modes_schema(_: &mut SchemaGenerator) -> Schema {
    let all = [EvalMode::Plain, EvalMode::Attacker, EvalMode::Adaptive];
    for m in all {
        match m {
            EvalMode::Plain | EvalMode::Attacker | EvalMode::Adaptive => {}
        }
    }
    json_schema!({ "type": "array", "items": variants(&all) })
}

fn one_or_many_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "array", "items": { "type": "integer", "minimum": 0 } }
        ]
    })
}

/// The JSON Schema of scenario files (draft 7, see [`registry::schema_settings`]) for editors: every section and
/// key with its description and default, and each role table checked against the parameters of its `kind` among
/// the registered kinds that may play the role (one `oneOf` branch per kind, told apart by `kind`).
pub fn json_schema(registry: &Registry) -> Schema {
    let mut g = registry::schema_settings().into_generator();
    // One definition per kind: its parameter table plus `kind`.
    let mut kind_defs: BTreeMap<(bool, String), String> = BTreeMap::new();
    let mut inlined = BTreeSet::new();
    for info in registry.kinds() {
        let judge = info.roles.contains(&Role::Judge);
        let name = format!("{}.{}", if judge { "judge" } else { "policy" }, info.kind);
        let mut table = match &info.params {
            Some(p) => {
                let sub = p.subschema(&mut g);
                let def = sub
                    .get("$ref")
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.strip_prefix("#/definitions/"))
                    .map(str::to_string);
                match def.and_then(|d| Some((g.definitions().get(&d)?.clone(), d))) {
                    Some((body, d)) => {
                        inlined.insert(d);
                        Schema::try_from(body).unwrap_or(sub)
                    }
                    None => sub,
                }
            }
            None => json_schema!({ "type": "object" }),
        };
        let obj = table.ensure_object();
        obj.insert("title".into(), info.kind.clone().into());
        obj.insert("description".into(), info.about.clone().into());
        let props = obj
            .entry("properties")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert(
                "kind".into(),
                serde_json::json!({ "type": "string", "enum": [info.kind], "description": info.about }),
            );
        }
        let req = obj
            .entry("required")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(req) = req.as_array_mut() {
            req.insert(0, "kind".into());
        }
        g.definitions_mut().insert(name.clone(), table.to_value());
        kind_defs.insert((judge, info.kind.clone()), name);
    }
    let mut root = g.root_schema_for::<Scenario>();
    let obj = root.ensure_object();
    obj.insert("title".into(), "sparring scenario".into());
    if let Some(defs) = obj.get_mut("definitions").and_then(|d| d.as_object_mut()) {
        defs.remove("RoleCfg");
        for d in &inlined {
            defs.remove(d);
        }
    }
    for role in [Role::Attacker, Role::Defender, Role::Judge] {
        let kinds = registry.kinds_for(role);
        let judge = role == Role::Judge;
        let branches: Vec<serde_json::Value> = kinds
            .iter()
            .filter_map(|k| kind_defs.get(&(judge, k.clone())))
            .map(|d| serde_json::json!({ "$ref": format!("#/definitions/{d}") }))
            .collect();
        let about = obj
            .get("properties")
            .and_then(|p| p.get(role.as_str()))
            .and_then(|p| p.get("description"))
            .cloned()
            .unwrap_or_default();
        let schema = serde_json::json!({
            "description": about,
            "type": "object",
            "properties": {
                "kind": { "type": "string", "enum": kinds, "description": "The role's kind (see `sparring list`)." }
            },
            "required": ["kind"],
            "oneOf": branches
        });
        if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
            props.insert(role.as_str().into(), schema);
        }
    }
    root
}

/// One validation error: where, which key, what.
#[derive(Debug, Clone)]
pub struct Located {
    /// `file:line:column`, `--set key=value`, or the file alone.
    pub location: String,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: `{}`: {}", self.location, k, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Keys that change how the engine schedules a run, not the game it plays (no record depends on them): they
/// are left out of the run id, and a resumed run may change them (as it may `faults.*`).
pub const SCHEDULING_KEYS: &[&str] = &["eval.adaptive.beside", "eval.adaptive.concurrent"];

/// May a `--set KEY=VALUE` override apply to a resumed run?
pub fn resumable_override(set: &str) -> bool {
    parse_override(set)
        .is_ok_and(|(key, _)| key.starts_with("faults.") || SCHEDULING_KEYS.contains(&key.as_str()))
}

/// Remove the dotted `key` from `table`, and the tables it leaves empty.
fn remove_key(table: &mut toml::map::Map<String, toml::Value>, key: &str) {
    let (head, rest) = match key.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (key, None),
    };
    match rest {
        None => {
            table.remove(head);
        }
        Some(rest) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                remove_key(t, rest);
                if t.is_empty() {
                    table.remove(head);
                }
            }
        }
    }
}

/// All validation errors of a scenario.
#[derive(Debug, Clone)]
pub struct ScenarioError {
    pub errors: Vec<Located>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// A validated scenario with its data loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    /// The file it came from.
    pub source: PathBuf,
    /// Directory relative paths resolve against.
    pub base_dir: PathBuf,
    /// The resolved scenario (overrides applied, `base_dir` set), as TOML text.
    pub resolved: String,
    /// Run id: the game name and a hash of the resolved scenario without its test-only `[faults]`, its
    /// `base_dir` and the keys that only schedule the adaptive evaluation (`eval.adaptive.beside`, `.concurrent`),
    /// so a run with injected faults, from a moved checkout or scheduled otherwise is comparable record for record
    /// with the same run without them.
    pub run_id: String,
    /// Seeds the game draws from, in file order.
    pub train: Vec<Seed>,
    /// Evaluation sets in scenario order.
    pub eval: Vec<(String, Vec<Seed>)>,
}

impl Loaded {
    /// The build context of a role.
    pub fn context(&self, role: Role, run_dir: Option<PathBuf>) -> BuildContext {
        BuildContext {
            scenario_dir: self.base_dir.clone(),
            seed: self.scenario.game.seed,
            role,
            run_dir,
        }
    }

    /// The configuration of a role.
    pub fn role(&self, role: Role) -> &RoleCfg {
        match role {
            Role::Attacker => &self.scenario.attacker,
            Role::Defender => &self.scenario.defender,
            Role::Judge => &self.scenario.judge,
        }
    }

    /// Does `side` learn in `round` (1-based)?
    pub fn learns(&self, side: Side, round: u32) -> bool {
        learns(&self.scenario.game, side, round)
    }
}

/// Does `side` learn in `round` (1-based) under the game's schedule?
pub fn learns(g: &GameCfg, side: Side, round: u32) -> bool {
    match g.schedule {
        Schedule::Joint => true,
        Schedule::FrozenDefender => side == Side::Attacker,
        Schedule::FrozenAttacker => side == Side::Defender,
        Schedule::Sequential => {
            let n = g.phase_rounds.unwrap_or(1).max(1);
            let phase = round.saturating_sub(1) / n;
            let first = g.first.unwrap_or(Side::Attacker);
            phase.is_multiple_of(2) == (side == first)
        }
    }
}

/// Maps key paths to locations in the scenario file or to the `--set` that provided them.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    overrides: &'a [(String, String)],
}

impl Locator<'_> {
    fn at(&self, key: Option<&str>, message: impl Into<String>) -> Located {
        let message = message.into();
        let location = match key {
            Some(k) => {
                let over = self.overrides.iter().rev().find(|(ok, _)| {
                    k == ok || k.starts_with(&format!("{ok}.")) || k.starts_with(&format!("{ok}["))
                });
                match over {
                    Some((ok, ov)) => format!("--set {ok}={ov}"),
                    None => match tomlpath::span_of(self.text, k) {
                        Some(span) => self.pos(span.start),
                        None => self.file.display().to_string(),
                    },
                }
            }
            None => self.file.display().to_string(),
        };
        Located {
            location,
            key: key.map(str::to_string),
            message,
        }
    }

    fn pos(&self, offset: usize) -> String {
        let (l, c) = tomlpath::line_col(self.text, offset);
        format!("{}:{l}:{c}", self.file.display())
    }
}

fn one_err(location: String, key: Option<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        errors: vec![Located {
            location,
            key,
            message: message.into(),
        }],
    }
}

/// Parse `key=value` (value in TOML syntax, falling back to a plain string).
pub fn parse_override(s: &str) -> Result<(String, toml::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--set {s}: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("--set {s}: empty key"));
    }
    let v = v.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_string())),
        Err(_) => toml::Value::String(v.to_string()),
    };
    Ok((k.to_string(), value))
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        let (name, index) = match p.split_once('[') {
            Some((n, rest)) => {
                let idx = rest
                    .trim_end_matches(']')
                    .parse::<usize>()
                    .map_err(|_| format!("bad index in `{p}`"))?;
                (n, Some(idx))
            }
            None => (*p, None),
        };
        let last = i + 1 == parts.len();
        if last && index.is_none() {
            cur.insert(name.to_string(), value);
            return Ok(());
        }
        let entry = cur
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let entry = match index {
            Some(idx) => {
                let arr = entry
                    .as_array_mut()
                    .ok_or_else(|| format!("`{name}` is not an array"))?;
                let len = arr.len();
                let slot = arr
                    .get_mut(idx)
                    .ok_or_else(|| format!("`{name}` has {len} elements, no [{idx}]"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            None => entry,
        };
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{name}` is not a table"))?;
    }
    Ok(())
}

/// Load and validate a scenario file with `--set` overrides (`key=value` strings), check its roles against the
/// registry and load its data. Nothing runs before this succeeds.
pub fn load(
    path: &Path,
    overrides: &[String],
    registry: &Registry,
) -> Result<Loaded, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        one_err(
            path.display().to_string(),
            None,
            format!("cannot read scenario: {e}"),
        )
    })?;
    load_str(path, &text, overrides, registry)
}

/// As `load`, with the file's text given.
pub fn load_str(
    path: &Path,
    text: &str,
    overrides: &[String],
    registry: &Registry,
) -> Result<Loaded, ScenarioError> {
    let mut parsed_overrides = Vec::new();
    let mut override_strs = Vec::new();
    for o in overrides {
        let (k, v) = parse_override(o).map_err(|m| one_err("--set".into(), None, m))?;
        override_strs.push((
            k.clone(),
            o.split_once('=')
                .map(|x| x.1.trim().to_string())
                .unwrap_or_default(),
        ));
        parsed_overrides.push((k, v));
    }
    let loc = Locator {
        file: path,
        text,
        overrides: &override_strs,
    };

    // Syntax.
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let location = e
                .span()
                .map(|s| loc.pos(s.start))
                .unwrap_or_else(|| path.display().to_string());
            return Err(one_err(location, None, e.message().trim().to_string()));
        }
    };
    for (k, v) in parsed_overrides {
        set_path(&mut table, &k, v)
            .map_err(|m| one_err(format!("--set {k}"), Some(k.clone()), m))?;
    }
    let merged = if overrides.is_empty() {
        text.to_string()
    } else {
        toml::to_string(&table).map_err(|e| one_err("--set".into(), None, e.to_string()))?
    };

    // Types and unknown keys.
    let scenario: Scenario = tomlpath::from_str_located(&merged).map_err(|e| {
        let mut l = loc.at(e.key.as_deref(), e.message.clone());
        if e.key.is_none()
            && overrides.is_empty()
            && let Some(s) = e.span
        {
            l.location = loc.pos(s.start);
        }
        ScenarioError { errors: vec![l] }
    })?;

    let base_dir = match &scenario.base_dir {
        Some(b) => b.clone(),
        None => {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            std::path::absolute(&dir).unwrap_or(dir)
        }
    };

    // Semantics.
    let mut errs: Vec<Located> = Vec::new();
    let g = &scenario.game;
    if scenario.schema != 1 {
        errs.push(loc.at(
            Some("schema"),
            format!(
                "unsupported schema {}, this sparring reads schema 1",
                scenario.schema
            ),
        ));
    }
    if g.name.trim().is_empty() || g.name.contains(['/', '\\']) {
        errs.push(loc.at(
            Some("game.name"),
            "must be a non-empty name without path separators",
        ));
    }
    for (k, v) in [
        ("game.rounds", g.rounds as usize),
        ("game.seeds_per_round", g.seeds_per_round),
        ("game.attacks_per_seed", g.attacks_per_seed),
        ("game.responses_per_attack", g.responses_per_attack),
    ] {
        if v == 0 {
            errs.push(loc.at(Some(k), "must be at least 1"));
        }
    }
    match (g.schedule, g.phase_rounds) {
        (Schedule::Sequential, None) => errs.push(loc.at(
            Some("game.schedule"),
            "the sequential schedule needs `game.phase_rounds`",
        )),
        (Schedule::Sequential, Some(0)) => {
            errs.push(loc.at(Some("game.phase_rounds"), "must be at least 1"))
        }
        (s, Some(_)) if s != Schedule::Sequential => errs.push(loc.at(
            Some("game.phase_rounds"),
            "only used by the sequential schedule",
        )),
        _ => {}
    }
    if g.first.is_some() && g.schedule != Schedule::Sequential {
        errs.push(loc.at(Some("game.first"), "only used by the sequential schedule"));
    }
    let p = &scenario.payoffs;
    for (k, v) in [
        ("payoffs.error_reward", p.error_reward),
        ("payoffs.attacker_weight", p.attacker_weight),
        ("payoffs.defender_weight", p.defender_weight),
    ] {
        if !v.is_finite() {
            errs.push(loc.at(Some(k), "must be a finite number"));
        }
    }
    if scenario.data.train.is_empty() {
        errs.push(loc.at(Some("data.train"), "needs at least one seed set"));
    }

    // Data.
    let mut names = BTreeSet::new();
    let mut train = Vec::new();
    let mut eval = Vec::new();
    for (which, sets) in [
        ("train", &scenario.data.train),
        ("eval", &scenario.data.eval),
    ] {
        for (i, s) in sets.iter().enumerate() {
            let key = format!("data.{which}[{i}]");
            if !names.insert(s.name.clone()) {
                errs.push(loc.at(
                    Some(&format!("{key}.name")),
                    format!("duplicate set name `{}`", s.name),
                ));
                continue;
            }
            if s.limit == Some(0) {
                errs.push(loc.at(Some(&format!("{key}.limit")), "must be at least 1"));
            }
            let file = if s.path.is_absolute() {
                s.path.clone()
            } else {
                base_dir.join(&s.path)
            };
            if !file.is_file() {
                errs.push(loc.at(
                    Some(&format!("{key}.path")),
                    format!("no such file: {}", file.display()),
                ));
                continue;
            }
            match data::read_set(&file, s.format, &s.name) {
                Ok(mut seeds) => {
                    if let Some(c) = s.category {
                        seeds.retain(|x| x.category == c);
                    }
                    if let Some(l) = s.limit {
                        seeds.truncate(l);
                    }
                    if seeds.is_empty() {
                        errs.push(
                            loc.at(Some(&format!("{key}.path")), "no seeds left in this set"),
                        );
                    }
                    if which == "train" {
                        train.extend(seeds);
                    } else {
                        eval.push((s.name.clone(), seeds));
                    }
                }
                Err(e) => errs.push(loc.at(Some(&format!("{key}.path")), e.to_string())),
            }
        }
    }
    let mut ids = BTreeSet::new();
    for s in train.iter().chain(eval.iter().flat_map(|(_, v)| v.iter())) {
        if !ids.insert(&*s.id) {
            errs.push(loc.at(Some("data"), format!("duplicate seed id `{}`", s.id)));
            break;
        }
    }
    if scenario.eval.modes.is_empty() {
        errs.push(loc.at(
            Some("eval.modes"),
            "needs at least one mode (plain, attacker, adaptive)",
        ));
    }
    let mut seen_modes = BTreeSet::new();
    for (i, m) in scenario.eval.modes.iter().enumerate() {
        if !seen_modes.insert(*m) {
            errs.push(loc.at(
                Some(&format!("eval.modes[{i}]")),
                format!("`{m}` is listed twice"),
            ));
        }
    }
    if scenario
        .eval
        .modes
        .contains(&crate::record::EvalMode::Adaptive)
        && scenario.eval.adaptive.rounds == 0
    {
        errs.push(loc.at(
            Some("eval.adaptive.rounds"),
            "the adaptive evaluation needs at least 1 round of best-response training",
        ));
    }
    if scenario.eval.adaptive.seeds_per_round == Some(0) {
        errs.push(loc.at(Some("eval.adaptive.seeds_per_round"), "must be at least 1"));
    }
    if scenario.eval.adaptive.concurrent == 0 {
        errs.push(loc.at(
            Some("eval.adaptive.concurrent"),
            "must be at least 1 (best-response runs playing at once)",
        ));
    }
    for (key, names) in [
        ("eval.sets", &scenario.eval.sets),
        ("eval.attack_sets", &scenario.eval.attack_sets),
    ] {
        let Some(sets) = names else { continue };
        let known: BTreeMap<&str, ()> = scenario
            .data
            .eval
            .iter()
            .map(|s| (s.name.as_str(), ()))
            .collect();
        for (i, n) in sets.iter().enumerate() {
            if !known.contains_key(n.as_str()) {
                errs.push(loc.at(
                    Some(&format!("{key}[{i}]")),
                    format!("no `data.eval` set named `{n}`"),
                ));
            }
        }
    }

    // Roles.
    for role in [Role::Attacker, Role::Defender, Role::Judge] {
        let cfg = match role {
            Role::Attacker => &scenario.attacker,
            Role::Defender => &scenario.defender,
            Role::Judge => &scenario.judge,
        };
        let ctx = BuildContext {
            scenario_dir: base_dir.clone(),
            seed: g.seed,
            role,
            run_dir: None,
        };
        if let Err(e) = registry.check(role, &cfg.kind, &cfg.params, &ctx) {
            let (key, msg) = match e {
                RoleError::Config { key, message } => (key, message),
                other => (None, other.to_string()),
            };
            let key = match key {
                Some(k) => format!("{role}.{k}"),
                None => role.to_string(),
            };
            errs.push(loc.at(Some(&key), msg));
        }
    }

    if !errs.is_empty() {
        return Err(ScenarioError { errors: errs });
    }

    let mut resolved_table = table;
    resolved_table.insert(
        "base_dir".into(),
        toml::Value::String(base_dir.display().to_string()),
    );
    let resolved = toml::to_string(&resolved_table)
        .map_err(|e| one_err("resolve".into(), None, e.to_string()))?;
    let mut identity = resolved_table;
    identity.remove("faults");
    identity.remove("base_dir");
    for key in SCHEDULING_KEYS {
        remove_key(&mut identity, key);
    }
    let identity =
        toml::to_string(&identity).map_err(|e| one_err("resolve".into(), None, e.to_string()))?;
    let run_id = format!(
        "{}-{:016x}",
        scenario.game.name,
        crate::rng::fnv1a(&identity)
    );

    let eval = match &scenario.eval.sets {
        Some(names) => eval
            .into_iter()
            .filter(|(n, _)| names.contains(n))
            .collect(),
        None => eval,
    };
    Ok(Loaded {
        source: path.to_path_buf(),
        base_dir,
        resolved,
        run_id,
        train,
        eval,
        scenario,
    })
}
