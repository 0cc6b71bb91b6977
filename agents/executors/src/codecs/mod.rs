//! Decoders several executors share.

pub mod base64;
pub mod mp3;
