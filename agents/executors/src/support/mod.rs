//! What several executors share: running work off the async runtime, building schemas, word
//! lists, splitting text, rounding, reading `Retry-After`; and the unit tests' helpers.

pub mod blocking;
pub mod lexicon;
pub mod params_schema;
pub mod retry_after;
pub mod round;
#[cfg(test)]
pub(crate) mod test_support;
pub mod words;
