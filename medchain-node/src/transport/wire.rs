//! The transport's wire format, sans I/O: the plaintext frames carried inside Noise transport
//! messages, the canonical fragmentation of a protocol message into frames, and its strict
//! reassembly under a size cap. `docs/adr/0003-peer-transport.md` describes the whole stack.
//!
//! On the TCP stream every Noise message (handshake or transport) is `len u16 (big-endian) ||
//! len bytes`, so one is at most [`MAX_NOISE_MESSAGE`] bytes. After the handshake each Noise
//! transport message decrypts to one **frame**:
//!
//! | kind | frame | body |
//! | --- | --- | --- |
//! | 0 | keepalive | nothing |
//! | 1 | auth | ed25519 key (32) and signature (64): the first frame each side sends |
//! | 2 | start | `total u32` (big-endian) and the message's first `min(total, MAX_START_CHUNK)` bytes |
//! | 3 | continue | the next `min(remaining, MAX_CONTINUE_CHUNK)` bytes |
//!
//! A message is one `start` and as many `continue` frames as it needs, back to back: frames of
//! two messages never interleave and nothing else comes between them. Fragmentation is
//! canonical (every frame but a message's last is full), so a message has exactly one encoding
//! and [`Reassembler`] refuses any other. The declared total is checked against the cap
//! before any buffer is reserved, and the buffer grows only as bytes arrive.

use medchain_core::keys::{Signature, VerifyKey};
use thiserror::Error;

/// The Noise protocol: handshake pattern XX, X25519, ChaCha20-Poly1305, SHA-256.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Domain label of the Noise prologue (`len u8 || label || genesis hash`): a peer of another
/// network, or of another transport version, fails the handshake.
pub const PROLOGUE_LABEL: &str = "medchain/v1/transport";

/// Domain label of the auth frame's ed25519 signature.
pub const AUTH_LABEL: &str = "medchain/v1/transport-auth";

/// The largest Noise message (the Noise specification's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;

/// The AEAD tag every Noise transport message carries.
pub const TAG_LEN: usize = 16;

/// The largest frame: one Noise transport message less its tag.
pub const MAX_FRAME: usize = MAX_NOISE_MESSAGE - TAG_LEN;

/// Message bytes in a full `start` frame.
pub const MAX_START_CHUNK: usize = MAX_FRAME - 5;

/// Message bytes in a full `continue` frame.
pub const MAX_CONTINUE_CHUNK: usize = MAX_FRAME - 1;

/// The largest message length the frame format can declare.
pub const MAX_DECLARABLE: usize = u32::MAX as usize;

const KIND_KEEPALIVE: u8 = 0;
const KIND_AUTH: u8 = 1;
const KIND_START: u8 = 2;
const KIND_CONTINUE: u8 = 3;
const AUTH_LEN: usize = 1 + 32 + 64;

/// First reservation for a message spanning several frames; the buffer then grows
/// geometrically, never past the declared total.
const INITIAL_RESERVE: usize = 256 * 1024;

/// A frame is malformed or breaks the framing rules. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame with no kind byte.
    #[error("empty frame")]
    Empty,
    /// A kind byte this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A frame whose length does not fit its kind.
    #[error("{kind} frame of {len} bytes")]
    BadLength {
        /// The frame kind.
        kind: &'static str,
        /// Its length.
        len: usize,
    },
    /// An auth frame whose key is not a valid ed25519 key.
    #[error("auth frame with an invalid key")]
    BadKey,
    /// A message declared longer than the cap.
    #[error("message of {declared} bytes declared, at most {max} accepted")]
    Oversized {
        /// The declared length.
        declared: u64,
        /// The cap.
        max: usize,
    },
    /// A frame other than `continue` arrived while a message was incomplete.
    #[error("frame interleaved inside a fragmented message")]
    Interleaved,
    /// A `continue` frame with no message in progress.
    #[error("continue frame without a message in progress")]
    NoMessage,
    /// A chunk longer than the rest of the declared message.
    #[error("chunk runs past the declared message length")]
    Overrun,
    /// A chunk shorter than the frame could carry before the end of the message.
    #[error("non-canonical fragmentation (a frame that is not the last is not full)")]
    NonCanonical,
    /// An auth frame after the first frame.
    #[error("auth frame after authentication")]
    UnexpectedAuth,
}

