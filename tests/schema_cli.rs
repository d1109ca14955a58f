//! One source of truth for parameters: each registered kind's JSON Schema (derived from its params struct) lists
//! exactly the keys its check accepts, `sparring list` prints them, and `sparring schema` describes every shipped
//! scenario (checked here by a small validator of the JSON Schema subset the engine writes).

use serde_json::Value;
use sparring_engine::{BuildContext, KindInfo};
use std::path::Path;
use std::process::Command;

fn sparring(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sparring"))
        .args(args)
        .output()
        .expect("run sparring");
    assert!(
        out.status.success(),
        "sparring {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn scenario_schema() -> Value {
    serde_json::from_str(&sparring(&["schema"])).expect("`sparring schema` prints JSON")
}

fn shipped_scenarios() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("scenarios/") {
        let path = e.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).expect("read scenario");
            let table: toml::Table = toml::from_str(&text).expect("scenario TOML");
            let json = serde_json::to_value(table).expect("TOML as JSON");
            out.push((path.display().to_string(), json));
        }
    }
    assert!(out.len() >= 3, "shipped scenarios: {}", out.len());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Follows `#/definitions/NAME` references.
fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/definitions/").expect("local reference");
            let target = root
                .get("definitions")
                .and_then(|d| d.get(name))
                .unwrap_or_else(|| panic!("dangling reference {r}"));
            resolve(root, target)
        }
        None => s,
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("type {other} is not in the subset the engine writes"),
    }
}

