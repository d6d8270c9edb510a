//! The router: stateless placement of index ids on shards.
//!
//! [`ring`] ranks shards per index with rendezvous hashing over stable shard
//! names; [`membership`] keeps the shard set current (static list, DNS, or a
//! Kubernetes EndpointSlice watch); [`health`] ejects and re-admits shards;
//! [`forward`] sends a request to the first healthy owner and retries on the
//! next; [`handoff`] keeps previous owners serving while new ones warm up;
//! [`http`] is the public API, the same one a shard serves.

pub mod config;
pub(crate) mod forward;
pub(crate) mod handoff;
pub(crate) mod health;
pub(crate) mod http;
pub mod membership;
pub mod ring;
pub mod server;
