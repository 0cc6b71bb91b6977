//! Built-in executors, with the task type and worker kind each is meant to be routed to.
//!
//! | name             | suggested task type (worker kind)                  | what it does |
//! |------------------|----------------------------------------------------|--------------|
//! | `echo`           | `system.debug.echo` (monitor)                      | returns its params (diagnostics) |
//! | `sleep`          | `system.debug.sleep` (monitor)                     | sleeps `ms` with progress, honours cancel (diagnostics) |
//! | `fail`           | `system.debug.fail` (monitor)                      | fails with a message, retryable or not (diagnostics) |
//! | `panic`          | `system.debug.panic` (monitor)                     | panics, killing its worker (diagnostics) |
//! | `delegate`       | `system.debug.delegate` (monitor)                  | runs a sub-task and returns its result (diagnostics) |
//! | `summarize`      | `intelligence.text.summarize` (writer)             | extractive summary of `text` |
//! | `keywords`       | `intelligence.text.keywords` (analytics)           | most frequent words of `text` that are not stop words |
//! | `language`       | `intelligence.text.language` (analytics)           | en/de/fr/es/it/pt/nl with a confidence |
//! | `readability`    | `intelligence.text.readability` (analytics)        | Flesch reading ease and Flesch–Kincaid grade |
//! | `sentiment`      | `intelligence.text.sentiment` (analytics)          | lexicon score -1..1 with negation |
//! | `code_metrics`   | `intelligence.code.metrics` (coder)                | line classes, language, cyclomatic complexity |
//! | `describe_image` | `intelligence.research.describe_image` (research)  | a sentence about an image, from a delegated `multimodal.vision.analyze` |
//! | `image_analyze`  | `multimodal.vision.analyze` (vision)               | PNG/JPEG size, colours, brightness, perceptual hash |
//! | `thumbnail`      | `multimodal.vision.thumbnail` (vision)             | PNG/JPEG scaled to fit `max_side`, as a base64 PNG |
//! | `audio_analyze`  | `multimodal.audio.analyze` (audio)                 | WAV duration, loudness in dBFS, silent stretches; MP3 duration and bitrate |
//!
//! All of them work offline. The ones that decode or scan input run it on the blocking pool
//! ([`blocking::run_blocking`]) and stop at the next checkpoint when the task is cancelled.

pub mod audio_analyze;
pub mod base64;
pub mod blocking;
pub mod code_metrics;
mod debug;
pub mod describe_image;
pub mod image_analyze;
pub mod keywords;
pub mod language;
pub mod languages;
pub mod mp3;
pub mod params_schema;
pub mod readability;
pub mod sentiment;
mod summarize;
#[cfg(test)]
mod test_support;
pub mod text;
pub mod thumbnail;

use std::sync::Arc;

use crate::ExecutorRegistry;

pub use audio_analyze::AudioAnalyze;
pub use code_metrics::MeasureCode;
pub use debug::{Delegating, Echo, Fail, Panic, Sleep};
pub use describe_image::DescribeImage;
pub use image_analyze::ImageAnalyze;
pub use keywords::Keywords;
pub use language::DetectLanguage;
pub use readability::MeasureReadability;
pub use sentiment::AnalyzeSentiment;
pub use summarize::Summarize;
pub use thumbnail::Thumbnail;

/// Registers every built-in executor under its name.
pub fn register_builtin(r: &mut ExecutorRegistry) {
    r.register("echo", Arc::new(Echo));
    r.register("sleep", Arc::new(Sleep));
    r.register("fail", Arc::new(Fail));
    r.register("panic", Arc::new(Panic));
    r.register("delegate", Arc::new(Delegating));
    r.register("summarize", Arc::new(Summarize));
    r.register("image_analyze", Arc::new(ImageAnalyze::default()));
    r.register("describe_image", Arc::new(DescribeImage));
    r.register("language", Arc::new(DetectLanguage));
    r.register("keywords", Arc::new(Keywords));
    r.register("readability", Arc::new(MeasureReadability));
    r.register("sentiment", Arc::new(AnalyzeSentiment));
    r.register("code_metrics", Arc::new(MeasureCode));
    r.register("audio_analyze", Arc::new(AudioAnalyze));
    r.register("thumbnail", Arc::new(Thumbnail::default()));
}

/// Rounds to three decimals: scores and shares in results need no more, and stay readable.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::ExecutorRegistry;
    use crate::executors::test_support::ctx;

    #[test]
    fn every_builtin_is_registered() {
        let r = ExecutorRegistry::builtin();
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            vec![
                "audio_analyze",
                "code_metrics",
                "delegate",
                "describe_image",
                "echo",
                "fail",
                "image_analyze",
                "keywords",
                "language",
                "panic",
                "readability",
                "sentiment",
                "sleep",
                "summarize",
                "thumbnail",
            ]
        );
    }

    /// A value of the type a property schema asks for.
    fn sample(schema: &Value) -> Value {
        if let Some(values) = schema["enum"].as_array() {
            return values[0].clone();
        }
        match schema["type"].as_str() {
            Some("integer") | Some("number") => schema["minimum"].clone(),
            _ => json!("x"),
        }
    }

    /// Each published schema names exactly the fields its executor accepts: an unnamed field is
    /// refused, every named one is known, and the required ones are required.
    #[tokio::test]
    async fn schemas_agree_with_the_executors() {
        let r = ExecutorRegistry::builtin();
        let mut with_schema = Vec::new();
        for name in r.names() {
            let exec = r.get(name).unwrap();
            let Some(schema) = exec.params_schema() else {
                continue;
            };
            with_schema.push(name);
            assert_eq!(schema["type"], "object", "{name}");
            assert_eq!(schema["additionalProperties"], false, "{name}");
            let props = schema["properties"].as_object().unwrap();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let all: serde_json::Map<String, Value> =
                props.iter().map(|(k, v)| (k.clone(), sample(v))).collect();
            let err = exec
                .execute(ctx(), json!({ "not_a_param": 1 }))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown field `not_a_param`"), "{name}: {err}");
            for (field, _) in props {
                let err = exec
                    .execute(ctx(), json!({ field: all[field] }))
                    .await
                    .err()
                    .map(|e| e.to_string());
                let err = err.unwrap_or_default();
                assert!(!err.contains("unknown field"), "{name}.{field}: {err}");
                if !required.contains(&field.as_str()) {
                    assert!(!err.contains(&format!("`{field}`")), "{name}.{field}: {err}");
                }
            }
            for field in &required {
                assert!(
                    props.contains_key(*field),
                    "{name}: required {field} has no schema"
                );
                let mut without = all.clone();
                without.remove(*field);
                let err = exec
                    .execute(ctx(), Value::Object(without))
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains(&format!("missing field `{field}`")),
                    "{name}.{field}: {err}"
                );
            }
        }
        assert_eq!(with_schema.len(), 10, "{with_schema:?}");
    }
}
