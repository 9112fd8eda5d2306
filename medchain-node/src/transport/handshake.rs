//! The Noise XX handshake pinned to the genesis keys, and the auth frames that bind each side's
//! ed25519 identity to the session.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use medchain_core::genesis::Genesis;
use medchain_core::keys::{Identity, VerifyKey};
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use super::metrics::HandshakeFailure;
use super::wire::{self, Frame, MAX_NOISE_MESSAGE, TAG_LEN};

/// This node's keys and the genesis members' keys, as the handshake needs them.
pub(crate) struct LocalKeys {
    identity: Arc<Identity>,
    key: VerifyKey,
    secret: Zeroizing<[u8; 32]>,
    genesis_hash: [u8; 32],
    prologue: Vec<u8>,
    /// Each member's X25519 key, by signing key.
    members: BTreeMap<VerifyKey, [u8; 32]>,
    /// Every member's X25519 key (a set: genesis does not require them to be distinct).
    agreement_keys: HashSet<[u8; 32]>,
}

impl LocalKeys {
    pub(crate) fn new(identity: Arc<Identity>, genesis: &Genesis) -> Self {
        let members: BTreeMap<VerifyKey, [u8; 32]> = genesis
            .members
            .iter()
            .map(|m| (m.identity.sign, m.identity.agree.to_byte_array()))
            .collect();
        let genesis_hash = genesis.hash().to_byte_array();
        Self {
            key: identity.verify_key(),
            secret: identity.x25519_secret_for_transport(),
            identity,
            prologue: wire::prologue(&genesis_hash),
            genesis_hash,
            agreement_keys: members.values().copied().collect(),
            members,
        }
    }

    pub(crate) fn key(&self) -> VerifyKey {
        self.key
    }

    /// The other members' signing keys.
    pub(crate) fn peers(&self) -> impl Iterator<Item = VerifyKey> + '_ {
        self.members.keys().copied().filter(|k| *k != self.key)
    }

    fn own_agreement(&self) -> [u8; 32] {
        self.identity.public().agree.to_byte_array()
    }
}

/// An authenticated session.
pub(crate) struct Established {
    /// The peer's signing key (a genesis member's, not ours).
    pub(crate) peer: VerifyKey,
    /// The Noise transport keys; nonce 0 of each direction carried the auth frames.
    pub(crate) session: StatelessTransportState,
    /// Whether we dialed.
    pub(crate) initiator: bool,
}

/// Reads one length-prefixed Noise message into `buf`; returns its length.
pub(crate) async fn read_noise<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let len = usize::from(r.read_u16().await?);
    r.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// Writes one length-prefixed Noise message (not flushed).
pub(crate) async fn write_noise<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &[u8],
) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("Noise message over 65535 bytes"))?;
    w.write_u16(len).await?;
    w.write_all(message).await
}

/// Encrypts `frame` under `nonce` into `out` (a [`MAX_NOISE_MESSAGE`]-byte buffer); returns the
/// ciphertext length.
pub(crate) fn seal_frame(
    session: &StatelessTransportState,
    nonce: u64,
    frame: &[u8],
    out: &mut [u8],
) -> Result<usize, snow::Error> {
    session.write_message(nonce, frame, out)
}

/// Decrypts one received Noise transport message under `nonce` into `out`.
pub(crate) fn open_frame(
    session: &StatelessTransportState,
    nonce: u64,
    ciphertext: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    if ciphertext.len() < TAG_LEN {
        return None;
    }
    session.read_message(nonce, ciphertext, out).ok()
}

fn io(_: std::io::Error) -> HandshakeFailure {
    HandshakeFailure::Io
}

fn noise(_: snow::Error) -> HandshakeFailure {
    HandshakeFailure::Noise
}

async fn send_step<S: AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut HandshakeState,
    buf: &mut [u8],
) -> Result<(), HandshakeFailure> {
    let n = hs.write_message(&[], buf).map_err(noise)?;
    write_noise(stream, &buf[..n]).await.map_err(io)?;
    stream.flush().await.map_err(io)
}

