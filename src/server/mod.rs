//! HTTP plumbing shared by the shard and the router: request metrics,
//! bearer-token checks, health routes and graceful serving.

pub mod auth;
pub mod fanout;
pub mod metrics_layer;
pub mod params;
pub mod serve;
