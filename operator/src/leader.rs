//! Lease-based leader election (`coordination.k8s.io/v1`).
//!
//! Two operator replicas must never reconcile at once: both would create build
//! Jobs and race on status. Only the replica holding the Lease runs the
//! controller. Acquisition and renewal are optimistic (the Lease's
//! `resourceVersion` makes a concurrent takeover fail with 409), and a leader
//! that cannot renew within the lease duration stops its controller before
//! another replica may take over.

use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

/// What a single acquire-or-renew attempt saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// We hold the lease (freshly acquired or renewed).
    Leading,
    /// Someone else holds an unexpired lease.
    Following { holder: String },
}

impl LeaderElector {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        LeaderElector {
            api,
            name: name.into(),
            identity: identity.into(),
            lease_duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round of the election: create the Lease if missing, renew it if we
    /// hold it, take it over if its holder let it expire, else observe.
    pub async fn try_acquire_or_renew(&self) -> Result<LeaseState, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(LeaseState::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => self.observe().await,
                Err(e) => Err(e),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renew), Some(secs)) => renew.0 + SignedDuration::from_secs(i64::from(secs)) < now,
            _ => true,
        };
        if !ours && !holder.is_empty() && !expired {
            return Ok(LeaseState::Following { holder });
        }

        let mut updated = lease.clone();
        let mut new_spec = spec.clone();
        if !ours {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            new_spec.holder_identity = Some(self.identity.clone());
        }
        new_spec.renew_time = Some(MicroTime(now));
        new_spec.lease_duration_seconds = Some(self.duration_secs());
        updated.spec = Some(new_spec);
        // `replace` carries the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self.api.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(LeaseState::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => self.observe().await,
            Err(e) => Err(e),
        }
    }

    async fn observe(&self) -> Result<LeaseState, kube::Error> {
        let lease = self.api.get(&self.name).await?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        Ok(if holder == self.identity {
            LeaseState::Leading
        } else {
            LeaseState::Following { holder }
        })
    }

    /// Gives the lease up (on shutdown) so a standby takes over without
    /// waiting for it to expire. Only releases a lease we still hold.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `lead` whenever this replica holds the lease, until `shutdown`
    /// completes. `lead` is started afresh on each acquisition and aborted as
    /// soon as leadership is lost (renewal refused, or not renewed within the
    /// renew deadline, whether a round is running or not).
    pub async fn run<F, Fut>(&self, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>, mut lead: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let retry = (self.lease_duration / 3).max(Duration::from_millis(200));
        // Stop leading well before the lease can expire for the others.
        let renew_deadline = self.lease_duration * 2 / 3;
        tokio::pin!(shutdown);
        let mut task: Option<tokio::task::JoinHandle<()>> = None;
        let mut last_renew = tokio::time::Instant::now();
        let stop = |task: &mut Option<tokio::task::JoinHandle<()>>| {
            if let Some(t) = task.take() {
                tracing::error!("could not renew the lease in time; stopping the controller");
                t.abort();
                metrics.leader.set(0);
            }
        };
        loop {
            let deadline = task.as_ref().map(|_| last_renew + renew_deadline);
            // A hung API connection must not keep an old leader reconciling:
            // each round gets a third of the lease, then counts as failed.
            let round_started = tokio::time::Instant::now();
            let round = tokio::time::timeout(retry, self.try_acquire_or_renew());
            let state = tokio::select! {
                state = round => match state {
                    Ok(state) => state,
                    Err(_) => Err(kube::Error::Service(
                        format!("lease round took longer than {retry:?}").into(),
                    )),
                },
                () = until(deadline) => {
                    stop(&mut task);
                    continue;
                }
            };
            if state.is_ok() {
                metrics.note_election_round();
            }
            match state {
                Ok(LeaseState::Leading) => {
                    // The renewal written may be as old as the round's start,
                    // and the others count the lease from it: so do we.
                    last_renew = round_started;
                    if task.as_ref().is_none_or(|t| t.is_finished()) {
                        tracing::info!(identity = %self.identity, lease = %self.name, "acquired leadership");
                        metrics.leader.set(1);
                        task = Some(tokio::spawn(lead()));
                    }
                }
                Ok(LeaseState::Following { holder }) => {
                    if let Some(t) = task.take() {
                        tracing::warn!(%holder, "lost leadership; stopping the controller");
                        t.abort();
                        metrics.leader.set(0);
                    } else {
                        tracing::debug!(%holder, "standing by");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease election round failed"),
            }
            let deadline = task.as_ref().map(|_| last_renew + renew_deadline);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(retry) => {}
                () = until(deadline) => stop(&mut task),
            }
        }
        if let Some(t) = task.take() {
            t.abort();
        }
        metrics.leader.set(0);
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

/// Completes at `deadline`; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
