//! The shard service: a cache of index versions in front of object storage.
//!
//! Every handler reaches an index through one resolver,
//! [`lazy_load::Resolver::resolve`], which keeps a per-index state
//! (`Unknown → Cold → Loading → Hot`, or `Failed`) and a loading gate so that
//! any number of concurrent requests for a cold index cause exactly one
//! restore. Loads run as background tasks: a request that waits too long gets
//! a retryable 503 while the load carries on. Restores are admitted a few at
//! a time ([`admission`]) and reserve their bytes against memory and disk
//! budgets before downloading ([`budget`]); version directories are removed
//! only when no reader holds them ([`disk`]); new versions are noticed by
//! polling `CURRENT` and swapped in without interrupting queries
//! ([`discovery`]).

pub mod admission;
pub(crate) mod budget;
pub mod config;
mod cpu_priority;
pub(crate) mod discovery;
pub mod disk;
pub(crate) mod failure;
pub(crate) mod http;
pub(crate) mod lazy_load;
pub(crate) mod loaded;
pub(crate) mod residency;
pub mod server;

pub use config::ShardConfig;
pub use lazy_load::{ResolveError, Resolver};
