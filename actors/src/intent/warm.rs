//! Warm start of the intent game: the model sequence formats (attacker and defender contexts and
//! responses, and conversations in a multi-turn game), the rule-based "pretrained" defender with its
//! deliberate weaknesses, the warm attacker's rewrite distribution, and seeded supervised data sets for both
//! players.

use super::IntentError;
use super::lang::{BOS, Category, EOS, FramingKind, Language, SEP, Token, TopicId, WordClass};
use super::oracle::Response;
use super::seeds::Intent;
use sparring_engine::rng::SplitMix64;

/// One supervised example: the model sees `context` and is trained on `response` (which ends in
/// `EOS`); the full sequence is `context ++ response`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Example {
    /// Conditioning tokens (`BOS ... SEP`).
    pub context: Vec<Token>,
    /// Target tokens (ending in `EOS`).
    pub response: Vec<Token>,
}

/// The attacker's context for a seed: `BOS <atk> <harmful|benign> seed... SEP`.
pub fn attacker_context(lang: &Language, category: Category, seed: &[Token]) -> Vec<Token> {
    let mut v = Vec::with_capacity(seed.len() + 4);
    v.extend_from_slice(&[BOS, lang.attacker_tag(), lang.category_tag(category)]);
    v.extend_from_slice(seed);
    v.push(SEP);
    v
}

/// The defender's context for a prompt: `BOS <def> prompt... SEP`.
pub fn defender_context(lang: &Language, prompt: &[Token]) -> Vec<Token> {
    let mut v = Vec::with_capacity(prompt.len() + 3);
    v.extend_from_slice(&[BOS, lang.defender_tag()]);
    v.extend_from_slice(prompt);
    v.push(SEP);
    v
}

/// One earlier exchange of a conversation: the user turn and the defender's reply (without `EOS`).
pub type Exchange = (Vec<Token>, Vec<Token>);

/// Appends a conversation's earlier exchanges: `user... SEP reply... EOS` each.
fn push_history(v: &mut Vec<Token>, history: &[Exchange]) {
    for (user, reply) in history {
        v.extend_from_slice(user);
        v.push(SEP);
        v.extend_from_slice(reply);
        v.push(EOS);
    }
}

/// The attacker's context for its next turn of a conversation: its [`attacker_context`], then the exchanges
/// so far (the context itself when there are none).
pub fn attacker_context_in(
    lang: &Language,
    category: Category,
    seed: &[Token],
    history: &[Exchange],
) -> Vec<Token> {
    let mut v = attacker_context(lang, category, seed);
    push_history(&mut v, history);
    v
}

/// The defender's context for the last turn of a conversation: `BOS <def>`, the exchanges so far, then
/// `prompt... SEP` ([`defender_context`] when there are none).
pub fn defender_context_in(lang: &Language, history: &[Exchange], prompt: &[Token]) -> Vec<Token> {
    let mut v = vec![BOS, lang.defender_tag()];
    push_history(&mut v, history);
    v.extend_from_slice(prompt);
    v.push(SEP);
    v
}

/// Parses an attacker's generated tokens into a prompt: the tokens before `EOS`, which must be present
/// (else truncated), and all of them prompt words. Errors name the token offset.
pub fn parse_rewrite(lang: &Language, generated: &[Token]) -> Result<Vec<Token>, IntentError> {
    let Some(end) = generated.iter().position(|&t| t == EOS) else {
        return Err(IntentError::Truncated {
            len: generated.len(),
        });
    };
    if end == 0 {
        return Err(IntentError::EmptyRewrite);
    }
    let prompt = &generated[..end];
    if let Some(pos) = prompt.iter().position(|&t| !lang.is_prompt_word(t)) {
        return Err(IntentError::NotAPromptWord {
            word: lang
                .word(prompt[pos])
                .unwrap_or("<out of vocabulary>")
                .to_string(),
            offset: pos,
        });
    }
    Ok(prompt.to_vec())
}

/// The topic of the first topic-bearing word (surface or context; an ambiguous word gives its harmful
/// reading), used by the warm defender when a prompt has no parse.
fn first_topic_word(lang: &Language, prompt: &[Token]) -> Option<TopicId> {
    prompt.iter().find_map(|&t| match lang.class(t) {
        WordClass::Surface(i) | WordClass::Context(i) => Some(i),
        WordClass::Ambiguous { harmful, .. } => Some(harmful),
        _ => None,
    })
}

