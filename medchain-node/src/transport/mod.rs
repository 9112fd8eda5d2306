//! The peer transport: authenticated, encrypted TCP connections between the genesis members.
//!
//! * Every member listens on a TCP address and dials the members it has addresses for.
//! * A connection runs the Noise XX handshake ([`wire::NOISE_PARAMS`]) with the member's
//!   X25519 key from genesis as its static key and the genesis hash in the prologue; then each
//!   side sends an auth frame: its ed25519 key and a signature over the handshake hash. A peer
//!   whose static key, ed25519 key or signature does not match a genesis member is dropped
//!   before any message is read from it.
//! * Messages are fragmented into Noise messages ([`wire`]), capped at
//!   [`Limits::max_message_len`]; the cap is checked before a byte of the message is buffered.
//! * Each peer has a bounded send queue (messages and bytes); a peer whose queue is full is
//!   disconnected as slow. Each peer has a bounded inbound quota; its reader waits (TCP pushes
//!   back) while the user holds that many of its messages, so one flooding peer cannot crowd
//!   out the others.
//! * One connection per peer pair: when both dial, the connection dialed by the member with the
//!   smaller signing key wins on both sides. A lost connection is redialed with jittered
//!   exponential backoff, bounded by [`Limits::backoff_max`].
//! * Every refusal, disconnect and dropped message is counted by reason in [`Metrics`].
//!
//! The decision, the handshake and the threat model: `docs/adr/0003-peer-transport.md`.
//!
//! ```no_run
//! # async fn run(identity: std::sync::Arc<medchain_core::keys::Identity>,
//! #              genesis: medchain_core::genesis::Genesis) -> Result<(), Box<dyn std::error::Error>> {
//! use medchain_core::protocol::Recipient;
//! use medchain_node::transport::{Transport, TransportConfig};
//!
//! let config = TransportConfig::new("127.0.0.1:7600".parse()?);
//! let (transport, mut incoming) = Transport::start(config, identity, &genesis).await?;
//! transport.send(Recipient::All, b"an encoded protocol message".to_vec())?;
//! while let Some(message) = incoming.recv().await {
//!     // node.handle_message(message.from, &message.bytes, now_ms) — the key is authenticated.
//!     let _ = (message.from, message.bytes.len());
//! }
//! transport.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod conn;
mod handshake;
mod metrics;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use medchain_core::genesis::Genesis;
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::protocol::Recipient;
use rand_core::{Rng, UnwrapErr};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant};

pub use config::{ConfigError, Limits, TransportConfig, DEFAULT_MAX_MESSAGE_LEN};
pub use metrics::{Counter, DisconnectReason, DropReason, HandshakeFailure, Metrics};

use conn::{Closer, ConnContext, Quota, QuotaPermit, SendQueue};
use handshake::{Established, LocalKeys};

/// A message from an authenticated peer.
///
/// It holds part of its sender's inbound quota until it is dropped: a user that keeps many
/// messages of one peer slows that peer's reader down, and no other.
pub struct Inbound {
    /// The sender: a genesis member's signing key, proven in the handshake.
    pub from: VerifyKey,
    /// The message, exactly as the sender passed it to [`Transport::send`].
    pub bytes: Vec<u8>,
    _quota: QuotaPermit,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("from", &self.from)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The receiving end of the transport: messages from every peer, in arrival order per peer.
#[derive(Debug)]
pub struct Incoming(mpsc::UnboundedReceiver<Inbound>);

impl Incoming {
    /// The next message; `None` once the transport has shut down and every message was taken.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.0.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.0.try_recv().ok()
    }
}

/// The transport could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// A message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is longer than [`Limits::max_message_len`].
    #[error("message of {len} bytes exceeds the transport's cap of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The recipient is not another genesis member.
    #[error("{0} is not another member of the network")]
    NotAPeer(VerifyKey),
    /// The transport has shut down.
    #[error("the transport has shut down")]
    Closed,
}

/// The running transport. Dropping it stops every task it started (without waiting for
/// them; [`Transport::shutdown`] waits).
pub struct Transport {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    guard: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("key", &self.shared.keys.key())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    keys: LocalKeys,
    limits: Limits,
    metrics: Arc<Metrics>,
    peers: Mutex<BTreeMap<VerifyKey, Peer>>,
    inbound: mpsc::UnboundedSender<Inbound>,
    shutdown: watch::Sender<bool>,
    next_id: AtomicU64,
    handshakes: Arc<Semaphore>,
}

