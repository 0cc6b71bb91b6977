//! The offline image, audio and chart executors.

pub mod audio_analyze;
pub mod chart;
pub mod image_analyze;
pub mod thumbnail;

pub use audio_analyze::AudioAnalyze;
pub use chart::Chart;
pub use image_analyze::ImageAnalyze;
pub use thumbnail::Thumbnail;
