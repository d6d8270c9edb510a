//! The model that embeds an index's queries: the one its vectors came from, or none.
//!
//! Vectors of two models are unrelated, so a query embedded by another model
//! finds noise that looks like an answer. The embedder's id and dimension are
//! checked when the index opens, and the length of each query vector after.
//! Its probe vectors, which tell the weights that really answer behind an id,
//! are checked on the first query that embeds (in the same call), since an
//! HTTP embedder may be down when the index opens, and again every
//! [`RECHECK`]: the service behind a URL can change, for better or worse,
//! without the shard restarting. A mismatch turns the vector arm off for the
//! index, as an outage does, and says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::embed::{Embedder, PROBE_TEXTS, same_model};
use crate::storage::manifest::Manifest;

/// Why a query could not be embedded: the arm drops out of hybrid search.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query embedding failed ({reason}): {message}")]
pub struct EmbedFailure {
    /// Metric label: `embedder_down`, `embedder_timeout` or `embedder_mismatch`.
    pub reason: &'static str,
    pub message: String,
}

impl EmbedFailure {
    /// The embedder runs another model than the index's vectors came from:
    /// waiting or retrying will not help, rebuilding or reconfiguring will.
    pub fn is_mismatch(&self) -> bool {
        self.reason == MISMATCH
    }
}

const MISMATCH: &str = "embedder_mismatch";

/// How long a probe check's verdict stands before a query checks again.
const RECHECK: Duration = Duration::from_secs(60);

/// Bytes of a query that are embedded: embedding models read a few hundred
/// tokens at most, and a pasted issue can be hundreds of KiB.
const EMBED_QUERY_BYTES: usize = 4096;

/// What is known of the query embedder against the index's model.
#[derive(Debug, Clone)]
enum Verdict {
    Unknown,
    /// It answered the probe texts as the index's model did, in the check
    /// that started at `checked`.
    Matched {
        checked: Instant,
    },
    /// Not the index's model, for this reason, as the check that started at
    /// `checked` found; `None` for an id, dimension or vector length that
    /// differs, which does not change.
    Refused {
        why: String,
        checked: Option<Instant>,
    },
}

pub(crate) struct QueryModel {
    index_id: String,
    /// `None` when the shard has no query embedder.
    embedder: Option<Arc<dyn Embedder>>,
    /// The dimension of the index's vectors.
    dimension: usize,
    /// What the build recorded of its model; `None` in versions built before
    /// it was recorded, which are trusted by id and dimension.
    probe: Option<Vec<Vec<f32>>>,
    verdict: Mutex<Verdict>,
    recheck: Duration,
}