/// One genesis member other than us.
struct Peer {
    conn: Option<Conn>,
    /// Whether a dial loop runs for this peer.
    dialing: bool,
    quota: Quota,
    /// Woken when the connection goes away (the dialer waits on it).
    changed: Arc<Notify>,
}

struct Conn {
    id: u64,
    /// Who dialed this connection.
    dialed_by: VerifyKey,
    send: SendQueue,
    closer: Arc<Closer>,
}

impl Transport {
    /// Checks the configuration, binds the listening address, and starts accepting and dialing.
    /// Must be called within a tokio runtime (with the `time` and `net` drivers enabled).
    ///
    /// # Errors
    /// [`StartError::Config`] if this node or a configured peer is not a genesis member, or a
    /// limit is unusable; [`StartError::Bind`] if the address cannot be bound.
    pub async fn start(
        config: TransportConfig,
        identity: Arc<Identity>,
        genesis: &Genesis,
    ) -> Result<(Self, Incoming), StartError> {
        config.limits.check()?;
        let me = identity.verify_key();
        if genesis.member(&me).is_none() {
            return Err(ConfigError::NotAMember.into());
        }
        for key in config.peers.keys() {
            if *key == me {
                return Err(ConfigError::SelfAsPeer.into());
            }
            if genesis.member(key).is_none() {
                return Err(ConfigError::PeerNotAMember(*key).into());
            }
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let limits = config.limits;
        let keys = LocalKeys::new(identity, genesis);
        let peers = keys
            .peers()
            .map(|key| {
                let peer = Peer {
                    conn: None,
                    dialing: false,
                    quota: Quota {
                        messages: Arc::new(Semaphore::new(limits.inbound_messages_per_peer)),
                        bytes: Arc::new(Semaphore::new(limits.inbound_bytes_per_peer)),
                    },
                    changed: Arc::new(Notify::new()),
                };
                (key, peer)
            })
            .collect();
        let (inbound, incoming) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            keys,
            limits,
            metrics: Arc::new(Metrics::default()),
            peers: Mutex::new(peers),
            inbound,
            shutdown: watch::Sender::new(false),
            next_id: AtomicU64::new(1),
            handshakes: Arc::new(Semaphore::new(limits.max_pending_handshakes)),
        });
        let (guard, done) = mpsc::channel(1);
        spawn_guarded(&guard, accept_loop(shared.clone(), listener, guard.clone()));
        let transport = Self {
            shared,
            local_addr,
            guard: Some(guard),
            done,
        };
        for (key, addr) in config.peers {
            transport.dial(key, addr)?;
        }
        tracing::info!(%local_addr, key = %me, "transport listening");
        Ok((transport, Incoming(incoming)))
    }

    /// Starts dialing `peer` at `addr` (and redialing it whenever the connection is lost),
    /// as for the peers of [`TransportConfig::peers`].
    ///
    /// # Errors
    /// [`ConfigError::PeerNotAMember`], [`ConfigError::SelfAsPeer`], or
    /// [`ConfigError::AlreadyDialing`] if `peer` already has an address.
    pub fn dial(&self, peer: VerifyKey, addr: SocketAddr) -> Result<(), ConfigError> {
        if peer == self.key() {
            return Err(ConfigError::SelfAsPeer);
        }
        {
            let mut peers = self.shared.lock();
            let entry = peers
                .get_mut(&peer)
                .ok_or(ConfigError::PeerNotAMember(peer))?;
            if entry.dialing {
                return Err(ConfigError::AlreadyDialing(peer));
            }
            entry.dialing = true;
        }
        if let Some(guard) = &self.guard {
            spawn_guarded(
                guard,
                dial_loop(self.shared.clone(), peer, addr, guard.clone()),
            );
        }
        Ok(())
    }

    /// The address the transport listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's signing key.
    pub fn key(&self) -> VerifyKey {
        self.shared.keys.key()
    }

    /// The transport's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The peers connected now.
    pub fn connected_peers(&self) -> Vec<VerifyKey> {
        self.shared
            .lock()
            .iter()
            .filter(|(_, p)| p.conn.as_ref().is_some_and(|c| !c.closer.is_closed()))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Queues `message` for one peer or for every connected peer, without waiting; returns how
    /// many peers it was queued for. A peer that is not connected misses it
    /// ([`DropReason::NotConnected`]); a peer whose queue is full misses it and is disconnected
    /// ([`DropReason::QueueFull`], [`DisconnectReason::SlowPeer`]). The consensus protocol
    /// repairs lost messages (timeouts, sync).
    ///
    /// # Errors
    /// [`SendError::TooLarge`] over the cap, [`SendError::NotAPeer`] for a recipient that is
    /// not another genesis member, [`SendError::Closed`] after shutdown.
    pub fn send(&self, to: Recipient, message: impl Into<Bytes>) -> Result<usize, SendError> {
        let message = message.into();
        let max = self.shared.limits.max_message_len;
        if message.len() > max {
            self.shared.metrics.drop_message(DropReason::TooLarge, 1);
            return Err(SendError::TooLarge {
                len: message.len(),
                max,
            });
        }
        if *self.shared.shutdown.borrow() {
            return Err(SendError::Closed);
        }
        let peers = self.shared.lock();
        match to {
            Recipient::Node(key) => {
                let peer = peers.get(&key).ok_or(SendError::NotAPeer(key))?;
                Ok(usize::from(self.shared.push(&key, peer, &message)))
            }
            Recipient::All => Ok(peers
                .iter()
                .filter(|(key, peer)| self.shared.push(key, peer, &message))
                .count()),
        }
    }

    /// Stops accepting and dialing, closes every connection (messages still queued are
    /// dropped and counted), and waits until every task the transport started has ended.
    pub async fn shutdown(mut self) {
        self.shared.stop();
        self.guard = None;
        let _ = self.done.recv().await;
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<VerifyKey, Peer>> {
        // A panic while holding the lock leaves the table consistent (every update is one
        // assignment), so a poisoned lock is still usable.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        self.shutdown.send_replace(true);
        for peer in self.lock().values() {
            if let Some(conn) = &peer.conn {
                conn.closer.close(DisconnectReason::Shutdown, &self.metrics);
            }
        }
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn shut_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Queues `message` for `peer`; counts why not.
    fn push(&self, key: &VerifyKey, peer: &Peer, message: &Bytes) -> bool {
        let Some(conn) = peer.conn.as_ref().filter(|c| !c.closer.is_closed()) else {
            self.metrics.drop_message(DropReason::NotConnected, 1);
            return false;
        };
        if conn.send.try_push(message, self.limits.send_queue_bytes) {
            return true;
        }
        self.metrics.drop_message(DropReason::QueueFull, 1);
        if conn.closer.close(DisconnectReason::SlowPeer, &self.metrics) {
            tracing::warn!(peer = %short(key), "peer too slow: send queue full, disconnecting");
        }
        false
    }

    fn connected(&self, key: &VerifyKey) -> (bool, Option<Arc<Notify>>) {
        let peers = self.lock();
        match peers.get(key) {
            Some(p) => (
                p.conn.as_ref().is_some_and(|c| !c.closer.is_closed()),
                Some(p.changed.clone()),
            ),
            None => (false, None),
        }
    }

    /// Runs the handshake on a new connection and installs it; returns its closer.
    async fn establish(
        self: &Arc<Self>,
        mut stream: TcpStream,
        dialed: Option<VerifyKey>,
        permit: OwnedSemaphorePermit,
        guard: &mpsc::Sender<()>,
    ) -> Option<Arc<Closer>> {
        let _ = stream.set_nodelay(true);
        let remote = stream.peer_addr().ok();
        let result = tokio::select! {
            () = self.shut_down() => return None,
            r = timeout(
                self.limits.handshake_timeout,
                handshake::handshake(&mut stream, &self.keys, dialed),
            ) => r,
        };
        drop(permit);
        let failure = match result {
            Ok(Ok(established)) => return self.install(established, stream, guard),
            Ok(Err(failure)) => failure,
            Err(_) => HandshakeFailure::Timeout,
        };
        self.metrics.handshake_failed(failure);
        tracing::debug!(?remote, reason = %failure, "connection refused in the handshake");
        None
    }

    /// Puts an authenticated connection in the peer table (or refuses it on the tie-break) and
    /// starts its tasks.
    fn install(
        self: &Arc<Self>,
        est: Established,
        stream: TcpStream,
        guard: &mpsc::Sender<()>,
    ) -> Option<Arc<Closer>> {
        let me = self.keys.key();
        let mut peers = self.lock();
        if self.is_shut_down() {
            return None;
        }
        let peer = peers.get_mut(&est.peer)?;
        let dialed_by = if est.initiator { me } else { est.peer };
        if let Some(old) = peer.conn.take() {
            if !old.closer.is_closed() && keeps_existing(me, est.peer, old.dialed_by, dialed_by) {
                // Both dialed: the connection dialed by the smaller key stays, on both sides.
                peer.conn = Some(old);
                self.metrics.disconnect(DisconnectReason::Duplicate);
                return None;
            }
            // The new connection wins: it is the preferred direction, or the old one is stale
            // (the peer restarted and dialed again).
            old.closer.close(DisconnectReason::Duplicate, &self.metrics);
            self.metrics.disconnected();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.limits.send_queue_messages);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let closer = Closer::new();
        let ctx = Arc::new(ConnContext {
            peer: est.peer,
            session: Arc::new(est.session),
            closer: closer.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits,
        });
        let (read_half, write_half) = stream.into_split();
        spawn_guarded(
            guard,
            conn::write_loop(ctx.clone(), write_half, rx, queued_bytes.clone()),
        );
        spawn_guarded(
            guard,
            conn::read_loop(ctx, read_half, peer.quota.clone(), self.inbound.clone()),
        );
        let shared = self.clone();
        let watched = closer.clone();
        let key = est.peer;
        spawn_guarded(guard, async move {
            watched.closed().await;
            shared.unregister(&key, id);
        });
        peer.conn = Some(Conn {
            id,
            dialed_by,
            send: SendQueue {
                queue: tx,
                queued_bytes,
            },
            closer: closer.clone(),
        });
        self.metrics.connected();
        tracing::info!(peer = %short(&est.peer), initiator = est.initiator, "peer connected");
        Some(closer)
    }

    /// Removes connection `id` of `key` from the table, if it is still there.
    fn unregister(&self, key: &VerifyKey, id: u64) {
        let mut peers = self.lock();
        let Some(peer) = peers.get_mut(key) else {
            return;
        };
        if peer.conn.as_ref().is_some_and(|c| c.id == id) {
            peer.conn = None;
            self.metrics.disconnected();
            peer.changed.notify_one();
            tracing::info!(peer = %short(key), "peer disconnected");
        }
    }
}

/// The tie-break between a live connection to `peer` dialed by `old` and a new one dialed by
/// `new`: whether the live one stays. The connection dialed by the smaller key is preferred;
/// between two of the same direction the newer wins (the dialer has restarted). Both sides
/// compute the same answer, so both keep the same connection.
fn keeps_existing(me: VerifyKey, peer: VerifyKey, old: VerifyKey, new: VerifyKey) -> bool {
    let preferred = me.min(peer);
    old == preferred && new != preferred
}

/// A short form of a key for logs.
fn short(key: &VerifyKey) -> String {
    key.to_string()[..16].to_string()
}

fn spawn_guarded<F>(guard: &mpsc::Sender<()>, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let guard = guard.clone();
    tokio::spawn(async move {
        task.await;
        drop(guard);
    });
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, guard: mpsc::Sender<()>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shut_down() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
            shared
                .metrics
                .handshake_failed(HandshakeFailure::TooManyPending);
            continue;
        };
        let task_shared = shared.clone();
        let task_guard = guard.clone();
        spawn_guarded(&guard, async move {
            task_shared
                .establish(stream, None, permit, &task_guard)
                .await;
        });
    }
}

