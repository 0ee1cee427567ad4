//! Test harness for tokenguard: a real token issuer, an upstream that reports what it
//! received, an Envoy launcher, and the end-to-end scenarios that run against a local stack
//! or the compose stack. Test code: it may panic.

pub mod envoy;
pub mod etcd;
pub mod fleet;
pub mod http;
pub mod issuer;
pub mod keys;
pub mod keyserver;
pub mod link;
pub mod oauth;
pub mod profile;
pub mod scenarios;
pub mod server;
pub mod soak;
pub mod stack;
pub mod target;
pub mod upstream;

pub use keys::IssuerKeys;
