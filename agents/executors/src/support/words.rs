//! What the offline text executors share: splitting text into words and sentences, and the
//! bound on how much text one task may hand them.

use cadre_agents::executor::ExecError;

/// Most text (in bytes) a text executor accepts. The node already limits params to 1 MiB; this
/// keeps the bound if that limit is raised, since the work grows with the text.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Checks a text param: not blank, at most [`MAX_TEXT_BYTES`]. `field` names it in the error.
pub fn check_text(field: &str, text: &str) -> Result<(), ExecError> {
    if text.trim().is_empty() {
        return Err(ExecError::InvalidParams(format!("{field} must not be empty")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ExecError::InvalidParams(format!(
            "{field} is {} bytes, above the limit of {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// `s` cut to at most `max_chars` characters, with `...` appended when something was cut: for
/// messages built from text a remote party or a sub-task supplied, so results stay small.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

/// Splits text into sentences at `.`, `!` or `?` followed by whitespace (or the end) and at
/// blank lines, collapsing whitespace inside each sentence.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        let boundary = matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace());
        if boundary || c == '\n' && chars.peek() == Some(&'\n') {
            let s = cur.split_whitespace().collect::<Vec<_>>().join(" ");
            if !s.is_empty() {
                out.push(s);
            }
            cur.clear();
        }
    }
    let rest = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The words of `text`, lower-cased: runs of letters, digits and apostrophes (so `don't` stays
/// one word), with leading and trailing apostrophes dropped.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && !is_apostrophe(c))
        .map(|w| w.trim_matches(is_apostrophe))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('\u{2019}', "'"))
}

/// The content part of a word with an apostrophe: French and Italian elisions lose their
/// article (`l'homme` -> `homme`, `dell'arte` -> `arte`); English contractions (`don't`,
/// `it's`, `we'll`) stay whole, so stop-word lists can hold them.
pub fn strip_elision(word: &str) -> &str {
    match word.split_once('\'') {
        Some((_, "s" | "t" | "re" | "ve" | "ll" | "d" | "m")) | None => word,
        Some((_, rest)) => rest,
    }
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_and_words() {
        assert_eq!(split_sentences("A. B! C? d"), vec!["A.", "B!", "C?", "d"]);
        assert_eq!(
            split_sentences("first line\n\nnext  one"),
            vec!["first line", "next one"]
        );
        let w: Vec<String> = words("Don't STOP — it’s 'quoted' Größe, 42!").collect();
        assert_eq!(w, vec!["don't", "stop", "it's", "quoted", "größe", "42"]);
        let stripped: Vec<&str> = ["l'homme", "dell'arte", "don't", "we'll", "plain"]
            .map(strip_elision)
            .into();
        assert_eq!(stripped, vec!["homme", "arte", "don't", "we'll", "plain"]);
    }

    #[test]
    fn text_bounds() {
        assert!(check_text("text", "hi").is_ok());
        assert_eq!(
            check_text("text", " \n"),
            Err(ExecError::InvalidParams("text must not be empty".into()))
        );
        let big = "a".repeat(MAX_TEXT_BYTES + 1);
        assert!(
            matches!(check_text("code", &big), Err(ExecError::InvalidParams(m)) if m.starts_with("code is"))
        );
    }

    #[test]
    fn clip_cuts_at_characters() {
        assert_eq!(clip("short", 5), "short");
        assert_eq!(clip("longer", 4), "long...");
        assert_eq!(clip("ääää", 2), "ää...");
        assert_eq!(clip("", 0), "");
    }
}
