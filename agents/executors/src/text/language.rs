//! Offline language detection among the [`lexicon`](crate::support::lexicon) table (en, de, fr,
//! es, it, pt, nl) from two signals: the share of the text's words that are a language's stop words,
//! and the cosine similarity of its character trigrams to the language's profile.

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::blocking::run_blocking;
use crate::support::lexicon::{LANGUAGES, cosine, profiles, trigram_profile};
use crate::support::params_schema as schema;
use crate::support::round::round3;
use crate::support::words::{check_text, words};

/// Weight of the trigram similarity against the stop-word share in a language's score.
const TRIGRAM_WEIGHT: f64 = 0.5;

/// Best scores below this mean no known language fits (another script, code, noise): `und`.
const MIN_SCORE: f64 = 0.05;

/// Words below which the confidence is scaled down: a few words rarely settle a language.
const CONFIDENT_WORDS: f64 = 12.0;

/// `intelligence.text.language`: `{"text": "..."}` -> [`Detection`].
pub struct DetectLanguage;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LanguageParams {
    text: String,
}

/// What [`DetectLanguage`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// ISO 639-1 code of the best match, or `und` when the text has no words to go by or no
    /// known language scores at least 0.05 (e.g. another script).
    pub language: String,
    /// English name of the language (`Undetermined` for `und`).
    pub name: String,
    /// 0-1: how far the best score is ahead of the runner-up, scaled down for short texts.
    pub confidence: f64,
    /// Every known language with its score (stop-word share + half the trigram similarity),
    /// best first.
    pub candidates: Vec<Candidate>,
}

/// One language's score in a [`Detection`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// ISO 639-1 code.
    pub language: String,
    /// Higher is more likely; comparable only within one detection.
    pub score: f64,
}

