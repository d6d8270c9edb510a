//! Round trips through the real writer: exact and ANN datasets, filters, bad input.

use super::*;
use crate::test_support::{VectorWriteOptions, write_vectors, write_vectors_with};
use std::collections::HashSet;

/// splitmix64: deterministic test data without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Roughly normal(0, 1): sum of uniforms.
    fn gauss(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .sum::<f32>()
            - 2.0
    }
}

/// `n` vectors around `clusters` random centres, like real embeddings (which cluster by topic).
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dim).map(|_| rng.gauss()).collect()).collect();
    (0..n)
        .map(|i| centres[i % clusters].iter().map(|c| c + 0.6 * rng.gauss()).collect())
        .collect()
}

fn ids_for(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| i * 3 + 1).collect()
}

fn brute_force(q: &[f32], ids: &[u32], vectors: &[Vec<f32>], k: usize, allow: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let q = unit(q);
    let mut all: Vec<(u32, f32)> = ids
        .iter()
        .zip(vectors)
        .filter(|(id, _)| allow(**id))
        .map(|(&id, v)| (id, unit(v).iter().zip(&q).map(|(a, b)| a * b).sum()))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn assert_same_ranking(got: &[(u32, f32)], want: &[(u32, f32)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g.1 - w.1).abs() < 1e-4, "score {g:?} vs {w:?}");
    }
    // Ids must agree except where scores tie within float noise.
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.0 != w.0 {
            let tie = want.iter().any(|x| x.0 == g.0 && (x.1 - w.1).abs() < 1e-5);
            assert!(tie, "rank {i}: {g:?} vs {w:?}");
        }
    }
}

#[tokio::test]
async fn exact_top_k_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    let (n, dim) = (3000, 48);
    let vectors = clustered(n, dim, 20, 1);
    let ids = ids_for(n);
    let stats = write_vectors(&path, &ids, &vectors).await.unwrap();
    assert_eq!((stats.rows, stats.dimension, stats.ann_index), (n, dim, None));

    let index = VectorIndex::open(&path).await.unwrap();
    assert_eq!((index.len(), index.dimension(), index.ann_kind()), (n, dim, None));
    let queries = clustered(15, dim, 7, 99);
    for q in &queries {
        let got = index.search(q, 10, None).await.unwrap();
        assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, |_| true));
    }
    // A stored vector finds itself first with cosine 1.
    let got = index.search(&vectors[123], 1, None).await.unwrap();
    assert_eq!(got[0].0, ids[123]);
    assert!((got[0].1 - 1.0).abs() < 1e-5);
    // k larger than the index returns everything, sorted.
    let all = index.search(&queries[0], n + 50, None).await.unwrap();
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(index.search(&queries[0], 0, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn exact_filter_returns_k_allowed_hits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    let (n, dim) = (2500, 16);
    let vectors = clustered(n, dim, 10, 2);
    let ids = ids_for(n);
    write_vectors(&path, &ids, &vectors).await.unwrap();
    let index = VectorIndex::open(&path).await.unwrap();
    let q = &clustered(1, dim, 1, 5)[0];

    let every_seventh = |id: u32| id.is_multiple_of(7);
    let got = index.search(q, 10, Some(&every_seventh)).await.unwrap();
    assert!(got.iter().all(|(id, _)| every_seventh(*id)));
    assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, every_seventh));

    // Only 4 allowed ids exist: all 4 come back, even though they rank low overall.
    let rare = |id: u32| [4u32, 1000, 4003, 7498].contains(&id);
    let got = index.search(q, 10, Some(&rare)).await.unwrap();
    assert_eq!(
        got.iter().map(|h| h.0).collect::<HashSet<_>>(),
        HashSet::from([4, 1000, 4003, 7498])
    );

    let none = |_: u32| false;
    assert!(index.search(q, 10, Some(&none)).await.unwrap().is_empty());
}

#[tokio::test]
async fn ann_index_has_high_recall_and_honours_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    let (n, dim) = (6000, 64);
    let vectors = clustered(n, dim, 40, 3);
    let ids = ids_for(n);
    let opts = VectorWriteOptions {
        ann_threshold: 1000,
        ..Default::default()
    };
    let stats = write_vectors_with(&path, &ids, &vectors, &opts).await.unwrap();
    assert_eq!(stats.ann_index, Some(AnnKind::IvfHnswSq));
    // The memory estimate tells an ANN version by its index files' folder.
    assert!(path.join("_indices").is_dir());

    let index = VectorIndex::open(&path).await.unwrap();
    assert_eq!(index.ann_kind(), Some(AnnKind::IvfHnswSq));
    assert_eq!(index.len(), n);
    let queries = clustered(40, dim, 40, 77);
    let (mut found, mut total) = (0, 0);
    for q in &queries {
        let got = index.search(q, 10, None).await.unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "{got:?}");
        let want: HashSet<u32> = brute_force(q, &ids, &vectors, 10, |_| true)
            .iter()
            .map(|h| h.0)
            .collect();
        found += got.iter().filter(|h| want.contains(&h.0)).count();
        total += 10;
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
    // What lance cached for those queries stays within what the index counts
    // against the shard's budget.
    assert!(index.memory_bytes() >= (n * dim * 4) as u64);
    assert!(
        index.cached_bytes() <= index.memory_bytes(),
        "lance caches {} bytes, the index counts {}",
        index.cached_bytes(),
        index.memory_bytes()
    );

    // A broad filter is served by over-fetching, a selective one by the exact fallback.
    let q = &queries[0];
    let half = |id: u32| id.is_multiple_of(2);
    let got = index.search(q, 10, Some(&half)).await.unwrap();
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|(id, _)| half(*id)));
    let rare = |id: u32| id < 60; // 20 allowed rows
    let got = index.search(q, 10, Some(&rare)).await.unwrap();
    assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, rare));
}