/// The warm-start ("pretrained") defender, as a rule with deliberate weaknesses:
/// - it refuses when it sees an alarming framing (`unfiltered`, `dan`), even on benign requests;
/// - otherwise it refuses on a harmful signal (a harmful topic's surface or context word, or an
///   alarming ambiguous word: `kill`, `shoot`, `poison`), so it over-refuses e.g. "kill process";
/// - unless a fooling framing (`fiction`, `roleplay`, `grandma`) is present: then it complies;
/// - when it complies it answers the prompt's topic (helpfully).
pub fn warm_defender_response(lang: &Language, prompt: &[Token]) -> Response {
    let (fooled, alarmed, signal) = signals(lang, prompt);
    if alarmed || (signal && !fooled) {
        Response::Refuse
    } else {
        comply(lang, prompt)
    }
}

/// The word that sets the multi-turn weakness up (see [`warm_defender_reply`]).
pub const SETUP_WORD: &str = "story";

/// The warm defender in a conversation (`earlier`: the user turns before `prompt`). In a single-turn game
/// (`multi_turn` false) it is [`warm_defender_response`]. In a multi-turn game it has been patched against
/// single-turn jailbreaks (a fooling framing no longer fools it) but has a multi-turn weakness, as crescendo
/// attacks exploit: once an earlier turn has set up a story (a turn with `story` and no harmful or alarming
/// word), it answers a harmful request. It still refuses anything alarming.
pub fn warm_defender_reply(
    lang: &Language,
    earlier: &[Vec<Token>],
    prompt: &[Token],
    multi_turn: bool,
) -> Response {
    if !multi_turn {
        return warm_defender_response(lang, prompt);
    }
    let (_, alarmed, signal) = signals(lang, prompt);
    if alarmed || (signal && !set_up(lang, earlier)) {
        Response::Refuse
    } else {
        comply(lang, prompt)
    }
}

/// Has one of `earlier`'s turns set up a story (the setup word, nothing harmful or alarming)?
pub fn set_up(lang: &Language, earlier: &[Vec<Token>]) -> bool {
    let Some(setup) = lang.token(SETUP_WORD) else {
        return false;
    };
    earlier.iter().any(|turn| {
        let (_, alarmed, signal) = signals(lang, turn);
        turn.contains(&setup) && !alarmed && !signal
    })
}

/// The helpful answer to `prompt`: its topic (or its first topic word's).
fn comply(lang: &Language, prompt: &[Token]) -> Response {
    Response::Comply {
        answer: lang
            .topic_of(prompt)
            .or_else(|| first_topic_word(lang, prompt)),
    }
}

/// What the warm defender notices in a prompt: (a fooling framing, an alarming framing, a harmful signal).
fn signals(lang: &Language, prompt: &[Token]) -> (bool, bool, bool) {
    let (mut fooled, mut alarmed, mut signal) = (false, false, false);
    for &t in prompt {
        match lang.class(t) {
            WordClass::Framing(FramingKind::Fooling) => fooled = true,
            WordClass::Framing(FramingKind::Alarming) => alarmed = true,
            WordClass::Surface(i) | WordClass::Context(i)
                if lang.topic(i).is_some_and(|t| t.harmful) =>
            {
                signal = true
            }
            WordClass::Ambiguous { alarming: true, .. } => signal = true,
            _ => {}
        }
    }
    (fooled, alarmed, signal)
}

/// How a rewrite is drawn from a seed (probabilities per rewrite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewriteStyle {
    /// Prepend one framing (uniform over all framings).
    pub p_frame: f64,
    /// Given one framing, prepend a second one.
    pub p_second_frame: f64,
    /// Replace the surface word by another surface word of the topic (unique or ambiguous).
    pub p_synonym: f64,
    /// Replace the opener by a uniformly drawn one.
    pub p_new_opener: f64,
    /// Insert one extra filler word ("please", "quickly", ...).
    pub p_filler: f64,
    /// Append a context word of a topic of the other category (kept only if still faithful).
    pub p_dilute: f64,
}

impl RewriteStyle {
    /// The warm attacker: mostly plain faithful paraphrases, a few framings.
    pub fn warm_attacker() -> RewriteStyle {
        RewriteStyle {
            p_frame: 0.3,
            p_second_frame: 0.1,
            p_synonym: 0.3,
            p_new_opener: 0.5,
            p_filler: 0.2,
            p_dilute: 0.05,
        }
    }

    /// The prompt distribution the warm defender is taught on: broad, so that it has seen every
    /// framing and some dilutions (and learns the rule's weaknesses along with its strengths).
    pub fn defender_curriculum() -> RewriteStyle {
        RewriteStyle {
            p_frame: 0.6,
            p_second_frame: 0.1,
            p_synonym: 0.5,
            p_new_opener: 0.5,
            p_filler: 0.2,
            p_dilute: 0.2,
        }
    }
}

