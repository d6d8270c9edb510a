//! `trusty-search index …`: build and publish versions, list, roll back, delete,
//! and prune the store's embedding cache.

use super::embedder_args::EmbedderArgs;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use trusty_search::IndexId;
use trusty_search::index::build::{BuildOptions, build_bundle, clear_bundle_dir, git_commit};
use trusty_search::index::embed_cache;
use trusty_search::index::walk::{SkipCounts, WalkConfig};
use trusty_search::model::Language;
use trusty_search::storage::manifest::{Counts, SourceInfo};
use trusty_search::storage::open::read_current;
use trusty_search::storage::publish::{self, PublishOptions};
use trusty_search::storage::store::Store;

#[derive(clap::Subcommand)]
pub enum IndexCommand {
    /// Index a source tree (or a git repository) and publish it as the new current version.
    Build(Box<BuildArgs>),
    /// List indexes in a store with their current version.
    List {
        #[arg(long, env = "TRUSTY_STORE")]
        store: String,
    },
    /// Point an index back at an older version still in storage.
    Rollback {
        #[arg(long, env = "TRUSTY_STORE")]
        store: String,
        #[arg(long)]
        id: IndexId,
        #[arg(long)]
        version: String,
    },
    /// Delete an index and all its versions from storage.
    Delete {
        #[arg(long, env = "TRUSTY_STORE")]
        store: String,
        #[arg(long)]
        id: IndexId,
    },
    /// Remove the store's cached chunk vectors that no index's last build uses.
    PruneEmbedCache {
        #[arg(long, env = "TRUSTY_STORE")]
        store: String,
        /// Keep unused packs younger than this: longer than the longest build
        /// that writes to this store (a build names its packs when it finishes).
        #[arg(long, default_value_t = 24)]
        min_age_hours: u64,
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Source directory (with --git-url: where to clone; a temporary directory when omitted).
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub id: IndexId,
    /// Object store URL: file:///path, s3://bucket/prefix, gs://…, az://…, memory://name.
    #[arg(long, env = "TRUSTY_STORE")]
    pub store: String,
    /// Clone this git repository first.
    #[arg(long)]
    pub git_url: Option<String>,
    /// Branch, tag or commit to check out (with --git-url).
    #[arg(long)]
    pub git_ref: Option<String>,
    /// Only index paths matching these globs.
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// Skip paths matching these globs.
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Only index these languages.
    #[arg(long = "lang")]
    pub languages: Vec<String>,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Versions to keep in storage for rollback.
    #[arg(long, default_value_t = 5)]
    pub keep_versions: usize,
    /// Where to assemble the bundle before upload (a temporary directory when
    /// omitted). What an earlier build left there is cleared; anything else
    /// there makes the build fail rather than be deleted.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
    /// Embed every chunk again instead of reusing the vectors earlier builds
    /// kept in the store (under `embed-cache/`).
    #[arg(long, env = "TRUSTY_NO_EMBED_CACHE")]
    pub no_embed_cache: bool,
    /// Publish even when nothing was indexed (by default such a build fails
    /// rather than replace the current version with an empty one).
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub embedder: EmbedderArgs,
}

pub async fn run(cmd: IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Build(args) => build(*args).await,
        IndexCommand::List { store } => {
            let store = Store::open(&store)?;
            for name in store.list_dirs(trusty_search::storage::layout::INDEXES_DIR).await? {
                let Ok(id) = IndexId::new(name.clone()) else { continue };
                match read_current(&store, &id, None).await {
                    Ok(Some((p, _))) => println!("{id}\t{}", p.version),
                    Ok(None) => println!("{id}\t-"),
                    Err(e) => println!("{id}\terror: {e}"),
                }
            }
            Ok(())
        }
        IndexCommand::Rollback { store, id, version } => {
            let store = Store::open(&store)?;
            let p = publish::rollback(&store, &id, &version).await?;
            println!("{id} now at {}", p.version);
            Ok(())
        }
        IndexCommand::Delete { store, id } => {
            let store = Store::open(&store)?;
            let n = publish::delete_index(&store, &id).await?;
            println!("deleted {n} objects of {id}");
            Ok(())
        }
        IndexCommand::PruneEmbedCache {
            store,
            min_age_hours,
            dry_run,
        } => {
            let store = Store::open(&store)?;
            let min_age = std::time::Duration::from_secs(min_age_hours.saturating_mul(3600));
            let r = embed_cache::prune(&store, min_age, dry_run).await?;
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            println!(
                "{} packs ({:.1} MiB): {} in use, {} unused but younger than {min_age_hours} h, {} {} ({:.1} MiB)",
                r.packs,
                mib(r.bytes),
                r.referenced,
                r.young,
                r.removed,
                if dry_run { "would be removed" } else { "removed" },
                mib(r.removed_bytes)
            );
            Ok(())
        }
    }
}