#[tokio::test]
async fn ivf_pq_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    let (n, dim) = (4000, 32);
    let vectors = clustered(n, dim, 30, 4);
    let ids = ids_for(n);
    let opts = VectorWriteOptions {
        ann_threshold: 1000,
        ann_kind: AnnKind::IvfPq,
    };
    write_vectors_with(&path, &ids, &vectors, &opts).await.unwrap();
    let index = VectorIndex::open(&path).await.unwrap();
    assert_eq!(index.ann_kind(), Some(AnnKind::IvfPq));
    let queries = clustered(20, dim, 30, 8);
    let (mut found, mut total) = (0, 0);
    for q in &queries {
        let got = index.search(q, 10, None).await.unwrap();
        let want: HashSet<u32> = brute_force(q, &ids, &vectors, 10, |_| true)
            .iter()
            .map(|h| h.0)
            .collect();
        found += got.iter().filter(|h| want.contains(&h.0)).count();
        total += 10;
    }
    let recall = found as f64 / total as f64;
    // PQ is lossy and its k-means is seeded randomly, so the bar sits well
    // below exact search; chance would be ~0.01.
    assert!(recall >= 0.8, "IVF_PQ recall@10 {recall}");
}

#[tokio::test]
async fn rewriting_replaces_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    write_vectors(&path, &[1, 2], &[vec![1.0, 0.0], vec![0.0, 1.0]])
        .await
        .unwrap();
    write_vectors(
        &path,
        &[7, 8, 9],
        &[vec![1.0, 0.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 0.0, 3.0]],
    )
    .await
    .unwrap();
    let index = VectorIndex::open(&path).await.unwrap();
    assert_eq!((index.len(), index.dimension()), (3, 3));
    let got = index.search(&[0.0, 5.0, 0.0], 2, None).await.unwrap();
    assert_eq!(got[0].0, 8);
    assert!((got[0].1 - 1.0).abs() < 1e-6, "stored vectors are normalised: {got:?}");
}

#[tokio::test]
async fn bad_input_and_bad_datasets_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.lance");
    assert!(matches!(
        write_vectors(&path, &[1], &[]).await,
        Err(VectorError::InvalidInput(_))
    ));
    assert!(matches!(
        write_vectors(&path, &[], &[]).await,
        Err(VectorError::InvalidInput(_))
    ));
    assert!(matches!(
        write_vectors(&path, &[1, 2], &[vec![1.0, 0.0], vec![1.0]]).await,
        Err(VectorError::DimensionMismatch { expected: 2, got: 1 })
    ));
    assert!(matches!(
        write_vectors(&path, &[1], &[vec![f32::NAN, 0.0]]).await,
        Err(VectorError::InvalidInput(_))
    ));

    let missing = VectorIndex::open(&dir.path().join("nope.lance")).await.unwrap_err();
    assert!(matches!(missing, VectorError::NotFound(_)), "{missing}");

    let garbage = dir.path().join("garbage.lance");
    std::fs::create_dir_all(garbage.join("_versions")).unwrap();
    std::fs::write(garbage.join("_versions/1.manifest"), b"not a lance manifest").unwrap();
    let err = VectorIndex::open(&garbage).await.unwrap_err();
    assert!(matches!(err, VectorError::Corrupt { .. }), "{err}");

    let empty = dir.path().join("empty.lance");
    std::fs::create_dir_all(&empty).unwrap();
    let err = VectorIndex::open(&empty).await.unwrap_err();
    assert!(matches!(err, VectorError::Corrupt { .. }), "{err}");

    let file = dir.path().join("file.lance");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        VectorIndex::open(&file).await.unwrap_err(),
        VectorError::Corrupt { .. }
    ));

    write_vectors(&path, &[1], &[vec![1.0, 0.0]]).await.unwrap();
    let index = VectorIndex::open(&path).await.unwrap();
    assert!(matches!(
        index.search(&[1.0, 0.0, 0.0], 1, None).await,
        Err(VectorError::DimensionMismatch { expected: 2, got: 3 })
    ));
}