impl QueryModel {
    /// The query model of the index `manifest` describes; `embedder` is the
    /// shard's (or the CLI's) query embedder, if any.
    pub(crate) fn new(manifest: &Manifest, embedder: Option<Arc<dyn Embedder>>) -> QueryModel {
        let info = manifest.embedder.as_ref();
        let dimension = info.map_or(0, |i| i.dimension);
        let model = QueryModel {
            index_id: manifest.index_id.clone(),
            embedder: embedder.filter(|_| info.is_some()),
            dimension,
            // A record that cannot be a probe (another count, another
            // length, a zero or non-finite vector no model gives) is no
            // evidence either way: trusted as if absent.
            probe: info.and_then(|i| i.probe.clone()).filter(|p| {
                p.len() == PROBE_TEXTS.len()
                    && p.iter()
                        .all(|v| v.len() == dimension && v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0))
            }),
            verdict: Mutex::new(Verdict::Unknown),
            recheck: RECHECK,
        };
        if let (Some(info), Some(e)) = (info, &model.embedder) {
            // An HTTP embedder that has not answered yet does not know its
            // dimension (0); its vectors' length is checked when it answers.
            if e.id() != info.id || (e.dimension() != 0 && e.dimension() != info.dimension) {
                model.record(
                    None,
                    Err(format!(
                        "the index was built with {} ({} dimensions), queries would be embedded with {} ({} dimensions)",
                        info.id,
                        info.dimension,
                        e.id(),
                        e.dimension()
                    )),
                );
            }
        }
        model
    }

    /// Whether queries can be embedded for this index's vectors, as far as is known now.
    pub(crate) fn usable(&self) -> bool {
        self.embedder.is_some() && self.refusal().is_none()
    }

    /// Embeds `text` (its first [`EMBED_QUERY_BYTES`]) on the blocking pool
    /// within `timeout`; when the model is due a check, the probe texts go in
    /// the same batch. `Ok(None)` without a query embedder.
    pub(crate) async fn embed(&self, text: &str, timeout: Duration) -> Result<Option<Vec<f32>>, EmbedFailure> {
        let Some(embedder) = self.embedder.clone() else {
            return Ok(None);
        };
        if let Some(why) = self.refusal() {
            return Err(mismatch(&why));
        }
        let started = Instant::now();
        let check = self.probe.is_some() && self.due(started);
        let mut texts: Vec<String> = Vec::with_capacity(PROBE_TEXTS.len() + 1);
        if check {
            texts.extend(PROBE_TEXTS.iter().map(|t| t.to_string()));
        }
        texts.push(text[..text.floor_char_boundary(EMBED_QUERY_BYTES)].to_string());
        let sent = texts.len();
        let job = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&texts)
        });
        let mut vectors = match tokio::time::timeout(timeout, job).await {
            Err(_) => {
                return Err(EmbedFailure {
                    reason: "embedder_timeout",
                    message: format!("no embedding within {timeout:?}"),
                });
            }
            Ok(Err(join)) => {
                return Err(EmbedFailure {
                    reason: "embedder_down",
                    message: join.to_string(),
                });
            }
            Ok(Ok(Err(e))) => {
                return Err(EmbedFailure {
                    reason: "embedder_down",
                    message: e.to_string(),
                });
            }
            Ok(Ok(Ok(v))) => v,
        };
        if vectors.len() != sent {
            return Err(EmbedFailure {
                reason: "embedder_down",
                message: format!("{} vectors for {sent} texts", vectors.len()),
            });
        }
        let query = vectors.pop();
        if let Some(q) = &query
            && q.len() != self.dimension
        {
            let why = format!(
                "the query embedder answers with {} dimensions, the index's vectors have {}",
                q.len(),
                self.dimension
            );
            self.record(None, Err(why.clone()));
            return Err(mismatch(&why));
        }
        if check && let Some(recorded) = &self.probe {
            let verdict = if same_model(recorded, &vectors) {
                Ok(())
            } else {
                Err(format!(
                    "the query embedder {} answers the probe texts unlike the model the index was built with (same id, other weights or pre-processing)",
                    self.embedder.as_ref().map_or("", |e| e.id())
                ))
            };
            self.record(Some(started), verdict.clone());
            if let Err(why) = verdict {
                return Err(mismatch(&why));
            }
        }
        Ok(query)
    }

    /// Why the embedder cannot serve this index now, if a standing verdict says so.
    fn refusal(&self) -> Option<String> {
        match &*self.verdict.lock() {
            Verdict::Refused { why, checked: None } => Some(why.clone()),
            Verdict::Refused { why, checked: Some(t) } if t.elapsed() < self.recheck => Some(why.clone()),
            _ => None,
        }
    }

    /// Whether the probe is due a check by a query starting at `now`.
    fn due(&self, now: Instant) -> bool {
        match &*self.verdict.lock() {
            Verdict::Unknown => true,
            Verdict::Matched { checked }
            | Verdict::Refused {
                checked: Some(checked), ..
            } => now.saturating_duration_since(*checked) >= self.recheck,
            Verdict::Refused { checked: None, .. } => false,
        }
    }

    /// Records the verdict of the check that started at `checked` (`None`:
    /// one that stands for good), unless a check that started later, or one
    /// for good, has already been recorded; logs when vectors go or come back.
    fn record(&self, checked: Option<Instant>, verdict: Result<(), String>) {
        let mut current = self.verdict.lock();
        let newer = match (&*current, checked) {
            (Verdict::Refused { checked: None, .. }, _) => false,
            (_, None) | (Verdict::Unknown, _) => true,
            (
                Verdict::Matched { checked: prev }
                | Verdict::Refused {
                    checked: Some(prev), ..
                },
                Some(now),
            ) => now >= *prev,
        };
        if !newer {
            return;
        }
        let was_refused = matches!(*current, Verdict::Refused { .. });
        *current = match verdict {
            Ok(()) => {
                if was_refused {
                    tracing::info!(index_id = %self.index_id, "the query embedder is the index's model again: vector search restored");
                }
                Verdict::Matched {
                    checked: checked.unwrap_or_else(Instant::now),
                }
            }
            Err(why) => {
                if !was_refused {
                    tracing::warn!(index_id = %self.index_id, reason = %why, "embedder mismatch: vector search disabled for this index; rebuild it or give the shard the index's model");
                }
                Verdict::Refused { why, checked }
            }
        };
    }
}

