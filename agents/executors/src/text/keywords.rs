//! Offline keyword extraction by term frequency: the words a text uses most, leaving out the
//! stop words of its language (given, or detected by [`language`](super::language)), numbers and
//! words shorter than three letters.

use std::collections::HashMap;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::language::detect;
use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::lexicon::{self, Language};
use crate::support::params_schema as schema;
use crate::support::round::round3;
use crate::support::words::{check_text, strip_elision, words};

/// Most keywords one task may ask for.
const MAX_TOP: usize = 100;

/// Shortest word that can be a keyword, in characters.
const MIN_CHARS: usize = 3;

/// `intelligence.text.keywords`: `{"text": "...", "top": 10, "language": "en"}` ->
/// `{"language": "en", "keywords": [{"word", "count", "score"}], "words": n, "distinct": n}`.
/// `language` is optional (detected when absent); `score` is the count relative to the top
/// keyword's (1.0 for the first).
pub struct Keywords;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordsParams {
    text: String,
    #[serde(default = "default_top")]
    top: usize,
    #[serde(default)]
    language: Option<String>,
}

fn default_top() -> usize {
    10
}

/// One extracted keyword.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keyword {
    /// The word, lower case.
    pub word: String,
    /// How often it occurs.
    pub count: usize,
    /// `count` relative to the most frequent keyword's, 0-1.
    pub score: f64,
}

#[async_trait]
impl Executor for Keywords {
    fn params_schema(&self) -> Option<Value> {
        let codes: Vec<&str> = lexicon::LANGUAGES.iter().map(|l| l.code).collect();
        Some(schema::object(
            &["text"],
            &[
                ("text", schema::text("the text")),
                ("top", schema::integer(1, MAX_TOP as i64, 10, "how many keywords")),
                (
                    "language",
                    schema::one_of(&codes, "its language (detected when absent)"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let codes: Vec<&str> = lexicon::LANGUAGES.iter().map(|l| l.code).collect();
        let keyword = schema::record(&[
            ("word", schema::text("the word, lower case")),
            ("count", schema::count("how often it occurs")),
            ("score", schema::real("its weight, higher is more important")),
        ]);
        Some(schema::record(&[
            (
                "language",
                schema::one_of(&codes, "the language used for stop words"),
            ),
            ("keywords", schema::array(keyword, "best first")),
            ("words", schema::count("words in the text")),
            ("distinct", schema::count("distinct candidate words")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: KeywordsParams = decode_params(&params)?;
        check_text("text", &p.text)?;
        if !(1..=MAX_TOP).contains(&p.top) {
            return Err(ExecError::InvalidParams(format!("top must be 1-{MAX_TOP}")));
        }
        let given = match p.language.as_deref() {
            None => None,
            Some(code) => Some(lexicon::by_code(code).ok_or_else(|| {
                ExecError::InvalidParams(format!(
                    "language {code:?} is not known (known: {})",
                    lexicon::codes()
                ))
            })?),
        };
        run_blocking(&ctx, "keyword extraction", move |cancel| {
            let lang = match given {
                Some(l) => l,
                None => lexicon::by_code(&detect(&p.text).language).unwrap_or(lexicon::english()),
            };
            checkpoint(cancel)?;
            let (keywords, total, distinct) = extract(&p.text, lang, p.top);
            Ok(json!({
                "language": lang.code,
                "keywords": keywords,
                "words": total,
                "distinct": distinct,
            }))
        })
        .await
    }
}

/// The `top` keywords of `text` in `lang`, most frequent first (ties alphabetically), with the
/// number of words and of distinct candidate words.
pub fn extract(text: &str, lang: &Language, top: usize) -> (Vec<Keyword>, usize, usize) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for w in words(text) {
        total += 1;
        let w = strip_elision(&w);
        if w.chars().count() < MIN_CHARS
            || lang.is_stopword(w)
            || w.chars().all(|c| c.is_numeric() || c == '\'')
        {
            continue;
        }
        *counts.entry(w.to_string()).or_default() += 1;
    }
    let distinct = counts.len();
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let max = ranked.first().map_or(1, |r| r.1) as f64;
    let keywords = ranked
        .into_iter()
        .take(top)
        .map(|(word, count)| Keyword {
            word,
            count,
            score: round3(count as f64 / max),
        })
        .collect();
    (keywords, total, distinct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::ctx;

    const TEXT: &str = "Supervisors restart workers. A supervisor owns pools of workers, and workers run \
                        tasks. When workers fail, the supervisor restarts them; tasks are retried.";

    fn words_of(v: &Value) -> Vec<&str> {
        v["keywords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["word"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn ranks_content_words() {
        let (k, total, _) = extract(TEXT, lexicon::english(), 3);
        assert_eq!(total, 23);
        assert_eq!(
            k[0],
            Keyword {
                word: "workers".into(),
                count: 4,
                score: 1.0
            }
        );
        assert_eq!(k[1].word, "supervisor");
        assert_eq!(k[1].score, 0.5);
        assert_eq!(k[2].word, "tasks");
    }

    #[tokio::test]
    async fn detects_the_language_for_its_stop_words() {
        let fr = "L'orchestrateur distribue les tâches aux superviseurs. Les superviseurs gèrent les \
                  travailleurs et redémarrent les travailleurs en échec. Les tâches sont durables.";
        let v = Keywords
            .execute(ctx(), json!({ "text": fr, "top": 3 }))
            .await
            .unwrap();
        assert_eq!(v["language"], "fr");
        assert_eq!(words_of(&v), vec!["superviseurs", "travailleurs", "tâches"]);
        // Told the wrong language, French stop words become keywords.
        let v = Keywords
            .execute(ctx(), json!({ "text": fr, "language": "en" }))
            .await
            .unwrap();
        assert_eq!(words_of(&v)[0], "les");
    }

    #[tokio::test]
    async fn params_are_checked() {
        for (params, want) in [
            (json!({ "text": TEXT, "top": 0 }), "top must be 1-100"),
            (
                json!({ "text": TEXT, "language": "xx" }),
                "\"xx\" is not known (known: en, de",
            ),
            (json!({ "text": "  " }), "text must not be empty"),
            (json!({ "text": TEXT, "n": 3 }), "unknown field `n`"),
        ] {
            let err = Keywords.execute(ctx(), params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(
            Keywords.execute(c, json!({ "text": TEXT })).await,
            Err(ExecError::Cancelled)
        );
        let v = Keywords
            .execute(ctx(), json!({ "text": "a 1 22 of it" }))
            .await
            .unwrap();
        assert_eq!(v["keywords"], json!([]));
    }
}
