//! Offline sentiment of English text from a hand-written word lexicon (weights -3..3, in the
//! manner of AFINN), with simple negation (`not good`, `isn't bad`, `never helpful`) and
//! intensifiers (`very good`). The sum is squashed into -1..1 the way VADER does.

use std::collections::HashMap;
use std::sync::OnceLock;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::blocking::run_blocking;
use crate::support::params_schema as schema;
use crate::support::round::round3;
use crate::support::words::{check_text, words};

/// Words after a negator that it still flips (within one clause).
const NEGATION_SCOPE: usize = 3;

/// VADER's normalisation constant: score = sum / sqrt(sum² + ALPHA).
const ALPHA: f64 = 15.0;

/// Scores within this distance of 0 are `neutral`.
const NEUTRAL_BAND: f64 = 0.05;

/// Most matched words listed in a result.
const MAX_MATCHES: usize = 50;

/// `intelligence.text.sentiment`: `{"text": "..."}` -> [`Sentiment`].
pub struct AnalyzeSentiment;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SentimentParams {
    text: String,
}

/// What [`AnalyzeSentiment`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    /// -1 (very negative) to 1 (very positive).
    pub score: f64,
    /// `positive`, `negative` or `neutral` (|score| < 0.05).
    pub label: String,
    /// Words that counted positively (after negation).
    pub positive: usize,
    /// Words that counted negatively (after negation).
    pub negative: usize,
    /// Words in the text.
    pub words: usize,
    /// The first matched words with the weight they contributed, in text order.
    pub matches: Vec<Match>,
}

/// A lexicon word found in the text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The word as found (lower case).
    pub word: String,
    /// Its lexicon weight after negation and intensifiers.
    pub weight: f64,
}

