//! Index versions in object storage: where objects live ([`layout`]), what a
//! version contains ([`manifest`]), how it is uploaded ([`publish`]), how a
//! shard fetches and verifies it ([`open`]) and how a version moves between
//! stores ([`import`]). [`local_dir`] removes local copies without stalling
//! async work.

pub mod import;
pub mod layout;
pub mod local_dir;
pub mod manifest;
pub mod open;
pub mod publish;
pub mod store;
