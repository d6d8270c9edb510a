//! Operator tests that need no Kubernetes cluster (none exists on the
//! development machines or in CI):
//! - `reconcile`: single reconciles against kube's mocked API (tower-test),
//!   one scenario per path;
//! - `controller_e2e`: the real Controller, leader election, watches and
//!   finalizers against an in-process fake API server and fake router;
//! - `crd_files`: the committed CRD, examples and RBAC against the Rust types.

mod controller_e2e;
mod crd_files;
mod fake_apiserver;
mod fake_router;
mod harness;
mod kubelet;
mod reconcile;
mod verifier;
