//! Retrieval evaluation on BEIR-layout data (`corpus.jsonl`, `queries.jsonl`,
//! `qrels/{split}.tsv`): nDCG@10, MRR@10 and Recall@{1,10,100}, the numbers
//! that choose fusion weights and guard against ranking regressions.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Why an evaluation set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} line {line}: relevance {value:?} is not a number", path.display())]
    Grade { path: PathBuf, line: usize, value: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct BeirDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BeirQuery {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

pub struct BeirData {
    pub corpus: Vec<BeirDoc>,
    pub queries: Vec<BeirQuery>,
    /// query id → (doc id → relevance grade)
    pub qrels: HashMap<String, HashMap<String, u32>>,
}

impl BeirData {
    /// Loads a BEIR directory; only queries that have judgements in the split are kept.
    pub fn load(dir: &Path, split: &str) -> Result<BeirData, EvalError> {
        let corpus: Vec<BeirDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
        let mut queries: Vec<BeirQuery> = read_jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let text = std::fs::read_to_string(&qrels_path).map_err(|source| EvalError::Read {
            path: qrels_path.clone(),
            source,
        })?;
        let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 3 || (i == 0 && cols[2].parse::<u32>().is_err()) {
                continue; // header or blank
            }
            let grade: u32 = cols[2].trim().parse().map_err(|_| EvalError::Grade {
                path: qrels_path.clone(),
                line: i + 1,
                value: cols[2].to_string(),
            })?;
            if grade > 0 {
                qrels
                    .entry(cols[0].to_string())
                    .or_default()
                    .insert(cols[1].to_string(), grade);
            }
        }
        queries.retain(|q| qrels.contains_key(&q.id));
        Ok(BeirData { corpus, queries, qrels })
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| EvalError::Json {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Mean metrics over a query set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub queries: usize,
    pub ndcg_at_10: f64,
    pub mrr_at_10: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
}

/// Accumulates per-query scores; `add` takes a ranked list of doc ids.
#[derive(Debug, Default)]
pub struct MetricsAccumulator {
    n: usize,
    ndcg: f64,
    mrr: f64,
    r1: f64,
    r10: f64,
    r100: f64,
}

impl MetricsAccumulator {
    pub fn add(&mut self, ranked: &[String], relevant: &HashMap<String, u32>) {
        self.n += 1;
        if relevant.is_empty() {
            return;
        }
        // Duplicates (several chunks of one document) count once, at their best rank.
        let mut seen = HashSet::new();
        let ranked: Vec<&String> = ranked.iter().filter(|d| seen.insert(*d)).collect();
        let dcg: f64 = ranked
            .iter()
            .take(10)
            .enumerate()
            .map(|(i, d)| gain(relevant.get(*d).copied().unwrap_or(0)) / ((i + 2) as f64).log2())
            .sum();
        let mut ideal: Vec<u32> = relevant.values().copied().collect();
        ideal.sort_unstable_by(|a, b| b.cmp(a));
        let idcg: f64 = ideal
            .iter()
            .take(10)
            .enumerate()
            .map(|(i, g)| gain(*g) / ((i + 2) as f64).log2())
            .sum();
        self.ndcg += if idcg > 0.0 { dcg / idcg } else { 0.0 };
        self.mrr += ranked
            .iter()
            .take(10)
            .position(|d| relevant.contains_key(*d))
            .map(|p| 1.0 / (p + 1) as f64)
            .unwrap_or(0.0);
        let recall = |k: usize| {
            ranked.iter().take(k).filter(|d| relevant.contains_key(**d)).count() as f64 / relevant.len() as f64
        };
        self.r1 += recall(1);
        self.r10 += recall(10);
        self.r100 += recall(100);
    }

    pub fn finish(&self) -> Metrics {
        let n = self.n.max(1) as f64;
        Metrics {
            queries: self.n,
            ndcg_at_10: self.ndcg / n,
            mrr_at_10: self.mrr / n,
            recall_at_1: self.r1 / n,
            recall_at_10: self.r10 / n,
            recall_at_100: self.r100 / n,
        }
    }
}

fn gain(grade: u32) -> f64 {
    (2f64.powi(grade as i32)) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(ids: &[&str]) -> HashMap<String, u32> {
        ids.iter().map(|s| (s.to_string(), 1)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_and_missing_rankings() {
        let mut acc = MetricsAccumulator::default();
        acc.add(&ranked(&["a", "b"]), &rel(&["a"]));
        acc.add(&ranked(&["x", "y"]), &rel(&["a"]));
        let m = acc.finish();
        assert_eq!(m.queries, 2);
        assert!((m.ndcg_at_10 - 0.5).abs() < 1e-9);
        assert!((m.mrr_at_10 - 0.5).abs() < 1e-9);
        assert!((m.recall_at_1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn rank_three_scores_as_expected() {
        let mut acc = MetricsAccumulator::default();
        acc.add(&ranked(&["x", "y", "a"]), &rel(&["a"]));
        let m = acc.finish();
        assert!((m.ndcg_at_10 - 1.0 / 4f64.log2()).abs() < 1e-9);
        assert!((m.mrr_at_10 - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.recall_at_1, 0.0);
        assert_eq!(m.recall_at_10, 1.0);
    }

    #[test]
    fn duplicate_documents_count_once() {
        let mut acc = MetricsAccumulator::default();
        acc.add(&ranked(&["x", "x", "a"]), &rel(&["a"]));
        assert!((acc.finish().mrr_at_10 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn loads_beir_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("corpus.jsonl"),
            "{\"_id\":\"c1\",\"text\":\"def f(): pass\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"f\"}\n{\"_id\":\"q2\",\"text\":\"unjudged\"}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("qrels")).unwrap();
        std::fs::write(
            dir.path().join("qrels/dev.tsv"),
            "query-id\tcorpus-id\tscore\nq1\tc1\t1\n",
        )
        .unwrap();
        let data = BeirData::load(dir.path(), "dev").unwrap();
        assert_eq!(data.corpus.len(), 1);
        assert_eq!(data.queries.len(), 1, "unjudged queries are dropped");
        assert_eq!(data.qrels["q1"]["c1"], 1);
        assert!(BeirData::load(dir.path(), "test").is_err());
    }
}
