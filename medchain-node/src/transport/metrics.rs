//! The transport's counters: plain atomics that a metrics exporter reads with
//! [`Metrics::counters`]. Every refused connection, closed connection and dropped message is
//! counted under one reason.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! reasons {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every reason, in counter order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The reason's metric label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }

            const COUNT: usize = Self::ALL.len();

            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reasons! {
    /// Why an authenticated connection was closed.
    DisconnectReason {
        /// The peer closed the connection (or its process ended).
        PeerClosed => "peer_closed",
        /// A read or write failed.
        Io => "io",
        /// Nothing arrived for the idle timeout (keepalives included).
        IdleTimeout => "idle_timeout",
        /// One write did not complete within the write timeout.
        WriteTimeout => "write_timeout",
        /// A Noise message failed to decrypt (garbage or tampering), or a record was too short
        /// to hold a tag.
        Decrypt => "decrypt",
        /// A frame broke the frame format ([`crate::transport::wire::FrameError`]).
        Malformed => "malformed",
        /// A message declared longer than the cap.
        Oversized => "oversized",
        /// The peer's send queue was full: it reads too slowly.
        SlowPeer => "slow_peer",
        /// A second connection to the same peer lost the tie-break.
        Duplicate => "duplicate",
        /// The transport is shutting down.
        Shutdown => "shutdown",
    }
}

reasons! {
    /// Why a connection was refused before it was authenticated.
    HandshakeFailure {
        /// Dialing a peer failed (connection refused, unreachable, timed out).
        Dial => "dial",
        /// The TCP connection failed or closed during the handshake.
        Io => "io",
        /// The handshake did not finish within the handshake timeout.
        Timeout => "timeout",
        /// The Noise handshake failed (garbage, another network's prologue, a bad key).
        Noise => "noise",
        /// The peer's static key is not a genesis member's.
        UnknownPeer => "unknown_peer",
        /// The auth frame is missing, malformed, names a key whose genesis entry has another
        /// X25519 key, or its signature does not verify.
        BadAuth => "bad_auth",
        /// The dialed address answered with another member's key.
        UnexpectedPeer => "unexpected_peer",
        /// The peer is this node itself.
        SelfConnection => "self_connection",
        /// Too many handshakes were already in progress.
        TooManyPending => "too_many_pending",
    }
}

reasons! {
    /// Why an outgoing message was not sent to a peer.
    DropReason {
        /// The peer's send queue was full (the peer is disconnected as slow).
        QueueFull => "queue_full",
        /// No connection to the peer.
        NotConnected => "not_connected",
        /// The connection closed with the message still queued.
        ConnectionClosed => "connection_closed",
        /// The message is longer than the cap.
        TooLarge => "too_large",
    }
}

/// One counter value, for an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The metric name (`medchain_transport_...`).
    pub name: &'static str,
    /// The `reason` label, for counters split by reason.
    pub reason: Option<&'static str>,
    /// The value.
    pub value: u64,
}

