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
//! | `llm`            | `intelligence.llm.chat` (writer)                   | a chat with an OpenAI-compatible model, with fallbacks, usage, cache, JSON replies |
//! | `chart`          | `multimodal.artist.chart` (artist)                 | bar or line chart of a series, as a base64 PNG |
//! | `fuse`           | `multimodal.fusion.combine` (fusion)               | runs up to 16 sub-tasks concurrently and combines their results |
//! | `probe`          | `system.health.probe` (health)                     | HTTP/TCP/NATS health probe of an allow-listed target (configured: `[executors.health]`) |
//! | `exec`           | `system.exec.run` (exec: its own pool)             | an allow-listed command with time, memory, output and network limits ([`exec`]) |
//! | `http`           | `system.http.call` (monitor)                       | a configured webhook with retries and a circuit breaker ([`webhook`]) |
//! | `mcp`            | `system.mcp.call` (monitor)                        | calls a tool on a configured external MCP server (stdio or streamable HTTP) |
//! | `remote`         | any type the operator routes to it                 | runs the task on an external worker connected over gRPC ([`remote`]) |
//!
//! `llm`, `probe`, `exec`, `http`, `mcp` and `remote` call out (to a server or a command, set up under
//! `[executors]`); the rest work offline.
//! The ones that decode or scan input run it on the blocking pool
//! ([`blocking::run_blocking`]) and stop at the next checkpoint when the task is cancelled.

pub mod audio_analyze;
pub mod base64;
pub mod blocking;
pub mod chart;
pub mod code_metrics;
mod debug;
pub mod describe_image;
pub mod exec;
pub mod fusion;
pub mod health;
pub mod image_analyze;
pub mod keywords;
pub mod language;
pub mod languages;
pub mod llm;
pub mod mcp_client;
pub mod mp3;
pub mod params_schema;
pub mod readability;
pub mod remote;
pub mod sentiment;
mod summarize;
#[cfg(test)]
mod test_support;
pub mod text;
pub mod thumbnail;
pub mod webhook;

use std::sync::Arc;

use crate::ExecutorRegistry;

pub use audio_analyze::AudioAnalyze;
pub use chart::Chart;
pub use code_metrics::MeasureCode;
pub use debug::{Delegating, Echo, Fail, Panic, Sleep};
pub use describe_image::DescribeImage;
pub use fusion::Fuse;
pub use image_analyze::ImageAnalyze;
pub use keywords::Keywords;
pub use language::DetectLanguage;
pub use readability::MeasureReadability;
pub use sentiment::AnalyzeSentiment;
pub use summarize::Summarize;
pub use thumbnail::Thumbnail;

/// The `[executors]` config section: settings of the executors that call out (model providers,
/// commands, webhooks, MCP servers, probe targets). Everything defaults to "nothing configured";
/// the offline executors need no settings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// Model providers for `llm`.
    pub llm: llm::LlmConfig,
    /// Allow-listed commands for `exec`.
    pub exec: exec::ExecConfig,
    /// Webhooks for `http`.
    pub http: webhook::WebhookConfig,
    /// External MCP servers for `mcp`.
    pub mcp: mcp_client::McpClientConfig,
    /// Probe settings for `health`.
    pub health: health::HealthConfig,
    /// Remote workers for `remote`.
    pub remote: remote::RemoteConfig,
}

impl ExecutorsConfig {
    /// Every problem in the section, each as `executors.<path>: <what>`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = self.llm.validate();
        errs.extend(self.exec.validate());
        errs.extend(self.http.validate());
        errs.extend(self.mcp.validate());
        errs.extend(self.health.validate());
        errs.extend(self.remote.validate());
        errs.into_iter().map(|e| format!("executors.{e}")).collect()
    }
}

/// Registers every built-in executor, the configurable ones set up from `config`.
pub fn register_configured(r: &mut ExecutorRegistry, config: &ExecutorsConfig) {
    register_builtin(r);
    llm::register(r, &config.llm);
    exec::register(r, &config.exec);
    webhook::register(r, &config.http);
    mcp_client::register(r, &config.mcp);
    health::register(r, &config.health);
    remote::register(r, &config.remote);
}

/// Registers every built-in executor that needs no settings under its name.
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
    r.register("chart", Arc::new(Chart));
    r.register("fuse", Arc::new(Fuse));
}