async fn receive_step<S: AsyncRead + Unpin>(
    stream: &mut S,
    hs: &mut HandshakeState,
    buf: &mut [u8],
    payload: &mut [u8],
) -> Result<(), HandshakeFailure> {
    let n = read_noise(stream, buf).await.map_err(io)?;
    let p = hs.read_message(&buf[..n], payload).map_err(noise)?;
    // Our handshake messages carry no payload; anything else is not our protocol.
    if p != 0 {
        return Err(HandshakeFailure::Noise);
    }
    Ok(())
}

/// Runs the handshake on a fresh connection: Noise XX, then one auth frame each way.
///
/// `dialed` is the member we dialed (we are the initiator), or `None` for an accepted
/// connection. Nothing is read past the peer's auth frame.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &LocalKeys,
    dialed: Option<VerifyKey>,
) -> Result<Established, HandshakeFailure> {
    let initiator = dialed.is_some();
    let params: snow::params::NoiseParams = wire::NOISE_PARAMS.parse().map_err(noise)?;
    let builder = snow::Builder::new(params)
        .local_private_key(&local.secret[..])
        .and_then(|b| b.prologue(&local.prologue))
        .map_err(noise)?;
    let mut hs = if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(noise)?;
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];

    // XX: -> e; <- e, ee, s, es; -> s, se.
    if let Some(expected) = dialed {
        send_step(stream, &mut hs, &mut buf).await?;
        receive_step(stream, &mut hs, &mut buf, &mut payload).await?;
        // Check the responder before our static key leaves: a wrong party never learns who we
        // are.
        let remote = remote_static(&hs)?;
        if remote == local.own_agreement() {
            return Err(HandshakeFailure::SelfConnection);
        }
        if local.members.get(&expected) != Some(&remote) {
            return Err(if local.agreement_keys.contains(&remote) {
                HandshakeFailure::UnexpectedPeer
            } else {
                HandshakeFailure::UnknownPeer
            });
        }
        send_step(stream, &mut hs, &mut buf).await?;
    } else {
        receive_step(stream, &mut hs, &mut buf, &mut payload).await?;
        send_step(stream, &mut hs, &mut buf).await?;
        receive_step(stream, &mut hs, &mut buf, &mut payload).await?;
        let remote = remote_static(&hs)?;
        if remote == local.own_agreement() {
            return Err(HandshakeFailure::SelfConnection);
        }
        if !local.agreement_keys.contains(&remote) {
            return Err(HandshakeFailure::UnknownPeer);
        }
    }
    let remote = remote_static(&hs)?;
    let hash = hs.get_handshake_hash().to_vec();
    let session = hs.into_stateless_transport_mode().map_err(noise)?;

    // Both sides send their auth frame first, then read the other's.
    let ours = Frame::Auth {
        key: local.key,
        signature: local.identity.sign(
            &medchain_core::hash::ChainId::from_byte_array(local.genesis_hash),
            wire::AUTH_LABEL,
            &wire::auth_message(&local.genesis_hash, &hash, initiator),
        ),
    }
    .to_vec();
    let n = seal_frame(&session, 0, &ours, &mut buf).map_err(noise)?;
    write_noise(stream, &buf[..n]).await.map_err(io)?;
    stream.flush().await.map_err(io)?;

    let n = read_noise(stream, &mut buf).await.map_err(io)?;
    let m = open_frame(&session, 0, &buf[..n], &mut payload).ok_or(HandshakeFailure::BadAuth)?;
    let Ok(Frame::Auth { key, signature }) = Frame::decode(&payload[..m]) else {
        return Err(HandshakeFailure::BadAuth);
    };
    if key == local.key {
        return Err(HandshakeFailure::SelfConnection);
    }
    // The key must be the member whose genesis entry holds the X25519 key the peer proved.
    if local.members.get(&key) != Some(&remote) {
        return Err(HandshakeFailure::BadAuth);
    }
    key.verify(
        &medchain_core::hash::ChainId::from_byte_array(local.genesis_hash),
        wire::AUTH_LABEL,
        &wire::auth_message(&local.genesis_hash, &hash, !initiator),
        &signature,
    )
    .map_err(|_| HandshakeFailure::BadAuth)?;
    if dialed.is_some_and(|expected| expected != key) {
        return Err(HandshakeFailure::UnexpectedPeer);
    }
    Ok(Established {
        peer: key,
        session,
        initiator,
    })
}

fn remote_static(hs: &HandshakeState) -> Result<[u8; 32], HandshakeFailure> {
    hs.get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(HandshakeFailure::Noise)
}
