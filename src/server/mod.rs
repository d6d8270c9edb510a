//! HTTP plumbing shared by the shard and the router: request metrics,
//! bearer-token checks, health routes, the index API's route table, request
//! parameters, flag parsers, the multi-index search both roles run, and
//! graceful serving.

pub(crate) mod auth;
pub(crate) mod fanout;
pub(crate) mod flags;
pub(crate) mod index_api;
pub(crate) mod metrics_layer;
pub(crate) mod params;
pub(crate) mod serve;