#[async_trait]
impl Executor for AnalyzeSentiment {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["text"],
            &[("text", schema::text("the text (English)"))],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let found = schema::record(&[
            ("word", schema::string("the word")),
            (
                "weight",
                schema::real("its contribution, negative for negative words"),
            ),
        ]);
        let mut matches = schema::array(found, "lexicon words found, in text order");
        matches["maxItems"] = MAX_MATCHES.into();
        Some(schema::record(&[
            (
                "score",
                schema::real_range(-1.0, 1.0, "-1 = negative, 1 = positive"),
            ),
            (
                "label",
                schema::one_of(&["positive", "negative", "neutral"], "the score in a word"),
            ),
            ("positive", schema::count("positive words")),
            ("negative", schema::count("negative words")),
            ("words", schema::count("words")),
            ("matches", matches),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: SentimentParams = decode_params(&params)?;
        check_text("text", &p.text)?;
        let s = run_blocking(&ctx, "sentiment analysis", move |_| Ok(sentiment(&p.text))).await?;
        serde_json::to_value(s).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// Scores the sentiment of `text`.
pub fn sentiment(text: &str) -> Sentiment {
    let lexicon = lexicon();
    let (mut sum, mut positive, mut negative, mut total) = (0.0, 0, 0, 0);
    let mut matches = Vec::new();
    // Negation does not cross punctuation: "not bad, just slow" flips only "bad".
    for clause in text.split(|c: char| ".,;:!?()\n".contains(c)) {
        let mut negated_for = 0usize;
        let mut boost = 1.0;
        for w in words(clause) {
            total += 1;
            if is_negator(&w) {
                negated_for = NEGATION_SCOPE;
                continue;
            }
            if let Some(b) = intensity(&w) {
                boost = b;
                continue;
            }
            if let Some(&base) = lexicon.get(w.as_str()) {
                let sign = if negated_for > 0 { -1.0 } else { 1.0 };
                let weight = f64::from(base) * boost * sign;
                sum += weight;
                if weight > 0.0 {
                    positive += 1
                } else {
                    negative += 1
                }
                if matches.len() < MAX_MATCHES {
                    matches.push(Match { word: w, weight });
                }
            }
            boost = 1.0;
            negated_for = negated_for.saturating_sub(1);
        }
    }
    let score = sum / (sum * sum + ALPHA).sqrt();
    let label = match score {
        s if s >= NEUTRAL_BAND => "positive",
        s if s <= -NEUTRAL_BAND => "negative",
        _ => "neutral",
    };
    Sentiment {
        score: round3(score),
        label: label.into(),
        positive,
        negative,
        words: total,
        matches,
    }
}

fn is_negator(w: &str) -> bool {
    w.ends_with("n't")
        || matches!(
            w,
            "not"
                | "no"
                | "never"
                | "nothing"
                | "nobody"
                | "none"
                | "neither"
                | "nor"
                | "without"
                | "hardly"
                | "cannot"
                | "cant"
                | "dont"
                | "isnt"
                | "wasnt"
                | "doesnt"
                | "didnt"
        )
}

/// The multiplier an intensifier or diminisher applies to the next sentiment word.
fn intensity(w: &str) -> Option<f64> {
    match w {
        "very" | "really" | "extremely" | "incredibly" | "absolutely" | "totally" | "so" | "truly"
        | "super" | "highly" => Some(1.5),
        "slightly" | "somewhat" | "barely" | "kinda" | "fairly" => Some(0.5),
        _ => None,
    }
}

/// Word -> weight, built once from [`LEXICON`].
fn lexicon() -> &'static HashMap<&'static str, i8> {
    static MAP: OnceLock<HashMap<&'static str, i8>> = OnceLock::new();
    MAP.get_or_init(|| LEXICON.iter().copied().collect())
}

/// Sentiment words and their weights, -3 (very negative) to 3 (very positive).
#[rustfmt::skip]
const LEXICON: &[(&str, i8)] = &[
    // positive
    ("amazing", 3), ("awesome", 3), ("best", 3), ("beautiful", 3), ("brilliant", 3), ("delighted", 3),
    ("excellent", 3), ("exciting", 3), ("excited", 3), ("fantastic", 3), ("happy", 3), ("impressive", 3),
    ("impressed", 3), ("love", 3), ("loved", 3), ("loves", 3), ("lovely", 3), ("outstanding", 3),
    ("perfect", 3), ("superb", 3), ("wonderful", 3), ("great", 3), ("appreciate", 2), ("better", 2),
    ("comfortable", 2), ("efficient", 2), ("elegant", 2), ("enjoy", 2), ("enjoyed", 2), ("favorite", 2),
    ("favourite", 2), ("friendly", 2), ("fun", 2), ("glad", 2), ("good", 2), ("helpful", 2),
    ("improved", 2), ("like", 2), ("liked", 2), ("nice", 2), ("pleasant", 2), ("pleased", 2),
    ("positive", 2), ("praise", 2), ("recommend", 2), ("recommended", 2), ("reliable", 2), ("robust", 2),
    ("satisfied", 2), ("success", 2), ("successful", 2), ("thank", 2), ("thanks", 2), ("useful", 2),
    ("win", 2), ("calm", 1), ("clean", 1), ("cool", 1), ("correct", 1), ("easy", 1), ("fast", 1),
    ("fine", 1), ("fixed", 1), ("hope", 1), ("improve", 1), ("safe", 1), ("secure", 1), ("smooth", 1),
    ("solid", 1), ("stable", 1), ("clear", 1), ("quick", 1), ("works", 1), ("worth", 1),
    // negative
    ("angry", -3), ("awful", -3), ("bad", -3), ("disgusting", -3), ("hate", -3), ("hated", -3),
    ("horrible", -3), ("nasty", -3), ("stupid", -3), ("sucks", -3), ("terrible", -3), ("ugly", -3),
    ("useless", -3), ("worst", -3), ("annoyed", -2), ("annoying", -2), ("boring", -2), ("broken", -2),
    ("buggy", -2), ("complain", -2), ("complaint", -2), ("confusing", -2), ("crash", -2),
    ("crashed", -2), ("crashes", -2), ("dangerous", -2), ("disappointed", -2), ("disappointing", -2),
    ("disappointment", -2), ("dislike", -2), ("fail", -2), ("failed", -2), ("fails", -2),
    ("failure", -2), ("fear", -2), ("frustrated", -2), ("frustrating", -2), ("insecure", -2),
    ("loss", -2), ("mess", -2), ("messy", -2), ("pain", -2), ("painful", -2), ("poor", -2),
    ("poorly", -2), ("regret", -2), ("sad", -2), ("scary", -2), ("unhappy", -2), ("unreliable", -2),
    ("unstable", -2), ("upset", -2), ("waste", -2), ("wasted", -2), ("worried", -2), ("worse", -2),
    ("wrong", -2), ("bug", -1), ("confused", -1), ("delay", -1), ("delayed", -1), ("difficult", -1),
    ("error", -1), ("errors", -1), ("expensive", -1), ("issue", -1), ("issues", -1), ("late", -1),
    ("lose", -1), ("lost", -1), ("missing", -1), ("problem", -1), ("problems", -1), ("slow", -1),
    ("ugh", -1), ("unfortunately", -1),
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    #[test]
    fn polarity_and_counts() {
        let s = sentiment("I love this tool. The docs are great and setup was easy!");
        assert_eq!((s.label.as_str(), s.positive, s.negative), ("positive", 3, 0));
        assert!(s.score > 0.8, "{s:?}");
        let s = sentiment("The service was terrible, slow and buggy.");
        assert_eq!((s.label.as_str(), s.positive, s.negative), ("negative", 0, 3));
        assert!(s.score < -0.8, "{s:?}");
        let s = sentiment("The table is made of wood.");
        assert_eq!((s.label.as_str(), s.score, s.words), ("neutral", 0.0, 6));
        let mixed = sentiment("Good ideas, bad execution.");
        assert_eq!((mixed.positive, mixed.negative), (1, 1));
        assert!(mixed.score < 0.0);
    }

    #[test]
    fn negation_and_intensity() {
        assert_eq!(sentiment("This is not good.").label, "negative");
        assert_eq!(sentiment("It isn't bad at all").label, "positive");
        assert_eq!(sentiment("never really helpful").matches[0].weight, -3.0);
        // Negation stops at punctuation and after a few words.
        let s = sentiment("Not fast, but reliable.");
        assert_eq!(
            s.matches.iter().map(|m| m.weight).collect::<Vec<_>>(),
            vec![-1.0, 2.0]
        );
        let s = sentiment("no doubt about the whole thing being good");
        assert_eq!(s.matches[0].weight, 2.0);
        assert!(sentiment("very good").score > sentiment("good").score);
        assert!(sentiment("slightly bad").score > sentiment("bad").score);
    }

    #[tokio::test]
    async fn executor() {
        let v = AnalyzeSentiment
            .execute(ctx(), json!({ "text": "What a wonderful day" }))
            .await
            .unwrap();
        assert_eq!(v["label"], "positive");
        assert_eq!(v["matches"], json!([{ "word": "wonderful", "weight": 3.0 }]));
        for (params, want) in [
            (json!({ "text": " " }), "must not be empty"),
            (
                json!({ "text": "ok", "language": "en" }),
                "unknown field `language`",
            ),
        ] {
            let err = AnalyzeSentiment.execute(ctx(), params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(
            AnalyzeSentiment.execute(c, json!({ "text": "good" })).await,
            Err(ExecError::Cancelled)
        );
    }
}
