//! The parameters every endpoint kind shares (`EndpointParams`: URL, model, key variable, sampling, seeding,
//! concurrency, rate limit, retries, timeouts, extra body fields, prefill), their validation, and the strict
//! deserialization of a kind's table that flattens them (`deserialize_strict`, with the engine's
//! `registry::reject_unknown`): serde's `flatten` turns off `deny_unknown_fields` and hides the keys from
//! `ParamsSchema::keys`, this puts both back.

use crate::llama::generate::row_seed;
use schemars::JsonSchema;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sparring_engine::RoleError;
use sparring_engine::registry::unknown_key;

/// `seed`: `true` (default) sends a per-sample seed derived from the request's rng seed, so a server that honours
/// `seed` reproduces a run; `false` sends none; an integer is sent with every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SeedParam {
    /// Derived per sample (`true`) or not sent (`false`).
    Derived(bool),
    /// The same seed for every request.
    Fixed(u64),
}

impl Default for SeedParam {
    fn default() -> Self {
        SeedParam::Derived(true)
    }
}

fn d_seed() -> SeedParam {
    SeedParam::default()
}
fn d_timeout() -> f64 {
    60.0
}
fn d_concurrency() -> usize {
    4
}
fn d_retries() -> u32 {
    4
}
fn d_backoff() -> f64 {
    0.5
}
fn d_retry_cap() -> f64 {
    30.0
}

/// The parameters every endpoint kind shares; flattened into each kind's own params struct with
/// `#[serde(flatten)]` (deserialize that struct with [`deserialize_strict`] and [`EndpointParams::KEYS`]).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct EndpointParams {
    /// The model name the endpoint serves (sent as `model`).
    pub model: String,
    /// The endpoint's base URL, e.g. "http://127.0.0.1:8080/v1"; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Name of the environment variable holding the API key, sent as `Authorization: Bearer`; the key itself
    /// never appears in a scenario, a log or an error. Unset: no key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Most tokens per completion (unset: the kind's default).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u64>,
    /// Sampling temperature (unset: the kind's default).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1] (unset: the kind's default).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub top_p: Option<f64>,
    /// `true`: each sample's seed derives from its request's seed (a server honouring `seed` reproduces the
    /// run); `false`: no seed is sent; an integer: that seed for every request.
    #[serde(default = "d_seed")]
    pub seed: SeedParam,
    /// Stop strings sent with every request (besides the kind's own).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Most requests in flight at once.
    #[serde(default = "d_concurrency")]
    #[schemars(range(min = 1))]
    pub max_concurrency: usize,
    /// Most requests started per minute (unset: no limit).
    #[serde(default)]
    pub requests_per_minute: Option<f64>,
    /// Retries of a request after a connect error, a timeout, a 429, a 5xx or a malformed answer.
    #[serde(default = "d_retries")]
    pub max_retries: u32,
    /// First retry's back-off in seconds; it doubles with each retry (with jitter).
    #[serde(default = "d_backoff")]
    pub backoff_s: f64,
    /// Longest wait before a retry, in seconds, whatever the back-off or a server's `Retry-After` asks.
    #[serde(default = "d_retry_cap")]
    pub retry_cap_s: f64,
    /// Fields merged into every request body (e.g. `{ repetition_penalty = 1.1 }`); they override the kind's.
    #[serde(default)]
    pub extra: Map<String, Value>,
    /// Send a prefilled assistant turn as a final assistant message with `continue_final_message = true` and
    /// `add_generation_prompt = false` (vLLM's convention; `sparring serve` honours it). False: no prefill.
    #[serde(default)]
    pub prefill: bool,
}

/// Expands to `&[...]`: [`EndpointParams::KEYS`] followed by the given keys (a kind's own), for
/// [`deserialize_strict`].
#[macro_export]
macro_rules! endpoint_keys {
    ($($k:literal),* $(,)?) => {
        &[
            "model", "base_url", "api_key_env", "max_tokens", "temperature", "top_p", "seed", "stop", "timeout_s",
            "max_concurrency", "requests_per_minute", "max_retries", "backoff_s", "retry_cap_s", "extra",
            "prefill", $($k),*
        ]
    };
}
pub use endpoint_keys;

/// Body fields `extra` may not set: the client owns them.
const RESERVED_EXTRA: &[&str] = &["messages", "stream", "stream_options"];

