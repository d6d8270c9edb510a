//! Which model an embedder actually runs, for reusing its vectors safely.
//!
//! An embedder's id names what was asked for (`openai:default`, `minilm-l6-v2`),
//! not the weights that answer: another server behind the same URL, or other
//! weights of the same dimension in a model directory, keep the id. Vectors of
//! two models must never be mixed, so a fingerprint adds what the embedder can
//! say about its source ([`Embedder::provenance`]) and what it does: its vectors
//! for a few fixed probe texts, compared with a tolerance so that float noise
//! across CPUs, backends or GPU batches does not count as another model.

use sha2::{Digest, Sha256};

use super::{EmbedError, Embedder};

/// Texts embedded to recognise a model: code and prose, short enough for
/// every model's window, so any change of weights or pre-processing shows.
///
/// A stored format: every index records its model's vectors for exactly
/// these texts, so changing one makes every index built before look like
/// another model (vector arm off until rebuilt) and empties the embedding
/// cache. A test pins them.
pub const PROBE_TEXTS: [&str; 3] = [
    "function parse_config (parse config) in src/config.rs (rust)\nfn parse_config(path: &Path) -> Result<Config> {\nlet text = std::fs::read_to_string(path)?;\nOk(toml::from_str(&text)?)\n}",
    "How do I retry an HTTP request with exponential backoff?",
    "class LRUCache:\ndef get(self, key):\nreturn self.items.pop(key, None)",
];

/// Least cosine similarity, on every probe text, of two runs of one model.
///
/// Runs of one model agree far closer (candle and ONNX MiniLM above 0.9999,
/// fp16 against fp32 about as close); different models, even of one family,
/// land far apart, as their vector spaces are unrelated.
const SAME_MODEL_COSINE: f32 = 0.999;

/// What an embedder is and does, as far as reusing its vectors goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Hex digest of the id, dimension and provenance: what it says it is.
    pub declared: String,
    /// Its vectors for [`PROBE_TEXTS`]: what it does.
    pub probe: Vec<Vec<f32>>,
}

impl Fingerprint {
    /// Embeds the probe texts once. Blocking, like [`Embedder::embed`].
    pub fn of(embedder: &dyn Embedder) -> Result<Self, EmbedError> {
        let probe = embedder.embed(&PROBE_TEXTS)?;
        // After embedding: an HTTP embedder learns its dimension from its first answer.
        let dimension = embedder.dimension();
        if probe.len() != PROBE_TEXTS.len() {
            return Err(EmbedError::InvalidProbe(format!(
                "{} vectors for {} texts",
                probe.len(),
                PROBE_TEXTS.len()
            )));
        }
        if let Some(v) = probe.iter().find(|v| v.len() != dimension) {
            return Err(EmbedError::DimensionMismatch {
                expected: dimension,
                got: v.len(),
            });
        }
        if probe.iter().flatten().any(|x| !x.is_finite()) {
            return Err(EmbedError::InvalidProbe("a non-finite value".into()));
        }
        let declared = Sha256::digest(format!("{}\0{dimension}\0{}", embedder.id(), embedder.provenance()).as_bytes());
        Ok(Self {
            declared: hex::encode(&declared[..12]),
            probe,
        })
    }

