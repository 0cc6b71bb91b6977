//! The cadre contract.
//!
//! Layout:
//! - [`v1`]: code generated from `proto/cadre/v1/*.proto` (messages, tonic clients and servers).
//! - [`domain`]: the domain types every tier speaks ([`TaskId`], [`TaskSpec`], [`TaskState`],
//!   [`TaskEvent`], [`Priority`], [`RetryPolicy`], [`TaskRecord`]) and their conversions to and
//!   from the wire types, including validation of untrusted wire input.
#![forbid(unsafe_code)]

pub mod domain;

/// Generated wire types and services of package `cadre.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("cadre.v1");

    /// Encoded `FileDescriptorSet` of the whole contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cadre_descriptor");
}

pub use domain::*;