/// The reconnect delay after `attempt` failures: `initial · 2^attempt`, at most `max`, drawn
/// uniformly from its upper half.
fn backoff(limits: &Limits, attempt: u32) -> Duration {
    let ceiling = limits
        .backoff_initial
        .saturating_mul(1u32 << attempt.min(20))
        .min(limits.backoff_max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos / 2 + uniform_up_to(nanos - nanos / 2))
}

/// A uniform draw from `0..=max` (jitter only: the slight modulo bias does not matter).
fn uniform_up_to(max: u64) -> u64 {
    UnwrapErr(getrandom::SysRng).next_u64() % max.saturating_add(1).max(1)
}

async fn dial_loop(shared: Arc<Shared>, key: VerifyKey, addr: SocketAddr, guard: mpsc::Sender<()>) {
    let limits = shared.limits;
    let mut attempt: u32 = 0;
    let mut first = true;
    loop {
        // Wait while a connection (dialed by either side) is up.
        loop {
            let (connected, changed) = shared.connected(&key);
            let Some(changed) = changed else { return };
            if !connected {
                break;
            }
            tokio::select! {
                () = shared.shut_down() => return,
                () = changed.notified() => {}
            }
        }
        let delay = if first {
            // Spread the first dials, and let the member whose connection wins the tie-break
            // (the smaller key) dial first: two members starting together then rarely both
            // dial, and no message is lost to a connection closed by the tie-break.
            let initial = u64::try_from(limits.backoff_initial.as_nanos()).unwrap_or(u64::MAX);
            let head_start = if shared.keys.key() > key { initial } else { 0 };
            Duration::from_nanos(head_start.saturating_add(uniform_up_to(initial)))
        } else {
            backoff(&limits, attempt)
        };
        first = false;
        tokio::select! {
            () = shared.shut_down() => return,
            () = sleep(delay) => {}
        }
        if shared.connected(&key).0 {
            continue;
        }
        let permit = tokio::select! {
            () = shared.shut_down() => return,
            permit = shared.handshakes.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return };
        let stream = tokio::select! {
            () = shared.shut_down() => return,
            s = timeout(limits.handshake_timeout, TcpStream::connect(addr)) => s,
        };
        let Ok(Ok(stream)) = stream else {
            shared.metrics.handshake_failed(HandshakeFailure::Dial);
            tracing::debug!(peer = %short(&key), %addr, attempt, "dial failed");
            attempt = attempt.saturating_add(1);
            continue;
        };
        let started = Instant::now();
        match shared.establish(stream, Some(key), permit, &guard).await {
            Some(closer) => {
                tokio::select! {
                    () = shared.shut_down() => return,
                    () = closer.closed() => {}
                }
                // A connection that held for a while resets the backoff; one that keeps
                // dropping at once does not.
                if started.elapsed() >= limits.backoff_max {
                    attempt = 0;
                } else {
                    attempt = attempt.saturating_add(1);
                }
            }
            None => attempt = attempt.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_bounded() {
        let limits = Limits::default();
        for attempt in 0..40 {
            let ceiling = limits
                .backoff_initial
                .saturating_mul(1u32 << attempt.min(20))
                .min(limits.backoff_max);
            for _ in 0..50 {
                let d = backoff(&limits, attempt);
                assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
                assert!(d <= limits.backoff_max);
            }
        }
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(&limits, 3)).collect();
        assert!(draws.len() > 1, "backoff is not jittered");
    }

    #[test]
    fn both_sides_keep_the_same_connection() {
        let net = medchain_core::testkit::TestNet::new(3, 2, 0);
        let (a, b) = (net.nodes[0].verify_key(), net.nodes[1].verify_key());
        // Every order of arrival of the two connections, seen from both sides.
        for (first, second) in [(a, b), (b, a)] {
            let kept_by_a = if keeps_existing(a, b, first, second) {
                first
            } else {
                second
            };
            let kept_by_b = if keeps_existing(b, a, first, second) {
                first
            } else {
                second
            };
            assert_eq!(kept_by_a, kept_by_b);
            assert_eq!(kept_by_a, a.min(b));
        }
        // A redial in the same direction replaces the stale connection.
        assert!(!keeps_existing(a, b, a, a));
        assert!(!keeps_existing(a, b, b, b));
    }

    #[test]
    fn send_errors_name_the_problem() {
        assert_eq!(
            SendError::TooLarge { len: 10, max: 5 }.to_string(),
            "message of 10 bytes exceeds the transport's cap of 5 bytes"
        );
        assert_eq!(SendError::Closed.to_string(), "the transport has shut down");
    }
}