/// Errors of `v` against `s` (the keywords `sparring schema` uses: type, enum, properties, required,
/// additionalProperties, items, minimum, maximum, allOf, anyOf, oneOf, $ref), each with its path.
fn validate(root: &Value, s: &Value, v: &Value, path: &str) -> Vec<String> {
    let s = resolve(root, s);
    let mut errs = Vec::new();
    let known = [
        "$schema",
        "$ref",
        "title",
        "description",
        "default",
        "definitions",
        "type",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minimum",
        "maximum",
        "allOf",
        "anyOf",
        "oneOf",
    ];
    for k in s.as_object().expect("schema object").keys() {
        assert!(
            known.contains(&k.as_str()),
            "keyword {k} at {path} is not in the checked subset"
        );
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => errs.push(format!("{path}: not a {t}: {v}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""), v)) => {
            errs.push(format!("{path}: none of {ts:?}: {v}"))
        }
        _ => {}
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        errs.push(format!("{path}: {v} is not one of {values:?}"));
    }
    if let Some(x) = v.as_f64() {
        if let Some(lo) = s.get("minimum").and_then(Value::as_f64)
            && x < lo
        {
            errs.push(format!("{path}: {x} < {lo}"));
        }
        if let Some(hi) = s.get("maximum").and_then(Value::as_f64)
            && x > hi
        {
            errs.push(format!("{path}: {x} > {hi}"));
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().expect("required key");
            if !obj.contains_key(req) {
                errs.push(format!("{path}: missing `{req}`"));
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => errs.extend(validate(root, ps, x, &format!("{path}.{k}"))),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errs.push(format!("{path}: unknown key `{k}`"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            errs.extend(validate(root, items, x, &format!("{path}[{i}]")));
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        errs.extend(validate(root, sub, v, path));
    }
    if let Some(alts) = s.get("anyOf").and_then(Value::as_array)
        && !alts.iter().any(|a| validate(root, a, v, path).is_empty())
    {
        errs.push(format!("{path}: matches none of the anyOf alternatives"));
    }
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        let results: Vec<Vec<String>> = alts.iter().map(|a| validate(root, a, v, path)).collect();
        let ok = results.iter().filter(|r| r.is_empty()).count();
        if ok != 1 {
            // Report the errors of the branch whose `kind` matches, if any: the useful ones.
            let detail: Vec<String> = results
                .iter()
                .filter(|r| !r.iter().any(|e| e.contains(".kind:")))
                .flatten()
                .cloned()
                .collect();
            errs.push(format!(
                "{path}: matches {ok} of the oneOf branches {detail:?}"
            ));
        }
    }
    errs
}

#[test]
fn schema_is_draft7_json_and_every_shipped_scenario_validates() {
    let schema = scenario_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], Value::Bool(false));
    for (file, scenario) in shipped_scenarios() {
        // Every section and key the file uses is in the schema…
        for (section, body) in scenario.as_object().expect("table") {
            let sec = schema["properties"]
                .get(section)
                .unwrap_or_else(|| panic!("{file}: section `{section}` not in the schema"));
            let sec = resolve(&schema, sec);
            if let (Some(keys), Some(props)) = (body.as_object(), sec.get("properties")) {
                for k in keys.keys() {
                    let in_kind = sec.get("oneOf").is_some(); // role tables: the keys are the kind's
                    assert!(
                        in_kind || props.get(k).is_some(),
                        "{file}: `{section}.{k}` not in the schema"
                    );
                }
            }
        }
        // …and the whole file validates.
        let errs = validate(&schema, &schema, &scenario, "");
        assert!(errs.is_empty(), "{file}: {errs:#?}");
    }
}

/// A change to a scenario.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn schema_rejects_what_the_engine_rejects() {
    let schema = scenario_schema();
    let (_, base) = shipped_scenarios()
        .into_iter()
        .find(|(f, _)| f.ends_with("smollm2-advgame.toml"))
        .expect("smollm2-advgame.toml");
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "unknown role key",
            Box::new(|s| s["attacker"]["bogus"] = 1.into()),
        ),
        (
            "unknown kind",
            Box::new(|s| s["attacker"]["kind"] = "nope".into()),
        ),
        (
            "judge kind as attacker",
            Box::new(|s| s["attacker"]["kind"] = "chat-lm-judge".into()),
        ),
        (
            "enum typo",
            Box::new(|s| s["judge"]["read"] = "loggits".into()),
        ),
        (
            "out of range",
            Box::new(|s| s["judge"]["faithful_threshold"] = 2.0.into()),
        ),
        (
            "nested unknown key",
            Box::new(|s| s["attacker"]["lora"]["rnk"] = 2.into()),
        ),
        (
            "wrong type",
            Box::new(|s| s["defender"]["max_new_tokens"] = "many".into()),
        ),
        (
            "unknown game key",
            Box::new(|s| s["game"]["roundz"] = 2.into()),
        ),
        (
            "missing kind",
            Box::new(|s| drop(s["defender"].as_object_mut().map(|t| t.remove("kind")))),
        ),
        (
            "missing section",
            Box::new(|s| drop(s.as_object_mut().map(|t| t.remove("game")))),
        ),
        ("schema 2", Box::new(|s| s["schema"] = 2.into())),
        (
            "bad eval mode",
            Box::new(|s| s["eval"]["modes"] = serde_json::json!(["plain", "x"])),
        ),
        (
            "params of a kind without any",
            Box::new(|s| s["attacker"] = serde_json::json!({"kind": "intent-rule", "x": 1})),
        ),
    ];
    assert!(validate(&schema, &schema, &base, "").is_empty());
    for (what, mutate) in cases {
        let mut s = base.clone();
        mutate(&mut s);
        assert!(
            !validate(&schema, &schema, &s, "").is_empty(),
            "{what}: accepted"
        );
    }
    // What the engine accepts that a plain file may not show: one fault request or several.
    let mut s = base.clone();
    s["faults"] = serde_json::json!({"judge": {"panic_on_request": 3, "error_on_request": [1, 2]}});
    assert!(validate(&schema, &schema, &s, "").is_empty());
}

/// A value of schema `s` for a check: its default, else the first enum value, else a small one of its type.
fn sample(root: &Value, s: &Value) -> Value {
    if let Some(d) = s.get("default") {
        return d.clone();
    }
    let s = match s.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => resolve(root, &all[0]),
        _ => resolve(root, s),
    };
    if let Some(d) = s.get("default") {
        return d.clone();
    }
    if let Some(v) = s.get("enum").and_then(|e| e.get(0)) {
        return v.clone();
    }
    if let Some(alt) = s.get("oneOf").and_then(|a| a.get(0)) {
        return sample(root, alt);
    }
    match s.get("type").and_then(Value::as_str) {
        Some("string") => "x".into(),
        Some("integer") => s
            .get("minimum")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1)
            .into(),
        Some("number") => s.get("minimum").cloned().unwrap_or(0.5.into()),
        Some("boolean") => true.into(),
        Some("array") => serde_json::json!([]),
        Some("object") => serde_json::json!({}),
        other => panic!("no sample for {other:?} in {s}"),
    }
}

