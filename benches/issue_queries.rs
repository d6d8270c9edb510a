//! Issue-shaped queries for the latency bench: what an engineer or an agent
//! pastes into search about the crates in the query corpus (a bug report with
//! its code, panic message and backtrace, a feature request, a build log), and
//! two hostile inputs the engine must bound (64 KiB of identifiers, a
//! 500-frame backtrace). Written for this bench in the form of real reports;
//! they name real paths and symbols of the corpus so every clause has
//! postings to walk.

/// Issue texts of 0.5–4 KB, the shape most pasted issues have.
pub const ISSUES: &[&str] = &[
    r#"spawn_blocking task never runs after runtime shutdown_timeout

**Version**
tokio v1.38.0, tokio-macros v2.3.0

**Platform**
Linux 6.5.0-21-generic x86_64

**Description**
When a task is submitted with `tokio::task::spawn_blocking` while the runtime is shutting down with `Runtime::shutdown_timeout`, the JoinHandle never resolves and the blocking pool keeps the thread parked.

```rust
let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
let handle = rt.spawn(async {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(1))).await
});
rt.shutdown_timeout(Duration::from_millis(100));
```

I expected the handle to return a `JoinError` that reports cancellation. Instead it hangs forever. Looking at `tokio/src/runtime/blocking/pool.rs`, `Spawner::spawn_task` checks `shared.shutdown` but `BlockingPool::shutdown` only notifies the condvar once.
"#,
    r#"thread 'tokio-runtime-worker' panicked at 'called `Result::unwrap()` on an `Err` value: Os { code: 24, kind: Uncategorized, message: "Too many open files" }'

We run an axum 0.7 server behind a load balancer. Under about 3k concurrent connections the accept loop panics:

```
thread 'tokio-runtime-worker' panicked at 'called `Result::unwrap()` on an `Err` value: Os { code: 24, kind: Uncategorized, message: "Too many open files" }', src/serve.rs:214:48
stack backtrace:
   0: rust_begin_unwind
             at /rustc/07dca489ac2d933c78d3c5158e3f43beefeb02ce/library/std/src/panicking.rs:645:5
   1: core::panicking::panic_fmt
   2: core::result::unwrap_failed
             at /rustc/07dca489ac2d933c78d3c5158e3f43beefeb02ce/library/core/src/result.rs:1649:5
   3: axum::serve::Serve<M,S>::into_future::{{closure}}
             at ./src/serve.rs:214:48
   4: tokio::net::tcp::listener::TcpListener::accept::{{closure}}
             at ./src/net/tcp/listener.rs:161:9
   5: tokio::runtime::task::core::Core<T,S>::poll
             at ./src/runtime/task/core.rs:328:17
   6: tokio::runtime::scheduler::multi_thread::worker::Context::run_task
             at ./src/runtime/scheduler/multi_thread/worker.rs:576:13
```

EMFILE should be retried after a short sleep like hyper's `AddrIncoming` did, not unwrap. A server should not die because the process ran out of file descriptors for a moment.
"#,
    r#"IndexWriter::commit deadlocks when merge policy triggers during delete_term

Using tantivy 0.22 with `LogMergePolicy` and a `memory_budget` of 50_000_000 bytes. After a few thousand `index_writer.delete_term(Term::from_field_u64(id_field, id))` calls followed by `add_document`, `commit()` never returns.

Steps to reproduce:
1. create an index with a u64 fast field `id` and a text field `body`
2. in a loop: delete_term by id, add_document, every 1000 docs commit
3. after ~40 commits the commit blocks

A thread dump shows `SegmentUpdater::schedule_commit` waiting on `merge_operations` while the merge thread waits on `SegmentManager::write` in `src/indexer/segment_updater.rs` and `src/indexer/segment_manager.rs`. The `DeleteCursor` in `src/indexer/delete_queue.rs` looks like it is held across the await. Is the segment register lock ordering documented anywhere?
"#,
    r#"Feature request: retry with exponential backoff and jitter for object_store multipart upload parts

Currently `AmazonS3::put_multipart` fails the whole upload when one `UploadPart` request returns a 503 SlowDown. `RetryConfig` has `max_retries` and `retry_timeout` and a `BackoffConfig { init_backoff, max_backoff, base }`, but the multipart path in `src/aws/client.rs` calls `put_part` without going through `RetryExt::send_retry`.

Proposal: route `S3Client::put_part` through the same retry logic as `get_request`, honour `Retry-After`, and add jitter so that 64 concurrent parts do not retry in lockstep. This would also help `GoogleCloudStorage` and `MicrosoftAzure` where `put_block` has the same shape. Related: `WriteMultipart::abort` should not be called on a retryable error.
"#,
    r#"datafusion: `SortExec` with `fetch` spills to disk even though the memory pool has room

Query:

```sql
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue
FROM lineitem GROUP BY l_orderkey ORDER BY revenue DESC LIMIT 10;
```

With `SessionConfig::new().with_target_partitions(8)` and a `GreedyMemoryPool` of 2 GB the physical plan is `SortPreservingMergeExec: [revenue DESC], fetch=10` over `SortExec: TopK(fetch=10)` but `ExternalSorter::insert_batch` still calls `spill()` every few batches: the `MemoryReservation::try_grow` in `datafusion/physical-plan/src/sorts/sort.rs` reserves the whole `RecordBatch` size from `get_record_batch_memory_size` instead of the top-k heap size. EXPLAIN ANALYZE shows spill_count=37 spilled_bytes=1.2 GB. Expected: TopK keeps only `fetch` rows per partition and never spills.
"#,
    r#"kube-runtime: controller stops reconciling after the watch stream returns 410 Gone

Using kube 0.90 `Controller::new(api, watcher::Config::default()).run(reconcile, error_policy, ctx)`. After the API server compacts etcd, the watcher gets `ErrorResponse { status: "Failure", message: "too old resource version: 123 (456)", reason: "Expired", code: 410 }`. The log shows

```
WARN kube_runtime::watcher: watcher error: ErrorResponse { code: 410, reason: "Expired" }
```

and after that no more reconcile calls happen, even for new objects. In `kube-runtime/src/watcher.rs` the `step_trampolined` function resets to `State::Empty` on 410, but `default_backoff` wraps the stream and the `StreamBackoff` seems to stop polling once `reset_timeout` elapses. Is `watcher::Config::any_semantic()` required here? Reproduction: a kind cluster with `--etcd-compaction-interval 10s`.
"#,
    r#"lance: `Dataset::write` with `WriteMode::Append` fails "Schema mismatch" after add_columns

error: LanceError(Schema): Append with different schema: original=Schema { fields: [Field { name: "id", data_type: Int64 }, Field { name: "vector", data_type: FixedSizeList(Float32, 384) }] } new=Schema { fields: [Field { name: "id" }, Field { name: "vector" }, Field { name: "text", data_type: Utf8 }] }, rust/lance/src/dataset/write/insert.rs:212:27

We call `dataset.add_columns(NewColumnTransform::SqlExpressions(vec![("text".into(), "''".into())]), None, None)` and then append batches that include `text`. The manifest after add_columns has the new field but `InsertBuilder::validate_write` compares against the schema from `Dataset::checkout_version` of the previous version. `create_index(&["vector"], IndexType::IvfHnswSq, ...)` afterwards also fails with the same error. lance 0.19, arrow 53.
"#,
    r#"hyper client: connection pool returns a closed connection after server sends GOAWAY (h2)

hyper 1.4 + hyper-util 0.1 `Client::builder(TokioExecutor::new()).http2_only(true)`. When the server sends GOAWAY with NO_ERROR during graceful shutdown, the next request fails with

    hyper_util::client::legacy::Error(SendRequest, hyper::Error(Canceled, "connection closed"))

instead of opening a new connection. `PoolClient::is_ready` in `src/client/legacy/pool.rs` still returns true for the h2 `SendRequest` after `h2::proto::connection::Connection::go_away` was received (see `h2/src/proto/streams/recv.rs` `recv_go_away`). reqwest 0.12 users see this as `error sending request for url`: reqwest::Error { kind: Request, source: hyper_util::client::legacy::Error(SendRequest, ...) }. Retrying once fixes it, so the pool should check `SendRequest::is_closed` or `poll_ready` before handing the connection out.
"#,
];

