//! Prints the Index CRD generated from the Rust types.
//! `cargo run -p trusty-operator --bin crdgen > manifests/crds/index.yaml`

fn main() {
    print!("{}", trusty_operator::crd_yaml());
}
