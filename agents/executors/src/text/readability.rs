//! Offline readability: Flesch reading ease and Flesch–Kincaid grade level from counts of
//! sentences, words and (estimated) syllables. Both formulas are calibrated for English; on
//! other languages the numbers are only comparable with each other.

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::blocking::run_blocking;
use crate::support::params_schema as schema;
use crate::support::round::round3;
use crate::support::words::{check_text, split_sentences, words};

/// `intelligence.text.readability`: `{"text": "..."}` -> [`Readability`].
pub struct MeasureReadability;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadabilityParams {
    text: String,
}

/// What [`MeasureReadability`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readability {
    /// Sentences (at least 1 for any text with words).
    pub sentences: usize,
    /// Words.
    pub words: usize,
    /// Estimated syllables (vowel groups, see [`syllables`]).
    pub syllables: usize,
    /// Mean words per sentence.
    pub words_per_sentence: f64,
    /// Mean syllables per word.
    pub syllables_per_word: f64,
    /// 206.835 − 1.015 × words/sentence − 84.6 × syllables/word: higher is easier, 60-70 is
    /// plain English.
    pub flesch_reading_ease: f64,
    /// 0.39 × words/sentence + 11.8 × syllables/word − 15.59: the US school grade that can read it.
    pub flesch_kincaid_grade: f64,
    /// Flesch's band for the reading ease: `very easy` ... `very difficult`.
    pub difficulty: String,
}

#[async_trait]
impl Executor for MeasureReadability {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["text"],
            &[("text", schema::text("the text (English)"))],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("sentences", schema::count("sentences")),
            ("words", schema::count("words")),
            ("syllables", schema::count("syllables (estimated)")),
            ("words_per_sentence", schema::real("average")),
            ("syllables_per_word", schema::real("average")),
            (
                "flesch_reading_ease",
                schema::real("higher is easier; 60-70 is plain English"),
            ),
            ("flesch_kincaid_grade", schema::real("US school grade")),
            (
                "difficulty",
                schema::one_of(&DIFFICULTIES, "the reading ease in words"),
            ),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ReadabilityParams = decode_params(&params)?;
        check_text("text", &p.text)?;
        let r = run_blocking(&ctx, "readability", move |_| {
            readability(&p.text).ok_or_else(|| ExecError::InvalidParams("text has no words".into()))
        })
        .await?;
        serde_json::to_value(r).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// Readability of `text`; `None` if it has no words.
pub fn readability(text: &str) -> Option<Readability> {
    let words: Vec<String> = words(text)
        .filter(|w| w.chars().any(char::is_alphabetic))
        .collect();
    if words.is_empty() {
        return None;
    }
    let sentences = split_sentences(text)
        .iter()
        .filter(|s| s.chars().any(char::is_alphabetic))
        .count()
        .max(1);
    let syllables: usize = words.iter().map(|w| syllables(w)).sum();
    let wps = words.len() as f64 / sentences as f64;
    let spw = syllables as f64 / words.len() as f64;
    let ease = 206.835 - 1.015 * wps - 84.6 * spw;
    Some(Readability {
        sentences,
        words: words.len(),
        syllables,
        words_per_sentence: round3(wps),
        syllables_per_word: round3(spw),
        flesch_reading_ease: round3(ease),
        flesch_kincaid_grade: round3(0.39 * wps + 11.8 * spw - 15.59),
        difficulty: difficulty(ease).into(),
    })
}

/// Estimated syllables of a lower-case word: groups of consecutive vowels, after dropping a
/// silent final `e`, `es` or `ed` and a leading `y`; at least 1.
pub fn syllables(word: &str) -> usize {
    let chars: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).collect();
    if chars.len() <= 3 {
        return 1;
    }
    let keeps_e = |c: char| "laeiouy".contains(c);
    let mut end = chars.len();
    match chars[..] {
        [.., c, 'e', 's'] if !keeps_e(c) => end -= 2,
        [.., 'e', 'd'] => end -= 2,
        [.., c, 'e'] if !keeps_e(c) => end -= 1,
        _ => {}
    }
    let start = usize::from(chars[0] == 'y');
    let mut groups = 0;
    let mut in_vowel = false;
    for &c in &chars[start..end] {
        let v = is_vowel(c);
        if v && !in_vowel {
            groups += 1;
        }
        in_vowel = v;
    }
    groups.max(1)
}

fn is_vowel(c: char) -> bool {
    "aeiouyàáâãäåèéêëìíîïòóôõöùúûüýÿæœ".contains(c)
}

fn difficulty(ease: f64) -> &'static str {
    let [
        very_easy,
        easy,
        fairly_easy,
        standard,
        fairly_difficult,
        difficult,
        very_difficult,
    ] = DIFFICULTIES;
    match ease {
        x if x >= 90.0 => very_easy,
        x if x >= 80.0 => easy,
        x if x >= 70.0 => fairly_easy,
        x if x >= 60.0 => standard,
        x if x >= 50.0 => fairly_difficult,
        x if x >= 30.0 => difficult,
        _ => very_difficult,
    }
}

/// Every `difficulty` a result can have, easiest first.
const DIFFICULTIES: [&str; 7] = [
    "very easy",
    "easy",
    "fairly easy",
    "standard",
    "fairly difficult",
    "difficult",
    "very difficult",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    #[test]
    fn estimates_syllables() {
        for (w, n) in [
            ("cat", 1),
            ("make", 1),
            ("table", 2),
            ("running", 2),
            ("beautiful", 3),
            ("syllable", 3),
            ("readability", 5),
            ("yellow", 2),
            ("jumped", 1),
            ("élève", 2),
        ] {
            assert_eq!(syllables(w), n, "{w}");
        }
    }

    #[test]
    fn scores_simple_and_hard_text() {
        let r = readability("The cat sat on the mat. The dog ran.").unwrap();
        assert_eq!((r.sentences, r.words, r.syllables), (2, 9, 9));
        assert_eq!(r.words_per_sentence, 4.5);
        assert_eq!(r.flesch_reading_ease, round3(206.835 - 1.015 * 4.5 - 84.6));
        assert_eq!(r.flesch_kincaid_grade, round3(0.39 * 4.5 + 11.8 - 15.59));
        assert_eq!(r.difficulty, "very easy");
        let hard = readability(
            "Notwithstanding considerable institutional heterogeneity, comparative organisational \
             investigations demonstrate systematically identifiable administrative characteristics.",
        )
        .unwrap();
        assert_eq!(hard.sentences, 1);
        assert!(hard.flesch_reading_ease < 0.0, "{hard:?}");
        assert!(hard.flesch_kincaid_grade > 18.0, "{hard:?}");
        assert_eq!(hard.difficulty, "very difficult");
    }

    #[tokio::test]
    async fn executor() {
        let v = MeasureReadability
            .execute(ctx(), json!({ "text": "Go now. Run!" }))
            .await
            .unwrap();
        assert_eq!((v["sentences"].as_u64(), v["words"].as_u64()), (Some(2), Some(3)));
        for (params, want) in [
            (json!({ "text": "42 ... 7" }), "text has no words"),
            (json!({ "text": "" }), "text must not be empty"),
            (json!({ "text": "a", "lang": "en" }), "unknown field `lang`"),
        ] {
            let err = MeasureReadability.execute(ctx(), params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(
            MeasureReadability.execute(c, json!({ "text": "Hi." })).await,
            Err(ExecError::Cancelled)
        );
    }
}