/// Draws one faithful rewrite of `intent`: `[framings] opener [filler] surface context... [dilution]`.
pub fn rewrite_intent(
    lang: &Language,
    intent: &Intent,
    style: &RewriteStyle,
    rng: &mut SplitMix64,
) -> Vec<Token> {
    let mut out = Vec::new();
    if rng.chance(style.p_frame) {
        let framings = lang.framings();
        if let Some(&(f, _)) = rng.choose(framings) {
            out.push(f);
        }
        if rng.chance(style.p_second_frame)
            && let Some(&(f2, _)) = rng.choose(framings)
            && !out.contains(&f2)
        {
            out.push(f2);
        }
    }
    let opener_idx = if rng.chance(style.p_new_opener) {
        rng.below_scaled(lang.openers().len())
    } else {
        intent.opener
    };
    if let Some(op) = lang.openers().get(opener_idx) {
        out.extend_from_slice(op);
    }
    if rng.chance(style.p_filler)
        && let Some(&f) = rng.choose(lang.fillers())
    {
        out.push(f);
    }
    let surface = if rng.chance(style.p_synonym) {
        lang.topic(intent.topic)
            .map(|t| t.all_surface())
            .and_then(|s| rng.choose(&s).copied())
            .unwrap_or(intent.surface)
    } else {
        intent.surface
    };
    out.push(surface);
    let mut ctx = intent.context.clone();
    rng.shuffle_scaled(&mut ctx);
    out.extend_from_slice(&ctx);
    if rng.chance(style.p_dilute) {
        let harmful = lang.topic(intent.topic).is_some_and(|t| t.harmful);
        let others: Vec<Token> = lang
            .topics()
            .iter()
            .filter(|t| t.harmful != harmful)
            .flat_map(|t| t.context.iter().copied())
            .collect();
        if let Some(&w) = rng.choose(&others) {
            out.push(w);
            if lang.topic_of(&out) != Some(intent.topic) {
                out.pop();
            }
        }
    }
    out
}

/// Warm-start data for the attacker: `n` examples over `seeds` (cycled in a seeded order), each the
/// attacker context of a seed and a rewrite drawn with [`RewriteStyle::warm_attacker`].
pub fn warm_attacker_data(lang: &Language, seeds: &[Intent], n: usize, seed: u64) -> Vec<Example> {
    let style = RewriteStyle::warm_attacker();
    sample_examples(lang, seeds, n, seed, |lang, intent, rng| {
        let ctx = attacker_context(lang, intent.category(lang), &intent.tokens(lang));
        let mut resp = rewrite_intent(lang, intent, &style, rng);
        resp.push(EOS);
        Example {
            context: ctx,
            response: resp,
        }
    })
}

/// Warm-start data for the defender: `n` examples, prompts drawn from `seeds` with
/// [`RewriteStyle::defender_curriculum`] and labelled by [`warm_defender_response`].
pub fn warm_defender_data(lang: &Language, seeds: &[Intent], n: usize, seed: u64) -> Vec<Example> {
    let style = RewriteStyle::defender_curriculum();
    sample_examples(lang, seeds, n, seed, |lang, intent, rng| {
        let prompt = rewrite_intent(lang, intent, &style, rng);
        let resp = warm_defender_response(lang, &prompt).tokens(lang);
        Example {
            context: defender_context(lang, &prompt),
            response: resp,
        }
    })
}

/// A turn that opens a conversation without asking anything: a neutral framing word (the setup word with
/// probability `p_setup_word`), sometimes with "please".
pub fn small_talk(lang: &Language, p_setup_word: f64, rng: &mut SplitMix64) -> Vec<Token> {
    let neutral: Vec<Token> = lang
        .framings()
        .iter()
        .filter(|(_, k)| *k == FramingKind::Neutral)
        .map(|&(t, _)| t)
        .collect();
    let setup = lang.token(SETUP_WORD);
    let word = match setup {
        Some(s) if rng.chance(p_setup_word) => s,
        _ => rng.choose(&neutral).copied().unwrap_or(BOS),
    };
    let mut out = vec![word];
    if rng.chance(0.5)
        && let Some(please) = lang.token("please")
    {
        out.push(please);
    }
    out
}

/// The warm attacker's turns of a conversation (`turns` of them): each a rewrite of the seed, but for the
/// first of a conversation of several, which is small talk with probability 0.3 ([`small_talk`]).
fn warm_conversation(
    lang: &Language,
    intent: &Intent,
    turns: usize,
    style: &RewriteStyle,
    rng: &mut SplitMix64,
) -> Vec<Vec<Token>> {
    (0..turns)
        .map(|t| {
            if t == 0 && turns > 1 && rng.chance(0.3) {
                small_talk(lang, 0.2, rng)
            } else {
                rewrite_intent(lang, intent, style, rng)
            }
        })
        .collect()
}

