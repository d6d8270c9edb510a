//! Operator tests that need no Kubernetes cluster (none exists on the
//! development machines or in CI):
//! - `reconcile`: single reconciles against kube's mocked API (tower-test),
//!   one scenario per path;
//! - `controller_e2e`: the real Controller, leader election, watches and
//!   finalizers against an in-process fake API server and fake router;
//! - `cluster_e2e`: the same operator wired to a real trusty-search cluster
//!   (router, shards, S3-compatible server), running the build Jobs' commands;
//! - `crd_files`: the committed CRD, examples and RBAC against the Rust types.

mod cluster_e2e;
mod controller_e2e;
mod crd_files;
mod fake_apiserver;
mod fake_router;
mod harness;
mod kubelet;
mod reconcile;
/// The root package's test support (S3 server, cluster processes, fixtures).
#[allow(dead_code)]
#[path = "../../../tests/it/support/mod.rs"]
mod support;
mod verifier;
