//! HMAC-SHA256 (RFC 2104) with the keyed inner and outer states precomputed.
//!
//! Every PRF of the secure index is HMAC-SHA256 under a 32-byte key. Searching evaluates one PRF
//! per block and per candidate under the same trapdoor, so the two keyed SHA-256 states
//! (`IV` compressed over `key ⊕ ipad` and over `key ⊕ opad`) are computed once and kept. Those
//! states are as secret as the key itself, so unlike `hmac::Hmac` they are zeroized on drop.
//!
//! An evaluation of a message of up to 55 bytes costs two SHA-256 compressions; the unit tests
//! check every length against the `hmac` crate.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::block_api::compress256(state, std::slice::from_ref(block));
}

fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// HMAC-SHA256 keyed by a 32-byte secret, ready to evaluate.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Prf {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl Prf {
    /// Precomputes the keyed states for `key`.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut block = [0x36u8; 64];
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        let mut inner = IV;
        compress(&mut inner, &block);
        for b in block.iter_mut() {
            *b ^= 0x36 ^ 0x5c;
        }
        let mut outer = IV;
        compress(&mut outer, &block);
        block.zeroize();
        Self { inner, outer }
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub(crate) fn eval(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut state = self.inner;
        let mut buf = [0u8; 64];
        let mut fill = 0usize;
        // The key block already hashed counts towards the message length.
        let mut total: u64 = 64;
        for part in parts {
            total += part.len() as u64;
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                let n = (64 - fill).min(rest.len());
                buf[fill..fill + n].copy_from_slice(&rest[..n]);
                fill += n;
                rest = &rest[n..];
                if fill == 64 {
                    compress(&mut state, &buf);
                    fill = 0;
                }
            }
        }
        // SHA-256 padding: 0x80, zeros, then the length in bits (big-endian u64).
        buf[fill] = 0x80;
        buf[fill + 1..].fill(0);
        if fill >= 56 {
            compress(&mut state, &buf);
            buf.fill(0);
        }
        buf[56..].copy_from_slice(&(total * 8).to_be_bytes());
        compress(&mut state, &buf);
        // Outer hash over the 32-byte inner digest: one block, length (64 + 32) * 8 bits.
        let mut outer_block = [0u8; 64];
        outer_block[..32].copy_from_slice(&state_bytes(&state));
        outer_block[32] = 0x80;
        outer_block[56..].copy_from_slice(&768u64.to_be_bytes());
        let mut out = self.outer;
        compress(&mut out, &outer_block);
        state.zeroize();
        buf.zeroize();
        outer_block.zeroize();
        let digest = state_bytes(&out);
        out.zeroize();
        digest
    }
}

impl fmt::Debug for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prf(..)")
    }
}

/// `len(label) || label`, the framing every secure-index PRF input starts with.
pub(crate) fn frame(label: &str) -> ([u8; 1], &[u8]) {
    debug_assert!(label.len() < 256);
    ([label.len() as u8], label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    fn reference(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn matches_hmac_crate_at_every_length() {
        let key = [0x5au8; 32];
        let prf = Prf::new(&key);
        let msg: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..msg.len() {
            let m = &msg[..len];
            assert_eq!(prf.eval(&[m]), reference(&key, m), "length {len}");
            // Split the message into parts at a few places: the result must not change.
            let cut = len / 3;
            assert_eq!(prf.eval(&[&m[..cut], &m[cut..]]), reference(&key, m));
            assert_eq!(
                prf.eval(&[&[], &m[..cut], &[], &m[cut..]]),
                reference(&key, m)
            );
        }
    }

    #[test]
    fn rfc4231_case_2_with_a_32_byte_key() {
        // RFC 4231 vectors use other key lengths; check a 32-byte key against the crate and a
        // vector computed independently (Python: hmac.new(bytes(range(32)), b"abc", sha256)).
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let got = Prf::new(&key).eval(&[b"abc"]);
        assert_eq!(got, reference(&key, b"abc"));
        assert_eq!(
            hex::encode(got),
            "f0133729c4163dede81e21cd47839256da58171238c8a0d874397c73b14e1e47"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Prf::new(&[1; 32])), "Prf(..)");
    }
}
