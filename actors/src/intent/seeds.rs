//! Intents (seed requests) of the intent game: every (topic, surface word, context words) combination
//! rendered with an opener, and seeded train / held-out splits stratified by topic.

use super::lang::{Category, Language, Token, TopicId};
use sparring_engine::rng::{SplitMix64, hash_words};

/// One seed request: a topic expressed by a surface word and one or two context words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Intent {
    /// Index in [`all_intents`] (stable across runs).
    pub id: usize,
    /// The topic.
    pub topic: TopicId,
    /// The surface word (unique to the topic, or ambiguous).
    pub surface: Token,
    /// The context words (1 or 2, all of the topic).
    pub context: Vec<Token>,
    /// Index of the opener in [`Language::openers`].
    pub opener: usize,
}

impl Intent {
    /// The seed's tokens: opener, surface word, context words.
    pub fn tokens(&self, lang: &Language) -> Vec<Token> {
        let mut v = lang.openers().get(self.opener).cloned().unwrap_or_default();
        v.push(self.surface);
        v.extend_from_slice(&self.context);
        v
    }

    /// The seed as text.
    pub fn text(&self, lang: &Language) -> String {
        lang.decode(&self.tokens(lang))
    }

    /// Harmful or benign.
    pub fn category(&self, lang: &Language) -> Category {
        lang.topic(self.topic)
            .map(|t| t.category())
            .unwrap_or(Category::Benign)
    }

    /// Whether the surface word is ambiguous (resolved only by the context).
    pub fn is_ambiguous(&self, lang: &Language) -> bool {
        lang.ambiguous_words().contains(&self.surface)
    }
}

/// Every intent of the language: per topic, each surface word (3 unique + 1 ambiguous) with each
/// single context word and each pair (4 + 6), i.e. 40 per topic. Openers are fixed per intent.
pub fn all_intents(lang: &Language) -> Vec<Intent> {
    let mut out = Vec::new();
    let n_open = lang.openers().len().max(1) as u64;
    for (ti, topic) in lang.topics().iter().enumerate() {
        let mut contexts: Vec<Vec<Token>> = topic.context.iter().map(|&c| vec![c]).collect();
        for i in 0..topic.context.len() {
            for j in i + 1..topic.context.len() {
                contexts.push(vec![topic.context[i], topic.context[j]]);
            }
        }
        for &s in &topic.all_surface() {
            for ctx in &contexts {
                let id = out.len();
                let opener = (hash_words(0x5EED, &[id as u64]) % n_open) as usize;
                out.push(Intent {
                    id,
                    topic: ti,
                    surface: s,
                    context: ctx.clone(),
                    opener,
                });
            }
        }
    }
    out
}

/// Train and held-out intents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSplit {
    /// Seeds the players train on.
    pub train: Vec<Intent>,
    /// Seeds used only for evaluation.
    pub held_out: Vec<Intent>,
}

impl SeedSplit {
    /// The held-out intents of one category.
    pub fn held_out_of(&self, lang: &Language, c: Category) -> Vec<Intent> {
        self.held_out
            .iter()
            .filter(|i| i.category(lang) == c)
            .cloned()
            .collect()
    }

    /// The training intents of one category.
    pub fn train_of(&self, lang: &Language, c: Category) -> Vec<Intent> {
        self.train
            .iter()
            .filter(|i| i.category(lang) == c)
            .cloned()
            .collect()
    }
}

/// Splits [`all_intents`] with a seeded shuffle per topic: `round(held_out_frac * n)` of each topic's
/// intents are held out (the fraction is clamped to [0, 1]). Both parts keep id order.
pub fn split_intents(lang: &Language, held_out_frac: f64, seed: u64) -> SeedSplit {
    let frac = if held_out_frac.is_finite() {
        held_out_frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let all = all_intents(lang);
    let mut rng = SplitMix64::new(seed);
    let mut held = vec![false; all.len()];
    for ti in 0..lang.topics().len() {
        let mut ids: Vec<usize> = all.iter().filter(|i| i.topic == ti).map(|i| i.id).collect();
        rng.shuffle_scaled(&mut ids);
        let k = (frac * ids.len() as f64).round() as usize;
        for &id in ids.iter().take(k) {
            held[id] = true;
        }
    }
    let (held_out, train): (Vec<Intent>, Vec<Intent>) = all.into_iter().partition(|i| held[i.id]);
    SeedSplit { train, held_out }
}

/// Intents as AdvGame JSONL (`{"prompt": ..., "category": "harmful"|"benign"}` per line), the format the
/// engine's `[data]` reader takes.
pub fn seeds_jsonl(lang: &Language, intents: &[Intent]) -> String {
    let mut s = String::new();
    for i in intents {
        let rec =
            serde_json::json!({ "prompt": i.text(lang), "category": i.category(lang).as_str() });
        s.push_str(&rec.to_string());
        s.push('\n');
    }
    s
}

/// Every intent behind every framing token, as AdvGame JSONL: for harmful intents the fixed attack set
/// (without the plain prompt), for benign ones the framed-utility set.
pub fn framed_jsonl(lang: &Language, intents: &[Intent]) -> String {
    let mut s = String::new();
    for i in intents {
        for v in super::eval::framed_variants(lang, &i.tokens(lang)) {
            let rec = serde_json::json!({ "prompt": lang.decode(&v), "category": i.category(lang).as_str() });
            s.push_str(&rec.to_string());
            s.push('\n');
        }
    }
    s
}
