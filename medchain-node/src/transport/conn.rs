//! One authenticated connection: a writer task that drains the peer's bounded send queue into
//! Noise messages, and a reader task that decrypts, reassembles and hands messages to the user
//! under the peer's inbound quota.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use medchain_core::keys::VerifyKey;
use snow::StatelessTransportState;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::handshake::{open_frame, read_noise, seal_frame, write_noise};
use super::metrics::{DisconnectReason, DropReason, Metrics};
use super::wire::{self, Frame, FrameError, Reassembler, MAX_NOISE_MESSAGE};
use super::Inbound;

/// Socket buffer of each direction: one full Noise message and its length.
const BUFFER: usize = MAX_NOISE_MESSAGE + 2;

/// Closes a connection once, with the first reason given.
#[derive(Debug)]
pub(crate) struct Closer {
    reason: OnceLock<DisconnectReason>,
    signal: watch::Sender<bool>,
}

impl Closer {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            reason: OnceLock::new(),
            signal: watch::Sender::new(false),
        })
    }

    /// Closes with `reason`; the first call counts it and returns `true`.
    pub(crate) fn close(&self, reason: DisconnectReason, metrics: &Metrics) -> bool {
        if self.reason.set(reason).is_ok() {
            metrics.disconnect(reason);
            self.signal.send_replace(true);
            true
        } else {
            false
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.reason.get().is_some()
    }

    /// Resolves once the connection is closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.signal.subscribe();
        // The sender lives in `self`, so `wait_for` only returns once the flag is set.
        let _ = rx.wait_for(|closed| *closed).await;
    }
}

/// The sending side of a connection, kept in the peer table.
#[derive(Debug)]
pub(crate) struct SendQueue {
    pub(crate) queue: mpsc::Sender<Bytes>,
    /// Bytes queued, the message being written included.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
}

impl SendQueue {
    /// Queues `message` if both bounds allow; `false` when the peer is too slow.
    pub(crate) fn try_push(&self, message: &Bytes, max_bytes: usize) -> bool {
        let len = message.len();
        let reserved = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(len).filter(|total| *total <= max_bytes)
            })
            .is_ok();
        if !reserved {
            return false;
        }
        if self.queue.try_send(message.clone()).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// What the two tasks of one connection share.
pub(crate) struct ConnContext {
    pub(crate) peer: VerifyKey,
    pub(crate) session: Arc<StatelessTransportState>,
    pub(crate) closer: Arc<Closer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: super::Limits,
}

/// Writes queued messages until the connection closes; then counts what was left queued.
pub(crate) async fn write_loop(
    ctx: Arc<ConnContext>,
    half: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
) {
    let mut w = BufWriter::with_capacity(BUFFER, half);
    let mut writer = FrameWriter {
        session: &ctx.session,
        nonce: 1,
        plain: Vec::with_capacity(wire::MAX_FRAME),
        cipher: vec![0u8; MAX_NOISE_MESSAGE],
        stall: ctx.limits.write_timeout,
    };
    let keepalive = ctx.limits.keepalive_interval;
    let mut next_keepalive = Instant::now() + keepalive;
    let reason = loop {
        let written = tokio::select! {
            biased;
            () = ctx.closer.closed() => break None,
            message = queue.recv() => {
                let Some(message) = message else { break Some(DisconnectReason::Shutdown) };
                let len = message.len();
                let flush = queue.is_empty();
                let written = tokio::select! {
                    biased;
                    () = ctx.closer.closed() => break None,
                    written = writer.write_message(&mut w, &message, flush) => written,
                };
                queued_bytes.fetch_sub(len, Ordering::AcqRel);
                if written.is_ok() {
                    ctx.metrics.sent(len);
                }
                written
            }
            () = sleep_until(next_keepalive) => tokio::select! {
                biased;
                () = ctx.closer.closed() => break None,
                written = writer.write_keepalive(&mut w) => written,
            },
        };
        match written {
            Ok(()) => next_keepalive = Instant::now() + keepalive,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                break Some(DisconnectReason::WriteTimeout)
            }
            Err(_) => break Some(DisconnectReason::Io),
        }
    };
    if let Some(reason) = reason {
        ctx.closer.close(reason, &ctx.metrics);
    }
    queue.close();
    let mut left = 0;
    while queue.try_recv().is_ok() {
        left += 1;
    }
    ctx.metrics.drop_message(DropReason::ConnectionClosed, left);
    // Best effort: tell the peer we are gone (TCP FIN), without waiting on a stalled socket.
    let _ = timeout(Duration::from_millis(100), w.shutdown()).await;
}

