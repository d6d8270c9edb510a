pub mod cluster;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod s3;
