//! Warm hand-off when shards join or leave.
//!
//! A membership change moves about 1/N of the indexes to new owners, which
//! have them cold. For `handoff_grace` after the change the router keeps the
//! previous member sets, and routing falls back to an index's previous owners
//! (still hot) whenever a new owner answers that it is cold; a previous owner
//! is asked as a fan-out is, so it never evicts for an index it no longer
//! owns. Meanwhile each new owner is asked to warm what it gained through
//! its admission queue: indexes in use (hot somewhere) as owner restores,
//! the rest into free room only.
//! Traffic moves to a new owner as soon as it answers hot, so a scale-up
//! causes no burst of cold 503s.

use super::forward::{MAX_PREVIOUS_SETS, PreviousMembers, RouterState, owners_among};
use super::membership::ShardEndpoint;
use crate::api::ResidencyState;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Requests in flight from one hand-off to the new owners.
const WARM_CONCURRENCY: usize = 4;

/// Follows membership changes until the membership channel closes.
pub async fn run(state: Arc<RouterState>) {
    let mut rx = state.members.clone();
    let mut last: Vec<ShardEndpoint> = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let now: Vec<ShardEndpoint> = rx.borrow_and_update().clone();
        let names = |v: &[ShardEndpoint]| v.iter().map(|m| m.name.clone()).collect::<BTreeSet<_>>();
        if names(&now) != names(&last) && !last.is_empty() {
            tracing::info!(
                before = last.len(),
                after = now.len(),
                "shard membership changed; handing indexes off"
            );
            let until = Instant::now() + state.cfg.handoff_grace;
            let mut previous = state.previous.lock();
            // A change within the grace of another (a StatefulSet scales one
            // pod at a time) keeps the sets from before: the first set's
            // owners are hot, and so are interim owners that loaded indexes
            // since (a pod that restarts and comes back within the grace).
            let sets = match previous.take() {
                Some(p) if Instant::now() < p.until => {
                    let mut sets = p.sets;
                    sets.push(last.clone());
                    if sets.len() > MAX_PREVIOUS_SETS {
                        sets.remove(1);
                    }
                    sets
                }
                _ => vec![last.clone()],
            };
            *previous = Some(PreviousMembers { sets, until });
            drop(previous);
            tokio::spawn(warm_new_owners(state.clone(), last.clone(), now.clone()));
        }
        last = now;
    }
}

/// The (index, new owner) pairs a membership change creates.
pub fn gained(
    ids: &[String],
    before: &[ShardEndpoint],
    after: &[ShardEndpoint],
    replicas: usize,
) -> Vec<(String, ShardEndpoint)> {
    let mut out = Vec::new();
    for id in ids {
        let old: BTreeSet<String> = owners_among(id, before, replicas).into_iter().map(|m| m.name).collect();
        for owner in owners_among(id, after, replicas) {
            if !old.contains(&owner.name) {
                out.push((id.clone(), owner));
            }
        }
    }
    out
}

async fn warm_new_owners(state: Arc<RouterState>, before: Vec<ShardEndpoint>, after: Vec<ShardEndpoint>) {
    let Some(token) = state.cfg.admin_token.clone() else {
        tracing::info!("no admin token: new owners warm their indexes on first use");
        return;
    };
    // Indexes in use (hot on a shard still here) are warmed as owners'
    // restores, which may evict: a gained index is the new owner's to serve.
    // The rest (including what only a departed shard held) warm into free
    // room only, as before the change nobody may have used them.
    let (ids, in_use): (Vec<String>, BTreeSet<String>) =
        match super::http::shard_lists(&state, super::http::STATUS_TIMEOUT).await {
            Ok(lists) => {
                let in_use = lists
                    .iter()
                    .filter(|s| s.state == ResidencyState::Hot)
                    .map(|s| s.index_id.clone())
                    .collect();
                let all: BTreeSet<String> = lists.into_iter().map(|s| s.index_id).collect();
                (all.into_iter().collect(), in_use)
            }
            Err(e) => {
                tracing::warn!(error = %e.body.message, "hand-off: could not list indexes");
                return;
            }
        };
    let pairs = gained(&ids, &before, &after, state.cfg.replicas);
    let n = pairs.len();
    futures::stream::iter(pairs)
        .for_each_concurrent(WARM_CONCURRENCY, |(id, owner)| {
            let (client, token) = (state.client.clone(), token.clone());
            let body = if in_use.contains(&id) {
                serde_json::json!({ "handoff": true })
            } else {
                serde_json::json!({ "preload": true })
            };
            async move {
                let url = format!("{}/v1/admin/indexes/{id}", owner.url);
                let r = client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&body)
                    .timeout(std::time::Duration::from_secs(5))
                    .send()
                    .await;
                if let Err(e) = r {
                    tracing::debug!(index_id = %id, shard = %owner.name, error = %e, "hand-off warm request failed");
                }
            }
        })
        .await;
    tracing::info!(pairs = n, "hand-off: new owners asked to warm what they gained");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<ShardEndpoint> {
        (0..n)
            .map(|i| ShardEndpoint {
                name: format!("trusty-shard-{i}"),
                url: format!("http://s{i}"),
            })
            .collect()
    }

    #[test]
    fn a_new_shard_gains_about_its_share_and_only_it_gains() {
        let ids: Vec<String> = (0..400).map(|i| format!("idx-{i}")).collect();
        let before = members(3);
        let after = members(4);
        let pairs = gained(&ids, &before, &after, 2);
        assert!(
            pairs.iter().all(|(_, o)| o.name == "trusty-shard-3"),
            "only the new shard gains"
        );
        // With 2 of 4 owners, the new shard owns about half of the indexes.
        assert!((150..=250).contains(&pairs.len()), "{}", pairs.len());
        assert!(gained(&ids, &after, &after, 2).is_empty());
    }

    /// Scaling 3 → 4 → 5 one pod at a time: the fallback keeps the three
    /// shards that were hot before the first change, and the four that were
    /// members in between (interim owners may have loaded indexes since).
    #[tokio::test]
    async fn a_second_change_within_the_grace_keeps_every_previous_set() {
        let (tx, rx) = tokio::sync::watch::channel(members(3));
        let cfg = super::super::config::RouterConfig::local("");
        let health = Arc::new(super::super::health::Health::new(&cfg));
        let state = Arc::new(RouterState::new(cfg, rx, health, reqwest::Client::new()));
        let follow = tokio::spawn(run(state.clone()));
        let previous = || {
            state
                .previous
                .lock()
                .as_ref()
                .map(|p| (p.sets.iter().map(Vec::len).collect::<Vec<_>>(), p.until))
        };
        // Polls until `done`; the handing off runs on another task.
        let settle = async |done: &dyn Fn() -> bool| {
            for _ in 0..5_000 {
                if done() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        settle(&|| tx.receiver_count() == 2).await; // it has read the first set
        tx.send(members(4)).unwrap();
        settle(&|| previous().is_some()).await;
        let (_, first_until) = previous().expect("the first change was handed off");
        tx.send(members(5)).unwrap();
        settle(&|| previous().is_some_and(|(_, until)| until > first_until)).await;
        let (kept, until) = previous().unwrap();
        assert!(until > first_until, "the second change was handed off too");
        assert_eq!(kept, [3, 4]);
        // A long rolling change keeps the first set and the latest ones.
        for n in 6..12 {
            tx.send(members(n)).unwrap();
            settle(&|| previous().is_some_and(|(sets, _)| sets.last() == Some(&(n - 1)))).await;
        }
        assert_eq!(previous().unwrap().0, [3, 8, 9, 10]);
        drop(tx);
        follow.await.unwrap();
    }
}
