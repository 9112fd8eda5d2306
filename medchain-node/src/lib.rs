//! # medchain-node
//!
//! The I/O half of a medchain node, the way quinn sits on quinn-proto: every protocol rule stays
//! sans-I/O in `medchain-core` and `medchain::Host`; this crate moves bytes and time.
//!
//! * [`transport`]: the peer transport between genesis members — TCP, the Noise XX handshake
//!   pinned to the genesis keys, bounded queues, reconnect with backoff, counters by reason
//!   (`docs/adr/0003-peer-transport.md`).
//! * [`service`]: a member's [`medchain::Host`] driven over the transport on its own thread,
//!   with the timers it asks for, and the client API ([`api`], HTTP/JSON on loopback, TLS
//!   optional with [`tls`]; [`prom`] for `/metrics`); [`client`] speaks to that API.
//! * [`auth`]: who is asking — SMART Backend Services client assertions traded for short-lived
//!   bearer tokens with SMART v2 scopes, checked in front of every route.
//! * [`config`] (`node.toml`), [`keyfile`] (identity backups, public identity files, the
//!   genesis and the wrapped network key), [`localnet`] (N nodes on loopback for demos and
//!   tests): what the daemon `medchaind` reads and writes.
//!
//! The operator's guide: `docs/node.md`.

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod fhir;
pub mod keyfile;
pub mod localnet;
pub mod people;
pub mod prom;
pub mod service;
pub mod tls;
pub mod transport;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
