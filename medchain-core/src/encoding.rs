//! The canonical codec: one deterministic byte form for everything that is hashed or signed.
//!
//! The rules (written out for implementers in `docs/encoding.md`):
//!
//! * integers are fixed width, big-endian (`u8`, `u16`, `u32`, `u64`); there are no floats;
//! * a boolean is one byte, `0x00` or `0x01`; any other value is non-canonical;
//! * a byte string is a `u32` length followed by that many bytes;
//! * a list is a `u32` element count followed by the elements;
//! * an optional value is a presence byte (`0x00` absent, `0x01` present) then the value;
//! * fixed-size values (keys, hashes, signatures) are written raw, without a length;
//! * every top-level structure begins with its own format version byte;
//! * there are no maps: where a set is encoded, its elements are strictly ascending, so there is
//!   exactly one encoding of it.
//!
//! Decoding is total: it never panics, rejects trailing bytes ([`Decode::from_bytes`]),
//! rejects lengths above each field's limit and lengths that the remaining input cannot hold
//! *before* allocating, so a hostile length prefix can never make the decoder allocate more than
//! the input justifies.

use thiserror::Error;

/// Largest byte string any field may hold (64 MiB). Individual fields set smaller limits.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Largest element count any list may hold. Individual fields set smaller limits.
pub const MAX_LIST: usize = 1 << 24;

/// Why a byte string could not be decoded.
///
/// Messages never contain the decoded bytes themselves (they may be health data); they name the
/// field and the numbers involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value was complete.
    #[error("input ended early: {needed} more byte(s) needed, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the decoder needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Bytes were left over after a complete top-level value.
    #[error("{count} trailing byte(s) after the value")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A length or count prefix is above the limit for its field.
    #[error("{what}: length {len} is above the limit of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The field's limit.
        max: u64,
    },
    /// A length or count prefix claims more data than the input holds.
    #[error("{what}: length {len} needs at least {needed} byte(s), only {remaining} left")]
    LengthExceedsInput {
        /// The field.
        what: &'static str,
        /// The length found.
        len: u64,
        /// Bytes the length implies at the least.
        needed: u64,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A structure's version byte is not one this library reads.
    #[error("{what}: unknown format version {found}")]
    UnknownVersion {
        /// The structure.
        what: &'static str,
        /// The version byte found.
        found: u8,
    },
    /// An enum tag has no variant.
    #[error("{what}: unknown tag {tag}")]
    UnknownTag {
        /// The enum.
        what: &'static str,
        /// The tag found.
        tag: u64,
    },
    /// A value has more than one encoding and this is not the canonical one
    /// (a boolean other than 0/1, an unsorted or repeated set, ...).
    #[error("{what}: non-canonical encoding")]
    NonCanonical {
        /// The field.
        what: &'static str,
    },
    /// The bytes are well formed but do not make a valid value (a public key that is not a
    /// curve point, text that is not UTF-8, ...).
    #[error("{what}: invalid value ({reason})")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
}

