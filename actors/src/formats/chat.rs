//! Chat templates rendered as Hugging Face transformers does (`apply_chat_template`): Jinja via minijinja with
//! `trim_blocks` and `lstrip_blocks`, the context `messages`, `add_generation_prompt`, the special tokens
//! (`bos_token`, `eos_token`, ...), `raise_exception`, `strftime_now` (at a fixed, configurable date so renders
//! are deterministic), Python's `json.dumps`-style `tojson`, and the Python string/dict methods (`strip`,
//! `startswith`, `split`, `items`, `get`, ...) that templates call.
//!
//! The Python methods are minijinja-contrib's `pycompat`; see `py_methods` for the few kept here. Also kept
//! here, as neither minijinja nor minijinja-contrib has them: `raise_exception` and `strftime_now` (transformers'
//! own template globals), `{% generation %}` tags, and `tojson`, because minijinja's builtin filter writes compact
//! JSON (`{"a":1}`) with `<`, `>`, `&` and `'` escaped, where transformers' is `json.dumps` (`{"a": 1}`, text as is).
//!
//! A template comes from a model file, so it is untrusted code: a render stops after [`TEMPLATE_FUEL`] instructions
//! and [`MAX_RENDER_BYTES`] of output, with an error that says so.

use minijinja::value::{Kwargs, ValueKind, from_args};
use minijinja::{Environment, Error, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};

