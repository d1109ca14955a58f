//! Tokenizer and chat-template tests against the HF reference fixtures (../shared/fixtures/smollm2): token ids
//! exact for every line of tokens.jsonl, chat renders and ids exact for every line of chat.jsonl; plus template
//! features (raise_exception, tojson, Python string methods) on hand-written templates.

mod common;

use common::ids_of;
use sparring_actors::formats::chat::{ChatMessage, ChatTemplate};
use sparring_actors::formats::gguf::GgufFile;
use sparring_actors::formats::tokenizer::TextTokenizer;

fn smollm2() -> Option<GgufFile> {
    let p = sparring_actors::testing::smollm2_or_skip("formats_tokenizer")?;
    Some(GgufFile::open(&p).unwrap())
}

fn fixture_lines(name: &str) -> Option<Vec<serde_json::Value>> {
    common::smollm2_fixture(name, "formats_tokenizer")
}

#[test]
fn gguf_tokenizer_matches_hf_ids_exactly() {
    let (Some(g), Some(lines)) = (smollm2(), fixture_lines("tokens.jsonl")) else {
        return;
    };
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos, Some(("<|im_start|>".to_string(), 1)));
    assert_eq!(tok.eos, Some(("<|im_end|>".to_string(), 2)));
    assert!(!tok.add_bos);
    assert!(lines.len() >= 10);
    for line in &lines {
        let text = line["text"].as_str().unwrap();
        let want = ids_of(&line["ids"]);
        let got = tok.encode(text, false).unwrap();
        assert_eq!(got, want, "text {text:?}");
        // encode(.., true) adds nothing for SmolLM2 (no BOS), and decoding restores the text.
        assert_eq!(tok.encode(text, true).unwrap(), want);
        assert_eq!(tok.decode(&got, false).unwrap(), text);
    }
}

