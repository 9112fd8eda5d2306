//! What the transport needs: where to listen, whom to dial, and its limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use medchain_core::keys::VerifyKey;
use thiserror::Error;

use super::wire::MAX_DECLARABLE;

/// The default cap on one protocol message: 64 MiB, the codec's own cap on one byte field
/// (`medchain_core::encoding::MAX_BYTES`). The core sets no cap on a whole message; see
/// `docs/adr/0003-peer-transport.md` ("Limits").
pub const DEFAULT_MAX_MESSAGE_LEN: usize = medchain_core::encoding::MAX_BYTES;

/// The transport's configuration.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The TCP address to listen on (port 0 picks a free port; [`super::Transport::local_addr`]
    /// tells which).
    pub listen: SocketAddr,
    /// The members this node dials, by signing key. Members without an address here are still
    /// accepted when they dial in.
    pub peers: BTreeMap<VerifyKey, SocketAddr>,
    /// Queue sizes, caps and timers.
    pub limits: Limits,
}

impl TransportConfig {
    /// A configuration listening on `listen`, dialing no one, with default limits.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            peers: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

/// Queue sizes, caps and timers. Every queue is bounded in messages and in bytes.
///
/// Memory held for one peer is at most `send_queue_bytes` (what we still have to send it) +
/// `inbound_bytes_per_peer` (what it sent that the user has not consumed) + `max_message_len`
/// (one message being reassembled) + about 400 KiB of fixed buffers (a socket buffer, a
/// ciphertext and a plaintext buffer of one Noise message each way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest message sent or accepted; a peer that declares a longer one is disconnected.
    pub max_message_len: usize,
    /// Messages queued for one peer; a peer whose queue is full is disconnected as slow.
    pub send_queue_messages: usize,
    /// Bytes queued for one peer (the message being written included); at least
    /// `max_message_len`.
    pub send_queue_bytes: usize,
    /// Messages from one peer handed to the user and not yet dropped by it; the peer's reader
    /// waits (and TCP pushes back) when it is reached.
    pub inbound_messages_per_peer: usize,
    /// Bytes of such messages; at least `max_message_len`.
    pub inbound_bytes_per_peer: usize,
    /// Handshakes in progress at once (dialed and accepted); more incoming connections are
    /// closed at once.
    pub max_pending_handshakes: usize,
    /// Time for the whole handshake, authentication included.
    pub handshake_timeout: Duration,
    /// How long writing one Noise message (at most 64 KiB) to the socket may take before the
    /// peer is disconnected: a stalled peer is dropped, a slow link that keeps moving is not.
    pub write_timeout: Duration,
    /// A keepalive is sent after this long without writing.
    pub keepalive_interval: Duration,
    /// A connection is closed after this long without receiving anything.
    pub idle_timeout: Duration,
    /// The first reconnect delay.
    pub backoff_initial: Duration,
    /// The largest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            send_queue_messages: 4096,
            send_queue_bytes: DEFAULT_MAX_MESSAGE_LEN + 16 * 1024 * 1024,
            inbound_messages_per_peer: 1024,
            inbound_bytes_per_peer: DEFAULT_MAX_MESSAGE_LEN + 16 * 1024 * 1024,
            max_pending_handshakes: 64,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Checks the limits are usable.
    ///
    /// # Errors
    /// [`ConfigError::Limit`] naming the first limit that is not.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |what, reason| Err(ConfigError::Limit { what, reason });
        if self.max_message_len == 0 || self.max_message_len > MAX_DECLARABLE {
            return bad("max_message_len", "must be between 1 and 4 GiB - 1");
        }
        if self.send_queue_messages == 0 || self.inbound_messages_per_peer == 0 {
            return bad("queue length", "must be positive");
        }
        if self.send_queue_bytes < self.max_message_len {
            return bad(
                "send_queue_bytes",
                "must hold one message of max_message_len",
            );
        }
        if self.inbound_bytes_per_peer < self.max_message_len {
            return bad(
                "inbound_bytes_per_peer",
                "must hold one message of max_message_len",
            );
        }
        if self.inbound_bytes_per_peer > tokio::sync::Semaphore::MAX_PERMITS
            || self.inbound_messages_per_peer > tokio::sync::Semaphore::MAX_PERMITS
        {
            return bad("inbound quota", "too large");
        }
        if self.max_pending_handshakes == 0 {
            return bad("max_pending_handshakes", "must be positive");
        }
        let zero = Duration::ZERO;
        if [
            self.handshake_timeout,
            self.write_timeout,
            self.keepalive_interval,
            self.backoff_initial,
        ]
        .contains(&zero)
        {
            return bad("timer", "must be positive");
        }
        if self.idle_timeout <= self.keepalive_interval {
            return bad("idle_timeout", "must be longer than keepalive_interval");
        }
        if self.backoff_max < self.backoff_initial {
            return bad("backoff_max", "must be at least backoff_initial");
        }
        Ok(())
    }
}

/// The transport cannot start with this configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// This node's identity is not a genesis member.
    #[error("this node's identity is not a member of the genesis")]
    NotAMember,
    /// A configured peer is not a genesis member.
    #[error("configured peer {0} is not a member of the genesis")]
    PeerNotAMember(VerifyKey),
    /// A peer is given a dial address twice.
    #[error("peer {0} already has a dial address")]
    AlreadyDialing(VerifyKey),
    /// This node is listed among its own peers.
    #[error("this node is listed among its own peers")]
    SelfAsPeer,
    /// A limit is unusable.
    #[error("bad transport limit {what}: {reason}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_usable_and_bad_ones_named() {
        Limits::default().check().unwrap();
        let mut l = Limits::default();
        l.send_queue_bytes = l.max_message_len - 1;
        assert_eq!(
            l.check().unwrap_err().to_string(),
            "bad transport limit send_queue_bytes: must hold one message of max_message_len"
        );
        let mut l = Limits::default();
        l.idle_timeout = l.keepalive_interval;
        assert!(matches!(
            l.check(),
            Err(ConfigError::Limit {
                what: "idle_timeout",
                ..
            })
        ));
        let l = Limits {
            max_message_len: 0,
            ..Limits::default()
        };
        assert!(l.check().is_err());
        let l = Limits {
            backoff_initial: Duration::ZERO,
            ..Limits::default()
        };
        assert!(l.check().is_err());
        let l = Limits {
            backoff_max: Duration::from_millis(1),
            ..Limits::default()
        };
        assert!(l.check().is_err());
    }
}