    /// [`Self::of`] on a blocking thread, for async callers.
    pub(crate) async fn of_async(embedder: std::sync::Arc<dyn Embedder>) -> Result<Self, EmbedError> {
        tokio::task::spawn_blocking(move || Self::of(&*embedder))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the fingerprint probe's task failed");
                EmbedError::TaskLost("fingerprint probe")
            })?
    }

    /// The length of the model's vectors.
    pub fn dimension(&self) -> usize {
        self.probe.first().map_or(0, Vec::len)
    }

    /// Hex digest of the exact probe vectors: names this run's record.
    pub fn probe_digest(&self) -> String {
        let mut h = Sha256::new();
        for x in self.probe.iter().flatten() {
            h.update(x.to_le_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// Whether two runs' vectors for [`PROBE_TEXTS`] came from one model.
pub(crate) fn same_model(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == PROBE_TEXTS.len()
        && b.len() == a.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.len() == b.len() && cosine(a, b) >= SAME_MODEL_COSINE)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms = a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms > 0.0 { dot / norms } else { 0.0 }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic test embedder: vectors from a hash of its salt and the
    /// text, plus `noise` on the first component, so two salts are two models
    /// that share an id and a dimension.
    pub(crate) struct Salted {
        pub(crate) salt: u8,
        pub(crate) noise: f32,
        pub(crate) provenance: String,
        pub(crate) calls: std::sync::atomic::AtomicUsize,
    }

    impl Salted {
        pub(crate) fn new(salt: u8) -> Self {
            Self {
                salt,
                noise: 0.0,
                provenance: String::new(),
                calls: Default::default(),
            }
        }
    }

    impl Embedder for Salted {
        fn id(&self) -> &str {
            "salted-test"
        }
        fn dimension(&self) -> usize {
            4
        }
        fn provenance(&self) -> String {
            self.provenance.clone()
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(texts
                .iter()
                .map(|t| {
                    let h = Sha256::digest([&[self.salt], t.as_bytes()].concat());
                    let mut v: Vec<f32> = h[..4].iter().map(|&b| f32::from(b) - 127.5).collect();
                    // Alternating sign, so consecutive runs differ bitwise.
                    v[0] += if call.is_multiple_of(2) {
                        self.noise
                    } else {
                        -self.noise
                    };
                    crate::embed::l2_normalize(&mut v);
                    v
                })
                .collect())
        }
    }

    /// Every index records its model's vectors for these texts: changing
    /// them turns every older index's vector arm off until it is rebuilt.
    #[test]
    fn the_probe_texts_are_a_stored_format() {
        let digest = hex::encode(Sha256::digest(PROBE_TEXTS.join("\0").as_bytes()));
        assert_eq!(
            digest,
            "1681bf76b5caec0c4a982c539b88a6eedee3dd9141db6631cb571f55a2a40961"
        );
    }

    #[test]
    fn runs_of_one_model_match_and_other_models_do_not() {
        let a = Fingerprint::of(&Salted::new(1)).unwrap();
        assert_eq!(a, Fingerprint::of(&Salted::new(1)).unwrap());
        assert!(same_model(&a.probe, &a.probe));

        let noisy = Salted {
            noise: 1e-3,
            ..Salted::new(1)
        };
        let (n1, n2) = (Fingerprint::of(&noisy).unwrap(), Fingerprint::of(&noisy).unwrap());
        assert_ne!(n1.probe_digest(), n2.probe_digest(), "the noise changes the bits");
        assert!(same_model(&n1.probe, &n2.probe) && same_model(&a.probe, &n1.probe));

        let b = Fingerprint::of(&Salted::new(2)).unwrap();
        assert_eq!(a.declared, b.declared, "same id and dimension");
        assert!(!same_model(&a.probe, &b.probe));
        assert!(!same_model(&a.probe, &b.probe[..2]));
    }

    #[test]
    fn provenance_is_part_of_the_declared_identity() {
        let here = Salted {
            provenance: "http://a/v1/embeddings".into(),
            ..Salted::new(1)
        };
        let there = Salted {
            provenance: "http://b/v1/embeddings".into(),
            ..Salted::new(1)
        };
        let (a, b) = (Fingerprint::of(&here).unwrap(), Fingerprint::of(&there).unwrap());
        assert_ne!(a.declared, b.declared);
        assert_eq!(a.probe, b.probe);
    }

    struct Broken(Vec<f32>);

    impl Embedder for Broken {
        fn id(&self) -> &str {
            "broken"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|_| self.0.clone()).collect())
        }
    }

    #[test]
    fn a_probe_that_cannot_identify_a_model_is_an_error() {
        let nan = Fingerprint::of(&Broken(vec![f32::NAN, 1.0])).unwrap_err();
        assert!(matches!(nan, EmbedError::InvalidProbe(_)), "{nan}");
        let short = Fingerprint::of(&Broken(vec![1.0])).unwrap_err();
        assert!(matches!(short, EmbedError::DimensionMismatch { .. }), "{short}");
    }
}