use super::tokenizer::TextTokenizer;
use super::{FormatError, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (or any role the template knows).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Values put into every render's context (special tokens).
    pub special_tokens: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// Instructions a render may run (the shipped models' templates take a few thousand per message).
pub const TEMPLATE_FUEL: u64 = 10_000_000;

/// The most a render may write.
pub const MAX_RENDER_BYTES: usize = 16 << 20;

/// A writer that refuses to grow past [`MAX_RENDER_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDER_BYTES {
            return Err(std::io::Error::other(format!(
                "the rendered prompt is over {} MiB",
                MAX_RENDER_BYTES >> 20
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The date `strftime_now` formats by default (HF's Llama 3.1 template default `date_string`).
pub const DEFAULT_DATE: (i32, u32, u32) = (2024, 7, 26);

fn template_error(e: Error) -> FormatError {
    if e.kind() == ErrorKind::OutOfFuel {
        return FormatError::invalid(
            "chat template",
            format!(
                "stopped after {TEMPLATE_FUEL} instructions (a template from a model file is untrusted: one that \
                 loops this long is refused)"
            ),
        );
    }
    let mut msg = e.to_string();
    if let Some(line) = e.line() {
        msg = format!("line {line}: {msg}");
    }
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    FormatError::invalid("chat template", msg)
}

impl ChatTemplate {
    /// Compiles `source` with HF's settings; `strftime_now` renders `date` (year, month, day).
    pub fn with_date(source: &str, date: (i32, u32, u32)) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function(
            "strftime_now",
            move |fmt: String| -> std::result::Result<Value, Error> {
                Ok(Value::from(strftime(&fmt, date)))
            },
        );
        env.add_filter("tojson", tojson_filter);
        env.set_unknown_method_callback(py_methods);
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(template_error)?;
        Ok(ChatTemplate {
            env,
            special_tokens: serde_json::Map::new(),
        })
    }

    /// Compiles `source` with HF's settings and the default date.
    pub fn new(source: &str) -> Result<Self> {
        Self::with_date(source, DEFAULT_DATE)
    }

    /// The tokenizer's chat template with its special tokens (`bos_token`, `eos_token`, `pad_token`) in the context.
    pub fn from_tokenizer(tok: &TextTokenizer) -> Result<Self> {
        let source = tok.chat_template.as_deref().ok_or_else(|| {
            FormatError::invalid("chat template", "the tokenizer has no chat template")
        })?;
        let mut t = Self::new(source)?;
        for (key, tokv) in [
            ("bos_token", &tok.bos),
            ("eos_token", &tok.eos),
            ("pad_token", &tok.pad),
        ] {
            if let Some((text, _)) = tokv {
                t.special_tokens.insert(key.into(), text.clone().into());
            }
        }
        Ok(t)
    }

    /// Renders `messages` (a JSON array of message objects). `extra` keys (e.g. `tools`, `date_string`) are added
    /// to the context.
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String> {
        self.render_value(
            Value::from_serialize(messages),
            add_generation_prompt,
            extra,
        )
    }

    /// Renders a list of messages (keys in struct order: `role`, `content`).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_value(Value::from_serialize(messages), add_generation_prompt, None)
    }

    fn render_value(
        &self,
        messages: Value,
        add_generation_prompt: bool,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String> {
        let mut ctx: Vec<(String, Value)> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect();
        if let Some(extra) = extra {
            ctx.extend(
                extra
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from_serialize(v))),
            );
        }
        // HF passes these explicitly as None, so `tools is not none` is false unless the caller sets them.
        for key in ["tools", "documents"] {
            if !ctx.iter().any(|(k, _)| k == key) {
                ctx.push((key.into(), Value::from(())));
            }
        }
        ctx.push(("messages".into(), messages));
        ctx.push((
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        ));
        let ctx: Value = ctx.into_iter().collect();
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        let mut out = Capped(Vec::new());
        tmpl.render_captured_to(ctx, &mut out)
            .map_err(template_error)?;
        String::from_utf8(out.0).map_err(|e| {
            FormatError::invalid("chat template", format!("rendered non-UTF-8 text: {e}"))
        })
    }
}

/// Replaces HF's `{% generation %}` / `{% endgeneration %}` tags (transformers' AssistantTracker extension, which
/// only records spans) by an always-true `if`, keeping whitespace control, so the contents render as in HF.
fn strip_generation_tags(source: &str) -> String {
    let mut s = source.to_string();
    for (l, r) in [("{%-", "-%}"), ("{%-", "%}"), ("{%", "-%}"), ("{%", "%}")] {
        s = s.replace(&format!("{l} generation {r}"), &format!("{l} if true {r}"));
        s = s.replace(&format!("{l} endgeneration {r}"), &format!("{l} endif {r}"));
    }
    s
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A small strftime for dates: `%d %m %Y %y %b %B %j %%`; time fields format as midnight.
fn strftime(fmt: &str, (y, m, d): (i32, u32, u32)) -> String {
    let month = MONTHS[(m.clamp(1, 12) - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('-') => match chars.next() {
                Some('d') => out.push_str(&d.to_string()),
                Some('m') => out.push_str(&m.to_string()),
                Some(o) => {
                    out.push_str("%-");
                    out.push(o);
                }
                None => out.push_str("%-"),
            },
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('H') | Some('M') | Some('S') => out.push_str("00"),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python `json.dumps(v, ensure_ascii=False, indent=indent)` over a template value, keeping map order.
fn py_json(
    v: &Value,
    indent: Option<usize>,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64().filter(|_| v.is_integer()) {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else {
                    out.push_str(&format!("{f:?}"));
                }
            }
        }
        ValueKind::String => json_escape(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(item, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map | ValueKind::Plain => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                match k.as_str() {
                    Some(s) => json_escape(s, out),
                    None => json_escape(&k.to_string(), out),
                }
                out.push_str(": ");
                py_json(&v.get_item(k)?, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        ValueKind::Bytes | ValueKind::Invalid => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: value cannot be serialized",
            ));
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: unsupported value",
            ));
        }
    }
    Ok(())
}

fn tojson_filter(v: &Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    py_json(v, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Python methods on template values: minijinja-contrib's `pycompat` (`strip`, `startswith`, `split`, `replace`,
/// `join`, `items`, `get`, ...), after the few it lacks or answers differently from Python, kept here:
/// `str.rsplit` (not in pycompat), `str.find` counting characters as Python does (pycompat gives a byte offset),
/// `str.count` of an empty substring (pycompat loops forever on it), and `isdigit` / `isspace` / `isalpha` of
/// the empty string, which are False in Python (pycompat: True).
fn py_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            "rsplit" => {
                let (sep, max): (Option<&str>, Option<i64>) = from_args(args)?;
                let parts: Vec<&str> = match (sep, max.filter(|&m| m >= 0)) {
                    (Some(sep), Some(m)) => s.rsplitn(m as usize + 1, sep).collect(),
                    (Some(sep), None) => s.rsplit(sep).collect(),
                    (None, _) => s.split_whitespace().rev().collect(),
                };
                return Ok(parts.into_iter().rev().map(Value::from).collect());
            }
            "find" => {
                let (sub,): (&str,) = from_args(args)?;
                let at = s.find(sub).map(|b| s[..b].chars().count() as i64);
                return Ok(Value::from(at.unwrap_or(-1)));
            }
            "count" => {
                let (sub,): (&str,) = from_args(args)?;
                return Ok(Value::from(s.matches(sub).count()));
            }
            "isdigit" | "isspace" | "isalpha" if s.is_empty() => return Ok(Value::from(false)),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod limits {
    use super::*;

    fn user(content: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::new("user", content)]
    }

    /// A template that loops for ever (here 10^8 iterations) is stopped by its fuel, and one that writes more
    /// than the cap stops at the cap; both with an error that says why. A normal template is untouched.
    #[test]
    fn untrusted_templates_are_stopped() {
        let looping = ChatTemplate::new(
            "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        let e = looping.render(&user("hi"), false).unwrap_err().to_string();
        assert!(
            e.contains("chat template") && e.contains("instructions"),
            "{e}"
        );
        let writing =
            ChatTemplate::new("{% for i in range(100) %}{{ messages[0].content }}{% endfor %}")
                .unwrap();
        let e = writing
            .render(&user(&"y".repeat(1 << 20)), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("over 16 MiB"), "{e}");
        let plain =
            ChatTemplate::new("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
                .unwrap();
        assert_eq!(plain.render(&user("hi"), false).unwrap(), "<user>hi");
    }
}
