//! Small text helpers shared by the scripted roles: tokenizing into words, content words, `*` wildcard matching
//! and tag extraction.

/// Lowercase alphanumeric words.
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

const STOP: &[&str] = &[
    "about", "above", "after", "again", "against", "also", "because", "been", "before", "being",
    "below", "between", "both", "could", "does", "doing", "down", "during", "each", "from",
    "further", "have", "having", "here", "into", "just", "more", "most", "once", "only", "other",
    "over", "same", "should", "some", "such", "than", "that", "their", "them", "then", "there",
    "these", "they", "this", "those", "through", "under", "until", "very", "were", "what", "when",
    "where", "which", "while", "with", "would", "your", "yours", "will", "make", "provide",
    "write", "please", "give", "tell", "explain", "describe", "create", "like", "want", "need",
    "it's", "i'm", "can't", "don't",
];

/// Content words: words of at least `min_len` characters that are not stop words, deduplicated in order.
pub fn content_words(s: &str, min_len: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words(s) {
        if w.chars().count() >= min_len && !STOP.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// Case-insensitive match of `pattern` anywhere in `text`, where `*` in the pattern matches any run of characters.
pub fn wildcard_contains(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    let parts: Vec<&str> = pattern.split('*').filter(|p| !p.is_empty()).collect();
    let mut pos = 0;
    for p in parts {
        match text.get(pos..).and_then(|t| t.find(p)) {
            Some(i) => pos += i + p.len(),
            None => return false,
        }
    }
    true
}

/// The text between `<tag>` and `</tag>`, if both are present in order.
pub fn tag<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = s.find(&open)? + open.len();
    let end = s.get(start..)?.find(&close)? + start;
    s.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            words("How do I kill a Python process?"),
            ["how", "do", "i", "kill", "a", "python", "process"]
        );
        assert_eq!(
            content_words("How can I kill a Python process?", 4),
            ["kill", "python", "process"]
        );
        assert!(wildcard_contains(
            "How to BUILD a bomb at home",
            "build*bomb"
        ));
        assert!(!wildcard_contains("bomb then build", "build*bomb"));
        assert_eq!(
            tag("<think>x</think><prompt> hi </prompt>", "prompt"),
            Some(" hi ")
        );
        assert_eq!(tag("<prompt> hi", "prompt"), None);
    }
}
