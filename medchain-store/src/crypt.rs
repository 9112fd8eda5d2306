//! The store's state key: derived state (records, consents, audit entries) reveals what the
//! network-sealed transaction bodies hide, so the stores keep it encrypted and authenticated.
//!
//! A fresh random 32-byte state key is made when a store is created and kept sealed under the
//! network key ([`NetworkKey::seal`]) in the store itself. From it, with their own labels:
//!
//! * lookup keys: `HMAC-SHA256(K_lookup, len(label) || label || id)`, one label per table and
//!   column, so a row can be found by record id, consent id or patient key without those ids
//!   appearing in the file, and the columns of two tables do not join;
//! * row encryption: AES-256-GCM under `K_seal` with a random 96-bit nonce; the associated
//!   data are the row's identity — table, sequence number (block height and rank), its lookup
//!   columns and its clear columns — so a row moved to another place, patient or record, or
//!   altered, does not decrypt; plaintexts are padded to fixed buckets per table;
//! * the state commitment: `K_commit` MACs a running digest of every derived row written and
//!   the head record that holds it with the per-table row counts.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use getrandom::SysRng;
use hmac::{Hmac, Mac};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::BlockHash;
use medchain_core::seal::{NetworkKey, NetworkSealed};
use rand_core::{Rng, UnwrapErr};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Corruption, StoreError};
use crate::rows::{Counts, Row, Table};

/// Associated data of the sealed state key.
const STATE_KEY_AAD: &[u8] = b"medchain/v1/store-state-key";
const LOOKUP_LABEL: &[u8] = b"medchain/v2/store-lookup";
const SEAL_LABEL: &[u8] = b"medchain/v2/store-seal";
const COMMIT_LABEL: &[u8] = b"medchain/v2/store-commit";
const ROW_AAD: &[u8] = b"medchain/v2/store-row";
const STATE_STEP: &[u8] = b"medchain/v2/store-state-step";
const HEAD_TAG: &[u8] = b"medchain/v2/store-head";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What a lookup key is for: one label per table and column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    /// A record id, in `records` and `erasures`.
    Record,
    /// A patient, in `records`.
    RecordPatient,
    /// A consent id, in `consents` and `revocations`.
    Consent,
    /// A patient, in `consents`.
    ConsentPatient,
    /// A record id, in `audit`.
    AuditRecord,
}

impl Lookup {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Record => b"records.record",
            Self::RecordPatient => b"records.patient",
            Self::Consent => b"consents.consent",
            Self::ConsentPatient => b"consents.patient",
            Self::AuditRecord => b"audit.record",
        }
    }
}

