pub mod cluster;
pub mod embedder;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod s3;
pub mod shard;
pub mod wait;
