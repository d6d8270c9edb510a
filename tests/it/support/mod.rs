pub mod cluster;
pub mod fixtures;
pub mod process;
pub mod s3;
