//! Loading a scenario: the file and its `--set` overrides, validation before anything runs (every error with
//! file:line:column or the `--set` that caused it, and the key path), the data sets, and the resolved scenario
//! ([`Loaded`]) that a run writes into its directory.

use super::*;
use crate::data;
use crate::registry::{BuildContext, Registry};
use crate::roles::{Role, RoleError, Seed};
use crate::tomlpath;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The most turns a conversation may have (`game.turns`).
pub const MAX_TURNS: u32 = 16;

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
/// Where roles run (`[cluster]`, a role's `node`) is one of them: a game placed over nodes plays the same game.
pub const SCHEDULING_KEYS: &[&str] = &[
    "eval.adaptive.beside",
    "eval.adaptive.concurrent",
    "cluster",
    "attacker.node",
    "defender.node",
    "judge.node",
];

/// May a `--set KEY=VALUE` override apply to a resumed run?
pub fn resumable_override(set: &str) -> bool {
    parse_override(set).is_ok_and(|(key, _)| {
        key.starts_with("faults.")
            || key.starts_with("cluster.")
            || SCHEDULING_KEYS.contains(&key.as_str())
    })
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
            learns: trains(&self.scenario, role),
            node: None,
            self_play: self.scenario.defender.is_none() && role != Role::Judge,
            turns: self.scenario.game.turns,
        }
    }

    /// The configuration of a role.
    pub fn role(&self, role: Role) -> &RoleCfg {
        self.scenario.role(role)
    }

    /// Is one player playing both sides (`game.schedule = "self-play"`)? Its game has no defender actor: the
    /// defender's requests go to the attacker's.
    pub fn self_play(&self) -> bool {
        self.scenario.self_play()
    }

    /// The same scenario with its one player (self-play) played by two copies, an attacker and a defender built
    /// from its table (the `[attacker]` table becomes the `[defender]` too): for games that load different states
    /// into the two sides (a best-response attacker against a frozen defender, evaluations of saved players).
    /// Other scenarios are returned as they are.
    pub fn two_players(&self) -> Loaded {
        let mut two = self.clone();
        two.scenario.split_player();
        two
    }

    /// Does `side` learn in `round` (1-based)?
    pub fn learns(&self, side: Side, round: u32) -> bool {
        learns(&self.scenario.game, side, round)
    }
}

/// Does the scenario train `role` in some round: by its schedule, or (the attacker) as the best-response attacker
/// of an adaptive evaluation? The judge never learns.
pub fn trains(s: &Scenario, role: Role) -> bool {
    let side = match role {
        Role::Attacker => Side::Attacker,
        Role::Defender => Side::Defender,
        Role::Judge => return false,
    };
    let adaptive = side == Side::Attacker
        && !s.data.eval.is_empty()
        && s.eval.modes.contains(&crate::record::EvalMode::Adaptive);
    adaptive || (1..=s.game.rounds.max(1)).any(|r| learns(&s.game, side, r))
}

