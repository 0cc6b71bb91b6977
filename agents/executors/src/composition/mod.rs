//! Executors that run sub-tasks and combine or describe their results.

pub mod describe_image;
pub mod fuse;

pub use describe_image::DescribeImage;
pub use fuse::Fuse;