/// The state key's working parts.
pub(crate) struct StateKey {
    lookup: Hmac<Sha256>,
    commit: Hmac<Sha256>,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

fn hmac_key(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

fn mac(key: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut m = hmac_key(key);
    m.update(label);
    Zeroizing::new(m.finalize().into_bytes().into())
}

impl StateKey {
    /// A fresh state key and its sealed form (to store).
    pub(crate) fn generate(network: &NetworkKey) -> (Self, Vec<u8>) {
        let mut raw = Zeroizing::new([0u8; 32]);
        UnwrapErr(SysRng).fill_bytes(&mut *raw);
        let sealed = network
            .seal(&*raw, STATE_KEY_AAD, &mut UnwrapErr(SysRng))
            .to_bytes();
        (Self::from_raw(&raw[..]), sealed)
    }

    /// Opens a sealed state key.
    pub(crate) fn unseal(sealed: &[u8], network: &NetworkKey) -> Result<Self, StoreError> {
        let sealed = NetworkSealed::from_bytes(sealed)?;
        let raw = network
            .open(&sealed, STATE_KEY_AAD)
            .map_err(|_| StoreError::WrongKey)?;
        if raw.len() != 32 {
            return Err(StoreError::corrupt(
                "the sealed state key has the wrong length",
            ));
        }
        Ok(Self::from_raw(&raw))
    }

    fn from_raw(raw: &[u8]) -> Self {
        let lookup = mac(raw, LOOKUP_LABEL);
        let seal = mac(raw, SEAL_LABEL);
        let commit = mac(raw, COMMIT_LABEL);
        Self {
            lookup: hmac_key(&*lookup),
            commit: hmac_key(&*commit),
            cipher: Aes256Gcm::new((&*seal).into()),
        }
    }

    /// The lookup key of `id`.
    pub(crate) fn lookup(&self, what: Lookup, id: &[u8]) -> [u8; 32] {
        let mut m = self.lookup.clone();
        let label = what.label();
        m.update(&[label.len() as u8]);
        m.update(label);
        m.update(id);
        m.finalize().into_bytes().into()
    }

    /// Encrypts a row's secret part under its identity: `nonce (12) || ciphertext || tag`, the
    /// plaintext padded to the table's bucket.
    pub(crate) fn seal_row(&self, row: &Row) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        UnwrapErr(SysRng).fill_bytes(&mut nonce);
        let aad = row_aad(row.table, row.seq, &row.tags, &row.clear);
        let padded = pad(row.table, &row.secret);
        let ct = self
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &padded,
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of < 64 GiB cannot fail"));
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a row sealed with [`StateKey::seal_row`] under the identity it is found with.
    ///
    /// # Errors
    /// [`Corruption::Row`] if it does not decrypt under that identity or its padding is wrong.
    pub(crate) fn open_row(
        &self,
        table: Table,
        seq: u64,
        tags: Vec<[u8; 32]>,
        clear: Vec<u8>,
        sealed: &[u8],
    ) -> Result<Row, StoreError> {
        let bad = || {
            StoreError::Corrupt(Corruption::Row {
                table: table.name(),
            })
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(bad());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let aad = row_aad(table, seq, &tags, &clear);
        let padded = Zeroizing::new(
            self.cipher
                .decrypt((&nonce).into(), Payload { msg: ct, aad: &aad })
                .map_err(|_| bad())?,
        );
        let secret = unpad(table, &padded).ok_or_else(bad)?;
        Ok(Row {
            table,
            seq,
            tags,
            clear,
            secret,
        })
    }

    /// The running state digest after a block: a MAC over the digest before it, the block's
    /// height and hash, and every derived row the block writes, in order.
    pub(crate) fn state_step(
        &self,
        prev: &[u8; 32],
        height: u64,
        hash: &BlockHash,
        rows: &[Row],
    ) -> [u8; 32] {
        let mut m = self.commit.clone();
        m.update(&[STATE_STEP.len() as u8]);
        m.update(STATE_STEP);
        m.update(prev);
        m.update(&height.to_be_bytes());
        m.update(hash.as_byte_array());
        m.update(&(rows.len() as u64).to_be_bytes());
        for r in rows {
            m.update(&[r.table.code()]);
            m.update(&r.seq.to_be_bytes());
            m.update(&[r.tags.len() as u8]);
            for t in &r.tags {
                m.update(t);
            }
            m.update(&(r.clear.len() as u64).to_be_bytes());
            m.update(&r.clear);
            m.update(&(r.secret.len() as u64).to_be_bytes());
            m.update(&r.secret);
        }
        m.finalize().into_bytes().into()
    }

    fn head_mac(
        &self,
        height: u64,
        hash: &BlockHash,
        state: &[u8; 32],
        counts: &Counts,
    ) -> Hmac<Sha256> {
        let mut m = self.commit.clone();
        m.update(&[HEAD_TAG.len() as u8]);
        m.update(HEAD_TAG);
        m.update(&height.to_be_bytes());
        m.update(hash.as_byte_array());
        m.update(state);
        m.update(&counts.to_bytes());
        m
    }

    /// The tag of a head record: its height and block hash, the running state digest and the
    /// per-table row counts.
    pub(crate) fn head_tag(
        &self,
        height: u64,
        hash: &BlockHash,
        state: &[u8; 32],
        counts: &Counts,
    ) -> [u8; 32] {
        self.head_mac(height, hash, state, counts)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a head record's tag (constant time).
    ///
    /// # Errors
    /// [`Corruption::Commitment`].
    pub(crate) fn check_head_tag(
        &self,
        height: u64,
        hash: &BlockHash,
        state: &[u8; 32],
        counts: &Counts,
        tag: &[u8],
    ) -> Result<(), StoreError> {
        self.head_mac(height, hash, state, counts)
            .verify_slice(tag)
            .map_err(|_| StoreError::Corrupt(Corruption::Commitment))
    }
}

fn row_aad(table: Table, seq: u64, tags: &[[u8; 32]], clear: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ROW_AAD.len() + 20 + 32 * tags.len() + clear.len());
    aad.push(ROW_AAD.len() as u8);
    aad.extend_from_slice(ROW_AAD);
    aad.push(table.code());
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.push(tags.len() as u8);
    for t in tags {
        aad.extend_from_slice(t);
    }
    aad.extend_from_slice(&(clear.len() as u64).to_be_bytes());
    aad.extend_from_slice(clear);
    aad
}

/// The padded length of a `len`-byte plaintext (with its 4-byte length prefix): the table's
/// fixed width when it fits (every row of a fixed-size kind does), the next power of two
/// otherwise.
pub(crate) fn padded_len(table: Table, len: usize) -> usize {
    let n = len + 4;
    let min = table.min_width();
    if n <= min {
        min
    } else {
        n.next_power_of_two()
    }
}

fn pad(table: Table, plain: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(padded_len(table, plain.len())));
    out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    out.extend_from_slice(plain);
    out.resize(padded_len(table, plain.len()), 0);
    out
}

fn unpad(table: Table, padded: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let len = u32::from_be_bytes(padded.get(..4)?.try_into().ok()?) as usize;
    let body = padded.get(4..4 + len)?;
    let ok = padded.len() == padded_len(table, len) && padded[4 + len..].iter().all(|&b| b == 0);
    ok.then(|| Zeroizing::new(body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(table: Table, seq: u64, tags: Vec<[u8; 32]>, secret: &[u8]) -> Row {
        Row {
            table,
            seq,
            tags,
            clear: Vec::new(),
            secret: Zeroizing::new(secret.to_vec()),
        }
    }

    #[test]
    fn rows_round_trip_and_are_bound_to_their_identity() {
        let net = NetworkKey::generate(&mut UnwrapErr(SysRng));
        let (k, sealed) = StateKey::generate(&net);
        let k2 = StateKey::unseal(&sealed, &net).unwrap();
        let lk = k.lookup(Lookup::Record, b"id");
        assert_eq!(lk, k2.lookup(Lookup::Record, b"id"));
        assert_ne!(lk, k.lookup(Lookup::AuditRecord, b"id"));
        let pk = k.lookup(Lookup::RecordPatient, b"p");
        assert_ne!(pk, k.lookup(Lookup::ConsentPatient, b"p"));
        let r = row(Table::Records, 7, vec![lk, pk], b"secret");
        let s = k.seal_row(&r);
        assert_eq!(s.len(), NONCE_LEN + Table::Records.min_width() + TAG_LEN);
        let back = k2
            .open_row(Table::Records, 7, vec![lk, pk], Vec::new(), &s)
            .unwrap();
        assert_eq!(back, r);
        // Another sequence number, another patient, another table, altered bytes: refused.
        let other = k.lookup(Lookup::RecordPatient, b"q");
        for (table, seq, tags) in [
            (Table::Records, 8, vec![lk, pk]),
            (Table::Records, 7, vec![lk, other]),
            (Table::Erasures, 7, vec![lk, pk]),
        ] {
            let err = k.open_row(table, seq, tags, Vec::new(), &s).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(Corruption::Row { .. })));
        }
        let mut bad = s.clone();
        bad[20] ^= 1;
        let err = k
            .open_row(Table::Records, 7, vec![lk, pk], Vec::new(), &bad)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the store is corrupt: a records row does not decrypt under its identity (altered, moved or copied)"
        );
        let other = NetworkKey::generate(&mut UnwrapErr(SysRng));
        let err = StateKey::unseal(&sealed, &other).unwrap_err();
        assert_eq!(err.to_string(), "the network key does not open this store");
    }

    #[test]
    fn padding_hides_lengths_within_a_bucket() {
        for n in [0, 10, 200, Table::Audit.min_width() - 4] {
            assert_eq!(padded_len(Table::Audit, n), Table::Audit.min_width());
        }
        assert_eq!(padded_len(Table::Consents, 1021), 2048);
        let p = pad(Table::Audit, b"abc");
        assert_eq!(&**unpad(Table::Audit, &p).unwrap(), b"abc");
        let mut q = p.clone();
        q[100] = 1;
        assert!(unpad(Table::Audit, &q).is_none(), "non-zero padding");
        assert!(unpad(Table::Records, &p).is_none(), "another table's width");
    }

    #[test]
    fn head_tags_bind_every_field() {
        let net = NetworkKey::generate(&mut UnwrapErr(SysRng));
        let (k, _) = StateKey::generate(&net);
        let h = BlockHash::from_byte_array([1; 32]);
        let counts = Counts::default();
        let tag = k.head_tag(3, &h, &[2; 32], &counts);
        k.check_head_tag(3, &h, &[2; 32], &counts, &tag).unwrap();
        let mut more = counts.clone();
        more.rows[0] = 1;
        for (height, state, c) in [
            (4, [2; 32], &counts),
            (3, [3; 32], &counts),
            (3, [2; 32], &more),
        ] {
            assert!(k.check_head_tag(height, &h, &state, c, &tag).is_err());
        }
        let r = row(Table::Audit, 1, vec![], b"x");
        let a = k.state_step(&[0; 32], 1, &h, std::slice::from_ref(&r));
        assert_ne!(a, k.state_step(&[0; 32], 1, &h, &[]));
        assert_ne!(a, k.state_step(&[1; 32], 1, &h, std::slice::from_ref(&r)));
    }
}