#[async_trait]
impl Executor for DetectLanguage {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(&["text"], &[("text", schema::text("the text"))]))
    }

    fn result_schema(&self) -> Option<Value> {
        let codes: Vec<&str> = LANGUAGES.iter().map(|l| l.code).collect();
        let mut detected = codes.clone();
        detected.push("und");
        let candidate = schema::record(&[
            ("language", schema::one_of(&codes, "a language code")),
            ("score", schema::real("how well the text fits it")),
        ]);
        Some(schema::record(&[
            (
                "language",
                schema::one_of(&detected, "the language code, `und` when undetermined"),
            ),
            ("name", schema::string("its English name")),
            (
                "confidence",
                schema::real_range(0.0, 1.0, "0 = a guess, 1 = sure"),
            ),
            (
                "candidates",
                schema::array(candidate, "every language, best first"),
            ),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: LanguageParams = decode_params(&params)?;
        check_text("text", &p.text)?;
        let d = run_blocking(&ctx, "language detection", move |_| Ok(detect(&p.text))).await?;
        serde_json::to_value(d).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// Detects the language of `text`.
pub fn detect(text: &str) -> Detection {
    // Elided articles (`l'`, `d'`, `dell'`) are strong hints, so both sides of an apostrophe count.
    let tokens: Vec<String> = words(text)
        .flat_map(|w| w.split('\'').map(str::to_string).collect::<Vec<_>>())
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_numeric()))
        .collect();
    let profile = trigram_profile(text);
    let mut scored: Vec<(usize, f64)> = LANGUAGES
        .iter()
        .zip(profiles())
        .enumerate()
        .map(|(i, (lang, lang_profile))| {
            let hits = tokens.iter().filter(|t| lang.is_stopword(t)).count();
            let share = hits as f64 / tokens.len().max(1) as f64;
            (i, share + TRIGRAM_WEIGHT * cosine(&profile, lang_profile))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (best, top) = scored[0];
    if top < MIN_SCORE {
        return undetermined(&scored);
    }
    let runner_up = scored.get(1).map_or(0.0, |s| s.1);
    let margin = (top - runner_up) / top;
    let length_factor = (tokens.len() as f64 / CONFIDENT_WORDS).min(1.0).sqrt();
    Detection {
        language: LANGUAGES[best].code.into(),
        name: LANGUAGES[best].name.into(),
        confidence: round3((margin * 2.0).min(1.0) * length_factor),
        candidates: candidates(&scored),
    }
}

/// The answer when no known language fits.
fn undetermined(scored: &[(usize, f64)]) -> Detection {
    Detection {
        language: "und".into(),
        name: "Undetermined".into(),
        confidence: 0.0,
        candidates: candidates(scored),
    }
}

fn candidates(scored: &[(usize, f64)]) -> Vec<Candidate> {
    scored
        .iter()
        .map(|&(i, score)| Candidate {
            language: LANGUAGES[i].code.into(),
            score: round3(score),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    /// Texts unlike the profile samples, one per language.
    const TEXTS: &[(&str, &str)] = &[
        (
            "en",
            "The committee met on Tuesday to discuss the budget for next year. Most members agreed \
             that the new library should be built before the end of the summer.",
        ),
        (
            "de",
            "Der Ausschuss hat sich am Dienstag getroffen, um über den Haushalt für das nächste Jahr \
             zu sprechen. Die meisten Mitglieder waren sich einig, dass die neue Bibliothek vor dem \
             Ende des Sommers gebaut werden soll.",
        ),
        (
            "fr",
            "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine. La plupart des \
             membres étaient d'accord pour que la nouvelle bibliothèque soit construite avant la fin \
             de l'été.",
        ),
        (
            "es",
            "El comité se reunió el martes para hablar del presupuesto del próximo año. La mayoría de \
             los miembros estuvo de acuerdo en que la nueva biblioteca se construya antes del final \
             del verano.",
        ),
        (
            "it",
            "Il comitato si è riunito martedì per discutere il bilancio del prossimo anno. La maggior \
             parte dei membri era d'accordo che la nuova biblioteca venga costruita prima della fine \
             dell'estate.",
        ),
        (
            "pt",
            "O comitê se reuniu na terça-feira para discutir o orçamento do próximo ano. A maioria dos \
             membros concordou que a nova biblioteca deve ser construída antes do fim do verão.",
        ),
        (
            "nl",
            "De commissie kwam dinsdag bijeen om de begroting voor volgend jaar te bespreken. De meeste \
             leden waren het erover eens dat de nieuwe bibliotheek voor het einde van de zomer gebouwd \
             moet worden.",
        ),
    ];

    #[test]
    fn detects_short_sentences() {
        let cases: &[(&str, &str)] = &[
            ("en", "I think we should go home now."),
            ("en", "Please send me the report by Friday."),
            ("de", "Ich glaube, wir sollten jetzt nach Hause gehen."),
            ("de", "Bitte schicken Sie mir den Bericht bis Freitag."),
            ("fr", "Je pense que nous devrions rentrer maintenant."),
            ("fr", "Merci de m'envoyer le rapport avant vendredi."),
            ("es", "Creo que deberíamos irnos a casa ahora."),
            ("es", "Por favor, envíame el informe antes del viernes."),
            ("it", "Penso che dovremmo andare a casa adesso."),
            ("it", "Per favore mandami il rapporto entro venerdì."),
            ("pt", "Acho que devemos ir para casa agora."),
            ("pt", "Por favor, envie-me o relatório até sexta-feira."),
            ("nl", "Ik denk dat we nu naar huis moeten gaan."),
            ("nl", "Stuur me alsjeblieft het rapport voor vrijdag."),
            ("pt", "O gato está dormindo no sofá da sala."),
            ("es", "El gato está durmiendo en el sofá de la sala."),
            ("it", "Il gatto sta dormendo sul divano del soggiorno."),
        ];
        for (want, text) in cases {
            let d = detect(text);
            assert_eq!(d.language, *want, "{text}: {:?}", &d.candidates[..2]);
        }
    }
    #[test]
    fn detects_each_language() {
        for (code, text) in TEXTS {
            let d = detect(text);
            assert_eq!(d.language, *code, "{text}: {:?}", d.candidates);
            assert!(
                d.confidence >= 0.3,
                "{code}: confidence {} {:?}",
                d.confidence,
                d.candidates
            );
            assert_eq!(d.candidates.len(), 7);
            assert_eq!(d.candidates[0].language, *code);
        }
    }

    #[test]
    fn short_or_empty_text_is_less_certain() {
        let long = detect(TEXTS[0].1);
        let short = detect("the budget");
        assert_eq!(short.language, "en");
        assert!(
            short.confidence < long.confidence,
            "{} vs {}",
            short.confidence,
            long.confidence
        );
        for other in ["12 345 !!", "这是一个测试句子", "Это просто тест"] {
            let d = detect(other);
            assert_eq!((d.language.as_str(), d.confidence), ("und", 0.0), "{other}");
        }
    }

    #[tokio::test]
    async fn executor_params_and_cancel() {
        let v = DetectLanguage
            .execute(ctx(), json!({ "text": TEXTS[6].1 }))
            .await
            .unwrap();
        assert_eq!(v["language"], "nl");
        assert_eq!(v["name"], "Dutch");
        for params in [
            json!({ "text": "" }),
            json!({ "text": "x", "lang": "en" }),
            json!({}),
        ] {
            let err = DetectLanguage.execute(ctx(), params).await.unwrap_err();
            assert!(matches!(err, ExecError::InvalidParams(_)), "{err:?}");
        }
        let c = ctx();
        c.cancel.cancel();
        assert_eq!(
            DetectLanguage.execute(c, json!({ "text": "hello" })).await,
            Err(ExecError::Cancelled)
        );
    }
}
