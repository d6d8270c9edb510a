//! Publish and open through a real S3-compatible server.

use crate::support::fixtures::{build_and_publish, settled_entries, write_repo};
use crate::support::s3::{self, S3Env};
use std::time::Duration;
use trusty_search::IndexId;
use trusty_search::index::embed_cache::{EmbedCache, FileRows, prune, text_hash};
use trusty_search::storage::layout;
use trusty_search::storage::open::{OpenError, fetch_version, read_current};
use trusty_search::storage::publish::{list_versions, rollback};

#[tokio::test]
async fn publish_then_open_round_trips_through_s3() {
    let S3Env { s3, store, dir, .. } = s3::env("team-a").await;
    let src = dir.path().join("src");
    write_repo(&src, "one");
    let published = build_and_publish(&store, "demo", &src).await;

    let id = IndexId::new("demo").unwrap();
    let (pointer, etag) = read_current(&store, &id, None).await.unwrap().unwrap();
    assert_eq!(pointer.version, published.version);
    assert!(etag.is_some(), "S3 returns an ETag for CURRENT");
    let cache = dir.path().join("cache");
    let local = fetch_version(&store, &id, &cache, &pointer, 4).await.unwrap();
    assert!(local.manifest.counts.chunks > 0);
    for f in &local.manifest.files {
        let bytes = std::fs::read(local.dir.join(&f.path)).unwrap();
        assert_eq!(trusty_search::model::sha256_hex(&bytes), f.sha256, "{}", f.path);
    }
    // Objects live under the prefix in the bucket; listings name them by key.
    assert!(s3.object_path(&format!("team-a/{}", layout::current_key(&id))).exists());
    let listed = store.list(&layout::versions_prefix(&id)).await.unwrap();
    assert_eq!(
        listed.len(),
        local.manifest.files.len() + 1,
        "the files and the manifest"
    );
    for f in &local.manifest.files {
        let key = layout::file_key(&id, &pointer.version, &f.path);
        let found = listed.iter().find(|o| o.key == key);
        assert_eq!(found.map(|o| o.size), Some(f.size), "{key} in {listed:?}");
    }

    // A second publish keeps the first for rollback.
    write_repo(&src, "two");
    let second = build_and_publish(&store, "demo", &src).await;
    assert_eq!(list_versions(&store, &id).await.unwrap().len(), 2);
    let back = rollback(&store, &id, &published.version).await.unwrap();
    assert_eq!(back.version, published.version);
    assert_ne!(second.version, published.version);
}

#[tokio::test]
async fn corrupt_and_missing_objects_are_detected_on_open() {
    let S3Env { s3, store, dir, .. } = s3::env("p").await;
    let src = dir.path().join("src");
    write_repo(&src, "x");
    let published = build_and_publish(&store, "demo", &src).await;
    let id = IndexId::new("demo").unwrap();
    let (pointer, _) = read_current(&store, &id, None).await.unwrap().unwrap();

    let chunks_key = format!("p/{}", layout::file_key(&id, &published.version, "chunks.jsonl"));
    let path = s3.object_path(&chunks_key);
    let original = std::fs::read(&path).unwrap();
    let mut corrupted = original.clone();
    corrupted[10] ^= 0x55;
    std::fs::write(&path, &corrupted).unwrap();
    let err = fetch_version(&store, &id, &dir.path().join("c1"), &pointer, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupt { what, .. } if what.contains("chunks.jsonl")),
        "{err}"
    );
    assert_eq!(err.reason(), "corrupt");

    std::fs::remove_file(&path).unwrap();
    let err = fetch_version(&store, &id, &dir.path().join("c2"), &pointer, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupt { what, .. } if what.contains("missing")),
        "{err}"
    );

    // Nothing half-downloaded is left behind.
    let leftovers = settled_entries(&dir.path().join("c2/demo"), "").await;
    assert!(leftovers.is_empty(), "partial download left behind: {leftovers:?}");

    std::fs::write(&path, &original).unwrap();
    fetch_version(&store, &id, &dir.path().join("c3"), &pointer, 4)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_index_and_unreachable_store_are_typed_errors() {
    // The directory is bound so that it lives as long as the server.
    let S3Env {
        mut s3,
        store,
        dir: _dir,
        ..
    } = s3::env("p").await;
    let id = IndexId::new("nope").unwrap();
    assert!(matches!(
        read_current(&store, &id, None).await,
        Err(OpenError::NotFound { .. })
    ));
    s3.stop().await;
    let err = read_current(&store, &id, None).await.unwrap_err();
    assert_eq!(err.reason(), "store_unavailable", "{err}");
}

#[tokio::test]
async fn pruning_the_embedding_cache_removes_only_unused_packs() {
    let S3Env {
        s3, store, dir: _dir, ..
    } = s3::env("team-b").await;
    let cache = EmbedCache::new(store.clone(), IndexId::new("demo").unwrap(), "test-embedder", 2);
    let file = |text: &str| FileRows {
        path: "src/a.py".into(),
        text_sha: trusty_search::model::sha256_hex(text.as_bytes()),
        rows: 0..1,
    };
    let (hashes, vectors) = ([text_hash("chunk")], vec![vec![0.6, 0.8]]);
    for build in [[file("v1")], [file("v2")]] {
        cache.write_packs(&build, &[true], &hashes, &vectors).await;
        cache.record_paths(&build).await;
    }
    // Packs only: the store-wide pointer of `src/a.py` lives beside them.
    let packs = || async {
        let mut objects = store.list(layout::EMBED_CACHE_DIR).await.unwrap();
        objects.retain(|o| o.key.ends_with(".vec"));
        objects
    };
    assert_eq!(packs().await.len(), 2);

    let kept = prune(&store, Duration::from_secs(3600), false).await.unwrap();
    assert_eq!((kept.referenced, kept.young, kept.removed), (1, 1, 0));
    let removed = prune(&store, Duration::ZERO, false).await.unwrap();
    assert_eq!((removed.referenced, removed.removed), (1, 1));
    let left = packs().await;
    assert_eq!(left.len(), 1);
    assert!(s3.object_path(&format!("team-b/{}", left[0].key)).exists());
    // The pack still in use serves the unchanged file.
    assert_eq!(cache.recall(&[file("v2")]).await.present.len(), 1);
}
