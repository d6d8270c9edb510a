//! Ranking behaviours that only show on a whole built index: the query
//! reader, the arms, fusion and the symbol table working together. In
//! process: the tree is built with the real indexer and opened as a shard
//! would open it.

use crate::support::rng::Xorshift;
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

/// Queries nobody writes on purpose are still queries: 64 KiB of random
/// identifiers, a 500-frame traceback, nothing but stop words, control
/// characters. Every mode answers (best effort or empty, never an error),
/// and the one frame in fifty that names a file of this repository still
/// puts that file first in file search.
#[tokio::test]
async fn hostile_queries_get_an_answer_not_an_error() {
    let (_dir, engine) = definition_and_caller().await;

    let parts = [
        "parse", "settings", "reload", "value", "text", "line", "key", "env", "loader", "merge",
    ];
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut identifiers = String::new();
    while identifiers.len() < 64 * 1024 - 64 {
        let state = rng.next();
        let (a, b) = (parts[(state % 10) as usize], parts[(state / 10 % 10) as usize]);
        let word = match state / 100 % 3 {
            0 => format!("{a}_{b}{} ", state % 97),
            1 => format!("{}{b} ", a.to_uppercase()),
            _ => format!("{a}.{b}.x{} ", state % 89),
        };
        identifiers.push_str(&word);
    }

    let mut traceback = String::from("Traceback (most recent call last):\n");
    for i in 0..500 {
        if i % 50 == 7 {
            traceback.push_str("  File \"/srv/app/config.py\", line 18, in parse_settings\n");
        } else {
            traceback.push_str(&format!(
                "  File \"/usr/lib/python3.12/site-packages/lib{}/core.py\", line {i}, in step_{}\n",
                i % 9,
                i % 13
            ));
        }
        traceback.push_str("    return handler(event)\n");
    }
    traceback.push_str("KeyError: 'HOME'\n");

    let stop_words = "the of and to a in is it that for on with as was at by an be this which or from";
    let junk: String = (0..20_000u32)
        .map(|i| char::from_u32(i % 31 + 1).unwrap_or(' '))
        .chain("\u{fffd}\u{200b}\u{feff}".chars())
        .collect();

    let plans = [
        (SearchMode::Hybrid, None),
        (SearchMode::Bm25, None),
        (SearchMode::Graph, None),
        (SearchMode::Hybrid, Some(GroupBy::File)),
        (SearchMode::Bm25, Some(GroupBy::File)),
    ];
    for (label, query) in [
        ("64 KiB of identifiers", identifiers.as_str()),
        ("500-frame traceback", traceback.as_str()),
        ("stop words", stop_words),
        ("control characters", junk.as_str()),
    ] {
        for (mode, group_by) in plans {
            let resp = engine
                .search(&request(query, mode, group_by))
                .await
                .unwrap_or_else(|e| panic!("{label}, {mode:?} {group_by:?}: {e}"));
            assert!(resp.hits.len() <= 10 && resp.files.len() <= 10, "{label}: top_k holds");
        }
    }

    let files = engine
        .search(&request(&traceback, SearchMode::Hybrid, Some(GroupBy::File)))
        .await
        .unwrap()
        .files;
    assert_eq!(
        files.first().map(|f| f.path.as_str()),
        Some("app/config.py"),
        "{:?}",
        files.iter().map(|f| (&f.path, f.score)).collect::<Vec<_>>()
    );
}

/// A test that repeats a query's words more often than the code it tests
/// ranks below that code in hybrid chunk search: the file priors of file
/// ranking weigh chunks too. The control, the priors off, ranks the test
/// first.
#[tokio::test]
async fn a_test_that_repeats_the_words_ranks_below_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: &[(&str, &str)] = &[
        (
            "pool/blocking.py",
            "def spawn_blocking(task):\n    \"\"\"Hand work that would stall the event loop to a worker.\"\"\"\n    return POOL.submit(task)\n",
        ),
        (
            "tests/test_blocking.py",
            "from pool.blocking import spawn_blocking\n\n\ndef test_blocking_task_on_thread_pool():\n    \
             # a blocking task on the thread pool, a blocking task on a pool thread\n    \
             task = blocking_task(thread_pool=True)\n    assert spawn_blocking(task).result() == 'blocking task done'\n",
        ),
    ];
    for (rel, text) in files {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let id = IndexId::new("priors").unwrap();
    let report = build_bundle(&src, &id, &dir.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    let mut engine = Engine::open(&report.dir, report.manifest.clone(), None).await.unwrap();
    let first = |resp: trusty_search::api::SearchResponse| {
        let order: Vec<_> = resp.hits.iter().map(|h| (h.path.clone(), h.score)).collect();
        format!("{} {order:?}", resp.hits[0].path)
    };

    let query = "run a blocking task on the thread pool";
    let hybrid = engine.search(&request(query, SearchMode::Hybrid, None)).await.unwrap();
    let top = first(hybrid);
    assert!(top.starts_with("pool/blocking.py "), "{top}");

    engine.set_file_params(FileRankParams {
        chunk_priors: false,
        ..FileRankParams::default()
    });
    let control = engine.search(&request(query, SearchMode::Hybrid, None)).await.unwrap();
    let top = first(control);
    assert!(
        top.starts_with("tests/test_blocking.py "),
        "control: on words alone the test should rank first: {top}"
    );
}
