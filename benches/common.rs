//! Helpers shared by the bench binaries: corpora from the local cargo
//! registry (real code no one here wrote), percentiles, and a cheap
//! deterministic embedder for latency runs on corpora too large to embed with
//! MiniLM on two cores.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use trusty_search::embed::{EmbedError, Embedder};

pub fn registry_src() -> PathBuf {
    let base = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"))
        .join("registry/src");
    std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("no cargo registry sources at {}: {e}", base.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a registry index directory")
}

/// Crate source directories in the registry whose names start with one of `prefixes`.
pub fn registry_crates(prefixes: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(registry_src())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            prefixes.iter().any(|pre| name.starts_with(pre))
        })
        .collect();
    v.sort();
    v
}

/// Hard-links (or copies) several directories under one root so one build sees them all.
pub fn gather(dirs: &[PathBuf], dest: &Path) {
    fn link_tree(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            let to = dst.join(e.file_name());
            if ft.is_dir() {
                link_tree(&e.path(), &to);
            } else if ft.is_file() && std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).unwrap();
            }
        }
    }
    for d in dirs {
        link_tree(d, &dest.join(d.file_name().unwrap()));
    }
}

pub fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted_ms.len() - 1) as f64).round() as usize;
    sorted_ms[idx.min(sorted_ms.len() - 1)]
}

pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub n: usize,
}

pub fn stats(samples: &mut [Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    Stats {
        p50: percentile(&ms, 50.0),
        p99: percentile(&ms, 99.0),
        mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        n: ms.len(),
    }
}

/// Feature hashing of identifier parts into a unit vector: as cheap as it
/// gets, deterministic, and exactly the vector shape (384-d, normalised) the
/// search path sees from MiniLM. Only for latency runs; quality is measured
/// with the real model (docs/EVAL.md).
pub struct HashEmbedder;

impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        "bench-hash-384"
    }
    fn dimension(&self) -> usize {
        384
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 384];
                for w in t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    let h = xxhash_rust::xxh3::xxh3_64(w.to_lowercase().as_bytes());
                    v[(h % 384) as usize] += if h & (1 << 63) == 0 { 1.0 } else { -1.0 };
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter_mut().for_each(|x| *x /= n);
                v
            })
            .collect())
    }
    fn max_batch(&self) -> usize {
        256
    }
}

pub const QUERIES: &[&str] = &[
    "spawn a blocking task",
    "read file into string",
    "parse http header value",
    "JoinHandle abort",
    "merge segments in background",
    "tokenize text into terms",
    "create index writer with memory budget",
    "retry request with exponential backoff",
    "serialize struct to json",
    "timeout future",
    "mutex lock poisoned",
    "tcp listener accept connection",
    "build arrow record batch",
    "nearest neighbor vector search",
    "schema field type",
    "decode utf8 bytes",
    "channel send receive",
    "load configuration from environment",
    "compute checksum of buffer",
    "sort by key descending",
    "BM25 scoring weight",
    "graceful shutdown signal",
    "hash map entry or insert",
    "write parquet file",
    "physical plan execution stream",
    "kubernetes watch events",
    "object store multipart upload",
    "async read exact",
    "query parser boolean",
    "error context wrapping",
];
