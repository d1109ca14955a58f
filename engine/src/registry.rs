//! The registry: maps a scenario `kind` string to a constructor for a `Policy` or a `Judge`, with a cheap
//! `check` used by `sparring validate` and the JSON Schema of its parameter table, derived from the struct the
//! table deserializes into, that `sparring list` and `sparring schema` show.

use crate::roles::{Judge, Policy, Role, RoleError};
use crate::tomlpath;
use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, ReplaceConstValue};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;
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
    /// Whether the scenario trains this role in some round (its schedule, or the best-response attacker of an
    /// adaptive evaluation). A kind that cannot learn (a remote player) refuses to be built when it is set.
    pub learns: bool,
    /// The `[cluster]` node that will build the role, while this process only checks it: files the role reads
    /// are looked for there (when it is built), not here.
    pub node: Option<String>,
    /// The scenario's one player plays both sides (`game.schedule = "self-play"`): it answers each request in the
    /// role the request names ([`crate::roles::GenRequest::role`], [`crate::roles::Group::role`]) and is built as
    /// that player whichever role `role` says (its warm start, its seeds), so two copies of it agree.
    pub self_play: bool,
    /// The scenario's `game.turns`: conversations of this many turns (1: single-turn requests only).
    pub turns: u32,
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
            learns: false,
            node: None,
            self_play: false,
            turns: 1,
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

/// The parameter table of a kind, described by the struct it deserializes into (`#[derive(Deserialize,
/// JsonSchema)]`): its JSON Schema (doc comments become descriptions, serde defaults `default`s) and its keys in
/// declaration order. One source of truth: the struct that `check` and `build` parse is the one documented.
#[derive(Clone, Copy)]
pub struct ParamsSchema {
    schema: fn(&mut SchemaGenerator) -> Schema,
    keys: fn() -> &'static [&'static str],
}

impl std::fmt::Debug for ParamsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamsSchema")
            .field("keys", &self.keys())
            .finish()
    }
}

/// The message for a key of a role's table that is not among `keys` (worded as serde's `deny_unknown_fields`, so
/// every kind reports an unknown key alike).
pub fn unknown_key(key: &str, keys: &[&str]) -> String {
    format!("unknown field `{key}`, expected one of {}", keys.join(", "))
}

/// Rejects the first key of `table` not in `keys`: an error naming the key and the accepted ones. For parameter
/// structs that cannot use `deny_unknown_fields` (serde's `flatten` turns it off).
pub fn reject_unknown(table: &toml::Table, keys: &[&str]) -> Result<(), RoleError> {
    match table.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(RoleError::config(k.clone(), unknown_key(k, keys))),
        None => Ok(()),
    }
}

/// The parameters of a kind that takes none.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoParams {}

impl ParamsSchema {
    /// The table `T` deserializes into (a struct with named fields, usually `deny_unknown_fields`).
    pub fn of<T: JsonSchema + DeserializeOwned>() -> Self {
        ParamsSchema {
            schema: |g| g.subschema_for::<T>(),
            keys: serde_keys::<T>,
        }
    }

    /// A table without keys.
    pub fn empty() -> Self {
        Self::of::<NoParams>()
    }

    /// The keys the table accepts, in declaration order.
    pub fn keys(&self) -> &'static [&'static str] {
        (self.keys)()
    }

    /// The table's schema inside `generator`: usually a `$ref` to a definition the generator now holds.
    pub fn subschema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }

    /// The table's schema on its own, with the definitions it refers to ([`schema_settings`]).
    pub fn root(&self) -> Schema {
        let mut g = schema_settings().into_generator();
        let sub = self.subschema(&mut g);
        let mut defs = g.take_definitions(false);
        let mut root = match sub
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(definition_name)
        {
            Some(name) if sub.as_object().is_some_and(|o| o.len() == 1) => defs
                .remove(name)
                .and_then(|d| Schema::try_from(d).ok())
                .unwrap_or(sub),
            _ => sub,
        };
        let obj = root.ensure_object();
        if !defs.is_empty() {
            obj.insert("definitions".into(), Value::Object(defs));
        }
        for t in g.transforms_mut() {
            t.transform(&mut root);
        }
        root
    }

    /// One entry per key, in declaration order, read from the schema: what `sparring list` prints.
    pub fn summaries(&self) -> Vec<ParamSummary> {
        let root = self.root().to_value();
        let empty = serde_json::Map::new();
        let props = root
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = root
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let keys = self.keys();
        let mut names: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| props.contains_key(*k))
            .collect();
        names.extend(
            props
                .keys()
                .map(String::as_str)
                .filter(|k| !keys.contains(k)),
        );
        names
            .into_iter()
            .map(|name| {
                let p = &props[name];
                let target = deref(&root, p);
                let default = p
                    .get("default")
                    .or_else(|| target.get("default"))
                    .and_then(toml_text);
                let about = p
                    .get("description")
                    .or_else(|| target.get("description"))
                    .and_then(Value::as_str)
                    .map(one_line)
                    .unwrap_or_default();
                ParamSummary {
                    name: name.to_string(),
                    ty: toml_type(&root, p),
                    default,
                    required: required.contains(&name),
                    about,
                }
            })
            .collect()
    }
}