/// Does `side` learn in `round` (1-based) under the game's schedule?
pub fn learns(g: &GameCfg, side: Side, round: u32) -> bool {
    match g.schedule {
        Schedule::Joint | Schedule::SelfPlay => true,
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
    let cannot = |why: String| one_err(path.display().to_string(), None, why);
    // A device or a pipe (`/dev/zero`) would be read without end.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(cannot("cannot read scenario: not a regular file".into()));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| cannot(format!("cannot read scenario: {e}")))?;
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
    let mut scenario: Scenario = tomlpath::from_str_located(&merged).map_err(|e| {
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
    resolve_models(&mut scenario, &mut |key, msg| {
        errs.push(loc.at(Some(key), msg))
    });
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
    if !(1..=MAX_TURNS).contains(&g.turns) {
        errs.push(loc.at(
            Some("game.turns"),
            format!("must be between 1 and {MAX_TURNS}"),
        ));
    }
    if let Some((bound, what)) = super::fit::memory_bound()
        && let Some((key, why)) = super::fit::too_big(&scenario, bound, what)
    {
        errs.push(loc.at(Some(key), why));
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
    match (g.schedule, &scenario.defender) {
        (Schedule::SelfPlay, Some(_)) => errs.push(loc.at(
            Some("defender"),
            "under `game.schedule = \"self-play\"` one player plays both sides: its table is `[attacker]`; \
             remove `[defender]`",
        )),
        (s, None) if s != Schedule::SelfPlay => errs.push(loc.at(
            None,
            "missing table `[defender]` (only the `self-play` schedule plays without one)",
        )),
        _ => {}
    }
    if g.schedule == Schedule::SelfPlay && scenario.faults.defender.is_some() {
        errs.push(loc.at(
            Some("faults.defender"),
            "under self-play the defender is the attacker's player: inject its faults with `faults.attacker`",
        ));
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
            match data::read_set(&file, s) {
                Ok(mut seeds) => {
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
    if scenario.checkpoints.keep_last == Some(0) {
        errs.push(loc.at(
            Some("checkpoints.keep_last"),
            "must be at least 1 (round 0 and the last round are always kept)",
        ));
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
    let self_play = scenario.self_play();
    let kind = &scenario.attacker.kind;
    if self_play
        && registry.info(Role::Attacker, kind).is_some()
        && registry.info(Role::Defender, kind).is_none()
    {
        errs.push(loc.at(
            Some("attacker.kind"),
            format!(
                "`{}` cannot play the defender, and under `game.schedule = \"self-play\"` one player plays both sides",
                scenario.attacker.kind
            ),
        ));
    }
    for role in [Role::Attacker, Role::Defender, Role::Judge] {
        if self_play && role == Role::Defender {
            continue; // the attacker's table, checked as the attacker
        }
        let cfg = scenario.role(role);
        let ctx = BuildContext {
            scenario_dir: base_dir.clone(),
            seed: g.seed,
            role,
            run_dir: None,
            learns: trains(&scenario, role),
            node: cfg.node.clone(),
            self_play: self_play && role != Role::Judge,
            turns: g.turns,
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

    check_cluster(&scenario, &mut |key, msg| errs.push(loc.at(Some(key), msg)));

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

/// A role's `model = "NAME"` naming a `[models.NAME]` takes its `path` (absent: the role's default model) and its
/// `backend` (a role that names another backend is an error: a shared model lives on one).
fn resolve_models(scenario: &mut Scenario, err: &mut dyn FnMut(&str, String)) {
    let models = scenario.models.clone();
    for (role, cfg) in scenario.tables_mut() {
        let Some(name) = cfg.params.get("model").and_then(|v| v.as_str()) else {
            continue;
        };
        let Some(decl) = models.get(name) else {
            continue;
        };
        let name = name.to_string();
        match &decl.path {
            Some(p) => {
                cfg.params
                    .insert("model".into(), toml::Value::String(p.display().to_string()));
            }
            None => {
                cfg.params.remove("model");
            }
        }
        if let Some(b) = &decl.backend {
            match cfg.params.get("backend").and_then(|v| v.as_str()) {
                Some(mine) if mine != b => err(
                    &format!("{role}.backend"),
                    format!(
                        "`{mine}`, but the shared model `models.{name}` lives on `{b}` (drop the role's backend)"
                    ),
                ),
                _ => {
                    cfg.params
                        .insert("backend".into(), toml::Value::String(b.clone()));
                }
            }
        }
    }
}

/// `[cluster]` and the roles' `node` keys: unique node names with `HOST:PORT` addresses, a cookie variable that
/// is set, every `node` listed, heartbeats that can time out.
fn check_cluster(scenario: &Scenario, err: &mut dyn FnMut(&str, String)) {
    let placed: Vec<(Role, &str)> = [
        (Role::Attacker, Some(&scenario.attacker)),
        (Role::Defender, scenario.defender.as_ref()),
        (Role::Judge, Some(&scenario.judge)),
    ]
    .into_iter()
    .filter_map(|(r, cfg)| cfg?.node.as_deref().map(|n| (r, n)))
    .collect();
    let Some(c) = &scenario.cluster else {
        for (role, _) in placed {
            err(
                &format!("{role}.node"),
                "names a node, but the scenario has no `[cluster]` table listing nodes".into(),
            );
        }
        return;
    };
    let mut names = BTreeSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        if n.name.is_empty() || !names.insert(n.name.as_str()) {
            err(
                &format!("cluster.nodes[{i}].name"),
                format!("`{}` is empty or listed twice", n.name),
            );
        }
        let port = n.addr.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p > 0) {
            err(
                &format!("cluster.nodes[{i}].addr"),
                format!("`{}` is not HOST:PORT", n.addr),
            );
        }
    }
    if c.nodes.is_empty() {
        err("cluster.nodes", "lists no node".into());
    }
    for (role, node) in placed {
        if !names.contains(node) {
            err(
                &format!("{role}.node"),
                format!(
                    "no node `{node}` in `cluster.nodes` (listed: {})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    if c.cookie_env.is_empty() {
        err("cluster.cookie_env", "names no environment variable".into());
    } else if std::env::var_os(&c.cookie_env).is_none_or(|v| v.is_empty()) {
        err(
            "cluster.cookie_env",
            format!(
                "the environment variable `{}` (the cluster's cookie) is not set",
                c.cookie_env
            ),
        );
    }
    for (key, v) in [
        ("cluster.heartbeat_ms", c.heartbeat_ms),
        ("cluster.heartbeat_timeout_ms", c.heartbeat_timeout_ms),
        ("cluster.connect_timeout_ms", c.connect_timeout_ms),
        ("cluster.max_transfer_mb", c.max_transfer_mb),
        ("cluster.chunk_kb", c.chunk_kb),
    ] {
        if v == 0 {
            err(key, "must be at least 1".into());
        }
    }
    if c.chunk_kb > 8192 {
        err(
            "cluster.chunk_kb",
            format!("{} is over 8192 (a cluster frame holds 16 MiB)", c.chunk_kb),
        );
    }
    if c.heartbeat_timeout_ms <= c.heartbeat_ms {
        err(
            "cluster.heartbeat_timeout_ms",
            format!(
                "must be longer than `cluster.heartbeat_ms` ({} ms), or every node is lost between two heartbeats",
                c.heartbeat_ms
            ),
        );
    }
}
