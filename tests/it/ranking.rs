//! Ranking behaviours that only show on a whole built index: the query
//! reader, the arms, fusion and the symbol table working together. In
//! process: the tree is built with the real indexer and opened as a shard
//! would open it.

use std::path::Path;
use trusty_search::IndexId;
use trusty_search::api::{GroupBy, SearchMode, SearchRequest};
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::search::engine::Engine;
use trusty_search::search::files::FileRankParams;

/// One definition of `parse_settings` in a file whose path does not say so,
/// and a wrapper named after it, in a file whose path does, that names it
/// again and again: on words alone the wrapper wins.
fn write_definition_and_caller(dir: &Path) {
    let files: &[(&str, &str)] = &[
        (
            "app/config.py",
            r##"import os


def parse_settings(text):
    """Read key = value lines into a dictionary.

    Blank lines and lines starting with a hash are skipped; keys and values
    are stripped of surrounding whitespace; a later key replaces an earlier
    one; environment variables named in values are expanded.
    """
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = os.path.expandvars(value.strip())
    return values
"##,
        ),
        (
            "app/settings_cli.py",
            r#"from app.config import parse_settings


def reload_all(texts):
    first = parse_settings(texts[0])
    rest = [parse_settings(t) for t in texts[1:]]
    return first, rest


def parse_settings_files(paths):
    """parse_settings over files: parse_settings reads text, so read it first."""
    return [parse_settings(open(p).read()) for p in paths]
"#,
        ),
    ];
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The tree of [`write_definition_and_caller`], built and opened; the
/// directory lives as long as the engine reads from it.
async fn definition_and_caller() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_definition_and_caller(&src);
    let id = IndexId::new("ranking").unwrap();
    let report = build_bundle(&src, &id, &dir.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    let engine = Engine::open(&report.dir, report.manifest.clone(), None).await.unwrap();
    (dir, engine)
}

fn request(query: &str, mode: SearchMode, group_by: Option<GroupBy>) -> SearchRequest {
    SearchRequest {
        mode,
        group_by,
        ..SearchRequest::new(query)
    }
}

/// A query that is just a name asks where that name is defined: the
/// definition comes first although a caller matches the words better, in
/// chunk and in file search. The controls, the BM25 arm alone and file
/// ranking with `definers_first` off, rank the caller first: without them
/// this test would prove nothing.
#[tokio::test]
async fn a_name_alone_finds_its_definition_before_its_callers() {
    let (_dir, mut engine) = definition_and_caller().await;

    let bm25_words = engine
        .bm25()
        .search("parse_settings", 10, &[], None)
        .unwrap()
        .into_iter()
        .map(|(id, _)| engine.chunks()[id as usize].path.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        bm25_words.first().map(String::as_str),
        Some("app/settings_cli.py"),
        "control: on words alone the caller should rank first ({bm25_words:?})"
    );

    for mode in [SearchMode::Bm25, SearchMode::Hybrid] {
        let resp = engine.search(&request("parse_settings", mode, None)).await.unwrap();
        let first = &resp.hits[0];
        assert_eq!(
            (first.path.as_str(), first.symbol.as_deref()),
            ("app/config.py", Some("parse_settings")),
            "{mode:?}: {:?}",
            resp.hits.iter().map(|h| (&h.path, &h.symbol)).collect::<Vec<_>>()
        );
        assert!(
            resp.hits.iter().any(|h| h.path == "app/settings_cli.py"),
            "callers still follow"
        );
        assert!(
            resp.hits.windows(2).all(|w| w[0].score >= w[1].score),
            "scores stay descending"
        );
    }

    let file_search = request("parse_settings", SearchMode::Bm25, Some(GroupBy::File));
    let files = engine.search(&file_search).await.unwrap().files;
    assert_eq!(
        files[0].path,
        "app/config.py",
        "{:?}",
        files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );

    engine.set_file_params(FileRankParams {
        definers_first: false,
        ..FileRankParams::default()
    });
    let on_evidence = engine.search(&file_search).await.unwrap().files;
    assert_eq!(
        on_evidence[0].path,
        "app/settings_cli.py",
        "control: file ranking's evidence alone should rank the caller first ({:?})",
        on_evidence.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
}

/// A pasted issue that points at a file (by path, in a stack frame) lifts
/// that file's chunks in hybrid chunk search above a chunk elsewhere that
/// repeats more of the issue's words: the file arm. The BM25 arm alone is the
/// control.
#[tokio::test]
async fn a_pasted_issue_lifts_the_chunks_of_the_file_it_points_at() {
    let (_dir, engine) = definition_and_caller().await;
    let issue = "reload_all loses values when reloading texts\n\n\
        Calling reload_all on texts returns empty values: every result \
        that reload_all collects is empty after the first reload, and \
        reload_all should keep the values of each text it reloads.\n\n\
        ```\n\
        Traceback (most recent call last):\n  \
        File \"app/config.py\", line 18\n\
        KeyError: 'HOME'\n\
        ```\n";

    let words = engine.search(&request(issue, SearchMode::Bm25, None)).await.unwrap();
    assert_eq!(
        words.hits[0].path, "app/settings_cli.py",
        "control: on words alone the caller should rank first"
    );
    let hybrid = engine.search(&request(issue, SearchMode::Hybrid, None)).await.unwrap();
    assert_eq!(
        hybrid.hits[0].path,
        "app/config.py",
        "{:?}",
        hybrid
            .hits
            .iter()
            .map(|h| (&h.path, &h.symbol, h.score))
            .collect::<Vec<_>>()
    );
}
