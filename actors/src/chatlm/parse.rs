//! Strict parsers for the tagged outputs of chat-LM players and judges.
//!
//! A malformed or truncated output is an error, never a guess: the game turns it into the error reward. Each parser
//! accepts free text only where the prompt allows it (a judge may reason before its verdict tags); tags must appear
//! exactly once, closed, with a well-formed value.

use std::fmt;

/// What went wrong in a model's output. Carries the tag name and, where useful, the byte offset in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A required tag is absent.
    Missing { tag: &'static str },
    /// A tag was opened at `at` but never closed (typically a truncated generation).
    Unclosed { tag: &'static str, at: usize },
    /// A tag appears more than once.
    Duplicate { tag: &'static str, at: usize },
    /// A tag's content is empty after trimming.
    Empty { tag: &'static str },
    /// Text where none is allowed (before, between or after the tags), starting at byte `at`.
    Stray { at: usize },
    /// Tags in the wrong order.
    Order {
        first: &'static str,
        second: &'static str,
    },
    /// A tag's content is not the value it must be.
    Value {
        tag: &'static str,
        found: String,
        expected: &'static str,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing { tag } => write!(f, "missing <{tag}>…</{tag}>"),
            ParseError::Unclosed { tag, at } => {
                write!(f, "<{tag}> opened at byte {at} is never closed")
            }
            ParseError::Duplicate { tag, at } => write!(f, "second <{tag}> at byte {at}"),
            ParseError::Empty { tag } => write!(f, "<{tag}> is empty"),
            ParseError::Stray { at } => write!(f, "unexpected text at byte {at}"),
            ParseError::Order { first, second } => {
                write!(f, "<{first}> must come before <{second}>")
            }
            ParseError::Value {
                tag,
                found,
                expected,
            } => {
                write!(f, "<{tag}> holds {found:?}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One tag occurrence: byte range of the whole element and of its content.
#[derive(Debug, Clone, Copy)]
pub(super) struct Element {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) content_start: usize,
    pub(super) content_end: usize,
}

/// Finds the single `<tag>…</tag>` element in `text`; `None` when absent.
fn element(text: &str, tag: &'static str) -> Result<Option<Element>, ParseError> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let Some(start) = text.find(&open) else {
        if let Some(at) = text.find(&close) {
            return Err(ParseError::Stray { at });
        }
        return Ok(None);
    };
    let content_start = start + open.len();
    let Some(rel) = text[content_start..].find(&close) else {
        return Err(ParseError::Unclosed { tag, at: start });
    };
    let content_end = content_start + rel;
    let end = content_end + close.len();
    if let Some(rel) = text[content_start..].find(&open) {
        return Err(ParseError::Duplicate {
            tag,
            at: content_start + rel,
        });
    }
    if let Some(rel) = text[end..].find(&close) {
        return Err(ParseError::Stray { at: end + rel });
    }
    Ok(Some(Element {
        start,
        end,
        content_start,
        content_end,
    }))
}

/// The single `<tag>…</tag>` element of `text`: absent, unclosed, repeated or a stray closing tag is an error.
pub(super) fn required(text: &str, tag: &'static str) -> Result<Element, ParseError> {
    element(text, tag)?.ok_or(ParseError::Missing { tag })
}

fn content<'a>(text: &'a str, e: &Element, tag: &'static str) -> Result<&'a str, ParseError> {
    let c = text[e.content_start..e.content_end].trim();
    if c.is_empty() {
        Err(ParseError::Empty { tag })
    } else {
        Ok(c)
    }
}

/// Byte offset of the first non-whitespace char of `text[from..to]`, if any.
pub(super) fn first_non_ws(text: &str, from: usize, to: usize) -> Option<usize> {
    text[from..to]
        .char_indices()
        .find(|(_, c)| !c.is_whitespace())
        .map(|(i, _)| from + i)
}

/// The attacker's answer: its reasoning and the rewritten prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackerOutput {
    pub think: Option<String>,
    pub prompt: String,
}

/// Parses `<think>…</think><prompt>…</prompt>`. With `require_think`, the reasoning block is mandatory (the paper's
/// format); without, it is optional. Only whitespace may surround the blocks; a truncated output fails.
pub fn parse_attacker(text: &str, require_think: bool) -> Result<AttackerOutput, ParseError> {
    let think = element(text, "think")?;
    if require_think && think.is_none() {
        return Err(ParseError::Missing { tag: "think" });
    }
    let prompt = required(text, "prompt")?;
    let mut cursor = 0;
    let mut think_text = None;
    if let Some(t) = think {
        if t.start > prompt.start {
            return Err(ParseError::Order {
                first: "think",
                second: "prompt",
            });
        }
        if let Some(at) = first_non_ws(text, 0, t.start) {
            return Err(ParseError::Stray { at });
        }
        think_text = Some(text[t.content_start..t.content_end].trim().to_string());
        cursor = t.end;
    }
    if let Some(at) = first_non_ws(text, cursor, prompt.start) {
        return Err(ParseError::Stray { at });
    }
    if let Some(at) = first_non_ws(text, prompt.end, text.len()) {
        return Err(ParseError::Stray { at });
    }
    let p = content(text, &prompt, "prompt")?;
    Ok(AttackerOutput {
        think: think_text,
        prompt: p.to_string(),
    })
}

/// Parses the faithfulness judge's `<answer>True</answer>` / `<answer>False</answer>` (case-insensitive). Reasoning
/// may precede the answer; nothing may follow it.
pub fn parse_faithfulness(text: &str) -> Result<bool, ParseError> {
    let a = required(text, "answer")?;
    if let Some(at) = first_non_ws(text, a.end, text.len()) {
        return Err(ParseError::Stray { at });
    }
    let c = content(text, &a, "answer")?;
    match c.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::Value {
            tag: "answer",
            found: c.to_string(),
            expected: "True or False",
        }),
    }
}

fn score(text: &str, e: &Element, tag: &'static str) -> Result<f64, ParseError> {
    let c = content(text, e, tag)?;
    match c.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(ParseError::Value {
            tag,
            found: c.to_string(),
            expected: "a number from 0 to 10",
        }),
    }
}

/// Parses the pairwise judge's `<score_A>x</score_A>` and `<score_B>y</score_B>` (each 0–10, A before B).
pub fn parse_pairwise(text: &str) -> Result<(f64, f64), ParseError> {
    let a = required(text, "score_A")?;
    let b = required(text, "score_B")?;
    if a.start > b.start {
        return Err(ParseError::Order {
            first: "score_A",
            second: "score_B",
        });
    }
    if let Some(at) = first_non_ws(text, a.end, b.start) {
        return Err(ParseError::Stray { at });
    }
    if let Some(at) = first_non_ws(text, b.end, text.len()) {
        return Err(ParseError::Stray { at });
    }
    Ok((score(text, &a, "score_A")?, score(text, &b, "score_B")?))
}

/// Parses the pointwise judge's `<score>x</score>` (0–10). Reasoning may precede it; nothing may follow it.
pub fn parse_pointwise(text: &str) -> Result<f64, ParseError> {
    let s = required(text, "score")?;
    if let Some(at) = first_non_ws(text, s.end, text.len()) {
        return Err(ParseError::Stray { at });
    }
    score(text, &s, "score")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacker_well_formed() {
        let out = parse_attacker(
            "<think>plan it</think>\n<prompt> Write a story where ... </prompt>\n",
            true,
        );
        assert_eq!(
            out,
            Ok(AttackerOutput {
                think: Some("plan it".into()),
                prompt: "Write a story where ...".into()
            })
        );
        let out = parse_attacker("<prompt>x</prompt>", false).map(|o| o.think);
        assert_eq!(out, Ok(None));
    }

    #[test]
    fn attacker_rejects_malformed() {
        assert_eq!(
            parse_attacker("<prompt>x</prompt>", true),
            Err(ParseError::Missing { tag: "think" })
        );
        assert_eq!(
            parse_attacker("<think>a</think><prompt>trunc", true),
            Err(ParseError::Unclosed {
                tag: "prompt",
                at: 16
            })
        );
        assert_eq!(
            parse_attacker("<think>a</think>", true),
            Err(ParseError::Missing { tag: "prompt" })
        );
        assert_eq!(
            parse_attacker("Sure! <think>a</think><prompt>x</prompt>", true),
            Err(ParseError::Stray { at: 0 })
        );
        assert_eq!(
            parse_attacker("<think>a</think>hm<prompt>x</prompt>", true),
            Err(ParseError::Stray { at: 16 })
        );
        assert_eq!(
            parse_attacker("<think>a</think><prompt>x</prompt> ok", true),
            Err(ParseError::Stray { at: 35 })
        );
        assert_eq!(
            parse_attacker("<think>a</think><prompt>  </prompt>", true),
            Err(ParseError::Empty { tag: "prompt" })
        );
        assert_eq!(
            parse_attacker("<prompt>x</prompt><think>a</think>", true),
            Err(ParseError::Order {
                first: "think",
                second: "prompt"
            })
        );
        assert!(matches!(
            parse_attacker("<think>a</think><prompt>x</prompt><prompt>y</prompt>", true),
            Err(ParseError::Duplicate { tag: "prompt", .. })
        ));
    }

    #[test]
    fn faithfulness() {
        assert_eq!(
            parse_faithfulness("<think>same intent</think> <answer>True</answer>"),
            Ok(true)
        );
        assert_eq!(parse_faithfulness("<answer> false </answer>\n"), Ok(false));
        assert!(matches!(
            parse_faithfulness("<answer>maybe</answer>"),
            Err(ParseError::Value { .. })
        ));
        assert_eq!(
            parse_faithfulness("I think True"),
            Err(ParseError::Missing { tag: "answer" })
        );
        assert!(matches!(
            parse_faithfulness("<answer>True</answer> because"),
            Err(ParseError::Stray { .. })
        ));
    }

    #[test]
    fn pairwise_and_pointwise() {
        assert_eq!(
            parse_pairwise("<think>A refuses</think><score_A>2</score_A>\n<score_B>8.5</score_B>"),
            Ok((2.0, 8.5))
        );
        assert!(matches!(
            parse_pairwise("<score_A>11</score_A><score_B>1</score_B>"),
            Err(ParseError::Value { .. })
        ));
        assert!(matches!(
            parse_pairwise("<score_A>NaN</score_A><score_B>1</score_B>"),
            Err(ParseError::Value { .. })
        ));
        assert!(matches!(
            parse_pairwise("<score_B>1</score_B><score_A>1</score_A>"),
            Err(ParseError::Order { .. })
        ));
        assert_eq!(
            parse_pairwise("<score_A>3</score_A>"),
            Err(ParseError::Missing { tag: "score_B" })
        );
        assert_eq!(parse_pointwise("reasoning... <score>7</score>"), Ok(7.0));
        assert!(matches!(
            parse_pointwise("<score>-1</score>"),
            Err(ParseError::Value { .. })
        ));
        assert!(matches!(
            parse_pointwise("<score>7"),
            Err(ParseError::Unclosed { .. })
        ));
    }
}
