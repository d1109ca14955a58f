//! The chat-LM player's conventions, shared by every attacker and defender that talks to a chat model (the local
//! `chat-lm` kind and the remote `openai-chat`): the messages for a request, the prefilled start of the attacker's
//! turn and its stop strings, the output text of a sample, and a sample as a `Generation` (the attacker's parsed
//! prompt; the defender's answer).
//!
//! An attacker with `think = false` asks for the direct format: its turn is prefilled with `<prompt>` (when the
//! model can be prefilled) and stops at `</prompt>` or at the end of its first paragraph; an output that ended is
//! written closed, `…</prompt>`, while one cut by the token limit stays unclosed and fails to parse.

use super::labels::kind_of;
use super::parse::parse_attacker;
use super::prompts::{self, ATTACKER_PREFILL, ATTACKER_STOP, ChatMessage, PARAGRAPH_END};
use sparring_engine::roles::Turn;
use sparring_engine::{Generation, Role, Seed};

/// The chat messages a player of `role` answers for a seed and an input (`think`: the attacker reasons first).
/// In a multi-turn game, `history` is the conversation so far: the defender sees it as earlier user and
/// assistant turns; the attacker sees its own earlier outputs as its turns, each followed by the defender's reply
/// and a request for the next message ([`prompts::next_turn`]).
pub fn messages(
    role: Role,
    seed: &Seed,
    input: &str,
    think: bool,
    history: &[Turn],
) -> Vec<ChatMessage> {
    match role {
        Role::Attacker => {
            let mut m = prompts::attacker(input, kind_of(seed.category), think);
            for t in history {
                m.push(ChatMessage::assistant(&t.attack));
                m.push(prompts::next_turn(&t.reply));
            }
            m
        }
        _ => {
            let mut m = Vec::with_capacity(2 * history.len() + 1);
            for t in history {
                m.push(ChatMessage::user(&t.prompt));
                m.push(ChatMessage::assistant(&t.reply));
            }
            m.extend(prompts::defender(input));
            m
        }
    }
}

/// True when the output is the direct attacker format: closed with `</prompt>` when the sample ended.
pub fn closes_prompt(role: Role, think: bool) -> bool {
    role == Role::Attacker && !think
}

/// Text the assistant turn is prefilled with (part of every output text; empty for most settings).
pub fn prefill(role: Role, think: bool) -> &'static str {
    if closes_prompt(role, think) {
        ATTACKER_PREFILL
    } else {
        ""
    }
}

/// The stop strings of a prefilled turn: `</prompt>` and the paragraph's end for the direct attacker.
pub fn stops(role: Role, think: bool) -> &'static [&'static str] {
    if closes_prompt(role, think) {
        &[ATTACKER_STOP, PARAGRAPH_END]
    } else {
        &[]
    }
}

/// The stop strings when the turn is not prefilled: only `</prompt>` for the direct attacker (its answer may
/// open with other text before `<prompt>`, which the parser then rejects).
pub fn stops_unprefilled(role: Role, think: bool) -> &'static [&'static str] {
    if closes_prompt(role, think) {
        &[ATTACKER_STOP]
    } else {
        &[]
    }
}

/// The output text of a sample: `prefill`, then the generated text. For the direct attacker a sample that ended
/// (on `</prompt>`, a blank line or the end of its turn) is written `…</prompt>`; a `truncated` one stays
/// unclosed, so it fails to parse.
pub fn output_text(
    role: Role,
    think: bool,
    prefill: &str,
    generated: &str,
    truncated: bool,
) -> String {
    if !closes_prompt(role, think) || truncated {
        return format!("{prefill}{generated}");
    }
    let body = generated.strip_suffix(ATTACKER_STOP).unwrap_or(generated);
    format!("{prefill}{}{ATTACKER_STOP}", body.trim_end())
}

/// What the engine reads from an output: the attacker's prompt (`None` when malformed), the defender's answer.
pub fn parsed(role: Role, text: &str, require_think: bool) -> Option<String> {
    match role {
        Role::Attacker => parse_attacker(text, require_think).ok().map(|a| a.prompt),
        _ => Some(text.trim().to_string()),
    }
}

/// An output as a `Generation` (no behaviour log-probs).
pub fn generation(role: Role, text: String, tokens: u64, require_think: bool) -> Generation {
    Generation {
        parsed: parsed(role, &text, require_think),
        text,
        tokens,
        logprobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_is_alternating_turns_for_each_side() {
        let seed = Seed {
            id: "s".into(),
            set: "t".into(),
            prompt: "How do I bake bread?".into(),
            category: sparring_engine::Category::Benign,
            topic: None,
        };
        let history = [Turn {
            attack: "<prompt>Tell me about ovens</prompt>".into(),
            prompt: "Tell me about ovens".into(),
            reply: "Ovens heat food.".into(),
            logprobs: vec![-1.0],
        }];
        let roles = |m: &[ChatMessage]| m.iter().map(|m| m.role.clone()).collect::<Vec<_>>();
        let d = messages(Role::Defender, &seed, "And bread?", false, &history);
        assert_eq!(roles(&d), ["user", "assistant", "user"]);
        assert_eq!(
            [&d[0].content, &d[1].content, &d[2].content],
            ["Tell me about ovens", "Ovens heat food.", "And bread?"]
        );
        let a = messages(Role::Attacker, &seed, &seed.prompt, false, &history);
        assert_eq!(roles(&a), ["user", "assistant", "user"]);
        assert_eq!(a[1].content, history[0].attack);
        assert!(
            a[2].content.contains("Ovens heat food."),
            "{}",
            a[2].content
        );
        // Without a history: the single-turn messages.
        assert_eq!(messages(Role::Defender, &seed, "x", false, &[]).len(), 1);
        assert_eq!(messages(Role::Attacker, &seed, "x", false, &[]).len(), 1);
    }

    #[test]
    fn the_direct_attacker_closes_its_prompt_unless_truncated() {
        let a = Role::Attacker;
        assert_eq!(prefill(a, false), "<prompt>");
        assert_eq!(prefill(a, true), "");
        assert_eq!(prefill(Role::Defender, false), "");
        assert_eq!(
            output_text(a, false, "<prompt>", "Hi there \n", false),
            "<prompt>Hi there</prompt>"
        );
        assert_eq!(
            output_text(a, false, "<prompt>", "Hi</prompt>", false),
            "<prompt>Hi</prompt>"
        );
        assert_eq!(
            output_text(a, false, "<prompt>", "Hi the", true),
            "<prompt>Hi the"
        );
        assert_eq!(
            output_text(a, false, "", "<prompt>Hi", false),
            "<prompt>Hi</prompt>"
        );
        assert_eq!(output_text(a, true, "", "x", false), "x");
        let g = generation(a, "<prompt>Hi</prompt>".into(), 3, false);
        assert_eq!((g.parsed.as_deref(), g.tokens), (Some("Hi"), 3));
        assert_eq!(generation(a, "<prompt>Hi".into(), 3, false).parsed, None);
        assert_eq!(
            parsed(Role::Defender, " ok \n", true).as_deref(),
            Some("ok")
        );
    }
}
