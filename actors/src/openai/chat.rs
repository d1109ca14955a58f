//! The kind `openai-chat`: an attacker or defender behind an OpenAI-compatible chat-completions endpoint, with the
//! chat-LM player's prompts, prefill, stops and strict parser (`chatlm::player`), one HTTP request per sample.
//!
//! A remote player cannot learn: a scenario that trains its role is refused at `validate` and at build time.

use super::client::{Endpoint, response_text};
use super::params::{EndpointParams, deserialize_strict, endpoint_keys};
use super::wire::Message;
use crate::chatlm::player;
use crate::chatlm::prompts::ChatMessage;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use sparring_engine::registry::reject_unknown;
use sparring_engine::registry::{BuildContext, CheckFn, KindInfo, ParamsSchema, Registry};
use sparring_engine::{GenRequest, Generation, Group, LearnReport, Policy, Role, RoleError};
use std::sync::Arc;

/// Kind name of the remote attacker/defender.
pub const KIND: &str = "openai-chat";

/// The kind's sampling defaults (those of `chat-lm`).
const DEFAULT_MAX_TOKENS: u64 = 256;
const DEFAULT_TEMPERATURE: f64 = 0.7;
const DEFAULT_TOP_P: f64 = 0.95;

fn d_true() -> bool {
    true
}

/// Parameters of `openai-chat` (attacker or defender): the endpoint's (sampling defaults: temperature 0.7,
/// top_p 0.95, max_tokens 256) and the player's.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[schemars(deny_unknown_fields)]
pub struct OpenAiChatParams {
    #[serde(flatten)]
    pub endpoint: EndpointParams,
    /// Attacker: reason in `<think>` first (default). `false`: the direct format, `<prompt>…</prompt>` (with
    /// `prefill = true` the turn is prefilled with `<prompt>` and stops at the paragraph's end too).
    #[serde(default = "d_true")]
    pub think: bool,
    /// Attacker: the `<think>` block is mandatory.
    #[serde(default)]
    pub require_think: bool,
}

impl<'de> Deserialize<'de> for OpenAiChatParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_strict(d, "OpenAiChatParams", OpenAiChatParams::KEYS, |v| {
            OpenAiChatParams::deserialize(v)
        })
    }
}

impl OpenAiChatParams {
    /// Every key of the table.
    pub const KEYS: &'static [&'static str] = endpoint_keys!("think", "require_think");

    /// Parses and validates a role table (no network), refusing a role the scenario trains.
    pub fn parse(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        reject_unknown(params, Self::KEYS)?;
        let p: OpenAiChatParams = ctx.parse(params)?;
        p.endpoint.validate()?;
        if p.require_think && !p.think {
            return Err(RoleError::config(
                "require_think",
                "cannot be true with think = false",
            ));
        }
        refuse_learning(ctx)?;
        Ok(p)
    }
}

/// A remote player's weights are not ours to train: a scenario that trains its role is a configuration error.
pub fn refuse_learning(ctx: &BuildContext) -> Result<(), RoleError> {
    if !ctx.learns {
        return Ok(());
    }
    let (frozen, adaptive) = match ctx.role {
        Role::Attacker => (
            "frozen-attacker",
            " and no adaptive evaluation (its best-response attacker learns)",
        ),
        _ => ("frozen-defender", ""),
    };
    Err(RoleError::config(
        "kind",
        format!(
            "the {} of kind `{KIND}` plays through a remote endpoint and cannot learn, but the scenario trains \
             it: use schedule = \"{frozen}\"{adaptive}",
            ctx.role
        ),
    ))
}

/// An attacker or defender behind an OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiChat {
    role: Role,
    think: bool,
    require_think: bool,
    endpoint: Endpoint,
}

impl OpenAiChat {
    /// Builds the player for `ctx.role` (no request is sent).
    pub fn build(params: &toml::Table, ctx: &BuildContext) -> Result<Self, RoleError> {
        let p = OpenAiChatParams::parse(params, ctx)?;
        Self::new(p, ctx.role)
    }

    /// The player of `role` with parameters `p` (already validated by [`OpenAiChatParams::parse`]).
    pub fn new(p: OpenAiChatParams, role: Role) -> Result<Self, RoleError> {
        let endpoint =
            p.endpoint
                .or_defaults(DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P);
        Ok(OpenAiChat {
            role,
            think: p.think,
            require_think: p.require_think,
            endpoint: Endpoint::new(&endpoint)?,
        })
    }

    /// The endpoint it talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True when the endpoint continues a prefilled turn (the direct attacker with `prefill = true`).
    fn prefilled(&self) -> bool {
        self.endpoint.params().prefill && !player::prefill(self.role, self.think).is_empty()
    }
}

