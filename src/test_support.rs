//! Fixtures shared by unit tests across modules: chunks, and the real
//! writers, so readers are tested on exactly what the indexer produces.

pub(crate) use crate::index::bm25::write_bm25;
pub(crate) use crate::index::graph::build_graph;
pub(crate) use crate::index::vectors::{VectorWriteOptions, write_vectors, write_vectors_with};
use crate::model::{Chunk, Language, SymbolKind, sha256_hex};

/// A one-symbol (or, without a symbol, window) chunk of `content` at `path`.
pub(crate) fn content_chunk(id: u32, path: &str, symbol: Option<&str>, content: &str) -> Chunk {
    Chunk {
        id,
        path: path.to_string(),
        language: Language::from_path(path).unwrap_or(Language::Text),
        symbol: symbol.map(str::to_string),
        kind: if symbol.is_some() {
            SymbolKind::Function
        } else {
            SymbolKind::Window
        },
        parent: None,
        start_line: 1,
        end_line: 1 + content.lines().count() as u32,
        content: content.to_string(),
        content_hash: sha256_hex(content.as_bytes()),
        calls: Vec::new(),
        imports: Vec::new(),
    }
}

/// A chunk with the fields the graph reads; lines derive from the id.
pub(crate) fn symbol_chunk(
    id: u32,
    path: &str,
    symbol: Option<&str>,
    kind: SymbolKind,
    parent: Option<&str>,
    calls: &[&str],
    imports: &[&str],
) -> Chunk {
    Chunk {
        id,
        path: path.to_string(),
        language: Language::from_path(path).unwrap_or(Language::Text),
        symbol: symbol.map(str::to_string),
        kind,
        parent: parent.map(str::to_string),
        start_line: id * 10 + 1,
        end_line: id * 10 + 9,
        content: String::new(),
        content_hash: String::new(),
        calls: calls.iter().map(|s| s.to_string()).collect(),
        imports: imports.iter().map(|s| s.to_string()).collect(),
    }
}

pub(crate) fn function(id: u32, path: &str, name: &str, calls: &[&str]) -> Chunk {
    symbol_chunk(id, path, Some(name), SymbolKind::Function, None, calls, &[])
}

/// A deterministic embedder that counts what it embeds: vectors derived from
/// each text's hash, so equal texts get equal vectors across builds.
pub(crate) struct CountingEmbedder {
    pub(crate) embedded: std::sync::atomic::AtomicUsize,
    /// A batch that would take the count past this fails, as a service
    /// going down mid-build does.
    fail_after: usize,
}

impl CountingEmbedder {
    pub(crate) fn new() -> Self {
        Self::failing_after(usize::MAX)
    }

    pub(crate) fn failing_after(texts: usize) -> Self {
        Self {
            embedded: std::sync::atomic::AtomicUsize::new(0),
            fail_after: texts,
        }
    }
}

impl crate::embed::Embedder for CountingEmbedder {
    fn id(&self) -> &str {
        "counting-test"
    }
    fn dimension(&self) -> usize {
        4
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
        // The embedding cache's fingerprint probe is not a chunk: not counted.
        if texts != crate::embed::PROBE_TEXTS {
            let before = self.embedded.load(std::sync::atomic::Ordering::Relaxed);
            if before + texts.len() > self.fail_after {
                return Err(crate::embed::EmbedError::Unavailable {
                    id: "counting-test".into(),
                    retry_in: std::time::Duration::from_secs(1),
                });
            }
            self.embedded
                .fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(texts
            .iter()
            .map(|t| {
                let h = sha256_hex(t.as_bytes());
                let v: Vec<f32> = h.bytes().take(4).map(|b| f32::from(b) + 1.0).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}
