//! Pure functions that turn what the operator observed (build Job, router
//! answer) into `IndexStatus` fields.
//!
//! Kept free of I/O so every phase and condition rule is unit-tested directly,
//! and the reconciler only decides *what* to observe.

use crate::crd::{Counts, IndexStatus, Owner, Phase, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use trusty_core::api::types::{IndexStatus as ClusterIndexStatus, ResidencyState, ShardIndexStatus};

/// Sets (or replaces) a condition, keeping `lastTransitionTime` when the status
/// value did not change so watchers see real transitions only.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status_str = if status { "True" } else { "False" };
    let message = truncate(message.into(), 1024);
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status_str)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let cond = Condition {
        type_: type_.to_string(),
        status: status_str.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = cond,
        None => conditions.push(cond),
    }
}

pub fn condition<'a>(status: &'a IndexStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

pub fn condition_is(status: &IndexStatus, type_: &str, value: bool) -> bool {
    condition(status, type_).is_some_and(|c| c.status == if value { "True" } else { "False" })
}

/// Condition messages are capped by the API server (32 KiB); events at 1 KiB.
/// Job messages and router errors can be long, so keep them readable.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(s.floor_char_boundary(max.saturating_sub(3)));
        s.push_str("...");
    }
    s
}

/// Copies the cluster's view of the index into `status` and derives phase,
/// `Available` and `Degraded`.
///
/// Rules: Available=True when at least one owner is hot (whatever version it
/// serves). An owner is ready when hot on `published` (the version `CURRENT`
/// names; any version when unknown). Phase Degraded when an owner failed or a
/// hot one reports an error, such as a new version it could not swap in (the
/// errors go to the condition message and `lastError`); Available when every
/// wanted owner is ready; otherwise Published (owners cold, loading or still
/// swapping). The router places an index on its own replication factor of
/// owners whatever `replicas` asks, so the owners it reports cap the wanted
/// count (said in the Published condition).
pub fn apply_cluster_status(
    status: &mut IndexStatus,
    cluster: &ClusterIndexStatus,
    replicas: i32,
    published: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) {
    status.current_version = cluster
        .version
        .clone()
        .or_else(|| cluster.owners.iter().find_map(|o| o.version.clone()));
    let counts = cluster
        .counts
        .as_ref()
        .or_else(|| cluster.owners.iter().find_map(|o| o.counts.as_ref()));
    status.counts = counts.map(|c| Counts {
        files: clamp_i64(c.files),
        chunks: clamp_i64(c.chunks),
    });
    status.owners = cluster
        .owners
        .iter()
        .map(|o| Owner {
            shard: o.shard.clone(),
            state: o.state.as_str().to_string(),
            version: o.version.clone(),
            last_load_time: o.last_loaded_at.clone(),
            last_error: o.last_error.clone(),
        })
        .collect();

    let is_hot = |o: &&ShardIndexStatus| o.state == ResidencyState::Hot;
    let stale = |o: &ShardIndexStatus| published.is_some_and(|p| o.version.as_deref() != Some(p));
    let hot = cluster.owners.iter().filter(is_hot).count();
    let ready = cluster.owners.iter().filter(is_hot).filter(|o| !stale(o)).count();
    let still_swapping: Vec<String> = cluster
        .owners
        .iter()
        .filter(is_hot)
        .filter(|o| stale(o) && o.last_error.is_none())
        .map(|o| {
            format!(
                "{} still serves {}",
                o.shard,
                o.version.as_deref().unwrap_or("an unknown version")
            )
        })
        .collect();
    let failed = cluster.owners.iter().filter(|o| o.state == ResidencyState::Failed);
    let failed_count = failed.clone().count();
    let mut problems: Vec<String> = failed
        .map(|o| format!("{}: {}", o.shard, o.last_error.as_deref().unwrap_or("load failed")))
        .collect();
    let mut stale_errors = 0;
    for o in cluster.owners.iter().filter(is_hot) {
        let Some(error) = &o.last_error else { continue };
        match (stale(o), published) {
            (true, Some(p)) => {
                stale_errors += 1;
                let served = o.version.as_deref().unwrap_or("an unknown version");
                problems.push(format!("{} serves {served}, not the published {p}: {error}", o.shard));
            }
            _ => problems.push(format!("{}: {error}", o.shard)),
        }
    }
    let asked = usize::try_from(replicas.max(1)).unwrap_or(1);
    let placed = cluster.owners.len();
    let wanted = asked.min(placed).max(1);
    status.ready_owners = Some(format!("{ready}/{wanted}"));
    if placed > 0 && asked > placed {
        set_condition(
            &mut status.conditions,
            condition::PUBLISHED,
            true,
            "ReplicasCapped",
            format!(
                "spec.replicas is {asked} but the router places the index on {placed} owner(s) \
                 (its replication factor, router.indexReplicas in the chart, or fewer shards); \
                 readiness counts those {placed}"
            ),
            generation,
            now,
        );
    }

    if hot > 0 {
        let mut message = format!("{hot} of {wanted} owners serve the index");
        if !still_swapping.is_empty() {
            let p = published.unwrap_or_default();
            message = format!(
                "{message}; {ready} serve the published {p}; {}",
                still_swapping.join(", ")
            );
        }
        set_condition(
            &mut status.conditions,
            condition::AVAILABLE,
            true,
            "OwnerHot",
            message,
            generation,
            now,
        );
    } else {
        let reason = if failed_count == 0 {
            "NoOwnerHot"
        } else {
            "OwnersFailed"
        };
        set_condition(
            &mut status.conditions,
            condition::AVAILABLE,
            false,
            reason,
            format!("no owner serves the index yet ({} owners known)", cluster.owners.len()),
            generation,
            now,
        );
    }

    if problems.is_empty() {
        set_condition(
            &mut status.conditions,
            condition::DEGRADED,
            false,
            "OwnersHealthy",
            "no owner failed",
            generation,
            now,
        );
        status.phase = if ready >= wanted {
            Phase::Available
        } else {
            Phase::Published
        };
        status.last_error = None;
    } else {
        let n = problems.len();
        let list = problems.join("; ");
        let (reason, message) = if failed_count > 0 {
            ("OwnersFailed", format!("{n} owner(s) failed: {list}"))
        } else if stale_errors > 0 {
            let p = published.unwrap_or_default();
            (
                "StaleVersion",
                format!("{n} owner(s) did not load the published version {p}: {list}"),
            )
        } else {
            ("OwnerError", format!("{n} owner(s) report an error: {list}"))
        };
        set_condition(
            &mut status.conditions,
            condition::DEGRADED,
            true,
            reason,
            message.clone(),
            generation,
            now,
        );
        status.phase = Phase::Degraded;
        status.last_error = Some(truncate(message, 1024));
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trusty_core::api::types::IndexCounts;

    fn owner(shard: &str, state: ResidencyState, err: Option<&str>) -> ShardIndexStatus {
        ShardIndexStatus {
            index_id: "repo".into(),
            shard: shard.into(),
            state,
            version: Some("v1".into()),
            counts: None,
            bytes: None,
            last_error: err.map(String::from),
            failed_attempts: None,
            last_loaded_at: Some("2025-01-01T00:00:00Z".into()),
            next_retry_at: None,
        }
    }

    fn cluster(owners: Vec<ShardIndexStatus>) -> ClusterIndexStatus {
        ClusterIndexStatus {
            index_id: "repo".into(),
            version: Some("v1".into()),
            counts: Some(IndexCounts {
                files: 3,
                chunks: 42,
                ..Default::default()
            }),
            owners,
        }
    }

    #[test]
    fn all_hot_is_available() {
        let mut s = IndexStatus::default();
        let c = cluster(vec![
            owner("shard-0", ResidencyState::Hot, None),
            owner("shard-1", ResidencyState::Hot, None),
        ]);
        apply_cluster_status(&mut s, &c, 2, None, Some(1), Timestamp::now());
        assert_eq!(s.phase, Phase::Available);
        assert_eq!(s.ready_owners.as_deref(), Some("2/2"));
        assert_eq!(s.counts, Some(Counts { files: 3, chunks: 42 }));
        assert_eq!(s.current_version.as_deref(), Some("v1"));
        assert!(condition_is(&s, condition::AVAILABLE, true));
        assert!(condition_is(&s, condition::DEGRADED, false));
        assert_eq!(s.owners[1].shard, "shard-1");
        assert_eq!(s.owners[1].state, "hot");
    }

    #[test]
    fn partly_loading_is_published_but_available() {
        let mut s = IndexStatus::default();
        let c = cluster(vec![
            owner("shard-0", ResidencyState::Hot, None),
            owner("shard-1", ResidencyState::Loading, None),
        ]);
        apply_cluster_status(&mut s, &c, 2, None, None, Timestamp::now());
        assert_eq!(s.phase, Phase::Published);
        assert_eq!(s.ready_owners.as_deref(), Some("1/2"));
        assert!(condition_is(&s, condition::AVAILABLE, true));
    }

    #[test]
    fn failed_owner_is_degraded_with_its_error() {
        let mut s = IndexStatus::default();
        let c = cluster(vec![
            owner("shard-0", ResidencyState::Hot, None),
            owner("shard-1", ResidencyState::Failed, Some("checksum mismatch")),
        ]);
        apply_cluster_status(&mut s, &c, 2, None, None, Timestamp::now());
        assert_eq!(s.phase, Phase::Degraded);
        assert!(condition_is(&s, condition::DEGRADED, true));
        assert!(condition_is(&s, condition::AVAILABLE, true));
        let msg = &condition(&s, condition::DEGRADED).unwrap().message;
        assert!(msg.contains("shard-1: checksum mismatch"), "{msg}");
        assert!(s.last_error.unwrap().contains("checksum mismatch"));
    }

    #[test]
    fn replicas_beyond_the_placed_owners_are_capped() {
        let mut s = IndexStatus::default();
        let c = cluster(vec![
            owner("shard-0", ResidencyState::Hot, None),
            owner("shard-1", ResidencyState::Hot, None),
        ]);
        apply_cluster_status(&mut s, &c, 3, None, Some(1), Timestamp::now());
        assert_eq!(s.phase, Phase::Available);
        assert_eq!(s.ready_owners.as_deref(), Some("2/2"));
        let published = condition(&s, condition::PUBLISHED).expect("capping is reported");
        assert_eq!(
            (published.status.as_str(), published.reason.as_str()),
            ("True", "ReplicasCapped")
        );

        // Capped, one of the two placed owners is still not enough.
        let mut s = IndexStatus::default();
        let c = cluster(vec![
            owner("shard-0", ResidencyState::Hot, None),
            owner("shard-1", ResidencyState::Loading, None),
        ]);
        apply_cluster_status(&mut s, &c, 3, None, Some(1), Timestamp::now());
        assert_eq!(s.phase, Phase::Published);
        assert_eq!(s.ready_owners.as_deref(), Some("1/2"));

        // Within the placed owners nothing is said.
        let mut s = IndexStatus::default();
        apply_cluster_status(&mut s, &c, 2, None, Some(1), Timestamp::now());
        assert!(condition(&s, condition::PUBLISHED).is_none());
    }

    #[test]
    fn owners_on_another_version_than_published_are_not_ready() {
        let on = |shard, version: &str, err: Option<&str>| ShardIndexStatus {
            version: Some(version.into()),
            ..owner(shard, ResidencyState::Hot, err)
        };
        // Still swapping: serving, not ready, not degraded.
        let mut s = IndexStatus::default();
        let c = cluster(vec![on("shard-0", "v2", None), on("shard-1", "v1", None)]);
        apply_cluster_status(&mut s, &c, 2, Some("v2"), None, Timestamp::now());
        assert_eq!(s.phase, Phase::Published);
        assert_eq!(s.ready_owners.as_deref(), Some("1/2"));
        assert!(condition_is(&s, condition::AVAILABLE, true));
        assert!(condition_is(&s, condition::DEGRADED, false));
        let available = &condition(&s, condition::AVAILABLE).unwrap().message;
        assert!(available.contains("shard-1 still serves v1"), "{available}");

        // The swap failed: degraded, naming the owner, its version and its error.
        let c = cluster(vec![
            on("shard-0", "v2", None),
            on(
                "shard-1",
                "v1",
                Some("new version v2 failed (corrupt): checksum mismatch"),
            ),
        ]);
        apply_cluster_status(&mut s, &c, 2, Some("v2"), None, Timestamp::now());
        assert_eq!(s.phase, Phase::Degraded);
        let degraded = condition(&s, condition::DEGRADED).unwrap();
        assert_eq!(degraded.reason, "StaleVersion");
        assert!(
            degraded
                .message
                .contains("shard-1 serves v1, not the published v2: new version v2 failed"),
            "{}",
            degraded.message
        );
        assert_eq!(s.last_error.as_deref(), Some(degraded.message.as_str()));

        // A hot owner on the published version that reports an error is degraded too.
        let c = cluster(vec![
            on("shard-0", "v2", None),
            on("shard-1", "v2", Some("polling CURRENT: timed out")),
        ]);
        apply_cluster_status(&mut s, &c, 2, Some("v2"), None, Timestamp::now());
        assert_eq!(s.phase, Phase::Degraded);
        assert_eq!(condition(&s, condition::DEGRADED).unwrap().reason, "OwnerError");

        // Nothing known about what is published: any hot version counts.
        let c = cluster(vec![on("shard-0", "v2", None), on("shard-1", "v1", None)]);
        apply_cluster_status(&mut s, &c, 2, None, None, Timestamp::now());
        assert_eq!(s.phase, Phase::Available);
    }

    #[test]
    fn no_owner_hot_is_not_available() {
        let mut s = IndexStatus::default();
        let c = cluster(vec![owner("shard-0", ResidencyState::Cold, None)]);
        apply_cluster_status(&mut s, &c, 1, None, None, Timestamp::now());
        assert!(condition_is(&s, condition::AVAILABLE, false));
        assert_eq!(s.phase, Phase::Published);
        assert_eq!(s.ready_owners.as_deref(), Some("0/1"));
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut conds = Vec::new();
        let t1: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let t2: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        set_condition(&mut conds, "Built", true, "A", "m", None, t1);
        set_condition(&mut conds, "Built", true, "B", "m2", None, t2);
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time.0, t1);
        assert_eq!(conds[0].reason, "B");
        set_condition(&mut conds, "Built", false, "C", "m3", None, t2);
        assert_eq!(conds[0].last_transition_time.0, t2);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = truncate("é".repeat(10), 8);
        assert!(s.ends_with("..."));
        assert!(s.len() <= 8);
        assert_eq!(truncate("short".into(), 8), "short");
    }
}