/// The transport's counters. Cheap to update from any task; read with the accessors or
/// [`Metrics::counters`].
#[derive(Debug)]
pub struct Metrics {
    disconnects: [AtomicU64; DisconnectReason::COUNT],
    handshake_failures: [AtomicU64; HandshakeFailure::COUNT],
    dropped: [AtomicU64; DropReason::COUNT],
    connections: AtomicU64,
    peers_connected: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            disconnects: std::array::from_fn(|_| AtomicU64::new(0)),
            handshake_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            connections: AtomicU64::new(0),
            peers_connected: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Authenticated connections closed for `reason`.
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        get(&self.disconnects[reason.index()])
    }

    /// Connections refused before authentication for `reason`.
    pub fn handshake_failures(&self, reason: HandshakeFailure) -> u64 {
        get(&self.handshake_failures[reason.index()])
    }

    /// Outgoing messages not sent to a peer for `reason` (a broadcast counts once per peer).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        get(&self.dropped[reason.index()])
    }

    /// Connections authenticated and established since the start.
    pub fn connections(&self) -> u64 {
        get(&self.connections)
    }

    /// Peers connected now.
    pub fn peers_connected(&self) -> u64 {
        get(&self.peers_connected)
    }

    /// Messages received and handed to the user.
    pub fn messages_received(&self) -> u64 {
        get(&self.messages_received)
    }

    /// Message bytes received (without framing and encryption overhead).
    pub fn bytes_received(&self) -> u64 {
        get(&self.bytes_received)
    }

    /// Messages written to a peer's connection (a broadcast counts once per peer).
    pub fn messages_sent(&self) -> u64 {
        get(&self.messages_sent)
    }

    /// Message bytes written (without framing and encryption overhead).
    pub fn bytes_sent(&self) -> u64 {
        get(&self.bytes_sent)
    }

    /// Every counter, with its metric name and reason label.
    pub fn counters(&self) -> Vec<Counter> {
        let mut out = Vec::new();
        let by_reason = |out: &mut Vec<Counter>,
                         name,
                         labels: &mut dyn Iterator<Item = &'static str>,
                         values: &[AtomicU64]| {
            for (label, value) in labels.zip(values) {
                out.push(Counter {
                    name,
                    reason: Some(label),
                    value: get(value),
                });
            }
        };
        by_reason(
            &mut out,
            "medchain_transport_disconnects_total",
            &mut DisconnectReason::ALL.iter().map(|r| r.as_str()),
            &self.disconnects,
        );
        by_reason(
            &mut out,
            "medchain_transport_handshake_failures_total",
            &mut HandshakeFailure::ALL.iter().map(|r| r.as_str()),
            &self.handshake_failures,
        );
        by_reason(
            &mut out,
            "medchain_transport_messages_dropped_total",
            &mut DropReason::ALL.iter().map(|r| r.as_str()),
            &self.dropped,
        );
        for (name, value) in [
            ("medchain_transport_connections_total", &self.connections),
            ("medchain_transport_peers_connected", &self.peers_connected),
            (
                "medchain_transport_messages_received_total",
                &self.messages_received,
            ),
            (
                "medchain_transport_bytes_received_total",
                &self.bytes_received,
            ),
            (
                "medchain_transport_messages_sent_total",
                &self.messages_sent,
            ),
            ("medchain_transport_bytes_sent_total", &self.bytes_sent),
        ] {
            out.push(Counter {
                name,
                reason: None,
                value: get(value),
            });
        }
        out
    }

    pub(crate) fn disconnect(&self, reason: DisconnectReason) {
        add(&self.disconnects[reason.index()], 1);
    }

    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        add(&self.handshake_failures[reason.index()], 1);
    }

    pub(crate) fn drop_message(&self, reason: DropReason, n: u64) {
        add(&self.dropped[reason.index()], n);
    }

    pub(crate) fn connected(&self) {
        add(&self.connections, 1);
        add(&self.peers_connected, 1);
    }

    pub(crate) fn disconnected(&self) {
        self.peers_connected.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        add(&self.messages_received, 1);
        add(&self.bytes_received, bytes as u64);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        add(&self.messages_sent, 1);
        add(&self.bytes_sent, bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_list_every_reason_once() {
        let m = Metrics::default();
        m.disconnect(DisconnectReason::Oversized);
        m.disconnect(DisconnectReason::Oversized);
        m.handshake_failed(HandshakeFailure::UnknownPeer);
        m.drop_message(DropReason::QueueFull, 3);
        m.connected();
        m.connected();
        m.disconnected();
        let c = m.counters();
        let find = |name: &str, reason: Option<&str>| {
            c.iter()
                .find(|x| x.name == name && x.reason == reason)
                .map(|x| x.value)
        };
        assert_eq!(
            find("medchain_transport_disconnects_total", Some("oversized")),
            Some(2)
        );
        assert_eq!(
            find(
                "medchain_transport_handshake_failures_total",
                Some("unknown_peer")
            ),
            Some(1)
        );
        assert_eq!(
            find(
                "medchain_transport_messages_dropped_total",
                Some("queue_full")
            ),
            Some(3)
        );
        assert_eq!(find("medchain_transport_peers_connected", None), Some(1));
        assert_eq!(find("medchain_transport_connections_total", None), Some(2));
        assert_eq!(
            c.len(),
            DisconnectReason::ALL.len() + HandshakeFailure::ALL.len() + DropReason::ALL.len() + 6
        );
        for (i, r) in DisconnectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(DisconnectReason::SlowPeer.to_string(), "slow_peer");
    }
}