/// One decrypted frame, borrowing the plaintext it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Keeps an idle connection alive.
    Keepalive,
    /// Proves the sender holds `key`: `signature` over [`auth_message`] under [`AUTH_LABEL`].
    Auth {
        /// The sender's ed25519 key.
        key: VerifyKey,
        /// Its signature.
        signature: Signature,
    },
    /// The first fragment of a message of `total` bytes.
    Start {
        /// The message length.
        total: u32,
        /// The message's first bytes.
        chunk: &'a [u8],
    },
    /// A following fragment.
    Continue {
        /// The next bytes.
        chunk: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Decodes one frame (the whole plaintext of one Noise transport message).
    ///
    /// # Errors
    /// A [`FrameError`] for an empty frame, an unknown kind, a length that does not fit the
    /// kind, or an invalid auth key. The framing rules across frames are [`Reassembler`]'s.
    pub fn decode(plaintext: &'a [u8]) -> Result<Self, FrameError> {
        let (&kind, body) = plaintext.split_first().ok_or(FrameError::Empty)?;
        if plaintext.len() > MAX_FRAME {
            return Err(FrameError::BadLength {
                kind: "any",
                len: plaintext.len(),
            });
        }
        match kind {
            KIND_KEEPALIVE if body.is_empty() => Ok(Self::Keepalive),
            KIND_KEEPALIVE => Err(FrameError::BadLength {
                kind: "keepalive",
                len: plaintext.len(),
            }),
            KIND_AUTH if plaintext.len() == AUTH_LEN => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&body[..32]);
                let mut sig = [0u8; 64];
                sig.copy_from_slice(&body[32..]);
                Ok(Self::Auth {
                    key: VerifyKey::from_byte_array(key).map_err(|_| FrameError::BadKey)?,
                    signature: Signature::from_byte_array(sig),
                })
            }
            KIND_AUTH => Err(FrameError::BadLength {
                kind: "auth",
                len: plaintext.len(),
            }),
            KIND_START if body.len() >= 4 => {
                let (total, chunk) = body.split_at(4);
                let total = u32::from_be_bytes([total[0], total[1], total[2], total[3]]);
                Ok(Self::Start { total, chunk })
            }
            KIND_START => Err(FrameError::BadLength {
                kind: "start",
                len: plaintext.len(),
            }),
            KIND_CONTINUE => Ok(Self::Continue { chunk: body }),
            other => Err(FrameError::UnknownKind(other)),
        }
    }

    /// Appends the frame's encoding to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Keepalive => out.push(KIND_KEEPALIVE),
            Self::Auth { key, signature } => {
                out.push(KIND_AUTH);
                out.extend_from_slice(key.as_byte_array());
                out.extend_from_slice(signature.as_byte_array());
            }
            Self::Start { total, chunk } => {
                out.push(KIND_START);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(chunk);
            }
            Self::Continue { chunk } => {
                out.push(KIND_CONTINUE);
                out.extend_from_slice(chunk);
            }
        }
    }

    /// The frame's encoding.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// What an auth frame's signature covers: `genesis hash || handshake hash || role`, role 0 for
/// the side that dialed (the Noise initiator) and 1 for the side that accepted.
pub fn auth_message(genesis_hash: &[u8; 32], handshake_hash: &[u8], initiator: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + handshake_hash.len() + 1);
    m.extend_from_slice(genesis_hash);
    m.extend_from_slice(handshake_hash);
    m.push(if initiator { 0 } else { 1 });
    m
}

/// The Noise prologue for a network: `len u8 || PROLOGUE_LABEL || genesis hash`.
pub fn prologue(genesis_hash: &[u8; 32]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + PROLOGUE_LABEL.len() + 32);
    p.push(PROLOGUE_LABEL.len() as u8);
    p.extend_from_slice(PROLOGUE_LABEL.as_bytes());
    p.extend_from_slice(genesis_hash);
    p
}

/// The frames of `message`, in order: its canonical fragmentation.
///
/// # Errors
/// [`FrameError::Oversized`] if the message is longer than [`MAX_DECLARABLE`].
pub fn fragments(message: &[u8]) -> Result<Fragments<'_>, FrameError> {
    let total = u32::try_from(message.len()).map_err(|_| FrameError::Oversized {
        declared: message.len() as u64,
        max: MAX_DECLARABLE,
    })?;
    Ok(Fragments {
        message,
        total,
        offset: 0,
        started: false,
    })
}