/// One parameter of a kind, as `sparring list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSummary {
    pub name: String,
    /// TOML type, e.g. `integer`, `string array`, `"flex" | "wgpu" | "cuda"`, `float in [0, 1]`.
    pub ty: String,
    /// Default value as TOML text (a long array is cut short); `None` when the key has no fixed default.
    pub default: Option<String>,
    /// The table must have this key.
    pub required: bool,
    /// The field's doc comment, on one line.
    pub about: String,
}

/// Settings of every schema the engine writes: JSON Schema draft 7, read by editors' TOML extensions (taplo reads
/// draft 4 fully, so `const` is written as a one-value `enum`), without `null` (TOML has none: an `Option` field
/// is an optional key).
pub fn schema_settings() -> SchemaSettings {
    let mut s = SchemaSettings::draft07();
    s.transforms
        .insert(0, Box::new(RecursiveTransform(toml_friendly)));
    s.transforms.push(Box::new(ReplaceConstValue::default()));
    s
}

/// Drops `null` from types, enums, alternatives and defaults, and Rust's `format`s, and writes `f32` defaults as
/// their shortest decimal (0.7, not 0.699999988079071).
fn toml_friendly(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let t = types.remove(0);
            obj.insert("type".into(), t);
        }
    }
    // Rust's number formats (`uint`, `float`, ...) are no JSON Schema formats.
    obj.remove("format");
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if obj.get("const").is_some_and(Value::is_null) {
        obj.remove("const");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = obj.get_mut(key) {
            alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
            if alts.len() == 1 {
                // A lone alternative: an `allOf` keeps it with the siblings (`$ref` ignores them in draft 7).
                let alt = alts.remove(0);
                obj.remove(key);
                obj.insert("allOf".into(), Value::Array(vec![alt]));
            }
        }
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array)
        && all.len() == 1
        && obj.len() == 1
    {
        let only = all[0].clone();
        *schema = Schema::try_from(only).unwrap_or_else(|_| Schema::default());
        return;
    }
    match obj.get_mut("default") {
        Some(Value::Null) => {
            obj.remove("default");
        }
        Some(d) => clean_default(d),
        None => {}
    }
}

fn clean_default(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(clean_default);
        }
        Value::Array(a) => a.iter_mut().for_each(clean_default),
        Value::Number(n) => {
            if let Some(x) = n.as_f64()
                && n.is_f64()
                && x.is_finite()
                && f64::from(x as f32) == x
                && let Ok(short) = (x as f32).to_string().parse::<f64>()
                && let Some(m) = serde_json::Number::from_f64(short)
            {
                *n = m;
            }
        }
        _ => {}
    }
}

/// `name` of a `#/definitions/name` reference.
fn definition_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/definitions/")
}

/// The schema `s` stands for: through a `$ref` into `root`'s definitions, or a lone `allOf`.
fn deref<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(target) = s
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(definition_name)
        .and_then(|n| root.get("definitions")?.get(n))
    {
        return deref(root, target);
    }
    match s.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => deref(root, &all[0]),
        _ => s,
    }
}

