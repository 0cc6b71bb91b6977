//! Generated images (`chart`): a bar or line chart of a numeric series, drawn pixel by pixel
//! and returned as a base64 PNG. There is no text (no labels or ticks): the result carries the
//! series' `min` and `max` so a caller can label the chart itself. Any series can be charted,
//! task metrics included: the caller passes the numbers.
//!
//! Layout: a white canvas with a margin, a grey left axis and bottom axis, and, in bar charts
//! with negative values, a grey zero line. Bars grow from zero, so their heights are
//! proportional to the values; a line chart spans the series' own range, so all-equal values
//! draw a flat line across the middle.

use std::io::Cursor;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use image::{ImageFormat, Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::codecs::base64;
use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::params_schema as schema;

/// Smallest width or height accepted, in pixels.
pub const MIN_SIDE: u32 = 16;
/// Largest width or height accepted, in pixels: bounds the image (2048x2048 RGB is 12 MiB).
pub const MAX_SIDE: u32 = 2048;
/// Most values in a series.
pub const MAX_VALUES: usize = 1000;
/// Colour of the bars or the line when the params give none (steel blue).
const DEFAULT_COLOUR: [u8; 3] = [0x46, 0x82, 0xb4];
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const AXIS: Rgb<u8> = Rgb([96, 96, 96]);
/// How many bars or segments are drawn between cancel checks.
const CHECK_EVERY: usize = 64;

/// `multimodal.artist.chart` (worker kind artist): `{"kind": "bar", "values": [3, 1, 4],
/// "width": 400, "height": 300, "colour": "#4682b4"}` -> [`ChartResult`].
pub struct Chart;

/// The two kinds of chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChartKind {
    Bar,
    Line,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChartParams {
    kind: ChartKind,
    values: Vec<f64>,
    #[serde(default = "default_width")]
    width: u32,
    #[serde(default = "default_height")]
    height: u32,
    colour: Option<String>,
}

fn default_width() -> u32 {
    400
}

fn default_height() -> u32 {
    300
}

/// What [`Chart`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChartResult {
    /// The chart, a PNG, base64.
    pub png_base64: String,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// The smallest value of the series.
    pub min: f64,
    /// The largest value of the series.
    pub max: f64,
}

