//! Builder tests: edges, resolution tiers and imports per language.

use petgraph::Direction;
use petgraph::graph::NodeIndex;

use super::*;
use crate::bundle::graph::split_call;
use crate::test_support::{function as f, symbol_chunk as chunk};

fn sym_node(g: &CodeGraph, chunk_id: u32) -> NodeIndex {
    g.node_for_chunk(chunk_id).expect("chunk has a node")
}

fn has_edge(g: &CodeGraph, a: NodeIndex, b: NodeIndex, kind: EdgeKind) -> bool {
    g.graph().edges_connecting(a, b).any(|e| *e.weight() == kind)
}

fn targets(g: &CodeGraph, chunk_id: u32, kind: EdgeKind) -> Vec<u32> {
    let mut v: Vec<u32> = g
        .neighbors(sym_node(g, chunk_id), Direction::Outgoing, kind)
        .into_iter()
        .filter_map(|n| g.symbol(n).map(|s| s.chunk_id))
        .collect();
    v.sort();
    v
}

#[test]
fn contains_defines_calls_and_references_edges() {
    let chunks = vec![
        chunk(0, "src/server.rs", Some("Server"), SymbolKind::Struct, None, &[], &[]),
        chunk(1, "src/server.rs", Some("Server"), SymbolKind::Impl, None, &[], &[]),
        chunk(
            2,
            "src/server.rs",
            Some("run"),
            SymbolKind::Method,
            Some("Server"),
            &["self.bind", "Config"],
            &[],
        ),
        chunk(
            3,
            "src/server.rs",
            Some("bind"),
            SymbolKind::Method,
            Some("Server"),
            &[],
            &[],
        ),
        chunk(4, "src/config.rs", Some("Config"), SymbolKind::Struct, None, &[], &[]),
    ];
    let g = build_graph(&chunks);
    let file = g.file_node("src/server.rs").unwrap();
    for id in 0..4 {
        assert!(has_edge(&g, file, sym_node(&g, id), EdgeKind::Defines), "defines {id}");
    }
    // Members hang under the struct, not the impl block.
    assert!(has_edge(&g, sym_node(&g, 0), sym_node(&g, 2), EdgeKind::Contains));
    assert!(has_edge(&g, sym_node(&g, 0), sym_node(&g, 3), EdgeKind::Contains));
    assert!(!has_edge(&g, sym_node(&g, 1), sym_node(&g, 2), EdgeKind::Contains));
    assert_eq!(targets(&g, 2, EdgeKind::Calls), vec![3]);
    assert_eq!(targets(&g, 2, EdgeKind::References), vec![4]);
    // 2 files + 5 symbols; 5 defines + 2 contains + 1 call + 1 reference.
    assert_eq!(g.node_count(), 7);
    assert_eq!(g.edge_count(), 9);
}

#[test]
fn same_file_candidate_wins_over_others() {
    let chunks = vec![
        f(0, "src/a.rs", "main", &["helper"]),
        f(1, "src/a.rs", "helper", &[]),
        f(2, "src/b.rs", "helper", &[]),
        f(3, "src/c.rs", "helper", &[]),
    ];
    let g = build_graph(&chunks);
    assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![1]);
}

#[test]
fn qualifier_and_imports_pick_the_right_candidate() {
    let chunks = vec![
        chunk(
            0,
            "src/main.rs",
            Some("main"),
            SymbolKind::Function,
            None,
            &["Parser::new", "tokenize"],
            &["crate::lex::tokenize"],
        ),
        chunk(
            1,
            "src/parser.rs",
            Some("new"),
            SymbolKind::Method,
            Some("Parser"),
            &[],
            &[],
        ),
        chunk(
            2,
            "src/lexer.rs",
            Some("new"),
            SymbolKind::Method,
            Some("Lexer"),
            &[],
            &[],
        ),
        f(3, "src/lex.rs", "tokenize", &[]),
        f(4, "src/other/lex2.rs", "tokenize", &[]),
    ];
    let g = build_graph(&chunks);
    assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![1, 3]);
    let main = g.file_node("src/main.rs").unwrap();
    let lex = g.file_node("src/lex.rs").unwrap();
    assert!(has_edge(&g, main, lex, EdgeKind::Imports));
    assert!(
        has_edge(&g, main, sym_node(&g, 3), EdgeKind::Imports),
        "import names the item"
    );
}

