//! The cadre contract: the wire (`.proto` files and the code generated from them) and the
//! domain types every tier speaks, with the clock they are stamped by.
//!
//! Layer: 0 (the bottom).
//! May import: none of our crates.
//!
//! Layout:
//! - [`v1`]: code generated from `proto/cadre/v1/*.proto` (messages, tonic clients and servers).
//! - [`domain`]: the domain types every tier speaks ([`TaskId`], [`TaskSpec`], [`TaskState`],
//!   [`TaskEvent`], [`Priority`], [`RetryPolicy`], [`TaskRecord`]) and their conversions to and
//!   from the wire types, including validation of untrusted wire input; [`TaskRecord::queued`]
//!   builds the new QUEUED task every intake path stores, [`RetryPolicy::wait_budget`] the
//!   default wait for a task to finish.
//! - [`role`]: the rings a credential holds ([`Role`]).
//! - [`clock`]: wall time in Unix milliseconds and the UTC day, used by every tier.
//! - [`codec`]: the servers' codec, which answers an undecodable request with INVALID_ARGUMENT.
#![forbid(unsafe_code)]

pub mod clock;
pub mod codec;
pub mod domain;
pub mod role;

/// Generated wire types and services of package `cadre.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("cadre.v1");
    include!(concat!(env!("OUT_DIR"), "/clients/cadre.v1.rs"));

    /// Encoded `FileDescriptorSet` of the whole contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cadre_descriptor");
}

pub use domain::*;
pub use role::Role;
