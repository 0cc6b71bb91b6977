//! Executors that run sub-tasks and combine, describe or return their results.

pub mod delegate;
pub mod describe_image;
pub mod fuse;

pub use delegate::Delegating;
pub use describe_image::DescribeImage;
pub use fuse::Fuse;
