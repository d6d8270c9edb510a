//! Reading code through an index, in process: the tree is built with the
//! real indexer and opened as a shard would open it.

use trusty_search::IndexId;
use trusty_search::api::{LineRange, MAX_READ_BYTES};
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::search::engine::Engine;

/// A file with one line far longer than a read may return (a data blob the
/// minified check lets through, as the lines around it are short): a read
/// stops before that line, and reading that line alone returns its start.
#[tokio::test]
async fn a_read_stops_at_the_byte_budget_on_a_line_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let blob = "x".repeat(MAX_READ_BYTES + 1000);
    let mut text = format!("def first():\n    return 1\nDATA = '{blob}'\n");
    for i in 0..600 {
        text.push_str(&format!("def f{i}():\n    pass\n"));
    }
    std::fs::write(src.join("data.py"), &text).unwrap();
    let id = IndexId::new("reading").unwrap();
    let report = build_bundle(&src, &id, &dir.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    let engine = Engine::open(&report.dir, report.manifest.clone(), None).await.unwrap();

    let whole = engine.read_file("data.py", None).unwrap();
    assert_eq!((whole.start_line, whole.end_line), (1, 2));
    assert_eq!(whole.text, "def first():\n    return 1\n");
    assert!(whole.truncated);
    assert_eq!(whole.total_lines, 1203);

    let long = engine
        .read_file("data.py", Some(LineRange { start: 3, end: Some(4) }))
        .unwrap();
    assert_eq!((long.start_line, long.end_line), (3, 3));
    assert!(
        long.truncated && long.text.len() <= MAX_READ_BYTES,
        "{}",
        long.text.len()
    );
    assert!(long.text.starts_with("DATA = 'xxx"));

    let after = engine
        .read_file("data.py", Some(LineRange { start: 4, end: Some(5) }))
        .unwrap();
    assert_eq!(after.text, "def f0():\n    pass\n");
    assert!(!after.truncated);
}