fn mismatch(why: &str) -> EmbedFailure {
    EmbedFailure {
        reason: MISMATCH,
        message: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{Fingerprint, Salted};
    use crate::storage::manifest::{Counts, EmbedderInfo, SourceInfo};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WAIT: Duration = Duration::from_secs(30);

    /// A version built by `model`, its probe recorded unless `legacy`.
    fn built_by(model: &Salted, legacy: bool) -> Manifest {
        Manifest {
            schema_version: 1,
            index_id: "repo".into(),
            version: "v1".into(),
            created_at: String::new(),
            chunker_version: 0,
            embedder: Some(EmbedderInfo {
                id: model.id().into(),
                dimension: model.dimension(),
                probe: (!legacy).then(|| Fingerprint::of(model).unwrap().probe),
            }),
            source: SourceInfo::default(),
            counts: Counts::default(),
            files: Vec::new(),
            settings: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn the_model_the_index_was_built_with_embeds_its_queries() {
        let shard = Arc::new(Salted::new(1));
        let model = QueryModel::new(&built_by(&Salted::new(1), false), Some(shard.clone()));
        let first = model.embed("parse config", WAIT).await.unwrap().unwrap();
        let again = model.embed("parse config", WAIT).await.unwrap().unwrap();
        assert_eq!(first, again, "the query's vector, not a probe's");
        assert_eq!(first, shard.embed(&["parse config"]).unwrap()[0]);
        assert!(model.usable());
    }

    #[tokio::test]
    async fn other_weights_behind_the_same_id_are_refused_once_seen() {
        let shard = Arc::new(Salted::new(2));
        let model = QueryModel::new(&built_by(&Salted::new(1), false), Some(shard.clone()));
        assert!(model.usable(), "not known before the embedder answers");
        let err = model.embed("parse config", WAIT).await.unwrap_err();
        assert!(err.is_mismatch(), "{err}");
        assert!(!model.usable());
        let calls = shard.calls.load(Ordering::SeqCst);
        assert!(model.embed("parse config", WAIT).await.unwrap_err().is_mismatch());
        assert_eq!(
            shard.calls.load(Ordering::SeqCst),
            calls,
            "refused without asking again"
        );
    }

    /// One embedder object whose service is swapped for another model.
    struct Swappable {
        models: [Salted; 2],
        current: AtomicUsize,
    }

    impl Embedder for Swappable {
        fn id(&self) -> &str {
            self.models[0].id()
        }
        fn dimension(&self) -> usize {
            self.models[0].dimension()
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
            self.models[self.current.load(Ordering::SeqCst)].embed(texts)
        }
    }

    #[tokio::test]
    async fn the_right_model_behind_the_same_embedder_is_taken_back_at_the_recheck() {
        let shard = Arc::new(Swappable {
            models: [Salted::new(1), Salted::new(2)],
            current: AtomicUsize::new(1),
        });
        let mut model = QueryModel::new(&built_by(&Salted::new(1), false), Some(shard.clone()));
        model.recheck = Duration::ZERO;
        assert!(model.embed("q", WAIT).await.unwrap_err().is_mismatch());
        shard.current.store(0, Ordering::SeqCst);
        assert!(model.embed("q", WAIT).await.unwrap().is_some());
        assert!(model.usable());
    }

    #[tokio::test]
    async fn another_model_swapped_in_after_a_match_is_found_at_the_recheck() {
        let shard = Arc::new(Swappable {
            models: [Salted::new(1), Salted::new(2)],
            current: AtomicUsize::new(0),
        });
        let mut model = QueryModel::new(&built_by(&Salted::new(1), false), Some(shard.clone()));
        model.recheck = Duration::ZERO;
        assert!(model.embed("q", WAIT).await.unwrap().is_some());
        shard.current.store(1, Ordering::SeqCst);
        assert!(model.embed("q", WAIT).await.unwrap_err().is_mismatch());
    }

    #[test]
    fn a_check_that_started_earlier_never_overrides_a_later_one() {
        let model = QueryModel::new(&built_by(&Salted::new(1), false), Some(Arc::new(Salted::new(1))));
        let (earlier, later) = (Instant::now(), Instant::now() + Duration::from_millis(1));
        model.record(Some(later), Err("swapped".into()));
        model.record(Some(earlier), Ok(()));
        assert!(!model.usable(), "the later check's refusal stands");
        model.record(Some(later + Duration::from_millis(1)), Ok(()));
        assert!(model.usable());
    }

    /// Without a recorded probe (older versions), a query vector of another
    /// length still tells another model, once the embedder has answered.
    #[tokio::test]
    async fn a_query_vector_of_another_length_is_refused_for_good() {
        // An index of 8 dimensions, opened with an embedder that had not
        // said its dimension yet (as an HTTP one before its first answer).
        let model = QueryModel {
            dimension: 8,
            ..QueryModel::new(&built_by(&Salted::new(1), true), Some(Arc::new(Salted::new(1))))
        };
        let err = model.embed("q", WAIT).await.unwrap_err();
        assert!(err.is_mismatch() && err.message.contains("4 dimensions"), "{err}");
        assert!(!model.usable());
    }

    #[tokio::test]
    async fn another_id_is_refused_before_any_query() {
        let mut built = built_by(&Salted::new(1), false);
        built.embedder.as_mut().unwrap().id = "minilm-l6-v2".into();
        let shard = Arc::new(Salted::new(1));
        let model = QueryModel::new(&built, Some(shard.clone()));
        assert!(!model.usable());
        assert!(model.embed("q", WAIT).await.unwrap_err().is_mismatch());
        assert_eq!(shard.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn versions_without_a_recorded_probe_are_trusted_by_id() {
        let shard = Arc::new(Salted::new(2));
        let model = QueryModel::new(&built_by(&Salted::new(1), true), Some(shard));
        assert!(model.embed("q", WAIT).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_recorded_probe_no_model_could_give_is_trusted_as_absent() {
        let mut zero = built_by(&Salted::new(1), false);
        let info = zero.embedder.as_mut().unwrap();
        let probe = info.probe.as_mut().unwrap();
        probe[0].iter_mut().for_each(|x| *x = 0.0);
        let mut short = built_by(&Salted::new(1), false);
        short.embedder.as_mut().unwrap().probe.as_mut().unwrap().pop();
        for manifest in [zero, short] {
            let model = QueryModel::new(&manifest, Some(Arc::new(Salted::new(2))));
            assert!(model.embed("q", WAIT).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn without_a_query_embedder_there_is_no_vector_and_no_error() {
        let model = QueryModel::new(&built_by(&Salted::new(1), false), None);
        assert_eq!(model.embed("q", WAIT).await, Ok(None));
        assert!(!model.usable());
    }
}