/// A cursor over input bytes. Every read checks bounds and returns a [`DecodeError`].
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless every byte was read.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`] when input is left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when fewer than `n` bytes are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::UnexpectedEnd {
                needed: n,
                remaining,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A fixed-size array.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when the input is too short.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when the input is too short.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when the input is too short.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when the input is too short.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A boolean: exactly `0x00` or `0x01`.
    ///
    /// # Errors
    /// [`DecodeError::NonCanonical`] for any other byte.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::NonCanonical { what }),
        }
    }

    /// A version byte that must equal `expected`.
    ///
    /// # Errors
    /// [`DecodeError::UnknownVersion`] for any other value.
    pub fn version(&mut self, what: &'static str, expected: u8) -> Result<(), DecodeError> {
        let found = self.u8()?;
        if found == expected {
            Ok(())
        } else {
            Err(DecodeError::UnknownVersion { what, found })
        }
    }

    /// A length-prefixed byte string of at most `max` bytes, borrowed from the input.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] above `max`, [`DecodeError::LengthExceedsInput`] when the input
    /// is shorter than the prefix claims.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.length(what, max, 1)?;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    ///
    /// # Errors
    /// As [`Reader::bytes`], and [`DecodeError::InvalidValue`] for invalid UTF-8.
    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let raw = self.bytes(what, max)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidValue {
                what,
                reason: "not UTF-8",
            })
    }

    /// A `u32` count or length prefix, checked against `max` and against the input left, given
    /// that each element takes at least `min_elem_size` bytes. Nothing is allocated.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] or [`DecodeError::LengthExceedsInput`].
    pub fn length(
        &mut self,
        what: &'static str,
        max: usize,
        min_elem_size: usize,
    ) -> Result<usize, DecodeError> {
        let len = self.u32()? as u64;
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len,
                max: max as u64,
            });
        }
        let needed = len.saturating_mul(min_elem_size.max(1) as u64);
        let remaining = self.remaining();
        if needed > remaining as u64 {
            return Err(DecodeError::LengthExceedsInput {
                what,
                len,
                needed,
                remaining,
            });
        }
        Ok(len as usize)
    }

    /// A counted list of at most `max` elements, each at least `min_elem_size` bytes long.
    ///
    /// # Errors
    /// As [`Reader::length`], and whatever decoding an element returns.
    pub fn list<T: Decode>(
        &mut self,
        what: &'static str,
        max: usize,
        min_elem_size: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.length(what, max, min_elem_size)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode_from(self)?);
        }
        Ok(out)
    }

    /// A counted list whose elements must be strictly ascending by `key` (a canonical set).
    ///
    /// # Errors
    /// As [`Reader::list`], and [`DecodeError::NonCanonical`] when elements are unsorted or
    /// repeated.
    pub fn sorted_list<T: Decode, K: Ord>(
        &mut self,
        what: &'static str,
        max: usize,
        min_elem_size: usize,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, DecodeError> {
        let out: Vec<T> = self.list(what, max, min_elem_size)?;
        if out.windows(2).any(|w| key(&w[0]) >= key(&w[1])) {
            return Err(DecodeError::NonCanonical { what });
        }
        Ok(out)
    }

    /// An optional value: a presence byte then the value.
    ///
    /// # Errors
    /// [`DecodeError::NonCanonical`] for a presence byte other than 0/1, and whatever decoding
    /// the value returns.
    pub fn option<T: Decode>(&mut self, what: &'static str) -> Result<Option<T>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(T::decode_from(self)?))
        } else {
            Ok(None)
        }
    }
}

/// Appends primitive values in canonical form.
pub trait Writer {
    /// One byte.
    fn put_u8(&mut self, v: u8);
    /// A big-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// A big-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// A big-endian `u64`.
    fn put_u64(&mut self, v: u64);
    /// A boolean as `0x00`/`0x01`.
    fn put_bool(&mut self, v: bool);
    /// Raw bytes, no length (fixed-size values).
    fn put_raw(&mut self, v: &[u8]);
    /// A `u32` length then the bytes.
    ///
    /// # Panics
    /// Never for inputs this library produces: every field is limited far below 4 GiB; a longer
    /// slice is a programming error and asserts.
    fn put_bytes(&mut self, v: &[u8]);
    /// A `u32` count then each element.
    fn put_list<T: Encode>(&mut self, items: &[T]);
    /// A presence byte then the value.
    fn put_option<T: Encode>(&mut self, v: Option<&T>);
}

fn len_u32(len: usize) -> u32 {
    // Every field has a limit far below u32::MAX (see MAX_BYTES / MAX_LIST); encoders check
    // their inputs against those limits before they get here.
    assert!(
        len <= u32::MAX as usize,
        "length exceeds the u32 wire limit"
    );
    len as u32
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_raw(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.put_u32(len_u32(v.len()));
        self.extend_from_slice(v);
    }
    fn put_list<T: Encode>(&mut self, items: &[T]) {
        self.put_u32(len_u32(items.len()));
        for item in items {
            item.encode_to(self);
        }
    }
    fn put_option<T: Encode>(&mut self, v: Option<&T>) {
        match v {
            None => self.put_u8(0),
            Some(v) => {
                self.put_u8(1);
                v.encode_to(self);
            }
        }
    }
}

/// A value with a canonical encoding.
pub trait Encode {
    /// Appends the canonical encoding to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The canonical encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value from `r`, leaving the reader after it.
    ///
    /// # Errors
    /// A [`DecodeError`] for malformed input.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole byte string: exactly one value and nothing after it.
    ///
    /// # Errors
    /// A [`DecodeError`] for malformed input or trailing bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(self);
    }
}

impl<const N: usize> Decode for [u8; N] {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array()
    }
}

impl Encode for u64 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u64(*self);
    }
}

impl Decode for u64 {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u64()
    }
}

impl Encode for u32 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u32(*self);
    }
}

impl Decode for u32 {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut out = Vec::new();
        out.put_u8(7);
        out.put_u16(0x0102);
        out.put_u32(0x0304_0506);
        out.put_u64(0x0708_090a_0b0c_0d0e);
        out.put_bool(true);
        out.put_bytes(b"abc");
        assert_eq!(
            hex::encode(&out),
            "070102030405060708090a0b0c0d0e0100000003616263"
        );
        let mut r = Reader::new(&out);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u32().unwrap(), 0x0304_0506);
        assert_eq!(r.u64().unwrap(), 0x0708_090a_0b0c_0d0e);
        assert!(r.bool("b").unwrap());
        assert_eq!(r.bytes("s", 10).unwrap(), b"abc");
        r.finish().unwrap();
    }

    #[test]
    fn rejects_non_canonical_bool() {
        let err = Reader::new(&[2]).bool("flag").unwrap_err();
        assert_eq!(err, DecodeError::NonCanonical { what: "flag" });
        assert_eq!(err.to_string(), "flag: non-canonical encoding");
    }

    #[test]
    fn rejects_oversize_and_lying_lengths_without_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        let err = r.bytes("payload", 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload: length 4294967295 is above the limit of 100"
        );
        let mut r = Reader::new(&[0, 0, 0, 50, 1, 2]);
        let err = r.bytes("payload", 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload: length 50 needs at least 50 byte(s), only 2 left"
        );
        // A list whose count times the smallest element size exceeds the input.
        let mut r = Reader::new(&[0, 0, 1, 0, 0]);
        let err = r.list::<[u8; 32]>("keys", 1000, 32).unwrap_err();
        assert!(matches!(err, DecodeError::LengthExceedsInput { .. }));
    }

    #[test]
    fn rejects_trailing_bytes_and_truncation() {
        let err = <[u8; 2]>::from_bytes(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.to_string(), "1 trailing byte(s) after the value");
        let err = <[u8; 2]>::from_bytes(&[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input ended early: 2 more byte(s) needed, 1 left"
        );
    }

    #[test]
    fn sorted_list_rejects_disorder_and_repeats() {
        let mut buf = Vec::new();
        buf.put_list(&[[2u8; 1], [1u8; 1]]);
        let err = Reader::new(&buf)
            .sorted_list::<[u8; 1], _>("set", 10, 1, |v| *v)
            .unwrap_err();
        assert_eq!(err, DecodeError::NonCanonical { what: "set" });
        let mut buf = Vec::new();
        buf.put_list(&[[1u8; 1], [1u8; 1]]);
        assert!(Reader::new(&buf)
            .sorted_list::<[u8; 1], _>("set", 10, 1, |v| *v)
            .is_err());
    }

    #[test]
    fn version_and_option() {
        let err = Reader::new(&[9]).version("block", 1).unwrap_err();
        assert_eq!(err.to_string(), "block: unknown format version 9");
        let mut buf = Vec::new();
        buf.put_option(Some(&5u64));
        buf.put_option::<u64>(None);
        let mut r = Reader::new(&buf);
        assert_eq!(r.option::<u64>("o").unwrap(), Some(5));
        assert_eq!(r.option::<u64>("o").unwrap(), None);
        assert!(Reader::new(&[3]).option::<u64>("o").is_err());
    }

    proptest::proptest! {
        #[test]
        fn bytes_round_trip(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            out.put_bytes(&data);
            let mut r = Reader::new(&out);
            proptest::prop_assert_eq!(r.bytes("d", 1024).unwrap(), &data[..]);
            r.finish().unwrap();
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.bytes("x", 1 << 20);
            let _ = r.list::<u64>("l", 1 << 20, 8);
            let _ = r.option::<[u8; 4]>("o");
        }
    }
}
