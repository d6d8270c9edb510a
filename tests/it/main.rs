//! Integration tests: real processes, a real S3-compatible server, real HTTP.
//! One test binary links far faster than many.

mod k8s_membership;
mod load;
mod mcp;
mod metrics_contract;
mod ranking;
mod reading;
mod router;
mod shard;
mod storage;
mod support;
