//! Offline image analysis: metadata, mean colour, brightness, dominant colours and a perceptual
//! hash of a PNG or JPEG image, decoded under a pixel limit on the blocking pool.

use std::io::Cursor;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use image::{DynamicImage, ImageFormat, ImageReader, Limits, imageops::FilterType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::codecs::base64;
use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::params_schema as schema;
use crate::support::round::round3;

/// Largest image decoded by default: 40 megapixels. PNG compresses a flat image so well that a
/// 1 MiB param can describe gigapixels; the limit is what bounds memory and time.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// How many dominant colours are reported at most.
const MAX_DOMINANT: usize = 5;

/// Colours covering less than this share are left out of the dominant list (unless nothing
/// else is left).
const MIN_DOMINANT_SHARE: f64 = 0.01;

/// `multimodal.vision.analyze` (worker kind vision): `{"image_base64": "<PNG or JPEG>"}` ->
/// [`ImageAnalysis`].
pub struct ImageAnalyze {
    /// Images with more pixels than this are refused before decoding.
    max_pixels: u64,
}

impl Default for ImageAnalyze {
    fn default() -> Self {
        ImageAnalyze {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl ImageAnalyze {
    /// An analyzer that refuses images above `max_pixels` pixels.
    pub fn with_max_pixels(max_pixels: u64) -> Self {
        ImageAnalyze { max_pixels }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyzeParams {
    image_base64: String,
}

/// What [`ImageAnalyze`] returns (its JSON result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageAnalysis {
    /// `png` or `jpeg`, from the data (not from any name).
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The decoded colour type as the image crate names it (`Rgb8`, `Rgba8`, `L8`, `Rgb16`, ...).
    pub color_type: String,
    /// Mean red, green and blue (0-255) over the non-transparent pixels.
    pub mean_rgb: [u8; 3],
    /// Mean relative luminance (Rec. 709 weights on the encoded values), 0 = black, 1 = white.
    pub brightness: f64,
    /// The most common colours, most common first.
    pub dominant_colors: Vec<DominantColor>,
    /// 64-bit difference hash (dHash) as 16 lowercase hex digits: the image in grayscale,
    /// shrunk to 9x8, one bit per pixel (row-major, most significant first) set when the pixel
    /// is brighter than its right neighbour. Similar images have a small Hamming distance
    /// ([`hamming_distance`]); unrelated ones about 32.
    pub perceptual_hash: String,
}

/// One entry of [`ImageAnalysis::dominant_colors`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DominantColor {
    /// `#rrggbb`: the mean colour of the pixels in this histogram cell.
    pub hex: String,
    /// Share of the non-transparent pixels in this cell, 0-1.
    pub share: f64,
}

#[async_trait]
impl Executor for ImageAnalyze {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["image_base64"],
            &[("image_base64", schema::base64("a PNG or JPEG image"))],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(analysis_schema())
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: AnalyzeParams = decode_params(&params)?;
        let bytes = base64::decode(&p.image_base64)
            .map_err(|e| ExecError::InvalidParams(format!("image_base64: {e}")))?;
        if bytes.is_empty() {
            return Err(ExecError::InvalidParams("image_base64 is empty".into()));
        }
        ctx.progress(0.1, "decoding image");
        let max_pixels = self.max_pixels;
        let (format, img) = run_blocking(&ctx, "image decoding", move |_| decode(&bytes, max_pixels)).await?;
        ctx.progress(0.6, format!("analysing {}x{} image", img.width(), img.height()));
        let analysis = run_blocking(&ctx, "image analysis", move |cancel| {
            analyze(format, &img, cancel)
        })
        .await?;
        ctx.progress(1.0, "analysed");
        serde_json::to_value(analysis).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// JSON Schema of an [`ImageAnalysis`] (the result of [`ImageAnalyze`], and part of
/// [`DescribeImage`](crate::composition::DescribeImage)'s).
pub fn analysis_schema() -> Value {
    let channel = schema::int_range(0, 255, "0-255");
    let mut mean = schema::array(channel, "mean red, green and blue of the visible pixels");
    mean["minItems"] = 3.into();
    mean["maxItems"] = 3.into();
    let mut hex = schema::string("#rrggbb");
    hex["minLength"] = 7.into();
    hex["maxLength"] = 7.into();
    let colour = schema::record(&[
        ("hex", hex),
        (
            "share",
            schema::real_range(0.0, 1.0, "share of the visible pixels"),
        ),
    ]);
    let mut dominant = schema::array(colour, "the most common colours, most common first");
    dominant["maxItems"] = MAX_DOMINANT.into();
    let mut hash = schema::string("64-bit difference hash as 16 hex digits");
    hash["minLength"] = 16.into();
    hash["maxLength"] = 16.into();
    schema::record(&[
        (
            "format",
            schema::one_of(&["png", "jpeg"], "the format, from the data"),
        ),
        ("width", schema::count("width in pixels")),
        ("height", schema::count("height in pixels")),
        (
            "color_type",
            schema::string("the decoded colour type (Rgb8, Rgba8, L8, ...)"),
        ),
        ("mean_rgb", mean),
        (
            "brightness",
            schema::real_range(0.0, 1.0, "mean relative luminance, 0 = black"),
        ),
        ("dominant_colors", dominant),
        ("perceptual_hash", hash),
    ])
}

/// Decodes a PNG or JPEG, refusing other formats and images above `max_pixels`. The header is
/// read first so an oversized image is refused before anything is allocated for it.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<(ImageFormat, DynamicImage), ExecError> {
    let invalid = ExecError::InvalidParams;
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| invalid(format!("image_base64: cannot read image: {e}")))
    };
    let format = match reader()?.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Some(f) => {
            return Err(invalid(format!(
                "image_base64: {f:?} images are not supported (PNG or JPEG only)"
            )));
        }
        None => {
            return Err(invalid(
                "image_base64: not a PNG or JPEG image (unrecognised data)".into(),
            ));
        }
    };
    let name = format_name(format);
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| invalid(format!("image_base64: cannot read the {name} header: {e}")))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(invalid(format!(
            "image_base64: the image is {w}x{h} ({:.1} megapixels), above the limit of {:.1} megapixels",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    let mut r = reader()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // 16-bit RGBA is the widest pixel the decoders produce; anything above is a lie in the data.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 20));
    r.limits(limits);
    let img = r
        .decode()
        .map_err(|e| invalid(format!("image_base64: cannot decode the {name} image: {e}")))?;
    Ok((format, img))
}

/// `png` / `jpeg`: how results name the formats.
pub fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        _ => "image",
    }
}

/// Computes the [`ImageAnalysis`] of a decoded image, checking `cancel` as it goes.
pub fn analyze(
    format: ImageFormat,
    img: &DynamicImage,
    cancel: &CancellationToken,
) -> Result<ImageAnalysis, ExecError> {
    let stats = match img {
        DynamicImage::ImageRgb8(b) => {
            ColorStats::collect(b.pixels().map(|p| [p[0], p[1], p[2], 255]), cancel)?
        }
        DynamicImage::ImageLuma8(b) => {
            ColorStats::collect(b.pixels().map(|p| [p[0], p[0], p[0], 255]), cancel)?
        }
        DynamicImage::ImageRgba8(b) => ColorStats::collect(b.pixels().map(|p| p.0), cancel)?,
        other => ColorStats::collect(other.to_rgba8().pixels().map(|p| p.0), cancel)?,
    };
    checkpoint(cancel)?;
    Ok(ImageAnalysis {
        format: format_name(format).into(),
        width: img.width(),
        height: img.height(),
        color_type: format!("{:?}", img.color()),
        mean_rgb: stats.mean_rgb(),
        brightness: round3(stats.brightness()),
        dominant_colors: stats.dominant(),
        perceptual_hash: format!("{:016x}", dhash(img)),
    })
}

/// Colour sums over the pixels that are not fully transparent, plus a coarse histogram:
/// 3 bits per channel, 512 cells, each remembering the sum of its pixels so a cell reports
/// their mean colour rather than its corner.
struct ColorStats {
    /// Sum of r, g, b over counted pixels.
    sum: [u64; 3],
    /// Sum of the pixels' luminance (0-255 scale).
    luma: f64,
    /// Pixels counted.
    count: u64,
    /// Per cell: sums of r, g, b and the pixel count.
    cells: Vec<[u64; 4]>,
}

impl ColorStats {
    /// Pixels between two cancel checks (about a megapixel).
    const CHECK_EVERY: u64 = 1 << 20;

    fn collect(pixels: impl Iterator<Item = [u8; 4]>, cancel: &CancellationToken) -> Result<Self, ExecError> {
        let mut s = ColorStats {
            sum: [0; 3],
            luma: 0.0,
            count: 0,
            cells: vec![[0; 4]; 512],
        };
        let mut transparent = ColorStats {
            sum: [0; 3],
            luma: 0.0,
            count: 0,
            cells: vec![[0; 4]; 512],
        };
        for (i, [r, g, b, a]) in pixels.enumerate() {
            if (i as u64).is_multiple_of(Self::CHECK_EVERY) {
                checkpoint(cancel)?;
            }
            let target = if a == 0 { &mut transparent } else { &mut s };
            target.add(r, g, b);
        }
        // An image that is transparent everywhere still gets colours: those of its pixels.
        Ok(if s.count == 0 { transparent } else { s })
    }

    fn add(&mut self, r: u8, g: u8, b: u8) {
        self.sum[0] += u64::from(r);
        self.sum[1] += u64::from(g);
        self.sum[2] += u64::from(b);
        self.luma += 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b);
        self.count += 1;
        let cell = &mut self.cells[usize::from(r >> 5) << 6 | usize::from(g >> 5) << 3 | usize::from(b >> 5)];
        cell[0] += u64::from(r);
        cell[1] += u64::from(g);
        cell[2] += u64::from(b);
        cell[3] += 1;
    }

    fn mean_rgb(&self) -> [u8; 3] {
        let n = self.count.max(1);
        self.sum.map(|c| ((c + n / 2) / n) as u8)
    }

    fn brightness(&self) -> f64 {
        self.luma / self.count.max(1) as f64 / 255.0
    }

    fn dominant(&self) -> Vec<DominantColor> {
        let mut cells: Vec<&[u64; 4]> = self.cells.iter().filter(|c| c[3] > 0).collect();
        cells.sort_by(|a, b| b[3].cmp(&a[3]));
        let total = self.count.max(1) as f64;
        cells
            .into_iter()
            .take(MAX_DOMINANT)
            .enumerate()
            .filter(|(i, c)| *i == 0 || c[3] as f64 / total >= MIN_DOMINANT_SHARE)
            .map(|(_, c)| {
                let n = c[3];
                let mean = |v: u64| ((v + n / 2) / n) as u8;
                DominantColor {
                    hex: format!("#{:02x}{:02x}{:02x}", mean(c[0]), mean(c[1]), mean(c[2])),
                    share: round3(n as f64 / total),
                }
            })
            .collect()
    }
}