async fn build(args: BuildArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let mut languages = Vec::new();
    for l in &args.languages {
        languages.push(Language::parse(l).with_context(|| format!("unknown language {l:?}"))?);
    }
    // Before cloning: a mistyped --work-dir fails at once, not after a download.
    if let Some(dir) = &args.work_dir {
        clear_bundle_dir(dir)?;
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let (root, source) = match &args.git_url {
        Some(url) => {
            let dest = args.dir.clone().unwrap_or_else(|| tmp.path().join("src"));
            clone(url, args.git_ref.as_deref(), &dest)?;
            let commit = git_commit(&dest);
            let source = SourceInfo {
                path: dest.display().to_string(),
                repo: Some(url.clone()),
                git_ref: args.git_ref.clone(),
                git_commit: commit,
            };
            (dest, source)
        }
        None => {
            let Some(dir) = args.dir.clone() else {
                bail!("give a source directory or --git-url")
            };
            let dir = dir
                .canonicalize()
                .with_context(|| format!("source directory {}", dir.display()))?;
            let source = SourceInfo {
                path: dir.display().to_string(),
                git_commit: git_commit(&dir),
                ..Default::default()
            };
            (dir, source)
        }
    };
    let embedder = args.embedder.load_for_build()?;
    let out = args.work_dir.clone().unwrap_or_else(|| tmp.path().join("bundle"));
    let opts = BuildOptions {
        walk: WalkConfig {
            max_file_bytes: args.max_file_bytes,
            include: args.include.clone(),
            exclude: args.exclude.clone(),
            languages: (!languages.is_empty()).then_some(languages),
        },
        embedder,
        embed_cache: (!args.no_embed_cache).then(|| store.clone()),
        progress: true,
        source,
        ..Default::default()
    };
    let report = build_bundle(&root, &args.id, &out, opts).await?;
    refuse_empty(&report.manifest.counts, &report.skipped, &root, args.allow_empty)?;
    let published = publish::publish(
        &store,
        &args.id,
        &report.dir,
        &PublishOptions {
            keep_versions: args.keep_versions,
            ..Default::default()
        },
    )
    .await?;
    let m = &report.manifest;
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
    } else {
        println!(
            "published {} version {} to {}: {} files, {} chunks, {} skipped, {} graph nodes / {} edges, {} ({})",
            m.index_id,
            m.version,
            store.url(),
            m.counts.files,
            m.counts.chunks,
            m.counts.skipped_files,
            m.counts.graph_nodes,
            m.counts.graph_edges,
            m.embedder
                .as_ref()
                .map(|e| format!(
                    "vectors: {} d={} ({} embedded, {} reused)",
                    e.id, e.dimension, report.embedding.embedded, report.embedding.reused
                ))
                .unwrap_or("lexical + graph".into()),
            human_bytes(published.bytes),
        );
        tracing::info!(timings = ?report.timings, pruned = ?published.pruned, "build finished");
    }
    Ok(())
}

/// Fails a build that indexed nothing, unless allowed: an empty result is
/// far more often a wrong directory or ignore rule than an intent, and
/// publishing it would replace a good version.
fn refuse_empty(counts: &Counts, skipped: &SkipCounts, root: &Path, allow_empty: bool) -> Result<()> {
    if allow_empty || counts.chunks > 0 {
        return Ok(());
    }
    bail!(
        "nothing to index in {}: {} files kept, 0 chunks, {} files skipped ({skipped:?}); \
         check the directory, --include/--exclude/--lang and the ignore files, \
         or pass --allow-empty to publish an empty index",
        root.display(),
        counts.files,
        skipped.total(),
    )
}

/// Shallow clone of one ref; falls back to a full clone for commit ids, which
/// `--branch` cannot name. `dest` must be absent or empty: the fallback
/// deletes what the first attempt left there, and that must never be
/// anything of the user's.
fn clone(url: &str, git_ref: Option<&str>, dest: &Path) -> Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; --git-url clones into a new or empty directory",
                    dest.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    }
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .context("running git (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let dest_s = dest.to_string_lossy().to_string();
    let shallow = match git_ref {
        Some(r) => run(&["clone", "--depth", "1", "--branch", r, url, &dest_s]),
        None => run(&["clone", "--depth", "1", url, &dest_s]),
    };
    if shallow.is_ok() {
        return Ok(());
    }
    let Some(r) = git_ref else { return shallow };
    let _ = std::fs::remove_dir_all(dest);
    run(&["clone", url, &dest_s])?;
    run(&["-C", &dest_s, "checkout", "--detach", r])
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build that kept nothing is not published over the current version
    /// unless asked for.
    #[test]
    fn an_empty_build_is_refused_unless_allowed() {
        let mut counts = Counts::default();
        let skipped = SkipCounts {
            binary: 2,
            ..SkipCounts::default()
        };
        let err = refuse_empty(&counts, &skipped, Path::new("/src"), false).unwrap_err();
        assert!(err.to_string().contains("--allow-empty"), "{err:#}");
        refuse_empty(&counts, &skipped, Path::new("/src"), true).unwrap();
        counts.files = 1;
        counts.chunks = 3;
        refuse_empty(&counts, &skipped, Path::new("/src"), false).unwrap();
    }

    /// A --work-dir holding something of the user's fails the build before
    /// the clone, which could take minutes.
    #[tokio::test]
    async fn a_work_dir_in_use_fails_before_the_clone() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            build: BuildArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("notes.txt"), "mine").unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from([
            "build",
            "--id",
            "demo",
            "--store",
            "memory://work-dir-first",
            "--git-url",
            "file:///nowhere/repo.git",
            "--work-dir",
            work.to_str().unwrap(),
        ])
        .unwrap();
        let err = build(cli.build).await.unwrap_err();
        assert!(format!("{err:#}").contains("notes.txt"), "{err:#}");
        assert_eq!(std::fs::read_to_string(work.join("notes.txt")).unwrap(), "mine");
    }

    /// A clone that fails falls back to deleting its destination and cloning
    /// again, so a destination holding anything is refused before git runs.
    #[test]
    fn a_clone_never_touches_a_directory_that_holds_something() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("notes.txt"), "uncommitted").unwrap();
        let err = clone("file:///nowhere/repo.git", Some("v1"), &work).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err:#}");
        assert_eq!(std::fs::read_to_string(work.join("notes.txt")).unwrap(), "uncommitted");
    }
}