/// The TOML type a schema describes, as `sparring list` prints it.
fn toml_type(root: &Value, s: &Value) -> String {
    let t = deref(root, s);
    if let Some(values) = t.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(toml_text)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = t.get(key).and_then(Value::as_array) {
            return alts
                .iter()
                .map(|a| toml_type(root, a))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let base = |ty: &str| -> String {
        match ty {
            "string" => "string".into(),
            "integer" => "integer".into(),
            "number" => "float".into(),
            "boolean" => "bool".into(),
            "object" => "table".into(),
            "array" => match t.get("items") {
                Some(items) => {
                    let it = deref(root, items);
                    if let Some(p) = it.get("properties").and_then(Value::as_object) {
                        let keys: Vec<&str> = p.keys().map(String::as_str).collect();
                        format!("array of {{{}}}", keys.join(", "))
                    } else {
                        let inner = toml_type(root, items);
                        if inner.contains(' ') {
                            format!("array of ({inner})")
                        } else {
                            format!("{inner} array")
                        }
                    }
                }
                None => "array".into(),
            },
            other => other.into(),
        }
    };
    let mut ty = match t.get("type") {
        Some(Value::String(ty)) => base(ty),
        Some(Value::Array(tys)) => tys
            .iter()
            .filter_map(Value::as_str)
            .map(base)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    let bound = |k: &str| s.get(k).or_else(|| t.get(k)).map(Value::to_string);
    let mut lo = bound("minimum");
    if ty == "integer" && lo.as_deref() == Some("0") {
        lo = None; // every unsigned integer's
    }
    match (lo, bound("maximum")) {
        (Some(lo), Some(hi)) => ty.push_str(&format!(" in [{lo}, {hi}]")),
        (Some(lo), None) => ty.push_str(&format!(" >= {lo}")),
        (None, Some(hi)) => ty.push_str(&format!(" <= {hi}")),
        (None, None) => {}
    }
    ty
}

/// A JSON value as TOML text (`None` for null); an array longer than a line is cut short with a count.
fn toml_text(v: &Value) -> Option<String> {
    const WIDTH: usize = 72;
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => {
                let t = if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e15) {
                    format!("{x:e}")
                } else {
                    x.to_string()
                };
                if t.contains(['.', 'e', 'i', 'N']) {
                    t
                } else {
                    format!("{t}.0")
                }
            }
            _ => n.to_string(),
        },
        Value::String(s) => toml::Value::String(s.clone()).to_string(),
        Value::Array(items) => {
            let texts: Vec<String> = items.iter().filter_map(toml_text).collect();
            let full = format!("[{}]", texts.join(", "));
            if full.chars().count() <= WIDTH {
                return Some(full);
            }
            let mut out = String::from("[");
            let mut shown = 0;
            for t in &texts {
                if out.chars().count() + t.chars().count() + 2 > WIDTH - 16 {
                    break;
                }
                out.push_str(t);
                out.push_str(", ");
                shown += 1;
            }
            if shown == 0 {
                format!("[... {} items]", texts.len())
            } else {
                format!("{out}... {} more]", texts.len() - shown)
            }
        }
        Value::Object(o) => {
            let fields: Vec<String> = o
                .iter()
                .filter_map(|(k, x)| {
                    let key = if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        k.clone()
                    } else {
                        toml::Value::String(k.clone()).to_string()
                    };
                    Some(format!("{key} = {}", toml_text(x)?))
                })
                .collect();
            if fields.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", fields.join(", "))
            }
        }
    })
}