#[test]
fn items_imported_from_a_package_are_followed_to_their_definition() {
    use SymbolKind::{Class, Window};
    let class = |id, path| chunk(id, path, Some("Basic"), Class, None, &[], &[]);
    let chunks = vec![
        chunk(
            0,
            "app.py",
            Some("run"),
            SymbolKind::Function,
            None,
            &["Basic"],
            &["pkg.Basic"],
        ),
        // `pkg` re-exports from `pkg.core`, which re-exports from `pkg.core.basic`.
        chunk(1, "pkg/__init__.py", None, Window, None, &[], &[".core.Basic"]),
        chunk(2, "pkg/core/__init__.py", None, Window, None, &[], &[".basic.Basic"]),
        class(3, "pkg/core/basic.py"),
        // Too many others of the name for a repository-wide match.
        class(4, "vendor/a/basic.py"),
        class(5, "vendor/b/basic.py"),
        class(6, "vendor/c/basic.py"),
    ];
    let g = build_graph(&chunks);
    let app = g.file_node("app.py").unwrap();
    assert!(has_edge(&g, app, sym_node(&g, 3), EdgeKind::Imports));
    assert_eq!(
        targets(&g, 0, EdgeKind::Calls),
        vec![3],
        "the call resolves through the import"
    );
    let init = g.file_node("pkg/__init__.py").unwrap();
    assert!(has_edge(&g, init, sym_node(&g, 3), EdgeKind::Imports));
}

#[test]
fn a_python_module_beside_the_importer_beats_a_deeper_one_elsewhere() {
    let chunks = vec![
        chunk(
            0,
            "app/main.py",
            Some("run"),
            SymbolKind::Function,
            None,
            &[],
            &["utils.log"],
        ),
        f(1, "app/utils.py", "log", &[]),
        f(2, "vendor/x/utils/log.py", "write", &[]),
    ];
    let g = build_graph(&chunks);
    let main = g.file_node("app/main.py").unwrap();
    assert!(has_edge(
        &g,
        main,
        g.file_node("app/utils.py").unwrap(),
        EdgeKind::Imports
    ));
    assert!(
        has_edge(&g, main, sym_node(&g, 1), EdgeKind::Imports),
        "item `log` of utils.py"
    );
    assert!(!has_edge(
        &g,
        main,
        g.file_node("vendor/x/utils/log.py").unwrap(),
        EdgeKind::Imports
    ));
}

#[test]
fn ambiguous_common_names_are_capped_or_skipped() {
    // 40 `len` methods (more than SCAN_MAX: the indexed path) in other
    // directories and nothing local: skipped.
    let mut chunks = vec![f(0, "src/app.rs", "start", &["len"])];
    for i in 1..=40u32 {
        let path = format!("src/m{i}/len.rs");
        let parent = format!("T{i}");
        chunks.push(chunk(
            i,
            &path,
            Some("len"),
            SymbolKind::Method,
            Some(&parent),
            &[],
            &[],
        ));
    }
    let g = build_graph(&chunks);
    assert!(targets(&g, 0, EdgeKind::Calls).is_empty());
    // With a local definition, only that one is linked.
    chunks.push(f(41, "src/app.rs", "len", &[]));
    let g = build_graph(&chunks);
    assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![41]);
    // A qualifier picks one of them, by type or by module (file stem).
    chunks[0] = f(0, "src/app.rs", "start", &["T7::len", "self.len"]);
    let g = build_graph(&chunks);
    assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![7, 41]);
    chunks.push(f(42, "src/start.rs", "run", &["m9::len"]));
    chunks.push(chunk(
        43,
        "src/m9/mod.rs",
        Some("len"),
        SymbolKind::Function,
        None,
        &[],
        &[],
    ));
    let g = build_graph(&chunks);
    assert_eq!(targets(&g, 42, EdgeKind::Calls), vec![9, 43]);

    // Go: five `Get`s in the caller's package match one tier; at most 3 are linked.
    let mut go = vec![f(0, "app/main.go", "start", &["Get"])];
    for i in 1..=5u32 {
        let path = format!("app/g{i}.go");
        let parent = format!("G{i}");
        go.push(chunk(
            i,
            &path,
            Some("Get"),
            SymbolKind::Method,
            Some(&parent),
            &[],
            &[],
        ));
    }
    let g = build_graph(&go);
    assert_eq!(targets(&g, 0, EdgeKind::Calls).len(), MAX_LINKS_PER_CALL);

    // Few global candidates (unique, or up to the cap) are linked from anywhere.
    let chunks = vec![
        f(0, "x/a.rs", "start", &["solo", "pair"]),
        f(1, "y/b.rs", "solo", &[]),
        f(2, "y/c.rs", "pair", &[]),
        f(3, "z/d.rs", "pair", &[]),
    ];
    assert_eq!(targets(&build_graph(&chunks), 0, EdgeKind::Calls), vec![1, 2, 3]);
}

