//! Tokenizer and chat-template tests against the HF reference fixtures (../shared/fixtures/smollm2): token ids
//! exact for every line of tokens.jsonl, chat renders and ids exact for every line of chat.jsonl; plus template
//! features (raise_exception, tojson, Python string methods) on hand-written templates.

use sparring_actors::formats::chat::{ChatMessage, ChatTemplate};
use sparring_actors::formats::gguf::GgufFile;
use sparring_actors::formats::tokenizer::TextTokenizer;
use sparring_actors::formats::{shared_dir, smollm2_gguf_path};

fn smollm2() -> Option<GgufFile> {
    let p = smollm2_gguf_path()?;
    if !p.is_file() {
        eprintln!(
            "SKIP: SmolLM2 GGUF not found at {} (run scripts/fetch-model.sh)",
            p.display()
        );
        return None;
    }
    Some(GgufFile::open(&p).unwrap())
}

fn fixture_lines(name: &str) -> Option<Vec<serde_json::Value>> {
    let p = shared_dir().join("fixtures/smollm2").join(name);
    let Ok(text) = std::fs::read_to_string(&p) else {
        eprintln!("SKIP: fixture {} not found", p.display());
        return None;
    };
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
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