fn wire_messages(msgs: Vec<ChatMessage>) -> Vec<Message> {
    msgs.into_iter()
        .map(|m| Message::new(m.role, m.content))
        .collect()
}

impl Policy for OpenAiChat {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        let prefill = player::prefill(self.role, self.think);
        let prefilled = self.prefilled();
        let stops = if prefilled {
            player::stops(self.role, self.think)
        } else {
            player::stops_unprefilled(self.role, self.think)
        };
        let mut bodies = Vec::new();
        for r in reqs {
            let msgs = wire_messages(player::messages(
                self.role, &r.seed, &r.input, self.think, &r.history,
            ));
            for i in 0..r.n {
                let mut body = self.endpoint.body(msgs.clone(), prefill);
                Endpoint::add_stops(&mut body, stops);
                if let Some(s) = self.endpoint.params().sample_seed(r.rng_seed, i) {
                    body.seed = Some(s);
                }
                bodies.push((format!("{}#{i}", r.key), body));
            }
        }
        let mut answers = self.endpoint.complete_keyed(bodies)?.into_iter();
        let out_prefill = if prefilled { prefill } else { "" };
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let mut gens = Vec::with_capacity(r.n);
            for _ in 0..r.n {
                let Some(a) = answers.next() else {
                    return Err(RoleError::failed(format!(
                        "endpoint {}: fewer answers than requests",
                        self.endpoint.url()
                    )));
                };
                let truncated = a
                    .choices
                    .first()
                    .is_some_and(|c| c.finish_reason.as_deref() == Some("length"));
                let content = response_text(&a);
                let text =
                    player::output_text(self.role, self.think, out_prefill, &content, truncated);
                let tokens = a.usage.map_or(0, |u| u.completion_tokens);
                gens.push(player::generation(
                    self.role,
                    text,
                    tokens,
                    self.require_think,
                ));
            }
            out.push(gens);
        }
        Ok(out)
    }

    fn learn(&mut self, _groups: &[Group]) -> Result<LearnReport, RoleError> {
        Err(RoleError::Unsupported(format!(
            "learning: the {} of kind `{KIND}` plays through a remote endpoint",
            self.role
        )))
    }
}

/// Registers `openai-chat`.
pub fn register(reg: &mut Registry) {
    let check: CheckFn =
        Arc::new(|t: &toml::Table, ctx: &BuildContext| OpenAiChatParams::parse(t, ctx).map(|_| ()));
    reg.add_policy(
        KindInfo {
            kind: KIND.into(),
            about: "attacker or defender behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp, \
                    hosted APIs, `sparring serve`); chat-lm's prompts and parser; cannot learn"
                .into(),
            roles: vec![Role::Attacker, Role::Defender],
            params: Some(ParamsSchema::of::<OpenAiChatParams>()),
            check,
        },
        Arc::new(|t: &toml::Table, ctx: &BuildContext| {
            Ok(Box::new(OpenAiChat::build(t, ctx)?) as Box<dyn Policy>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn params_parse_strictly_and_expose_their_keys() {
        let ctx = BuildContext::detached(Role::Attacker);
        let p = OpenAiChatParams::parse(
            &table("model = 'm'\nbase_url = 'http://127.0.0.1:9/v1'\nthink = false\ntimeout_s = 2"),
            &ctx,
        )
        .unwrap();
        assert!(!p.think);
        assert_eq!(p.endpoint.timeout_s, 2.0);
        let e = OpenAiChatParams::parse(
            &table("model = 'm'\nbase_url = 'http://x:1'\nno_such_key = 1"),
            &ctx,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no_such_key"), "{e}");
        let e = OpenAiChatParams::parse(&table("timeout_s = 2"), &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model`"), "{e}");
        let keys = ParamsSchema::of::<OpenAiChatParams>().keys();
        assert_eq!(keys, OpenAiChatParams::KEYS);
        for k in EndpointParams::KEYS {
            assert!(keys.contains(k), "{k}");
        }
        let root = ParamsSchema::of::<OpenAiChatParams>().root().to_value();
        let mut props: Vec<&str> = root["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        props.sort();
        let mut keys = keys.to_vec();
        keys.sort();
        assert_eq!(props, keys);
    }

    #[test]
    fn a_trained_role_is_refused() {
        let mut ctx = BuildContext::detached(Role::Defender);
        ctx.learns = true;
        let t = table("model = 'm'\nbase_url = 'http://127.0.0.1:9/v1'");
        let e = OpenAiChatParams::parse(&t, &ctx).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("defender") && msg.contains(KIND) && msg.contains("frozen-defender"),
            "{msg}"
        );
        assert!(matches!(e, RoleError::Config { key: Some(ref k), .. } if k == "kind"));
    }
}
