//! tokenguard: a token-lifecycle filter for Envoy (proxy-wasm).
//!
//! The crate is a host-agnostic core (everything but `wasm`) plus a thin proxy-wasm layer
//! compiled only for `wasm32`. The core never touches Envoy; it talks to its host through
//! the traits in `host`, so it runs and is tested natively.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        // The other ways to panic on purpose: a panic kills the Wasm VM for every request.
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod admin;
pub mod audit;
pub mod backoff;
pub mod config;
pub mod ecdsa;
pub mod eddsa;
pub mod egress;
pub mod es384;
pub mod etcd;
pub mod gate;
pub mod header;
pub mod host;
pub mod jwks;
pub mod keys;
pub mod mac;
pub mod metrics;
pub mod refresh;
pub mod registry;
pub mod reject;
pub mod route;
pub mod rsa;
pub mod token;
pub mod verdict;
pub mod verify;
pub mod version;

// Natively only under test, where `wasm::double` stands in for Envoy below the ABI.
#[cfg(any(target_arch = "wasm32", test))]
mod wasm;

#[cfg(test)]
mod testkit;
