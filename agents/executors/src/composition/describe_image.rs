//! Describes an image in words, offline: delegates the pixel work to the vision worker
//! (`multimodal.vision.analyze`, see [`image_analyze`](crate::media::image_analyze)) and turns
//! its numbers into a sentence. It shows the delegation seam: the research worker never decodes
//! an image itself.

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::media::image_analyze::{DominantColor, ImageAnalysis, analysis_schema};
use crate::support::params_schema as schema;

/// The task type the analysis is delegated to.
pub const ANALYZE_TASK_TYPE: &str = "multimodal.vision.analyze";

/// `intelligence.research.describe_image` (worker kind research):
/// `{"image_base64": "...", "detail": "brief" | "full"}` ->
/// `{"summary": "...", "analysis": {...}}`, the analysis being the delegated sub-task's result.
pub struct DescribeImage;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribeParams {
    image_base64: String,
    #[serde(default)]
    detail: Detail,
}

/// How much the summary says.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum Detail {
    /// One sentence: size, format, the main colour and up to two more (of at least 5%),
    /// brightness.
    #[default]
    Brief,
    /// Every dominant colour of at least 5%, and a second sentence with the colour type, the
    /// mean colour and the perceptual hash.
    Full,
}

#[async_trait]
impl Executor for DescribeImage {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["image_base64"],
            &[
                ("image_base64", schema::base64("a PNG or JPEG image")),
                (
                    "detail",
                    schema::one_of(&["brief", "full"], "how much the summary says (default brief)"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("summary", schema::text("the description")),
            ("analysis", analysis_schema()),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: DescribeParams = decode_params(&params)?;
        if p.image_base64.trim().is_empty() {
            return Err(ExecError::InvalidParams("image_base64 is empty".into()));
        }
        ctx.progress(0.1, format!("delegating to {ANALYZE_TASK_TYPE}"));
        let raw = ctx
            .delegate(ANALYZE_TASK_TYPE, json!({ "image_base64": p.image_base64 }))
            .await
            .map_err(|e| match e {
                ExecError::InvalidParams(m) => ExecError::InvalidParams(format!("{ANALYZE_TASK_TYPE}: {m}")),
                ExecError::Retryable(m) => ExecError::Retryable(format!("{ANALYZE_TASK_TYPE} failed: {m}")),
                ExecError::Fatal(m) => ExecError::Fatal(format!("{ANALYZE_TASK_TYPE} failed: {m}")),
                ExecError::Cancelled => ExecError::Cancelled,
                ExecError::RateLimited { message, .. } => {
                    ExecError::Retryable(format!("{ANALYZE_TASK_TYPE} failed: {message}"))
                }
            })?;
        let analysis: ImageAnalysis = serde_json::from_value(raw.clone()).map_err(|e| {
            ExecError::Fatal(format!("{ANALYZE_TASK_TYPE} returned an unexpected result: {e}"))
        })?;
        ctx.progress(0.9, "writing the description");
        Ok(json!({ "summary": describe(&analysis, p.detail == Detail::Full), "analysis": raw }))
    }
}

/// Writes the summary of an analysis: one sentence, or two with `full`.
fn describe(a: &ImageAnalysis, full: bool) -> String {
    let mut s = format!("A {}x{} {} image", a.width, a.height, a.format.to_uppercase());
    if let Some((first, rest)) = a.dominant_colors.split_first() {
        let lead = match first.share {
            x if x >= 0.95 => "almost entirely",
            x if x >= 0.5 => "mostly",
            _ => "a mix led by",
        };
        s += &format!(", {lead} {}", color_phrase(first));
        let others: Vec<String> = rest
            .iter()
            .filter(|c| c.share >= 0.05)
            .take(if full { rest.len() } else { 2 })
            .map(color_phrase)
            .collect();
        if !others.is_empty() {
            s += &format!(", with {}", join_and(&others));
        }
    }
    s += &format!(
        "; overall {} (brightness {:.2}).",
        brightness_word(a.brightness),
        a.brightness
    );
    if full {
        let [r, g, b] = a.mean_rgb;
        s += &format!(
            " Colour type {}, mean colour {} (#{r:02x}{g:02x}{b:02x}), perceptual hash {}.",
            a.color_type,
            color_name(a.mean_rgb),
            a.perceptual_hash
        );
    }
    s
}

/// `dark blue (#1a2b3c, 62%)`.
fn color_phrase(c: &DominantColor) -> String {
    let name = parse_hex(&c.hex).map_or("unnamed colour", color_name);
    format!("{name} ({}, {:.0}%)", c.hex, c.share * 100.0)
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn brightness_word(b: f64) -> &'static str {
    match b {
        x if x < 0.2 => "very dark",
        x if x < 0.4 => "dark",
        x if x < 0.6 => "of medium brightness",
        x if x < 0.8 => "bright",
        _ => "very bright",
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 3]> {
    let h = hex.strip_prefix('#')?;
    let v = u32::from_str_radix(h, 16).ok().filter(|_| h.len() == 6)?;
    Some([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

/// A plain-English name for a colour, from its hue, saturation and lightness (HSL).
fn color_name([r, g, b]: [u8; 3]) -> &'static str {
    let (r, g, b) = (f64::from(r) / 255.0, f64::from(g) / 255.0, f64::from(b) / 255.0);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let l = (max + min) / 2.0;
    let d = max - min;
    let s = if d == 0.0 {
        0.0
    } else {
        d / (1.0 - (2.0 * l - 1.0).abs())
    };
    if l < 0.1 {
        return "black";
    }
    if l > 0.93 {
        return "white";
    }
    if s < 0.15 || d < 0.06 {
        return match l {
            x if x < 0.35 => "dark gray",
            x if x > 0.7 => "light gray",
            _ => "gray",
        };
    }
    let h = if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    let dark = l < 0.3;
    let light = l > 0.7;
    macro_rules! shade {
        ($base:literal) => {
            if dark {
                concat!("dark ", $base)
            } else if light {
                concat!("light ", $base)
            } else {
                $base
            }
        };
    }
    match h {
        h if !(15.0..345.0).contains(&h) => shade!("red"),
        h if h < 40.0 && l < 0.4 => "brown",
        h if h < 40.0 => shade!("orange"),
        h if h < 70.0 => shade!("yellow"),
        h if h < 160.0 => shade!("green"),
        h if h < 195.0 => shade!("cyan"),
        h if h < 255.0 => shade!("blue"),
        h if h < 290.0 => shade!("purple"),
        _ => shade!("pink"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cadre_agents::Delegate;
    use image::ImageFormat;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::media::image_analyze::tests::{encoded, solid, split};
    use crate::support::test_support::ctx;
    use cadre_proto::TaskId;

    /// Runs sub-tasks in-process on the built-in executors, as the vision worker would.
    struct InProcess;

    #[async_trait]
    impl Delegate for InProcess {
        async fn delegate(
            &self,
            parent: TaskId,
            task_type: String,
            params: Value,
            cancel: CancellationToken,
        ) -> Result<Value, ExecError> {
            assert_eq!(task_type, ANALYZE_TASK_TYPE);
            let sub = ExecContext::new(parent, task_type, 1, cancel, Arc::new(cadre_agents::NoReport));
            crate::builtin()
                .get("image_analyze")
                .unwrap()
                .execute(sub, params)
                .await
        }
    }

    /// A delegate whose sub-tasks always fail the same way.
    struct Failing(ExecError);

    #[async_trait]
    impl Delegate for Failing {
        async fn delegate(
            &self,
            _: TaskId,
            _: String,
            _: Value,
            _: CancellationToken,
        ) -> Result<Value, ExecError> {
            Err(self.0.clone())
        }
    }

    async fn describe_with(delegate: impl Delegate + 'static, params: Value) -> Result<Value, ExecError> {
        let c = ctx().with_delegate(Some(Arc::new(delegate)));
        DescribeImage.execute(c, params).await
    }

    #[tokio::test]
    async fn describes_through_the_vision_worker() {
        let img = encoded(
            &split(640, 480, 0.8, [0x1a, 0x2b, 0x3c], [255, 255, 255]),
            ImageFormat::Png,
        );
        let v = describe_with(InProcess, json!({ "image_base64": img }))
            .await
            .unwrap();
        assert_eq!(
            v["summary"],
            "A 640x480 PNG image, mostly dark blue (#1a2b3c, 80%), with white (#ffffff, 20%); \
             overall dark (brightness 0.33)."
        );
        assert_eq!(v["analysis"]["width"], 640);
        assert_eq!(v["analysis"]["perceptual_hash"].as_str().unwrap().len(), 16);

        let solid_red = encoded(&solid(10, 10, [220, 20, 30]), ImageFormat::Png);
        let v = describe_with(InProcess, json!({ "image_base64": solid_red, "detail": "full" }))
            .await
            .unwrap();
        let s = v["summary"].as_str().unwrap();
        assert!(
            s.starts_with("A 10x10 PNG image, almost entirely red (#dc141e, 100%); overall "),
            "{s}"
        );
        assert!(
            s.contains("Colour type Rgb8, mean colour red (#dc141e), perceptual hash "),
            "{s}"
        );
    }

    #[tokio::test]
    async fn delegated_failures_name_the_sub_task() {
        let img = json!({ "image_base64": "aGVsbG8=" });
        let err = describe_with(InProcess, img.clone()).await.unwrap_err();
        assert!(
            matches!(&err, ExecError::InvalidParams(m) if m.starts_with("multimodal.vision.analyze: image_base64: not a PNG")),
            "{err:?}"
        );
        let err = describe_with(
            Failing(ExecError::Retryable("no vision worker".into())),
            img.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            ExecError::Retryable("multimodal.vision.analyze failed: no vision worker".into())
        );
        let err = describe_with(Failing(ExecError::Cancelled), img.clone())
            .await
            .unwrap_err();
        assert_eq!(err, ExecError::Cancelled);
        // A worker that cannot delegate at all.
        let err = DescribeImage.execute(ctx(), img).await.unwrap_err();
        assert!(
            matches!(&err, ExecError::Fatal(m) if m.contains("multimodal.vision.analyze failed: this worker cannot delegate")),
            "{err:?}"
        );
    }

    /// The whole path a research worker takes: an attempt run by the worker, the executor
    /// delegating through the assignment's delegate, the sub-task's result coming back.
    #[tokio::test]
    async fn runs_as_a_worker_attempt_with_its_delegate() {
        use std::time::Duration;

        use cadre_agents::{Assignment, Outcome, worker::run_attempt};

        let img = encoded(&solid(30, 20, [255, 255, 255]), ImageFormat::Jpeg);
        let attempt = |delegate: Option<cadre_agents::SharedDelegate>| Assignment {
            task_id: TaskId::new(),
            task_type: "intelligence.research.describe_image".into(),
            tenant: "default".into(),
            fortress: false,
            params: json!({ "image_base64": img }),
            attempt: 1,
            timeout: Duration::from_secs(30),
            executor: crate::builtin().get("describe_image").unwrap(),
            cancel: CancellationToken::new(),
            delegate,
            cancel_grace: Duration::from_millis(50),
            progress: Arc::new(cadre_agents::NoReport),
        };
        match run_attempt(attempt(Some(Arc::new(InProcess)))).await {
            Outcome::Succeeded(v) => {
                let s = v["summary"].as_str().unwrap();
                assert!(s.starts_with("A 30x20 JPEG image, almost entirely white"), "{s}");
            }
            other => panic!("{other:?}"),
        }
        let failed = run_attempt(attempt(None)).await;
        assert!(
            matches!(&failed, Outcome::Failed { retryable: false, message } if message.contains("multimodal.vision.analyze")),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn refuses_bad_params() {
        for (params, want) in [
            (json!({ "image_base64": "  " }), "empty"),
            (
                json!({ "image_base64": "x", "detail": "huge" }),
                "unknown variant `huge`",
            ),
            (
                json!({ "image_base64": "x", "colour": true }),
                "unknown field `colour`",
            ),
        ] {
            let err = describe_with(InProcess, params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn names_colours() {
        for (rgb, name) in [
            ([0x1a, 0x2b, 0x3c], "dark blue"),
            ([255, 255, 255], "white"),
            ([0, 0, 0], "black"),
            ([128, 128, 128], "gray"),
            ([230, 30, 30], "red"),
            ([255, 160, 0], "orange"),
            ([120, 70, 20], "brown"),
            ([250, 240, 80], "yellow"),
            ([30, 160, 60], "green"),
            ([0, 200, 220], "cyan"),
            ([20, 60, 230], "blue"),
            ([130, 40, 200], "purple"),
            ([230, 60, 170], "pink"),
            ([180, 220, 255], "light blue"),
        ] {
            assert_eq!(color_name(rgb), name, "{rgb:?}");
        }
        assert_eq!(parse_hex("#0a0b0c"), Some([10, 11, 12]));
        assert_eq!(parse_hex("0a0b0c"), None);
        assert_eq!(join_and(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }
}