/// The 64-bit dHash described on [`ImageAnalysis::perceptual_hash`].
pub fn dhash(img: &DynamicImage) -> u64 {
    let small = img.resize_exact(9, 8, FilterType::Triangle).to_luma8();
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let bit = small.get_pixel(x, y)[0] > small.get_pixel(x + 1, y)[0];
            hash = hash << 1 | u64::from(bit);
        }
    }
    hash
}

/// Number of differing bits between two hex hashes (as in [`ImageAnalysis::perceptual_hash`]);
/// `None` if either is not 16 hex digits.
pub fn hamming_distance(a: &str, b: &str) -> Option<u32> {
    let parse = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
    Some((parse(a)? ^ parse(b)?).count_ones())
}

#[cfg(test)]
pub(crate) mod tests {
    use image::{Rgb, RgbImage, Rgba, RgbaImage};
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    /// Encodes an image as PNG or JPEG and then as base64, as a client would send it.
    pub(crate) fn encoded(img: &DynamicImage, format: ImageFormat) -> String {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, format).unwrap();
        base64::encode(&buf.into_inner())
    }

    pub(crate) fn solid(w: u32, h: u32, c: [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb(c)))
    }

    /// Left `left_share` of the width in `a`, the rest in `b`.
    pub(crate) fn split(w: u32, h: u32, left_share: f64, a: [u8; 3], b: [u8; 3]) -> DynamicImage {
        let cut = (w as f64 * left_share) as u32;
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, _| Rgb(if x < cut { a } else { b })))
    }

    /// Blocks of pseudo-random gray levels: structure for the perceptual hash to see.
    fn blocks(w: u32, h: u32, seed: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            let v = ((x / 16 * 37 + y / 16 * 91 + seed * 53).wrapping_mul(2654435761) >> 24) as u8;
            Rgb([v, v, v])
        }))
    }

    async fn run(exec: &ImageAnalyze, params: Value) -> Result<ImageAnalysis, ExecError> {
        let v = exec.execute(ctx(), params).await?;
        Ok(serde_json::from_value(v).unwrap())
    }

    async fn analyse(img: &DynamicImage, format: ImageFormat) -> ImageAnalysis {
        run(
            &ImageAnalyze::default(),
            json!({ "image_base64": encoded(img, format) }),
        )
        .await
        .unwrap()
    }

    fn invalid(res: Result<ImageAnalysis, ExecError>) -> String {
        match res {
            Err(ExecError::InvalidParams(m)) => m,
            other => panic!("expected InvalidParams, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn solid_png() {
        let a = analyse(&solid(64, 48, [0x1a, 0x2b, 0x3c]), ImageFormat::Png).await;
        assert_eq!((a.format.as_str(), a.width, a.height), ("png", 64, 48));
        assert_eq!(a.color_type, "Rgb8");
        assert_eq!(a.mean_rgb, [0x1a, 0x2b, 0x3c]);
        assert_eq!(
            a.dominant_colors,
            vec![DominantColor {
                hex: "#1a2b3c".into(),
                share: 1.0
            }]
        );
        assert!((a.brightness - 0.159).abs() < 0.002, "{}", a.brightness);
        assert_eq!(a.perceptual_hash.len(), 16);
        let white = analyse(&solid(8, 8, [255; 3]), ImageFormat::Png).await;
        assert_eq!(white.brightness, 1.0);
    }

    #[tokio::test]
    async fn solid_jpeg_is_close() {
        let a = analyse(&solid(64, 64, [200, 30, 40]), ImageFormat::Jpeg).await;
        assert_eq!(a.format, "jpeg");
        assert_eq!((a.width, a.height), (64, 64));
        assert!(
            a.mean_rgb
                .iter()
                .zip([200, 30, 40])
                .all(|(&m, e)| (i32::from(m) - e).abs() <= 4),
            "{:?}",
            a.mean_rgb
        );
        assert!(a.dominant_colors[0].share > 0.95, "{:?}", a.dominant_colors);
    }

    #[tokio::test]
    async fn two_colour_split() {
        let a = analyse(
            &split(100, 10, 0.7, [0, 0, 255], [255, 255, 255]),
            ImageFormat::Png,
        )
        .await;
        let got: Vec<(&str, f64)> = a
            .dominant_colors
            .iter()
            .map(|d| (d.hex.as_str(), d.share))
            .collect();
        assert_eq!(got, vec![("#0000ff", 0.7), ("#ffffff", 0.3)]);
        assert_eq!(a.mean_rgb, [77, 77, 255]);
    }

    #[tokio::test]
    async fn gradient_spreads_over_cells() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(256, 4, |x, _| Rgb([x as u8; 3])));
        let a = analyse(&img, ImageFormat::Png).await;
        assert_eq!(a.dominant_colors.len(), MAX_DOMINANT);
        assert!(
            a.dominant_colors.iter().all(|d| d.share == 0.125),
            "{:?}",
            a.dominant_colors
        );
        assert!((a.brightness - 0.5).abs() < 0.002, "{}", a.brightness);
        // Brightness grows left to right: every pixel is darker than its right neighbour.
        assert_eq!(a.perceptual_hash, "0000000000000000");
        let mirrored = DynamicImage::ImageRgb8(RgbImage::from_fn(256, 4, |x, _| Rgb([255 - x as u8; 3])));
        assert_eq!(
            analyse(&mirrored, ImageFormat::Png).await.perceptual_hash,
            "ffffffffffffffff"
        );
    }

    #[tokio::test]
    async fn transparent_pixels_do_not_count() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(10, 10, |x, _| {
            if x < 5 {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        }));
        let a = analyse(&img, ImageFormat::Png).await;
        assert_eq!(a.color_type, "Rgba8");
        assert_eq!(a.mean_rgb, [255, 0, 0]);
        assert_eq!(a.dominant_colors.len(), 1);
    }

    #[tokio::test]
    async fn hash_is_stable_and_perceptual() {
        let img = blocks(128, 96, 1);
        let png = analyse(&img, ImageFormat::Png).await.perceptual_hash;
        assert_eq!(png, analyse(&img, ImageFormat::Png).await.perceptual_hash);
        // The same picture: JPEG-compressed, brightened, or at another size.
        let jpeg = analyse(&img, ImageFormat::Jpeg).await.perceptual_hash;
        let mut brighter = img.to_rgb8();
        brighter
            .pixels_mut()
            .for_each(|p| p.0 = p.0.map(|v| v.saturating_add(12)));
        let brighter = DynamicImage::ImageRgb8(brighter);
        let brighter = analyse(&brighter, ImageFormat::Png).await.perceptual_hash;
        let smaller = analyse(&img.resize_exact(64, 48, FilterType::Triangle), ImageFormat::Png)
            .await
            .perceptual_hash;
        for similar in [&jpeg, &brighter, &smaller] {
            let d = hamming_distance(&png, similar).unwrap();
            assert!(d <= 6, "similar image at distance {d}");
        }
        // Different pictures.
        for other in [blocks(128, 96, 7), img.fliph(), img.rotate180()] {
            let h = analyse(&other, ImageFormat::Png).await.perceptual_hash;
            let d = hamming_distance(&png, &h).unwrap();
            assert!(d >= 20, "different image at distance {d}");
        }
        assert_eq!(hamming_distance("00", "ff"), None);
    }

    #[tokio::test]
    async fn refuses_bad_input() {
        let ex = ImageAnalyze::default();
        let m = invalid(run(&ex, json!({ "image_base64": "not*base64" })).await);
        assert!(m.contains("invalid base64 character '*' at offset 3"), "{m}");
        let m = invalid(run(&ex, json!({ "image_base64": "" })).await);
        assert!(m.contains("empty"), "{m}");
        let m = invalid(run(&ex, json!({ "image_base64": base64::encode(b"hello, world") })).await);
        assert!(m.contains("not a PNG or JPEG"), "{m}");
        let gif = base64::encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
        let m = invalid(run(&ex, json!({ "image_base64": gif })).await);
        assert!(m.contains("Gif images are not supported"), "{m}");
        // A valid PNG cut in half.
        let png = base64::decode(&encoded(&blocks(64, 64, 3), ImageFormat::Png)).unwrap();
        let cut = base64::encode(&png[..png.len() / 2]);
        let m = invalid(run(&ex, json!({ "image_base64": cut })).await);
        assert!(m.contains("cannot decode the png image"), "{m}");
        let m = invalid(run(&ex, json!({ "image_base64": "", "extra": 1 })).await);
        assert!(m.contains("unknown field `extra`"), "{m}");
        let m = invalid(run(&ex, json!({})).await);
        assert!(m.contains("missing field `image_base64`"), "{m}");
    }

    #[tokio::test]
    async fn refuses_images_above_the_pixel_limit() {
        let img = encoded(&solid(200, 100, [1, 2, 3]), ImageFormat::Png);
        let m = invalid(
            run(
                &ImageAnalyze::with_max_pixels(19_999),
                json!({ "image_base64": img }),
            )
            .await,
        );
        assert!(m.contains("200x100"), "{m}");
        assert!(m.contains("above the limit"), "{m}");
        assert!(
            run(
                &ImageAnalyze::with_max_pixels(20_000),
                json!({ "image_base64": img })
            )
            .await
            .is_ok()
        );
        // A PNG header that claims a huge image is refused without decoding a pixel.
        let mut png = base64::decode(&img).unwrap();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&1_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let m = invalid(
            run(
                &ImageAnalyze::default(),
                json!({ "image_base64": base64::encode(&png) }),
            )
            .await,
        );
        assert!(m.contains("100000x1000 (100.0 megapixels)"), "{m}");
    }

    /// CRC-32 as PNG chunks use it (to forge a valid header in a test).
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    crc >> 1 ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn damaged_images_are_refused_never_panic() {
        let mut rng = crate::support::test_support::Rng::new(5);
        let cancel = CancellationToken::new();
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let good = base64::decode(&encoded(&blocks(16, 16, 2), format)).unwrap();
            for _ in 0..300 {
                if let Ok((f, img)) = decode(&rng.mutate(&good), 10_000) {
                    analyze(f, &img, &cancel).unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn honours_cancel() {
        let c = ctx();
        c.cancel.cancel();
        let img = encoded(&solid(4, 4, [0; 3]), ImageFormat::Png);
        let res = ImageAnalyze::default()
            .execute(c, json!({ "image_base64": img }))
            .await;
        assert_eq!(res, Err(ExecError::Cancelled));
        let cancel = CancellationToken::new();
        cancel.cancel();
        let res = analyze(ImageFormat::Png, &solid(4, 4, [0; 3]), &cancel);
        assert_eq!(res, Err(ExecError::Cancelled));
    }
}
