//! Attack diversity: distinct-n, the number of distinct n-grams over the total number of n-grams in a set of texts
//! (Li et al., 2016), computed per round over the attacker's parsed rewrites.
//!
//! Tokens are maximal runs of alphanumeric characters, lower-cased (punctuation and whitespace separate tokens);
//! n-grams do not cross text boundaries.

use std::collections::HashSet;

/// Tokens of a text: lower-cased maximal alphanumeric runs.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .collect()
}

/// distinct-n over `texts`: |distinct n-grams| / |n-grams|, `None` when there is no n-gram.
pub fn distinct_n<S: AsRef<str>>(texts: &[S], n: usize) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let toks = tokens(t.as_ref());
        for w in toks.windows(n) {
            total += 1;
            seen.insert(w.to_vec());
        }
    }
    (total > 0).then(|| seen.len() as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_by_hand() {
        let t = ["The cat sat.", "the cat ran!"];
        // unigrams: the cat sat the cat ran → 4 distinct / 6
        assert_eq!(distinct_n(&t, 1), Some(4.0 / 6.0));
        // bigrams: (the cat) (cat sat) (the cat) (cat ran) → 3 / 4
        assert_eq!(distinct_n(&t, 2), Some(3.0 / 4.0));
        assert_eq!(distinct_n(&["one"], 2), None);
        assert_eq!(distinct_n::<&str>(&[], 1), None);
    }
}
