//! Built-in executors.
//!
//! | name        | what it does                                             |
//! |-------------|----------------------------------------------------------|
//! | `echo`      | returns its params (diagnostics)                         |
//! | `sleep`     | sleeps `ms` with progress, honours cancel (diagnostics)  |
//! | `fail`      | fails with a message, retryable or not (diagnostics)     |
//! | `panic`     | panics, killing its worker (diagnostics)                 |
//! | `summarize` | extractive summary of `text`, offline                    |
//! | `image_analyze` | PNG/JPEG size, colours, brightness, perceptual hash, offline |
//! | `describe_image` | a sentence about an image, via a delegated `image_analyze` |
//! | `language`  | detects en/de/fr/es/it/pt/nl with a confidence, offline  |
//! | `keywords`  | most frequent non-stop-words of `text`, offline          |
//! | `readability` | Flesch reading ease and Flesch–Kincaid grade, offline  |
//! | `sentiment` | lexicon-based score -1..1 with negation, offline          |
//! | `code_metrics` | lines, comments, language, cyclomatic complexity, offline |
//! | `audio_analyze` | WAV duration, loudness (dBFS), silent stretches, offline |
//! | `thumbnail` | PNG/JPEG scaled to fit `max_side`, as base64 PNG, offline |

pub mod audio_analyze;
pub mod base64;
pub mod blocking;
mod code_metrics;
mod debug;
mod describe_image;
pub mod image_analyze;
mod keywords;
mod language;
pub mod languages;
mod readability;
mod sentiment;
mod summarize;
#[cfg(test)]
mod test_support;
pub mod text;
mod thumbnail;

use std::sync::Arc;

use crate::ExecutorRegistry;

pub use audio_analyze::AudioAnalyze;
pub use code_metrics::MeasureCode;
pub use debug::{Echo, Fail, Panic, Sleep};
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