fn table(pairs: &[(&str, Value)]) -> toml::Table {
    let json = Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    );
    serde_json::from_value(json).expect("JSON as TOML")
}

fn check(info: &KindInfo, t: &toml::Table) -> Result<(), String> {
    let ctx = BuildContext::detached(info.roles[0]);
    (info.check)(t, &ctx).map_err(|e| e.to_string())
}

#[test]
fn every_kind_schema_lists_exactly_the_keys_its_check_accepts() {
    let registry = sparring_actors::registry();
    let kinds = registry.kinds();
    assert!(kinds.len() >= 8, "{} kinds", kinds.len());
    for info in kinds {
        let kind = &info.kind;
        let params = info
            .params
            .unwrap_or_else(|| panic!("{kind}: no parameter schema"));
        let root = params.root().to_value();
        let props = root["properties"].as_object().cloned().unwrap_or_default();
        // The schema's keys are the struct's keys, each described.
        let mut schema_keys: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut serde_keys = params.keys().to_vec();
        schema_keys.sort();
        serde_keys.sort();
        assert_eq!(schema_keys, serde_keys, "{kind}");
        for (k, p) in &props {
            let about = p.get("description").and_then(Value::as_str).unwrap_or("");
            assert!(
                !about.trim().is_empty(),
                "{kind}.{k}: no description (doc comment)"
            );
        }
        // Each key is accepted by the kind's check (it may fail later, e.g. on a missing model file, but not on
        // the key); an unknown key is rejected, naming it.
        for (k, p) in &props {
            let t = table(&[(k, sample(&root, p))]);
            if let Err(e) = check(info, &t) {
                assert!(
                    !e.contains("unknown field") && !e.contains("unknown parameter"),
                    "{kind}.{k}: {e}"
                );
            }
        }
        let e =
            check(info, &table(&[("no_such_key", 1.into())])).expect_err("unknown key accepted");
        assert!(e.contains("no_such_key"), "{kind}: {e}");
        // The documented defaults, all at once, pass the check (the chat kinds' default model file aside).
        let defaults: Vec<(&str, Value)> = props
            .iter()
            .filter_map(|(k, p)| Some((k.as_str(), p.get("default")?.clone())))
            .collect();
        if let Err(e) = check(info, &table(&defaults)) {
            assert!(
                e.contains("`model`") || e.starts_with("model"),
                "{kind}: defaults rejected: {e}"
            );
        }
    }
}

#[test]
fn list_prints_every_kind_and_parameter_from_the_schemas() {
    let out = sparring(&["list"]);
    let registry = sparring_actors::registry();
    for info in registry.kinds() {
        let roles: Vec<&str> = info.roles.iter().map(|r| r.as_str()).collect();
        assert!(
            out.contains(&format!("{}  (roles: {})", info.kind, roles.join(", "))),
            "{}",
            info.kind
        );
        for p in info.params.iter().flat_map(|p| p.summaries()) {
            assert!(
                out.lines().any(|l| l
                    .trim_start()
                    .starts_with(&format!("{:<24} {}", p.name, p.ty))),
                "{}.{} missing from `sparring list`",
                info.kind,
                p.name
            );
        }
    }
    // Defaults and descriptions come from the params structs.
    for line in [
        "    temperature              float >= 0 = 0.7",
        r#"    backend                  "flex" | "wgpu" | "cuda" = "flex""#,
        "    learner                  table (optional)",
        "    flip_rate                float in [0, 1] = 0.1",
        r#"    match                    "contains" | "prefix" = "contains""#,
        "        Sampling temperature (0 = greedy).",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
}
