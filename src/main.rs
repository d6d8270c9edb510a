//! `trusty-search`: one binary for every role (indexer, shard, router, local
//! cluster, MCP bridge) and for building, searching and evaluating indexes.

mod cli;

fn main() -> std::process::ExitCode {
    // Two rustls crypto backends end up linked (aws-lc-rs and ring); pick one
    // before any TLS client (kube, object_store, reqwest) is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cli::main()
}
