//! Fuzz entry points for the transport's decoders (doc-hidden; see `docs/fuzzing.md`). Like
//! `medchain_core::fuzzing`, each takes any bytes and panics only on a real bug.

use crate::transport::wire::{fragments, Frame, Reassembler};

/// A fuzz entry point: takes any bytes, panics only on a real bug.
pub type FuzzFn = fn(&[u8]);

/// Every fuzz entry point of this crate by name (the fuzz target's and the corpus directory's
/// name).
pub const TARGETS: &[(&str, FuzzFn)] = &[("decode_frames", decode_frames)];

/// The message cap [`decode_frames`] reassembles under: above one frame, so fragmented
/// messages and the cap are both reachable.
pub const FUZZ_MAX_MESSAGE: usize = 100_000;

/// Splits `data` into decrypted frames (`len u16 || frame`, the last one cut short if the data
/// ends) and feeds them to a [`Reassembler`] capped at [`FUZZ_MAX_MESSAGE`], as the reader of
/// one connection does after decryption, until the first error (where the connection would be
/// closed). Checks that every decoded frame re-encodes to its bytes, that the reassembler never
/// holds more than the cap, and that every message it returns fragments back into frames that
/// reassemble to it.
pub fn decode_frames(data: &[u8]) {
    let mut reassembler = Reassembler::new(FUZZ_MAX_MESSAGE);
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        let plaintext = &rest[2..end];
        rest = &rest[end..];
        let Ok(frame) = Frame::decode(plaintext) else {
            return;
        };
        assert_eq!(frame.to_vec(), plaintext, "frame encoding is not canonical");
        let pushed = reassembler.push(&frame);
        assert!(reassembler.buffered() <= FUZZ_MAX_MESSAGE);
        match pushed {
            Ok(Some(message)) => {
                assert!(message.len() <= FUZZ_MAX_MESSAGE);
                let mut again = Reassembler::new(FUZZ_MAX_MESSAGE);
                let mut out = None;
                for f in fragments(&message).expect("a capped message fragments") {
                    let bytes = f.to_vec();
                    let decoded = Frame::decode(&bytes).expect("own frames decode");
                    out = again.push(&decoded).expect("own frames reassemble");
                }
                assert_eq!(
                    out.as_deref(),
                    Some(&message[..]),
                    "fragments do not round-trip"
                );
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_frames_accepts_noise() {
        decode_frames(&[]);
        decode_frames(&[0, 1, 0, 0, 5, 2, 0, 0, 0, 0]);
        decode_frames(&[0xff; 300]);
    }
}
