//! The registry: maps a scenario `kind` string to a constructor for a `Policy` or a `Judge`, with a cheap
//! `check` used by `sparring validate` and a parameter description shown by `sparring list`.

use crate::roles::{Judge, Policy, Role, RoleError};
use crate::tomlpath;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a constructor knows besides its parameters.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Directory that relative paths in the scenario are resolved against.
    pub scenario_dir: PathBuf,
    /// The scenario's `game.seed`.
    pub seed: u64,
    /// Which role is being built.
    pub role: Role,
    /// The run directory, when building for a run (None during `validate`).
    pub run_dir: Option<PathBuf>,
}

impl BuildContext {
    /// A context outside any scenario (tests, benches, embedding): paths resolve against the working directory,
    /// seed 0, no run directory.
    pub fn detached(role: Role) -> Self {
        BuildContext {
            scenario_dir: ".".into(),
            seed: 0,
            role,
            run_dir: None,
        }
    }

    /// Resolve a path parameter against the scenario directory.
    pub fn resolve(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.scenario_dir.join(p)
        }
    }

    /// Deserialize a role's parameter table into `T` (use `#[serde(deny_unknown_fields)]`); errors carry the key
    /// path inside the table, which the engine maps to the scenario's file:line:column.
    pub fn parse<T: DeserializeOwned>(&self, params: &toml::Table) -> Result<T, RoleError> {
        let text = toml::to_string(params).map_err(|e| RoleError::Config {
            key: None,
            message: e.to_string(),
        })?;
        tomlpath::from_str_located::<T>(&text).map_err(|e| RoleError::Config {
            key: e.key,
            message: e.message,
        })
    }
}

/// One documented parameter of a kind.
#[derive(Debug, Clone)]
pub struct ParamDoc {
    pub name: &'static str,
    /// TOML type, e.g. `integer`, `string array`.
    pub ty: &'static str,
    /// Default value as TOML text, `None` when required.
    pub default: Option<&'static str>,
    pub about: &'static str,
}

/// Constructor of a policy from its parameter table (the role's table without `kind`).
pub type PolicyCtor =
    Arc<dyn Fn(&toml::Table, &BuildContext) -> Result<Box<dyn Policy>, RoleError> + Send + Sync>;
/// Constructor of a judge.
pub type JudgeCtor =
    Arc<dyn Fn(&toml::Table, &BuildContext) -> Result<Box<dyn Judge>, RoleError> + Send + Sync>;
/// Cheap validation of a parameter table (no model loading); must reject what `build` would reject for config.
pub type CheckFn = Arc<dyn Fn(&toml::Table, &BuildContext) -> Result<(), RoleError> + Send + Sync>;

/// Documentation and check shared by both kinds of entries.
#[derive(Clone)]
pub struct KindInfo {
    pub kind: String,
    pub about: String,
    /// Which roles may use this kind (a policy kind may be attacker-only, defender-only or both).
    pub roles: Vec<Role>,
    pub params: Vec<ParamDoc>,
    pub check: CheckFn,
}

#[derive(Clone)]
struct PolicyEntry {
    info: KindInfo,
    build: PolicyCtor,
}

#[derive(Clone)]
struct JudgeEntry {
    info: KindInfo,
    build: JudgeCtor,
}

/// Kind name → constructor. Cheap to clone (entries are shared).
#[derive(Clone, Default)]
pub struct Registry {
    policies: BTreeMap<String, PolicyEntry>,
    judges: BTreeMap<String, JudgeEntry>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a policy kind (replaces an existing one of the same name).
    pub fn add_policy(&mut self, info: KindInfo, build: PolicyCtor) {
        self.policies
            .insert(info.kind.clone(), PolicyEntry { info, build });
    }

    /// Register a judge kind.
    pub fn add_judge(&mut self, info: KindInfo, build: JudgeCtor) {
        self.judges
            .insert(info.kind.clone(), JudgeEntry { info, build });
    }

    /// All kinds, policies first, sorted by name.
    pub fn kinds(&self) -> Vec<&KindInfo> {
        self.policies
            .values()
            .map(|e| &e.info)
            .chain(self.judges.values().map(|e| &e.info))
            .collect()
    }

    /// The entry for `kind` if it may play `role`.
    pub fn info(&self, role: Role, kind: &str) -> Option<&KindInfo> {
        let info = match role {
            Role::Judge => self.judges.get(kind).map(|e| &e.info),
            _ => self.policies.get(kind).map(|e| &e.info),
        }?;
        info.roles.contains(&role).then_some(info)
    }

    /// Names of the kinds that may play `role`.
    pub fn kinds_for(&self, role: Role) -> Vec<String> {
        self.kinds()
            .into_iter()
            .filter(|i| i.roles.contains(&role))
            .map(|i| i.kind.clone())
            .collect()
    }

    /// Run the cheap check of `kind` for `role`.
    pub fn check(
        &self,
        role: Role,
        kind: &str,
        params: &toml::Table,
        ctx: &BuildContext,
    ) -> Result<(), RoleError> {
        let info = self
            .info(role, kind)
            .ok_or_else(|| self.unknown(role, kind))?;
        (info.check)(params, ctx)
    }

    /// Build a policy (attacker or defender).
    pub fn build_policy(
        &self,
        kind: &str,
        params: &toml::Table,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Policy>, RoleError> {
        let e = self
            .policies
            .get(kind)
            .filter(|e| e.info.roles.contains(&ctx.role))
            .ok_or_else(|| self.unknown(ctx.role, kind))?;
        (e.build)(params, ctx)
    }

    /// Build a judge.
    pub fn build_judge(
        &self,
        kind: &str,
        params: &toml::Table,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Judge>, RoleError> {
        let e = self
            .judges
            .get(kind)
            .ok_or_else(|| self.unknown(Role::Judge, kind))?;
        (e.build)(params, ctx)
    }

    fn unknown(&self, role: Role, kind: &str) -> RoleError {
        RoleError::Config {
            key: Some("kind".into()),
            message: format!(
                "unknown {role} kind `{kind}`; known: {}",
                self.kinds_for(role).join(", ")
            ),
        }
    }
}