impl EndpointParams {
    /// Its keys, so a kind that flattens it can reject unknown keys.
    pub const KEYS: &'static [&'static str] = endpoint_keys!();

    /// Fills the sampling settings left unset with a kind's defaults.
    pub fn or_defaults(mut self, max_tokens: u64, temperature: f64, top_p: f64) -> Self {
        self.max_tokens.get_or_insert(max_tokens);
        self.temperature.get_or_insert(temperature);
        self.top_p.get_or_insert(top_p);
        self
    }

    /// The seed sent with sample `sample` of a request whose rng seed is `rng_seed` (63 bits: servers read it as a
    /// signed 64-bit integer).
    pub fn sample_seed(&self, rng_seed: u64, sample: usize) -> Option<u64> {
        match self.seed {
            SeedParam::Derived(true) => Some(row_seed(rng_seed, sample) >> 1),
            SeedParam::Derived(false) => None,
            SeedParam::Fixed(s) => Some(s),
        }
    }

    /// Checks the values (no network, no environment).
    pub fn validate(&self) -> Result<(), RoleError> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 9 {
            return Err(RoleError::config(
                "base_url",
                format!(
                    "`{}` is no http:// or https:// URL (e.g. \"http://127.0.0.1:8080/v1\")",
                    self.base_url
                ),
            ));
        }
        if self.model.trim().is_empty() {
            return Err(RoleError::config("model", "must not be empty"));
        }
        if let Some(name) = &self.api_key_env
            && (name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(RoleError::config(
                "api_key_env",
                "must be the name of an environment variable",
            ));
        }
        if self.max_tokens == Some(0) {
            return Err(RoleError::config("max_tokens", "must be at least 1"));
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(RoleError::config("temperature", "must be finite and >= 0"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(RoleError::config("top_p", "must be in (0, 1]"));
        }
        positive("timeout_s", self.timeout_s)?;
        if self.max_concurrency == 0 {
            return Err(RoleError::config("max_concurrency", "must be at least 1"));
        }
        if let Some(r) = self.requests_per_minute {
            positive("requests_per_minute", r)?;
        }
        if !(self.backoff_s.is_finite() && self.backoff_s >= 0.0) {
            return Err(RoleError::config("backoff_s", "must be finite and >= 0"));
        }
        if !(self.retry_cap_s.is_finite() && self.retry_cap_s >= 0.0) {
            return Err(RoleError::config("retry_cap_s", "must be finite and >= 0"));
        }
        if let Some(k) = self
            .extra
            .keys()
            .find(|k| RESERVED_EXTRA.contains(&k.as_str()))
        {
            return Err(RoleError::config(
                format!("extra.{k}"),
                "is set by the client and may not be overridden",
            ));
        }
        Ok(())
    }
}

fn positive(key: &str, x: f64) -> Result<(), RoleError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(RoleError::config(key, "must be finite and > 0"))
    }
}

/// Deserializes a params struct that flattens [`EndpointParams`] as a struct with exactly `keys`: an unknown key
/// is an error naming it, and `ParamsSchema::keys` sees `keys` (serde's derive hides a flattening struct's
/// fields). `inner` is the struct's derived deserializer, e.g. from `#[serde(remote = "Self")]`:
///
/// ```ignore
/// #[derive(Deserialize, JsonSchema)]
/// #[serde(remote = "Self")]
/// pub struct MyParams { #[serde(flatten)] pub endpoint: EndpointParams, pub think: bool }
/// impl<'de> Deserialize<'de> for MyParams {
///     fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
///         deserialize_strict(d, "MyParams", endpoint_keys!("think"), MyParams::deserialize)
///     }
/// }
/// ```
pub fn deserialize_strict<'de, D, T>(
    d: D,
    name: &'static str,
    keys: &'static [&'static str],
    inner: fn(toml::Value) -> Result<T, toml::de::Error>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Table;
    impl<'de> serde::de::Visitor<'de> for Table {
        type Value = toml::Table;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<toml::Table, A::Error> {
            let mut t = toml::Table::new();
            while let Some((k, v)) = m.next_entry::<String, toml::Value>()? {
                t.insert(k, v);
            }
            Ok(t)
        }
    }
    let table = d.deserialize_struct(name, keys, Table)?;
    if let Some(k) = table.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(D::Error::custom(unknown_key(k, keys)));
    }
    inner(toml::Value::Table(table)).map_err(|e| D::Error::custom(e.message().trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparring_engine::registry::reject_unknown;

    fn parse(text: &str) -> Result<EndpointParams, String> {
        toml::from_str::<EndpointParams>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_validation() {
        let p = parse("model = 'm'\nbase_url = 'http://127.0.0.1:1/v1'").unwrap();
        assert_eq!(p.timeout_s, 60.0);
        assert_eq!(p.max_concurrency, 4);
        assert_eq!(p.max_retries, 4);
        assert_eq!(p.seed, SeedParam::Derived(true));
        p.validate().unwrap();
        let bad = EndpointParams {
            top_p: Some(0.0),
            ..p.clone()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("top_p"));
        let bad = EndpointParams {
            base_url: "localhost:8080".into(),
            ..p.clone()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("base_url"));
        let mut bad = p.clone();
        bad.extra.insert("stream".into(), Value::Bool(true));
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("extra.stream")
        );
    }

    #[test]
    fn seeds() {
        let mut p = parse("model = 'm'\nbase_url = 'http://x:1'\nseed = false").unwrap();
        assert_eq!(p.sample_seed(5, 0), None);
        p.seed = parse("model = 'm'\nbase_url = 'http://x:1'\nseed = 7")
            .unwrap()
            .seed;
        assert_eq!(p.sample_seed(5, 3), Some(7));
        p.seed = SeedParam::Derived(true);
        let (a, b) = (p.sample_seed(5, 0).unwrap(), p.sample_seed(5, 1).unwrap());
        assert_ne!(a, b);
        assert!(a <= i64::MAX as u64 && b <= i64::MAX as u64);
    }

    #[test]
    fn keys_match_the_struct() {
        let t: toml::Table = toml::from_str("x = 1").unwrap();
        let e = reject_unknown(&t, EndpointParams::KEYS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`x`") && e.contains("base_url"), "{e}");
        let json = serde_json::to_value(schemars::schema_for!(EndpointParams)).unwrap();
        let mut props: Vec<&str> = json["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = EndpointParams::KEYS.to_vec();
        props.sort();
        keys.sort();
        assert_eq!(props, keys);
    }
}
