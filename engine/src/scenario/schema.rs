//! The JSON Schema of scenario files (`sparring schema`): derived from the scenario structs, with one closed
//! branch per registered kind in each role table, for editors that complete and check TOML.

use super::*;
use crate::data::Format;
use crate::record::EvalMode;
use crate::registry::{self, Registry};
use crate::roles::{Category, Role};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Without a registry: a table with a `kind` string and any other keys ([`json_schema`] narrows it per kind).
impl JsonSchema for RoleCfg {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoleCfg".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": {
                "kind": { "type": "string", "description": "The role's kind (see `sparring list`)." },
                "node": node_schema()
            },
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

pub(super) fn format_schema(_: &mut SchemaGenerator) -> Schema {
    // Every variant: a new one fails to compile here until it is listed in `Format::ALL`.
    let all = Format::ALL;
    for f in all {
        match f {
            Format::Auto
            | Format::Advgame
            | Format::Xstest
            | Format::Harmbench
            | Format::Wildjailbreak
            | Format::OrBench
            | Format::Jbb
            | Format::Strongreject
            | Format::Advbench => {}
        }
    }
    variants(&all)
}

pub(super) fn category_schema(_: &mut SchemaGenerator) -> Schema {
    let all = [Category::Harmful, Category::Benign];
    for c in all {
        match c {
            Category::Harmful | Category::Benign => {}
        }
    }
    variants(&all)
}

pub(super) fn eval_modes_schema(_: &mut SchemaGenerator) -> Schema {
    let all = [EvalMode::Plain, EvalMode::Attacker, EvalMode::Adaptive];
    for m in all {
        match m {
            EvalMode::Plain | EvalMode::Attacker | EvalMode::Adaptive => {}
        }
    }
    json_schema!({ "type": "array", "items": variants(&all) })
}

pub(super) fn one_or_many_schema(_: &mut SchemaGenerator) -> Schema {
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
            props.insert("node".into(), node_schema());
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
                "kind": { "type": "string", "enum": kinds, "description": "The role's kind (see `sparring list`)." },
                "node": node_schema()
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

/// A role table's `node` key (every kind accepts it).
fn node_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "string",
        "description": "The `[cluster]` node that hosts the role (absent: this process)."
    })
}
