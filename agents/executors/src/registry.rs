//! The built-in executors under the names routes use.

use std::sync::Arc;

use cadre_agents::ExecutorRegistry;

use crate::calls::{http, llm, mcp, probe, remote};
use crate::composition::{Delegating, DescribeImage, Fuse};
use crate::config::ExecutorsConfig;
use crate::media::{AudioAnalyze, Chart, ImageAnalyze, Thumbnail};
use crate::system::{Echo, Fail, Panic, Sleep, exec};
use crate::text::{AnalyzeSentiment, DetectLanguage, Keywords, MeasureCode, MeasureReadability, Summarize};

/// Every executor built into cadre that needs no settings, under its name.
pub fn builtin() -> ExecutorRegistry {
    let mut r = ExecutorRegistry::new();
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
    r
}

/// Every built-in executor, the configurable ones (llm, exec, http, mcp, probe, remote) set up
/// from `config`.
pub fn configured(config: &ExecutorsConfig) -> ExecutorRegistry {
    let mut r = builtin();
    llm::register(&mut r, &config.llm);
    exec::register(&mut r, &config.exec);
    http::register(&mut r, &config.http);
    mcp::register(&mut r, &config.mcp);
    probe::register(&mut r, &config.health);
    remote::register(&mut r, &config.remote);
    r
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use cadre_agents::schema::{check_schema, validate};

    use super::configured;
    use crate::support::test_support::{InProcess, ctx};

    #[test]
    fn every_builtin_is_registered() {
        let r = configured(&Default::default());
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

    /// A value of the type a property schema asks for (its first example, when it gives some).
    fn sample(schema: &Value) -> Value {
        if let Some(example) = schema["examples"].get(0) {
            return example.clone();
        }
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

    /// Every built-in schema, params and result, is a valid draft 2020-12 schema (intake
    /// compiles it, and agents and MCP clients read it).
    #[test]
    fn schemas_are_valid_json_schemas() {
        let r = configured(&Default::default());
        for name in r.names() {
            let exec = r.get(name).unwrap();
            for (what, schema) in [("params", exec.params_schema()), ("result", exec.result_schema())] {
                let schema = schema.unwrap_or_else(|| panic!("{name} publishes no {what} schema"));
                assert_eq!(check_schema(&schema), Ok(()), "{name} {what}");
            }
        }
    }

    /// Each published schema names exactly the fields its executor accepts: an unnamed field is
    /// refused, every named one is known, and the required ones are required.
    #[tokio::test]
    async fn schemas_agree_with_the_executors() {
        let r = configured(&Default::default());
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
        use crate::codecs::base64::encode;
        use crate::codecs::mp3::tests::{frames, header};
        use crate::media::audio_analyze::{
            SampleFormat,
            tests::{tone, wav},
        };
        use crate::media::image_analyze::tests::{encoded, split};
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
        let r = configured(&Default::default());
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