/// Doc-comment text on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The keys a derived `Deserialize` struct accepts, in declaration order: the field list serde hands to
/// `deserialize_struct`.
fn serde_keys<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut keys));
    keys
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
    /// The parameter table (`ParamsSchema::of::<TheParamsStruct>()`); `None`: not described, any table.
    pub params: Option<ParamsSchema>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// The usual one.
        #[default]
        Fast,
        /// The other one.
        Slow,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        /// A width.
        #[serde(default = "three")]
        width: usize,
        /// Optional in the default too.
        #[serde(default)]
        note: Option<String>,
    }

    impl Default for Inner {
        fn default() -> Self {
            Inner {
                width: 3,
                note: None,
            }
        }
    }

    fn three() -> usize {
        3
    }
    fn seventy() -> f32 {
        0.7
    }
    fn words() -> Vec<String> {
        (0..40).map(|i| format!("word{i}")).collect()
    }

    /// Declared out of alphabetical order on purpose.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        /// Zeta: a required string,
        /// on two lines.
        zeta: String,
        /// Sampling temperature.
        #[serde(default = "seventy")]
        #[schemars(range(min = 0))]
        temperature: f32,
        /// How.
        #[serde(default)]
        mode: Mode,
        /// Renamed key.
        #[serde(default, rename = "match")]
        match_mode: Option<Mode>,
        /// A table.
        #[serde(default)]
        inner: Inner,
        /// A long list.
        #[serde(default = "words")]
        words: Vec<String>,
        /// A share.
        #[serde(default)]
        #[schemars(range(min = 0, max = 1))]
        share: f64,
        /// A count.
        #[serde(default)]
        count: Option<u64>,
    }

    fn summary<'a>(all: &'a [ParamSummary], name: &str) -> &'a ParamSummary {
        all.iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} in {all:?}"))
    }

    #[test]
    fn keys_follow_the_declaration() {
        let p = ParamsSchema::of::<Params>();
        assert_eq!(
            p.keys(),
            [
                "zeta",
                "temperature",
                "mode",
                "match",
                "inner",
                "words",
                "share",
                "count"
            ]
        );
        let names: Vec<String> = p.summaries().into_iter().map(|s| s.name).collect();
        assert_eq!(names, p.keys());
        assert!(ParamsSchema::empty().keys().is_empty());
        assert!(ParamsSchema::empty().summaries().is_empty());
    }

    #[test]
    fn summaries_read_types_defaults_and_docs_from_the_schema() {
        let all = ParamsSchema::of::<Params>().summaries();
        let zeta = summary(&all, "zeta");
        assert_eq!(
            (zeta.ty.as_str(), zeta.default.as_deref(), zeta.required),
            ("string", None, true)
        );
        assert_eq!(zeta.about, "Zeta: a required string, on two lines.");
        let t = summary(&all, "temperature");
        assert_eq!(
            (t.ty.as_str(), t.default.as_deref(), t.required),
            ("float >= 0", Some("0.7"), false)
        );
        assert_eq!(t.about, "Sampling temperature.");
        let m = summary(&all, "mode");
        assert_eq!(m.ty, r#""fast" | "slow""#);
        assert_eq!(m.default.as_deref(), Some(r#""fast""#));
        assert_eq!(m.about, "How.");
        let mm = summary(&all, "match");
        assert_eq!(mm.ty, r#""fast" | "slow""#);
        assert_eq!((mm.default.as_deref(), mm.required), (None, false));
        let i = summary(&all, "inner");
        assert_eq!(i.ty, "table");
        assert_eq!(i.default.as_deref(), Some("{ width = 3 }"));
        let w = summary(&all, "words");
        assert_eq!(w.ty, "string array");
        let wd = w.default.as_deref().unwrap_or_default();
        assert!(
            wd.starts_with(r#"["word0", "word1", "#) && wd.ends_with(" more]"),
            "{wd}"
        );
        assert_eq!(summary(&all, "share").ty, "float in [0, 1]");
        assert_eq!(summary(&all, "share").default.as_deref(), Some("0.0"));
        let c = summary(&all, "count");
        assert_eq!((c.ty.as_str(), c.default.as_deref()), ("integer", None));
    }

    #[test]
    fn schemas_carry_no_null_and_no_rust_formats() {
        let root = ParamsSchema::of::<Params>().root().to_value();
        let text = root.to_string();
        assert!(!text.contains("null"), "{text}");
        assert!(!text.contains("\"format\""), "{text}");
        assert!(!text.contains("\"const\""), "{text}");
        assert_eq!(root["additionalProperties"], Value::Bool(false));
        assert_eq!(root["required"], serde_json::json!(["zeta"]));
        assert_eq!(
            root["properties"]["temperature"]["default"],
            serde_json::json!(0.7)
        );
        assert_eq!(root["properties"]["count"]["type"], "integer");
        // The enum's definition travels with the table.
        assert!(root["definitions"]["Mode"].is_object(), "{text}");
    }

    #[test]
    fn toml_text_of_values() {
        let t = |v: Value| toml_text(&v);
        assert_eq!(t(serde_json::json!(null)), None);
        assert_eq!(t(serde_json::json!(16)).as_deref(), Some("16"));
        assert_eq!(t(serde_json::json!(16.0)).as_deref(), Some("16.0"));
        assert_eq!(t(serde_json::json!(1e-8)).as_deref(), Some("1e-8"));
        assert_eq!(t(serde_json::json!("a\"b")).as_deref(), Some(r#"'a"b'"#));
        assert_eq!(
            t(serde_json::json!({"rank": 8, "targets": ["q", "v"], "x y": true})).as_deref(),
            Some(r#"{ rank = 8, targets = ["q", "v"], "x y" = true }"#)
        );
        let long = serde_json::json!([{"name": "a".repeat(80)}, {"name": "b"}]);
        assert_eq!(t(long).as_deref(), Some("[... 2 items]"));
    }
}
