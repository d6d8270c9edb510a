//! Index versions in object storage: where objects live ([`layout`]), what a
//! version contains ([`manifest`]), how it is uploaded ([`publish`]), how a
//! shard fetches and verifies it ([`open`]) and how a version moves between
//! stores ([`import`]).

pub mod import;
pub mod layout;
pub mod manifest;
pub mod open;
pub mod publish;
pub mod store;
