//! Offline thumbnails: a PNG or JPEG image scaled down (never up) to fit a square of a given
//! side, keeping its aspect ratio, returned as a base64 PNG. Decoding shares the pixel limit
//! and checks of [`image_analyze`](super::image_analyze).

use std::io::Cursor;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use image::{ImageFormat, imageops::FilterType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::image_analyze::{DEFAULT_MAX_PIXELS, decode, format_name};
use crate::codecs::base64;
use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::params_schema as schema;

/// Largest `max_side` accepted: bounds the size of the result (a 1024x1024 PNG).
pub const MAX_SIDE: u32 = 1024;

/// `multimodal.vision.thumbnail` (worker kind vision):
/// `{"image_base64": "<PNG or JPEG>", "max_side": 256}` -> [`ThumbnailResult`].
pub struct Thumbnail {
    /// Images with more pixels than this are refused before decoding.
    max_pixels: u64,
}

impl Default for Thumbnail {
    fn default() -> Self {
        Thumbnail {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl Thumbnail {
    /// A thumbnailer that refuses images above `max_pixels` pixels.
    pub fn with_max_pixels(max_pixels: u64) -> Self {
        Thumbnail { max_pixels }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThumbnailParams {
    image_base64: String,
    #[serde(default = "default_max_side")]
    max_side: u32,
}

fn default_max_side() -> u32 {
    256
}

/// What [`Thumbnail`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailResult {
    /// Always `png`.
    pub format: String,
    /// Thumbnail width.
    pub width: u32,
    /// Thumbnail height.
    pub height: u32,
    /// `png` or `jpeg`: what was sent.
    pub source_format: String,
    /// Width of the image sent.
    pub original_width: u32,
    /// Height of the image sent.
    pub original_height: u32,
    /// Size of the PNG in bytes.
    pub bytes: usize,
    /// The PNG, base64.
    pub image_base64: String,
}

#[async_trait]
impl Executor for Thumbnail {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["image_base64"],
            &[
                ("image_base64", schema::base64("a PNG or JPEG image")),
                (
                    "max_side",
                    schema::integer(
                        1,
                        i64::from(MAX_SIDE),
                        256,
                        "longest side of the thumbnail in pixels",
                    ),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let side = |what| schema::int_range(1, i64::from(MAX_SIDE), what);
        Some(schema::record(&[
            ("format", schema::one_of(&["png"], "always png")),
            ("width", side("thumbnail width")),
            ("height", side("thumbnail height")),
            ("source_format", schema::one_of(&["png", "jpeg"], "what was sent")),
            ("original_width", schema::count("width of the image sent")),
            ("original_height", schema::count("height of the image sent")),
            ("bytes", schema::count("size of the PNG")),
            ("image_base64", schema::base64("the PNG")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ThumbnailParams = decode_params(&params)?;
        if !(1..=MAX_SIDE).contains(&p.max_side) {
            return Err(ExecError::InvalidParams(format!("max_side must be 1-{MAX_SIDE}")));
        }
        let bytes = base64::decode(&p.image_base64)
            .map_err(|e| ExecError::InvalidParams(format!("image_base64: {e}")))?;
        if bytes.is_empty() {
            return Err(ExecError::InvalidParams("image_base64 is empty".into()));
        }
        ctx.progress(0.1, "decoding image");
        let max_pixels = self.max_pixels;
        let result = run_blocking(&ctx, "thumbnail", move |cancel| {
            let (format, img) = decode(&bytes, max_pixels)?;
            checkpoint(cancel)?;
            let (w, h) = (img.width(), img.height());
            let small = if w.max(h) > p.max_side {
                img.resize(p.max_side, p.max_side, FilterType::Triangle)
            } else {
                img
            };
            checkpoint(cancel)?;
            let mut png = Cursor::new(Vec::new());
            small
                .write_to(&mut png, ImageFormat::Png)
                .map_err(|e| ExecError::Fatal(format!("encoding the thumbnail failed: {e}")))?;
            let png = png.into_inner();
            Ok(ThumbnailResult {
                format: "png".into(),
                width: small.width(),
                height: small.height(),
                source_format: format_name(format).into(),
                original_width: w,
                original_height: h,
                bytes: png.len(),
                image_base64: base64::encode(&png),
            })
        })
        .await?;
        ctx.progress(1.0, format!("{}x{} thumbnail", result.width, result.height));
        serde_json::to_value(result).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, GenericImageView};
    use serde_json::json;

    use super::*;
    use crate::media::image_analyze::tests::{encoded, solid, split};
    use crate::support::test_support::ctx;

    async fn run(exec: &Thumbnail, params: Value) -> Result<(ThumbnailResult, DynamicImage), ExecError> {
        let v = exec.execute(ctx(), params).await?;
        let r: ThumbnailResult = serde_json::from_value(v).unwrap();
        let png = base64::decode(&r.image_base64).unwrap();
        assert_eq!(png.len(), r.bytes);
        let img = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
        Ok((r, img))
    }

    #[tokio::test]
    async fn scales_down_keeping_the_aspect_ratio() {
        let src = encoded(&split(640, 480, 0.5, [255, 0, 0], [0, 0, 255]), ImageFormat::Jpeg);
        let (r, img) = run(
            &Thumbnail::default(),
            json!({ "image_base64": src, "max_side": 64 }),
        )
        .await
        .unwrap();
        assert_eq!((r.width, r.height, img.dimensions()), (64, 48, (64, 48)));
        assert_eq!((r.original_width, r.original_height), (640, 480));
        assert_eq!((r.format.as_str(), r.source_format.as_str()), ("png", "jpeg"));
        // Still red on the left, blue on the right.
        let (left, right) = (img.get_pixel(5, 24), img.get_pixel(58, 24));
        assert!(left[0] > 200 && left[2] < 60, "{left:?}");
        assert!(right[2] > 200 && right[0] < 60, "{right:?}");

        let tall = encoded(&solid(10, 300, [9, 9, 9]), ImageFormat::Png);
        let (r, _) = run(
            &Thumbnail::default(),
            json!({ "image_base64": tall, "max_side": 100 }),
        )
        .await
        .unwrap();
        assert_eq!((r.width, r.height), (3, 100));
    }

    #[tokio::test]
    async fn never_scales_up() {
        let src = encoded(&solid(32, 20, [1, 2, 3]), ImageFormat::Png);
        let (r, img) = run(&Thumbnail::default(), json!({ "image_base64": src }))
            .await
            .unwrap();
        assert_eq!((r.width, r.height), (32, 20));
        assert_eq!(img.get_pixel(0, 0).0, [1, 2, 3, 255]);
    }

    #[tokio::test]
    async fn refuses_bad_input() {
        let ok = encoded(&solid(100, 100, [0; 3]), ImageFormat::Png);
        for (exec, params, want) in [
            (
                Thumbnail::default(),
                json!({ "image_base64": ok, "max_side": 0 }),
                "max_side must be 1-1024",
            ),
            (
                Thumbnail::default(),
                json!({ "image_base64": ok, "max_side": 4096 }),
                "max_side must be 1-1024",
            ),
            (
                Thumbnail::default(),
                json!({ "image_base64": "" }),
                "image_base64 is empty",
            ),
            (
                Thumbnail::default(),
                json!({ "image_base64": "aGk=" }),
                "not a PNG or JPEG",
            ),
            (
                Thumbnail::default(),
                json!({ "image_base64": ok, "size": 3 }),
                "unknown field `size`",
            ),
            (
                Thumbnail::with_max_pixels(9_999),
                json!({ "image_base64": ok }),
                "above the limit",
            ),
        ] {
            let err = run(&exec, params).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{err:?}"
            );
        }
        let c = ctx();
        c.cancel.cancel();
        let res = Thumbnail::default()
            .execute(c, json!({ "image_base64": ok }))
            .await;
        assert_eq!(res, Err(ExecError::Cancelled));
    }
}
