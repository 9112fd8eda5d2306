//! # medchain-node
//!
//! The I/O half of a medchain node, the way quinn sits on quinn-proto: every protocol rule stays
//! sans-I/O in `medchain-core`; this crate moves bytes and time.
//!
//! * [`transport`]: the peer transport between genesis members — TCP, the Noise XX handshake
//!   pinned to the genesis keys, bounded queues, reconnect with backoff, counters by reason
//!   (`docs/adr/0003-peer-transport.md`).
//!
//! The host that drives `medchain_core::protocol::Node` over it, the daemon `medchaind`, and the
//! client API come later (issue #15).

pub mod transport;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
