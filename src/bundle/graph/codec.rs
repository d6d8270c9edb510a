//! The `graph.bin` codec: magic `TSGRAPH\0`, format version (u32), payload
//! length (u64), xxh3-64 of the payload (u64), then the payload: string table,
//! nodes, edges, all little-endian. Lookup tables are rebuilt on load.

use std::collections::HashMap;
use std::path::Path;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::{CodeGraph, EdgeKind, GraphError, NodeKind, SymbolNode};
use crate::model::SymbolKind;

/// Version of the `graph.bin` layout; bump on any incompatible change.
pub const GRAPH_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"TSGRAPH\0";
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

impl CodeGraph {
    /// Writes `graph.bin` atomically (temp file + rename in the same directory).
    pub fn write(&self, path: &Path) -> Result<(), GraphError> {
        let bytes = self.encode();
        let io = |source| GraphError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("bin.tmp");
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a graph written by [`CodeGraph::write`], verifying version and checksum.
    pub fn read(path: &Path) -> Result<CodeGraph, GraphError> {
        let bytes = std::fs::read(path).map_err(|source| GraphError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CodeGraph::decode(&bytes)
    }

    /// Serialises the graph into the `graph.bin` layout.
    pub fn encode(&self) -> Vec<u8> {
        // String table: every distinct name, path and parent once.
        let mut strings: Vec<&str> = Vec::new();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let graph = &self.graph;
        for w in graph.node_weights() {
            match w {
                NodeKind::File { path } => add_str(&mut ids, &mut strings, path),
                NodeKind::External { name } => add_str(&mut ids, &mut strings, name),
                NodeKind::Symbol(s) => {
                    add_str(&mut ids, &mut strings, &s.name);
                    add_str(&mut ids, &mut strings, &s.path);
                    if let Some(p) = &s.parent {
                        add_str(&mut ids, &mut strings, p);
                    }
                }
            }
        }

        let mut out = Vec::with_capacity(HEADER_LEN + strings.iter().map(|s| s.len() + 4).sum::<usize>() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&GRAPH_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // payload length, patched below
        out.extend_from_slice(&0u64.to_le_bytes()); // checksum, patched below
        let mut w = Writer(out);
        w.u32(strings.len() as u32);
        for s in &strings {
            w.u32(s.len() as u32);
            w.0.extend_from_slice(s.as_bytes());
        }
        w.u32(graph.node_count() as u32);
        for node in graph.node_weights() {
            match node {
                NodeKind::File { path } => {
                    w.u8(0);
                    w.u32(ids[path.as_str()]);
                }
                NodeKind::External { name } => {
                    w.u8(2);
                    w.u32(ids[name.as_str()]);
                }
                NodeKind::Symbol(s) => {
                    w.u8(1);
                    w.u32(s.chunk_id);
                    w.u8(kind_to_u8(s.kind));
                    w.u32(ids[s.name.as_str()]);
                    w.u32(ids[s.path.as_str()]);
                    w.u32(s.parent.as_ref().map_or(0, |p| ids[p.as_str()] + 1));
                    w.u32(s.more_chunks.len() as u32);
                    for id in &s.more_chunks {
                        w.u32(*id);
                    }
                }
            }
        }
        w.u32(graph.edge_count() as u32);
        for e in graph.edge_references() {
            w.u32(e.source().index() as u32);
            w.u32(e.target().index() as u32);
            w.u8(*e.weight() as u8);
        }
        let mut out = w.0;
        let payload_len = (out.len() - HEADER_LEN) as u64;
        let checksum = xxhash_rust::xxh3::xxh3_64(&out[HEADER_LEN..]);
        out[12..20].copy_from_slice(&payload_len.to_le_bytes());
        out[20..28].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Parses the `graph.bin` layout.
    pub fn decode(bytes: &[u8]) -> Result<CodeGraph, GraphError> {
        if bytes.len() < 8 {
            return Err(GraphError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(GraphError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(GraphError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != GRAPH_FORMAT_VERSION {
            return Err(GraphError::UnsupportedVersion {
                found: version,
                expected: GRAPH_FORMAT_VERSION,
            });
        }
        let payload_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let stored = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let expected = HEADER_LEN as u64 + payload_len;
        if (bytes.len() as u64) < expected {
            return Err(GraphError::Truncated {
                expected,
                found: bytes.len() as u64,
            });
        }
        if bytes.len() as u64 > expected {
            return Err(GraphError::Corrupt(format!(
                "{} trailing bytes after the payload",
                bytes.len() as u64 - expected
            )));
        }
        let payload = &bytes[HEADER_LEN..];
        let computed = xxhash_rust::xxh3::xxh3_64(payload);
        if computed != stored {
            return Err(GraphError::Checksum { stored, computed });
        }

        let mut r = Reader { buf: payload, pos: 0 };
        let n_strings = r.u32()? as usize;
        let mut strings: Vec<&str> = Vec::with_capacity(n_strings.min(payload.len() / 4));
        for _ in 0..n_strings {
            let len = r.u32()? as usize;
            let raw = r.take(len)?;
            let s = std::str::from_utf8(raw).map_err(|e| GraphError::Corrupt(format!("string is not UTF-8: {e}")))?;
            strings.push(s);
        }
        let string = |id: u32| -> Result<String, GraphError> {
            strings
                .get(id as usize)
                .map(|s| s.to_string())
                .ok_or_else(|| GraphError::Corrupt(format!("string id {id} out of range")))
        };
        let n_nodes = r.u32()? as usize;
        let mut graph: DiGraph<NodeKind, EdgeKind> = DiGraph::with_capacity(n_nodes.min(payload.len() / 5), 0);
        for _ in 0..n_nodes {
            let node = match r.u8()? {
                0 => NodeKind::File {
                    path: string(r.u32()?)?,
                },
                2 => NodeKind::External {
                    name: string(r.u32()?)?,
                },
                1 => {
                    let chunk_id = r.u32()?;
                    let kind_byte = r.u8()?;
                    let kind = kind_from_u8(kind_byte)
                        .ok_or_else(|| GraphError::Corrupt(format!("unknown symbol kind {kind_byte}")))?;
                    let name = string(r.u32()?)?;
                    let path = string(r.u32()?)?;
                    let parent = match r.u32()? {
                        0 => None,
                        p => Some(string(p - 1)?),
                    };
                    let n_more = r.u32()? as usize;
                    if n_more > r.remaining() / 4 {
                        return Err(GraphError::Corrupt(format!("{n_more} windows exceed the payload")));
                    }
                    let mut more_chunks = Vec::with_capacity(n_more);
                    for _ in 0..n_more {
                        more_chunks.push(r.u32()?);
                    }
                    NodeKind::Symbol(SymbolNode {
                        chunk_id,
                        more_chunks,
                        name,
                        kind,
                        path,
                        parent,
                    })
                }
                tag => return Err(GraphError::Corrupt(format!("unknown node tag {tag}"))),
            };
            graph.add_node(node);
        }
        let n_edges = r.u32()? as usize;
        if n_edges > r.remaining() / 9 {
            return Err(GraphError::Corrupt(format!("{n_edges} edges exceed the payload")));
        }
        graph.reserve_edges(n_edges);
        for _ in 0..n_edges {
            let (a, b, k) = (r.u32()? as usize, r.u32()? as usize, r.u8()?);
            if a >= n_nodes || b >= n_nodes {
                return Err(GraphError::Corrupt(format!("edge {a}→{b} names a missing node")));
            }
            let kind = EdgeKind::from_u8(k).ok_or_else(|| GraphError::Corrupt(format!("unknown edge kind {k}")))?;
            graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), kind);
        }
        if r.remaining() != 0 {
            return Err(GraphError::Corrupt(format!("{} unread payload bytes", r.remaining())));
        }
        Ok(CodeGraph::from_graph(graph))
    }
}

fn add_str<'a>(ids: &mut HashMap<&'a str, u32>, strings: &mut Vec<&'a str>, s: &'a str) {
    if !ids.contains_key(s) {
        ids.insert(s, strings.len() as u32);
        strings.push(s);
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], GraphError> {
        if n > self.remaining() {
            return Err(GraphError::Corrupt(format!(
                "payload ends early at byte {} (wanted {n} more)",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, GraphError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, GraphError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

const KINDS: [SymbolKind; 13] = [
    SymbolKind::Function,
    SymbolKind::Method,
    SymbolKind::Class,
    SymbolKind::Struct,
    SymbolKind::Enum,
    SymbolKind::Trait,
    SymbolKind::Interface,
    SymbolKind::Impl,
    SymbolKind::Module,
    SymbolKind::Type,
    SymbolKind::Constant,
    SymbolKind::Section,
    SymbolKind::Window,
];

fn kind_to_u8(k: SymbolKind) -> u8 {
    KINDS.iter().position(|x| *x == k).expect("every kind is listed") as u8
}

fn kind_from_u8(v: u8) -> Option<SymbolKind> {
    KINDS.get(v as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{build_graph, function as f, symbol_chunk as chunk};

    fn sample() -> CodeGraph {
        let chunks = vec![
            chunk(
                0,
                "src/main.rs",
                Some("main"),
                SymbolKind::Function,
                None,
                &["Server::run"],
                &["crate::server::Server", "std::io"],
            ),
            chunk(1, "src/server.rs", Some("Server"), SymbolKind::Struct, None, &[], &[]),
            chunk(
                2,
                "src/server.rs",
                Some("run"),
                SymbolKind::Method,
                Some("Server"),
                &["helper"],
                &[],
            ),
            chunk(
                3,
                "src/server.rs",
                Some("run"),
                SymbolKind::Window,
                Some("Server"),
                &[],
                &[],
            ),
            f(4, "src/server.rs", "helper", &[]),
            chunk(5, "README.md", Some("Usage"), SymbolKind::Section, None, &[], &[]),
        ];
        build_graph(&chunks)
    }

    #[test]
    fn write_read_round_trip() {
        let g = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.bin");
        g.write(&path).unwrap();
        let back = CodeGraph::read(&path).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.node_count(), g.node_count());
        let run = back.symbol(back.node_for_chunk(3).unwrap()).unwrap();
        assert_eq!(run.chunk_ids().collect::<Vec<_>>(), vec![2, 3]);
        assert!(!dir.path().join("graph.bin.tmp").exists());
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_typed_errors() {
        let bytes = sample().encode();
        assert!(matches!(
            CodeGraph::decode(&bytes[..bytes.len() - 3]),
            Err(GraphError::Truncated { .. })
        ));
        assert!(matches!(
            CodeGraph::decode(&bytes[..10]),
            Err(GraphError::Truncated { .. })
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(CodeGraph::decode(&flipped), Err(GraphError::Checksum { .. })));
        let mut version = bytes.clone();
        version[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            CodeGraph::decode(&version),
            Err(GraphError::UnsupportedVersion {
                found: 99,
                expected: GRAPH_FORMAT_VERSION
            })
        ));
        assert!(matches!(
            CodeGraph::decode(b"{\"nodes\": []}  ........................"),
            Err(GraphError::BadMagic)
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(CodeGraph::decode(&longer), Err(GraphError::Corrupt(_))));
        // A well-checksummed payload with an invalid node tag is still rejected.
        let mut bad_tag = bytes.clone();
        let strings_end = {
            let mut r = Reader {
                buf: &bytes[HEADER_LEN..],
                pos: 0,
            };
            for _ in 0..r.u32().unwrap() {
                let n = r.u32().unwrap() as usize;
                r.take(n).unwrap();
            }
            HEADER_LEN + r.pos
        };
        bad_tag[strings_end + 4] = 7;
        let sum = xxhash_rust::xxh3::xxh3_64(&bad_tag[HEADER_LEN..]);
        bad_tag[20..28].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(CodeGraph::decode(&bad_tag), Err(GraphError::Corrupt(m)) if m.contains("node tag")));
        let missing = CodeGraph::read(Path::new("/nonexistent/graph.bin"));
        assert!(matches!(missing, Err(GraphError::Io { .. })));
    }
}
