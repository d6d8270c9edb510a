//! Small source trees and published versions for tests.

use std::path::Path;
use trusty_search::IndexId;
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::storage::publish::{PublishOptions, Published, publish};
use trusty_search::storage::store::Store;

/// Writes a tiny multi-language repository; `flavour` changes one function so
/// two builds produce distinguishable versions.
pub fn write_repo(dir: &Path, flavour: &str) {
    let files: &[(&str, String)] = &[
        (
            "src/config.rs",
            format!(
                r#"use std::fs;

/// Loads the configuration file from disk.
pub fn load_config(path: &str) -> Config {{
    let text = fs::read_to_string(path).unwrap();
    parse_config(&text)
}}

pub fn parse_config(text: &str) -> Config {{
    Config {{ raw: text.to_string(), flavour: "{flavour}" }}
}}

pub struct Config {{
    pub raw: String,
    pub flavour: &'static str,
}}
"#
            ),
        ),
        (
            "src/server.rs",
            r#"use crate::config::load_config;

pub struct Server { port: u16 }

impl Server {
    pub fn start(port: u16) -> Server {
        let _cfg = load_config("server.toml");
        Server { port }
    }

    pub fn handle_request(&self, body: &str) -> String {
        format!("{} handled on {}", body, self.port)
    }
}
"#
            .to_string(),
        ),
        (
            "tools/report.py",
            r#"import json

def write_report(results, path):
    """Write benchmark results as JSON."""
    with open(path, "w") as f:
        json.dump(results, f)

class Reporter:
    def flush(self):
        write_report({}, "out.json")
"#
            .to_string(),
        ),
        (
            "README.md",
            "# Demo\n\nA demo repository for tests.\n\n## Usage\n\nRun the server.\n".to_string(),
        ),
    ];
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Builds `src` (lexical + graph, no embedder) and publishes it as `id`.
pub async fn build_and_publish(store: &Store, id: &str, src: &Path) -> Published {
    let id = IndexId::new(id).unwrap();
    let work = tempfile::tempdir().unwrap();
    let report = build_bundle(src, &id, &work.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    publish(store, &id, &report.dir, &PublishOptions::default())
        .await
        .unwrap()
}

/// A repository fixture published under `id`, from a fresh temp dir.
pub async fn publish_fixture(store: &Store, id: &str, flavour: &str) -> Published {
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path(), flavour);
    build_and_publish(store, id, src.path()).await
}

/// Publishes the same small repository under each of `ids`, building it once
/// (each copy's manifest names its own id), for tests that need many indexes.
pub async fn publish_copies(store: &Store, ids: &[String], flavour: &str) {
    use trusty_search::storage::layout::MANIFEST_FILE;
    use trusty_search::storage::manifest::Manifest;
    use trusty_search::storage::publish::seal_bundle;
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path(), flavour);
    let work = tempfile::tempdir().unwrap();
    let first = IndexId::new(ids[0].as_str()).unwrap();
    let built = build_bundle(src.path(), &first, &work.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    for id in ids {
        let id = IndexId::new(id.as_str()).unwrap();
        let copy = work.path().join(format!("copy-{id}"));
        copy_dir(&built.dir, &copy);
        let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(copy.join(MANIFEST_FILE)).unwrap()).unwrap();
        manifest.index_id = id.to_string();
        seal_bundle(&copy, manifest).unwrap();
        publish(store, &id, &copy, &PublishOptions::default()).await.unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Names under `dir` that contain `marker` ("" for all), once removals in
/// the background have had up to five seconds to finish: a cache directory
/// is renamed aside at once and deleted off the async workers, so a test
/// that looks right after a failure may still see it going.
pub async fn settled_entries(dir: &Path, marker: &str) -> Vec<String> {
    let list = || -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(marker))
                    .collect()
            })
            .unwrap_or_default()
    };
    for _ in 0..100 {
        let names = list();
        if names.is_empty() {
            return names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    list()
}
