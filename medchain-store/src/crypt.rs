//! The store's state key: derived state (records, consents, audit entries) reveals what the
//! network-sealed transaction bodies hide, so the stores keep it encrypted.
//!
//! A fresh random 32-byte state key is made when a store is created and kept sealed under the
//! network key ([`NetworkKey::seal`]) in the store itself. From it:
//!
//! * lookup keys: `HMAC-SHA256(K_lookup, len(label) || label || id)`, so a row can be found by
//!   record id, consent id or patient key without those ids appearing in the file;
//! * row encryption: AES-256-GCM under `K_seal` with a random 96-bit nonce and the row's table
//!   and lookup key as associated data, so rows cannot be swapped.
//!
//! `K_lookup` and `K_seal` are `HMAC-SHA256(state key, label)` with their own labels.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use getrandom::SysRng;
use hmac::{Hmac, Mac};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::seal::{NetworkKey, NetworkSealed};
use rand_core::{Rng, UnwrapErr};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::StoreError;

/// Associated data of the sealed state key.
const STATE_KEY_AAD: &[u8] = b"medchain/v1/store-state-key";
const LOOKUP_LABEL: &[u8] = b"medchain/v1/store-lookup";
const SEAL_LABEL: &[u8] = b"medchain/v1/store-seal";
const NONCE_LEN: usize = 12;

/// What a lookup key is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    Record,
    Patient,
    Consent,
}

impl Lookup {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Record => b"record",
            Self::Patient => b"patient",
            Self::Consent => b"consent",
        }
    }
}

/// The state key's working parts.
pub(crate) struct StateKey {
    lookup: Hmac<Sha256>,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

fn mac(key: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
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
            return Err(StoreError::Corrupt(
                "the sealed state key has the wrong length".into(),
            ));
        }
        Ok(Self::from_raw(&raw))
    }

    fn from_raw(raw: &[u8]) -> Self {
        let lookup = mac(raw, LOOKUP_LABEL);
        let seal = mac(raw, SEAL_LABEL);
        Self {
            lookup: <Hmac<Sha256> as KeyInit>::new_from_slice(&*lookup)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
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

    /// Encrypts a row: `nonce (12) || ciphertext || tag`.
    pub(crate) fn seal(&self, table: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        UnwrapErr(SysRng).fill_bytes(&mut nonce);
        let aad = aad(table, key);
        let ct = self
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of < 64 GiB cannot fail"));
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a row sealed with [`StateKey::seal`].
    pub(crate) fn open(
        &self,
        table: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let Some((nonce, ct)) = sealed
            .split_first_chunk::<NONCE_LEN>()
            .filter(|(_, ct)| ct.len() >= 16)
        else {
            return Err(StoreError::Corrupt(format!("a {table} row is too short")));
        };
        let aad = aad(table, key);
        self.cipher
            .decrypt(nonce.into(), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Corrupt(format!("a {table} row does not decrypt")))
    }
}

fn aad(table: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + table.len() + key.len());
    aad.push(table.len() as u8);
    aad.extend_from_slice(table.as_bytes());
    aad.extend_from_slice(key);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_are_bound_to_their_key() {
        let net = NetworkKey::generate(&mut UnwrapErr(SysRng));
        let (k, sealed) = StateKey::generate(&net);
        let k2 = StateKey::unseal(&sealed, &net).unwrap();
        let lk = k.lookup(Lookup::Record, b"id");
        assert_eq!(lk, k2.lookup(Lookup::Record, b"id"));
        assert_ne!(lk, k.lookup(Lookup::Patient, b"id"));
        let row = k.seal("records", &lk, b"secret");
        assert_eq!(&**k2.open("records", &lk, &row).unwrap(), b"secret");
        let err = k.open("records", &[0; 32], &row).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the store is corrupt: a records row does not decrypt"
        );
        let other = NetworkKey::generate(&mut UnwrapErr(SysRng));
        let err = StateKey::unseal(&sealed, &other).unwrap_err();
        assert_eq!(err.to_string(), "the network key does not open this store");
    }
}
