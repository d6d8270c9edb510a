//! The JSON API spoken by shards and routers alike, so a client cannot tell
//! one shard from the whole cluster.

pub mod error;
pub mod openapi;
pub mod types;

pub use error::{ApiError, ErrorBody};
pub use types::*;
