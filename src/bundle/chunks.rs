//! `chunks.jsonl`: every chunk of a version, one JSON object per line, in id
//! order. The engine keeps chunk bodies itself (the BM25 index stores none),
//! so this file is what hits are rendered from.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::model::Chunk;

#[derive(Debug, thiserror::Error)]
pub enum ChunksError {
    #[error("chunks file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("chunks file {} line {line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("chunks file {} line {line}: chunk id {id} out of order", path.display())]
    OutOfOrder { path: PathBuf, line: usize, id: u32 },
}

/// Reads every chunk, checking that ids are dense and in order (hits index into the list).
pub fn load_chunks(path: &Path) -> Result<Vec<Chunk>, ChunksError> {
    let io = |source| ChunksError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut chunks = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        let chunk: Chunk = serde_json::from_str(&line).map_err(|source| ChunksError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        if chunk.id as usize != chunks.len() {
            return Err(ChunksError::OutOfOrder {
                path: path.to_path_buf(),
                line: i + 1,
                id: chunk.id,
            });
        }
        chunks.push(chunk);
    }
    Ok(chunks)
}

pub(crate) fn write_chunks(path: &Path, chunks: &[Chunk]) -> Result<(), ChunksError> {
    let io = |source| ChunksError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for c in chunks {
        serde_json::to_writer(&mut w, c).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::content_chunk;

    #[test]
    fn round_trips_and_rejects_out_of_order_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks.jsonl");
        let chunks = vec![
            content_chunk(0, "a.rs", Some("a"), "fn a() {}"),
            content_chunk(1, "b.rs", None, "x"),
        ];
        write_chunks(&path, &chunks).unwrap();
        assert_eq!(load_chunks(&path).unwrap(), chunks);

        write_chunks(&path, &chunks[1..]).unwrap();
        let err = load_chunks(&path).unwrap_err();
        assert!(matches!(err, ChunksError::OutOfOrder { line: 1, id: 1, .. }), "{err}");
        std::fs::write(&path, "{not json\n").unwrap();
        assert!(matches!(
            load_chunks(&path).unwrap_err(),
            ChunksError::Json { line: 1, .. }
        ));
    }
}
