//! Metrics (Prometheus, `trusty_` prefix) and logging shared by every role.

pub mod logging;
pub(crate) mod metrics;