#[test]
fn gguf_chat_template_matches_hf_render_and_ids() {
    let (Some(g), Some(lines)) = (smollm2(), fixture_lines("chat.jsonl")) else {
        return;
    };
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    let tmpl = ChatTemplate::from_tokenizer(&tok).unwrap();
    assert!(!lines.is_empty());
    for line in &lines {
        let add = line["add_generation_prompt"].as_bool().unwrap();
        let text = tmpl.render_json(&line["messages"], add, None).unwrap();
        assert_eq!(text, line["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text, false).unwrap(), ids_of(&line["ids"]));
        let msgs: Vec<ChatMessage> = serde_json::from_value(line["messages"].clone()).unwrap();
        assert_eq!(tmpl.render(&msgs, add).unwrap(), text);
    }
}

#[test]
fn tokenizer_json_round_trip_gives_identical_ids() {
    let (Some(g), Some(lines)) = (smollm2(), fixture_lines("tokens.jsonl")) else {
        return;
    };
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    let dir = std::env::temp_dir().join(format!("sparring-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    tok.save_hf(&dir).unwrap();
    let back = TextTokenizer::from_hf_dir(&dir).unwrap();
    assert_eq!(back.bos, tok.bos);
    assert_eq!(back.eos, tok.eos);
    assert_eq!(back.pad, tok.pad);
    assert_eq!(back.chat_template, tok.chat_template);
    for line in &lines {
        let text = line["text"].as_str().unwrap();
        assert_eq!(
            back.encode(text, false).unwrap(),
            ids_of(&line["ids"]),
            "{text:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn template_trims_blocks_like_hf() {
    let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[U] {{ m.content }}\n  {% endif %}\n{% endfor %}\n";
    let t = ChatTemplate::new(src).unwrap();
    let out = t
        .render(
            &[
                ChatMessage::new("user", "a"),
                ChatMessage::new("system", "b"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(out, "[U] a\n");
}

#[test]
fn template_raise_exception_is_an_error() {
    let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}ok";
    let t = ChatTemplate::new(src).unwrap();
    let e = t
        .render(&[ChatMessage::new("assistant", "x")], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Conversation roles must alternate"), "{e}");
    assert_eq!(
        t.render(&[ChatMessage::new("user", "x")], false).unwrap(),
        "ok"
    );
}

#[test]
fn template_python_methods_tojson_and_date() {
    let src = "{{ messages[0].content.strip() }}|{{ messages[0].content.startswith(' He') }}|{{ 'a,b,c'.split(',') | length }}|{{ messages[0] | tojson }}|{{ {'x': [1, 2.5, none, true]} | tojson(indent=2) }}|{{ strftime_now('%d %b %Y') }}|{{ bos_token }}";
    let mut t = ChatTemplate::new(src).unwrap();
    t.special_tokens.insert("bos_token".into(), "<s>".into());
    let out = t
        .render(&[ChatMessage::new("user", " He said \"hi\"\n")], false)
        .unwrap();
    assert_eq!(
        out,
        " He said \"hi\"|True|3|{\"role\": \"user\", \"content\": \" He said \\\"hi\\\"\\n\"}|{\n  \"x\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}|26 Jul 2024|<s>"
            .replacen(" He said \"hi\"|", "He said \"hi\"|", 1)
    );
}

#[test]
fn template_syntax_error_names_the_line() {
    let e = ChatTemplate::new("line one\n{% if %}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("chat template") && e.contains("line 2"), "{e}");
}

/// The non-tool part of Qwen2.5-Instruct's template (whitespace control, undefined attributes are falsy).
#[test]
fn qwen25_style_template_renders() {
    let src = r#"{%- if tools %}
    {{- raise_exception('tools not used here') }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;
    let t = ChatTemplate::new(src).unwrap();
    let out = t
        .render(
            &[
                ChatMessage::new("user", "Hi"),
                ChatMessage::new("assistant", "Hello!"),
                ChatMessage::new("user", "Bye"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

/// The shape of Llama 3.1's template: `set`, `strftime_now`, `|trim`, `bos_token`, namespace-free header.
#[test]
fn llama31_style_template_renders() {
    let src = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;
    let mut t = ChatTemplate::new(src).unwrap();
    t.special_tokens
        .insert("bos_token".into(), "<|begin_of_text|>".into());
    let out = t
        .render(
            &[
                ChatMessage::new("system", " Be brief. "),
                ChatMessage::new("user", "Hi "),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\
         Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

/// GPT-2's byte → unicode map (the byte-level alphabet).
fn byte_level_alphabet() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap().to_string()
            }
        })
        .collect()
}

fn tokenizer_with_pre(pre: &str) -> TextTokenizer {
    use sparring_actors::formats::gguf::{GgufWriter, MetaType, MetaValue};
    let s = |v: &str| MetaValue::String(v.into());
    let mut tokens = byte_level_alphabet();
    tokens.extend(["12".to_string(), "123".to_string(), "Ġa".to_string()]);
    let n = tokens.len();
    let mut w = GgufWriter::new();
    w.meta("tokenizer.ggml.model", s("gpt2"))
        .meta("tokenizer.ggml.pre", s(pre))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array {
                elem: MetaType::String,
                items: tokens.iter().map(|t| s(t)).collect(),
            },
        )
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::Array {
                elem: MetaType::String,
                items: vec![s("1 2"), s("12 3"), s("Ġ a")],
            },
        )
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(n as u32 - 1));
    TextTokenizer::from_gguf(&GgufFile::parse(w.to_bytes()).unwrap()).unwrap()
}

#[test]
fn pre_tokenizers_split_digits_as_their_models_do() {
    let id = |t: &TextTokenizer, s: &str| t.token_to_id(s).unwrap();
    // gpt2: "12345" is one word → merges give "123" "4" "5".
    let t = tokenizer_with_pre("gpt2");
    assert_eq!(
        t.encode("12345", false).unwrap(),
        vec![id(&t, "123"), id(&t, "4"), id(&t, "5")]
    );
    assert_eq!(t.encode(" a", false).unwrap(), vec![id(&t, "Ġa")]);
    assert_eq!(
        t.encode("3123", false).unwrap(),
        vec![id(&t, "3"), id(&t, "123")]
    );
    // smollm and qwen2: every digit alone → no merges.
    for pre in ["smollm", "qwen2"] {
        let t = tokenizer_with_pre(pre);
        let want: Vec<u32> = "12345".chars().map(|c| id(&t, &c.to_string())).collect();
        assert_eq!(t.encode("12345", false).unwrap(), want, "{pre}");
    }
    // llama-bpe (Llama 3): digits in groups of three → "123" "45".
    let t = tokenizer_with_pre("llama-bpe");
    assert_eq!(
        t.encode("12345", false).unwrap(),
        vec![id(&t, "123"), id(&t, "4"), id(&t, "5")]
    );
    // "3123" is split "312" "3", so the "123" merge cannot happen.
    assert_eq!(
        t.encode("3123", false).unwrap(),
        vec![id(&t, "3"), id(&t, "12"), id(&t, "3")]
    );
    assert_eq!(
        t.encode("1234 12", false).unwrap(),
        vec![id(&t, "123"), id(&t, "4"), id(&t, "Ġ"), id(&t, "12")]
    );
    assert!(
        TextTokenizer::from_gguf(&{
            use sparring_actors::formats::gguf::{GgufWriter, MetaValue};
            let mut w = GgufWriter::new();
            w.meta("tokenizer.ggml.model", MetaValue::String("llama".into()));
            GgufFile::parse(w.to_bytes()).unwrap()
        })
        .unwrap_err()
        .to_string()
        .contains("not supported")
    );
}

#[test]
fn generation_tags_and_none_tools_behave_like_hf() {
    let src = "{% if tools is not none %}T{% endif %}{% for m in messages %}{%- generation -%} [{{ m.content }}] {%- endgeneration -%}{% endfor %}";
    let t = ChatTemplate::new(src).unwrap();
    assert_eq!(
        t.render(&[ChatMessage::new("assistant", "x")], false)
            .unwrap(),
        "[x]"
    );
    let mut extra = serde_json::Map::new();
    extra.insert("tools".into(), serde_json::json!([{"name": "f"}]));
    let msgs = serde_json::json!([{"role": "user", "content": "y"}]);
    assert_eq!(t.render_json(&msgs, false, Some(&extra)).unwrap(), "T[y]");
}
