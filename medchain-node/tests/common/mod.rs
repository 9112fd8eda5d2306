//! Helpers for the transport tests: a test network, transports on 127.0.0.1, bounded waits, and
//! a raw peer written from the wire format in `docs/adr/0003-peer-transport.md` (with `snow`
//! directly), which can misbehave in ways a `Transport` never does.

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use medchain_core::genesis::Genesis;
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::testkit::TestNet;
use medchain_node::transport::wire::{self, Frame};
use medchain_node::transport::{Incoming, Limits, Transport, TransportConfig};
use snow::StatelessTransportState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// Every test gives up after this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Fast timers and small queues for tests.
pub fn test_limits() -> Limits {
    let mut l = Limits::default();
    l.max_message_len = 1 << 20;
    l.send_queue_bytes = 4 << 20;
    l.inbound_bytes_per_peer = 4 << 20;
    l.handshake_timeout = Duration::from_secs(5);
    l.backoff_initial = Duration::from_millis(20);
    l.backoff_max = Duration::from_millis(300);
    l
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A network of `n` validators; identities are shared with the transports.
pub fn network(seed: u64, n: usize) -> (Genesis, Vec<Arc<Identity>>) {
    let net = TestNet::new(seed, n, 0);
    (net.genesis, net.nodes.into_iter().map(Arc::new).collect())
}

/// Starts one transport per identity on 127.0.0.1, each dialing every other one.
pub async fn mesh(
    genesis: &Genesis,
    ids: &[Arc<Identity>],
    limits: Limits,
) -> Vec<(Transport, Incoming)> {
    let mut nodes = Vec::new();
    for id in ids {
        let mut config = TransportConfig::new(loopback());
        config.limits = limits;
        nodes.push(
            Transport::start(config, id.clone(), genesis)
                .await
                .expect("transport starts"),
        );
    }
    let addrs: Vec<(VerifyKey, SocketAddr)> = nodes
        .iter()
        .map(|(t, _)| (t.key(), t.local_addr()))
        .collect();
    for (t, _) in &nodes {
        for (key, addr) in &addrs {
            if *key != t.key() {
                t.dial(*key, *addr).expect("dial a member");
            }
        }
    }
    nodes
}

/// Polls `cond` every 5 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every transport is connected to `n - 1` peers.
pub async fn wait_connected(nodes: &[(Transport, Incoming)]) {
    let n = nodes.len();
    wait_until("a full mesh", || {
        nodes
            .iter()
            .all(|(t, _)| t.connected_peers().len() == n - 1)
    })
    .await;
}

/// Shuts every transport down.
pub async fn stop_all(nodes: Vec<(Transport, Incoming)>) {
    for (t, _) in nodes {
        timeout(DEADLINE, t.shutdown())
            .await
            .expect("shutdown completes");
    }
}

/// A hand-rolled peer speaking the wire format.
pub struct RawPeer {
    pub stream: TcpStream,
    session: StatelessTransportState,
    send_nonce: u64,
}

async fn write_noise(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_u16(bytes.len() as u16).await?;
    stream.write_all(bytes).await
}

async fn read_noise(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// How the raw peer authenticates after the Noise handshake.
pub enum Auth<'a> {
    /// Sign as `signer`, claiming `claimed` (the honest case: `claimed = signer.verify_key()`).
    As {
        signer: &'a Identity,
        claimed: VerifyKey,
    },
    /// Send no auth frame.
    Skip,
}

impl RawPeer {
    /// Dials `addr` with `static_secret` as the Noise static key and the prologue of
    /// `genesis`, and runs the XX handshake. With `Auth::As`, sends the auth frame and reads
    /// the transport's.
    pub async fn connect(
        addr: SocketAddr,
        genesis: &Genesis,
        static_secret: &[u8; 32],
        auth: Auth<'_>,
    ) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let hash = genesis.hash().to_byte_array();
        let prologue = wire::prologue(&hash);
        let mut hs = snow::Builder::new(wire::NOISE_PARAMS.parse().expect("params"))
            .local_private_key(static_secret)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65_535];
        let mut payload = vec![0u8; 65_535];
        let n = hs.write_message(&[], &mut buf).map_err(|e| e.to_string())?;
        write_noise(&mut stream, &buf[..n])
            .await
            .map_err(|e| e.to_string())?;
        let msg = read_noise(&mut stream).await.map_err(|e| e.to_string())?;
        hs.read_message(&msg, &mut payload)
            .map_err(|e| e.to_string())?;
        let n = hs.write_message(&[], &mut buf).map_err(|e| e.to_string())?;
        write_noise(&mut stream, &buf[..n])
            .await
            .map_err(|e| e.to_string())?;
        let handshake_hash = hs.get_handshake_hash().to_vec();
        let session = hs
            .into_stateless_transport_mode()
            .map_err(|e| e.to_string())?;
        let mut peer = Self {
            stream,
            session,
            send_nonce: 0,
        };
        if let Auth::As { signer, claimed } = auth {
            let signature = signer.sign(
                &medchain_core::hash::ChainId::from_byte_array(hash),
                wire::AUTH_LABEL,
                &wire::auth_message(&hash, &handshake_hash, true),
            );
            let frame = Frame::Auth {
                key: claimed,
                signature,
            }
            .to_vec();
            peer.send_frame(&frame).await.map_err(|e| e.to_string())?;
            // The transport's auth frame.
            let theirs = read_noise(&mut peer.stream)
                .await
                .map_err(|e| e.to_string())?;
            let m = peer
                .session
                .read_message(0, &theirs, &mut payload)
                .map_err(|e| e.to_string())?;
            if !matches!(Frame::decode(&payload[..m]), Ok(Frame::Auth { .. })) {
                return Err("no auth frame from the transport".into());
            }
        }
        Ok(peer)
    }

    /// Encrypts and sends one frame.
    pub async fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut out = vec![0u8; 65_535];
        let n = self
            .session
            .write_message(self.send_nonce, frame, &mut out)
            .map_err(std::io::Error::other)?;
        self.send_nonce += 1;
        write_noise(&mut self.stream, &out[..n]).await?;
        self.stream.flush().await
    }

    /// Sends one message, fragmented as the transport does.
    pub async fn send_message(&mut self, message: &[u8]) -> std::io::Result<()> {
        for frame in wire::fragments(message).map_err(std::io::Error::other)? {
            self.send_frame(&frame.to_vec()).await?;
        }
        Ok(())
    }

    /// Writes `bytes` as one length-prefixed record, unencrypted.
    pub async fn send_raw_record(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_noise(&mut self.stream, bytes).await?;
        self.stream.flush().await
    }

    /// Whether the other side closes the connection within [`DEADLINE`] (reading and
    /// discarding whatever it sends until then).
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut sink = vec![0u8; 65_536];
        let read_to_end = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        timeout(DEADLINE, read_to_end).await.is_ok()
    }
}