/// Rounds to three decimals: scores and shares in results need no more, and stay readable.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::ExecutorRegistry;
    use crate::executors::test_support::{InProcess, ctx};
    use crate::schema::{unsupported_keywords, validate};

    #[test]
    fn every_builtin_is_registered() {
        let r = ExecutorRegistry::configured(&Default::default());
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            vec![
                "audio_analyze",
                "chart",
                "code_metrics",
                "delegate",
                "describe_image",
                "echo",
                "exec",
                "fail",
                "fuse",
                "http",
                "image_analyze",
                "keywords",
                "language",
                "llm",
                "mcp",
                "panic",
                "probe",
                "readability",
                "remote",
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
            Some("integer") | Some("number") => schema.get("minimum").cloned().unwrap_or(json!(0)),
            Some("array") if schema["maxItems"] == 0 => json!([]),
            Some("array") => json!([sample(&schema["items"])]),
            Some("boolean") => json!(false),
            Some("object") => {
                let props = schema["properties"].as_object().cloned().unwrap_or_default();
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                Value::Object(
                    props
                        .iter()
                        .filter(|(k, _)| required.contains(&json!(k)))
                        .map(|(k, v)| (k.clone(), sample(v)))
                        .collect(),
                )
            }
            _ => json!("x".repeat(schema["minLength"].as_u64().unwrap_or(1) as usize)),
        }
    }

    /// Every built-in schema, params and result, uses only keywords the validator checks or
    /// ignores as annotations, so intake validation is as strict as the schema reads.
    #[test]
    fn schemas_use_only_supported_keywords() {
        let r = ExecutorRegistry::configured(&Default::default());
        for name in r.names() {
            let exec = r.get(name).unwrap();
            for (what, schema) in [("params", exec.params_schema()), ("result", exec.result_schema())] {
                let schema = schema.unwrap_or_else(|| panic!("{name} publishes no {what} schema"));
                assert_eq!(
                    unsupported_keywords(&schema),
                    Vec::<String>::new(),
                    "{name} {what}"
                );
            }
        }
    }

    /// Each published schema names exactly the fields its executor accepts: an unnamed field is
    /// refused, every named one is known, and the required ones are required.
    #[tokio::test]
    async fn schemas_agree_with_the_executors() {
        let r = ExecutorRegistry::configured(&Default::default());
        let mut with_schema = Vec::new();
        for name in r.names() {
            let exec = r.get(name).unwrap();
            let Some(schema) = exec.params_schema() else {
                continue;
            };
            with_schema.push(name);
            assert_eq!(schema["type"], "object", "{name}");
            let props = schema["properties"].as_object().unwrap();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap())
                .collect();
            let all: serde_json::Map<String, Value> =
                props.iter().map(|(k, v)| (k.clone(), sample(v))).collect();
            // The samples fit the schema; an unnamed field does not, and the executor refuses
            // it too (echo and remote alone take any object).
            validate(&schema, &Value::Object(all.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
            let unknown = json!({ "not_a_param": 1 });
            if schema["additionalProperties"] == false {
                let mut extra = all.clone();
                extra.insert("not_a_param".into(), json!(1));
                let e = validate(&schema, &Value::Object(extra)).unwrap_err();
                assert_eq!(e.path, "/not_a_param", "{name}");
                let err = exec.execute(ctx(), unknown).await.unwrap_err().to_string();
                assert!(err.contains("unknown field `not_a_param`"), "{name}: {err}");
            } else if name == "remote" {
                // Its params go to a worker as they are (tested in remote.rs).
                validate(&schema, &unknown).unwrap();
                continue;
            } else {
                assert_eq!(name, "echo");
                validate(&schema, &unknown).unwrap();
                assert_eq!(exec.execute(ctx(), unknown.clone()).await, Ok(unknown));
            }
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
                    .execute(ctx(), Value::Object(without.clone()))
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains(&format!("missing field `{field}`")),
                    "{name}.{field}: {err}"
                );
                let e = validate(&schema, &Value::Object(without)).unwrap_err();
                assert_eq!(e.to_string(), format!("/{field}: is required"), "{name}");
            }
        }
        assert_eq!(with_schema.len(), 23, "{with_schema:?}");
    }

    /// Real params for each executor (several for some), each fitting its params schema.
    fn good_params() -> Vec<(&'static str, Value)> {
        use super::audio_analyze::{
            SampleFormat,
            tests::{tone, wav},
        };
        use super::base64::encode;
        use super::image_analyze::tests::{encoded, split};
        use super::mp3::tests::{frames, header};
        use image::ImageFormat;

        let text = "The committee met on Tuesday to discuss the budget. Most members were happy \
                    with the excellent plan. Nobody liked the terrible weather, though.";
        let png = encoded(
            &split(40, 20, 0.7, [200, 30, 30], [20, 20, 220]),
            ImageFormat::Png,
        );
        let jpeg = encoded(
            &split(300, 120, 0.5, [250, 250, 250], [0, 0, 0]),
            ImageFormat::Jpeg,
        );
        let mut quiet = tone(8000, 1, 0.5, 0.5);
        quiet.extend(std::iter::repeat_n(0.0, 4000));
        let wav = encode(&wav(SampleFormat::Int, 16, 1, 8000, &quiet));
        let mp3 = encode(&frames(header(1, 3, 9, 0, false), 20));
        vec![
            (
                "echo",
                json!({ "anything": [1, "two"], "usage": { "model": "m", "tokens_in": 1, "tokens_out": 2 } }),
            ),
            ("sleep", json!({ "ms": 20 })),
            ("panic", json!({ "until_attempt": 1 })),
            (
                "delegate",
                json!({ "task_type": "system.debug.echo", "params": { "n": 1 } }),
            ),
            ("summarize", json!({ "text": text, "sentences": 2 })),
            ("keywords", json!({ "text": text, "top": 3 })),
            ("keywords", json!({ "text": text, "language": "de" })),
            ("language", json!({ "text": text })),
            ("language", json!({ "text": "1234" })),
            ("readability", json!({ "text": text })),
            ("sentiment", json!({ "text": text })),
            (
                "code_metrics",
                json!({ "code": "fn main() {\n    if x && y { z() }\n}\n", "filename": "a.rs" }),
            ),
            (
                "code_metrics",
                json!({ "code": "int main() { return 0; }", "language": "c" }),
            ),
            ("code_metrics", json!({ "code": "???" })),
            ("image_analyze", json!({ "image_base64": png })),
            ("thumbnail", json!({ "image_base64": jpeg, "max_side": 64 })),
            ("describe_image", json!({ "image_base64": png, "detail": "full" })),
            (
                "audio_analyze",
                json!({ "audio_base64": wav, "min_silence_ms": 100 }),
            ),
            ("audio_analyze", json!({ "audio_base64": mp3 })),
            (
                "chart",
                json!({ "kind": "bar", "values": [3, -1, 4.5], "width": 64, "height": 32 }),
            ),
            (
                "chart",
                json!({ "kind": "line", "values": [1], "colour": "#102030" }),
            ),
            (
                "fuse",
                json!({ "tasks": [
                    { "task_type": "system.debug.echo", "params": { "n": 1 }, "key": "e" },
                    { "task_type": "system.debug.fail" },
                ], "mode": "any_ok" }),
            ),
        ]
    }

    /// Executors whose results need a server or a command (tested in their own modules).
    const CALLS_OUT: [&str; 6] = ["exec", "http", "llm", "mcp", "probe", "remote"];

    /// Every executor that can succeed, run on real params: the params fit its params schema
    /// and the result fits its result schema.
    #[tokio::test]
    async fn results_fit_their_schemas() {
        let r = ExecutorRegistry::configured(&Default::default());
        let mut covered = std::collections::BTreeSet::new();
        for (name, params) in good_params() {
            let exec = r.get(name).unwrap();
            validate(&exec.params_schema().unwrap(), &params)
                .unwrap_or_else(|e| panic!("{name} params: {e}"));
            let c = ctx().with_delegate(Some(std::sync::Arc::new(InProcess)));
            let result = exec
                .execute(c, params.clone())
                .await
                .unwrap_or_else(|e| panic!("{name} {params}: {e}"));
            let schema = exec.result_schema().unwrap();
            validate(&schema, &result).unwrap_or_else(|e| panic!("{name} result {result}: {e}"));
            // A result that lost a field or gained one would not fit.
            if let Some(obj) = result.as_object()
                && schema["additionalProperties"] == false
            {
                let mut more = obj.clone();
                more.insert("extra".into(), json!(1));
                assert!(validate(&schema, &Value::Object(more)).is_err(), "{name}");
                let mut less = obj.clone();
                let first = obj.keys().next().cloned().unwrap_or_default();
                less.remove(&first);
                assert!(validate(&schema, &Value::Object(less)).is_err(), "{name}");
            }
            covered.insert(name);
        }
        // Executors that call out are run against real servers in their own modules' tests.
        for name in CALLS_OUT {
            covered.insert(name);
        }
        // fail never succeeds: its result schema admits nothing.
        assert!(r.get("fail").unwrap().execute(ctx(), json!({})).await.is_err());
        assert!(validate(&r.get("fail").unwrap().result_schema().unwrap(), &json!({})).is_err());
        covered.insert("fail");
        assert_eq!(
            covered.iter().copied().collect::<Vec<_>>(),
            r.names().collect::<Vec<_>>()
        );
    }
}