/// Iterator over the frames of one message; see [`fragments`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    message: &'a [u8],
    total: u32,
    offset: usize,
    started: bool,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if !self.started {
            self.started = true;
            let end = self.message.len().min(MAX_START_CHUNK);
            self.offset = end;
            return Some(Frame::Start {
                total: self.total,
                chunk: &self.message[..end],
            });
        }
        if self.offset >= self.message.len() {
            return None;
        }
        let end = self.message.len().min(self.offset + MAX_CONTINUE_CHUNK);
        let chunk = &self.message[self.offset..end];
        self.offset = end;
        Some(Frame::Continue { chunk })
    }
}

/// Rebuilds messages from frames, strictly and under a cap.
#[derive(Debug)]
pub struct Reassembler {
    max: usize,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    total: usize,
    buf: Vec<u8>,
}

impl Reassembler {
    /// A reassembler that refuses messages longer than `max_message_len` bytes.
    pub fn new(max_message_len: usize) -> Self {
        Self {
            max: max_message_len.min(MAX_DECLARABLE),
            partial: None,
        }
    }

    /// Bytes held for the incomplete message (at most the cap).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.len())
    }

    /// Takes one frame; returns a message when `frame` completes one.
    ///
    /// # Errors
    /// A [`FrameError`] when the frame breaks the framing rules (see the module docs). The
    /// reassembler is then unusable; the connection must be closed.
    pub fn push(&mut self, frame: &Frame<'_>) -> Result<Option<Vec<u8>>, FrameError> {
        match *frame {
            Frame::Auth { .. } => Err(FrameError::UnexpectedAuth),
            Frame::Keepalive if self.partial.is_some() => Err(FrameError::Interleaved),
            Frame::Keepalive => Ok(None),
            Frame::Start { .. } if self.partial.is_some() => Err(FrameError::Interleaved),
            Frame::Start { total, chunk } => {
                let total = total as usize;
                if total > self.max {
                    return Err(FrameError::Oversized {
                        declared: total as u64,
                        max: self.max,
                    });
                }
                if chunk.len() != total.min(MAX_START_CHUNK) {
                    return Err(if chunk.len() > total {
                        FrameError::Overrun
                    } else {
                        FrameError::NonCanonical
                    });
                }
                if chunk.len() == total {
                    return Ok(Some(chunk.to_vec()));
                }
                let mut buf = Vec::with_capacity(total.min(INITIAL_RESERVE));
                buf.extend_from_slice(chunk);
                self.partial = Some(Partial { total, buf });
                Ok(None)
            }
            Frame::Continue { chunk } => {
                let partial = self.partial.as_mut().ok_or(FrameError::NoMessage)?;
                let remaining = partial.total - partial.buf.len();
                if chunk.len() != remaining.min(MAX_CONTINUE_CHUNK) {
                    return Err(if chunk.len() > remaining {
                        FrameError::Overrun
                    } else {
                        FrameError::NonCanonical
                    });
                }
                let needed = partial.buf.len() + chunk.len();
                if needed > partial.buf.capacity() {
                    let grown = needed.max(partial.buf.capacity() * 2).min(partial.total);
                    partial.buf.reserve_exact(grown - partial.buf.len());
                }
                partial.buf.extend_from_slice(chunk);
                if partial.buf.len() == partial.total {
                    Ok(self.partial.take().map(|p| p.buf))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reassemble(message: &[u8], max: usize) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut r = Reassembler::new(max);
        let mut out = Vec::new();
        for frame in fragments(message)? {
            let bytes = frame.to_vec();
            assert!(bytes.len() <= MAX_FRAME);
            if let Some(m) = r.push(&Frame::decode(&bytes)?)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn messages_of_every_boundary_length_round_trip() {
        let lens = [
            0,
            1,
            MAX_START_CHUNK - 1,
            MAX_START_CHUNK,
            MAX_START_CHUNK + 1,
            MAX_START_CHUNK + MAX_CONTINUE_CHUNK,
            MAX_START_CHUNK + MAX_CONTINUE_CHUNK + 1,
            1_000_000,
        ];
        for len in lens {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let frames = fragments(&msg).unwrap().count();
            let expected = 1 + len
                .saturating_sub(MAX_START_CHUNK)
                .div_ceil(MAX_CONTINUE_CHUNK);
            assert_eq!(frames, expected, "len {len}");
            assert_eq!(reassemble(&msg, 1 << 20).unwrap(), vec![msg], "len {len}");
        }
    }

    #[test]
    fn oversized_declaration_is_refused_before_any_buffer() {
        let mut r = Reassembler::new(1000);
        let frame = Frame::Start {
            total: u32::MAX,
            chunk: &[0u8; 10],
        };
        assert_eq!(
            r.push(&frame),
            Err(FrameError::Oversized {
                declared: u64::from(u32::MAX),
                max: 1000
            })
        );
        assert_eq!(r.buffered(), 0);
        let msg = vec![1u8; 1001];
        assert!(matches!(
            reassemble(&msg, 1000),
            Err(FrameError::Oversized { declared: 1001, .. })
        ));
        assert_eq!(reassemble(&msg, 1001).unwrap(), vec![msg]);
    }

    #[test]
    fn framing_violations_are_refused() {
        let big = vec![5u8; MAX_START_CHUNK + 10];
        let frames: Vec<Frame<'_>> = fragments(&big).unwrap().collect();
        // A continue frame with nothing in progress.
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(r.push(&frames[1]), Err(FrameError::NoMessage));
        // A start, a keepalive or an auth inside a message.
        let mut r = Reassembler::new(1 << 20);
        r.push(&frames[0]).unwrap();
        assert_eq!(r.push(&frames[0]), Err(FrameError::Interleaved));
        assert_eq!(r.push(&Frame::Keepalive), Err(FrameError::Interleaved));
        let id = medchain_core::testkit::TestNet::new(1, 1, 0)
            .nodes
            .remove(0);
        let auth = Frame::Auth {
            key: id.verify_key(),
            signature: id.sign(&medchain_core::hash::ChainId::default(), AUTH_LABEL, b"x"),
        };
        assert_eq!(r.push(&auth), Err(FrameError::UnexpectedAuth));
        // A chunk past the end, and a short chunk that is not the last.
        assert_eq!(
            r.push(&Frame::Continue { chunk: &[0u8; 11] }),
            Err(FrameError::Overrun)
        );
        assert_eq!(
            r.push(&Frame::Continue { chunk: &[0u8; 9] }),
            Err(FrameError::NonCanonical)
        );
        assert_eq!(
            r.push(&Frame::Continue { chunk: &[] }),
            Err(FrameError::NonCanonical)
        );
        assert_eq!(r.push(&frames[1]).unwrap(), Some(big.clone()));
        // A short start chunk for a long message; a start chunk past its total.
        let mut r = Reassembler::new(1 << 20);
        let short = Frame::Start {
            total: 100,
            chunk: &[0u8; 99],
        };
        assert_eq!(r.push(&short), Err(FrameError::NonCanonical));
        let over = Frame::Start {
            total: 1,
            chunk: &[0u8; 2],
        };
        assert_eq!(r.push(&over), Err(FrameError::Overrun));
    }

    #[test]
    fn frame_decoding_is_strict() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[9]), Err(FrameError::UnknownKind(9)));
        assert!(matches!(
            Frame::decode(&[0, 0]),
            Err(FrameError::BadLength {
                kind: "keepalive",
                ..
            })
        ));
        assert!(matches!(
            Frame::decode(&[1; 96]),
            Err(FrameError::BadLength { kind: "auth", .. })
        ));
        assert!(matches!(
            Frame::decode(&[2, 0, 0, 0]),
            Err(FrameError::BadLength { kind: "start", .. })
        ));
        let too_long = vec![3u8; MAX_FRAME + 1];
        assert!(matches!(
            Frame::decode(&too_long),
            Err(FrameError::BadLength { .. })
        ));
        // The identity point is a small-order key.
        let mut auth = vec![1u8; AUTH_LEN];
        auth[1..33].copy_from_slice(&[0u8; 32]);
        auth[1] = 1;
        assert_eq!(Frame::decode(&auth), Err(FrameError::BadKey));
        assert_eq!(Frame::decode(&[0]), Ok(Frame::Keepalive));
        assert_eq!(
            Frame::decode(&[2, 0, 0, 0, 0]),
            Ok(Frame::Start {
                total: 0,
                chunk: &[]
            })
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = FrameError::Oversized {
            declared: 10,
            max: 5,
        };
        assert_eq!(
            e.to_string(),
            "message of 10 bytes declared, at most 5 accepted"
        );
        assert_eq!(
            FrameError::UnknownKind(7).to_string(),
            "unknown frame kind 7"
        );
        assert_eq!(
            FrameError::BadLength {
                kind: "auth",
                len: 3
            }
            .to_string(),
            "auth frame of 3 bytes"
        );
    }

    proptest! {
        #[test]
        fn any_message_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            prop_assert_eq!(reassemble(&msg, msg.len()).unwrap(), vec![msg]);
        }

        #[test]
        fn decoded_frames_reencode_to_their_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(frame) = Frame::decode(&bytes) {
                prop_assert_eq!(frame.to_vec(), bytes);
            }
        }
    }
}