#[test]
fn windows_of_one_symbol_merge_into_one_node() {
    let chunks = vec![
        chunk(0, "src/big.rs", Some("huge"), SymbolKind::Function, None, &["a"], &[]),
        chunk(1, "src/big.rs", Some("huge"), SymbolKind::Window, None, &["b"], &[]),
        f(2, "src/big.rs", "a", &[]),
        f(3, "src/big.rs", "b", &["huge"]),
    ];
    let g = build_graph(&chunks);
    assert_eq!(sym_node(&g, 0), sym_node(&g, 1));
    assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![2, 3]);
    assert_eq!(targets(&g, 3, EdgeKind::Calls), vec![0]);
    let huge = g.symbol(sym_node(&g, 0)).unwrap();
    assert_eq!(huge.chunk_ids().collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn imports_resolve_across_languages() {
    let chunks = vec![
        chunk(
            0,
            "pkg/app.py",
            Some("run"),
            SymbolKind::Function,
            None,
            &[],
            &["pkg.util.helper", "numpy", ".models"],
        ),
        f(1, "pkg/util.py", "helper", &[]),
        chunk(
            2,
            "pkg/models/__init__.py",
            Some("Model"),
            SymbolKind::Class,
            None,
            &[],
            &[],
        ),
        chunk(
            3,
            "web/src/app.ts",
            Some("main"),
            SymbolKind::Function,
            None,
            &[],
            &["./lib/api", "react"],
        ),
        f(4, "web/src/lib/api.ts", "fetchAll", &[]),
        chunk(
            5,
            "cmd/main.go",
            Some("main"),
            SymbolKind::Function,
            None,
            &[],
            &["github.com/acme/tool/internal/store", "fmt"],
        ),
        f(6, "internal/store/store.go", "Open", &[]),
        f(7, "internal/store/db.go", "Close", &[]),
        chunk(
            8,
            "src/main/java/com/acme/App.java",
            Some("App"),
            SymbolKind::Class,
            None,
            &[],
            &["com.acme.util.Strings", "java.util.List"],
        ),
        chunk(
            9,
            "src/main/java/com/acme/util/Strings.java",
            Some("Strings"),
            SymbolKind::Class,
            None,
            &[],
            &[],
        ),
        chunk(
            10,
            "csrc/main.c",
            Some("main"),
            SymbolKind::Function,
            None,
            &[],
            &["\"util.h\"", "<stdio.h>"],
        ),
        f(11, "csrc/util.h", "util_init", &[]),
        chunk(
            12,
            "src/index/mod.rs",
            Some("build"),
            SymbolKind::Function,
            None,
            &[],
            &["super::model::Chunk", "serde::Serialize"],
        ),
        chunk(13, "src/model.rs", Some("Chunk"), SymbolKind::Struct, None, &[], &[]),
    ];
    let g = build_graph(&chunks);
    let imports = |path: &str| -> Vec<String> {
        let n = g.file_node(path).unwrap();
        let mut v: Vec<String> = g
            .neighbors(n, Direction::Outgoing, EdgeKind::Imports)
            .into_iter()
            .map(|m| match g.node(m) {
                NodeKind::File { path } => path.clone(),
                NodeKind::External { name } => format!("ext:{name}"),
                NodeKind::Symbol(s) => format!("sym:{}", s.name),
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        imports("pkg/app.py"),
        ["ext:numpy", "pkg/models/__init__.py", "pkg/util.py", "sym:helper"]
    );
    assert_eq!(imports("web/src/app.ts"), ["ext:react", "web/src/lib/api.ts"]);
    assert_eq!(
        imports("cmd/main.go"),
        ["ext:fmt", "internal/store/db.go", "internal/store/store.go"]
    );
    assert_eq!(
        imports("src/main/java/com/acme/App.java"),
        [
            "ext:java.util",
            "src/main/java/com/acme/util/Strings.java",
            "sym:Strings"
        ]
    );
    assert_eq!(imports("csrc/main.c"), ["csrc/util.h", "ext:stdio.h"]);
    assert_eq!(imports("src/index/mod.rs"), ["ext:serde", "src/model.rs", "sym:Chunk"]);
}

#[test]
fn call_names_and_identifier_parts() {
    assert_eq!(split_call("Foo::new"), Some((Some("Foo"), "new")));
    assert_eq!(split_call("self.client.get()"), Some((Some("client"), "get")));
    assert_eq!(
        split_call("Vec::<u8>::with_capacity"),
        Some((Some("Vec"), "with_capacity"))
    );
    assert_eq!(split_call("p->next"), Some((Some("p"), "next")));
    assert_eq!(split_call("parse"), Some((None, "parse")));
    assert_eq!(split_call("()"), None);
    assert_eq!(expand_braces("crate::a::{b, c::D}"), ["crate::a::b", "crate::a::c::D"]);
}

/// Synthetic repository of `n` chunks: 100 symbols per file in 50
/// directories; every 15th symbol is a `new` method of its own type (a
/// popular name), each symbol calls a neighbour, a far symbol, `new`, a
/// qualified method and `len` (defined nowhere), and every file imports the
/// next one and `std::fmt`.
fn synthetic(n: u32) -> Vec<Chunk> {
    let per_file = 100;
    (0..n)
        .map(|i| {
            let file = i / per_file;
            let path = format!("src/m{}/f{file}.rs", file % 50);
            let method = i % 15 == 0;
            let name = if method { "new".to_string() } else { format!("fn_{i}") };
            let parent = method.then(|| format!("Type{i}"));
            let mut c = chunk(i, &path, Some(&name), SymbolKind::Function, parent.as_deref(), &[], &[]);
            if method {
                c.kind = SymbolKind::Method;
            }
            c.calls = vec![
                format!("fn_{}", (i * 7919 + 3) % n),
                format!("fn_{}", i.saturating_sub(1)),
                "new".to_string(),
                format!("Type{}::new", (i / 15) * 15),
                "self.len".to_string(),
            ];
            c.imports = vec![
                format!("crate::m{}::f{}::fn_{}", (file + 1) % 50, file + 1, i + 1),
                "std::fmt".to_string(),
            ];
            c
        })
        .collect()
}

#[test]
#[ignore = "timing: cargo test --lib graph -- --ignored --nocapture"]
fn timing_100k_chunks() {
    let chunks = synthetic(100_000);
    let t = std::time::Instant::now();
    let g = build_graph(&chunks);
    let build = t.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.bin");
    let t = std::time::Instant::now();
    g.write(&path).unwrap();
    let write = t.elapsed();
    let t = std::time::Instant::now();
    let back = CodeGraph::read(&path).unwrap();
    let read = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "100k chunks: {} nodes, {} edges; build {build:?}, write {write:?}, read {read:?}, {} KiB",
        g.node_count(),
        g.edge_count(),
        size / 1024
    );
    assert_eq!(back, g);
}