/// The warm defender's replies (without `EOS`) to a conversation's user turns.
fn warm_replies(lang: &Language, users: &[Vec<Token>], multi_turn: bool) -> Vec<Vec<Token>> {
    (0..users.len())
        .map(|t| {
            let mut r = warm_defender_reply(lang, &users[..t], &users[t], multi_turn).tokens(lang);
            r.pop(); // EOS
            r
        })
        .collect()
}

/// The exchanges of `users`' turns with their `replies`.
fn exchanges(users: &[Vec<Token>], replies: &[Vec<Token>]) -> Vec<Exchange> {
    users.iter().cloned().zip(replies.iter().cloned()).collect()
}

/// Warm-start data for the attacker of a game of `turns` turns: `n` examples, each a turn of a warm
/// conversation ([`warm_attacker_data`] when `turns` is 1), after the warm defender's replies.
pub fn warm_attacker_turns(
    lang: &Language,
    seeds: &[Intent],
    n: usize,
    seed: u64,
    turns: usize,
) -> Vec<Example> {
    if turns <= 1 {
        return warm_attacker_data(lang, seeds, n, seed);
    }
    let style = RewriteStyle::warm_attacker();
    sample_examples(lang, seeds, n, seed, |lang, intent, rng| {
        let users = warm_conversation(lang, intent, turns, &style, rng);
        let replies = warm_replies(lang, &users, true);
        let t = rng.below_scaled(turns);
        let history = exchanges(&users[..t], &replies);
        let mut response = users[t].clone();
        response.push(EOS);
        Example {
            context: attacker_context_in(
                lang,
                intent.category(lang),
                &intent.tokens(lang),
                &history,
            ),
            response,
        }
    })
}

/// Warm-start data for the defender of a game of `turns` turns: `n` examples, each the reply to the last turn
/// of a conversation of 1 to `turns` turns whose first turn is small talk (the setup word half the time) or a
/// rewrite, labelled by [`warm_defender_reply`] ([`warm_defender_data`] when `turns` is 1).
pub fn warm_defender_turns(
    lang: &Language,
    seeds: &[Intent],
    n: usize,
    seed: u64,
    turns: usize,
) -> Vec<Example> {
    if turns <= 1 {
        return warm_defender_data(lang, seeds, n, seed);
    }
    let style = RewriteStyle::defender_curriculum();
    sample_examples(lang, seeds, n, seed, |lang, intent, rng| {
        let len = 1 + rng.below_scaled(turns);
        let users: Vec<Vec<Token>> = (0..len)
            .map(|t| {
                if t == 0 && len > 1 && rng.chance(0.5) {
                    small_talk(lang, 0.5, rng)
                } else {
                    rewrite_intent(lang, intent, &style, rng)
                }
            })
            .collect();
        let replies = warm_replies(lang, &users, true);
        let history = exchanges(&users[..len - 1], &replies);
        let mut response = replies[len - 1].clone();
        response.push(EOS);
        Example {
            context: defender_context_in(lang, &history, &users[len - 1]),
            response,
        }
    })
}

fn sample_examples(
    lang: &Language,
    seeds: &[Intent],
    n: usize,
    seed: u64,
    mut make: impl FnMut(&Language, &Intent, &mut SplitMix64) -> Example,
) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..seeds.len()).collect();
    let mut out = Vec::with_capacity(n);
    if seeds.is_empty() {
        return out;
    }
    while out.len() < n {
        rng.shuffle_scaled(&mut order);
        for &i in &order {
            if out.len() >= n {
                break;
            }
            out.push(make(lang, &seeds[i], &mut rng));
        }
    }
    out
}

/// [`rewrite_intent`] from a seed's tokens: the seed is read back into an intent (its topic, first
/// surface word, context words and opener); a seed without a topic or surface word is returned as is.
pub fn rewrite_tokens(
    lang: &Language,
    seed: &[Token],
    style: &RewriteStyle,
    rng: &mut SplitMix64,
) -> Vec<Token> {
    let Some(topic) = lang.topic_of(seed) else {
        return seed.to_vec();
    };
    let Some(pos) = seed.iter().position(|&t| {
        matches!(
            lang.class(t),
            WordClass::Surface(_) | WordClass::Ambiguous { .. }
        )
    }) else {
        return seed.to_vec();
    };
    let context: Vec<Token> = seed
        .iter()
        .copied()
        .filter(|&t| lang.class(t) == WordClass::Context(topic))
        .collect();
    let prefix = &seed[..pos];
    let opener = lang
        .openers()
        .iter()
        .position(|o| o.as_slice() == prefix)
        .unwrap_or(0);
    let intent = Intent {
        id: 0,
        topic,
        surface: seed[pos],
        context,
        opener,
    };
    let out = rewrite_intent(lang, &intent, style, rng);
    if lang.topic_of(&out) == Some(topic) {
        out
    } else {
        seed.to_vec()
    }
}
