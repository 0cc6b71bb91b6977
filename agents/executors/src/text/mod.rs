//! The offline text executors: summaries, keywords, language, readability, sentiment and code
//! metrics.

pub mod code_metrics;
pub mod keywords;
pub mod language;
pub mod readability;
pub mod sentiment;
pub mod summarize;

pub use code_metrics::MeasureCode;
pub use keywords::Keywords;
pub use language::DetectLanguage;
pub use readability::MeasureReadability;
pub use sentiment::AnalyzeSentiment;
pub use summarize::Summarize;