struct FrameWriter<'a> {
    session: &'a StatelessTransportState,
    nonce: u64,
    plain: Vec<u8>,
    cipher: Vec<u8>,
    /// How long one socket write may make no progress.
    stall: Duration,
}

/// `io` within `limit`, or a `TimedOut` error.
async fn within<T>(
    limit: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    timeout(limit, io)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

impl FrameWriter<'_> {
    async fn write_frame(
        &mut self,
        w: &mut BufWriter<OwnedWriteHalf>,
        frame: &Frame<'_>,
    ) -> std::io::Result<()> {
        self.plain.clear();
        frame.encode_to(&mut self.plain);
        let n = seal_frame(self.session, self.nonce, &self.plain, &mut self.cipher)
            .map_err(|_| std::io::Error::other("Noise encryption failed"))?;
        self.nonce += 1;
        // The limit is per Noise message (64 KiB), so a large message on a slow link is fine
        // as long as it keeps moving.
        within(self.stall, write_noise(w, &self.cipher[..n])).await
    }

    async fn write_message(
        &mut self,
        w: &mut BufWriter<OwnedWriteHalf>,
        message: &[u8],
        flush: bool,
    ) -> std::io::Result<()> {
        let frames = wire::fragments(message)
            .map_err(|_| std::io::Error::other("message over the frame format's limit"))?;
        for frame in frames {
            self.write_frame(w, &frame).await?;
        }
        if flush {
            within(self.stall, w.flush()).await?;
        }
        Ok(())
    }

    async fn write_keepalive(&mut self, w: &mut BufWriter<OwnedWriteHalf>) -> std::io::Result<()> {
        self.write_frame(w, &Frame::Keepalive).await?;
        within(self.stall, w.flush()).await
    }
}

/// The peer's inbound quota: permits held by each [`Inbound`] until the user drops it.
#[derive(Debug, Clone)]
pub(crate) struct Quota {
    pub(crate) messages: Arc<Semaphore>,
    pub(crate) bytes: Arc<Semaphore>,
}

/// What an [`Inbound`] holds of its peer's quota.
#[derive(Debug)]
pub(crate) struct QuotaPermit {
    _message: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Quota {
    async fn acquire(&self, len: usize) -> Option<QuotaPermit> {
        let message = self.messages.clone().acquire_owned().await.ok()?;
        // Every message takes at least one byte permit; `Limits::check` keeps the quota at or
        // above the message cap, so this always completes once the user drops earlier ones.
        let n = u32::try_from(len.max(1)).ok()?;
        let bytes = self.bytes.clone().acquire_many_owned(n).await.ok()?;
        Some(QuotaPermit {
            _message: message,
            _bytes: bytes,
        })
    }
}

/// Reads, decrypts and reassembles until the connection closes.
pub(crate) async fn read_loop(
    ctx: Arc<ConnContext>,
    half: OwnedReadHalf,
    quota: Quota,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let mut r = BufReader::with_capacity(BUFFER, half);
    let mut cipher = vec![0u8; MAX_NOISE_MESSAGE];
    let mut plain = vec![0u8; MAX_NOISE_MESSAGE];
    let mut reassembler = Reassembler::new(ctx.limits.max_message_len);
    let mut nonce: u64 = 1;
    let reason = loop {
        let read = tokio::select! {
            biased;
            () = ctx.closer.closed() => break None,
            read = timeout(ctx.limits.idle_timeout, read_noise(&mut r, &mut cipher)) => read,
        };
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break Some(DisconnectReason::PeerClosed)
            }
            Ok(Err(_)) => break Some(DisconnectReason::Io),
            Err(_) => break Some(DisconnectReason::IdleTimeout),
        };
        let Some(m) = open_frame(&ctx.session, nonce, &cipher[..n], &mut plain) else {
            break Some(DisconnectReason::Decrypt);
        };
        nonce += 1;
        let message = match Frame::decode(&plain[..m]).and_then(|f| reassembler.push(&f)) {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(FrameError::Oversized { .. }) => break Some(DisconnectReason::Oversized),
            Err(_) => break Some(DisconnectReason::Malformed),
        };
        let len = message.len();
        let permit = tokio::select! {
            biased;
            () = ctx.closer.closed() => break None,
            permit = quota.acquire(len) => permit,
        };
        let Some(permit) = permit else {
            break Some(DisconnectReason::Shutdown);
        };
        ctx.metrics.received(len);
        let delivered = inbound.send(Inbound {
            from: ctx.peer,
            bytes: message,
            _quota: permit,
        });
        if delivered.is_err() {
            // The user dropped the receiving end: nothing more to deliver.
            break Some(DisconnectReason::Shutdown);
        }
    };
    if let Some(reason) = reason {
        ctx.closer.close(reason, &ctx.metrics);
    }
}