#[async_trait]
impl Executor for Chart {
    fn params_schema(&self) -> Option<Value> {
        let side = |default, what| schema::integer(i64::from(MIN_SIDE), i64::from(MAX_SIDE), default, what);
        let mut values = schema::array(schema::real("a value"), "the series, in order");
        values["minItems"] = 1.into();
        values["maxItems"] = MAX_VALUES.into();
        let mut colour = schema::string("colour of the bars or line, #rrggbb (default #4682b4)");
        colour["minLength"] = 7.into();
        colour["maxLength"] = 7.into();
        Some(schema::object(
            &["kind", "values"],
            &[
                ("kind", schema::one_of(&["bar", "line"], "bar or line chart")),
                ("values", values),
                ("width", side(400, "image width in pixels")),
                ("height", side(300, "image height in pixels")),
                ("colour", colour),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let side = |what| schema::int_range(i64::from(MIN_SIDE), i64::from(MAX_SIDE), what);
        Some(schema::record(&[
            ("png_base64", schema::base64("the chart, a PNG")),
            ("width", side("image width")),
            ("height", side("image height")),
            ("min", schema::real("smallest value of the series")),
            ("max", schema::real("largest value of the series")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ChartParams = decode_params(&params)?;
        let invalid = |m: String| Err(ExecError::InvalidParams(m));
        for (name, side) in [("width", p.width), ("height", p.height)] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&side) {
                return invalid(format!("{name} must be {MIN_SIDE}-{MAX_SIDE}"));
            }
        }
        if p.values.is_empty() || p.values.len() > MAX_VALUES {
            return invalid(format!("values must hold 1-{MAX_VALUES} numbers"));
        }
        if let Some(i) = p.values.iter().position(|v| !v.is_finite()) {
            return invalid(format!("values[{i}] is not a finite number"));
        }
        let colour = match &p.colour {
            Some(c) => parse_colour(c)
                .ok_or_else(|| ExecError::InvalidParams(format!("colour {c:?} is not #rrggbb")))?,
            None => DEFAULT_COLOUR,
        };
        let min = p.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = p.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        ctx.progress(0.1, format!("drawing a {}x{} chart", p.width, p.height));
        let (width, height) = (p.width, p.height);
        let png = run_blocking(&ctx, "chart", move |cancel| {
            let img = draw(p.kind, &p.values, width, height, Rgb(colour), cancel)?;
            checkpoint(cancel)?;
            let mut png = Cursor::new(Vec::new());
            img.write_to(&mut png, ImageFormat::Png)
                .map_err(|e| ExecError::Fatal(format!("encoding the chart failed: {e}")))?;
            Ok(png.into_inner())
        })
        .await?;
        ctx.progress(1.0, format!("{width}x{height} chart, {} bytes", png.len()));
        let result = ChartResult {
            png_base64: base64::encode(&png),
            width,
            height,
            min,
            max,
        };
        serde_json::to_value(result).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// `#rrggbb` as RGB.
fn parse_colour(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// Where `v` lies between `lo` and `hi`, 0..=1 (0.5 when they are equal). Halving first keeps
/// `hi - lo` finite for values near ±f64::MAX.
fn fraction(v: f64, lo: f64, hi: f64) -> f64 {
    let span = hi / 2.0 - lo / 2.0;
    if span <= 0.0 {
        0.5
    } else {
        ((v / 2.0 - lo / 2.0) / span).clamp(0.0, 1.0)
    }
}

/// The plot area inside the margin: columns `x0..x1`, rows `y0..y1`.
struct Plot {
    x0: u32,
    x1: u32,
    y0: u32,
    y1: u32,
}

impl Plot {
    fn new(width: u32, height: u32) -> Self {
        let margin = (width.min(height) / 16).max(2);
        Plot {
            x0: margin,
            x1: width - margin,
            y0: margin,
            y1: height - margin,
        }
    }

    fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    /// The row boundary (between two rows) at fraction `t` of the height, from the bottom.
    fn boundary(&self, t: f64) -> u32 {
        self.y1 - (t * f64::from(self.height())).round() as u32
    }

    /// The row of a point at fraction `t` of the height, from the bottom.
    fn row(&self, t: f64) -> u32 {
        self.y1 - 1 - (t * f64::from(self.height() - 1)).round() as u32
    }
}

/// Draws the chart; checks `cancel` every [`CHECK_EVERY`] bars or segments.
fn draw(
    kind: ChartKind,
    values: &[f64],
    width: u32,
    height: u32,
    colour: Rgb<u8>,
    cancel: &CancellationToken,
) -> Result<RgbImage, ExecError> {
    let mut img = RgbImage::from_pixel(width, height, BACKGROUND);
    let plot = Plot::new(width, height);
    // Axes: left of and below the plot area.
    for y in plot.y0..=plot.y1 {
        img.put_pixel(plot.x0 - 1, y, AXIS);
    }
    for x in plot.x0 - 1..plot.x1 {
        img.put_pixel(x, plot.y1, AXIS);
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = values.len() as u64;
    let pw = u64::from(plot.width());
    match kind {
        ChartKind::Bar => {
            // Bars grow from zero, so the range always includes it.
            let (lo, hi) = (min.min(0.0), max.max(0.0));
            let zero = plot.boundary(fraction(0.0, lo, hi));
            if lo < 0.0 {
                for x in plot.x0..plot.x1 {
                    img.put_pixel(x, zero.min(plot.y1 - 1), AXIS);
                }
            }
            for (i, &v) in values.iter().enumerate() {
                if i % CHECK_EVERY == 0 {
                    checkpoint(cancel)?;
                }
                let i = i as u64;
                let mut left = plot.x0 + (i * pw / n) as u32;
                let mut right = (plot.x0 + ((i + 1) * pw / n) as u32).max(left + 1);
                if right - left >= 3 {
                    left += 1;
                    right -= 1;
                }
                let top = plot.boundary(fraction(v, lo, hi));
                let (from, to) = if top <= zero { (top, zero) } else { (zero, top) };
                for x in left..right {
                    for y in from..to {
                        img.put_pixel(x, y, colour);
                    }
                }
            }
        }
        ChartKind::Line => {
            let point = |i: usize| {
                let x = if n == 1 {
                    plot.x0 + plot.width() / 2
                } else {
                    plot.x0 + (i as u64 * (pw - 1) / (n - 1)) as u32
                };
                (x, plot.row(fraction(values[i], min, max)))
            };
            if n == 1 {
                let (x, y) = point(0);
                for dx in 0..3 {
                    for dy in 0..3 {
                        img.put_pixel(x + dx - 1, y + dy - 1, colour);
                    }
                }
            }
            for i in 1..values.len() {
                if i % CHECK_EVERY == 0 {
                    checkpoint(cancel)?;
                }
                segment(&mut img, point(i - 1), point(i), colour);
            }
        }
    }
    Ok(img)
}

/// A one-pixel line from `a` to `b`, both ends included (Bresenham).
fn segment(img: &mut RgbImage, a: (u32, u32), b: (u32, u32), colour: Rgb<u8>) {
    let (mut x, mut y) = (i64::from(a.0), i64::from(a.1));
    let (x1, y1) = (i64::from(b.0), i64::from(b.1));
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        img.put_pixel(x as u32, y as u32, colour);
        if x == x1 && y == y1 {
            return;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

#[cfg(test)]
mod tests {
    use cadre_agents::schema::validate;
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    const BLUE: [u8; 3] = DEFAULT_COLOUR;

    /// Runs the executor, checks the result against the result schema and decodes the PNG.
    async fn run(params: Value) -> Result<(ChartResult, RgbImage), ExecError> {
        let v = Chart.execute(ctx(), params).await?;
        validate(&Chart.result_schema().unwrap(), &v).unwrap_or_else(|e| panic!("{e}"));
        let r: ChartResult = serde_json::from_value(v).unwrap();
        let png = base64::decode(&r.png_base64).unwrap();
        let img = image::load_from_memory_with_format(&png, ImageFormat::Png)
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (r.width, r.height));
        Ok((r, img))
    }

    /// Pixels of `colour` in column `x`.
    fn in_column(img: &RgbImage, x: u32, colour: [u8; 3]) -> u32 {
        (0..img.height())
            .filter(|&y| img.get_pixel(x, y).0 == colour)
            .count() as u32
    }

    /// Rows of the pixels of `colour` in column `x`.
    fn rows(img: &RgbImage, x: u32, colour: [u8; 3]) -> Vec<u32> {
        (0..img.height())
            .filter(|&y| img.get_pixel(x, y).0 == colour)
            .collect()
    }

    #[tokio::test]
    async fn bar_heights_are_proportional_to_the_values() {
        let params = json!({ "kind": "bar", "values": [1, 2, 4], "width": 300, "height": 200 });
        validate(&Chart.params_schema().unwrap(), &params).unwrap();
        let (r, img) = run(params).await.unwrap();
        assert_eq!((r.width, r.height, r.min, r.max), (300, 200, 1.0, 4.0));
        // Margin 12: the plot is 276 wide (three bars of 92) and 176 high.
        let heights: Vec<u32> = [12 + 46, 12 + 92 + 46, 12 + 184 + 46]
            .iter()
            .map(|&x| in_column(&img, x, BLUE))
            .collect();
        assert_eq!(heights, vec![44, 88, 176]);
        // Every bar stands on the bottom axis.
        assert_eq!(img.get_pixel(58, 188).0, AXIS.0);
        assert_eq!(*rows(&img, 58, BLUE).last().unwrap(), 187);
        // The gap between bars is background.
        assert_eq!(in_column(&img, 12 + 92, BLUE), 0);
        assert_eq!(img.get_pixel(0, 0).0, BACKGROUND.0);
    }

    #[tokio::test]
    async fn negative_bars_hang_below_the_zero_line() {
        let (r, img) = run(json!({
            "kind": "bar", "values": [-2, 2, 0], "width": 160, "height": 160, "colour": "#ff0000",
        }))
        .await
        .unwrap();
        assert_eq!((r.min, r.max), (-2.0, 2.0));
        let red = [255, 0, 0];
        // Margin 10, plot rows 10..150, zero at row 80.
        let (down, up) = (rows(&img, 10 + 23, red), rows(&img, 10 + 70, red));
        assert_eq!((down.len(), up.len()), (70, 70));
        assert_eq!((down[0], *down.last().unwrap()), (80, 149));
        assert_eq!((up[0], *up.last().unwrap()), (10, 79));
        // The zero bar draws nothing; the zero line shows through.
        assert_eq!(in_column(&img, 10 + 117, red), 0);
        assert_eq!(img.get_pixel(10 + 117, 80).0, AXIS.0);
    }

    #[tokio::test]
    async fn line_charts_join_the_points() {
        let (_, img) = run(json!({ "kind": "line", "values": [0, 10, 5], "width": 101, "height": 64 }))
            .await
            .unwrap();
        // Margin 4: plot columns 4..97, rows 4..60.
        assert_eq!(img.get_pixel(4, 59).0, BLUE, "first point, bottom left");
        assert_eq!(img.get_pixel(50, 4).0, BLUE, "second point, top middle");
        assert_eq!(
            img.get_pixel(96, 31).0,
            BLUE,
            "third point, halfway up on the right"
        );
        // Connected: every column of the plot has some of the line.
        for x in 4..97 {
            assert!(in_column(&img, x, BLUE) > 0, "column {x}");
        }
        assert_eq!(in_column(&img, 2, BLUE), 0);
    }

    #[tokio::test]
    async fn equal_values_and_single_values() {
        let (r, img) = run(json!({ "kind": "line", "values": [5, 5, 5], "width": 64, "height": 64 }))
            .await
            .unwrap();
        assert_eq!((r.min, r.max), (5.0, 5.0));
        // A flat line across the middle (plot rows 4..60).
        for x in 4..60 {
            assert_eq!(rows(&img, x, BLUE), vec![31], "column {x}");
        }
        let (_, img) = run(json!({ "kind": "bar", "values": [3, 3], "width": 64, "height": 64 }))
            .await
            .unwrap();
        assert_eq!(in_column(&img, 20, BLUE), 56);
        let (_, img) = run(json!({ "kind": "bar", "values": [0, 0], "width": 64, "height": 64 }))
            .await
            .unwrap();
        assert_eq!((4..60).map(|x| in_column(&img, x, BLUE)).sum::<u32>(), 0);
        let (_, img) = run(json!({ "kind": "line", "values": [7], "width": 16, "height": 16 }))
            .await
            .unwrap();
        assert_eq!((0..16).map(|x| in_column(&img, x, BLUE)).sum::<u32>(), 9);
        // More values than columns: every column still gets a bar.
        let many: Vec<f64> = (1..=1000).map(f64::from).collect();
        let (_, img) = run(json!({ "kind": "bar", "values": many, "width": 16, "height": 16 }))
            .await
            .unwrap();
        assert!((2..14).all(|x| in_column(&img, x, BLUE) > 0));
    }

    #[tokio::test]
    async fn huge_values_do_not_overflow() {
        let values = json!([f64::MAX, -1e308, 0.0, f64::MIN_POSITIVE]);
        for kind in ["bar", "line"] {
            let (r, img) = run(json!({ "kind": kind, "values": values, "width": 64, "height": 48 }))
                .await
                .unwrap();
            assert_eq!((r.min, r.max), (-1e308, f64::MAX));
            assert!((0..64).map(|x| in_column(&img, x, BLUE)).sum::<u32>() > 0);
        }
    }

    #[tokio::test]
    async fn refuses_bad_params() {
        let ok = json!([1, 2]);
        for (params, want) in [
            (
                json!({ "kind": "bar", "values": ok, "width": 15 }),
                "width must be 16-2048",
            ),
            (
                json!({ "kind": "bar", "values": ok, "height": 2049 }),
                "height must be 16-2048",
            ),
            (
                json!({ "kind": "bar", "values": [] }),
                "values must hold 1-1000 numbers",
            ),
            (
                json!({ "kind": "bar", "values": vec![1; 1001] }),
                "values must hold 1-1000 numbers",
            ),
            (json!({ "kind": "pie", "values": ok }), "unknown variant `pie`"),
            (
                json!({ "kind": "line", "values": [1, "2"] }),
                "invalid type: string",
            ),
            // NaN has no JSON form: serde_json turns it into null.
            (
                json!({ "kind": "line", "values": [1, f64::NAN] }),
                "invalid type: null",
            ),
            (
                json!({ "kind": "bar", "values": ok, "colour": "red" }),
                "colour \"red\" is not #rrggbb",
            ),
            (
                json!({ "kind": "bar", "values": ok, "colour": "#12345g" }),
                "is not #rrggbb",
            ),
            (
                json!({ "kind": "bar", "values": ok, "colour": "#ffffff0" }),
                "is not #rrggbb",
            ),
            (
                json!({ "kind": "bar", "values": ok, "title": "x" }),
                "unknown field `title`",
            ),
        ] {
            let err = Chart.execute(ctx(), params.clone()).await.unwrap_err();
            assert!(
                matches!(&err, ExecError::InvalidParams(m) if m.contains(want)),
                "{params}: {err:?}"
            );
        }
        // A number too large for f64 cannot even be read as JSON.
        assert!(serde_json::from_str::<Value>("[1e400]").is_err());
        assert_eq!(parse_colour("#A0b1C2"), Some([0xa0, 0xb1, 0xc2]));
    }

    #[tokio::test]
    async fn cancel_stops_drawing() {
        let c = ctx();
        c.cancel.cancel();
        let res = Chart
            .execute(c, json!({ "kind": "line", "values": [1, 2, 3] }))
            .await;
        assert_eq!(res, Err(ExecError::Cancelled));
        // The drawing loop itself checks the token.
        let cancel = CancellationToken::new();
        cancel.cancel();
        let res = draw(ChartKind::Bar, &[1.0; 100], 64, 64, Rgb(BLUE), &cancel);
        assert_eq!(res.err(), Some(ExecError::Cancelled));
    }
}
