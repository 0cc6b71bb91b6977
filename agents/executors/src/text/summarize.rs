//! Offline extractive summarisation: pick the sentences whose words are most frequent in the
//! text (stop words excluded), keep them in their original order.

use std::collections::HashMap;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::blocking::run_blocking;
use crate::support::lexicon::english;
use crate::support::params_schema as schema;
use crate::support::words::{check_text, split_sentences, words};

/// `intelligence.text.summarize`: `{"text": "...", "sentences": 3}` ->
/// `{"summary": "...", "sentences": [...], "source_sentences": n, "source_words": n}`.
pub struct Summarize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummarizeParams {
    text: String,
    #[serde(default = "default_sentences")]
    sentences: usize,
}

fn default_sentences() -> usize {
    3
}

#[async_trait]
impl Executor for Summarize {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["text"],
            &[
                ("text", schema::text("the text")),
                (
                    "sentences",
                    schema::integer(1, 100, 3, "sentences in the summary"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("summary", schema::string("the picked sentences, joined")),
            (
                "sentences",
                schema::array(schema::string("a sentence"), "the picked sentences, in order"),
            ),
            ("source_sentences", schema::count("sentences in the text")),
            ("source_words", schema::count("words in the text")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: SummarizeParams = decode_params(&params)?;
        check_text("text", &p.text)?;
        if !(1..=100).contains(&p.sentences) {
            return Err(ExecError::InvalidParams("sentences must be 1-100".into()));
        }
        run_blocking(&ctx, "summarising", move |_| {
            let picked = summarize(&p.text, p.sentences);
            Ok(json!({
                "summary": picked.join(" "),
                "sentences": picked,
                "source_sentences": split_sentences(&p.text).len(),
                "source_words": words(&p.text).count(),
            }))
        })
        .await
    }
}

/// Returns at most `n` sentences of `text`, the highest scoring, in their original order.
pub fn summarize(text: &str, n: usize) -> Vec<String> {
    let sentences = split_sentences(text);
    let mut freq: HashMap<String, f64> = HashMap::new();
    for w in words(text).filter(|w| !english().is_stopword(w)) {
        *freq.entry(w).or_default() += 1.0;
    }
    let max = freq.values().cloned().fold(1.0, f64::max);
    let mut scored: Vec<(usize, f64)> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ws: Vec<String> = words(s).collect();
            let score: f64 = ws.iter().filter_map(|w| freq.get(w)).map(|f| f / max).sum();
            // Normalise by length so long sentences do not always win; +1 damps tiny ones.
            (i, score / (ws.len() as f64 + 1.0).sqrt())
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut keep: Vec<usize> = scored.into_iter().take(n).map(|(i, _)| i).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| sentences[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_central_sentences_in_order() {
        let text = "Actors supervise actors. The weather was nice. Supervisors restart failed actors quickly. \
                    Lunch was pasta. Actors and supervisors form a tree of actors.";
        let s = summarize(text, 2);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|x| x.to_lowercase().contains("actors")), "{s:?}");
        let pos: Vec<usize> = s.iter().map(|x| text.find(x.as_str()).unwrap()).collect();
        assert!(pos[0] < pos[1]);
    }

    #[tokio::test]
    async fn executor_checks_params_and_cancel() {
        use crate::support::test_support::ctx;
        let v = Summarize
            .execute(ctx(), json!({ "text": "One. Two two. Three.", "sentences": 1 }))
            .await
            .unwrap();
        assert_eq!(
            (v["source_sentences"].as_u64(), v["source_words"].as_u64()),
            (Some(3), Some(4))
        );
        let err = Summarize
            .execute(ctx(), json!({ "text": "x", "sentences": 0 }))
            .await
            .unwrap_err();
        assert_eq!(err, ExecError::InvalidParams("sentences must be 1-100".into()));
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(
            Summarize.execute(c, json!({ "text": "x" })).await,
            Err(ExecError::Cancelled)
        );
    }

    #[test]
    fn short_text_is_returned_whole() {
        assert_eq!(
            summarize("Only one sentence here", 3),
            vec!["Only one sentence here".to_string()]
        );
    }
}
