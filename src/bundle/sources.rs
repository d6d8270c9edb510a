//! The indexed files' text, so code can be read back from the version that
//! was searched rather than from a live checkout that may have moved on.
//! `sources.bin` is every file's text (CRLF and BOM already normalised, as
//! the chunker saw it) back to back; `sources.json` maps each path to its
//! byte range. A reader keeps only the small map in memory and reads one
//! file's bytes on request.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::heap_size;
use crate::storage::layout::bundle::{SOURCES_FILE, SOURCES_INDEX_FILE};

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("sources file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sources index {}: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("sources index {} points past the end of {SOURCES_FILE} ({path_in_index})", path.display())]
    OutOfRange { path: PathBuf, path_in_index: String },
    #[error("{0} is not valid UTF-8 in the sources file")]
    NotUtf8(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: String,
    offset: u64,
    len: u64,
}

/// Writes `files` (path, text) into `dir` as `sources.bin` + `sources.json`.
pub fn write_sources<'a>(dir: &Path, files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), SourcesError> {
    let bin = dir.join(SOURCES_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourcesError::Io { path, source }
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&bin).map_err(io(&bin))?);
    let mut entries = Vec::new();
    let mut offset = 0u64;
    for (path, text) in files {
        out.write_all(text.as_bytes()).map_err(io(&bin))?;
        entries.push(Entry {
            path: path.to_string(),
            offset,
            len: text.len() as u64,
        });
        offset += text.len() as u64;
    }
    out.flush().map_err(io(&bin))?;
    let index = dir.join(SOURCES_INDEX_FILE);
    let json = serde_json::to_vec(&entries).map_err(|source| SourcesError::Index {
        path: index.clone(),
        source,
    })?;
    std::fs::write(&index, json).map_err(io(&index))
}

/// The path → byte-range map of a version's sources, and where the bytes are.
#[derive(Debug)]
pub struct Sources {
    bin: PathBuf,
    ranges: HashMap<String, (u64, u64)>,
}

impl Sources {
    /// Opens the sources of the bundle in `dir`; `None` when the version has none.
    pub fn open(dir: &Path) -> Result<Option<Sources>, SourcesError> {
        let index = dir.join(SOURCES_INDEX_FILE);
        let bin = dir.join(SOURCES_FILE);
        let bytes = match std::fs::read(&index) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SourcesError::Io { path: index, source }),
        };
        let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|source| SourcesError::Index {
            path: index.clone(),
            source,
        })?;
        let size = std::fs::metadata(&bin)
            .map_err(|source| SourcesError::Io {
                path: bin.clone(),
                source,
            })?
            .len();
        let mut ranges = HashMap::with_capacity(entries.len());
        for e in entries {
            if e.offset.checked_add(e.len).is_none_or(|end| end > size) {
                return Err(SourcesError::OutOfRange {
                    path: index,
                    path_in_index: e.path,
                });
            }
            ranges.insert(e.path, (e.offset, e.len));
        }
        Ok(Some(Sources { bin, ranges }))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.ranges.contains_key(path)
    }

    /// Heap bytes of the map (the text stays on disk).
    pub fn heap_bytes(&self) -> u64 {
        heap_size::string_map(&self.ranges, |_| 0) as u64
    }

    /// The whole text of `path`, or `None` when the version has no such file.
    pub fn read(&self, path: &str) -> Result<Option<String>, SourcesError> {
        let Some(&(offset, len)) = self.ranges.get(path) else {
            return Ok(None);
        };
        let io = |source| SourcesError::Io {
            path: self.bin.clone(),
            source,
        };
        let mut f = std::fs::File::open(&self.bin).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(io)?;
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| SourcesError::NotUtf8(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_missing_and_corrupt_indexes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Sources::open(dir.path()).unwrap().is_none(),
            "no sources is not an error"
        );
        write_sources(
            dir.path(),
            [("a.rs", "fn a() {}\n"), ("src/é.py", "def b():\n    pass\n")],
        )
        .unwrap();
        let s = Sources::open(dir.path()).unwrap().unwrap();
        assert_eq!(s.read("a.rs").unwrap().as_deref(), Some("fn a() {}\n"));
        assert_eq!(s.read("src/é.py").unwrap().as_deref(), Some("def b():\n    pass\n"));
        assert_eq!(s.read("missing.rs").unwrap(), None);

        // An index pointing past the data is refused at open, not at read.
        std::fs::write(dir.path().join(SOURCES_FILE), b"short").unwrap();
        assert!(matches!(
            Sources::open(dir.path()),
            Err(SourcesError::OutOfRange { .. })
        ));
        std::fs::write(dir.path().join(SOURCES_INDEX_FILE), b"{not json").unwrap();
        assert!(matches!(Sources::open(dir.path()), Err(SourcesError::Index { .. })));
    }
}