/// 64 KiB of identifier-shaped words, with no structure for the query reader
/// to use.
pub fn random_identifiers() -> String {
    let parts = [
        "spawn", "blocking", "index", "writer", "segment", "merge", "schema", "field", "batch", "record", "stream",
        "future", "poll", "waker", "channel", "sender", "receiver", "buffer", "bytes", "decode", "encode", "plan",
        "exec", "sort", "hash", "join", "vector", "query", "parser", "token",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::new();
    while out.len() < 64 * 1024 - 64 {
        let (a, b, c) = (next(), next(), next());
        let word = match a % 3 {
            0 => format!("{}_{}", parts[(b % 30) as usize], parts[(c % 30) as usize]),
            1 => format!(
                "{}{}",
                capitalise(parts[(b % 30) as usize]),
                capitalise(parts[(c % 30) as usize])
            ),
            _ => format!("{}.{}", parts[(b % 30) as usize], parts[(c % 30) as usize]),
        };
        out.push_str(&word);
        out.push(' ');
    }
    out
}

/// A panic with a 500-frame backtrace through real corpus paths.
pub fn deep_backtrace() -> String {
    let frames = [
        (
            "tokio::runtime::task::core::Core<T,S>::poll",
            "tokio/src/runtime/task/core.rs:328:17",
        ),
        (
            "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
            "tokio/src/runtime/scheduler/multi_thread/worker.rs:576:13",
        ),
        (
            "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_loop",
            "hyper/src/proto/h1/dispatch.rs:161:21",
        ),
        (
            "tower::util::map_response::MapResponseFuture<F,N>::poll",
            "tower/src/util/map_response.rs:95:9",
        ),
        (
            "axum::routing::route::RouteFuture<E>::poll",
            "axum/src/routing/route.rs:152:30",
        ),
        (
            "datafusion_physical_plan::stream::RecordBatchStreamAdapter<S>::poll_next",
            "datafusion/physical-plan/src/stream.rs:376:9",
        ),
        (
            "tantivy::indexer::segment_updater::SegmentUpdater::schedule_commit",
            "tantivy/src/indexer/segment_updater.rs:388:13",
        ),
        (
            "serde_json::de::Deserializer<R>::deserialize_struct",
            "serde_json/src/de.rs:1840:31",
        ),
    ];
    let mut out = String::from(
        "thread 'main' panicked at 'attempt to subtract with overflow', src/main.rs:12:5\nstack backtrace:\n",
    );
    for i in 0..500 {
        let (symbol, at) = frames[i % frames.len()];
        out.push_str(&format!("  {i:>3}: {symbol}\n             at ./src/{at}\n"));
    }
    out
}

/// The text's words, lowercased and split at case changes, one token each
/// under the code analyzer: what a flat bag-of-words query of it reads.
pub fn flat_words(text: &str) -> String {
    let mut out = String::new();
    for run in text.split(|c: char| !c.is_ascii_alphabetic()).filter(|r| !r.is_empty()) {
        let mut prev_lower = false;
        for c in run.chars() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push(' ');
            }
            prev_lower = c.is_ascii_lowercase();
            out.push(c.to_ascii_lowercase());
        }
        out.push(' ');
    }
    out
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
